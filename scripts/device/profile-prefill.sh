#!/usr/bin/env bash
# ncu per-kernel view of the prefill ops at 32k (issue 8): where layer 0's and the anchor's time goes
# (statistics pass, pool, select, sparse pass) and how the new kernels use the GPU. Run by
# scripts/device/session.sh with $JOB_OUT (limit ~60 s). One cuda-prefill bench pass at 32k, one call per
# op (no warm-up, no torch), under presets v18 (swizzled wgmma attention v8, swizzled pools v5 in layer 0
# / v6 in the anchor), v21 (the TMA + warp-specialised dense v10) and v23 (two tiles per pooling block,
# pools v9 / v10), each kernel timed by ncu:
# kernels.csv (time, DRAM bytes, L2 hit rate, SM / tensor / MUFU throughput, occupancy, launch shape),
# then the detailed sections (with warp stall reasons) of one launch of each new kernel (detail-*.txt), as far
# as the time allows.
set -u
: "${JOB_OUT:?JOB_OUT must name the output folder}"
export KASCADE_CUDA_ADDON=${KASCADE_CUDA_ADDON:-$PWD/packages/cuda/build/kascade_cuda.node}
NCU=$(command -v ncu || ls /usr/local/cuda/bin/ncu 2>/dev/null || echo ncu)
n=${PROFILE_PREFILL_CONTEXT:-32768}
presets=${PROFILE_PREFILL_PRESETS:-v18,v21,v23}
metrics=gpu__time_duration.sum,dram__bytes_read.sum,dram__bytes_write.sum,lts__t_sector_hit_rate.pct,sm__throughput.avg.pct_of_peak_sustained_elapsed,sm__pipe_tensor_op_hmma_cycles_active.avg.pct_of_peak_sustained_active,sm__inst_executed_pipe_xu.avg.pct_of_peak_sustained_active,sm__warps_active.avg.pct_of_peak_sustained_active,launch__grid_size,launch__block_size,launch__registers_per_thread,launch__shared_mem_per_block_dynamic
t0=$(date +%s)
timeout 40 "$NCU" --clock-control none --metrics "$metrics" --csv \
  env KASCADE_PREFILL_CONTEXTS="$n" KASCADE_PREFILL_TORCH=0 KASCADE_PREFILL_VARIANTS="$presets" \
  node packages/cuda/dist-device/bench-cli.mjs cuda-prefill --warmup 0 --repeats 1 \
  --out "$JOB_OUT/bench-under-ncu.json" > "$JOB_OUT/kernels.csv" 2> "$JOB_OUT/kernels.err"
echo "kernels.csv rc=$? after $(($(date +%s) - t0)) s"
# name:kernel regex:launches skipped:launches profiled:preset. Under v21 the first prefill_dense_v9 launch is
# the dense op; under v23 the first two pool_v3 launches are layer 0's (two tiles per block, v9) and the
# anchor's (fused, v10); under v18 the v6-v8 kernel's first launch is the dense op.
for spec in dense-v10:prefill_dense_v9:0:1:v21 pool-v9-v10:pool_v3_kernel:0:2:v23 \
  dense-v8:prefill_dense_v6:0:1:v18; do
  IFS=: read -r name k skip c preset <<< "$spec"
  [ $(($(date +%s) - t0)) -gt 40 ] && { echo "skipping detail-$name (time)"; continue; }
  timeout 15 "$NCU" --clock-control none --set detailed --section WarpStateStats --section SchedulerStats -k "regex:$k" --launch-skip "$skip" -c "$c" \
    env KASCADE_PREFILL_CONTEXTS="$n" KASCADE_PREFILL_TORCH=0 KASCADE_PREFILL_VARIANTS="$preset" \
    node packages/cuda/dist-device/bench-cli.mjs cuda-prefill --warmup 0 --repeats 1 --out /tmp/pp.json \
    > "$JOB_OUT/detail-$name.txt" 2>&1
  echo "detail-$name rc=$? after $(($(date +%s) - t0)) s"
done
echo done
