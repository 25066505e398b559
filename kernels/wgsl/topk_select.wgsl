// Exact Top-k selection on the GPU by radix select, for many rows at once (decode: one row per
// sequence and KV head; prefill: one per sequence, KV head and query tile).
//
// Values are the pooled scores, f32 >= 0, read as u32 (same order). Three histogram passes over
// the bits [31:21], [20:10], [9:0] find the k-th largest value T and how many copies of T are
// needed; then every row keeps all values > T and the lowest-index copies of T (ties: lower index
// first), with offsets from a per-chunk count and scan, so the output is deterministic.
//
// Prepended by the host: `const WG = 256u`, `const PER` (values per invocation in the per-chunk
// passes: a chunk is WG * PER values).

struct Params {
  phase: u32,      // histogram pass 0, 1, 2
  chunks: u32,     // chunks of CHUNK values per row (the grid's x)
  _pad0: u32,
  _pad1: u32,
}

// rowInfo[r] = (offset of the row's values, length, k, offset of the row's output)
@group(0) @binding(0) var<uniform> P: Params;
@group(0) @binding(1) var<storage, read> rowInfo: array<vec4<u32>>;
@group(0) @binding(2) var<storage, read> vals: array<u32>;
@group(0) @binding(3) var<storage, read_write> hist: array<atomic<u32>>;
@group(0) @binding(4) var<storage, read_write> state: array<vec2<u32>>;
@group(0) @binding(5) var<storage, read_write> chunkCounts: array<vec2<u32>>;
@group(0) @binding(6) var<storage, read_write> outIdx: array<u32>;

const BINS: u32 = 2048u;

var<workgroup> lh: array<atomic<u32>, BINS>;

fn rowOf(wid: vec3<u32>, nwg: vec3<u32>) -> u32 {
  return wid.y + wid.z * nwg.y;
}

const CHUNK: u32 = WG * PER;

fn shiftOf(phase: u32) -> u32 {
  return select(select(0u, 10u, phase == 1u), 21u, phase == 0u);
}
fn digitMask(phase: u32) -> u32 {
  return select(2047u, 1023u, phase == 2u);
}
fn prefixMask(phase: u32) -> u32 {
  return select(select(0xFFFFFC00u, 0xFFE00000u, phase == 1u), 0u, phase == 0u);
}

// Grid: (chunks, rows). Histogram of the current digit among the values that match the prefix.
@compute @workgroup_size(WG)
fn select_hist(@builtin(local_invocation_index) t: u32, @builtin(workgroup_id) wid: vec3<u32>,
               @builtin(num_workgroups) nwg: vec3<u32>) {
  let row = rowOf(wid, nwg);
  for (var i = t; i < BINS; i += WG) {
    atomicStore(&lh[i], 0u);
  }
  workgroupBarrier();
  let info = rowInfo[row];
  let st = state[row];
  let shift = shiftOf(P.phase);
  let pm = prefixMask(P.phase);
  let dm = digitMask(P.phase);
  let prefix = select(st.x, 0u, P.phase == 0u);
  if (info.z > 0u) {
    for (var e = 0u; e < PER; e++) {
      let i = wid.x * CHUNK + e * WG + t;
      if (i < info.y) {
        let v = vals[info.x + i];
        if ((v & pm) == prefix) {
          atomicAdd(&lh[(v >> shift) & dm], 1u);
        }
      }
    }
  }
  workgroupBarrier();
  for (var i = t; i < BINS; i += WG) {
    let c = atomicLoad(&lh[i]);
    if (c > 0u) {
      atomicAdd(&hist[row * BINS + i], c);
    }
  }
}

var<workgroup> part: array<u32, WG>;

// Grid: rows. Finds the digit of the k-th largest value, updates (prefix, remaining), and clears
// the row's histogram for the next pass.
@compute @workgroup_size(WG)
fn select_scan(@builtin(local_invocation_index) t: u32, @builtin(workgroup_id) wid: vec3<u32>,
               @builtin(num_workgroups) nwg: vec3<u32>) {
  let row = rowOf(wid, nwg);
  let info = rowInfo[row];
  let st = state[row];
  let remaining = select(st.y, info.z, P.phase == 0u);
  let prefix = select(st.x, 0u, P.phase == 0u);
  const PB: u32 = BINS / WG;
  // Invocation t owns bins BINS-1-t*PB down to BINS-PB-t*PB (largest digits first).
  var mine: array<u32, PB>;
  var sum = 0u;
  for (var i = 0u; i < PB; i++) {
    let bin = BINS - 1u - (t * PB + i);
    let c = atomicLoad(&hist[row * BINS + bin]);
    mine[i] = c;
    sum += c;
  }
  part[t] = sum;
  workgroupBarrier();
//#include wg_scan part
  let incl = part[t];
  let excl = incl - sum;
  if (info.z > 0u && excl < remaining && remaining <= incl) {
    var cum = excl;
    for (var i = 0u; i < PB; i++) {
      let c = mine[i];
      if (cum + c >= remaining) {
        let bin = BINS - 1u - (t * PB + i);
        state[row] = vec2<u32>(prefix | (bin << shiftOf(P.phase)), remaining - cum);
        break;
      }
      cum += c;
    }
  }
  for (var i = 0u; i < PB; i++) {
    atomicStore(&hist[row * BINS + BINS - 1u - (t * PB + i)], 0u);
  }
}

