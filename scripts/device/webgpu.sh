#!/usr/bin/env bash
# WebGPU job of scripts/device/session.sh (issue 5): kascade-bench webgpu-decode on the H200 through
# Dawn/Vulkan, the 'teams' decode kernel (the 'chunked' one is no longer timed: it lost by 2.4-2.9x at
# af4b1c8), after a parity check against the float64 core reference on the H200 of the defaults and of
# every option the sweep times (index prefetch, subgroup team merge, select chunk and schedule), each role run three
# times (bits must agree) and the anchors' Top-k checked against the float64 pooled scores; at 128k
# every role of the defaults (and the anchors with the folded select) run 30 times with NaN-poisoned
# split partials and slot (bits and selections must agree).
#
# Build here first (bundles the benches with @kascade/core and @kascade/webgpu, ~125 KB, no node_modules):
#   node packages/webgpu/scripts/bundle-bench.mjs        -> packages/webgpu/.bench/webgpu-device.mjs
# carry: [".device", "packages/webgpu/.bench"]
# Run by: bash scripts/device/session.sh <sha> ... webgpu   (JOB_OUT, KASCADE_GIT_COMMIT and the
# preamble's node + DAWN_NODE_PATH come from there; JOB_LIMIT_webgpu=110 s; WEBGPU_TOTAL_S, default 100,
# is the script's own budget).
#
# Writes $JOB_OUT/webgpu-decode.{json,md}: parity, the reuse probe, 128k at batch 1, 128k at batch 8, with the
# defaults (the targets), 32k and 8k (with WEBGPU_TUNING set, the same again with those options into
# webgpu-decode-tuned.{json,md}), then the sweep at 128k batch 1 and 8 in the time left (call B of
# session 4: 49 s for all parts, the probe 18 of them), merged into one results file; then webgpu-prefill
# (webgpu-prefill.{json,md}) if at least 40 s are left and WEBGPU_NO_PREFILL is unset. Back here, redraw the SVG with
#   node packages/webgpu/.bench/webgpu-device.mjs --merge apps/bench/results/webgpu-decode.json <returned json>
set -u
out=${JOB_OUT:?JOB_OUT not set}
export KASCADE_COMMIT=${KASCADE_GIT_COMMIT:-unknown}
# The SM-clock guard of the timings (apps/bench/src/benches/webgpu-common.ts, ClockGuard): each timing
# waits for a full clock and is taken again when the clock fell meanwhile; rows carry clockRatio.
export KASCADE_CLOCK_GUARD=${KASCADE_CLOCK_GUARD-1}
bundle=packages/webgpu/.bench/webgpu-device.mjs
if [ ! -s "$bundle" ]; then
  echo "missing $bundle: run node packages/webgpu/scripts/bundle-bench.mjs here and carry packages/webgpu/.bench"
  exit 2
fi
# KASCADE_WEBGPU_SMOKE=1 runs the same steps tiny and --quick (to try this script on SwiftShader here,
# with VK_ICD_FILENAMES set; Dawn then comes from the webgpu package).
if [ -z "${DAWN_NODE_PATH:-}" ] && [ -z "${KASCADE_WEBGPU_SMOKE:-}" ] && [ -f .device/preamble.sh ]; then
  source .device/preamble.sh # on the device when run alone (session.sh has sourced it already)
fi
mkdir -p "$out"
# lim0: the parity part (its own limit: session 10's call A checked 51 option sets x 4 roles in 37 s).
long=131072 short=32768,8192 quick= lim0=60 lim1=30 lim2=15 total=${WEBGPU_TOTAL_S:-100}
if [ -n "${KASCADE_WEBGPU_SMOKE:-}" ]; then long=256 short=128 quick=--quick lim0=900 lim1=300 lim2=150 total=1500; fi
echo "node $(node --version), DAWN_NODE_PATH=${DAWN_NODE_PATH:-unset}, commit $KASCADE_COMMIT"
start=$(date +%s)
# The GPU's clocks and power every 250 ms while the job runs (calls B and C of session 3 and call A of
# session 4 had stretches of 2-2.6x slower timings at batch 1 in the middle of a process).
smi_pid=
if command -v nvidia-smi > /dev/null 2>&1; then
  timeout 240 nvidia-smi --query-gpu=timestamp,clocks.sm,clocks.mem,power.draw,temperature.gpu,utilization.gpu --format=csv -lms 250 > "$out/clocks.csv" 2>&1 &
  smi_pid=$!
  trap 'kill "$smi_pid" 2> /dev/null' EXIT
  trap 'kill "$smi_pid" 2> /dev/null; exit 143' TERM INT
