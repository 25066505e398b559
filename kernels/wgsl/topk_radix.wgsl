// Exact Top-k by radix select in five dispatches, every one parallel over (chunk, row) (topk_select.wgsl
// takes nine, plus the decode anchor's pooling pass): ties to the lower index, output in index order
// (deterministic).
//
// 1. radix_hist0, grid (chunks, rows): histogram of the top digit, bits [31:21], of every value, an
//    11-bit histogram per workgroup in workgroup memory added into the row's global one. With POOL
//    (decode anchors) it first computes the values themselves, the post-softmax scores pooled over
//    the GQA group, S[j](x) = sum over h of exp(score[h, x] - max[h]) / sum[h], and writes them.
// 2. radix5_digit for bits [20:10], then for [9:0]: each workgroup recomputes the previous digit's scan
//    from its row's histogram (2048 bins, cheap; the first workgroup of the row records it), then adds
//    its chunk's histogram of the next digit among the values that match.
// 3. radix5_count: the last digit (so the k-th largest value T and the copies of T kept), then each
//    chunk's counts of values > T and == T.
// 4. radix5_emit: each workgroup sums the counts of the chunks before its own, then writes every value
//    > T at its rank and the lowest-index copies of T.
// Each pass clears the histogram the previous one read, for the next select.
//
// Values are f32 >= 0 read as u32 (the same order).
//
// Prepended by the host: `const WG, LOADS, CHUNK, POOL, GROUP`: CHUNK = WG * LOADS values per chunk.
// Needs `subgroups` (the counts).

struct Params {
  chunks: u32,       // chunks per row (the grid's x for hist0 and emit)
  heads: u32,        // POOL: query heads
  kvHeads: u32,      // POOL: KV heads (row r = b * kvHeads + j)
  scoreStride: u32,  // POOL: row stride of scores
  phase: u32,        // radix5_digit: the digit histogrammed (1 or 2)
  rows: u32,         // radix5: rows of this select (the histograms of digit p start at p * rows)
  _pad0: u32,
  _pad1: u32,
}

//#include select_bindings read_write chunkOff
@group(0) @binding(7) var<storage, read> scores: array<f32>;
@group(0) @binding(8) var<storage, read> stats: array<f32>;

// This invocation's LOADS values of the chunk (the row's last value past its end), in v.
//#snippet load_chunk
    var v: array<u32, LOADS>;
    for (var e = 0u; e < LOADS; e++) {
      v[e] = vals[info.x + min(wid.x * CHUNK + e * WG + t, max(info.y, 1u) - 1u)];
    }
//#end

@compute @workgroup_size(WG)
fn radix_hist0(@builtin(local_invocation_index) t: u32, @builtin(workgroup_id) wid: vec3<u32>,
               @builtin(num_workgroups) nwg: vec3<u32>) {
  let row = rowOf(wid, nwg);
//#include clear_lh
  let info = rowInfo[row];
  if (info.z > 0u) {
    let b = row / P.kvHeads;
    let j = row % P.kvHeads;
    var v: array<u32, LOADS>;
    for (var e = 0u; e < LOADS; e++) {
      let i = wid.x * CHUNK + e * WG + t;
      if (i < info.y) {
        if (POOL) {
          var s = 0.0;
          for (var g = 0u; g < GROUP; g++) {
            let r = b * P.heads + j * GROUP + g;
            s += exp(scores[r * P.scoreStride + i] - stats[r * 2u]) / stats[r * 2u + 1u];
          }
          v[e] = bitcast<u32>(s);
          vals[info.x + i] = v[e];
        } else {
          v[e] = vals[info.x + i];
        }
      }
    }
    for (var e = 0u; e < LOADS; e++) {
      let i = wid.x * CHUNK + e * WG + t;
      if (i < info.y) {
        atomicAdd(&lh[v[e] >> 21u], 1u);
      }
    }
  }
//#include flush_hist row
}

var<workgroup> part: array<u32, WG>;
var<workgroup> found: vec2<u32>;

