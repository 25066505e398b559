#!/usr/bin/env bash
# One device call for every CUDA job of a session (device time is scarce: one start, many checks).
# Run on the H200 from the repo root, after building here:
#   node packages/cuda/native/build.mjs --strict && node packages/cuda/scripts/bundle-device.mjs --core-from-git
# carry: [".device", "packages/cuda/build", "packages/cuda/dist-device", <bundles the jobs need>]
# command: bash scripts/device/session.sh <sha> [job ...]
# Each job is scripts/device/<job>.sh, given $JOB_OUT (its own folder under $OUT) and a time limit
# (seconds, env JOB_LIMIT_<job>, default 240). A job that fails or runs over does not stop the others.
# Everything under $OUT is packed into $OUT/results.tgz at the end (the device returns at most 8
# files), so the jobs' limits must end well inside the call's own limit.
# A job named bg:<job> starts at once in the background (CPU work beside the GPU jobs, e.g. the
# accuracy grid on the host's cores) and is waited for at the end.
# The call of 2026-11-29 (about 13:30 UTC; device time left then is about 11 minutes, start and
# transfers included) runs: bg:accuracy (13 of the 16 host cores, 530 s) decode prefill webgpu, with
# JOB_LIMIT_decode=235 JOB_LIMIT_prefill=200 JOB_LIMIT_webgpu=100 (seconds, node start included).
set -u
sha=${1:?usage: session.sh <git sha> [job ...]}
shift
jobs=("$@")
[ ${#jobs[@]} -eq 0 ] && jobs=(decode prefill)
source .device/preamble.sh
export KASCADE_CUDA_ADDON=$PWD/packages/cuda/build/kascade_cuda.node KASCADE_GIT_COMMIT=$sha
nvidia-smi --query-gpu=name,clocks.sm,clocks.mem,temperature.gpu --format=csv > "$OUT/gpu.txt" 2>&1
run_job() {
  local job=$1 script=scripts/device/$1.sh limit_var=JOB_LIMIT_${1//-/_}
  local limit=${!limit_var:-240}
  local out=$OUT/$job
  mkdir -p "$out"
  local start=$(date +%s) rc
  if [ -f "$script" ]; then
    JOB_OUT=$out timeout --kill-after=5 "$limit" bash "$script" > "$out/log.txt" 2>&1
    rc=$?
  else
    echo "no $script" > "$out/log.txt"
    rc=127
  fi
  echo "$job rc=$rc seconds=$(( $(date +%s) - start ))" | tee -a "$OUT/jobs.txt"
  tail -5 "$out/log.txt"
}
bg_pids=()
fg_jobs=()
for job in "${jobs[@]}"; do
  case $job in
    bg:*) run_job "${job#bg:}" & bg_pids+=($!) ;;
    *) fg_jobs+=("$job") ;;
  esac
done
for job in "${fg_jobs[@]}"; do
  run_job "$job"
done
for pid in "${bg_pids[@]}"; do wait "$pid"; done
# $OUT brings back at most 8 files: everything goes home as one archive (unpack it here with
# tar xzf results.tgz); jobs.txt stays beside it for a quick look.
( cd "$OUT" && tar czf results.tgz --exclude=results.tgz ./* && find . -mindepth 1 -maxdepth 1 ! -name results.tgz ! -name jobs.txt -exec rm -rf {} + )
ls -la "$OUT"
exit 0
