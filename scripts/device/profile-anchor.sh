#!/usr/bin/env bash
# ncu of the anchors' scores and layer-0 passes (cuda-anchor, sessions 4-7): per attention kernel (and, session 7,
# the sparse pass from the f16 intermediate, u16_sparse_kernel) its time, DRAM bytes and throughput, L2 hit rate
# and L2 write sectors, at 128k batch 32 and 1, for the variants in PROFILE_ANCHOR_VARIANTS (default 265340, the
# anchor default at 128k batch > 4 since session 6), each under the write probes of PROFILE_ANCHOR_MODES (default
# "0 1 2 3"; an entry <variant>:<mode>/<mode> names its own): KASCADE_DEBUG_NO_LOGIT_WRITES,
# kernels/cuda/anchor_decode.cu: 0 as is, 1 no intermediate writes, 2 u computed but not stored, 3 u without m16,
# 6 / 7 (session 8) half the CTAs store: the batch's first half (the pass's first half in time) / the even splits (all
# along the pass); all give wrong selections: timing diagnosis only; session 7's probes 4 and 5 and session 8's 4 (the
# default L2 policy) and 5 (stores folded into a few MB) changed nothing and were removed). Session 8's default: the
# key-major intermediate (1838204 = 789628 | 1048576, the anchor / layer-0 default beyond 16k / 64k at batch > 4)
# under probes 0/1/6/7; the stream select (stream_select_kernel) is profiled too.
# Session 9: variants with bit 2097152 (the burst writes, kernels/cuda/burst_writes.cuh) run with the kernels' own write
# windows, and PROFILE_ANCHOR_SWEEP (session 9: 3935484 = 3935356 | 128; since session 11 none by default, the lean schedule, which stores a CTA's last
# records once, at the pass's end) once per entry of PROFILE_ANCHOR_BURST (space-separated values of KASCADE_BURST,
# <periodLog2>,<windowLog2>[,<drainNow>[,<sync>[,<groupsLog2>]]]; "default" = the kernels' own), leaving
# anchor-<v>-p<mode>-b<entry>.csv. PROFILE_ANCHOR_TIMER=1 first runs the %globaltimer probe
# (scripts/device/globaltimer-probe.cu, built here with nvcc; call A: the clock moves every 32 ns, a read costs ~52 SM
# cycles, the SMs' first reads after a common flag lie within 224 ns) into globaltimer.txt.
# Session 10: call A ran 1838204, 18615420 (bit 16777216 then, the step blocks: lost, removed), 85724284, 3935484 and
# 71044348 (bit 67108864: the select's pooled rows as 16-bit top halves) as is (probe 0); call B: 1838204 against
# 68947068 = 1838204 | 67108864, 3935484 against 71044348.
# Session 11: call A 136055932 (the anchor default beyond 16k at batch > 4) against 404491388 = 136055932 | 268435456 (the
# stream select's phase 1 two tiles a step, phase 3 four tiles per pair of slot atomics: it spilled, select ~310 us
# against ~260), 3935484 against 272370940; call B 136055932 against 1209797756 = 136055932 | 1073741824 (phase 3
# recomputing the pooled scores and writing the sparse pass's scores: select 341 us against 256, sparse pass 350 against
# 393), 3935484 against 1077677308; both bits removed. Default now: the two batch-32 defaults.
# Session 12 (cuda-anchor): the candidates are tuning env knobs (no variant bits are left). PROFILE_ANCHOR_KNOBS (space-
# separated NAME=value entries; default the sparse-pass ring knob KASCADE_SPARSE_RING, decode.sh's list: call B "old"
# (session 11's kernel), whole-row cp.async at 3 stages, bulk copies with attn_splits, bulk at 4 stages, whole-row
# cp.async at session 11's 4 stages and splits, bulk with 3 splits; the knob was removed after B, so the list is empty
# by default now) each run the anchor default
# 136055932 (probe 0, 128k batch 32, the sparse pass only) into anchor-knob<i>.csv, with the metrics above; and
# PROFILE_ANCHOR_STALLS=1 (default) runs ncu's WarpStateStats, Occupancy, SchedulerStats and SpeedOfLight sections on
# the sparse pass and the attention passes (attn_partial: the reuse gather among them) at 128k batch 32, as is
# (stalls-default.csv) and under the knobs numbered in PROFILE_ANCHOR_STALL_KNOBS (default none: stalls-knob<i>.csv):
# where the sparse pass's warps wait.
# Run by scripts/device/session.sh with $JOB_OUT; limit ~7 s per variant, mode and window (+ node start). Leaves
# anchor-<v>-p<mode>[-b<entry>].csv.
set -u
: "${JOB_OUT:?JOB_OUT must name the output folder}"
export KASCADE_CUDA_ADDON=${KASCADE_CUDA_ADDON:-$PWD/packages/cuda/build/kascade_cuda.node}
NCU=$(command -v ncu || ls /usr/local/cuda/bin/ncu 2>/dev/null || echo ncu)
# Session 8: the DRAM's active cycles (all, for reads, for writes) against its elapsed cycles (from call A's list of
# this ncu's counters): how much DRAM time the writes take beyond their own transfer.
metrics=gpu__time_duration.sum,dram__bytes_read.sum,dram__bytes_write.sum,dram__throughput.avg.pct_of_peak_sustained_elapsed,launch__grid_size,lts__t_sector_hit_rate.pct,lts__t_sectors_op_write.sum
metrics=$metrics,dram__cycles_active.sum,dram__cycles_active_read.sum,dram__cycles_active_write.sum,dram__cycles_elapsed.sum
# Session 9: the CTAs per SM the launch's shared memory allows (the burst writes' stages must leave the pass's own).
metrics=$metrics,launch__occupancy_limit_shared_mem,launch__occupancy_limit_registers,launch__shared_mem_per_block_dynamic
if [ "${PROFILE_ANCHOR_TIMER:-0}" = 1 ] && { command -v nvcc > /dev/null || [ -x /usr/local/cuda/bin/nvcc ]; }; then
  NVCC=$(command -v nvcc || echo /usr/local/cuda/bin/nvcc)
  "$NVCC" -std=c++17 -O2 -gencode=arch=compute_90a,code=sm_90a -o /tmp/globaltimer-probe \
    scripts/device/globaltimer-probe.cu > "$JOB_OUT/globaltimer.txt" 2>&1 &&
    timeout 20 /tmp/globaltimer-probe >> "$JOB_OUT/globaltimer.txt" 2>&1
  echo "globaltimer probe: rc=$?"
  cat "$JOB_OUT/globaltimer.txt"
