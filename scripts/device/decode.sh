#!/usr/bin/env bash
# Issue 4 on the H200 (run by scripts/device/session.sh with $JOB_OUT; limit 300 s with node start and
# the torch baseline):
#  1. screen: each non-zero kernel variant alone on four small cases (device-check --smoke), each in its
#     own process (all at once) under a short timeout, so a variant that hangs or faults cannot take the
#     others down;
#  2. parity: every op x bf16/f16 x g 1/2/4/8, d 128 and 64, for variant 0 and the screened variants;
#  3. the cuda-decode bench over the variants with no failed check (never a failed one; nothing is
#     timed if none passed). If the bench dies (no JSON), it runs again on variant 0 alone.
# Built here first: node packages/cuda/native/build.mjs --strict && node packages/cuda/scripts/bundle-device.mjs --core-from-git
# Leaves in $JOB_OUT: cuda-parity.json and cuda-decode.json only (progress goes to the job's log.txt;
# the .md/.svg are made here afterwards with `kascade-bench render`, so they do not use up the call's
# returned-file count).
# Env: DECODE_VARIANTS (default: 0; the variants some op or shape picked in session 4's call A (4db2959)
#      or the third session's call C: 124 without the lean schedule, the lean schedule's 176, 188, 252, the
#      cluster select's 508, 636, 764; the stream select over f32 logits (bit 2048: 2236 = 188 | 2048) and
#      over the f16 intermediate (bits 1024 | 2048: 3196 = 124 | 3072, 3260 = 188 | 3072), with programmatic
#      dependent launch (bit 4096: 6332, 7356), with the 6-stage scores pass (bit 16384: 19580, 19644);
#      cuda-b1's batch-1 variants for call B (4096 programmatic dependent launch, 8192 gathers: 4156,
#      8252)). Session 5: the defaults of ops.ts (148, 188, 252, 636, 764, 3196, 6332, 8252, 19644; 508, 2236,
#      3260, 7356, 19580 and 4156 dropped: no op or shape picked them) and the row select (bit 65536:
#      65724 = 188 | 65536) and cuda-b1's warp-specialised gather (bit 32768: 32800, 32956) and batch-1 select
#      (bit 131072: 164028). Call C of session 5 (final): the ops.ts defaults 148, 176, 188, 252, 636, 764, 3196,
#      6332, 8252, 19644, 32800 + those candidates). Session 6, call C (final): the ops.ts defaults (148, 176,
#      188, 252, 764, 3196, 8252, 19644, 32800, 32956, 164028) and one candidate, 265340 = 3196 | 262144 (the
#      TMA maps without L2 promotion: call B's dense 4040 -> 3805 us at 128k b32 on the split schedule).
#      Calls A and B timed the anchors' batch chunks on two streams and the intermediate kept in L2
#      (bits 262144-8388608 then, removed after call B: they lost; see packages/cuda/README.md).
#      (Session 5's row select 65724 was removed in session 6.) Session 7: the ops.ts defaults and 789628 =
#      265340 | 524288 (the anchor's sparse pass from the f16 intermediate, V rows only), calls B and C also
#      1313916 and 1838204 (bit 1048576 then: the select beside the pass by row workers on a second stream; it lost
#      in C and was removed, packages/cuda/README.md); cuda-b1's list
#      (/work/prompts/s7/decode-variants-cuda-b1, call B: 32864, 98336, 98400 = 32800 with bits 64 / 65536 / both,
#      168124 = 164028 | 4096, 168188 = 168124 | 64). Call C (final): the ops.ts defaults (148, 176, 188, 252, 764,
#      8252, 32956, 98336, 164028, 168124, 265340, 789628) and the row workers; after C: the ops.ts defaults.
#      Session 8: the ops.ts defaults, 1838204 = 789628 | 1048576 (bit 1048576 now: the f16 intermediate in
#      key-major order, select_plan.h u16_index); call A also 3935356 and 8129660 (bits 2097152 / 4194304 then: the
#      stream select's phase 3 with an L2 prefetch / shared staging lists; both lost and were removed), call B
#      3935356 = 1838204 | 2097152 (bit 2097152 then: the anchor's sparse pass with a 5-stage ring; lost, removed);
#      cuda-b1's list (/work/prompts/s8/decode-variants-cuda-b1: 98400 / 168188 = 98336 / 168124 | 64). Call C
#      (final): the ops.ts defaults (148, 176, 188, 252, 764, 32956, 98400, 164028, 168188, 1838204) and session 7's
#      defaults 265340 / 789628 for comparison. Session 9: the ops.ts defaults and 3935356 = 1838204 | 2097152 (bit
#      2097152: the scores / layer-0 pass's intermediate written in GPU-wide write windows, burst_writes.cuh), 3951740 =
#      3935356 | 16384 (the same with the 6-stage scores pass, two CTAs per SM: larger write stages), 3935484 = 3935356 |
#      128 (the same on the lean schedule: one drain per CTA, at the pass's end), call B also 1838332 = 1838204 | 128
#      (the lean schedule without the burst writes) and cuda-b1's 4292704, 8622332, 12816636 (through DECODE_VARIANTS).
#      Calls A and B ran the burst variants with one CTA per SM fewer than the pass without them (their stages past the
#      cp.async ring's size); call C: 3935356 and 3935484 with the stages inside the TMA pass's room, and cuda-b1's list
#      (/work/prompts/s9/decode-variants-cuda-b1); 3951740 and 1838332 lost in call B and are no longer timed; after C:
#      3935484 is layer 0's default beyond 16k at batch > 4, 3935356 (the split schedule) lost and is dropped;
#      cuda-b1's list (/work/prompts/s9/decode-variants-cuda-b1: 4292704 = 98400 | 4194304, 12751100 = 168188 |
#      4194304 | 8388608). Session 10, call A: the ops.ts defaults, 18615420 = 1838204 | 16777216 (bit 16777216 then: the
#      step maxima inside each step's u block; lost, removed), 85724284 = 18615420 | 67108864 and 71044348 = 3935484 |
#      67108864 (bit 67108864: the stream select's pooled rows as 16-bit top halves), cuda-b1's 46371068 = 12816636 |
#      33554432. Call B: the ops.ts defaults, 46371068, 68947068 = 1838204 | 67108864 and 71044348 (the pooled rows as
#      16-bit top halves, phase 3 one pair of slot atomics per four tiles, phase 4's recompute pipelined), 136055932 = 1838204 | 134217728 (bit 134217728: the anchor's
#      sparse pass released after the select's phase 3, reading the lists as their ready counts allow) and 203164796 =
#      68947068 | 134217728 (bit 67108864 lost in A and B and was removed); call C (final): the ops.ts defaults (136055932
#      the anchor's beyond 16k at batch > 4) and session 9's anchor default 1838204 for comparison. Session 11 (cuda-anchor):
#      call A (df8958f) the ops.ts defaults and bit 268435456 (the stream select's phase 1 two tiles a step, phase 3 four
#      tiles per pair of slot atomics: 404491388 = 136055932 | 268435456, 272370940 = 3935484 | 268435456; it spilled and
#      lost), call B (7e6e148) bit 1073741824 (phase 3 recomputing the pooled scores, the sparse pass's scores written
#      beside the indices: 1209797756 = 136055932 | 1073741824, 1077677308 = 3935484 | 1073741824; lost); both removed,
#      call C the ops.ts defaults, with cuda-b1's 541163616 and 583241980 (3935484, 136055932 and those in DECODE_PROVEN),
#      Session 12 (cuda-anchor): no variant bits are left, so candidates are tuning env knobs: DECODE_KNOBS (space-
#      separated NAME=value entries, default below: KASCADE_SPARSE_RING, kernels/cuda/anchor_sparse_decode.cu; call A
#      (ab9822f): the anchor's sparse pass with a 3- or 2-stage ring per warp at 3 / 4 CTAs per SM and a split count
#      fitted to them, its index slots as fixed registers, its V rows by TMA bulk copies (the winner: now the default),
#      the 4-stage ring with the fitted count; call B: "old" (session 11's kernel), the V rows by whole-row cp.async
#      (form 2) at 3 stages / at session 11's 4 stages and splits, the bulk copies with attn_splits / at 4 stages / with 3
#      splits; and 1838204 (136055932 without the early sparse pass) in the main list, for comparison); after B the
#      whole-row cp.async (B's fastest under ncu, 299 us) is the sparse pass's only form and the knob is gone: call C runs
#      the defaults, with 1838204; DECODE_KNOBS is empty by default (the mechanism stays for later candidates)
#      each get a parity process of their own (DECODE_KNOB_VARIANTS, default the anchor's batch-32 default 136055932;
#      DECODE_KNOB_PARITY_LIMIT s, default 140), beside the groups below, and those that pass a bench run of their own over
#      DECODE_KNOB_BENCH_VARIANTS (default 136055932) after the main one (cuda-decode-knob-<i>.json; the rows that matter in the log),
#      DECODE_PROVEN (variants the large-shape probe skips, default below),
#      DECODE_PARITY_LIMIT
#      (s, default 180),
#      DECODE_PARITY_ARGS (extra device-check arguments, e.g. --quick).
set -u
: "${JOB_OUT:?JOB_OUT must name the output folder}"
t0=$(date +%s)
say() { echo "[decode +$(($(date +%s) - t0)) s] $*"; }
export KASCADE_CUDA_ADDON=${KASCADE_CUDA_ADDON:-$PWD/packages/cuda/build/kascade_cuda.node}
variants=${DECODE_VARIANTS:-148,176,188,252,764,32956,98400,164028,168188,1838204,3935484,4292704,8622332,12816636,46371068,136055932,541163616,583241980}
# Variants already run at the large shapes in earlier sessions' final calls: not probed again (one process of ~10-15 s
# each).
proven=${DECODE_PROVEN:-32956,98400,164028,168188,1838204,3935484,4292704,8622332,12816636,46371068,136055932,541163616,583241980}
read -r -a knobs <<< "${DECODE_KNOBS-}"
knob_variants=${DECODE_KNOB_VARIANTS:-136055932}
knob_bench=${DECODE_KNOB_BENCH_VARIANTS:-136055932}
knob_limit=${DECODE_KNOB_PARITY_LIMIT:-140}
parity_limit=${DECODE_PARITY_LIMIT:-180}
parity_args=${DECODE_PARITY_ARGS:-}
check=packages/cuda/dist-device/device-check.mjs
passing() { # the passingVariants of a parity JSON, comma-separated (empty if unreadable)
  node -e '
const fs = require("node:fs");
try { console.log((JSON.parse(fs.readFileSync(process.argv[1], "utf8")).passingVariants ?? []).join(",")); } catch {}
' "$1"
}

