// Decode attention by subgroup teams: one query token per sequence, the keys split over workgroups
// (flash-decoding), each workgroup's keys split over teams of TW lanes of one subgroup.
//
// Why (against decode_attend.wgsl, the "chunked" kernel): there, one invocation reads a whole key row
// (uncoalesced), and every chunk of keys costs six workgroup barriers and serial reductions. Here a
// team reads U consecutive K and V rows per step with 16-byte loads, adjacent lanes on adjacent
// 16-byte pieces of a row (coalesced), all loads of a step issued before any is used; the dot
// products are finished with subgroupShuffleXor inside the team, and each team keeps its own online
// softmax (max, sum, weighted V) in registers: no barrier in the key loop. The teams of a workgroup
// merge once at the end, then teams_combine merges the splits.
//
// Layout: as decode_attend.wgsl. q `[batch, heads, HEAD_DIM]` f32; K and V `[batch, kvHeads,
// capacity, HEAD_DIM]` read as 16-byte pieces `KP` (f32: vec4<f32>; f16: vec4<u32>, eight f16 packed);
// sel (GATHER) `[batch, kvHeads, kStride]` u32 key indices; partML `[batch, heads, splits, 2]` f32
// (max, sum of one split; row stride P.partStride), partO `[batch, heads, splits, HEAD_DIM]` f32
// (unnormalised, the same stride); scores
// (WRITE_SCORES) `[batch, heads, scoreStride]` f32 scaled logits at their key positions.
//
// Dispatch: `(splits, kvHeads, batch)` workgroups of WG invocations, WG / TW teams. Team `tm` of a
// workgroup takes, in step `s`, keys `start + (s * NT + tm) * U + u`, `u < U`. Lane `lane` of the team
// reads pieces `pp * TW + lane` (`pp < PPL`) of each row.
//
// Bytes: K (and V when ACCUM_V) rows of the keys attended, once; partials `splits * GROUP * (HEAD_DIM +
// 2) * 4` per workgroup row; scores when WRITE_SCORES.
//
// Prepended by the host: `const HEAD_DIM, GROUP, WG, TW, PPL, PV, U, SB`, the flags `GATHER`, `ACCUM_V`,
// `WRITE_SCORES` (each head's scores of a team step stored as one contiguous run), `PREFETCH`, `FUSED`,
// `TRED` (U * GROUP == TW: the transposing reduction), and the piece type `KP` with
// `fn kp4(e: KP, i: u32) -> vec4<f32>` (i < PV). It needs the subgroups feature, a subgroup size that is a multiple of TW, and WG a
// multiple of it.
//
// PREFETCH (with GATHER): the workgroup stages the key indices of SB steps at a time in workgroup
// memory, so a step's K/V loads wait for one load, not for the index load and then the row load;
// without, indices are read directly.
// FUSED: no teams_combine dispatch; the last workgroup of each (sequence, KV head) to finish (an atomic
// counter per row, reset by that workgroup) merges the splits of the group's query heads itself. With
// P.mergeGroup > 0 the merge has two levels: the last workgroup of each group of mergeGroup
// consecutive splits merges them into a partial of its own (index splits + group), and the last of
// those groups merges the groups' partials: two rounds of loads instead of splits / MU.
// WGSL has no device-scope fence: the merge relies on the other workgroups' partials being visible
// once their counter increments are (a storageBarrier orders them within each workgroup), which is
// what the H200's Vulkan driver was checked to give (repeated runs bit-identical, parity); it is an
// option, not the portable path.

struct Params {
  n: u32,            // keys to attend: n (dense) or the selection's k (gather)
  capacity: u32,     // K/V rows per head
  span: u32,         // keys per workgroup, a multiple of NT * U
  splits: u32,       // workgroups per (sequence, KV head)
  heads: u32,
  kvHeads: u32,
  kStride: u32,      // row stride of the index slot
  scoreStride: u32,  // row stride of the scores buffer
  scale: f32,
  mergeGroup: u32,     // FUSED: splits merged per first-level group (0: one level, the last workgroup merges all)
  partStride: u32,     // partials per (sequence, query head): splits, plus one per merge group
  counterStride: u32,  // FUSED: counters per (sequence, KV head): the row's, then one per merge group
  headMap: array<vec4<u32>, 8>,  // kvHeads <= 32
}