fi
list=${PROFILE_ANCHOR_VARIANTS:-136055932:0,3935484:0}
bursts=${PROFILE_ANCHOR_BURST:-default 14,11,1,1 13,10,1 14,11,1,0,2}
for entry in ${list//,/ }; do
  # <variant>[:<mode>/<mode>...]: the probes of one variant (default PROFILE_ANCHOR_MODES).
  v=${entry%%:*}
  modes=${PROFILE_ANCHOR_MODES:-0 1 2 3}
  [ "$entry" != "$v" ] && modes=${entry#*:}
  windows=none
  [ $((v & 2097152)) -ne 0 ] && windows=default
  [ "$v" = "${PROFILE_ANCHOR_SWEEP:-none}" ] && windows=$bursts
  for mode in ${modes//\// }; do
    for win in $windows; do
      out="$JOB_OUT/anchor-$v-p$mode.csv"
      burst=""
      if [ "$win" != none ]; then
        out="$JOB_OUT/anchor-$v-p$mode-b${win//,/_}.csv"
        [ "$win" != default ] && burst=$win
      fi
      KASCADE_BURST=$burst KASCADE_DEBUG_NO_LOGIT_WRITES=$mode PROFILE_SHAPES=32x131072,1x131072 \
        PROFILE_VARIANTS="176,$v,$v,176" timeout 25 "$NCU" --clock-control none -k regex:'attn_partial|u16_sparse|stream_select' \
        --metrics "$metrics" --csv node packages/cuda/dist-device/profile-ops.mjs > "$out" 2> "$out.err"
      echo "variant $v probe $mode window $win: rc=$?"
    done
  done
done
read -r -a knobs <<< "${PROFILE_ANCHOR_KNOBS-}"
stalls() { # <label> <kernel regex> [NAME=value [section]]: ncu's sections on 128k batch 32 into stalls-<label>.csv
  local out="$JOB_OUT/stalls-$1.csv"
  env ${3:+"$3"} PROFILE_SHAPES=32x131072 PROFILE_VARIANTS="176,3935484,136055932,188" timeout 25 "$NCU" --clock-control none \
    -k regex:"$2" --section SpeedOfLight --section Occupancy --section WarpStateStats --section SchedulerStats \
    ${4:+--section "$4"} --csv node packages/cuda/dist-device/profile-ops.mjs > "$out" 2> "$out.err"
  echo "stalls $1 ${3:-}: rc=$?"
}
[ "${PROFILE_ANCHOR_STALLS:-1}" = 1 ] && stalls default 'u16_sparse|attn_partial' KASCADE_PROFILE_NONE=1 MemoryWorkloadAnalysis
for ki in "${!knobs[@]}"; do
  out="$JOB_OUT/anchor-knob$ki.csv"
  env "${knobs[$ki]}" KASCADE_DEBUG_NO_LOGIT_WRITES=0 PROFILE_SHAPES=32x131072 PROFILE_VARIANTS="176,3935484,136055932,176" \
    timeout 20 "$NCU" --clock-control none -k regex:'u16_sparse' --metrics "$metrics" --csv \
    node packages/cuda/dist-device/profile-ops.mjs > "$out" 2> "$out.err"
  echo "knob ${knobs[$ki]}: rc=$? (anchor-knob$ki.csv)"
done
if [ "${PROFILE_ANCHOR_STALLS:-1}" = 1 ]; then
  for ki in ${PROFILE_ANCHOR_STALL_KNOBS-}; do stalls "knob$ki" u16_sparse "${knobs[$ki]}"; done
fi
echo done
