#!/usr/bin/env bash
# ncu per-kernel view of the prefill ops at 32k (issue 8): where layer 0's and the anchor's time goes
# (statistics pass, pool, select) and how the kernels use the GPU. Run by scripts/device/session.sh with $JOB_OUT
# (limit 90 s). One cuda-prefill bench pass at 32k, one call per op (no warm-up, no torch), under preset v37 (the
# defaults) and session 6's candidates v42-v46: the dense v9 kernel (dense, dense + statistics), the statistics and pool kernels and the select timed
# by ncu (the fill and sparse kernels, the same under every preset, are left out):
# kernels.csv (time, DRAM bytes, L2 hit rate, SM / tensor / MUFU throughput, occupancy, launch shape), then the
# detailed sections (with warp stall reasons) of one launch of the default pool and statistics pass and of the
# candidates' (detail-*.txt); then every select launch of one pass at 128k (select-128k.csv).
set -u
: "${JOB_OUT:?JOB_OUT must name the output folder}"
export KASCADE_CUDA_ADDON=${KASCADE_CUDA_ADDON:-$PWD/packages/cuda/build/kascade_cuda.node}
NCU=$(command -v ncu || ls /usr/local/cuda/bin/ncu 2>/dev/null || echo ncu)
n=${PROFILE_PREFILL_CONTEXT:-32768}
presets=${PROFILE_PREFILL_PRESETS:-v37,v42,v43,v44,v45,v46}
metrics=gpu__time_duration.sum,dram__bytes_read.sum,dram__bytes_write.sum,lts__t_sector_hit_rate.pct,sm__throughput.avg.pct_of_peak_sustained_elapsed,sm__pipe_tensor_op_hmma_cycles_active.avg.pct_of_peak_sustained_active,sm__inst_executed_pipe_xu.avg.pct_of_peak_sustained_active,sm__warps_active.avg.pct_of_peak_sustained_active,launch__grid_size,launch__block_size,launch__registers_per_thread,launch__shared_mem_per_block_dynamic
t0=$(date +%s)
timeout 50 "$NCU" --clock-control none --metrics "$metrics" --csv -k "regex:prefill_dense_v9|prefill_stats_v17|pool_v17|select_prefill" \
  env KASCADE_PREFILL_CONTEXTS="$n" KASCADE_PREFILL_TORCH=0 KASCADE_PREFILL_VARIANTS="$presets" \
  node packages/cuda/dist-device/bench-cli.mjs cuda-prefill --warmup 0 --repeats 1 \
  --out "$JOB_OUT/bench-under-ncu.json" > "$JOB_OUT/kernels.csv" 2> "$JOB_OUT/kernels.err"
echo "kernels.csv rc=$? after $(($(date +%s) - t0)) s"
# name:kernel regex:launches skipped:launches profiled:preset. The bench first runs one anchor under the defaults
# (v37: a prefill_stats_v17, a pool_v17 and a select_prefill_v3 launch) for the reuse selection; then under v37
# the anchor's statistics pass is prefill_stats_v17 launch 1, layer 0's pool pool_v17 launch 1 and the anchor's
# 2. Each detail file names the kernel it caught (template arguments included).
for spec in pool-v19:pool_v17_kernel:2:1:v37 stats-v17:prefill_stats_v17:1:1:v37 pool-v23:pool_v17_kernel:2:1:v43 \
  stats-v22:prefill_stats_v17:1:1:v42; do
  IFS=: read -r name k skip c preset <<< "$spec"
  [ $(($(date +%s) - t0)) -gt 55 ] && { echo "skipping detail-$name (time)"; continue; }
  timeout 15 "$NCU" --clock-control none --set detailed --section WarpStateStats --section SchedulerStats -k "regex:$k" --launch-skip "$skip" -c "$c" \
    env KASCADE_PREFILL_CONTEXTS="$n" KASCADE_PREFILL_TORCH=0 KASCADE_PREFILL_VARIANTS="$preset" \
    node packages/cuda/dist-device/bench-cli.mjs cuda-prefill --warmup 0 --repeats 1 --out /tmp/pp.json \
    > "$JOB_OUT/detail-$name.txt" 2>&1
  echo "detail-$name rc=$? after $(($(date +%s) - t0)) s"
done
# SASS of the bf16 pool and statistics kernels (every template instance), to count the instructions of the
# per-score loops: sass-pool.txt, sass-stats.txt.
CUOBJ=$(command -v cuobjdump || ls /usr/local/cuda/bin/cuobjdump 2>/dev/null || echo cuobjdump)
timeout 20 "$CUOBJ" -sass "$KASCADE_CUDA_ADDON" > /tmp/addon.sass 2> "$JOB_OUT/sass.err"
for pair in pool:pool_v17_kernelI13__nv_bfloat16 stats:prefill_stats_v17_kernelI13__nv_bfloat16; do
  IFS=: read -r name pat <<< "$pair"
  awk -v pat="$pat" '/Function : /{on = index($0, pat) > 0} on' /tmp/addon.sass > "$JOB_OUT/sass-$name.txt"
done
echo "sass: $(wc -l < "$JOB_OUT/sass-pool.txt") pool lines, $(wc -l < "$JOB_OUT/sass-stats.txt") statistics lines"
# The select's share at 128k (issue 8: it grows with tiles x keys): every select_prefill_v3 launch of one bench
# pass at 128k under v37 (layer 0 and the anchor: 4 launches each, 2 KV heads per pooled-buffer pass), time only.
if [ $(($(date +%s) - t0)) -le 65 ]; then
  timeout 25 "$NCU" --clock-control none --metrics gpu__time_duration.sum,dram__bytes_read.sum --csv \
    -k "regex:select_prefill" -c 12 \
    env KASCADE_PREFILL_CONTEXTS=131072 KASCADE_PREFILL_TORCH=0 KASCADE_PREFILL_VARIANTS=v37 \
    node packages/cuda/dist-device/bench-cli.mjs cuda-prefill --warmup 0 --repeats 1 --out /tmp/pp128.json \
    > "$JOB_OUT/select-128k.csv" 2>&1
  echo "select-128k.csv rc=$? after $(($(date +%s) - t0)) s"
else
  echo "skipping select-128k (time)"
fi
echo done
