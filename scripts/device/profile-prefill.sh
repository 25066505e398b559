#!/usr/bin/env bash
# ncu per-kernel view of the prefill ops at 32k (issue 8): where layer 0's and the anchor's time goes
# (statistics pass, pool, select, sparse pass) and how the kernels use the GPU. Run by scripts/device/session.sh with
# $JOB_OUT (limit 100 s). One cuda-prefill bench pass at 32k, one call per op (no warm-up, no torch), under presets
# v60 (the defaults since session 8's call B: the sampled select, sparse v61) and v56 (session 7's defaults): the
# dense v9 kernel (dense, dense + statistics), the statistics, pool, select and sparse kernels timed by ncu:
# kernels.csv (time, DRAM bytes, L2 hit rate, SM / tensor / MUFU throughput, occupancy, launch shape); then v61's
# per-instruction warp stall samples (detail-sparse-v61-sass.txt, CSV); then per-launch durations of the sparse pass
# at 128k under v56 (v12) and v60 (v61) (kernels-128k-*.csv). (nsys, for a trace of the gaps between an op's
# launches, is not installed on the device: call A of session 8.)
set -u
: "${JOB_OUT:?JOB_OUT must name the output folder}"
export KASCADE_CUDA_ADDON=${KASCADE_CUDA_ADDON:-$PWD/packages/cuda/build/kascade_cuda.node}
NCU=$(command -v ncu || ls /usr/local/cuda/bin/ncu 2>/dev/null || echo ncu)
n=${PROFILE_PREFILL_CONTEXT:-32768}
presets=${PROFILE_PREFILL_PRESETS:-v60,v56}
metrics=gpu__time_duration.sum,dram__bytes_read.sum,dram__bytes_write.sum,lts__t_sector_hit_rate.pct,sm__throughput.avg.pct_of_peak_sustained_elapsed,sm__pipe_tensor_op_hmma_cycles_active.avg.pct_of_peak_sustained_active,sm__inst_executed_pipe_xu.avg.pct_of_peak_sustained_active,sm__warps_active.avg.pct_of_peak_sustained_active,launch__grid_size,launch__block_size,launch__registers_per_thread,launch__shared_mem_per_block_dynamic
t0=$(date +%s)
timeout 50 "$NCU" --clock-control none --metrics "$metrics" --csv -k "regex:prefill_dense_v9|prefill_stats_v17|pool_v17|select_prefill|sparse_v9" \
  env KASCADE_PREFILL_CONTEXTS="$n" KASCADE_PREFILL_TORCH=0 KASCADE_PREFILL_VARIANTS="$presets" \
  node packages/cuda/dist-device/bench-cli.mjs cuda-prefill --warmup 0 --repeats 1 \
  --out "$JOB_OUT/bench-under-ncu.json" > "$JOB_OUT/kernels.csv" 2> "$JOB_OUT/kernels.err"
echo "kernels.csv rc=$? after $(($(date +%s) - t0)) s"
# name:kernel regex:launches skipped:launches profiled:preset[:context[:page]]. The bench first runs one anchor under
# the defaults (v60: a prefill_stats_v17, a pool_v17, two select_prefill_v3 and a sparse_v9 launch) for the reuse
# selection; then under a preset run alone select_prefill_v3 launch 1 is layer 0's (at 32k every pair fits one pooled
# pass; under v60 the sampled rows' launch comes first, then the short rows') and sparse_v9 launch 1 the anchor's
# sparse pass. Each detail file names the kernel it caught (template arguments included).
# page "raw": every metric the sections collected as one CSV row; "source": per-instruction stall samples (SASS, CSV).
for spec in sparse-v61-sass:sparse_v9:1:1:v60:32768:source; do
  IFS=: read -r name k skip c preset ctx page <<< "$spec"
  [ $(($(date +%s) - t0)) -gt 50 ] && { echo "skipping detail-$name (time)"; continue; }
  case $page in
    raw) pageArgs=(--page raw --csv) ;;
    source) pageArgs=(--section SourceCounters --page source --print-source sass --csv) ;;
    *) pageArgs=() ;;
  esac
  timeout 20 "$NCU" --clock-control none --set detailed --section WarpStateStats --section SchedulerStats \
    "${pageArgs[@]}" -k "regex:$k" --launch-skip "$skip" -c "$c" \
    env KASCADE_PREFILL_CONTEXTS="${ctx:-$n}" KASCADE_PREFILL_TORCH=0 KASCADE_PREFILL_VARIANTS="$preset" \
    node packages/cuda/dist-device/bench-cli.mjs cuda-prefill --warmup 0 --repeats 1 --out /tmp/pp.json \
    > "$JOB_OUT/detail-$name.txt" 2>&1
  echo "detail-$name rc=$? after $(($(date +%s) - t0)) s"
done
# The sparse pass at 128k (issue 8): the duration of every sparse launch of one bench pass at 128k
# (kernels-128k-<preset>.csv: the selection anchor's under the defaults (v61), then the anchor's three and reuse's
# under the preset). Time only (one pass, no replay).
for spec in v56:"sparse_v9":5 v60:"sparse_v9":5; do
  IFS=: read -r preset regex count <<< "$spec"
  [ $(($(date +%s) - t0)) -gt 70 ] && { echo "skipping kernels-128k-$preset (time)"; continue; }
  timeout 25 "$NCU" --clock-control none --metrics gpu__time_duration.sum --csv -k "regex:$regex" -c "$count" \
    env KASCADE_PREFILL_CONTEXTS=131072 KASCADE_PREFILL_TORCH=0 KASCADE_PREFILL_VARIANTS="$preset" \
    node packages/cuda/dist-device/bench-cli.mjs cuda-prefill --warmup 0 --repeats 1 --out /tmp/pp128.json \
    > "$JOB_OUT/kernels-128k-$preset.csv" 2>&1
  echo "kernels-128k-$preset.csv rc=$? after $(($(date +%s) - t0)) s"
done
echo done
