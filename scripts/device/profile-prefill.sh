#!/usr/bin/env bash
# ncu per-kernel view of the prefill ops at 32k (issue 8): where layer 0's and the anchor's time goes
# (statistics pass, pool, select, sparse pass) and how the new kernels use the GPU. Run by
# scripts/device/session.sh with $JOB_OUT (limit ~60 s). One cuda-prefill bench pass at 32k, one call per
# op (no warm-up, no torch), under presets v28 (dense v9, sparse v9, pool v12; the anchor's statistics on dense
# v9) and v29, each kernel timed by ncu:
# kernels.csv (time, DRAM bytes, L2 hit rate, SM / tensor / MUFU throughput, occupancy, launch shape),
# then the detailed sections (with warp stall reasons) of one launch of each new kernel (detail-*.txt), as far
# as the time allows.
set -u
: "${JOB_OUT:?JOB_OUT must name the output folder}"
export KASCADE_CUDA_ADDON=${KASCADE_CUDA_ADDON:-$PWD/packages/cuda/build/kascade_cuda.node}
NCU=$(command -v ncu || ls /usr/local/cuda/bin/ncu 2>/dev/null || echo ncu)
n=${PROFILE_PREFILL_CONTEXT:-32768}
presets=${PROFILE_PREFILL_PRESETS:-v28,v29}
metrics=gpu__time_duration.sum,dram__bytes_read.sum,dram__bytes_write.sum,lts__t_sector_hit_rate.pct,sm__throughput.avg.pct_of_peak_sustained_elapsed,sm__pipe_tensor_op_hmma_cycles_active.avg.pct_of_peak_sustained_active,sm__inst_executed_pipe_xu.avg.pct_of_peak_sustained_active,sm__warps_active.avg.pct_of_peak_sustained_active,launch__grid_size,launch__block_size,launch__registers_per_thread,launch__shared_mem_per_block_dynamic
t0=$(date +%s)
timeout 40 "$NCU" --clock-control none --metrics "$metrics" --csv \
  env KASCADE_PREFILL_CONTEXTS="$n" KASCADE_PREFILL_TORCH=0 KASCADE_PREFILL_VARIANTS="$presets" \
  node packages/cuda/dist-device/bench-cli.mjs cuda-prefill --warmup 0 --repeats 1 \
  --out "$JOB_OUT/bench-under-ncu.json" > "$JOB_OUT/kernels.csv" 2> "$JOB_OUT/kernels.err"
echo "kernels.csv rc=$? after $(($(date +%s) - t0)) s"
# name:kernel regex:launches skipped:launches profiled:preset. Under v25 the prefill_dense_v9 launches are the
# dense op, dense + statistics (the op, then layer 0's), the anchor's statistics-only pass; the pool_v3
# launches layer 0's and the anchor's (three tiles per block, v9); under v28 the prefill_sparse_v9 launches are
# the anchor's sparse pass and reuse, the pool_v12 launches layer 0's and the anchor's pools; v29 = v28 with
# the exponentials of the statistics-only pass and the pool partly on the FMA pipe (dense v12, pool v13) and
# the 3-stage gather ring (sparse v12; its second launch is reuse).
for spec in stats-v12:prefill_dense_v9:3:1:v29 pool-v13:pool_v12_kernel:0:1:v29 \
  sparse-v12:prefill_sparse_v9:1:1:v29 stats-v9:prefill_dense_v9:3:1:v28; do
  IFS=: read -r name k skip c preset <<< "$spec"
  [ $(($(date +%s) - t0)) -gt 40 ] && { echo "skipping detail-$name (time)"; continue; }
  timeout 15 "$NCU" --clock-control none --set detailed --section WarpStateStats --section SchedulerStats -k "regex:$k" --launch-skip "$skip" -c "$c" \
    env KASCADE_PREFILL_CONTEXTS="$n" KASCADE_PREFILL_TORCH=0 KASCADE_PREFILL_VARIANTS="$preset" \
    node packages/cuda/dist-device/bench-cli.mjs cuda-prefill --warmup 0 --repeats 1 --out /tmp/pp.json \
    > "$JOB_OUT/detail-$name.txt" 2>&1
  echo "detail-$name rc=$? after $(($(date +%s) - t0)) s"
done
echo done
