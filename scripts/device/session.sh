#!/usr/bin/env bash
# One device call for every CUDA job of a session (device time is scarce: one start, many checks).
# Run on the H200 from the repo root, after building here:
#   node packages/cuda/native/build.mjs --strict && node packages/cuda/scripts/bundle-device.mjs --core-from-git
# carry: [".device", "packages/cuda/build", "packages/cuda/dist-device", <bundles the jobs need>]
# command: bash scripts/device/session.sh <sha> [job ...]
# Each job is scripts/device/<job>.sh, given $JOB_OUT (its own folder under $OUT) and a time limit
# (seconds, env JOB_LIMIT_<job>, default 240). A job that fails or runs over does not stop the others.
set -u
sha=${1:?usage: session.sh <git sha> [job ...]}
shift
jobs=("$@")
[ ${#jobs[@]} -eq 0 ] && jobs=(decode prefill)
source .device/preamble.sh
export KASCADE_CUDA_ADDON=$PWD/packages/cuda/build/kascade_cuda.node KASCADE_GIT_COMMIT=$sha
nvidia-smi --query-gpu=name,clocks.sm,clocks.mem,temperature.gpu --format=csv > "$OUT/gpu.txt" 2>&1
for job in "${jobs[@]}"; do
  script=scripts/device/$job.sh
  limit_var=JOB_LIMIT_$job
  limit=${!limit_var:-240}
  export JOB_OUT=$OUT/$job
  mkdir -p "$JOB_OUT"
  start=$(date +%s)
  if [ -f "$script" ]; then
    timeout --kill-after=5 "$limit" bash "$script" > "$JOB_OUT/log.txt" 2>&1
    rc=$?
  else
    echo "no $script" > "$JOB_OUT/log.txt"
    rc=127
  fi
  echo "$job rc=$rc seconds=$(( $(date +%s) - start ))" | tee -a "$OUT/jobs.txt"
  tail -5 "$JOB_OUT/log.txt"
done