@group(0) @binding(0) var<uniform> P: Params;
@group(0) @binding(1) var<storage, read> q: array<vec4<f32>>;
@group(0) @binding(2) var<storage, read> kbuf: array<KP>;
@group(0) @binding(3) var<storage, read> vbuf: array<KP>;
@group(0) @binding(4) var<storage, read> sel: array<u32>;
@group(0) @binding(5) var<storage, read_write> partML: array<f32>;
@group(0) @binding(6) var<storage, read_write> partO: array<vec4<f32>>;
@group(0) @binding(7) var<storage, read_write> scores: array<f32>;
@group(0) @binding(8) var<storage, read_write> outO: array<vec4<f32>>;    // teams_combine, FUSED
@group(0) @binding(9) var<storage, read_write> stats: array<f32>;         // teams_combine, FUSED
@group(0) @binding(10) var<storage, read_write> counters: array<atomic<u32>>;  // FUSED

const NEG: f32 = -3.0e38;
const NT: u32 = WG / TW;              // teams per workgroup
const D4: u32 = HEAD_DIM / 4u;        // vec4s per row
const PIECES: u32 = TW * PPL;         // 16-byte pieces per row
const QV: u32 = PPL * PV;             // vec4s of a row one lane holds

var<workgroup> sgCounter: atomic<u32>;
const IB: u32 = NT * U * SB;          // key indices staged per block of SB steps (PREFETCH)
const MU: u32 = 16u;                  // splits merged per round of loads (FUSED)
var<workgroup> idx: array<u32, IB>;
var<workgroup> lastFlag: u32;
const NS: u32 = U * GROUP;            // scores of a team step
const HELD: u32 = max(1u, NS / TW);   // scores a lane holds after the transposing butterfly
const SHARE: u32 = max(1u, TW / NS);  // lanes holding the same ones
// Values a lane keeps in the butterfly's round with partners w apart (0: a plain round), for w = 16 .. 1.
const TH16: u32 = min(NS / 2u, max(1u, NS * 32u / TW) / 2u);
const TH8: u32 = min(NS / 2u, max(1u, NS * 16u / TW) / 2u);
const TH4: u32 = min(NS / 2u, max(1u, NS * 8u / TW) / 2u);
const TH2: u32 = min(NS / 2u, max(1u, NS * 4u / TW) / 2u);
const TH1: u32 = min(NS / 2u, max(1u, NS * 2u / TW) / 2u);
var<workgroup> xm: array<f32, NT>;
var<workgroup> xl: array<f32, NT>;
var<workgroup> xo: array<vec4<f32>, NT * D4>;

