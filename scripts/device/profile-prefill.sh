#!/usr/bin/env bash
# ncu per-kernel view of the prefill ops at 32k (issue 8): where layer 0's and the anchor's time goes
# (statistics pass, pool, select, sparse pass) and how the kernels use the GPU. Run by scripts/device/session.sh with
# $JOB_OUT (limit 100 s). One cuda-prefill bench pass at 32k, one call per op (no warm-up, no torch), under presets
# v60 (the defaults since session 8's call B), v64, v65 and v66 (session 9's candidates: pool v64, the pool's
# descriptors as constant offsets; pool v65, v64 with four tiles per pool CTA; pool v66, v64 with float4 row
# constants):
# the dense v9 kernel (dense, dense + statistics), the statistics, pool, select and sparse kernels timed by ncu:
# kernels.csv (time, DRAM bytes, L2 hit rate, SM / tensor / MUFU / L1 (shared memory) / issue throughput, occupancy,
# launch shape); then layer 0's pool under v65 in detail (detail-pool-v65.txt: the sections, stall reasons,
# scheduler statistics) and under v64 and v65 as per-instruction SASS with executed counts and warp stall samples
# (detail-pool-<preset>-sass.txt, CSV: the instructions per pooled score); the pool's probe 2 (probe-2.csv: no
# products; call A also ran probe 1, no exponentials); then per-launch durations of the pool at 128k
# (kernels-128k-pool-<preset>.csv: the reuse selection anchor's four pooled passes under the defaults (v60), then
# layer 0's four under v64 / v65). (nsys, for a trace of the gaps between an op's launches, is not installed on the device:
# call A of session 8.)
set -u
: "${JOB_OUT:?JOB_OUT must name the output folder}"
export KASCADE_CUDA_ADDON=${KASCADE_CUDA_ADDON:-$PWD/packages/cuda/build/kascade_cuda.node}
NCU=$(command -v ncu || ls /usr/local/cuda/bin/ncu 2>/dev/null || echo ncu)
n=${PROFILE_PREFILL_CONTEXT:-32768}
presets=${PROFILE_PREFILL_PRESETS:-v60,v64,v65,v66}
metrics=gpu__time_duration.sum,dram__bytes_read.sum,dram__bytes_write.sum,lts__t_sector_hit_rate.pct,lts__t_bytes.sum,sm__throughput.avg.pct_of_peak_sustained_elapsed,sm__pipe_tensor_op_hmma_cycles_active.avg.pct_of_peak_sustained_active,sm__inst_executed_pipe_xu.avg.pct_of_peak_sustained_active,l1tex__throughput.avg.pct_of_peak_sustained_active,sm__inst_issued.avg.pct_of_peak_sustained_active,sm__inst_executed.sum,smsp__cycles_active.avg,sm__warps_active.avg.pct_of_peak_sustained_active,launch__grid_size,launch__block_size,launch__registers_per_thread,launch__shared_mem_per_block_dynamic
t0=$(date +%s)
timeout 45 "$NCU" --clock-control none --metrics "$metrics" --csv -k "regex:prefill_dense_v9|prefill_stats_v17|pool_v17|select_prefill|sparse_v9" \
  env KASCADE_PREFILL_CONTEXTS="$n" KASCADE_PREFILL_TORCH=0 KASCADE_PREFILL_VARIANTS="$presets" \
  node packages/cuda/dist-device/bench-cli.mjs cuda-prefill --warmup 0 --repeats 1 \
  --out "$JOB_OUT/bench-under-ncu.json" > "$JOB_OUT/kernels.csv" 2> "$JOB_OUT/kernels.err"
