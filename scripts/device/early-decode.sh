#!/usr/bin/env bash
# Issue 4, early correctness window (run by scripts/device/session.sh with $JOB_OUT; limit 150 s;
# the GPU may be shared, so no timings here): decode parity of every kernel variant on the quick
# case set (bf16 and f16, g 1/2/4/8, d 128 and 64, the long 65537-key case), no prefill. The TMA
# variants (bits 1 and 16) run in a process of their own, so a hang there cannot cost the others' results.
# Built here first: node packages/cuda/native/build.mjs --strict && node packages/cuda/scripts/bundle-device.mjs --core-from-git
# Leaves in $JOB_OUT: cuda-parity.json (variants 0,2,4,12,44,76), cuda-parity-bulk.json (1,13) and
# cuda-parity-tma.json (16,28,29,60,61,124).
set -u
: "${JOB_OUT:?JOB_OUT must name the output folder}"
t0=$(date +%s)
say() { echo "[early-decode +$(($(date +%s) - t0)) s] $*"; }
export KASCADE_CUDA_ADDON=${KASCADE_CUDA_ADDON:-$PWD/packages/cuda/build/kascade_cuda.node}
say "parity (quick cases), variants 0,2,4,12,44,76"
timeout --kill-after=3 60 node packages/cuda/dist-device/device-check.mjs "$JOB_OUT/cuda-parity.json" \
  --quick --no-prefill --variants 0,2,4,12,44,76 | grep -vE "^ok"
say "parity exit ${PIPESTATUS[0]}"
say "parity (quick cases), variants 1,13 (TMA bulk rows)"
timeout --kill-after=3 40 node packages/cuda/dist-device/device-check.mjs "$JOB_OUT/cuda-parity-bulk.json" \
  --quick --no-prefill --variants 1,13 | grep -vE "^ok"
say "parity exit ${PIPESTATUS[0]}"
say "parity (quick cases), variants 16,28,29,60,61,124 (TMA tensor tiles)"
timeout --kill-after=3 40 node packages/cuda/dist-device/device-check.mjs "$JOB_OUT/cuda-parity-tma.json" \
  --quick --no-prefill --variants 16,28,29,60,61,124 | grep -vE "^ok"
say "parity exit ${PIPESTATUS[0]}"
