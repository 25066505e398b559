// Measuring aids for the decode benchmarks (no attention math): what the memory system gives a
// WGSL kernel that only reads the K/V rows a reuse layer gathers (or every row, as dense and the
// anchors' scores pass read them), so that an op's time can be split into the reading itself and
// everything else (`webgpu-decode --probe`).
//
// gather_rows: teams of TW lanes read whole 256-byte rows (head dim 128, f16 packed in u32: TW pieces
// `KP` of 256 / TW bytes, 16 (vec4<u32>) or 8 (vec2<u32>)), adjacent lanes on adjacent pieces, U rows
// per team step with every load of a step issued before any is used; the values are folded with XOR
// into one word per lane (through `kp4`, so every word of a piece counts), written only if it equals a
// value it practically never takes (so the loads cannot be dropped).
//
// Layout: sel `[rows, kStride]` u32 key indices (INDEXED) or none (key c is row c: a contiguous
// read); K, V `[rows, capacity, TW]` KP. Dispatch `(splits, rows)` workgroups of WG invocations;
// workgroup `split` reads keys `[split * span, min(k, (split + 1) * span))`.
//
// Prepended by the host: `const WG, U, TW, PV`, the piece type `KP` with `kp4`, the flags `INDEXED`,
// `READ_V` (gather_rows; spin needs none).

struct Params {
  k: u32,          // keys per row to read (0: the dispatch alone)
  capacity: u32,   // K/V rows per head
  span: u32,       // keys per workgroup
  kStride: u32,    // row stride of sel
}

@group(0) @binding(0) var<uniform> P: Params;
@group(0) @binding(1) var<storage, read> sel: array<u32>;
@group(0) @binding(2) var<storage, read> kbuf: array<KP>;
@group(0) @binding(3) var<storage, read> vbuf: array<KP>;
@group(0) @binding(4) var<storage, read_write> sink: array<u32>;

const NT: u32 = WG / TW;

fn fold(e: KP) -> vec4<u32> {
  var f = bitcast<vec4<u32>>(kp4(e, 0u));
  if (PV > 1u) {
    f ^= bitcast<vec4<u32>>(kp4(e, 1u));
  }
  return f;
}

@compute @workgroup_size(WG)
fn gather_rows(@builtin(local_invocation_index) t: u32, @builtin(workgroup_id) wid: vec3<u32>) {
  let tm = t / TW;
  let lane = t % TW;
  let row = wid.y;
  let start = wid.x * P.span;
  let end = min(start + P.span, P.k);
  var acc = vec4<u32>(0u);
  for (var c0 = start + tm * U; c0 < end; c0 += NT * U) {
    var kp: array<KP, U>;
    var vp: array<KP, U>;
    for (var u = 0u; u < U; u++) {
      var x = min(c0 + u, end - 1u);
      if (INDEXED) {
        x = sel[row * P.kStride + x];
      }
      let at = (row * P.capacity + x) * TW + lane;
      kp[u] = kbuf[at];
      if (READ_V) {
        vp[u] = vbuf[at];
      }
    }
    for (var u = 0u; u < U; u++) {
      acc ^= fold(kp[u]);
      if (READ_V) {
        acc ^= fold(vp[u]);
      }
    }
  }
  let folded = acc.x ^ acc.y ^ acc.z ^ acc.w;
  if (folded == 0x9E3779B1u) {
    sink[0] = folded;
  }
}

// spin: a chain of P.k dependent multiply-adds per invocation, one workgroup: its time follows the
// SM clock (not memory), so the benchmarks use it to tell a GPU running at a lowered clock.
@compute @workgroup_size(64)
fn spin(@builtin(local_invocation_index) t: u32) {
  var x = f32(t) * 1.0e-3 + 1.0;
  for (var i = 0u; i < P.k; i++) {
    x = fma(x, 0.999999, 1.0e-7);
  }
  if (x == 12345.0) {
    sink[0] = bitcast<u32>(x);
  }
}
