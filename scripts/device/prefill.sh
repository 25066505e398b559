#!/usr/bin/env bash
# Issue 8 on the H200 (run by scripts/device/session.sh with $JOB_OUT; limit 230 s with node start and the
# torch baseline): parity of every prefill kernel preset first (PREFILL_KERNEL_PRESETS in
# packages/cuda/src/prefill.ts: v1 mma.sync, v2 32 rows per warp, v3 wgmma attention, v4 v3 + wgmma pool),
# then the cuda-prefill bench over the presets that passed (a preset that fails parity is never timed).
# Built here first: node packages/cuda/native/build.mjs --strict && node packages/cuda/scripts/bundle-device.mjs --core-from-git
# Leaves in $JOB_OUT: cuda-prefill-parity.json, cuda-prefill.json (the .md/.svg are re-made here with
# `kascade-bench render`, so they do not use up the call's returned-file count).
set -u
: "${JOB_OUT:?JOB_OUT must name the output folder}"
t0=$(date +%s)
say() { echo "[prefill +$(($(date +%s) - t0)) s] $*"; }
export KASCADE_CUDA_ADDON=${KASCADE_CUDA_ADDON:-$PWD/packages/cuda/build/kascade_cuda.node}
variants=${PREFILL_VARIANTS:-v1,v2,v3,v4}
parity_limit=${PREFILL_PARITY_LIMIT:-140}

say "parity: variants $variants (quick cases + the long chunk), limit ${parity_limit} s"
timeout --kill-after=5 "$parity_limit" node packages/cuda/dist-device/device-check.mjs \
  "$JOB_OUT/cuda-prefill-parity.json" --prefill-only --quick --prefill-long --prefill-variants="$variants" \
  > "$JOB_OUT/parity.log" 2>&1
say "parity exit $?"
grep -E "FAIL|checks," "$JOB_OUT/parity.log" | tail -20
# The variants whose every row passed (and that had rows).
ok=$(node -e '
const fs = require("node:fs");
let r;
try { r = JSON.parse(fs.readFileSync(process.argv[1], "utf8")); } catch { process.exit(0); }
const pass = process.argv[2].split(",").filter((v) => {
  const rows = (r.prefillRows ?? []).filter((x) => x.kernels.startsWith(`${v}: `));
  return rows.length > 0 && rows.every((x) => x.pass);
});
console.log(pass.join(","));
' "$JOB_OUT/cuda-prefill-parity.json" "$variants")
say "variants that passed parity: '${ok}'"
if [ -z "$ok" ]; then
  say "no variant passed parity: nothing timed"
  tail -40 "$JOB_OUT/parity.log"
  exit 1
fi
rm -f "$JOB_OUT/parity.log"

say "bench cuda-prefill (8k/32k/128k) over $ok"
KASCADE_PREFILL_VARIANTS=$ok node packages/cuda/dist-device/bench-cli.mjs cuda-prefill \
  --out "$JOB_OUT/cuda-prefill.json"
say "bench exit $?"
rm -f "$JOB_OUT/cuda-prefill.md" "$JOB_OUT/cuda-prefill.svg"
say done
