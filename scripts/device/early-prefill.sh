#!/usr/bin/env bash
# Issue 8, early correctness window (150 s, the GPU shared with a training job: no timings). Prefill parity
# of the new kernel presets v2 (32 rows per warp), v3 (wgmma attention), v4 (v3 + wgmma pool), v5 (two-warpgroup dense); v1 passed 60/60 in the last session and
# is unchanged. Each check prints a line as it finishes, so a run cut short still says what passed.
set -u
: "${JOB_OUT:?JOB_OUT must name the output folder}"
t0=$(date +%s)
export KASCADE_CUDA_ADDON=${KASCADE_CUDA_ADDON:-$PWD/packages/cuda/build/kascade_cuda.node}
echo "[early-prefill] parity v2, v3, v4, v5 (quick cases + the long chunk)"
timeout --kill-after=5 140 node packages/cuda/dist-device/device-check.mjs \
  "$JOB_OUT/cuda-prefill-parity-early.json" --prefill-only --quick --prefill-long --prefill-variants=v2,v3,v4,v5
echo "[early-prefill] exit $? after $(($(date +%s) - t0)) s"