// Inclusive scan of `v` over the first WG invocations (every invocation of the workgroup calls it).
fn scanFirst(t: u32, v: u32) -> u32 {
  if (t < WG) {
    part[t] = v;
  }
  workgroupBarrier();
  for (var off = 1u; off < WG; off *= 2u) {
    var s = 0u;
    if (t < WG) {
      s = part[t];
      if (t >= off) {
        s += part[t - off];
      }
    }
    workgroupBarrier();
    if (t < WG) {
      part[t] = s;
    }
    workgroupBarrier();
  }
  var r = 0u;
  if (t < WG) {
    r = part[t];
  }
  workgroupBarrier();
  return r;
}

const PB: u32 = BINS / WG;

// Finds the digit (bins largest first; invocation t < WG owns PB of them in `c`) that holds the
// `remaining`-th largest value among those matching `prefix`, into `found` = (prefix with the digit,
// remaining within it).
fn scanBins(t: u32, c: array<u32, PB>, shift: u32, prefix: u32, remaining: u32) {
  var sum = 0u;
  for (var i = 0u; i < PB; i++) {
    sum += c[i];
  }
  let incl = scanFirst(t, sum);
  let excl = incl - sum;
  if (t < WG && excl < remaining && remaining <= incl) {
    var cum = excl;
    for (var i = 0u; i < PB; i++) {
      if (cum + c[i] >= remaining) {
        let bin = BINS - 1u - (t * PB + i);
        found = vec2<u32>(prefix | (bin << shift), remaining - cum);
        break;
      }
      cum += c[i];
    }
  }
  workgroupBarrier();
}

fn shift5(phase: u32) -> u32 {
  return select(select(0u, 10u, phase == 1u), 21u, phase == 0u);
}

// The digit of `phase` holding the `remaining`-th largest value among those matching `prefix`, from
// the row's global histogram of that digit; returns (prefix with the digit, remaining within it).
fn digitOf(t: u32, row: u32, phase: u32, prefix: u32, remaining: u32) -> vec2<u32> {
  if (t == 0u) {
    found = vec2<u32>(prefix, 0u);
  }
  workgroupBarrier();
  var c: array<u32, PB>;
  for (var i = 0u; i < PB; i++) {
    c[i] = atomicLoad(&hist[(phase * P.rows + row) * BINS + BINS - 1u - (t * PB + i)]);
  }
  scanBins(t, c, shift5(phase), prefix, remaining);
  return found;
}

fn clearHist(t: u32, row: u32, phase: u32) {
  for (var i = t; i < BINS; i += WG) {
    atomicStore(&hist[(phase * P.rows + row) * BINS + i], 0u);
  }
}

// Grid (chunks, rows): the previous digit from its histogram, then this chunk's histogram of digit
// P.phase among the values that match.
@compute @workgroup_size(WG)
fn radix5_digit(@builtin(local_invocation_index) t: u32, @builtin(workgroup_id) wid: vec3<u32>,
                @builtin(num_workgroups) nwg: vec3<u32>) {
  let row = rowOf(wid, nwg);
  let info = rowInfo[row];
  let phase = P.phase;
  var before = vec2<u32>(0u, info.z);
  if (phase == 2u) {
    before = state[row * 3u];
  }
  let st = digitOf(t, row, phase - 1u, before.x, before.y);
  if (wid.x == 0u) {
    if (t == 0u) {
      state[row * 3u + phase - 1u] = st;
    }
    if (phase == 2u) {
      clearHist(t, row, 0u);
    }
  }
//#include clear_lh
  let pm = select(0xFFFFFC00u, 0xFFE00000u, phase == 1u);
  let dm = select(1023u, 2047u, phase == 1u);
  let sh = shift5(phase);
  if (info.z > 0u) {
//#include load_chunk
    for (var e = 0u; e < LOADS; e++) {
      if (wid.x * CHUNK + e * WG + t < info.y && (v[e] & pm) == st.x) {
        atomicAdd(&lh[(v[e] >> sh) & dm], 1u);
      }
    }
  }
//#include flush_hist phase*P.rows+row
}

var<workgroup> cnt5: array<atomic<u32>, 2>;

