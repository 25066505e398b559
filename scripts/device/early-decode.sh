#!/usr/bin/env bash
# Issue 4, early correctness window (run by scripts/device/session.sh with $JOB_OUT; limit 150 s;
# the GPU may be shared, so no timings here): decode parity of every kernel variant on the quick
# case set (bf16 and f16, g 1/2/4/8, d 128 and 64, the long 65537-key case), no prefill.
# Built here first: node packages/cuda/native/build.mjs --strict && node packages/cuda/scripts/bundle-device.mjs --core-from-git
# Leaves in $JOB_OUT: cuda-parity.json (its progress goes to the job's log.txt).
set -u
: "${JOB_OUT:?JOB_OUT must name the output folder}"
t0=$(date +%s)
say() { echo "[early-decode +$(($(date +%s) - t0)) s] $*"; }
export KASCADE_CUDA_ADDON=${KASCADE_CUDA_ADDON:-$PWD/packages/cuda/build/kascade_cuda.node}
variants=${DECODE_VARIANTS:-0,1,2,4,5,6}
say "parity (quick cases), variants $variants"
timeout --kill-after=5 130 node packages/cuda/dist-device/device-check.mjs "$JOB_OUT/cuda-parity.json" \
  --quick --no-prefill --variants "$variants"
say "parity exit $?"
