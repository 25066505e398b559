#!/usr/bin/env bash
# ncu per-kernel view of the prefill ops at 32k (issue 8): where layer 0's and the anchor's time goes
# (statistics pass, pool, select, sparse pass) and how the sparse kernels v2 / v5, the pools v2 / v3 / v4
# and the dense blocks of 4 / 8 warps use the GPU. Run by scripts/device/session.sh with $JOB_OUT (limit
# ~60 s). One cuda-prefill bench pass at 32k, one call per op (no warm-up, no torch), under presets v6 (the defaults) and v11 (dense v5:
# 8-warp blocks, sparse v5, pool v3 in layer 0 and v4 in the anchor), each kernel timed by ncu:
# kernels.csv (time, DRAM bytes, L2 hit rate, SM / tensor / MUFU throughput, occupancy, launch shape),
# then the detailed sections (v11) of one sparse v5 launch, the two pool v3 / v4 launches, one select
# launch and one 8-warp dense launch (detail-*.txt).
set -u
: "${JOB_OUT:?JOB_OUT must name the output folder}"
export KASCADE_CUDA_ADDON=${KASCADE_CUDA_ADDON:-$PWD/packages/cuda/build/kascade_cuda.node}
NCU=$(command -v ncu || ls /usr/local/cuda/bin/ncu 2>/dev/null || echo ncu)
n=${PROFILE_PREFILL_CONTEXT:-32768}
presets=${PROFILE_PREFILL_PRESETS:-v6,v11}
metrics=gpu__time_duration.sum,dram__bytes_read.sum,dram__bytes_write.sum,lts__t_sector_hit_rate.pct,sm__throughput.avg.pct_of_peak_sustained_elapsed,sm__pipe_tensor_op_hmma_cycles_active.avg.pct_of_peak_sustained_active,sm__inst_executed_pipe_xu.avg.pct_of_peak_sustained_active,sm__warps_active.avg.pct_of_peak_sustained_active,launch__grid_size,launch__block_size,launch__registers_per_thread,launch__shared_mem_per_block_dynamic
t0=$(date +%s)
timeout 40 "$NCU" --clock-control none --metrics "$metrics" --csv \
  env KASCADE_PREFILL_CONTEXTS="$n" KASCADE_PREFILL_TORCH=0 KASCADE_PREFILL_VARIANTS="$presets" \
  node packages/cuda/dist-device/bench-cli.mjs cuda-prefill --warmup 0 --repeats 1 \
  --out "$JOB_OUT/bench-under-ncu.json" > "$JOB_OUT/kernels.csv" 2> "$JOB_OUT/kernels.err"
echo "kernels.csv rc=$? after $(($(date +%s) - t0)) s"
# name:kernel regex:launches skipped:launches profiled. In the v11 pass the first attention launches are
# the reuse selection's anchor (statistics, then sparse v2: skipped), then v11's dense layer.
for spec in sparse-v5:prefill_sparse_v5:0:1 pool-v3-v4:pool_v3_kernel:0:2 select:select_prefill:0:1 \
  dense-wide:prefill_attn_v2:2:1; do
  IFS=: read -r name k skip c <<< "$spec"
  [ $(($(date +%s) - t0)) -gt 40 ] && { echo "skipping detail-$name (time)"; continue; }
  timeout 15 "$NCU" --clock-control none --set detailed -k "regex:$k" --launch-skip "$skip" -c "$c" \
    env KASCADE_PREFILL_CONTEXTS="$n" KASCADE_PREFILL_TORCH=0 KASCADE_PREFILL_VARIANTS=v11 \
    node packages/cuda/dist-device/bench-cli.mjs cuda-prefill --warmup 0 --repeats 1 --out /tmp/pp.json \
    > "$JOB_OUT/detail-$name.txt" 2>&1
  echo "detail-$name rc=$? after $(($(date +%s) - t0)) s"
done
echo done