screened=""
# Screen every non-zero variant at once, each in its own process (the GPU time-slices between them).
for v in ${variants//,/ }; do
  [ "$v" = 0 ] && continue
  timeout --kill-after=3 30 node "$check" "$JOB_OUT/smoke-$v.json" --no-prefill --smoke --variants "$v" \
    > "$JOB_OUT/smoke-$v.log" 2>&1 &
done
wait
for v in ${variants//,/ }; do
  if [ "$v" = 0 ]; then screened="${screened:+$screened,}0"; continue; fi
  got=$(passing "$JOB_OUT/smoke-$v.json")
  if [ "$got" = "$v" ]; then
    screened="${screened:+$screened,}$v"
    say "screen variant $v: ok"
  else
    say "screen variant $v: dropped"
    grep -E "FAIL|rror" "$JOB_OUT/smoke-$v.log" | head -8
  fi
  rm -f "$JOB_OUT/smoke-$v.json" "$JOB_OUT/smoke-$v.log"
done
if [ -z "$screened" ]; then
  say "no variant survived the screen: nothing checked or timed"
  exit 1
fi

# Parity in up to five processes at once (the float64 references are CPU work; the host has 16 cores),
# so a fault in a new variant (a sticky CUDA error poisons its process) cannot take the others down:
# the variants without session-4/5 bits, those with the anchors' bits 1024/2048/16384/65536, those with
# cuda-b1's bits 4096/8192/32768/131072, those with both, and the TMA maps without L2 promotion (bit 262144) on
# their own.
# Their JSONs are merged into one cuda-parity.json.
groups=("" "" "" "" "")
for v in ${screened//,/ }; do
  a=$((v & 84992)) b=$((v & 176128))
  if [ $((v & 262144)) -ne 0 ]; then gi=4; elif [ $a -ne 0 ] && [ $b -ne 0 ]; then gi=3; elif [ $a -ne 0 ]; then gi=1; elif [ $b -ne 0 ]; then gi=2; else gi=0; fi
  groups[$gi]="${groups[$gi]:+${groups[$gi]},}$v"
done
say "parity: groups '${groups[0]}' '${groups[1]}' '${groups[2]}' '${groups[3]}' '${groups[4]}', limit ${parity_limit} s ${parity_args}"
parts=()
for gi in 0 1 2 3 4; do
  [ -z "${groups[$gi]}" ] && continue
  # shellcheck disable=SC2086
  timeout --kill-after=5 "$parity_limit" node "$check" "$JOB_OUT/parity-$gi.json" --no-prefill \
    --variants "${groups[$gi]}" $parity_args > "$JOB_OUT/parity-$gi.log" 2>&1 &
  parts+=("$JOB_OUT/parity-$gi.json")
done
# The knobs' parity processes (their JSONs stay out of the merged cuda-parity.json).
for ki in "${!knobs[@]}"; do
  # shellcheck disable=SC2086
  env "${knobs[$ki]}" timeout --kill-after=5 "$knob_limit" node "$check" "$JOB_OUT/knob-parity-$ki.json" --no-prefill \
    --variants "$knob_variants" $parity_args > "$JOB_OUT/knob-parity-$ki.log" 2>&1 &
done
wait
knobs_ok=()
for ki in "${!knobs[@]}"; do
  got=$(passing "$JOB_OUT/knob-parity-$ki.json")
  say "parity under ${knobs[$ki]} (variants $knob_variants): passing '$got'"
  grep -E "^FAIL|checks,|rror" "$JOB_OUT/knob-parity-$ki.log" | head -10
  [ "$got" = "$knob_variants" ] && knobs_ok+=("${knobs[$ki]}")
  rm -f "$JOB_OUT/knob-parity-$ki.log"
done
for gi in 0 1 2 3 4; do
  [ -f "$JOB_OUT/parity-$gi.log" ] || continue
  say "parity group $gi (${groups[$gi]}):"
  grep -E "^FAIL|checks,|^device|rror" "$JOB_OUT/parity-$gi.log" | head -30
done
node -e '
const fs = require("node:fs");
const parts = process.argv.slice(2).filter((f) => fs.existsSync(f)).map((f) => {
  try { return JSON.parse(fs.readFileSync(f, "utf8")); } catch { return undefined; }
}).filter(Boolean);
if (parts.length === 0) process.exit(0);
const m = { ...parts[0] };
m.seed = parts.map((p) => p.seed);
m.command = parts.map((p) => p.command).join(" && ");
m.checks = parts.reduce((a, p) => a + p.checks, 0);
m.failed = parts.reduce((a, p) => a + p.failed, 0);
m.seconds = Math.max(...parts.map((p) => p.seconds));
m.variants = parts.flatMap((p) => p.variants);
m.passingVariants = parts.flatMap((p) => p.passingVariants);
m.rows = parts.flatMap((p) => p.rows);
m.prefillRows = parts.flatMap((p) => p.prefillRows ?? []);
m.processes = parts.length;
fs.writeFileSync(process.argv[1], JSON.stringify(m, null, 1) + "\n");
console.log(`merged ${parts.length} parity processes: ${m.checks} checks, ${m.failed} failed`);
' "$JOB_OUT/cuda-parity.json" "${parts[@]}"
rm -f "${parts[@]}"
ok=$(passing "$JOB_OUT/cuda-parity.json")
if [ -z "$ok" ] && [ "$screened" != 0 ] && [ $(($(date +%s) - t0)) -lt 185 ]; then
  # Nothing passed (or nothing finished): variant 0 alone, once more.
  say "parity again on variant 0 alone"
  timeout --kill-after=5 45 node "$check" "$JOB_OUT/cuda-parity.json" --no-prefill --variants 0 $parity_args \
    > "$JOB_OUT/parity.log" 2>&1
  say "parity (variant 0) exit $?"
  grep -E "^FAIL|checks," "$JOB_OUT/parity.log" | head -20
  ok=$(passing "$JOB_OUT/cuda-parity.json")
fi
say "variants that passed parity: '${ok}'"
rm -f "$JOB_OUT"/parity*.log
if [ -z "$ok" ]; then
  say "no variant passed parity (or parity did not finish): nothing timed"
  exit 1
fi

# The session-4/5/6 variants (bits 1024-262144) once more at the bench's large shapes (128k b1 / b32, 512k b1),
# one process each (17 GB of K/V at 128k b32: not side by side) under a timeout (parity runs small
# shapes only): one that faults or hangs there is left out of the bench instead of taking it down.
kept=""
for v in ${ok//,/ }; do
  if [ $((v & 523264)) -ne 0 ] && [[ ",$proven," != *",$v,"* ]]; then
    # KASCADE_STREAM_SELECT_TRACE=1: the stream select (bits 1024/2048) prints its phase times (CTA 0's
    # clock) to stderr; kept in the log for tuning.
    PROFILE_SHAPES=1x131072,32x131072,1x524288 PROFILE_VARIANTS="$v,$v,$v,$v" KASCADE_STREAM_SELECT_TRACE=1 \
      timeout --kill-after=3 25 node packages/cuda/dist-device/profile-ops.mjs > "$JOB_OUT/probe.log" 2>&1
    prc=$?
    grep -E "^\[stream select\]|^--- batch" "$JOB_OUT/probe.log" | sed "s/^/  v$v /"
    if [ "$prc" != 0 ]; then
      say "large-shape probe of variant $v: exit $prc, left out of the bench"
      tail -4 "$JOB_OUT/probe.log"
      continue
    fi
  fi
  kept="${kept:+$kept,}$v"
done
rm -f "$JOB_OUT/probe.log"
say "large-shape probes done: bench variants '${kept}'"
[ -n "$kept" ] && ok=$kept

# Repeats: the bench's defaults (warm-up 10, 50 timed) unless parity left under ~140 s.
reps=()
[ $(($(date +%s) - t0)) -gt 120 ] && reps=(--warmup 5 --repeats 20)
say "bench cuda-decode (8k/32k/128k b1/b32, 512k b1) over variants $ok ${reps[*]}"
node packages/cuda/dist-device/bench-cli.mjs cuda-decode --out "$JOB_OUT/cuda-decode.json" ${reps[@]+"${reps[@]}"} -- --variants "$ok"
rc=$?
say "bench exit $rc"
if [ ! -s "$JOB_OUT/cuda-decode.json" ] && [ "$ok" != 0 ] && [ $(($(date +%s) - t0)) -lt 200 ]; then
  say "no bench results: again on variant 0 alone"
  node packages/cuda/dist-device/bench-cli.mjs cuda-decode --out "$JOB_OUT/cuda-decode.json" -- --variants 0
  say "bench (variant 0) exit $?"
fi
# The knobs that passed parity, each in a bench run of its own over DECODE_KNOB_BENCH_VARIANTS (the env is read once per
# process); their 32k / 128k batch-32 anchor rows (and the main run's, same call) into the log.
knob_rows() { # <json> <label>: the anchor / layer-0 rows at batch 32, 32k and 128k
  node -e '
const fs = require("node:fs");
try {
  const d = JSON.parse(fs.readFileSync(process.argv[1], "utf8"));
  for (const r of d.rows)
    if (r.batch === 32 && (r.context === 32768 || r.context === 131072) && /^(anchor|layer0)(-v|$)/.test(r.kernel))
      console.log(`  ${process.argv[2]} ${r.kernel} ${r.context}: ${r.medianUs} us (p10 ${r.p10Us}, p90 ${r.p90Us})`);
} catch (e) { console.log(`  ${process.argv[2]}: unreadable (${e.message})`); }
' "$1" "$2"
}
[ -s "$JOB_OUT/cuda-decode.json" ] && knob_rows "$JOB_OUT/cuda-decode.json" "default"
for ki in "${!knobs_ok[@]}"; do
  if [ $(($(date +%s) - t0)) -gt 250 ]; then
    say "no time left for the bench under ${knobs_ok[$ki]}"
    continue
  fi
  say "bench cuda-decode under ${knobs_ok[$ki]} over variants $knob_bench"
  env "${knobs_ok[$ki]}" KASCADE_TORCH_SCRIPT=none timeout --kill-after=3 45 node packages/cuda/dist-device/bench-cli.mjs cuda-decode --out "$JOB_OUT/cuda-decode-knob-$ki.json" \
    ${reps[@]+"${reps[@]}"} -- --variants "$knob_bench" > "$JOB_OUT/knob-bench.log" 2>&1
  say "bench under ${knobs_ok[$ki]}: exit $?"
  knob_rows "$JOB_OUT/cuda-decode-knob-$ki.json" "${knobs_ok[$ki]}"
  rm -f "$JOB_OUT/knob-bench.log" "$JOB_OUT/cuda-decode-knob-$ki.md" "$JOB_OUT/cuda-decode-knob-$ki.svg"
done
rm -f "$JOB_OUT/cuda-decode.md" "$JOB_OUT/cuda-decode.svg"
say done
