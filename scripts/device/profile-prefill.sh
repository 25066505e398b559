#!/usr/bin/env bash
# ncu per-kernel view of the prefill ops (issue 8): where layer 0's and the anchor's time goes (statistics pass, pool,
# select, sparse pass) and how the kernels use the GPU. Run by scripts/device/session.sh with $JOB_OUT (limit 100 s).
# Session 9 (call C): one cuda-prefill bench pass at 32k and one at 8k, one call per op (no warm-up, no torch), under
# presets v67 (the defaults since session 9: pool v67, four tiles per CTA from 2048 four-tile CTAs per launch on, so
# at 32k but not at 8k) and v60 (session 8's defaults): the dense v9 kernel (dense, dense + statistics), the
# statistics, pool, select and sparse kernels timed by ncu (kernels.csv, kernels-8k.csv: time, DRAM bytes, L2 bytes
# and hit rate, SM / tensor / MUFU / L1 (shared memory) / issue throughput, instructions, active cycles, occupancy,
# launch shape); the pool's two probes (KASCADE_PREFILL_POOL_PROBE, measurement only: wrong pooled scores; layer 0's
# pool under v60 at 32k): no exponentials (probe-1.csv: the products, copies and turns alone) and no products
# (probe-2.csv: the exponentials and the consumers' instructions alone); then the duration of the first eight pool
# launches of one bench pass at 128k under v67 (kernels-128k-pool.csv: the reuse selection anchor's four pooled
# passes, then layer 0's four, all under v67, the defaults). Calls A and B of session 9 also took the pool's SASS source pages
# (instructions per step, warp stall samples) under v60, v63, v64 and v65. (nsys is not installed on the device.)
# Session 10's call A (eae88d3) ran v67, v68 and v69 here (the 32k passes; v68 / v69 are gone); call B this list.
# Session 11: call A (b896e8b) ran v67 and v71-v74 at 32k (v71-v74 are gone); call B (7e6e148) v67, v75 and v60 at
# 32k. Since then: v75 (the defaults) and v67 at 32k (PROFILE_PREFILL_PRESETS), v75 and v60 at 8k
# (PROFILE_PREFILL_PRESETS_8K: v75 runs v67's one-tile pool there) and the 128k pool launches under v75
# (PROFILE_PREFILL_128K).
# Session 12: call A (8aa10f0) ran v75 and v76-v78 at 32k, call B (f827b59) v75 and v79-v82 (all gone), each with
# layer 0's pool at 32k as per-instruction SASS with warp stall samples (detail-pool-<preset>-sass.txt; set
# PROFILE_PREFILL_SASS to the presets, none by default). The probes are off unless PROFILE_PREFILL_PROBES names them
# (their figures do not move: 8.36 / 8.80 M cycles in sessions 9-11). The defaults are session 11's list again: v75
# and v67 at 32k, v75 and v60 at 8k, the 128k pool launches under v75.
set -u
: "${JOB_OUT:?JOB_OUT must name the output folder}"
export KASCADE_CUDA_ADDON=${KASCADE_CUDA_ADDON:-$PWD/packages/cuda/build/kascade_cuda.node}
NCU=$(command -v ncu || ls /usr/local/cuda/bin/ncu 2>/dev/null || echo ncu)
presets=${PROFILE_PREFILL_PRESETS:-v75,v67}
metrics=gpu__time_duration.sum,dram__bytes_read.sum,dram__bytes_write.sum,lts__t_sector_hit_rate.pct,lts__t_bytes.sum,sm__throughput.avg.pct_of_peak_sustained_elapsed,sm__pipe_tensor_op_hmma_cycles_active.avg.pct_of_peak_sustained_active,sm__inst_executed_pipe_xu.avg.pct_of_peak_sustained_active,l1tex__throughput.avg.pct_of_peak_sustained_active,sm__inst_issued.avg.pct_of_peak_sustained_active,sm__inst_executed.sum,smsp__cycles_active.avg,sm__warps_active.avg.pct_of_peak_sustained_active,launch__grid_size,launch__block_size,launch__registers_per_thread,launch__shared_mem_per_block_dynamic
t0=$(date +%s)
for spec in "kernels:32768:$presets" "kernels-8k:8192:${PROFILE_PREFILL_PRESETS_8K:-v75,v60}"; do
  IFS=: read -r name ctx pre <<< "$spec"
  timeout 40 "$NCU" --clock-control none --metrics "$metrics" --csv \
    -k "regex:prefill_dense_v9|prefill_stats_v17|pool_v17|select_prefill|sparse_v9" \
    env KASCADE_PREFILL_CONTEXTS="$ctx" KASCADE_PREFILL_TORCH=0 KASCADE_PREFILL_VARIANTS="$pre" \
    node packages/cuda/dist-device/bench-cli.mjs cuda-prefill --warmup 0 --repeats 1 \
    --out "$JOB_OUT/bench-under-ncu-$ctx.json" > "$JOB_OUT/$name.csv" 2> "$JOB_OUT/$name.err"
  echo "$name.csv rc=$? after $(($(date +%s) - t0)) s"
