// Decode attention by subgroup teams: one query token per sequence, the keys split over workgroups
// (flash-decoding), each workgroup's keys split over teams of TW lanes of one subgroup.
//
// Why (against decode_attend.wgsl, the "chunked" kernel): there, one invocation reads a whole key row
// (uncoalesced), and every chunk of keys costs six workgroup barriers and serial reductions. Here a
// team reads U consecutive K and V rows per step with 16-byte loads, adjacent lanes on adjacent
// 16-byte pieces of a row (coalesced), all loads of a step issued before any is used; the dot
// products are finished with subgroupShuffleXor inside the team, and each team keeps its own online
// softmax (max, sum, weighted V) in registers: no barrier in the key loop. The teams of a workgroup
// merge once at the end, then teams_merge merges the splits.
//
// Layout: as decode_attend.wgsl. q `[batch, heads, HEAD_DIM]` f32; K and V `[batch, kvHeads,
// capacity, HEAD_DIM]` read as 16-byte pieces `KP` (f32: vec4<f32>; f16: vec4<u32>, eight f16 packed);
// sel (GATHER) `[batch, kvHeads, kStride]` u32 key indices; partML `[batch, heads, splits, 2]` f32
// (max, sum of one split), partO `[batch, heads, splits, HEAD_DIM]` f32 (unnormalised); scores
// (WRITE_SCORES) `[batch, heads, scoreStride]` f32 scaled logits at their key positions.
//
// Dispatch: `(splits, kvHeads, batch)` workgroups of WG invocations, WG / TW teams (TW: the widest
// the row and the smallest subgroup allow, or narrower: `teamWidth`). Team `tm` of a
// workgroup takes, in step `s`, keys `start + (s * NT + tm) * U + u`, `u < U`. Lane `lane` of the team
// reads pieces `pp * TW + lane` (`pp < PPL`) of each row.
//
// Bytes: K (and V when ACCUM_V) rows of the keys attended, once; partials `splits * GROUP * (HEAD_DIM +
// 2) * 4` per workgroup row; scores when WRITE_SCORES.
//
// Prepended by the host: `const HEAD_DIM, GROUP, WG, TW, PPL, PV, U, SB`, the flags `GATHER`, `ACCUM_V`,
// `WRITE_SCORES` (each head's scores of a team step stored as one contiguous run), `PREFETCH`,
// `TRED` (U * GROUP == TW: the transposing reduction), `AHEAD` (the next step's loads issued before a
// step's math), `SGM` with `MSG` (the subgroup team merge, below), where on: `LANE_STATS`,
// `CACHED_ROWS` and `LOADS_ONLY` (below), `HALF_TRED` and `QUARTER_TRED` (step_math), `PERMUTE_AFTER_LOAD` (with
// TRED_XOR, below), `MERGE` (teams_merge),
// and the piece type `KP` with `fn kp4(e: KP, i: u32) -> vec4<f32>` (i < PV). It needs the subgroups feature, a subgroup size that is a multiple of TW, and WG a
// multiple of it.
//
// PREFETCH (with GATHER): the workgroup stages the key indices of SB steps at a time in workgroup
// memory, so a step's K/V loads wait for one load, not for the index load and then the row load;
// without, indices are read directly.
// SGM: the teams merge with one workgroup barrier instead of two per query head: the teams of a
// subgroup by shuffles (partners TW, 2 TW, .. lanes apart, the same bits on both sides), then the
// subgroups through workgroup memory, every head at once. MSG: the most subgroups a workgroup has (WG /
// the smallest subgroup size).
// The splits are merged by teams_merge, a dispatch of its own: merging them in the last workgroup
// of each row to finish (an atomic counter; sessions 3-6) needs a device-scope fence that WGSL lacks,
// and on the H200 it read a split's partials before they landed (session 6, call B). A race-free
// merge in the split pass (session 9: every state word a WGSL atomic carrying its own arrival, a
// sentinel, merged by a tree of fan-in 8 with atomic counters) was bit-identical over 30 NaN-poisoned
// runs on the H200 but far slower (call A: the reuse 61.2 against 44.7 us at 128k batch 1, dense 394
// against 194) and was removed.
// TRED_XOR (with TRED, GROUP a power of two): lane L's slot e = u * GROUP + h holds element e ^ L
// (key slot u holds the step's key u ^ (L / GROUP), query slot h head h ^ (L % GROUP)), so each round
// of the transposing butterfly keeps the lower half and sends the upper one with no selects; the
// scores are the same bits, V is accumulated in a lane-dependent key order (session 9: the default of
// the anchors' scores pass at few rows).
// LANE_STATS (passes without V on the transposed reduction: the anchors' scores pass): each lane keeps
// the running (max, sum) of its own scores (one key and head per step), merged across the team once
// after the key loop, instead of the team's per-step maximum, probabilities and sums (14 shuffles and
// 5 exps per lane per step less); the sums are then added in another order. Session 10: the default
// of the anchors' scores pass at many rows.
// CACHED_ROWS (measurements only): every K/V load reads one of a head's first 8 rows (served by the
// caches), so the pass runs its attention math without its DRAM reads; the output is then not attention.
// LOADS_ONLY (measurements only): the key loop issues its loads and sums the pieces into one register
// instead of the attention math (the split pass's loads, index staging and team merge without the math).
// PERMUTE_AFTER_LOAD (session 12 candidate): TRED_XOR's slots filled after in-order loads, by
// log2(U) rounds of selects on the K pieces (key_swap), so each load instruction stays on one row.

