#!/usr/bin/env bash
# WebGPU job of scripts/device/session.sh (issue 5): kascade-bench webgpu-decode on the H200 through
# Dawn/Vulkan, the 'teams' decode kernel (the 'chunked' one is no longer timed: it lost by 2.4-2.9x at
# af4b1c8), after a parity check against the float64 core reference on the H200 of the defaults and of
# every option the sweep times (fused split merge, index prefetch, radix/classic select), each role
# run three times (bits must agree), and the radix select's output compared with the classic one's.
#
# Build here first (bundles the benches with @kascade/core and @kascade/webgpu, ~125 KB, no node_modules):
#   node packages/webgpu/scripts/bundle-bench.mjs        -> packages/webgpu/.bench/webgpu-device.mjs
# carry: [".device", "packages/webgpu/.bench"]
# Run by: bash scripts/device/session.sh <sha> ... webgpu   (JOB_OUT, KASCADE_GIT_COMMIT and the
# preamble's node + DAWN_NODE_PATH come from there; JOB_LIMIT_webgpu=110 s).
#
# Writes $JOB_OUT/webgpu-decode.{json,md}: 128k at batch 1 (parity, defaults, sweep), 128k at batch 8
# (defaults, sweep), then 32k and 8k (defaults) if time allows, merged into one results file. Back here, redraw the SVG with
#   node packages/webgpu/.bench/webgpu-device.mjs --merge apps/bench/results/webgpu-decode.json <returned json>
set -u
out=${JOB_OUT:?JOB_OUT not set}
export KASCADE_COMMIT=${KASCADE_GIT_COMMIT:-unknown}
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
long=131072 short=32768,8192 quick= limA=45 limB=40 total=100
if [ -n "${KASCADE_WEBGPU_SMOKE:-}" ]; then long=256 short=128 quick=--quick limA=900 limB=900 total=2400; fi
echo "node $(node --version), DAWN_NODE_PATH=${DAWN_NODE_PATH:-unset}, commit $KASCADE_COMMIT"
start=$(date +%s)
# Each part writes its own results when it ends, so a part cut off by its limit loses only itself.
timeout --kill-after=3 "$limA" node "$bundle" "$out/p128k1" $quick webgpu-decode -- --contexts=$long --batches=1 --kernels=teams
echo "128k b1 rc=$? after $(( $(date +%s) - start )) s"
timeout --kill-after=3 "$limB" node "$bundle" "$out/p128k8" $quick webgpu-decode -- --contexts=$long --batches=8 --kernels=teams --no-parity
echo "128k b8 rc=$? after $(( $(date +%s) - start )) s"
left=$(( total - ($(date +%s) - start) ))
if [ "$left" -gt 12 ]; then
  timeout --kill-after=3 "$left" node "$bundle" "$out/p32k" $quick webgpu-decode -- --contexts=$short --batches=1,8 --kernels=teams --no-parity --no-sweep
  echo "32k/8k rc=$? after $(( $(date +%s) - start )) s"
fi
parts=()
for p in p128k1 p128k8 p32k; do
  [ -s "$out/$p/webgpu-decode.json" ] && parts+=("$out/$p/webgpu-decode.json")
done
# Few files come back from a device call: keep the merged JSON and Markdown (the SVG is redrawn
# here with --merge of the one file), or the parts' JSON when the merge fails.
if [ ${#parts[@]} -gt 0 ] && node "$bundle" --merge "$out/webgpu-decode.json" "${parts[@]}"; then
  rm -rf "$out/p128k1" "$out/p128k8" "$out/p32k" "$out/webgpu-decode.svg"
else
  rm -f "$out"/p*/webgpu-decode.md "$out"/p*/webgpu-decode.svg
fi
ls -la "$out"