echo "kernels.csv rc=$? after $(($(date +%s) - t0)) s"
# name:kernel regex:launches skipped:launches profiled:preset[:context[:page]]. The bench first runs one anchor under
# the defaults (v60: a prefill_stats_v17, a pool_v17, two select_prefill_v3 and a sparse_v9 launch at 32k) for the
# reuse selection; then under a preset run alone pool_v17 launch 1 is layer 0's (at 32k every pair fits one pooled
# pass). Each detail file names the kernel it caught (template arguments included: <T, NC, TPC, ROWMAX>).
# page "raw": every metric the sections collected as one CSV row; "source": per-instruction stall samples (SASS, CSV).
for spec in pool-v65:pool_v17:1:1:v65 pool-v64-sass:pool_v17:1:1:v64:32768:source \
  pool-v65-sass:pool_v17:1:1:v65:32768:source; do
  IFS=: read -r name k skip c preset ctx page <<< "$spec"
  [ $(($(date +%s) - t0)) -gt 70 ] && { echo "skipping detail-$name (time)"; continue; }
  case ${page:-} in
    raw) pageArgs=(--page raw --csv) ;;
    source) pageArgs=(--section SourceCounters --page source --print-source sass --csv) ;;
    *) pageArgs=() ;;
  esac
  timeout 15 "$NCU" --clock-control none --set detailed --section WarpStateStats --section SchedulerStats \
    "${pageArgs[@]}" -k "regex:$k" --launch-skip "$skip" -c "$c" \
    env KASCADE_PREFILL_CONTEXTS="${ctx:-$n}" KASCADE_PREFILL_TORCH=0 KASCADE_PREFILL_VARIANTS="$preset" \
    node packages/cuda/dist-device/bench-cli.mjs cuda-prefill --warmup 0 --repeats 1 --out /tmp/pp.json \
    > "$JOB_OUT/detail-$name.txt" 2>&1
  echo "detail-$name rc=$? after $(($(date +%s) - t0)) s"
done
# The pool's probes (KASCADE_PREFILL_POOL_PROBE, measurement only: wrong pooled scores): layer 0's pool under v60 at
# 32k with no exponentials (1: the products, copies and turns alone; call A: 5.18 ms, tensor pipe 97.3 %) and with no
# products (2: the exponentials and the consumers' instructions alone; call A's probe 2 let the compiler share
# exponentials between equal accumulator entries, fixed since), the kernels.csv metrics (probe-<n>.csv).
for probe in 2; do
  [ $(($(date +%s) - t0)) -gt 70 ] && { echo "skipping probe-$probe.csv (time)"; continue; }
  timeout 12 "$NCU" --clock-control none --metrics "$metrics" --csv -k "regex:pool_v17" --launch-skip 1 -c 1 \
    env KASCADE_PREFILL_POOL_PROBE=$probe KASCADE_PREFILL_CONTEXTS="$n" KASCADE_PREFILL_TORCH=0 \
    KASCADE_PREFILL_VARIANTS=v60 node packages/cuda/dist-device/bench-cli.mjs cuda-prefill --warmup 0 --repeats 1 \
    --out /tmp/pp-probe.json > "$JOB_OUT/probe-$probe.csv" 2>&1
  echo "probe-$probe.csv rc=$? after $(($(date +%s) - t0)) s"
done
# The pool at 128k: the duration of the first eight pool launches of one bench pass under v64 / v65 (the defaults'
# anchor for the reuse selection: four pooled passes of pool v60; then layer 0's four under the preset). Time only.
for preset in v64 v65; do
  [ $(($(date +%s) - t0)) -gt 76 ] && { echo "skipping kernels-128k-pool-$preset.csv (time)"; continue; }
  timeout 11 "$NCU" --clock-control none --metrics gpu__time_duration.sum --csv -k "regex:pool_v17" -c 8 \
    env KASCADE_PREFILL_CONTEXTS=131072 KASCADE_PREFILL_TORCH=0 KASCADE_PREFILL_VARIANTS=$preset \
    node packages/cuda/dist-device/bench-cli.mjs cuda-prefill --warmup 0 --repeats 1 --out /tmp/pp128.json \
    > "$JOB_OUT/kernels-128k-pool-$preset.csv" 2>&1
  echo "kernels-128k-pool-$preset.csv rc=$? after $(($(date +%s) - t0)) s"
done
echo done