//#include decode_bindings KP

const NT: u32 = WG / TW;              // teams per workgroup
const D4: u32 = HEAD_DIM / 4u;        // vec4s per row
const PIECES: u32 = TW * PPL;         // 16-byte pieces per row
const QV: u32 = PPL * PV;             // vec4s of a row one lane holds
//#if PERMUTE_AFTER_LOAD
// PERMUTE_AFTER_LOAD (with TRED_XOR): a team loads the step's keys in order (one row per load
// instruction) and permutes its lanes' key slots afterwards, by selects in registers (step_math).
const KEY_XOR: bool = false;
const PERMUTE_KEYS: bool = TRED_XOR;
//#else
const KEY_XOR: bool = TRED_XOR;
const PERMUTE_KEYS: bool = false;
//#endif
//#if QUARTER_TRED
const QTRED: bool = true;
//#else
const QTRED: bool = false;
//#endif
//#if LOADS_ONLY
const LONLY: bool = true;
//#else
const LONLY: bool = false;
//#endif
//#if LANE_STATS
const LSTATS: bool = true;
//#else
const LSTATS: bool = false;
//#endif

var<workgroup> sgCounter: atomic<u32>;
const IB: u32 = NT * U * SB;          // key indices staged per block of SB steps (PREFETCH)
var<workgroup> idx: array<u32, IB>;
var<workgroup> xm: array<f32, NT>;
var<workgroup> xl: array<f32, NT>;
var<workgroup> xo: array<vec4<f32>, NT * D4>;
var<workgroup> xsO: array<vec4<f32>, select(1u, MSG * GROUP * D4, SGM)>;  // SGM
var<workgroup> xsML: array<vec2<f32>, select(1u, MSG * GROUP, SGM)>;

// One round of the transposing butterfly (TRED) over lanes $1 apart: each lane keeps half of its $1 * 2
// partial scores and adds the partner's other half.
// With TRED_XOR (lane L's slot e holds element e ^ L: see loadStep) every lane keeps its lower half
// and sends its upper half, no selects: its slot i and the partner's slot i + $1 hold the same element.
//#snippet tred_round
      let hi$1 = (lane & $1u) != 0u;
      if (TW >= 2u * $1u) {
        for (var i = 0u; i < $1u; i++) {
          if (TRED_XOR) {
            sc[i] += subgroupShuffleXor(sc[i + $1u], $1u);
          } else {
            let keep = select(sc[i], sc[i + $1u], hi$1);
            let send = select(sc[i + $1u], sc[i], hi$1);
            sc[i] = keep + subgroupShuffleXor(send, $1u);
          }
        }
      }
//#end

// PERMUTE_KEYS: one stage of the network that moves K slot u to slot u ^ (lane / GROUP): where bit $1
// of lane / GROUP is set, slots u and u | $1 swap.
//#snippet key_swap
        if (U > $1u) {
          let sw$1 = ((lane / GROUP) & $1u) != 0u;
          for (var u = 0u; u < U; u++) {
            if ((u & $1u) == 0u) {
              for (var pp = 0u; pp < PPL; pp++) {
                let ka = kp[u * PPL + pp];
                let kb = kp[(u | $1u) * PPL + pp];
                kp[u * PPL + pp] = select(ka, kb, sw$1);
                kp[(u | $1u) * PPL + pp] = select(kb, ka, sw$1);
              }
            }
          }
        }
//#end

// The workgroup's split, KV head and sequence, its keys [start, end), and where its K/V rows begin.
//#snippet split_keys
  let split = wid.x;
  let j = wid.y;
  let b = wid.z;
  let H = P.heads;
  let start = split * P.span;
  let end = min(start + P.span, P.n);
  let kvBase = (b * P.kvHeads + j) * P.capacity;
//#end