var<workgroup> cgt: atomic<u32>;
var<workgroup> ceq: atomic<u32>;

// Grid: (chunks, rows). Per chunk: how many values are > T and == T.
@compute @workgroup_size(WG)
fn select_count(@builtin(local_invocation_index) t: u32, @builtin(workgroup_id) wid: vec3<u32>,
                @builtin(num_workgroups) nwg: vec3<u32>) {
  let row = rowOf(wid, nwg);
  if (t == 0u) {
    atomicStore(&cgt, 0u);
    atomicStore(&ceq, 0u);
  }
  workgroupBarrier();
  let info = rowInfo[row];
  let T = state[row].x;
  var gt = 0u;
  var eq = 0u;
  if (info.z > 0u) {
    for (var e = 0u; e < PER; e++) {
      let i = wid.x * CHUNK + t * PER + e;
      if (i < info.y) {
        let v = vals[info.x + i];
        gt += select(0u, 1u, v > T);
        eq += select(0u, 1u, v == T);
      }
    }
  }
  atomicAdd(&cgt, gt);
  atomicAdd(&ceq, eq);
  workgroupBarrier();
  if (t == 0u) {
    chunkCounts[row * P.chunks + wid.x] = vec2<u32>(atomicLoad(&cgt), atomicLoad(&ceq));
  }
}

var<workgroup> part2: array<vec2<u32>, WG>;

// Grid: rows. Exclusive scan of the chunk counts, in place.
@compute @workgroup_size(WG)
fn select_offsets(@builtin(local_invocation_index) t: u32, @builtin(workgroup_id) wid: vec3<u32>,
                  @builtin(num_workgroups) nwg: vec3<u32>) {
  let row = rowOf(wid, nwg);
  var carry = vec2<u32>(0u);
  for (var c0 = 0u; c0 < P.chunks; c0 += WG) {
    let c = c0 + t;
    var mine = vec2<u32>(0u);
    if (c < P.chunks) {
      mine = chunkCounts[row * P.chunks + c];
    }
    part2[t] = mine;
    workgroupBarrier();
//#include wg_scan part2
    if (c < P.chunks) {
      chunkCounts[row * P.chunks + c] = carry + part2[t] - mine;
    }
    let total = part2[WG - 1u];
    workgroupBarrier();
    carry += total;
  }
}

// Grid: (chunks, rows). Writes the selected key indices: values > T at their rank, then the
// lowest-index copies of T after them.
@compute @workgroup_size(WG)
fn select_write(@builtin(local_invocation_index) t: u32, @builtin(workgroup_id) wid: vec3<u32>,
                @builtin(num_workgroups) nwg: vec3<u32>) {
  let row = rowOf(wid, nwg);
  let info = rowInfo[row];
  let T = state[row].x;
  let above = info.z - state[row].y;  // how many values are > T
  var flags: array<vec2<u32>, PER>;
  var mine = vec2<u32>(0u);
  for (var e = 0u; e < PER; e++) {
    let i = wid.x * CHUNK + t * PER + e;
    var f = vec2<u32>(0u);
    if (info.z > 0u && i < info.y) {
      let v = vals[info.x + i];
      f = vec2<u32>(select(0u, 1u, v > T), select(0u, 1u, v == T));
    }
    flags[e] = f;
    mine += f;
  }
  part2[t] = mine;
  workgroupBarrier();
//#include wg_scan part2
  var pos = chunkCounts[row * P.chunks + wid.x] + part2[t] - mine;
  for (var e = 0u; e < PER; e++) {
    let i = wid.x * CHUNK + t * PER + e;
    let f = flags[e];
    if (f.x == 1u) {
      outIdx[info.w + pos.x] = i;
      pos.x += 1u;
    } else if (f.y == 1u) {
      let at = above + pos.y;
      if (at < info.z) {
        outIdx[info.w + at] = i;
      }
      pos.y += 1u;
    }
  }
}