fn mapped(j: u32) -> u32 {
  return P.headMap[j / 4u][j % 4u];
}

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
  for (var u = 0u; u < U; u++) {
    let c = first + u;
    d.valid[u] = c < end;
    var x = min(c, end - 1u);
    if (GATHER) {
      if (useIdx) {
        x = idx[idxOff + u];
      } else {
        x = sel[selRow + x];
      }
    }
    d.xs[u] = x;
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

// Code both entry points run, pasted into each by the host (`//#snippet` / `//#paste`): WGSL
// functions that take arrays ran several times slower on the H200's driver (call A of session 5).

// This lane's pieces of the group's query rows, pre-scaled (b, j, lane).
//#snippet QLOAD
  var qr: array<vec4<f32>, GROUP * QV>;
  for (var h = 0u; h < GROUP; h++) {
    for (var pp = 0u; pp < PPL; pp++) {
      for (var i = 0u; i < PV; i++) {
        qr[(h * PPL + pp) * PV + i] = q[(b * P.heads + j * GROUP + h) * D4 + (pp * TW + lane) * PV + i] * P.scale;
      }
    }
  }
//#endsnippet

// The lane's part of the step's dot products (qr, kp): score `u * GROUP + h` for key u, query head h.
//#snippet DOTS
    var sc: array<f32, NS>;
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
//#endsnippet

// The transposing butterfly over the team's lanes (NS and TW powers of two): each round, partners w
// apart, a lane keeps the half of its partial scores that its lane bit w selects and adds the partner's
// part of that half (a plain butterfly round once one is left). Afterwards lane `lane` holds the full
// scores (lane / SHARE) * HELD + i, i < HELD, in sc[i]: NS / TW each when NS >= TW, else each score on
// SHARE = TW / NS lanes; NS - 1 shuffles per lane at most instead of log2(TW) per score.
//#snippet TRANSPOSE
    if (TW >= 32u) {
      let hi = (lane & 16u) != 0u;
      for (var i = 0u; i < TH16; i++) {
        let keep = select(sc[i], sc[i + TH16], hi);
        let send = select(sc[i + TH16], sc[i], hi);
        sc[i] = keep + subgroupShuffleXor(send, 16u);
      }
      if (TH16 == 0u) {
        sc[0] += subgroupShuffleXor(sc[0], 16u);
      }
    }
    if (TW >= 16u) {
      let hi = (lane & 8u) != 0u;
      for (var i = 0u; i < TH8; i++) {
        let keep = select(sc[i], sc[i + TH8], hi);
        let send = select(sc[i + TH8], sc[i], hi);
        sc[i] = keep + subgroupShuffleXor(send, 8u);
      }
      if (TH8 == 0u) {
        sc[0] += subgroupShuffleXor(sc[0], 8u);
      }
    }
    if (TW >= 8u) {
      let hi = (lane & 4u) != 0u;
      for (var i = 0u; i < TH4; i++) {
        let keep = select(sc[i], sc[i + TH4], hi);
        let send = select(sc[i + TH4], sc[i], hi);
        sc[i] = keep + subgroupShuffleXor(send, 4u);
      }
      if (TH4 == 0u) {
        sc[0] += subgroupShuffleXor(sc[0], 4u);
      }
    }
    if (TW >= 4u) {
      let hi = (lane & 2u) != 0u;
      for (var i = 0u; i < TH2; i++) {
        let keep = select(sc[i], sc[i + TH2], hi);
        let send = select(sc[i + TH2], sc[i], hi);
        sc[i] = keep + subgroupShuffleXor(send, 2u);
      }
      if (TH2 == 0u) {
        sc[0] += subgroupShuffleXor(sc[0], 2u);
      }
    }
    if (TW >= 2u) {
      let hi = (lane & 1u) != 0u;
      for (var i = 0u; i < TH1; i++) {
        let keep = select(sc[i], sc[i + TH1], hi);
        let send = select(sc[i + TH1], sc[i], hi);
        sc[i] = keep + subgroupShuffleXor(send, 1u);
      }
      if (TH1 == 0u) {
        sc[0] += subgroupShuffleXor(sc[0], 1u);
      }
    }
//#endsnippet

// Merges the teams' (m, l, acc) of each query head into this split's partials at rowBase (+ h *
// P.partStride), one head at a time (tm, lane).
//#snippet TEAMMERGE
  for (var h = 0u; h < GROUP; h++) {
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
      partML[(rowBase + h * P.partStride) * 2u] = M;
      partML[(rowBase + h * P.partStride) * 2u + 1u] = L;
    }
    if (ACCUM_V && t < D4) {
      var o = vec4<f32>(0.0);
      for (var e = 0u; e < NT; e++) {
        o += xo[e * D4 + t] * exp(xm[e] - M);
      }
      partO[(rowBase + h * P.partStride) * D4 + t] = o;
    }
    workgroupBarrier();
  }
//#endsnippet