// PREFETCH: stages the key indices of the block of SB steps that starts at step $1 (a multiple of SB)
// in workgroup memory, between two barriers.
//#snippet stage_indices
    if (GATHER && PREFETCH && $1 % SB == 0u) {
      workgroupBarrier();
      for (var i = t; i < IB; i += WG) {
        idx[i] = sel[selRow + min(start + $1 * NT * U + i, end - 1u)];
      }
      workgroupBarrier();
    }
//#end

// The K (and V) pieces of one team step: U consecutive keys from `first` (gathered through `sel`, or
// through the staged indices `idx[idxOff + u]` when `useIdx`), keys at or past `end` marked invalid.
struct StepData {
  kp: array<KP, U * PPL>,
  vp: array<KP, U * PPL>,
  xs: array<u32, U>,
  valid: array<bool, U>,
}

fn loadStep(first: u32, end: u32, kvBase: u32, selRow: u32, lane: u32, useIdx: bool, idxOff: u32) -> StepData {
  var d: StepData;
  // TRED_XOR: slot u of lane `lane` holds the step's key u ^ (lane / GROUP) (PERMUTE_AFTER_LOAD: key
  // u, permuted in step_math).
  let perm = select(0u, lane / GROUP, KEY_XOR);
  for (var u = 0u; u < U; u++) {
    let c = first + (u ^ perm);
    d.valid[u] = c < end;
    var x = min(c, end - 1u);
    if (GATHER) {
      if (useIdx) {
        x = idx[idxOff + (u ^ perm)];
      } else {
        x = sel[selRow + x];
      }
    }
    d.xs[u] = x;
//#if CACHED_ROWS
    x = x & 7u;
//#endif
    let rb = (kvBase + x) * PIECES + lane;
    for (var pp = 0u; pp < PPL; pp++) {
      d.kp[u * PPL + pp] = kbuf[rb + pp * TW];
      if (ACCUM_V) {
        d.vp[u * PPL + pp] = vbuf[rb + pp * TW];
      }
    }
  }
  return d;
}

