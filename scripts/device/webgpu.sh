#!/usr/bin/env bash
# WebGPU job of scripts/device/session.sh (issue 5): kascade-bench webgpu-decode on the H200 through
# Dawn/Vulkan, the 'teams' (new, default) and 'chunked' (old) decode kernels timed in the same run,
# after a parity check of both against the float64 core reference on the H200.
#
# Build here first (bundles the benches with @kascade/core and @kascade/webgpu, ~125 KB, no node_modules):
#   node packages/webgpu/scripts/bundle-bench.mjs        -> packages/webgpu/.bench/webgpu-device.mjs
# carry: [".device", "packages/webgpu/.bench"]
# Run by: bash scripts/device/session.sh <sha> ... webgpu   (JOB_OUT, KASCADE_GIT_COMMIT and the
# preamble's node + DAWN_NODE_PATH come from there; about 120 s allowed).
#
# Writes $JOB_OUT/webgpu-decode.{json,md,svg}: 128k at batch 1 and 8 first (the targets),
# then 32k and 8k if time allows, merged into one results file.
set -u
out=${JOB_OUT:?JOB_OUT not set}
export KASCADE_COMMIT=${KASCADE_GIT_COMMIT:-unknown}
bundle=packages/webgpu/.bench/webgpu-device.mjs
if [ ! -s "$bundle" ]; then
  echo "missing $bundle: run node packages/webgpu/scripts/bundle-bench.mjs here and carry packages/webgpu/.bench"
  exit 2
fi
if [ -z "${DAWN_NODE_PATH:-}" ] && [ -f .device/preamble.sh ]; then
  source .device/preamble.sh
fi
echo "node $(node --version), DAWN_NODE_PATH=${DAWN_NODE_PATH:-unset}, commit $KASCADE_COMMIT"
start=$(date +%s)
timeout --kill-after=3 75 node "$bundle" "$out/p128k" webgpu-decode -- --contexts=131072 --batches=1,8
echo "128k rc=$? after $(( $(date +%s) - start )) s"
left=$(( 108 - ($(date +%s) - start) ))
if [ "$left" -gt 12 ]; then
  timeout --kill-after=3 "$left" node "$bundle" "$out/p32k" webgpu-decode -- --contexts=32768,8192 --batches=1,8 --no-parity --no-sweep
  echo "32k/8k rc=$? after $(( $(date +%s) - start )) s"
fi
parts=()
for p in p128k p32k; do
  [ -s "$out/$p/webgpu-decode.json" ] && parts+=("$out/$p/webgpu-decode.json")
done
if [ ${#parts[@]} -gt 0 ]; then
  node "$bundle" --merge "$out/webgpu-decode.json" "${parts[@]}"
fi
ls -la "$out"
