// Utilities for benchmarks and tests: fill a buffer with pseudo-random values (never zeros), a
// plain vec4 copy whose time gives the WebGPU read + write bandwidth of this device, and a plain
// vec4 read (the L2 flush that leaves no dirty lines behind).
//
// Prepended by the host: `const WG = 256u`.

struct Params {
  words: u32,     // u32 words to write (fill) or vec4s to copy (copy)
  seed: u32,
  mode: u32,      // fill: 0 = f32 values, 1 = pairs of f16 packed in u32
  amplitude: f32, // values uniform in [-amplitude, amplitude)
  rowStride: u32, // grid x stride in invocations (for 2D dispatches)
  _pad0: u32,
  _pad1: u32,
  _pad2: u32,
}

@group(0) @binding(0) var<uniform> P: Params;
@group(0) @binding(1) var<storage, read_write> dst: array<u32>;
@group(0) @binding(2) var<storage, read> src4: array<vec4<u32>>;
@group(0) @binding(3) var<storage, read_write> dst4: array<vec4<u32>>;

fn hash(x: u32) -> u32 {
  var h = x * 0x9E3779B1u;
  h ^= h >> 15u;
  h *= 0x85EBCA77u;
  h ^= h >> 13u;
  h *= 0xC2B2AE3Du;
  h ^= h >> 16u;
  return h;
}

fn uniformValue(i: u32) -> f32 {
  let u = f32(hash(i ^ (P.seed * 0x27D4EB2Fu)) >> 8u) / 16777216.0;
  return (u * 2.0 - 1.0) * P.amplitude;
}

@compute @workgroup_size(WG)
fn fill_random(@builtin(global_invocation_id) gid: vec3<u32>) {
  let i = gid.x + gid.y * P.rowStride;
  if (i >= P.words) {
    return;
  }
  if (P.mode == 0u) {
    dst[i] = bitcast<u32>(uniformValue(i));
  } else {
    dst[i] = pack2x16float(vec2<f32>(uniformValue(2u * i), uniformValue(2u * i + 1u)));
  }
}

@compute @workgroup_size(WG)
fn copy_vec4(@builtin(global_invocation_id) gid: vec3<u32>) {
  let i = gid.x + gid.y * P.rowStride;
  if (i < P.words) {
    dst4[i] = src4[i];
  }
}

// read_vec4: reads the vec4s of src4; dst4 gets one store only for a value src4 never holds (a
// flush of the L2 cache that, unlike the copy, leaves no dirty lines for the next pass to write back).
@compute @workgroup_size(WG)
fn read_vec4(@builtin(global_invocation_id) gid: vec3<u32>) {
  let i = gid.x + gid.y * P.rowStride;
  if (i < P.words) {
    let v = src4[i];
    if (v.x == 0x9E3779B1u && v.w == 0x7F4A7C15u) {
      dst4[0] = v;
    }
  }
}