// The math of one team step on the StepData $1 (dot products, the team reduction, the online softmax,
// V), in a block of its own.
//#snippet step_math
    {
      var valid = $1.valid;
      var kp = $1.kp;
      var vp = $1.vp;
      var xs = $1.xs;
      if (PERMUTE_KEYS) {
  //#include key_swap 1
  //#include key_swap 2
  //#include key_swap 4
  //#include key_swap 8
      }
      // Partial dot products over this lane's pieces, finished across the team.
      var sc: array<f32, U * GROUP>;
      for (var u = 0u; u < U; u++) {
        for (var h = 0u; h < GROUP; h++) {
          var d = 0.0;
          for (var pp = 0u; pp < PPL; pp++) {
            for (var i = 0u; i < PV; i++) {
              d += dot(qr[(h * PPL + pp) * PV + i], kp4(kp[u * PPL + pp], i));
            }
          }
          sc[u * GROUP + h] = d;
        }
      }
      if (TRED) {
        // U * GROUP == TW: a transposing butterfly (each round keeps half of the values and adds the
        // partner's other half) leaves lane e with the full score e = u * GROUP + h: TW - 1 shuffles
        // instead of log2(TW) per value, and one exp per lane for the probabilities.
  //#include tred_round 16
  //#include tred_round 8
  //#include tred_round 4
  //#include tred_round 2
  //#include tred_round 1
        let sv = sc[0];
        let myh = lane % GROUP;
        let myu = lane / GROUP;
        var okv = false;
        var xv = 0u;
        for (var u = 0u; u < U; u++) {
          // TRED_XOR: this lane's own key (myu) sits in its slot 0 (xs and valid are not permuted
          // with PERMUTE_AFTER_LOAD).
          if (select(u == myu, u == 0u, KEY_XOR)) {
            okv = valid[u];
            xv = xs[u];
          }
        }
        if (WRITE_SCORES && okv) {
          scores[(b * H + j * GROUP + myh) * P.scoreStride + xv] = sv;
        }
        let teamBase = sgLane - lane;
        // The key in V's slot u is u ^ keyPerm (TRED_XOR; V is not permuted with PERMUTE_AFTER_LOAD).
        let keyPerm = select(0u, myu, KEY_XOR);
        // LSTATS: this lane's own running (max, sum) of its head's scores, merged across the team
        // once after the key loop; the team's per-step softmax below is then skipped (no loop runs).
        if (LSTATS && okv) {
          let mn = max(lm, sv);
          ll = ll * exp(lm - mn) + exp(sv - mn);
          lm = mn;
        }
        let rw = select(TW, GROUP, LSTATS);
        // The step's maximum of each query head (a head's lanes are GROUP apart).
        var gm = select(NEG, sv, okv);
        for (var mk = GROUP; mk < rw; mk = mk * 2u) {
          gm = max(gm, subgroupShuffleXor(gm, mk));
        }
        var corr: array<f32, GROUP>;
        var mine = NEG;
        for (var h = 0u; h < select(GROUP, 0u, LSTATS); h++) {
          let mx = max(m[h], subgroupShuffle(gm, teamBase + h));
          corr[h] = exp(m[h] - mx);
          m[h] = mx;
          mine = select(mine, mx, h == myh);
        }
        let pv = select(0.0, exp(sv - mine), okv);
        var ps = pv;
        for (var mk = GROUP; mk < rw; mk = mk * 2u) {
          ps += subgroupShuffleXor(ps, mk);
        }
        for (var h = 0u; h < select(GROUP, 0u, LSTATS); h++) {
          l[h] = l[h] * corr[h] + subgroupShuffle(ps, teamBase + h);
        }
        if (ACCUM_V) {
          for (var h = 0u; h < GROUP; h++) {
            for (var e = 0u; e < PPL * PV; e++) {
              acc[h * PPL * PV + e] = acc[h * PPL * PV + e] * corr[h];
            }
            for (var u = 0u; u < U; u++) {
              let pu = subgroupShuffle(pv, teamBase + (u ^ keyPerm) * GROUP + h);
              for (var pp = 0u; pp < PPL; pp++) {
                for (var i = 0u; i < PV; i++) {
                  acc[(h * PPL + pp) * PV + i] += pu * kp4(vp[u * PPL + pp], i);
                }
              }
            }
          }
        }
      } else {
//#if HALF_TRED
        // QTRED (QUARTER_TRED, U a multiple of 4): the second round transposes too, so each quarter of
        // the team reduces a quarter of the scores and takes the exps of its own keys; the probabilities
        // are gathered back over the quarters (TW / 4 apart) and the halves (TW / 2 apart). The same bits.
        if (QTRED) {
          // (Compiled but not run where U < 4 or TW < 4: the sizes are kept valid.)
          const QU: u32 = max(1u, U / 4u);
          const TQ: u32 = max(1u, TW / 4u);
          const QE: u32 = QU * GROUP;
          const HU: u32 = U / 2u;
          const HE: u32 = HU * GROUP;
          let hiH = (lane & (TW / 2u)) != 0u;
          let hiQ = (lane & TQ) != 0u;
          var s2: array<f32, HE>;
          for (var i = 0u; i < HE; i++) {
            let keep = select(sc[i], sc[i + HE], hiH);
            let send = select(sc[i + HE], sc[i], hiH);
            s2[i] = keep + subgroupShuffleXor(send, TW / 2u);
          }
          var s4: array<f32, QE>;
          for (var i = 0u; i < QE; i++) {
            let keep = select(s2[i], s2[i + QE], hiQ);
            let send = select(s2[i + QE], s2[i], hiQ);
            s4[i] = keep + subgroupShuffleXor(send, TQ);
          }
          for (var mask = TQ / 2u; mask > 0u; mask = mask / 2u) {
            for (var i = 0u; i < QE; i++) {
              s4[i] += subgroupShuffleXor(s4[i], mask);
            }
          }
          // This lane's keys are (hiH ? HU : 0) + (hiQ ? QU : 0) + u, u < QU.
          var ovalid: array<bool, QU>;
          var oxs: array<u32, QU>;
          for (var u = 0u; u < QU; u++) {
            ovalid[u] = select(select(valid[u], valid[u + QU], hiQ), select(valid[u + HU], valid[u + HU + QU], hiQ), hiH);
            oxs[u] = select(select(xs[u], xs[u + QU], hiQ), select(xs[u + HU], xs[u + HU + QU], hiQ), hiH);
          }
          if (WRITE_SCORES) {
            // Lane `r * TW / 4 + ql` of each quarter takes key r * TW / 4 + ql of its quarter.
            let ql = lane % TQ;
            for (var r = 0u; r < (QU + TQ - 1u) / TQ; r++) {
              let mu = r * TQ + ql;
              var x = 0u;
              var ok = false;
              for (var u = 0u; u < QU; u++) {
                if (u == mu) {
                  x = oxs[u];
                  ok = ovalid[u];
                }
              }
              for (var h = 0u; h < GROUP; h++) {
                var v = 0.0;
                for (var u = 0u; u < QU; u++) {
                  v = select(v, s4[u * GROUP + h], u == mu);
                }
                if (ok) {
                  scores[(b * H + j * GROUP + h) * P.scoreStride + x] = v;
                }
              }
            }
          }
          for (var h = 0u; h < GROUP; h++) {
            var mx = m[h];
            for (var u = 0u; u < QU; u++) {
              if (ovalid[u]) {
                mx = max(mx, s4[u * GROUP + h]);
              }
            }
            mx = max(mx, subgroupShuffleXor(mx, TQ));
            mx = max(mx, subgroupShuffleXor(mx, TW / 2u));
            let corr = exp(m[h] - mx);
            m[h] = mx;
            var hp: array<f32, HU>;
            for (var u = 0u; u < QU; u++) {
              let mp = select(0.0, exp(s4[u * GROUP + h] - mx), ovalid[u]);
              let op = subgroupShuffleXor(mp, TQ);
              hp[u] = select(mp, op, hiQ);
              hp[u + QU] = select(op, mp, hiQ);
            }
            var p: array<f32, U>;
            for (var u = 0u; u < HU; u++) {
              let op = subgroupShuffleXor(hp[u], TW / 2u);
              p[u] = select(hp[u], op, hiH);
              p[u + HU] = select(op, hp[u], hiH);
            }
            var ls = 0.0;
            for (var u = 0u; u < U; u++) {
              ls += p[u];
            }
            l[h] = l[h] * corr + ls;
            for (var pp = 0u; pp < PPL; pp++) {
              for (var i = 0u; i < PV; i++) {
                var a = acc[(h * PPL + pp) * PV + i] * corr;
                for (var u = 0u; u < U; u++) {
                  a += p[u] * kp4(vp[u * PPL + pp], i);
                }
                acc[(h * PPL + pp) * PV + i] = a;
              }
            }
          }
        } else {
          // HALF_TRED (with V; U even): the butterfly's first round transposes (each half of the team
          // keeps the scores of its half of the step's keys and adds the partner's), the other rounds
          // reduce that half only; each half takes the exps of its own keys and fetches the partner
          // half's probabilities with one shuffle each. The same bits as the full butterfly.
          const HU: u32 = U / 2u;
          const HE: u32 = HU * GROUP;
          let hiH = (lane & (TW / 2u)) != 0u;
          var s2: array<f32, HE>;
          for (var i = 0u; i < HE; i++) {
            let keep = select(sc[i], sc[i + HE], hiH);
            let send = select(sc[i + HE], sc[i], hiH);
            s2[i] = keep + subgroupShuffleXor(send, TW / 2u);
          }
          for (var mask = TW / 4u; mask > 0u; mask = mask / 2u) {
            for (var i = 0u; i < HE; i++) {
              s2[i] += subgroupShuffleXor(s2[i], mask);
            }
          }
          if (WRITE_SCORES) {
            // Lane `r * TW / 2 + hl` of each half takes key r * TW / 2 + hl of its half, one store per
            // query head: the step's U consecutive keys of a head still go out as one store.
            let hl = lane % (TW / 2u);
            for (var r = 0u; r < (HU + TW / 2u - 1u) / (TW / 2u); r++) {
              let mu = r * (TW / 2u) + hl;
              var x = 0u;
              var ok = false;
              for (var u = 0u; u < HU; u++) {
                if (u == mu) {
                  x = select(xs[u], xs[u + HU], hiH);
                  ok = select(valid[u], valid[u + HU], hiH);
                }
              }
              for (var h = 0u; h < GROUP; h++) {
                var v = 0.0;
                for (var u = 0u; u < HU; u++) {
                  v = select(v, s2[u * GROUP + h], u == mu);
                }
                if (ok) {
                  scores[(b * H + j * GROUP + h) * P.scoreStride + x] = v;
                }
              }
            }
          }
          for (var h = 0u; h < GROUP; h++) {
            var mx = m[h];
            for (var u = 0u; u < HU; u++) {
              if (select(valid[u], valid[u + HU], hiH)) {
                mx = max(mx, s2[u * GROUP + h]);
              }
            }
            mx = max(mx, subgroupShuffleXor(mx, TW / 2u));
            let corr = exp(m[h] - mx);
            m[h] = mx;
            var p: array<f32, U>;
            for (var u = 0u; u < HU; u++) {
              let mp = select(0.0, exp(s2[u * GROUP + h] - mx), select(valid[u], valid[u + HU], hiH));
              let op = subgroupShuffleXor(mp, TW / 2u);
              p[u] = select(mp, op, hiH);
              p[u + HU] = select(op, mp, hiH);
            }
            var ls = 0.0;
            for (var u = 0u; u < U; u++) {
              ls += p[u];
            }
            l[h] = l[h] * corr + ls;
            for (var pp = 0u; pp < PPL; pp++) {
              for (var i = 0u; i < PV; i++) {
                var a = acc[(h * PPL + pp) * PV + i] * corr;
                for (var u = 0u; u < U; u++) {
                  a += p[u] * kp4(vp[u * PPL + pp], i);
                }
                acc[(h * PPL + pp) * PV + i] = a;
              }
            }
          }
        }
//#else
        for (var mask = TW / 2u; mask > 0u; mask = mask / 2u) {
          for (var e = 0u; e < U * GROUP; e++) {
            sc[e] += subgroupShuffleXor(sc[e], mask);
          }
        }
        if (WRITE_SCORES) {
          // Every lane holds every score: lane `r * TW + lane` takes key u of the step, one store per query
          // head, so the team's U consecutive keys of a head go out as one contiguous store.
          for (var r = 0u; r < (U + TW - 1u) / TW; r++) {
            let mu = r * TW + lane;
            var x = 0u;
            var ok = false;
            for (var u = 0u; u < U; u++) {
              if (u == mu) {
                x = xs[u];
                ok = valid[u];
              }
            }
            for (var h = 0u; h < GROUP; h++) {
              var v = 0.0;
              for (var u = 0u; u < U; u++) {
                v = select(v, sc[u * GROUP + h], u == mu);
              }
              if (ok) {
                scores[(b * H + j * GROUP + h) * P.scoreStride + x] = v;
              }
            }
          }
        }
        // Online softmax of the team (every lane holds the same scores).
        for (var h = 0u; h < GROUP; h++) {
          var mx = m[h];
          for (var u = 0u; u < U; u++) {
            if (valid[u]) {
              mx = max(mx, sc[u * GROUP + h]);
            }
          }
          let corr = exp(m[h] - mx);
          m[h] = mx;
          var ls = 0.0;
          var p: array<f32, U>;
          for (var u = 0u; u < U; u++) {
            p[u] = select(0.0, exp(sc[u * GROUP + h] - mx), valid[u]);
            ls += p[u];
          }
          l[h] = l[h] * corr + ls;
          if (ACCUM_V) {
            for (var pp = 0u; pp < PPL; pp++) {
              for (var i = 0u; i < PV; i++) {
                var a = acc[(h * PPL + pp) * PV + i] * corr;
                for (var u = 0u; u < U; u++) {
                  a += p[u] * kp4(vp[u * PPL + pp], i);
                }
                acc[(h * PPL + pp) * PV + i] = a;
              }
            }
          }
        }
//#endif
      }
    }
