#!/usr/bin/env bash
# Issue 8 on the H200 (run by scripts/device/session.sh with $JOB_OUT; limit 240 s with node start and the
# torch baseline): parity of every prefill kernel preset first (PREFILL_KERNEL_PRESETS in
# packages/cuda/src/prefill.ts), then the cuda-prefill bench over the presets that passed (a preset that
# fails parity is never timed). Session 9 (call C): v67 (the defaults since session 9: dense v22, sparse v61, pool
# v67; its parity covers the v1 kernels too, which run where v67's do not apply: head dim 64, g != 4) is the safe
# group; v60 (the defaults of session 8, the comparison row) in its own parity process (PREFILL_RISKY,
# space-separated groups). Calls A and B timed session 9's candidates v63-v66 (gone). Session 10: call A (eae88d3) timed
# v68 / v69 (pools with the query rows in registers, three / two consumer warpgroups: slower, gone); call B runs
# this default list again (v67, v60); call C (b21e491, the session's final numbers) timed v67 beside v70 (layer 0's
# dense pass split by pooled pass: no gain, gone). Since call C parity runs one pair per pooled pass
# (KASCADE_PREFILL_PASS_PAIRS=1), so the small chunks take the multi-pass paths that 128k takes.
# Session 11: call A (b896e8b) timed v71-v74 (each pooling step's product as two m64n64 halves: slower, gone) beside
# v67; call B (7e6e148) timed v67, v75 (v67 with 12 of each four-tile pool thread's 32 row constants in registers)
# and v60; v75 is the default since, safe group here, with v67 (the previous defaults) as the comparison row.
# Session 12: call A (8aa10f0) timed v76-v78 (the four-tile pool with no producer warpgroup: five consumer warpgroups,
# or all row constants in registers) and call B (f827b59) v79-v82 (the pooled sums as trees) beside v75: none won, all
# gone; the default list is again v75 (safe) | v67 (the comparison row).
# The parity cases include the tied-scores chunk (the select's tie rule and its fallbacks); the bench also compares layer 0's and the
# anchor's key sets with the first preset's on a sample of tiles at 8k, 32k and 128k (selectionMismatch).
# While the bench runs, nvidia-smi samples the SM clock, power and clock-event reasons every 100 ms
# (clocks.csv; the log says the median SM clock and the share of busy samples under the SW power cap).
# Built here first: node packages/cuda/native/build.mjs --strict && node packages/cuda/scripts/bundle-device.mjs --core-from-git
# Parity runs with KASCADE_PREFILL_SPARSE_CTAS=5: the persistent sparse pass (v61) on at most 5 CTAs, so the
# small parity chunks run several work items per CTA (the ring's phases across items); and with
# KASCADE_PREFILL_SAMPLE_FROM=1024: pool v60's sampled select on rows from 1024 scores on (16384 in the bench), so
# the parity chunks (rows up to 2400, the tied-scores chunk among them) run it; and with KASCADE_PREFILL_WIDE_CTAS=1:
# pool v67's four tiles per CTA on every launch (from 2048 four-tile CTAs in the bench: 32k and longer).
# Parity runs in one process per group of presets, side by side (the GPU idles while the host computes
# references), so a kernel that faults (a sticky CUDA error poisons its process) cannot take another
# group's checks with it. If the bench dies, it runs again on
# the safe presets alone. Leaves in $JOB_OUT: cuda-prefill-parity.json (every part merged), cuda-prefill.json (the .md/.svg are re-made here with
# `kascade-bench render`).
set -u
: "${JOB_OUT:?JOB_OUT must name the output folder}"
t0=$(date +%s)
say() { echo "[prefill +$(($(date +%s) - t0)) s] $*"; }
export KASCADE_CUDA_ADDON=${KASCADE_CUDA_ADDON:-$PWD/packages/cuda/build/kascade_cuda.node}
safe=${PREFILL_SAFE:-v75}
# Parity processes: the safe presets in one, then each space-separated group of risky presets in its own.
risky=${PREFILL_RISKY-v67}
groups="$safe${risky:+ $risky}"               # one parity process per group
presets=$(echo "$groups" | tr ' ' ',')        # every preset, comma-separated
parts=$(echo "$groups" | tr ',' '+')          # part names (files parity-<part>.json / .log)
parity_limit=${PREFILL_PARITY_LIMIT:-140} # session 10 call B: 100 s cut v67 after 59 of 60 checks; call C: 60 checks in ~77 s with 140

parity() { # part presets
  KASCADE_PREFILL_SPARSE_CTAS=${PREFILL_PARITY_SPARSE_CTAS:-5} KASCADE_PREFILL_SAMPLE_FROM=1024 \
  KASCADE_PREFILL_WIDE_CTAS=${PREFILL_PARITY_WIDE_CTAS:-1} KASCADE_PREFILL_PASS_PAIRS=${PREFILL_PARITY_PASS_PAIRS:-1} \
  timeout --kill-after=5 "$parity_limit" node packages/cuda/dist-device/device-check.mjs \
    "$JOB_OUT/parity-$1.json" --prefill-only --quick --prefill-long --prefill-variants="$2" \
    > "$JOB_OUT/parity-$1.log" 2>&1
  echo "[prefill +$(($(date +%s) - t0)) s] parity $1 ($2) exit $?"
}
say "parity: $safe | $risky (quick cases + the long chunk), one process per group, limit ${parity_limit} s each"
for g in $groups; do parity "$(echo "$g" | tr ',' '+')" "$g" & done
wait
grep -hE "FAIL|checks," "$JOB_OUT"/parity-*.log | tail -20