done
# Layer 0's pool at 32k (pool_v17 launch 1: launch 0 is the reuse selection anchor's, under the defaults) as
# per-instruction SASS: executed instructions and warp stall samples per instruction (ncu's source page, CSV).
for preset in ${PROFILE_PREFILL_SASS-}; do
  [ $(($(date +%s) - t0)) -gt 62 ] && { echo "skipping detail-pool-$preset-sass.txt (time)"; continue; }
  timeout 16 "$NCU" --clock-control none --set detailed --section WarpStateStats --section SchedulerStats \
    --section SourceCounters --page source --print-source sass --csv -k "regex:pool_v17" --launch-skip 1 -c 1 \
    env KASCADE_PREFILL_CONTEXTS=32768 KASCADE_PREFILL_TORCH=0 KASCADE_PREFILL_VARIANTS="$preset" \
    node packages/cuda/dist-device/bench-cli.mjs cuda-prefill --warmup 0 --repeats 1 --out /tmp/pp-sass.json \
    > "$JOB_OUT/detail-pool-$preset-sass.txt" 2>&1
  echo "detail-pool-$preset-sass.txt rc=$? after $(($(date +%s) - t0)) s"
done
# The pool's probes (PROFILE_PREFILL_PROBES=1 2; none by default since session 12): layer 0's pool under v60 at 32k
# (pool_v17 launch 1: launch 0 is the reuse selection anchor's, under the defaults; the probes apply to pool v60 alone).
for probe in ${PROFILE_PREFILL_PROBES-}; do
  [ $(($(date +%s) - t0)) -gt 75 ] && { echo "skipping probe-$probe.csv (time)"; continue; }
  timeout 12 "$NCU" --clock-control none --metrics "$metrics" --csv -k "regex:pool_v17" --launch-skip 1 -c 1 \
    env KASCADE_PREFILL_POOL_PROBE=$probe KASCADE_PREFILL_CONTEXTS=32768 KASCADE_PREFILL_TORCH=0 \
    KASCADE_PREFILL_VARIANTS=v60 node packages/cuda/dist-device/bench-cli.mjs cuda-prefill --warmup 0 --repeats 1 \
    --out /tmp/pp-probe.json > "$JOB_OUT/probe-$probe.csv" 2>&1
  echo "probe-$probe.csv rc=$? after $(($(date +%s) - t0)) s"
done
if [ $(($(date +%s) - t0)) -le 84 ]; then
  timeout 12 "$NCU" --clock-control none --metrics gpu__time_duration.sum --csv -k "regex:pool_v17" -c 8 \
    env KASCADE_PREFILL_CONTEXTS=131072 KASCADE_PREFILL_TORCH=0 KASCADE_PREFILL_VARIANTS=${PROFILE_PREFILL_128K:-v75} \
    node packages/cuda/dist-device/bench-cli.mjs cuda-prefill --warmup 0 --repeats 1 --out /tmp/pp128.json \
    > "$JOB_OUT/kernels-128k-pool.csv" 2>&1
  echo "kernels-128k-pool.csv rc=$? after $(($(date +%s) - t0)) s"
else
  echo "skipping kernels-128k-pool.csv (time)"
fi
echo done