// FUSED, at the end of an entry point once its split's partials are written (b, j, split, t): the last
// workgroup of the row (with P.mergeGroup > 0: of its group of splits, then of the row) merges, and
// resets the counter it used. Level 0 merges a group into partial splits + g; level 1 merges the row's
// splits (or the groups' partials) into the output and the row statistics.
//#snippet SPLITMERGE
  if (FUSED) {
    let crow = (b * P.kvHeads + j) * P.counterStride;
    let G = P.mergeGroup;
    let g = split / max(G, 1u);
    for (var lvl = select(1u, 0u, G > 0u); lvl < 2u; lvl++) {
      var first = 0u;
      var count = P.splits;
      var dst = 0u;
      var ctr = crow;
      if (lvl == 0u) {
        first = g * G;
        count = min(G, P.splits - first);
        dst = P.splits + g;
        ctr = crow + 1u + g;
      } else if (G > 0u) {
        first = P.splits;
        count = (P.splits + G - 1u) / G;
      }
      storageBarrier();
      if (t == 0u) {
        let done = atomicAdd(&counters[ctr], 1u);
        lastFlag = select(0u, 1u, done == count - 1u);
      }
      if (workgroupUniformLoad(&lastFlag) == 0u) {
        break;
      }
      // One invocation per (query head of the group, vec4 of the row), MU partials per round of loads.
      for (var w = t; w < GROUP * D4; w += WG) {
        let hr = b * P.heads + j * GROUP + w / D4;
        let e = w % D4;
        let row = hr * P.partStride;
        var M = NEG;
        var L = 0.0;
        var o = vec4<f32>(0.0);
        for (var s0 = 0u; s0 < count; s0 += MU) {
          var ms: array<f32, MU>;
          var ls: array<f32, MU>;
          var os: array<vec4<f32>, MU>;
          for (var i = 0u; i < MU; i++) {
            let s = first + min(s0 + i, count - 1u);
            ms[i] = partML[(row + s) * 2u];
            ls[i] = partML[(row + s) * 2u + 1u];
            if (ACCUM_V) {
              os[i] = partO[(row + s) * D4 + e];
            }
          }
          for (var i = 0u; i < MU; i++) {
            if (s0 + i < count) {
              let mn = max(M, ms[i]);
              let ca = exp(M - mn);
              let cs = exp(ms[i] - mn);
              L = L * ca + ls[i] * cs;
              if (ACCUM_V) {
                o = o * ca + os[i] * cs;
              }
              M = mn;
            }
          }
        }
        if (lvl == 1u) {
          if (ACCUM_V) {
            outO[hr * D4 + e] = o / L;
          }
          if (e == 0u) {
            stats[hr * 2u] = M;
            stats[hr * 2u + 1u] = L;
          }
        } else {
          if (ACCUM_V) {
            partO[(row + dst) * D4 + e] = o;
          }
          if (e == 0u) {
            partML[(row + dst) * 2u] = M;
            partML[(row + dst) * 2u + 1u] = L;
          }
        }
      }
      if (t == 0u) {
        atomicStore(&counters[ctr], 0u);
      }
    }
  }
//#endsnippet

