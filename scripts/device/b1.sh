#!/usr/bin/env bash
# Issue 4, batch 1 (cuda-b1, sessions 4-9): where a batch-1 decode op's time goes, and the reuse kernel's
# own profile. Run by scripts/device/session.sh with $JOB_OUT; limit 150 s.
#  1. packages/cuda/dist-device/b1-probe.mjs: per op and variant at 8k/32k/128k batch 1 (and 512k ->
#     b1-probe-512k.json), the same call
#     timed with events per call (the bench's method), back to back, as one CUDA graph, on 4 layers'
#     caches in turn, and the host's own cost per call -> b1-probe.json; first, each reuse variant's
#     output against variant 124's (crossRelErrVs124_* in its summary; the device check is the parity);
#  2. ncu (warm L2: --cache-control none) of the reuse kernels at 128k batch 1 (attn_partial and the
#     warp-specialised gather_ws, bit 32768), full set -> reuse-ncu.txt, per-kernel metrics -> reuse-ncu.csv;
#  3. ncu of the anchor's kernels at 128k batch 1 (B1_NCU_ANCHOR_VARIANTS, default 12816636,46371068)
#     -> anchor-ncu.csv, and of layer 0's -> layer0-ncu.csv (session 9; with B1_NOWRITES=1 also both passes without
#     their logit writes -> anchor-nowrites-ncu.csv); the b1 select's phase times (KASCADE_B1_SELECT_TRACE=1) -> select-trace.log.
#     B1_ANCHOR_KNOBS (NAME=VALUE list): the probe also times the anchor variants with bit 131072 under these
#     tuning knobs (none by default);
#  4. (session 7) the ws gather's per-CTA timeline at 128k batch 1 (KASCADE_WS_TRACE=1: start, first landed stage,
#     loop end, exit; session 9: the last CTA's epilogue in three steps; 2 calls per variant) -> ws-trace.log, and with B1_SASS_VARIANTS (a comma list; none by
#     default) ncu's per-instruction stall samples (SASS) of one ws gather launch per variant -> reuse-sass-<v>.csv.
# Built here first: node packages/cuda/native/build.mjs --strict && node packages/cuda/scripts/bundle-device.mjs --core-from-git
# Env: B1_REUSE_VARIANTS, B1_DENSE_VARIANTS, B1_ANCHOR_VARIANTS, B1_SWEEP (the probe's lists), B1_NCU_VARIANTS (default 4292704).
# Session 10: B1_REUSE_KNOBS (reuse timed under tuning knobs too, none by default; an entry joins several knobs by
# '+'), B1_ANCHOR_KNOBS with B1_KNOB_VARIANTS / B1_KNOB_OPS (limits to those anchor variants / ops), B1_512K=1 (the 512k probe,
# off by default), B1_FULL_NCU=1 (ncu's full set of the reuse kernel, off by default); the anchor's sparse pass traced
# (KASCADE_WS_TRACE=1) per anchor variant -> anchor-ws-trace.log.
# Session 11: the defaults 541163616 (reuse) and 583241980 (anchor) with bit 536870912 against 4292704 / 46371068;
# B1_TRACE_ANCHOR (default 583241980) traced with the select's trace (barrier 2's globaltimer against the sparse pass's
# first start) as is and under B1_TRACE_KNOBS; B1_REUSE_KNOBS entries traced too (ws-trace-knobs.log).
# Session 12: call A's tuning knobs KASCADE_WS_TICKET, KASCADE_WS_EVICT_FIRST and KASCADE_WS_WARM_TAIL and call B's
# KASCADE_WS_MERGE_V11 (session 11's warps' merge, timed beside the new default) and KASCADE_WS_ACC32 were removed
# (packages/cuda/README.md, batch 1, twelfth session); no knobs by default. B1_SASS_VARIANTS default 541163616 (ncu's
# stall samples of one launch, reuse-sass-541163616.csv); the ws trace splits bit 536870912's warps' merge in three
# (marks 8, 9).
set -u
: "${JOB_OUT:?JOB_OUT must name the output folder}"
t0=$(date +%s)
say() { echo "[b1 +$(($(date +%s) - t0)) s] $*"; }
export KASCADE_CUDA_ADDON=${KASCADE_CUDA_ADDON:-$PWD/packages/cuda/build/kascade_cuda.node}
# Session 10: the default 4292704 (98400 | 4194304: the wide gather with session 9's epilogue). (Session 10's reuse knobs
# lost and were removed: KASCADE_WS_WARM, the slots' merge run dry by every CTA, KASCADE_WS_STEAL, the rows' last groups
# claimed from a per-row counter; packages/cuda/README.md, batch 1, tenth session.)
# Session 11, call B: 541163616 = 4292704 | 536870912 (the split merge through the rows' f64 accumulators; call A's tuning
# knob KASCADE_WS_ACC=1: reuse 20.86 against 21.79 us at 128k batch 1, b1 probe).
export B1_REUSE_VARIANTS=${B1_REUSE_VARIANTS:-4292704,541163616}
export B1_REUSE_KNOBS=${B1_REUSE_KNOBS-}
# (Session 7, call A: 50 / 66 / 99 splits per row, two or three waves, took 28-34 us against 23 at 33.)
export B1_SWEEP=${B1_SWEEP-}
export B1_DENSE_VARIANTS=${B1_DENSE_VARIANTS:-764}
# Session 10: the default 46371068 = 12816636 | 33554432 (the anchor's sparse pass started on the b1 select's phase-2
# indices while its phase 3 finishes the rows, its splits in the SMs the phase-3 CTAs leave free) against session 9's
# 12816636 = 168188 | 65536 | 4194304 | 8388608. The probe times layer 0 with each too (bit 33554432 does not change it).
# Session 11, call B: 583241980 = 46371068 | 536870912 (the sparse pass's split merge through the f64 accumulators).
export B1_ANCHOR_VARIANTS=${B1_ANCHOR_VARIANTS-46371068,583241980}
# Session 11: no anchor knobs by default (call A's KASCADE_B1_SELECT_TRIGGER and KASCADE_B1_SELECT_PRELOAD, call B's
# KASCADE_B1_SELECT_EARLY_DROP and call C's KASCADE_B1_SELECT_DROP_PARTNERS lost and were removed).
export B1_ANCHOR_KNOBS=${B1_ANCHOR_KNOBS-}
export B1_KNOB_VARIANTS=${B1_KNOB_VARIANTS-}
export B1_SASS_VARIANTS=${B1_SASS_VARIANTS-541163616}
export B1_KNOB_OPS=${B1_KNOB_OPS-anchor}
probe=packages/cuda/dist-device/b1-probe.mjs
# Screen (session 7): every listed variant alone on device-check's four small cases, each in its own process under
# a timeout (all at once); a variant that fails, faults or hangs leaves the lists before the probe runs.
keep_passing() { # comma list in, the variants whose smoke check exited 0 out
  local v out=""
  for v in ${1//,/ }; do
    timeout --kill-after=3 30 node packages/cuda/dist-device/device-check.mjs "$JOB_OUT/smoke-$v.json" --no-prefill \
      --smoke --variants "$v" > "$JOB_OUT/smoke-$v.log" 2>&1 && touch "$JOB_OUT/smoke-$v.ok" &
  done
  wait
  for v in ${1//,/ }; do
    if [ -f "$JOB_OUT/smoke-$v.ok" ]; then out="${out:+$out,}$v"; else echo "[b1] screen dropped $v" >&2; fi
  done
  rm -f "$JOB_OUT"/smoke-*.json
  echo "$out"
}
B1_REUSE_VARIANTS=$(keep_passing "$B1_REUSE_VARIANTS")
B1_ANCHOR_VARIANTS=$(keep_passing "$B1_ANCHOR_VARIANTS")
say "screened: reuse $B1_REUSE_VARIANTS, anchors $B1_ANCHOR_VARIANTS"
only_screened() { # the entries of list $1 that are in list $2
  local v out=""
  for v in ${1//,/ }; do case ",$2," in *",$v,"*) out="${out:+$out,}$v" ;; esac; done
  echo "$out"
}
export B1_COMMAND="bash scripts/device/session.sh ${KASCADE_GIT_COMMIT:-?} b1 -> B1_REUSE_VARIANTS=$B1_REUSE_VARIANTS B1_REUSE_KNOBS=$B1_REUSE_KNOBS B1_DENSE_VARIANTS=$B1_DENSE_VARIANTS B1_SWEEP=$B1_SWEEP B1_ANCHOR_VARIANTS=$B1_ANCHOR_VARIANTS B1_ANCHOR_KNOBS=$B1_ANCHOR_KNOBS B1_KNOB_VARIANTS=$B1_KNOB_VARIANTS B1_KNOB_OPS=$B1_KNOB_OPS node $probe b1-probe.json"
say "probe: reuse $B1_REUSE_VARIANTS, dense $B1_DENSE_VARIANTS"
timeout --kill-after=5 75 node "$probe" "$JOB_OUT/b1-probe.json" > "$JOB_OUT/probe.log" 2>&1
say "probe exit $?"
tail -40 "$JOB_OUT/probe.log"
# 512k batch 1 (the defaults beyond 256k; B1_512K=1): the anchor default 32956, reuse 98400 and 4292704.
r512=$(only_screened 98400,4292704 "$B1_REUSE_VARIANTS")
a512=32956
[ "${B1_512K:-0}" = 1 ] && B1_SHAPES=1x524288 B1_REUSE_VARIANTS=$r512 B1_ANCHOR_VARIANTS=$a512 B1_ANCHOR_KNOBS= \
  B1_COMMAND="bash scripts/device/session.sh ${KASCADE_GIT_COMMIT:-?} b1 -> B1_SHAPES=1x524288 B1_REUSE_VARIANTS=$r512 B1_DENSE_VARIANTS=$B1_DENSE_VARIANTS B1_ANCHOR_VARIANTS=$a512 B1_ANCHOR_KNOBS= node $probe b1-probe-512k.json" \
  timeout --kill-after=5 60 node "$probe" "$JOB_OUT/b1-probe-512k.json" > "$JOB_OUT/probe-512k.log" 2>&1 &&
  say "probe 512k exit $?"
NCU=$(command -v ncu || ls /usr/local/cuda/bin/ncu 2>/dev/null || echo ncu)
ncu_variants=$(only_screened "${B1_NCU_VARIANTS:-4292704,541163616}" "$B1_REUSE_VARIANTS")
metrics=gpu__time_duration.sum,dram__bytes_read.sum,dram__bytes_write.sum,dram__throughput.avg.pct_of_peak_sustained_elapsed,lts__t_sector_hit_rate.pct,launch__grid_size,launch__cluster_dim_x,launch__registers_per_thread,sm__warps_active.avg.pct_of_peak_sustained_active,sm__cycles_active.avg,sm__cycles_active.max,sm__cycles_active.min
# Session 9: the DRAM's busy cycles (read / write) as session 8's profile-anchor measured them at batch 32.
metrics=$metrics,dram__cycles_active.sum,dram__cycles_active_read.sum,dram__cycles_active_write.sum,dram__cycles_elapsed.sum
# Session 10: the anchors' sparse pass traced (2 calls per variant), first.
for v in ${B1_ANCHOR_VARIANTS//,/ }; do
  echo "== anchor $v" >> "$JOB_OUT/anchor-ws-trace.log"
  KASCADE_WS_TRACE=1 B1_NCU=1 B1_NCU_ANCHOR=1 B1_SHAPES=1x131072 B1_REUSE_VARIANTS= B1_ANCHOR_VARIANTS=$v timeout 20 \
    node "$probe" >> "$JOB_OUT/anchor-ws-trace.log" 2>&1
done
# Session 11: the anchor's sparse pass and select traced together (globaltimer: the select's barrier 2 against the pass's
# first start) for B1_TRACE_ANCHOR, as is and under each of B1_TRACE_KNOBS ('+'-joined NAME=VALUE sets).
ta=$(only_screened "${B1_TRACE_ANCHOR:-583241980}" "$B1_ANCHOR_VARIANTS")
for kn in "" ${B1_TRACE_KNOBS-}; do
  [ -n "$ta" ] || break
  echo "== anchor $ta with select trace ${kn:-(no knob)}" >> "$JOB_OUT/anchor-ws-trace.log"
  env ${kn//+/ } KASCADE_WS_TRACE=1 KASCADE_B1_SELECT_TRACE=1 B1_NCU=1 B1_NCU_ANCHOR=1 B1_SHAPES=1x131072 B1_REUSE_VARIANTS= \
    B1_ANCHOR_VARIANTS=$ta B1_ANCHOR_KNOBS= timeout 20 node "$probe" >> "$JOB_OUT/anchor-ws-trace.log" 2>&1
done
say "anchor ws trace done"; grep "ws trace\|== anchor\|b1_select trace" "$JOB_OUT/anchor-ws-trace.log" | head -40
say "ws trace: reuse at 128k b1, variants $ncu_variants (2 calls each)"
KASCADE_WS_TRACE=1 B1_NCU=1 B1_SHAPES=1x131072 B1_REUSE_VARIANTS=$ncu_variants timeout 20 node "$probe" > "$JOB_OUT/ws-trace.log" 2>&1
say "ws trace exit $?"; grep "ws trace" "$JOB_OUT/ws-trace.log" | head -8
# Session 11: the same under each reuse knob (B1_REUSE_KNOBS entries, '+'-joined).
for kn in ${B1_REUSE_KNOBS//,/ }; do
  echo "== reuse with ${kn}" >> "$JOB_OUT/ws-trace-knobs.log"
  env ${kn//+/ } KASCADE_WS_TRACE=1 B1_NCU=1 B1_SHAPES=1x131072 B1_REUSE_VARIANTS=$ncu_variants B1_REUSE_KNOBS= timeout 20 \
    node "$probe" >> "$JOB_OUT/ws-trace-knobs.log" 2>&1
done
[ -f "$JOB_OUT/ws-trace-knobs.log" ] && grep "ws trace\|== reuse" "$JOB_OUT/ws-trace-knobs.log" | head -12
# The b1 select's phase ends (CTA 0's globaltimer, KASCADE_B1_SELECT_TRACE=1), 2 calls, at 128k and 32k.
# Session 9: with and without bit 8388608 (phase 1 reads the logits from L2).
KASCADE_B1_SELECT_TRACE=1 B1_NCU=1 B1_NCU_ANCHOR=1 B1_SHAPES=1x131072,1x32768 B1_REUSE_VARIANTS= \
  B1_ANCHOR_VARIANTS=$(only_screened 46371068 "$B1_ANCHOR_VARIANTS") B1_ANCHOR_KNOBS= timeout 20 node "$probe" > "$JOB_OUT/select-trace.log" 2>&1
say "select trace exit $?"; grep "b1_select trace" "$JOB_OUT/select-trace.log" | head -4
# The anchor at 128k b1, kernel by kernel (scores pass, select, sparse pass), for B1_ANCHOR_VARIANTS (2 calls each).
B1_NCU=1 B1_NCU_ANCHOR=1 B1_SHAPES=1x131072 B1_REUSE_VARIANTS= B1_ANCHOR_VARIANTS=$(only_screened "${B1_NCU_ANCHOR_VARIANTS:-46371068,583241980}" "$B1_ANCHOR_VARIANTS") timeout 40 "$NCU" \
  --clock-control none --cache-control none --metrics "$metrics" --csv node "$probe" > "$JOB_OUT/anchor-ncu.csv" 2> "$JOB_OUT/anchor-ncu.err"
say "ncu anchor metrics exit $?"
say "ncu metrics: reuse at 128k b1, variants $ncu_variants (2 calls each)"
B1_NCU=1 B1_SHAPES=1x131072 B1_REUSE_VARIANTS=$ncu_variants timeout 30 "$NCU" --clock-control none --cache-control none \
  -k regex:'attn_partial|gather_ws' --metrics "$metrics" --csv node "$probe" > "$JOB_OUT/reuse-ncu.csv" 2> "$JOB_OUT/reuse-ncu.err"
say "ncu metrics exit $?"
# Session 9, B1_NOWRITES=1 (call A ran it): the scores pass and layer 0's pass without their logit writes
# (KASCADE_DEBUG_NO_LOGIT_WRITES=1, diagnosis only: wrong selections) at 128k batch 1, 168188.
if [ "${B1_NOWRITES:-0}" = 1 ]; then
  KASCADE_DEBUG_NO_LOGIT_WRITES=1 B1_NCU=1 B1_NCU_ANCHOR=1 B1_NCU_LAYER0=1 B1_SHAPES=1x131072 B1_REUSE_VARIANTS= \
    B1_ANCHOR_VARIANTS=168188 timeout 30 "$NCU" --clock-control none --cache-control none -k regex:attn_partial \
    --metrics "$metrics" --csv node "$probe" > "$JOB_OUT/anchor-nowrites-ncu.csv" 2> "$JOB_OUT/anchor-nowrites-ncu.err"
  say "ncu anchor without writes exit $?"
fi
# ...and layer 0 (its dense pass with the logits, the select), with B1_LAYER0_NCU=1 (session 10: off by default).
[ "${B1_LAYER0_NCU:-0}" = 1 ] && B1_NCU=1 B1_NCU_LAYER0=1 B1_SHAPES=1x131072 B1_REUSE_VARIANTS= B1_ANCHOR_VARIANTS=$(only_screened 168188,12816636 "$B1_ANCHOR_VARIANTS") \
  timeout 30 "$NCU" --clock-control none --cache-control none --metrics "$metrics" --csv node "$probe" \
  > "$JOB_OUT/layer0-ncu.csv" 2> "$JOB_OUT/layer0-ncu.err" && say "ncu layer 0 metrics exit $?"
# ncu's full set of the reuse kernel (B1_FULL_NCU=1; session 10: off by default).
[ "${B1_FULL_NCU:-0}" = 1 ] && B1_NCU=1 B1_SHAPES=1x131072 B1_REUSE_VARIANTS=$ncu_variants timeout 40 "$NCU" --clock-control none \
  --cache-control none -k regex:'attn_partial|gather_ws' --set full -c 4 node "$probe" > "$JOB_OUT/reuse-ncu.txt" 2>&1 &&
  say "ncu full exit $?"
# Per-instruction stall samples of one ws gather launch (its second call) per variant.
sass=${B1_SASS_VARIANTS:-}
for v in ${sass//,/ }; do
  B1_NCU=1 B1_SHAPES=1x131072 B1_REUSE_VARIANTS=$v timeout 30 "$NCU" --clock-control none --cache-control none \
    -k regex:gather_ws -s 1 -c 1 --section WarpStateStats --section SourceCounters --page source --print-source sass --csv \
    node "$probe" > "$JOB_OUT/reuse-sass-$v.csv" 2> "$JOB_OUT/reuse-sass-$v.err"
  say "ncu sass $v exit $? ($(wc -l < "$JOB_OUT/reuse-sass-$v.csv") lines)"
done
[ -f "$JOB_OUT/reuse-ncu.txt" ] &&
  grep -E "attn_partial|gather_ws|Duration|DRAM Throughput|L2 Hit|Stall|Warp Cycles|Achieved Occupancy|Cluster" "$JOB_OUT/reuse-ncu.txt" | head -60
say done