//#end

@compute @workgroup_size(WG)
fn teams_partial(@builtin(local_invocation_index) t: u32, @builtin(workgroup_id) wid: vec3<u32>,
                 @builtin(subgroup_invocation_id) sgLane: u32, @builtin(subgroup_size) sgSize: u32) {
  // Number the subgroups 0 .. WG / sgSize - 1 (no assumption about how invocations are grouped).
//#include subgroup_index sgLane
  let tm = sgIndex * (sgSize / TW) + sgLane / TW;
  let lane = sgLane % TW;

//#include split_keys
  let selRow = (b * P.kvHeads + mapped(j)) * P.kStride;

  // This lane's pieces of the group's query rows, pre-scaled.
  var qr: array<vec4<f32>, GROUP * QV>;
  for (var h = 0u; h < GROUP; h++) {
    for (var pp = 0u; pp < PPL; pp++) {
      for (var i = 0u; i < PV; i++) {
        // TRED_XOR: query slot h holds head h ^ (lane % GROUP).
        let hq = select(h, h ^ (lane % GROUP), TRED_XOR);
        qr[(h * PPL + pp) * PV + i] = q[(b * H + j * GROUP + hq) * D4 + (pp * TW + lane) * PV + i] * P.scale;
      }
    }
  }
  var m: array<f32, GROUP>;
  var l: array<f32, GROUP>;
  var acc: array<vec4<f32>, GROUP * QV>;
  for (var h = 0u; h < GROUP; h++) {
    m[h] = NEG;
    l[h] = 0.0;
  }
  for (var e = 0u; e < GROUP * QV; e++) {
    acc[e] = vec4<f32>(0.0);
  }

  // LSTATS: this lane's running (max, sum) of its own scores.
  var lm = NEG;
  var ll = 0.0;
  let steps = (end - start + NT * U - 1u) / (NT * U);
  var fold = vec4<f32>(0.0);  // LONLY
  // AHEAD: step s + 1's loads are issued before step s's math (two steps of rows in registers).
  var ahead: StepData;
  if (AHEAD && steps > 0u) {
//#include stage_indices 0u
    ahead = loadStep(start + tm * U, end, kvBase, selRow, lane, PREFETCH, tm * U);
  }
  for (var s = 0u; s < steps; s++) {
    var cur: StepData;
    if (AHEAD) {
      cur = ahead;
      let sn = s + 1u;
      if (sn < steps) {
//#include stage_indices sn
        ahead = loadStep(start + (sn * NT + tm) * U, end, kvBase, selRow, lane, PREFETCH, (sn % SB) * NT * U + tm * U);
      }
    } else {
//#include stage_indices s
      // Issue every load of the step first.
      cur = loadStep(start + (s * NT + tm) * U, end, kvBase, selRow, lane, PREFETCH, (s % SB) * NT * U + tm * U);
    }
    if (LONLY) {
      for (var e = 0u; e < U * PPL; e++) {
        for (var i = 0u; i < PV; i++) {
          fold += kp4(cur.kp[e], i);
          if (ACCUM_V) {
            fold += kp4(cur.vp[e], i);
          }
        }
      }
    } else {
//#include step_math cur
    }
  }
  // LONLY: the loads stay live (the fold decides a change nobody reads as attention).
  if (LONLY && fold.x == 1234.5) {
    acc[0].x += 1.0;
  }

  if (LSTATS) {
    // The lanes' states of each head (GROUP apart) merged across the team, then every lane takes all.
    for (var mk = GROUP; mk < TW; mk = mk * 2u) {
      let om = subgroupShuffleXor(lm, mk);
      let ol = subgroupShuffleXor(ll, mk);
      let mn = max(lm, om);
      ll = ll * exp(lm - mn) + ol * exp(om - mn);
      lm = mn;
    }
    for (var h = 0u; h < GROUP; h++) {
      m[h] = subgroupShuffle(lm, sgLane - lane + h);
      l[h] = subgroupShuffle(ll, sgLane - lane + h);
    }
  }

  // Merge the teams into this split's partials.
  let rowBase = (b * H + j * GROUP) * P.splits + split;
  if (SGM) {
    for (var mk = TW; mk < sgSize; mk = mk * 2u) {
      for (var h = 0u; h < GROUP; h++) {
        let om = subgroupShuffleXor(m[h], mk);
        let ol = subgroupShuffleXor(l[h], mk);
        let mn = max(m[h], om);
        let ca = exp(m[h] - mn);
        let cb = exp(om - mn);
        l[h] = l[h] * ca + ol * cb;
        if (ACCUM_V) {
          for (var e = 0u; e < QV; e++) {
            let oa = subgroupShuffleXor(acc[h * QV + e], mk);
            acc[h * QV + e] = acc[h * QV + e] * ca + oa * cb;
          }
        }
        m[h] = mn;
      }
    }
    if (sgLane < TW) {
      for (var h = 0u; h < GROUP; h++) {
        if (lane == 0u) {
          xsML[sgIndex * GROUP + h] = vec2<f32>(m[h], l[h]);
        }
        if (ACCUM_V) {
          for (var e = 0u; e < QV; e++) {
            xsO[(sgIndex * GROUP + h) * D4 + (e / PV * TW + lane) * PV + e % PV] = acc[h * QV + e];
          }
        }
      }
    }
    workgroupBarrier();
    let nsg = WG / sgSize;
    for (var w = t; w < GROUP * D4; w += WG) {
      let h = w / D4;
      let e = w % D4;
      var M = NEG;
      for (var g = 0u; g < nsg; g++) {
        M = max(M, xsML[g * GROUP + h].x);
      }
      var L = 0.0;
      var o = vec4<f32>(0.0);
      for (var g = 0u; g < nsg; g++) {
        let c = exp(xsML[g * GROUP + h].x - M);
        L += xsML[g * GROUP + h].y * c;
        if (ACCUM_V) {
          o += xsO[(g * GROUP + h) * D4 + e] * c;
        }
      }
      if (e == 0u) {
        partML[(rowBase + h * P.splits) * 2u] = M;
        partML[(rowBase + h * P.splits) * 2u + 1u] = L;
      }
      if (ACCUM_V) {
        partO[(rowBase + h * P.splits) * D4 + e] = o;
      }
    }
    workgroupBarrier();
  }
  for (var h = 0u; h < select(GROUP, 0u, SGM); h++) {
    if (lane == 0u) {
      xm[tm] = m[h];
      xl[tm] = l[h];
    }
    if (ACCUM_V) {
      for (var pp = 0u; pp < PPL; pp++) {
        for (var i = 0u; i < PV; i++) {
          xo[tm * D4 + (pp * TW + lane) * PV + i] = acc[(h * PPL + pp) * PV + i];
        }
      }
    }
    workgroupBarrier();
    var M = NEG;
    for (var e = 0u; e < NT; e++) {
      M = max(M, xm[e]);
    }
    if (t == 0u) {
      var L = 0.0;
      for (var e = 0u; e < NT; e++) {
        L += xl[e] * exp(xm[e] - M);
      }
      partML[(rowBase + h * P.splits) * 2u] = M;
      partML[(rowBase + h * P.splits) * 2u + 1u] = L;
    }
    if (ACCUM_V && t < D4) {
      var o = vec4<f32>(0.0);
      for (var e = 0u; e < NT; e++) {
        o += xo[e * D4 + t] * exp(xm[e] - M);
      }
      partO[(rowBase + h * P.splits) * D4 + t] = o;
    }
    workgroupBarrier();
  }
}

