// Decode attention, one query token per sequence, split over the keys (flash-decoding).
//
// Lines between `//#if SUBGROUPS`, `//#else` and `//#endif` are kept or dropped by the host: with
// the `subgroups` feature the scores pass reads each key row with a whole subgroup (coalesced) and
// reduces with subgroupAdd; without it, one invocation per key.
//
// Prepended by the host (see packages/webgpu/src/program.ts): `const HEAD_DIM, D4, GROUP, WG, CH`,
// the flags `GATHER` (keys come from an index slot through the head map), `ACCUM_V` (attend; false:
// scores and softmax statistics only) and `WRITE_SCORES` (keep every scaled logit for the anchor's
// pooling), and the K/V element type `KV4` with `fn kv4(e: KV4) -> vec4<f32>`.
//
// attend_partial: one workgroup per (split, KV head, sequence). It walks its span of keys in chunks
// of CH, keeps a running max and sum per query head of the group, and (ACCUM_V) the unnormalised
// weighted sum of V. attend_combine merges the splits of one query head.

//#include decode_bindings KV4
const LPH: u32 = WG / GROUP;   // lanes per head in the reductions
const KS: u32 = WG / D4;       // key lanes in the V pass

var<workgroup> qs: array<vec4<f32>, GROUP * D4>;
var<workgroup> sc: array<f32, GROUP * CH>;
var<workgroup> red: array<f32, WG>;
var<workgroup> runM: array<f32, GROUP>;
var<workgroup> runL: array<f32, GROUP>;
var<workgroup> corr: array<f32, GROUP>;
var<workgroup> redv: array<vec4<f32>, WG>;

//#if SUBGROUPS
var<workgroup> sgCounter: atomic<u32>;

