// Prefill attention over query tiles of TILE tokens: dense causal, or sparse over a tile's selected
// earlier keys (GATHER, read through the head map) plus its own diagonal tile, causally.
//
// Prepended by the host: `const HEAD_DIM, D4, GROUP, TILE, BK, WGP = GROUP * TILE`, flags `GATHER`,
// `ACCUM_V` (false: softmax statistics only) and `WRITE_STATS`, and `KV4`, `fn kv4`.
//
// One workgroup per (tile, KV head, sequence); one invocation per (query head of the group, query
// of the tile). K/V rows are staged BK at a time in workgroup memory and shared by the group.

struct Params {
  queries: u32,     // queries in the chunk
  queryStart: u32,  // position of the chunk's first query; keys 0 .. queryStart + queries - 1
  capacity: u32,
  heads: u32,
  kvHeads: u32,
  kStride: u32,     // row stride of the index slot
  tiles: u32,       // tiles in the chunk
  _pad0: u32,
//#include params_tail
}

//#include kv_bindings KV4
@group(0) @binding(5) var<storage, read> counts: array<u32>;
@group(0) @binding(6) var<storage, read_write> outO: array<vec4<f32>>;
@group(0) @binding(7) var<storage, read_write> stats: array<f32>;

const NEG: f32 = -3.0e38;

var<workgroup> ks: array<vec4<f32>, BK * D4>;
var<workgroup> vs: array<vec4<f32>, BK * D4>;
var<workgroup> kpos: array<u32, BK>;

@compute @workgroup_size(WGP)
fn prefill_attend(@builtin(local_invocation_index) t: u32, @builtin(workgroup_id) wid: vec3<u32>) {
  let tile = wid.x;
  let j = wid.y;
  let b = wid.z;
  let hl = t / TILE;
  let i = t % TILE;
  let h = j * GROUP + hl;
  let qi = tile * TILE + i;
  let rowValid = qi < P.queries;
  let pos = P.queryStart + qi;
  let s = P.queryStart + tile * TILE;                   // keys before the tile
  let diagEnd = min(s + TILE, P.queryStart + P.queries);
  var before = s;
  if (GATHER) {
    before = counts[tile];
  }
  let total = before + (diagEnd - s);
  let kvBase = (b * P.kvHeads + j) * P.capacity;
  let selRow = ((b * P.kvHeads + mapped(j)) * P.tiles + tile) * P.kStride;

  var qr: array<vec4<f32>, D4>;
  var acc: array<vec4<f32>, D4>;
  let qb = ((b * P.heads + h) * P.queries + min(qi, P.queries - 1u)) * D4;
  for (var e = 0u; e < D4; e++) {
    qr[e] = q[qb + e] * P.scale;
    acc[e] = vec4<f32>(0.0);
  }
  var m = NEG;
  var l = 0.0;
  for (var c0 = 0u; c0 < total; c0 += BK) {
    let cnt = min(BK, total - c0);
    workgroupBarrier();
    for (var e = t; e < cnt * D4; e += WGP) {
      let c = c0 + e / D4;
      var x = c;
      if (c >= before) {
        x = s + (c - before);
      } else if (GATHER) {
        x = sel[selRow + c];
      }
      if (e % D4 == 0u) {
        kpos[e / D4] = x;
      }
      ks[e] = kv4(kbuf[(kvBase + x) * D4 + e % D4]);
      if (ACCUM_V) {
        vs[e] = kv4(vbuf[(kvBase + x) * D4 + e % D4]);
      }
    }
    workgroupBarrier();
    if (rowValid) {
      var sc: array<f32, BK>;
      var tm = NEG;
      for (var c = 0u; c < cnt; c++) {
        var d = NEG;
        if (kpos[c] <= pos) {
          d = 0.0;
          for (var e = 0u; e < D4; e++) {
            d += dot(qr[e], ks[c * D4 + e]);
          }
        }
        sc[c] = d;
        tm = max(tm, d);
      }
      if (tm > NEG) {
        let mn = max(m, tm);
        let cr = exp(m - mn);
        l *= cr;
        if (ACCUM_V) {
          for (var e = 0u; e < D4; e++) {
            acc[e] *= cr;
          }
        }
        for (var c = 0u; c < cnt; c++) {
          if (sc[c] > NEG) {
            let p = exp(sc[c] - mn);
            l += p;
            if (ACCUM_V) {
              for (var e = 0u; e < D4; e++) {
                acc[e] += p * vs[c * D4 + e];
              }
            }
          }
        }
        m = mn;
      }
    }
  }
  if (rowValid) {
    let ob = (b * P.heads + h) * P.queries + qi;
    if (ACCUM_V) {
      for (var e = 0u; e < D4; e++) {
        outO[ob * D4 + e] = acc[e] / l;
      }
    }
    if (WRITE_STATS) {
      stats[ob * 2u] = m;
      stats[ob * 2u + 1u] = l;
    }
  }
}