// Grid (chunks, rows): the last digit (so T and the copies of T kept), then this chunk's counts of
// values > T and == T.
@compute @workgroup_size(WG)
fn radix5_count(@builtin(local_invocation_index) t: u32, @builtin(workgroup_id) wid: vec3<u32>,
                @builtin(num_workgroups) nwg: vec3<u32>, @builtin(subgroup_invocation_id) sgLane: u32) {
  let row = rowOf(wid, nwg);
  let info = rowInfo[row];
  let before = state[row * 3u + 1u];
  let st = digitOf(t, row, 2u, before.x, before.y);
  if (wid.x == 0u) {
    if (t == 0u) {
      state[row * 3u + 2u] = st;
    }
    clearHist(t, row, 1u);
  }
  if (t < 2u) {
    atomicStore(&cnt5[t], 0u);
  }
  workgroupBarrier();
  var gt = 0u;
  var eq = 0u;
  if (info.z > 0u) {
//#include load_chunk
    for (var e = 0u; e < LOADS; e++) {
      if (wid.x * CHUNK + e * WG + t < info.y) {
        gt += select(0u, 1u, v[e] > st.x);
        eq += select(0u, 1u, v[e] == st.x);
      }
    }
  }
  let g = subgroupAdd(gt);
  let q = subgroupAdd(eq);
  if (sgLane == 0u) {
    atomicAdd(&cnt5[0], g);
    atomicAdd(&cnt5[1], q);
  }
  workgroupBarrier();
  if (t == 0u) {
    chunkOff[row * P.chunks + wid.x] = vec2<u32>(atomicLoad(&cnt5[0]), atomicLoad(&cnt5[1]));
  }
}

// Grid (chunks, rows): the chunk's offsets summed from the counts of the chunks before it, then every
// value > T at its rank and the lowest-index copies of T (invocation t takes LOADS consecutive values).
@compute @workgroup_size(WG)
fn radix5_emit(@builtin(local_invocation_index) t: u32, @builtin(workgroup_id) wid: vec3<u32>,
               @builtin(num_workgroups) nwg: vec3<u32>, @builtin(subgroup_invocation_id) sgLane: u32) {
  let row = rowOf(wid, nwg);
  let st = state[row * 3u + 2u];
  let info = rowInfo[row];
  let T = st.x;
  let above = info.z - st.y;  // how many values are > T
  if (wid.x == 0u) {
    clearHist(t, row, 2u);
  }
  if (t < 2u) {
    atomicStore(&cnt5[t], 0u);
  }
  workgroupBarrier();
  var before = vec2<u32>(0u);
  for (var c = t; c < wid.x; c += WG) {
    before += chunkOff[row * P.chunks + c];
  }
  let bx = subgroupAdd(before.x);
  let by = subgroupAdd(before.y);
  if (sgLane == 0u) {
    atomicAdd(&cnt5[0], bx);
    atomicAdd(&cnt5[1], by);
  }
  var flags: array<vec2<u32>, LOADS>;
  var mine = vec2<u32>(0u);
  let first = wid.x * CHUNK + t * LOADS;
  var v: array<u32, LOADS>;
  for (var e = 0u; e < LOADS; e++) {
    v[e] = vals[info.x + min(first + e, max(info.y, 1u) - 1u)];
  }
  for (var e = 0u; e < LOADS; e++) {
    var f = vec2<u32>(0u);
    if (info.z > 0u && first + e < info.y) {
      f = vec2<u32>(select(0u, 1u, v[e] > T), select(0u, 1u, v[e] == T));
    }
    flags[e] = f;
    mine += f;
  }
  let packed = scanFirst(t, mine.x * 65536u + mine.y) - (mine.x * 65536u + mine.y);
  let excl = vec2<u32>(packed >> 16u, packed & 0xFFFFu);
  if (info.z == 0u) {
    return;
  }
  var pos = vec2<u32>(atomicLoad(&cnt5[0]), atomicLoad(&cnt5[1])) + excl;
  for (var e = 0u; e < LOADS; e++) {
    let f = flags[e];
    if (f.x == 1u) {
      outIdx[info.w + pos.x] = first + e;
      pos.x += 1u;
    } else if (f.y == 1u) {
      let at = above + pos.y;
      if (at < info.z) {
        outIdx[info.w + at] = first + e;
      }
      pos.y += 1u;
    }
  }
}