// teams_merge: merges the splits of one query head in one pass over them, one workgroup of MWG
// invocations (host-prepended, 512 where the device allows) per (query head, sequence). With V,
// invocation (g, e) walks splits g, g + MG, .. for vec4 e (MG = MWG / D4 groups); without V (the
// anchors' scores pass), every invocation walks its own splits t, t + MWG, ..; four splits a round (all
// loads of a round issued before any is used), each invocation with its own running (max, sum, weighted
// V), so nothing waits for a global maximum first. The running states are then merged through
// workgroup memory. Writes the normalised output (ACCUM_V) and the row's softmax statistics (max, sum)
// that the anchor's pooling needs. Compiled only with MERGE (so teams_partial's module has none of it). Dispatch `(heads, batch)`. Bytes: `splits * (HEAD_DIM + 2) * 4` per
// query head. (Until session 7, teams_combine reduced the maximum first, then the sums, then V: on the
// H200 at 128k batch 1, twice in turn, it took dense 201.4 and 201.9 us against 196.7 and 195.9 (call A,
// this merge at 256 invocations), layer 0 252.9 and 252.6 against 246.2 and 246.7, reuse 46.6 and 46.7
// against 45.2 and 45.1 (call B).)

//#if MERGE
const MU: u32 = 4u;                          // splits per round
const ML: u32 = select(1u, D4, ACCUM_V);     // invocations per split
const MG: u32 = MWG / ML;                    // invocations walking different splits
var<workgroup> cml: array<vec2<f32>, MWG>;
var<workgroup> mvec: array<vec4<f32>, select(1u, MWG, ACCUM_V)>;

