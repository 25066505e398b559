// Post-softmax pooling of an anchor layer: S[j](x) = sum over the query heads h of group j (and, in
// prefill, the queries i of the tile) of softmax(q[h,i] . k[x] * scale), normalised by each row's
// own full causal softmax statistics (max, sum). Written as f32 >= 0, so its bits order like u32
// for the Top-k select.
//
// Prepended by the host: `const HEAD_DIM, D4, GROUP, WG, TILE, RB` and `KV4`, `fn kv4`.

struct Params {
  n: u32,            // decode: keys; prefill: keys before the last tile of the batch
  heads: u32,
  kvHeads: u32,
  capacity: u32,
  scoreStride: u32,  // decode: row stride of scores
  pooledStride: u32, // row stride of pooled
  queries: u32,      // prefill: queries in the chunk
  queryStart: u32,   // prefill: position of the chunk's first query
  tileBase: u32,     // prefill: first tile of this batch of tiles
  tilesInBatch: u32,
  scale: f32,
  _pad: u32,
}

@group(0) @binding(0) var<uniform> P: Params;
@group(0) @binding(1) var<storage, read> scores: array<f32>;
@group(0) @binding(2) var<storage, read> stats: array<f32>;
@group(0) @binding(3) var<storage, read_write> pooled: array<f32>;

// Decode: one invocation per (key, KV head, sequence).
@compute @workgroup_size(WG)
fn pool_decode(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(workgroup_id) wid: vec3<u32>) {
  let x = gid.x;
  let j = wid.y;
  let b = wid.z;
  if (x >= P.n) {
    return;
  }
  var s = 0.0;
  for (var g = 0u; g < GROUP; g++) {
    let row = b * P.heads + j * GROUP + g;
    s += exp(scores[row * P.scoreStride + x] - stats[row * 2u]) / stats[row * 2u + 1u];
  }
  pooled[(b * P.kvHeads + j) * P.pooledStride + x] = s;
}

@group(0) @binding(4) var<storage, read> q: array<vec4<f32>>;
@group(0) @binding(5) var<storage, read> kbuf: array<KV4>;

var<workgroup> qrow: array<vec4<f32>, RB * D4>;
var<workgroup> rowM: array<f32, RB>;
var<workgroup> rowInvL: array<f32, RB>;

// Prefill: one invocation per earlier key x < s of a tile; workgroups over (key chunk, tile of the
// batch, sequence * KV head). The group's query rows are staged RB at a time.
@compute @workgroup_size(WG)
fn pool_prefill(@builtin(local_invocation_index) t: u32, @builtin(workgroup_id) wid: vec3<u32>) {
  let tb = wid.y;
  let tile = P.tileBase + tb;
  let bj = wid.z;
  let b = bj / P.kvHeads;
  let j = bj % P.kvHeads;
  let s = P.queryStart + tile * TILE;  // keys before the tile
  let x = wid.x * WG + t;
  let rowsInTile = min(TILE, P.queries - tile * TILE);
  let rows = GROUP * rowsInTile;
  var kx: array<vec4<f32>, D4>;
  let live = x < s;
  if (live) {
    let kb = (bj * P.capacity + x) * D4;
    for (var e = 0u; e < D4; e++) {
      kx[e] = kv4(kbuf[kb + e]);
    }
  }
  var acc = 0.0;
  for (var r0 = 0u; r0 < rows; r0 += RB) {
    let rn = min(RB, rows - r0);
    workgroupBarrier();
    for (var e = t; e < rn * D4; e += WG) {
      let r = r0 + e / D4;
      let h = j * GROUP + r / rowsInTile;
      let qi = tile * TILE + r % rowsInTile;
      qrow[e] = q[((b * P.heads + h) * P.queries + qi) * D4 + e % D4] * P.scale;
    }
    if (t < rn) {
      let r = r0 + t;
      let h = j * GROUP + r / rowsInTile;
      let qi = tile * TILE + r % rowsInTile;
      let st = ((b * P.heads + h) * P.queries + qi) * 2u;
      rowM[t] = stats[st];
      rowInvL[t] = 1.0 / stats[st + 1u];
    }
    workgroupBarrier();
    if (live) {
      for (var r = 0u; r < rn; r++) {
        var d = 0.0;
        for (var e = 0u; e < D4; e++) {
          d += dot(qrow[r * D4 + e], kx[e]);
        }
        acc += exp(d - rowM[r]) * rowInvL[r];
      }
    }
  }
  if (live) {
    pooled[(bj * P.tilesInBatch + tb) * P.pooledStride + x] = acc;
  }
}
