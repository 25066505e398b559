// Exact Top-k selection on the GPU by radix select, for many rows at once (decode: one row per
// sequence and KV head; prefill: one per sequence, KV head and query tile).
//
// Values are the pooled scores, f32 >= 0, read as u32 (same order). Three histogram passes over
// the bits [31:21], [20:10], [9:0] find the k-th largest value T and how many copies of T are
// needed; then every row keeps all values > T and the lowest-index copies of T (ties: lower index
// first), with offsets from a per-chunk count and scan, so the output is deterministic. Two
// schedules of the same passes: the classic one (nine dispatches, a scan dispatch after each
// histogram) and the folded one (five: each pass repeats the scan it depends on per workgroup).
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

// The passes' bodies, pasted into the classic entry points and the folded ones below.

// Histogram of the digit at `shift` (mask `dm`) among this chunk's values that match `prefix` under
// `pm`, added to the row's global histogram at hist[$1 ..]. Needs t, wid, info and `lh` cleared.
//#snippet hist_chunk
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
      atomicAdd(&hist[$1 + i], c);
    }
  }
//#end

// The digit at `shift` of the k-th largest value, from the row's histogram at hist[$1 ..] of the values
// that match `prefix`, `remaining` the rank sought among them: the invocation whose bins hold that rank
// stores `(prefix | digit << shift, rank left within the digit's bin)` to $2. Needs t, info.
//#snippet find_digit
  const PB: u32 = BINS / WG;
  // Invocation t owns bins BINS-1-t*PB down to BINS-PB-t*PB (largest digits first).
  var mine: array<u32, PB>;
  var sum = 0u;
  for (var i = 0u; i < PB; i++) {
    let c = atomicLoad(&hist[$1 + BINS - 1u - (t * PB + i)]);
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
        $2 = vec2<u32>(prefix | (bin << shift), remaining - cum);
        break;
      }
      cum += c;
    }
  }
//#end

// Per chunk: how many values are > T and == T, stored to chunkCounts. Needs t, wid, info, T.
//#snippet count_chunk
  if (t == 0u) {
    atomicStore(&cgt, 0u);
    atomicStore(&ceq, 0u);
  }
  workgroupBarrier();
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
//#end

// Writes the chunk's selected key indices: values > T at their rank, then the lowest-index copies of T
// after them; $1 is the chunk's (values > T, copies of T) in the chunks before it, state[$2] the row's
// (T, copies of T kept). Needs t, wid, info.
//#snippet write_chunk
  let T = state[$2].x;
  let above = info.z - state[$2].y;  // how many values of the row are > T
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
  var pos = $1 + part2[t] - mine;
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
//#end

var<workgroup> part: array<u32, WG>;
var<workgroup> part2: array<vec2<u32>, WG>;
var<workgroup> cgt: atomic<u32>;
var<workgroup> ceq: atomic<u32>;

// ---- The classic select: nine dispatches (three of select_hist + select_scan, then select_count,
// select_offsets, select_write); `hist` holds one histogram per row, `state` one (prefix, remaining).

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
  let shift = shiftOf(P.phase);
  let pm = prefixMask(P.phase);
  let dm = digitMask(P.phase);
  let prefix = select(state[row].x, 0u, P.phase == 0u);
//#include hist_chunk row*BINS
}

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
  let shift = shiftOf(P.phase);
//#include find_digit row*BINS state[row]
  for (var i = 0u; i < PB; i++) {
    atomicStore(&hist[row * BINS + BINS - 1u - (t * PB + i)], 0u);
  }
}

// Grid: (chunks, rows). Per chunk: how many values are > T and == T.
@compute @workgroup_size(WG)
fn select_count(@builtin(local_invocation_index) t: u32, @builtin(workgroup_id) wid: vec3<u32>,
                @builtin(num_workgroups) nwg: vec3<u32>) {
  let row = rowOf(wid, nwg);
  let info = rowInfo[row];
  let T = state[row].x;
//#include count_chunk
}

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
//#include write_chunk chunkCounts[row*P.chunks+wid.x] row
}