fi
left() { echo $(( total - ($(date +%s) - start) )); }
# Warm-up, results discarded: in call B the first part after the CUDA jobs ran on a GPU at 40% speed
# (copy 1523 GB/s, pass floor 20 us) while every later part was normal.
timeout --kill-after=3 15 node "$bundle" "$out/warmup" $quick webgpu-decode -- --contexts=$short --batches=1 --kernels=teams --no-parity --no-sweep --no-one-pass > /dev/null 2>&1
rm -rf "$out/warmup"
echo "warm-up done after $(( $(date +%s) - start )) s"
# Each part writes its own results when it ends, so a part cut off by its limit loses only itself.
# 0. Parity on the device, in a process of its own: in calls B and C the process that had run it
#    (11 option sets, some with very many registers per invocation) timed everything after it 2.6x
#    slow (copy 1520 GB/s), so no timing shares a process with unusual pipelines.
timeout --kill-after=3 "$lim0" node "$bundle" "$out/parity" $quick webgpu-decode -- --contexts=$long --batches=1 --kernels=teams --parity-only
echo "parity rc=$? after $(( $(date +%s) - start )) s"
# 0b. The reuse probe at 128k batch 1 (rows probe-*: floors, k scan of the defaults and of the
#     subgroup team merge, index patterns, merge, ops per pass, a gather-only kernel, the anchors'
#     stages) in a process of its own; WEBGPU_NO_PROBE=1 skips it. WEBGPU_PROBE_NR=1 runs it again
#     with Dawn's bounds clamps off (rows with dawnToggles; call A of session 4: nothing got faster).
#     Since session 12 the probe starts with the split passes taken apart (rows probe-split: as they run,
#     math alone, loads alone), and 0c runs those at batch 8 too.
if [ -z "${WEBGPU_NO_PROBE:-}" ]; then
  timeout --kill-after=3 "$lim1" node "$bundle" "$out/probe" $quick webgpu-decode -- --contexts=$long --batches=1 --kernels=teams --no-parity --probe-only
  echo "probe rc=$? after $(( $(date +%s) - start )) s"
  # 0c. The split passes taken apart at batch 8 (rows probe-split and the gather in the reuse's grid).
  timeout --kill-after=3 "$lim2" node "$bundle" "$out/probe8" $quick webgpu-decode -- --contexts=$long --batches=8 --kernels=teams --no-parity --probe-only
  echo "probe b8 rc=$? after $(( $(date +%s) - start )) s"
  if [ -n "${WEBGPU_PROBE_NR:-}" ]; then
    KASCADE_DAWN_ENABLE=disable_robustness timeout --kill-after=3 "$lim1" node "$bundle" "$out/probe-nr" $quick webgpu-decode -- --contexts=$long --batches=1 --kernels=teams --no-parity --probe-only
    echo "probe (disable_robustness) rc=$? after $(( $(date +%s) - start )) s"
  fi