@compute @workgroup_size(WG)
fn teams_partial(@builtin(local_invocation_index) t: u32, @builtin(workgroup_id) wid: vec3<u32>,
                 @builtin(subgroup_invocation_id) sgLane: u32, @builtin(subgroup_size) sgSize: u32) {
  // Number the subgroups 0 .. WG / sgSize - 1 (no assumption about how invocations are grouped).
  if (t == 0u) {
    atomicStore(&sgCounter, 0u);
  }
  workgroupBarrier();
  var mine = 0u;
  if (sgLane == 0u) {
    mine = atomicAdd(&sgCounter, 1u);
  }
  let sgIndex = subgroupBroadcast(mine, 0u);
  let tm = sgIndex * (sgSize / TW) + sgLane / TW;
  let lane = sgLane % TW;

  let split = wid.x;
  let j = wid.y;
  let b = wid.z;
  let H = P.heads;
  let start = split * P.span;
  let end = min(start + P.span, P.n);
  let kvBase = (b * P.kvHeads + j) * P.capacity;
  let selRow = (b * P.kvHeads + mapped(j)) * P.kStride;

  //#paste QLOAD
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

  let steps = (end - start + NT * U - 1u) / (NT * U);
  for (var s = 0u; s < steps; s++) {
    if (GATHER && PREFETCH && s % SB == 0u) {
      workgroupBarrier();
      for (var i = t; i < IB; i += WG) {
        idx[i] = sel[selRow + min(start + s * NT * U + i, end - 1u)];
      }
      workgroupBarrier();
    }
    // Issue every load of the step first.
    let cur = loadStep(start + (s * NT + tm) * U, end, kvBase, selRow, lane, PREFETCH, (s % SB) * NT * U + tm * U);
    var valid = cur.valid;
    var kp = cur.kp;
    var vp = cur.vp;
    var xs = cur.xs;
    // Partial dot products over this lane's pieces, finished across the team.
    //#paste DOTS
    if (TRED) {
      // U * GROUP == TW: a transposing butterfly (each round keeps half of the values and adds the
      // partner's other half) leaves lane e with the full score e = u * GROUP + h: TW - 1 shuffles
      // instead of log2(TW) per value, and one exp per lane for the probabilities.
      //#paste TRANSPOSE
      let sv = sc[0];
      let myh = lane % GROUP;
      let myu = lane / GROUP;
      var okv = false;
      var xv = 0u;
      for (var u = 0u; u < U; u++) {
        if (u == myu) {
          okv = valid[u];
          xv = xs[u];
        }
      }
      if (WRITE_SCORES && okv) {
        scores[(b * H + j * GROUP + myh) * P.scoreStride + xv] = sv;
      }
      let teamBase = sgLane - lane;
      // The step's maximum of each query head (a head's lanes are GROUP apart).
      var gm = select(NEG, sv, okv);
      for (var mk = GROUP; mk < TW; mk = mk * 2u) {
        gm = max(gm, subgroupShuffleXor(gm, mk));
      }
      var corr: array<f32, GROUP>;
      var mine = NEG;
      for (var h = 0u; h < GROUP; h++) {
        let mx = max(m[h], subgroupShuffle(gm, teamBase + h));
        corr[h] = exp(m[h] - mx);
        m[h] = mx;
        mine = select(mine, mx, h == myh);
      }
      let pv = select(0.0, exp(sv - mine), okv);
      var ps = pv;
      for (var mk = GROUP; mk < TW; mk = mk * 2u) {
        ps += subgroupShuffleXor(ps, mk);
      }
      for (var h = 0u; h < GROUP; h++) {
        l[h] = l[h] * corr[h] + subgroupShuffle(ps, teamBase + h);
      }
      if (ACCUM_V) {
        for (var h = 0u; h < GROUP; h++) {
          for (var e = 0u; e < PPL * PV; e++) {
            acc[h * PPL * PV + e] = acc[h * PPL * PV + e] * corr[h];
          }
          for (var u = 0u; u < U; u++) {
            let pu = subgroupShuffle(pv, teamBase + u * GROUP + h);
            for (var pp = 0u; pp < PPL; pp++) {
              for (var i = 0u; i < PV; i++) {
                acc[(h * PPL + pp) * PV + i] += pu * kp4(vp[u * PPL + pp], i);
              }
            }
          }
        }
      }
      continue;
    }
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
  }

  let rowBase = (b * H + j * GROUP) * P.partStride + split;
  //#paste TEAMMERGE
  //#paste SPLITMERGE
}

// gather_partial: the gathering pass (GATHER, ACCUM_V) as a single team step per workgroup, shaped like
// probe.wgsl's gather_rows. The workgroup stages its P.span = NT * U key indices and numbers its
// subgroups behind one barrier (workgroup memory starts zeroed in WGSL), each team issues the loads of
// all of its U keys' K and V rows at once, the step's NS = U * GROUP scores are finished by the
// transposing butterfly (lane `lane` ends with HELD of them, SHARE lanes holding the same ones when the
// team is wider than NS), and the team's softmax needs no running rescale. Then the team merge and, with
// FUSED, the split merge of teams_partial (else teams_combine). Dispatch `(ceil(k / span), kvHeads,
// batch)`. Needs GROUP and U powers of two and TW <= 32 (the host checks).