@compute @workgroup_size(WG)
fn attend_partial(@builtin(local_invocation_index) t: u32, @builtin(workgroup_id) wid: vec3<u32>,
                  @builtin(subgroup_invocation_id) lane: u32, @builtin(subgroup_size) sgSize: u32) {
  // Number the subgroups 0 .. sgCount-1 (no assumption about how invocations are grouped).
//#include subgroup_index lane
  let sgCount = WG / sgSize;
//#else
@compute @workgroup_size(WG)
fn attend_partial(@builtin(local_invocation_index) t: u32, @builtin(workgroup_id) wid: vec3<u32>) {
  // One invocation per key in the scores pass.
  let sgIndex = t;
  let sgCount = WG;
  let lane = 0u;
  let sgSize = 1u;
//#endif
  let split = wid.x;
  let j = wid.y;
  let b = wid.z;
  let H = P.heads;
  for (var e = t; e < GROUP * D4; e += WG) {
    let h = j * GROUP + e / D4;
    qs[e] = q[(b * H + h) * D4 + e % D4] * P.scale;
  }
  if (t < GROUP) {
    runM[t] = NEG;
    runL[t] = 0.0;
  }
  let start = split * P.span;
  let end = min(start + P.span, P.n);
  let kvBase = (b * P.kvHeads + j) * P.capacity;
  let selRow = (b * P.kvHeads + mapped(j)) * P.kStride;
  let dv = t % D4;
  let ks = t / D4;
  var acc: array<vec4<f32>, GROUP>;
  for (var h = 0u; h < GROUP; h++) {
    acc[h] = vec4<f32>(0.0);
  }
  workgroupBarrier();
  for (var c0 = start; c0 < end; c0 += CH) {
    let cnt = min(CH, end - c0);
    // Scores: with subgroups one subgroup per key, the lanes reading consecutive pieces of the key row
    // (coalesced) and subgroupAdd finishing each head's dot product; without, one key per invocation.
    for (var c = sgIndex; c < cnt; c += sgCount) {
      var x = c0 + c;
      if (GATHER) {
        x = sel[selRow + x];
      }
      let kb = (kvBase + x) * D4;
      var dots: array<f32, GROUP>;
      for (var h = 0u; h < GROUP; h++) {
        dots[h] = 0.0;
      }
      for (var e = lane; e < D4; e += sgSize) {
        let kk = kv4(kbuf[kb + e]);
        for (var h = 0u; h < GROUP; h++) {
          dots[h] += dot(qs[h * D4 + e], kk);
        }
      }
      for (var h = 0u; h < GROUP; h++) {
//#if SUBGROUPS
        let d = subgroupAdd(dots[h]);
//#else
        let d = dots[h];
//#endif
        if (lane == 0u) {
          sc[h * CH + c] = d;
          if (WRITE_SCORES) {
            scores[(b * H + j * GROUP + h) * P.scoreStride + x] = d;
          }
        }
      }
    }
    workgroupBarrier();
    // Chunk max per head.
    {
      let h = t / LPH;
      let lane = t % LPH;
      var m = NEG;
      if (h < GROUP) {
        for (var c = lane; c < cnt; c += LPH) {
          m = max(m, sc[h * CH + c]);
        }
      }
      red[t] = m;
    }
    workgroupBarrier();
    if (t < GROUP) {
      let old = runM[t];
      var m = old;
      for (var i = 0u; i < LPH; i++) {
        m = max(m, red[t * LPH + i]);
      }
      corr[t] = exp(old - m);
      runM[t] = m;
    }
    workgroupBarrier();
    // Exponentiate in place, partial sums.
    {
      let h = t / LPH;
      let lane = t % LPH;
      var l = 0.0;
      if (h < GROUP) {
        let m = runM[h];
        for (var c = lane; c < cnt; c += LPH) {
          let p = exp(sc[h * CH + c] - m);
          sc[h * CH + c] = p;
          l += p;
        }
      }
      red[t] = l;
    }
    workgroupBarrier();
    if (t < GROUP) {
      var l = 0.0;
      for (var i = 0u; i < LPH; i++) {
        l += red[t * LPH + i];
      }
      runL[t] = runL[t] * corr[t] + l;
    }
    if (ACCUM_V) {
      for (var h = 0u; h < GROUP; h++) {
        acc[h] *= corr[h];
      }
      for (var c = ks; c < cnt; c += KS) {
        var x = c0 + c;
        if (GATHER) {
          x = sel[selRow + x];
        }
        let vv = kv4(vbuf[(kvBase + x) * D4 + dv]);
        for (var h = 0u; h < GROUP; h++) {
          acc[h] += sc[h * CH + c] * vv;
        }
      }
    }
    workgroupBarrier();
  }
  let rowBase = (b * H + j * GROUP) * P.splits + split;
  if (t < GROUP) {
    partML[(rowBase + t * P.splits) * 2u] = runM[t];
    partML[(rowBase + t * P.splits) * 2u + 1u] = runL[t];
  }
  if (ACCUM_V) {
    for (var h = 0u; h < GROUP; h++) {
      redv[t] = acc[h];
      workgroupBarrier();
      if (t < D4) {
        var o = vec4<f32>(0.0);
        for (var i = 0u; i < KS; i++) {
          o += redv[i * D4 + t];
        }
        partO[(rowBase + h * P.splits) * D4 + t] = o;
      }
      workgroupBarrier();
    }
  }
}

// attend_combine: one workgroup per (query head, sequence). Writes the normalised output
// (ACCUM_V) and the row's softmax statistics (max, sum) that the anchor's pooling needs.

@compute @workgroup_size(64)
fn attend_combine(@builtin(local_invocation_index) t: u32, @builtin(workgroup_id) wid: vec3<u32>) {
  let h = wid.x;
  let b = wid.y;
  let row = (b * P.heads + h) * P.splits;
  var M = NEG;
  for (var s = 0u; s < P.splits; s++) {
    M = max(M, partML[(row + s) * 2u]);
  }
  var L = 0.0;
  for (var s = 0u; s < P.splits; s++) {
    L += partML[(row + s) * 2u + 1u] * exp(partML[(row + s) * 2u] - M);
  }
  if (t == 0u) {
    stats[(b * P.heads + h) * 2u] = M;
    stats[(b * P.heads + h) * 2u + 1u] = L;
  }
  if (ACCUM_V) {
    for (var e = t; e < D4; e += 64u) {
      var o = vec4<f32>(0.0);
      for (var s = 0u; s < P.splits; s++) {
        o += partO[(row + s) * D4 + e] * exp(partML[(row + s) * 2u] - M);
      }
      outO[(b * P.heads + h) * D4 + e] = o / L;
    }
  }
}