@compute @workgroup_size(MWG)
fn teams_merge(@builtin(local_invocation_index) t: u32, @builtin(workgroup_id) wid: vec3<u32>) {
  let h = wid.x;
  let b = wid.y;
  let row = (b * P.heads + h) * P.splits;
  let e = t % ML;
  let g = t / ML;
  var m = NEG;
  var l = 0.0;
  var o = vec4<f32>(0.0);
  for (var s0 = g; s0 < P.splits; s0 += MG * MU) {
    var pm: array<vec2<f32>, MU>;
    var po: array<vec4<f32>, MU>;
    for (var i = 0u; i < MU; i++) {
      let s = s0 + i * MG;
      pm[i] = vec2<f32>(NEG, 0.0);
      po[i] = vec4<f32>(0.0);
      if (s < P.splits) {
        pm[i] = vec2<f32>(partML[(row + s) * 2u], partML[(row + s) * 2u + 1u]);
        if (ACCUM_V) {
          po[i] = partO[(row + s) * D4 + e];
        }
      }
    }
    var mx = m;
    for (var i = 0u; i < MU; i++) {
      mx = max(mx, pm[i].x);
    }
    let c = exp(m - mx);
    l *= c;
    o *= c;
    for (var i = 0u; i < MU; i++) {
      let ci = exp(pm[i].x - mx);
      l += pm[i].y * ci;
      o += po[i] * ci;
    }
    m = mx;
  }
  cml[t] = vec2<f32>(m, l);
  if (ACCUM_V) {
    mvec[t] = o;
  }
  workgroupBarrier();
  // Invocation t < D4 merges states t, t + D4, ..: with V, the states of vec4 t; without, a share of all.
  var M = NEG;
  var L = 0.0;
  var O = vec4<f32>(0.0);
  if (t < D4) {
    for (var i = 0u; i < MWG / D4; i++) {
      M = max(M, cml[i * D4 + t].x);
    }
    for (var i = 0u; i < MWG / D4; i++) {
      let c = exp(cml[i * D4 + t].x - M);
      L += cml[i * D4 + t].y * c;
      if (ACCUM_V) {
        O += mvec[i * D4 + t] * c;
      }
    }
  }
  if (!ACCUM_V) {
    workgroupBarrier();
    if (t < D4) {
      cml[t] = vec2<f32>(M, L);
    }
    workgroupBarrier();
    if (t == 0u) {
      M = NEG;
      for (var i = 0u; i < D4; i++) {
        M = max(M, cml[i].x);
      }
      L = 0.0;
      for (var i = 0u; i < D4; i++) {
        L += cml[i].y * exp(cml[i].x - M);
      }
    }
  }
  if (t == 0u) {
    stats[(b * P.heads + h) * 2u] = M;
    stats[(b * P.heads + h) * 2u + 1u] = L;
  }
  if (ACCUM_V && t < D4) {
    outO[(b * P.heads + h) * D4 + t] = O / L;
  }
}
//#endif