@compute @workgroup_size(WG)
fn gather_partial(@builtin(local_invocation_index) t: u32, @builtin(workgroup_id) wid: vec3<u32>,
                  @builtin(subgroup_invocation_id) sgLane: u32, @builtin(subgroup_size) sgSize: u32) {
  let split = wid.x;
  let j = wid.y;
  let b = wid.z;
  let start = split * P.span;
  let end = min(start + P.span, P.n);
  let kvBase = (b * P.kvHeads + j) * P.capacity;
  let selRow = (b * P.kvHeads + mapped(j)) * P.kStride;
  let lane = sgLane % TW;
  var mine = 0u;
  if (sgLane == 0u) {
    mine = atomicAdd(&sgCounter, 1u);
  }
  for (var i = t; i < NT * U; i += WG) {
    idx[i] = sel[selRow + min(start + i, end - 1u)];
  }
  //#paste QLOAD
  workgroupBarrier();
  let sgIndex = subgroupBroadcast(mine, 0u);
  let tm = sgIndex * (sgSize / TW) + sgLane / TW;
  let cur = loadStep(start + tm * U, end, kvBase, selRow, lane, true, tm * U);
  var kp = cur.kp;
  var vp = cur.vp;
  //#paste DOTS
  //#paste TRANSPOSE
  // sc[i] is score e = first + i: key e / GROUP of the team's, query head e % GROUP.
  let first = (lane / SHARE) * HELD;
  let keys = (end - start) - min(end - start, tm * U);  // the team's keys inside the split
  var m: array<f32, GROUP>;
  for (var h = 0u; h < GROUP; h++) {
    m[h] = NEG;
  }
  for (var i = 0u; i < HELD; i++) {
    let e = first + i;
    for (var h = 0u; h < GROUP; h++) {
      if (e % GROUP == h && e / GROUP < keys) {
        m[h] = max(m[h], sc[i]);
      }
    }
  }
  for (var h = 0u; h < GROUP; h++) {
    for (var mk = 1u; mk < TW; mk = mk * 2u) {
      m[h] = max(m[h], subgroupShuffleXor(m[h], mk));
    }
  }
  var p: array<f32, HELD>;
  for (var i = 0u; i < HELD; i++) {
    let e = first + i;
    var mh = NEG;
    for (var h = 0u; h < GROUP; h++) {
      mh = select(mh, m[h], e % GROUP == h);
    }
    p[i] = select(0.0, exp(sc[i] - mh), e / GROUP < keys);
  }
  // Every lane takes every probability of the step from the lane that holds it.
  let teamBase = sgLane - lane;
  var l: array<f32, GROUP>;
  var acc: array<vec4<f32>, GROUP * QV>;
  for (var h = 0u; h < GROUP; h++) {
    for (var u = 0u; u < U; u++) {
      let e = u * GROUP + h;
      let pu = subgroupShuffle(p[e % HELD], teamBase + (e / HELD) * SHARE);
      l[h] += pu;
      for (var pp = 0u; pp < PPL; pp++) {
        for (var i = 0u; i < PV; i++) {
          acc[(h * PPL + pp) * PV + i] += pu * kp4(vp[u * PPL + pp], i);
        }
      }
    }
  }
  let rowBase = (b * P.heads + j * GROUP) * P.partStride + split;
  if (SGM) {
    // The teams of a subgroup merge by shuffles (partners TW, 2 TW, .. lanes apart: the same bits on
    // both sides), then the subgroups through workgroup memory, every query head at once: one barrier
    // instead of two per head.
    for (var mk = TW; mk < sgSize; mk = mk * 2u) {
      for (var h = 0u; h < GROUP; h++) {
        let om = subgroupShuffleXor(m[h], mk);
        let ol = subgroupShuffleXor(l[h], mk);
        let mn = max(m[h], om);
        let ca = exp(m[h] - mn);
        let cb = exp(om - mn);
        l[h] = l[h] * ca + ol * cb;
        for (var e = 0u; e < QV; e++) {
          let oa = subgroupShuffleXor(acc[h * QV + e], mk);
          acc[h * QV + e] = acc[h * QV + e] * ca + oa * cb;
        }
        m[h] = mn;
      }
    }
    if (sgLane < TW) {
      for (var h = 0u; h < GROUP; h++) {
        if (lane == 0u) {
          xsML[sgIndex * GROUP + h] = vec2<f32>(m[h], l[h]);
        }
        for (var e = 0u; e < QV; e++) {
          xsO[(sgIndex * GROUP + h) * D4 + (e / PV * TW + lane) * PV + e % PV] = acc[h * QV + e];
        }
      }
    }
    workgroupBarrier();
    let nsg = WG / sgSize;
    for (var w = t; w < GROUP * D4; w += WG) {
      let h = w / D4;
      let e = w % D4;
      var M = NEG;
      for (var s = 0u; s < nsg; s++) {
        M = max(M, xsML[s * GROUP + h].x);
      }
      var L = 0.0;
      var o = vec4<f32>(0.0);
      for (var s = 0u; s < nsg; s++) {
        let c = exp(xsML[s * GROUP + h].x - M);
        L += xsML[s * GROUP + h].y * c;
        o += xsO[(s * GROUP + h) * D4 + e] * c;
      }
      if (e == 0u) {
        partML[(rowBase + h * P.partStride) * 2u] = M;
        partML[(rowBase + h * P.partStride) * 2u + 1u] = L;
      }
      partO[(rowBase + h * P.partStride) * D4 + e] = o;
    }
    workgroupBarrier();
  } else {
    //#paste TEAMMERGE
  }
  //#paste SPLITMERGE
}

