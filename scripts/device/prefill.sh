#!/usr/bin/env bash
# Issue 8 on the H200 (run by scripts/device/session.sh with $JOB_OUT; limit 230 s with node start and the
# torch baseline): parity of every prefill kernel preset first (PREFILL_KERNEL_PRESETS in
# packages/cuda/src/prefill.ts: v1 mma.sync, v2 32 rows per warp, v3 wgmma attention, v4 v3 + wgmma pool,
# v5 v4 with two warpgroups per block),
# then the cuda-prefill bench over the presets that passed (a preset that fails parity is never timed).
# Built here first: node packages/cuda/native/build.mjs --strict && node packages/cuda/scripts/bundle-device.mjs --core-from-git
# Leaves in $JOB_OUT: cuda-prefill-parity.json, cuda-prefill.json (the .md/.svg are re-made here with
# `kascade-bench render`, so they do not use up the call's returned-file count).
set -u
: "${JOB_OUT:?JOB_OUT must name the output folder}"
t0=$(date +%s)
say() { echo "[prefill +$(($(date +%s) - t0)) s] $*"; }
export KASCADE_CUDA_ADDON=${KASCADE_CUDA_ADDON:-$PWD/packages/cuda/build/kascade_cuda.node}
variants=${PREFILL_VARIANTS:-v1,v2,v3,v4,v5}
parity_limit=${PREFILL_PARITY_LIMIT:-140}

say "parity: variants $variants (quick cases + the long chunk), limit ${parity_limit} s"
timeout --kill-after=5 "$parity_limit" node packages/cuda/dist-device/device-check.mjs \
  "$JOB_OUT/cuda-prefill-parity.json" --prefill-only --quick --prefill-long --prefill-variants="$variants" \
  > "$JOB_OUT/parity.log" 2>&1
say "parity exit $?"
grep -E "FAIL|checks," "$JOB_OUT/parity.log" | tail -20
# The presets whose every parity row passed (and that had rows). If the parity run was cut short (no JSON),
# the per-check log lines decide: a preset passes when it has at least 10 checks and no failure (the
# presets run case by case, side by side, so a cut run has checked them on the same cases).
ok=$(node -e '
const fs = require("node:fs");
const [json, log, names] = process.argv.slice(1);
let rows = null;
try { rows = JSON.parse(fs.readFileSync(json, "utf8")).prefillRows; } catch {}
if (!rows) {
  rows = [];
  let text = "";
  try { text = fs.readFileSync(log, "utf8"); } catch {}
  for (const m of text.matchAll(/^(ok  |FAIL) prefill \S+\s+\[([^\]]+)\]/gm)) rows.push({ pass: m[1] === "ok  ", kernels: m[2] });
  console.error(`parity JSON missing: ${rows.length} checks read from the log`);
  rows = rows.length > 0 ? rows : [];
}
const min = fs.existsSync(json) ? 1 : 10;
const pass = names.split(",").filter((v) => {
  const r = rows.filter((x) => x.kernels.startsWith(`${v}: `));
  return r.length >= min && r.every((x) => x.pass);
});
console.log(pass.join(","));
' "$JOB_OUT/cuda-prefill-parity.json" "$JOB_OUT/parity.log" "$variants")
say "variants that passed parity: '${ok}'"
if [ -z "$ok" ]; then
  say "no variant passed parity: nothing timed"
  tail -40 "$JOB_OUT/parity.log"
  exit 1
fi
# The JSON holds every row; the log is kept only when the run was cut short.
[ -s "$JOB_OUT/cuda-prefill-parity.json" ] && rm -f "$JOB_OUT/parity.log"

say "bench cuda-prefill (8k/32k/128k) over $ok"
KASCADE_PREFILL_VARIANTS=$ok node packages/cuda/dist-device/bench-cli.mjs cuda-prefill --repeats 6 \
  --out "$JOB_OUT/cuda-prefill.json"
say "bench exit $?"
rm -f "$JOB_OUT/cuda-prefill.md" "$JOB_OUT/cuda-prefill.svg"
say done
