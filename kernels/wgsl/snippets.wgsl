// WGSL written once and pasted inline by the host (packages/webgpu/src/program.ts, expandSnippets):
// a kernel's line `//#include NAME A B` becomes the lines of `//#snippet NAME` ... `//#end` with `$1`,
// `$2` replaced by A, B. Not an op family: nothing here is compiled alone. Hot code is pasted, not
// called: WGSL functions that take arrays made the team kernels 3x slower on the H200's Vulkan driver.

// The last fields of the attention kernels' parameters: the softmax scale at byte 32, the head map at 48.
//#snippet params_tail
  scale: f32,
  _tail0: u32,
  _tail1: u32,
  _tail2: u32,
  headMap: array<vec4<u32>, 8>,  // kvHeads <= 32
//#end

// The bindings shared by the attention kernels: parameters P, the queries, K and V as arrays of $1 (the
// K/V element or piece type), the index slot; `mapped(j)`, the anchor slot a KV head reads (head map).
//#snippet kv_bindings
@group(0) @binding(0) var<uniform> P: Params;
@group(0) @binding(1) var<storage, read> q: array<vec4<f32>>;
@group(0) @binding(2) var<storage, read> kbuf: array<$1>;
@group(0) @binding(3) var<storage, read> vbuf: array<$1>;
@group(0) @binding(4) var<storage, read> sel: array<u32>;

fn mapped(j: u32) -> u32 {
  return P.headMap[j / 4u][j % 4u];
}
//#end

// The decode kernels' parameters and bindings (decode_attend.wgsl, decode_teams.wgsl); $1 as above.
//#snippet decode_bindings
struct Params {
  n: u32,            // keys to attend: n (dense) or the selection's k (gather)
  capacity: u32,     // K/V rows per head
  span: u32,         // keys per workgroup
  splits: u32,       // workgroups per (sequence, KV head)
  heads: u32,
  kvHeads: u32,
  kStride: u32,      // row stride of the index slot
  scoreStride: u32,  // row stride of the scores buffer
//#include params_tail
}

//#include kv_bindings $1
@group(0) @binding(5) var<storage, read_write> partML: array<f32>;
@group(0) @binding(6) var<storage, read_write> partO: array<vec4<f32>>;
@group(0) @binding(7) var<storage, read_write> scores: array<f32>;
@group(0) @binding(8) var<storage, read_write> outO: array<vec4<f32>>;
@group(0) @binding(9) var<storage, read_write> stats: array<f32>;

const NEG: f32 = -3.0e38;
//#end

// Numbers the subgroups of a workgroup 0, 1, .. into sgIndex (no assumption about how invocations are
// grouped): needs `var<workgroup> sgCounter: atomic<u32>`, invocation index t, subgroup lane $1.
//#snippet subgroup_index
  if (t == 0u) {
    atomicStore(&sgCounter, 0u);
  }
  workgroupBarrier();
  var mine = 0u;
  if ($1 == 0u) {
    mine = atomicAdd(&sgCounter, 1u);
  }
  let sgIndex = subgroupBroadcast(mine, 0u);
//#end

// Inclusive scan (Hillis-Steele) of the workgroup array $1 of WG entries, in place; invocation t.
//#snippet wg_scan
  for (var off = 1u; off < WG; off *= 2u) {
    var v = $1[t];
    if (t >= off) {
      v += $1[t - off];
    }
    workgroupBarrier();
    $1[t] = v;
    workgroupBarrier();
  }
//#end