fi
# 1. The headline: 128k at batch 1 and (in its own part) batch 8 with the defaults and the one-pass
#    models.
timeout --kill-after=3 "$lim1" node "$bundle" "$out/p128k1" $quick webgpu-decode -- --contexts=$long --batches=1 --kernels=teams --no-sweep --no-parity
echo "128k b1 rc=$? after $(( $(date +%s) - start )) s"
timeout --kill-after=3 "$lim1" node "$bundle" "$out/p128k8" $quick webgpu-decode -- --contexts=$long --batches=8 --kernels=teams --no-sweep --no-parity
echo "128k b8 rc=$? after $(( $(date +%s) - start )) s"
# 2. 32k and 8k with the defaults.
timeout --kill-after=3 "$lim2" node "$bundle" "$out/p32k" $quick webgpu-decode -- --contexts=$short --batches=1,8 --kernels=teams --no-parity --no-sweep --no-one-pass
echo "32k/8k rc=$? after $(( $(date +%s) - start )) s"
# 2b. The same headline parts (128k at batch 1 and 8, 32k and 8k) with a candidate default for every op
#     (WEBGPU_TUNING, team-kernel options as JSON; empty skips), merged into webgpu-decode-tuned.json:
#     whichever of the two sets holds the final defaults becomes the results file.
#     WEBGPU_TUNED_ARGS: more bench arguments for those parts only (e.g. --flush=read; session 12);
#     with it alone (WEBGPU_TUNING unset or empty) the parts run with --tuning={}.
tuning=${WEBGPU_TUNING-}
targs=${WEBGPU_TUNED_ARGS-}
[ -z "$tuning" ] && [ -n "$targs" ] && tuning='{}'
if [ -n "$tuning" ]; then
  timeout --kill-after=3 "$lim1" node "$bundle" "$out/t128k1" $quick webgpu-decode -- --contexts=$long --batches=1 --kernels=teams --no-sweep --no-parity --tuning="$tuning" $targs
  timeout --kill-after=3 "$lim1" node "$bundle" "$out/t128k8" $quick webgpu-decode -- --contexts=$long --batches=8 --kernels=teams --no-sweep --no-parity --tuning="$tuning" $targs
  timeout --kill-after=3 "$lim2" node "$bundle" "$out/t32k" $quick webgpu-decode -- --contexts=$short --batches=1,8 --kernels=teams --no-parity --no-sweep --no-one-pass --tuning="$tuning" $targs
  echo "tuned headline ($tuning $targs) rc=$? after $(( $(date +%s) - start )) s"
  tparts=()
  for p in t128k1 t128k8 t32k; do
    [ -s "$out/$p/webgpu-decode.json" ] && tparts+=("$out/$p/webgpu-decode.json")
  done
  if [ ${#tparts[@]} -gt 0 ] && node "$bundle" --merge "$out/webgpu-decode-tuned.json" "${tparts[@]}"; then
    rm -rf "$out/t128k1" "$out/t128k8" "$out/t32k" "$out/webgpu-decode-tuned.svg"
  fi
fi
# 3. The sweep of the team kernel's options at 128k, batch 1 then batch 8, in what time is left.
for b in ${WEBGPU_SWEEP_BATCHES-1 8}; do
  l=$(left)
  [ "$b" = 1 ] && l=$(( l * 11 / 20 ))
  [ "$l" -gt 35 ] && l=35
  if [ "$l" -gt 14 ]; then
    timeout --kill-after=3 "$l" node "$bundle" "$out/s128k$b" $quick webgpu-decode -- --contexts=$long --batches=$b --kernels=teams --no-parity --sweep-only --deadline-s=$(( l - 8 ))
    echo "sweep 128k b$b rc=$? after $(( $(date +%s) - start )) s"
  fi
done
# 4. webgpu-prefill (8k and 32k, batch 1; its own results file) if enough time is left.
l=$(left)
if [ "$l" -gt 40 ] && [ -z "${KASCADE_WEBGPU_SMOKE:-}" ] && [ -z "${WEBGPU_NO_PREFILL:-}" ]; then
  timeout --kill-after=3 "$l" node "$bundle" "$out/prefill" webgpu-prefill
  echo "prefill rc=$? after $(( $(date +%s) - start )) s"
  [ -s "$out/prefill/webgpu-prefill.json" ] && mv "$out/prefill/webgpu-prefill.json" "$out/prefill/webgpu-prefill.md" "$out/"
  rm -rf "$out/prefill"
fi
parts=()
for p in p128k1 probe probe8 probe-nr p128k8 p32k s128k1 s128k8 parity; do
  [ -s "$out/$p/webgpu-decode.json" ] && parts+=("$out/$p/webgpu-decode.json")
done
# Few files come back from a device call: keep the merged JSON and Markdown (the SVG is redrawn
# here with --merge of the one file), or the parts' JSON when the merge fails.
if [ ${#parts[@]} -gt 0 ] && node "$bundle" --merge "$out/webgpu-decode.json" "${parts[@]}"; then
  rm -rf "$out/parity" "$out/p128k1" "$out/p128k8" "$out/p32k" "$out/s128k1" "$out/s128k8" "$out/probe" "$out/probe8" "$out/probe-nr" "$out/webgpu-decode.svg"
else
  rm -f "$out"/[ps]*/webgpu-decode.md "$out"/[ps]*/webgpu-decode.svg
fi
[ -n "$smi_pid" ] && kill "$smi_pid" 2> /dev/null
ls -la "$out"
