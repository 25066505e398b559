import { numberToHalfBits } from './dtype.js';
import { GGML_F16, GGML_F32, GGML_Q8_0, Q8_0_BLOCK, Q8_0_BYTES } from './gguf-format.js';

/** A metadata value for {@link encodeGguf}: typed explicitly where GGUF needs a width. */
export type GgufValue =
  | { readonly type: 'u32' | 'i32' | 'f32'; readonly value: number }
  | { readonly type: 'string'; readonly value: string }
  | { readonly type: 'bool'; readonly value: boolean }
  | { readonly type: 'string[]'; readonly value: readonly string[] }
  | { readonly type: 'i32[]' | 'f32[]'; readonly value: readonly number[] };

export interface GgufTensorIn {
  readonly name: string;
  /** GGML order: `[cols, rows]` for a `[rows, cols]` matrix. */
  readonly dims: readonly number[];
  readonly type: 'F32' | 'F16' | 'Q8_0';
  readonly data: Float32Array;
}

const ALIGN = 32;

/**
 * Writes a GGUF v3 file (metadata + F32/F16/Q8_0 tensors). A small writer for tests and
 * tools: Q8_0 quantises as llama.cpp does (`d = max|x| / 127`, round to nearest).
 */
export function encodeGguf(
  metadata: Record<string, GgufValue>,
  tensors: readonly GgufTensorIn[],
): Uint8Array {
  const parts: Uint8Array[] = [];
  let size = 0;
  const push = (b: Uint8Array) => {
    parts.push(b);
    size += b.length;
  };
  const u32 = (v: number) => {
    const b = new Uint8Array(4);
    new DataView(b.buffer).setUint32(0, v, true);
    push(b);
  };
  const u64 = (v: number) => {
    const b = new Uint8Array(8);
    new DataView(b.buffer).setBigUint64(0, BigInt(v), true);
    push(b);
  };
  const i32 = (v: number) => {
    const b = new Uint8Array(4);
    new DataView(b.buffer).setInt32(0, v, true);
    push(b);
  };
  const f32 = (v: number) => {
    const b = new Uint8Array(4);
    new DataView(b.buffer).setFloat32(0, v, true);
    push(b);
  };
  const str = (s: string) => {
    const b = new TextEncoder().encode(s);
    u64(b.length);
    push(b);
  };
  push(new TextEncoder().encode('GGUF'));
  u32(3);
  u64(tensors.length);
  u64(Object.keys(metadata).length);
  for (const [key, v] of Object.entries(metadata)) {
    str(key);
    switch (v.type) {
      case 'u32':
        u32(4);
        u32(v.value);
        break;
      case 'i32':
        u32(5);
        i32(v.value);
        break;
      case 'f32':
        u32(6);
        f32(v.value);
        break;
      case 'bool':
        u32(7);
        push(new Uint8Array([v.value ? 1 : 0]));
        break;
      case 'string':
        u32(8);
        str(v.value);
        break;
      case 'string[]':
        u32(9);
        u32(8);
        u64(v.value.length);
        for (const s of v.value) str(s);
        break;
      case 'i32[]':
        u32(9);
        u32(5);
        u64(v.value.length);
        for (const x of v.value) i32(x);
        break;
      case 'f32[]':
        u32(9);
        u32(6);
        u64(v.value.length);
        for (const x of v.value) f32(x);
        break;
    }
  }
  const blobs = tensors.map(encodeTensor);
  let offset = 0;
  tensors.forEach((t, i) => {
    str(t.name);
    u32(t.dims.length);
    for (const d of t.dims) u64(d);
    u32(t.type === 'F32' ? GGML_F32 : t.type === 'F16' ? GGML_F16 : GGML_Q8_0);
    u64(offset);
    offset += Math.ceil(blobs[i].length / ALIGN) * ALIGN;
  });
  const dataStart = Math.ceil(size / ALIGN) * ALIGN;
  const out = new Uint8Array(dataStart + offset);
  let pos = 0;
  for (const p of parts) {
    out.set(p, pos);
    pos += p.length;
  }
  pos = dataStart;
  for (const b of blobs) {
    out.set(b, pos);
    pos += Math.ceil(b.length / ALIGN) * ALIGN;
  }
  return out;
}

function encodeTensor(t: GgufTensorIn): Uint8Array {
  const n = t.data.length;
  if (t.dims.reduce((a, b) => a * b, 1) !== n)
    throw new RangeError(`tensor ${t.name}: dims do not match data`);
  if (t.type === 'F32') return new Uint8Array(t.data.slice().buffer);
  if (t.type === 'F16') {
    const h = new Uint16Array(n);
    for (let i = 0; i < n; i++) h[i] = numberToHalfBits(t.data[i]);
    return new Uint8Array(h.buffer);
  }
  if (t.dims[0] % Q8_0_BLOCK !== 0)
    throw new RangeError(`tensor ${t.name}: Q8_0 needs rows of a multiple of 32`);
  const blocks = n / Q8_0_BLOCK;
  const out = new Uint8Array(blocks * Q8_0_BYTES);
  const view = new DataView(out.buffer);
  for (let b = 0; b < blocks; b++) {
    let amax = 0;
    for (let i = 0; i < Q8_0_BLOCK; i++) amax = Math.max(amax, Math.abs(t.data[b * Q8_0_BLOCK + i]));
    const d = amax / 127;
    const id = d ? 1 / d : 0;
    view.setUint16(b * Q8_0_BYTES, numberToHalfBits(d), true);
    for (let i = 0; i < Q8_0_BLOCK; i++) {
      view.setInt8(b * Q8_0_BYTES + 2 + i, Math.round(t.data[b * Q8_0_BLOCK + i] * id));
    }
  }
  return out;
}
