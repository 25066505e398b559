#!/usr/bin/env bash
# The CPU engine bench (`kascade-bench cpu-engine`: the bundled-size model with random weights, dense vs Kascade
# decode and prefill on the core CPU ops, one thread) on the GPU host's CPU, as a bg: job of session.sh beside
# GPU-bound jobs (it uses one core of sixteen; the long prefill kernels are not disturbed by it).
# Built here first: node packages/cuda/scripts/bundle-device.mjs --core-from-git (bench-cli.mjs carries every bench).
# Leaves in $JOB_OUT: cpu-engine.json (+ .md/.svg from `kascade-bench render` where the bundle can render) and
# lscpu.txt (the host CPU the figures are for).
set -u
: "${JOB_OUT:?JOB_OUT must name the output folder}"
lscpu > "$JOB_OUT/lscpu.txt" 2>&1
node packages/cuda/dist-device/bench-cli.mjs cpu-engine --out "$JOB_OUT/cpu-engine.json" ${CPU_ENGINE_ARGS:-} 2>&1 | tail -40
