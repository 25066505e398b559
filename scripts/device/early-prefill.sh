#!/usr/bin/env bash
# Issue 8, early correctness window (150 s, the GPU shared with a training job: no timings). Full prefill
# parity of the new kernel variant v2 (v1 passed 60/60 in the last session and is unchanged).
set -u
: "${JOB_OUT:?JOB_OUT must name the output folder}"
t0=$(date +%s)
export KASCADE_CUDA_ADDON=${KASCADE_CUDA_ADDON:-$PWD/packages/cuda/build/kascade_cuda.node}
echo "[early-prefill] parity v2 (full cases)"
timeout --kill-after=5 140 node packages/cuda/dist-device/device-check.mjs \
  "$JOB_OUT/cuda-prefill-parity-v2.json" --prefill-only --prefill-variants=v2
echo "[early-prefill] exit $? after $(($(date +%s) - t0)) s"