// SGM (gather_partial): workgroup memory of the subgroup team merge. MSG: the most subgroups a
// workgroup has (WG / the smallest subgroup size).
var<workgroup> xsO: array<vec4<f32>, select(1u, MSG * GROUP * D4, SGM)>;
var<workgroup> xsML: array<vec2<f32>, select(1u, MSG * GROUP, SGM)>;

// teams_combine: merges the splits of one query head, one workgroup of CWG invocations per (query
// head, sequence), the splits read in parallel (attend_combine walks them serially). Writes the
// normalised output (ACCUM_V) and the row's softmax statistics (max, sum) that the anchor's pooling
// needs. Dispatch `(heads, batch)`. Bytes: `splits * (HEAD_DIM + 2) * 4` per query head.

const CWG: u32 = 256u;
const CG: u32 = CWG / D4;             // groups of D4 invocations, each walking every CG-th split
var<workgroup> cred: array<f32, CWG>;
var<workgroup> cvec: array<vec4<f32>, CWG>;

fn reduceMax(t: u32, v: f32) -> f32 {
  cred[t] = v;
  workgroupBarrier();
  for (var w = CWG / 2u; w > 0u; w = w / 2u) {
    if (t < w) {
      cred[t] = max(cred[t], cred[t + w]);
    }
    workgroupBarrier();
  }
  let r = cred[0];
  workgroupBarrier();
  return r;
}

fn reduceSum(t: u32, v: f32) -> f32 {
  cred[t] = v;
  workgroupBarrier();
  for (var w = CWG / 2u; w > 0u; w = w / 2u) {
    if (t < w) {
      cred[t] = cred[t] + cred[t + w];
    }
    workgroupBarrier();
  }
  let r = cred[0];
  workgroupBarrier();
  return r;
}

@compute @workgroup_size(CWG)
fn teams_combine(@builtin(local_invocation_index) t: u32, @builtin(workgroup_id) wid: vec3<u32>) {
  let h = wid.x;
  let b = wid.y;
  let row = (b * P.heads + h) * P.partStride;
  var m = NEG;
  for (var s = t; s < P.splits; s += CWG) {
    m = max(m, partML[(row + s) * 2u]);
  }
  let M = reduceMax(t, m);
  var l = 0.0;
  for (var s = t; s < P.splits; s += CWG) {
    l += partML[(row + s) * 2u + 1u] * exp(partML[(row + s) * 2u] - M);
  }
  let L = reduceSum(t, l);
  if (t == 0u) {
    stats[(b * P.heads + h) * 2u] = M;
    stats[(b * P.heads + h) * 2u + 1u] = L;
  }
  if (ACCUM_V) {
    let e = t % D4;
    let g = t / D4;
    var o = vec4<f32>(0.0);
    for (var s = g; s < P.splits; s += CG) {
      o += partO[(row + s) * D4 + e] * exp(partML[(row + s) * 2u] - M);
    }
    cvec[t] = o;
    workgroupBarrier();
    if (t < D4) {
      var sum = vec4<f32>(0.0);
      for (var i = 0u; i < CG; i++) {
        sum += cvec[i * D4 + t];
      }
      outO[(b * P.heads + h) * D4 + t] = sum / L;
    }
  }
}
