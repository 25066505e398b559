#!/usr/bin/env bash
# ncu profile of the anchors' cluster select (cluster_select_kernel, variant bits 256/512): per-kernel
# time, DRAM bytes, occupancy, then ncu's `detailed` set (throughput, memory, launch and cluster,
# occupancy, source counters; no warp stall sections in this ncu) of a few instances. Run by scripts/device/session.sh with $JOB_OUT; limit 90 s.
# Layer 0 runs version 1 (380 = 124 | 256), the anchor version 2 (636 = 124 | 512), both on the plain plan.
# Leaves select.csv, select.err, detail.txt.
set -u
: "${JOB_OUT:?JOB_OUT must name the output folder}"
export KASCADE_CUDA_ADDON=${KASCADE_CUDA_ADDON:-$PWD/packages/cuda/build/kascade_cuda.node}
NCU=$(command -v ncu || ls /usr/local/cuda/bin/ncu 2>/dev/null || echo ncu)
metrics=gpu__time_duration.sum,dram__bytes_read.sum,dram__bytes_write.sum,dram__throughput.avg.pct_of_peak_sustained_elapsed,launch__grid_size,launch__block_size,launch__registers_per_thread,launch__shared_mem_per_block_dynamic,sm__warps_active.avg.pct_of_peak_sustained_active,launch__occupancy_limit_registers,launch__occupancy_limit_shared_mem,lts__t_sector_hit_rate.pct,smsp__inst_executed.sum,sm__cycles_elapsed.avg
PROFILE_SHAPES=1x8192,1x131072,32x131072,1x524288 PROFILE_VARIANTS=0,380,636,0 \
  timeout 40 "$NCU" --clock-control none -k regex:cluster_select --metrics "$metrics" --csv \
  node packages/cuda/dist-device/profile-ops.mjs > "$JOB_OUT/select.csv" 2> "$JOB_OUT/select.err"
echo "metrics rc=$?"
# Detailed sections of 6 instances: 128k b1 (v1, v2, twice) and 128k b32 (v1, v2).
PROFILE_SHAPES=1x131072,32x131072 PROFILE_VARIANTS=0,380,636,0 \
  timeout 45 "$NCU" --clock-control none -k regex:cluster_select -c 6 --set detailed \
  node packages/cuda/dist-device/profile-ops.mjs > "$JOB_OUT/detail.txt" 2>&1
echo "detail rc=$?"
echo done
