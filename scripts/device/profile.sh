#!/usr/bin/env bash
# ncu profile of the decode ops (ours, with the variants the last bench picked) and of cuDNN's decode,
# per kernel: time, DRAM bytes and throughput, launch shape, registers, shared memory, occupancy.
# Run by scripts/device/session.sh with $JOB_OUT (limit: 60 s; 200 s with PROFILE_FULL=1).
# Leaves ours.csv (and, with PROFILE_FULL=1, torch.csv and detail-*.txt).
# Env: PROFILE_VARIANTS=dense,layer0,anchor,reuse (default 144,16,252,188: lean TMA without L2 promotion for dense, the non-lean TMA pass with it for layer 0),
#      PROFILE_SHAPES (default 1x131072,32x131072), PROFILE_FULL=1 adds cuDNN and the detailed sets.
set -u
: "${JOB_OUT:?JOB_OUT must name the output folder}"
export KASCADE_CUDA_ADDON=${KASCADE_CUDA_ADDON:-$PWD/packages/cuda/build/kascade_cuda.node}
NCU=$(command -v ncu || ls /usr/local/cuda/bin/ncu 2>/dev/null || echo ncu)
metrics=gpu__time_duration.sum,dram__bytes_read.sum,dram__bytes_write.sum,dram__throughput.avg.pct_of_peak_sustained_elapsed,launch__grid_size,launch__block_size,launch__registers_per_thread,launch__shared_mem_per_block_dynamic,launch__shared_mem_per_block_static,sm__warps_active.avg.pct_of_peak_sustained_active,launch__occupancy_limit_registers,launch__occupancy_limit_shared_mem,launch__occupancy_limit_warps,lts__t_sector_hit_rate.pct
PROFILE_SHAPES=${PROFILE_SHAPES:-1x131072,32x131072} PROFILE_VARIANTS=${PROFILE_VARIANTS:-144,16,252,188} \
  timeout 50 "$NCU" --clock-control none --metrics "$metrics" --csv node packages/cuda/dist-device/profile-ops.mjs > "$JOB_OUT/ours.csv" 2> "$JOB_OUT/ours.err"
echo "ours rc=$?"
[ "${PROFILE_FULL:-0}" = 1 ] || { echo done; exit 0; }
PROFILE_SHAPES=1x131072,32x131072 timeout 90 "$NCU" --clock-control none --metrics "$metrics" --csv python3 scripts/device/profile_torch_decode.py > "$JOB_OUT/torch.csv" 2> "$JOB_OUT/torch.err"
echo "torch rc=$?"
# Full detail for the two dense kernels at 128k b32 (ours: the split kernel; cuDNN: its main kernel).
PROFILE_SHAPES=32x131072 timeout 60 "$NCU" --clock-control none --set detailed -k regex:attn_partial -c 1 \
  node packages/cuda/dist-device/profile-ops.mjs > "$JOB_OUT/detail-ours.txt" 2>&1
PROFILE_SHAPES=32x131072 timeout 60 "$NCU" --clock-control none --set detailed -c 8 \
  python3 scripts/device/profile_torch_decode.py > "$JOB_OUT/detail-torch.txt" 2>&1
echo done