# Which presets passed, and the merged parity JSON. A part whose JSON is missing (cut short) is read from
# its per-check log lines: a preset passes there with at least 10 checks and no failure (presets run case
# by case side by side, so a cut run has checked them on the same cases).
ok=$(node -e '
const fs = require("node:fs");
const [dir, names, partNames] = process.argv.slice(1);
let rows = [];
let merged = null;
for (const part of partNames.split(" ")) {
  let j = null;
  try { j = JSON.parse(fs.readFileSync(`${dir}/parity-${part}.json`, "utf8")); } catch {}
  if (j) {
    rows.push(...j.prefillRows.map((r) => ({ ...r, part })));
    if (!merged) merged = { ...j, prefillRows: [], checks: 0, failed: 0, seconds: 0, parts: [] };
    merged.prefillRows.push(...j.prefillRows);
    merged.checks += j.checks;
    merged.failed += j.failed;
    merged.seconds = Math.max(merged.seconds, j.seconds);
    merged.parts.push({ part, command: j.command, checks: j.checks, failed: j.failed, seconds: j.seconds });
    continue;
  }
  let text = "";
  try { text = fs.readFileSync(`${dir}/parity-${part}.log`, "utf8"); } catch {}
  let n = 0;
  for (const m of text.matchAll(/^(ok  |FAIL) prefill \S+\s+\[([^\]]+)\]/gm)) {
    rows.push({ pass: m[1] === "ok  ", kernels: m[2], part, fromLog: true });
    n++;
  }
  if (text) console.error(`parity part ${part}: no JSON, ${n} checks read from its log`);
}
if (merged) {
  merged.command = "scripts/device/prefill.sh: " + merged.parts.map((p) => p.command).join(" & ");
  fs.writeFileSync(`${dir}/cuda-prefill-parity.json`, JSON.stringify(merged, null, 1) + "\n");
}
const pass = names.split(",").filter((v) => {
  const r = rows.filter((x) => x.kernels.startsWith(`${v}: `));
  const min = r.some((x) => x.fromLog) ? 10 : 1;
  return r.length >= min && r.every((x) => x.pass);
});
console.log(pass.join(","));
' "$JOB_OUT" "$presets" "$parts")
say "presets that passed parity: '${ok}'"
if [ -z "$ok" ]; then
  say "no preset passed parity: nothing timed"
  tail -n 30 "$JOB_OUT"/parity-*.log
  exit 1
fi
# The merged JSON holds the rows (failures with their reason); a part's files stay only when its JSON
# is missing.
for part in $parts; do
  [ -s "$JOB_OUT/parity-$part.json" ] && rm -f "$JOB_OUT/parity-$part.json" "$JOB_OUT/parity-$part.log"
done

# SM clock / power sampling beside the bench (stopped at the end; at most 200 s if the job is cut short).
timeout 200 nvidia-smi --query-gpu=timestamp,clocks.sm,power.draw,clocks_event_reasons.active --format=csv,nounits -lms 100 \
  > "$JOB_OUT/clocks.csv" 2> /dev/null &
smi_pid=$!
bench() { # presets
  say "bench cuda-prefill (8k/32k/128k) over $1"
  # Presets predicted to end past t0 + 215 s are skipped by the bench (it says which).
  KASCADE_BENCH_DEADLINE_MS=$(((t0 + 215) * 1000)) KASCADE_PREFILL_VARIANTS=$1 \
    node packages/cuda/dist-device/bench-cli.mjs cuda-prefill --repeats 6 \
    --out "$JOB_OUT/cuda-prefill.json"
  local rc=$?
  say "bench exit $rc"
  return $rc
}
if ! bench "$ok" || [ ! -s "$JOB_OUT/cuda-prefill.json" ]; then
  fallback=$(echo "$ok" | tr ',' '\n' | grep -xF -f <(echo "$safe" | tr ',' '\n') | paste -sd, -)
  if [ -n "$fallback" ] && [ "$fallback" != "$ok" ]; then
    say "bench failed over $ok; again over $fallback"
    bench "$fallback"
  fi
fi
kill "$smi_pid" 2> /dev/null
# Busy samples (power > 300 W): median SM clock and the share with reason 0x4 (SW power cap) set.
node -e '
const rows = require("node:fs").readFileSync(process.argv[1], "utf8").trim().split("\n").slice(1)
  .map((l) => l.split(",").map((x) => x.trim()))
  .filter((r) => Number(r[2]) > 300);
if (!rows.length) { console.log("clocks: no busy samples"); process.exit(0); }
const c = rows.map((r) => Number(r[1])).sort((a, b) => a - b);
const cap = rows.filter((r) => (Number(BigInt(r[3])) & 4) !== 0).length;
console.log(`clocks: ${rows.length} busy samples, SM clock median ${c[(c.length - 1) >> 1]} MHz (min ${c[0]}, max ${c[c.length - 1]}), SW power cap in ${cap}`);
' "$JOB_OUT/clocks.csv" 2>&1 | tee "$JOB_OUT/clocks-summary.txt"
rm -f "$JOB_OUT/cuda-prefill.md" "$JOB_OUT/cuda-prefill.svg"
say done