// ---- The folded select: five dispatches (fold_hist for digits 0, 1, 2, fold_count, fold_write). Each
// pass finds the previous digit itself from the previous pass's histogram (every workgroup of a row
// scans the same 2048 bins, so no scan dispatch sits between the passes), and fold_write sums the
// chunk counts before its chunk itself. `hist` holds three histograms per row (one per digit), all
// zero between selects (fold_write clears them); `state` three (prefix, remaining) per row, slot p
// written by the pass after digit p's histogram (by its first workgroup of the row).

var<workgroup> found: vec2<u32>;

// Grid: (chunks, rows). Pass `phase` > 0 first finds digit phase - 1, then every pass histograms
// digit `phase` among the values that match the prefix.
@compute @workgroup_size(WG)
fn fold_hist(@builtin(local_invocation_index) t: u32, @builtin(workgroup_id) wid: vec3<u32>,
             @builtin(num_workgroups) nwg: vec3<u32>) {
  let row = rowOf(wid, nwg);
  let hb = row * 3u * BINS;
  for (var i = t; i < BINS; i += WG) {
    atomicStore(&lh[i], 0u);
  }
  let info = rowInfo[row];
  var st = vec2<u32>(0u, info.z);
  if (P.phase > 0u) {
    let prev = P.phase - 1u;
    let before = state[row * 3u + max(prev, 1u) - 1u];
    let prefix = select(0u, before.x, prev > 0u);
    let remaining = select(info.z, before.y, prev > 0u);
    let shift = shiftOf(prev);
//#include find_digit hb+prev*BINS found
    workgroupBarrier();
    st = found;
    if (wid.x == 0u && t == 0u) {
      state[row * 3u + prev] = st;
    }
  }
  workgroupBarrier();
  let shift = shiftOf(P.phase);
  let pm = prefixMask(P.phase);
  let dm = digitMask(P.phase);
  let prefix = st.x;
//#include hist_chunk hb+P.phase*BINS
}

// Grid: (chunks, rows). Finds the last digit (T, the k-th largest value), then counts this chunk's
// values > T and == T.
@compute @workgroup_size(WG)
fn fold_count(@builtin(local_invocation_index) t: u32, @builtin(workgroup_id) wid: vec3<u32>,
              @builtin(num_workgroups) nwg: vec3<u32>) {
  let row = rowOf(wid, nwg);
  let info = rowInfo[row];
  let before = state[row * 3u + 1u];
  let prefix = before.x;
  let remaining = before.y;
  let shift = 0u;
//#include find_digit row*3u*BINS+2u*BINS found
  workgroupBarrier();
  let T = found.x;
  if (wid.x == 0u && t == 0u) {
    state[row * 3u + 2u] = found;
  }
//#include count_chunk
}

// Grid: (chunks, rows). Sums the counts of the row's chunks before this one, writes the chunk's
// selected indices, and clears a share of the row's three histograms for the next select.
@compute @workgroup_size(WG)
fn fold_write(@builtin(local_invocation_index) t: u32, @builtin(workgroup_id) wid: vec3<u32>,
              @builtin(num_workgroups) nwg: vec3<u32>) {
  let row = rowOf(wid, nwg);
  let info = rowInfo[row];
  var earlier = vec2<u32>(0u);
  for (var c = t; c < wid.x; c += WG) {
    earlier += chunkCounts[row * P.chunks + c];
  }
  part2[t] = earlier;
  workgroupBarrier();
//#include wg_scan part2
  let base = part2[WG - 1u];
  workgroupBarrier();
//#include write_chunk base row*3u+2u
  for (var i = wid.x * WG + t; i < 3u * BINS; i += P.chunks * WG) {
    atomicStore(&hist[row * 3u * BINS + i], 0u);
  }
}
