import { KascadeRangeError } from './budget.js';
import { ShapeError } from './errors.js';
import type { DType, Tensor } from './types.js';

// Views over one float64 to read its bits. Word order is checked once, not assumed.
const f64 = new Float64Array(1);
const words = new Uint32Array(f64.buffer);
const HI = new Uint8Array(new Uint16Array([1]).buffer)[0] === 1 ? 1 : 0;
const LO = 1 - HI;

function roundHalfEven(x: number): number {
  const f = Math.floor(x);
  const rest = x - f;
  if (rest > 0.5) return f + 1;
  if (rest < 0.5) return f;
  return f % 2 === 0 ? f : f + 1;
}

interface Format {
  readonly mantissaBits: number;
  readonly bias: number;
  readonly minNormal: number;
  /** 2^(mantissaBits - emin): turns a subnormal magnitude into its integer mantissa. */
  readonly subnormalScale: number;
  /** 2^-(52 - mantissaBits): turns a float64 fraction field into the format's mantissa units. */
  readonly fractionScale: number;
  readonly infinity: number;
  readonly nan: number;
}

function format(mantissaBits: number, exponentBits: number): Format {
  const bias = 2 ** (exponentBits - 1) - 1;
  const emin = 1 - bias;
  return {
    mantissaBits,
    bias,
    minNormal: 2 ** emin,
    subnormalScale: 2 ** (mantissaBits - emin),
    fractionScale: 2 ** -(52 - mantissaBits),
    infinity: ((2 ** exponentBits - 1) << mantissaBits) >>> 0,
    nan: (((2 ** exponentBits - 1) << mantissaBits) | (1 << (mantissaBits - 1))) >>> 0,
  };
}

const F16 = format(10, 5);
const BF16 = format(7, 8);

/** Rounds a number once, to nearest, ties to even, into a 16-bit float format. */
function encode(x: number, f: Format): number {
  if (Number.isNaN(x)) return f.nan;
  f64[0] = x;
  const hi = words[HI];
  const sign = (hi >>> 31) << 15;
  const a = Math.abs(x);
  if (a < f.minNormal) {
    // Subnormal (or zero); a carry into 1 << mantissaBits is exactly the smallest normal.
    return sign | roundHalfEven(a * f.subnormalScale);
  }
  let e = ((hi >>> 20) & 0x7ff) - 1023;
  if (e > f.bias) return sign | f.infinity;
  let m = roundHalfEven(((hi & 0xfffff) * 4294967296 + words[LO]) * f.fractionScale);
  if (m === 1 << f.mantissaBits) {
    m = 0;
    e++;
    if (e > f.bias) return sign | f.infinity;
  }
  return sign | ((e + f.bias) << f.mantissaBits) | m;
}

function decode(bits: number, f: Format): number {
  const sign = bits & 0x8000 ? -1 : 1;
  const exponent = (bits & 0x7fff) >>> f.mantissaBits;
  const mantissa = bits & ((1 << f.mantissaBits) - 1);
  if (exponent === 0) return sign * mantissa * 2 ** (1 - f.bias - f.mantissaBits);
  if (exponent === f.infinity >>> f.mantissaBits) {
    return mantissa === 0 ? sign * Number.POSITIVE_INFINITY : Number.NaN;
  }
  return sign * (1 + mantissa / (1 << f.mantissaBits)) * 2 ** (exponent - f.bias);
}

function checkBits(fn: string, bits: number): void {
  if (!(Number.isInteger(bits) && bits >= 0 && bits <= 0xffff)) {
    throw new KascadeRangeError(`${fn}: bits must be an integer in [0, 0xffff], got ${bits}`);
  }
}

/**
 * IEEE binary16 bits of `x`, rounded once to nearest, ties to even (from the float64 value, so
 * there is no double rounding). Overflow gives Infinity, tiny values subnormals or signed zero,
 * and every NaN the quiet NaN `0x7e00`.
 */
export function f32ToF16Bits(x: number): number {
  return encode(x, F16);
}

/** The value of binary16 bits (every one is exact in float32). */
export function f16BitsToF32(bits: number): number {
  checkBits('f16BitsToF32', bits);
  return decode(bits, F16);
}

/**
 * bfloat16 bits of `x`, rounded once to nearest, ties to even; for a float32 input this is the
 * usual `f32 -> bf16` conversion. Every NaN becomes the quiet NaN `0x7fc0`.
 */
export function f32ToBf16Bits(x: number): number {
  return encode(x, BF16);
}

/** The value of bfloat16 bits. */
export function bf16BitsToF32(bits: number): number {
  checkBits('bf16BitsToF32', bits);
  return decode(bits, BF16);
}

/** Rounds every value to binary16 bits. */
export function toF16(values: ArrayLike<number>): Uint16Array {
  const out = new Uint16Array(values.length);
  for (let i = 0; i < values.length; i++) out[i] = encode(values[i], F16);
  return out;
}

let f16Table: Float32Array | undefined;

/** Widens binary16 bits to float32 (exact). */
export function fromF16(bits: Uint16Array): Float32Array {
  if (f16Table === undefined) {
    f16Table = new Float32Array(65536);
    for (let b = 0; b < 65536; b++) f16Table[b] = decode(b, F16);
  }
  const table = f16Table;
  const out = new Float32Array(bits.length);
  for (let i = 0; i < bits.length; i++) out[i] = table[bits[i]];
  return out;
}

/** Rounds every value to bfloat16 bits. */
export function toBf16(values: ArrayLike<number>): Uint16Array {
  const out = new Uint16Array(values.length);
  for (let i = 0; i < values.length; i++) out[i] = encode(values[i], BF16);
  return out;
}

/** Widens bfloat16 bits to float32 (exact: the bits become the top half of a float32). */
export function fromBf16(bits: Uint16Array): Float32Array {
  const out = new Float32Array(bits.length);
  const raw = new Uint32Array(out.buffer);
  for (let i = 0; i < bits.length; i++) raw[i] = bits[i] << 16;
  return out;
}

/** Number of elements of a shape; every dimension must be a non-negative integer. */
export function tensorSize(shape: readonly number[]): number {
  if (!Array.isArray(shape)) throw new ShapeError('tensorSize: shape must be an array of dimensions');
  let size = 1;
  for (let i = 0; i < shape.length; i++) {
    const dim = shape[i];
    if (!(Number.isInteger(dim) && dim >= 0)) {
      throw new ShapeError(`tensorSize: shape[${i}] must be a non-negative integer, got ${dim}`);
    }
    size *= dim;
  }
  return size;
}

/**
 * Makes a host tensor. `data`, when given, must hold `tensorSize(shape)` elements: a
 * `Float32Array` for f32 or a `Uint16Array` of raw bits for f16/bf16 is used as is (no copy);
 * any other array of numbers is taken as values and converted (rounded for f16/bf16).
 * Without `data` the tensor is zero-filled.
 */
export function createTensor<D extends DType>(
  dtype: D,
  shape: readonly number[],
  data?: ArrayLike<number>,
): Tensor<D> {
  if (dtype !== 'f32' && dtype !== 'f16' && dtype !== 'bf16') {
    throw new KascadeRangeError(`createTensor: dtype must be 'f32', 'f16' or 'bf16', got ${String(dtype)}`);
  }
  const size = tensorSize(shape);
  if (data !== undefined && data.length !== size) {
    throw new ShapeError(
      `createTensor: data has length ${data.length}, expected ${size} for shape [${shape.join(', ')}]`,
    );
  }
  let array: Float32Array | Uint16Array;
  if (dtype === 'f32') {
    array =
      data === undefined
        ? new Float32Array(size)
        : data instanceof Float32Array
          ? data
          : Float32Array.from(data);
  } else if (data === undefined) {
    array = new Uint16Array(size);
  } else if (data instanceof Uint16Array) {
    array = data;
  } else {
    array = dtype === 'f16' ? toF16(data) : toBf16(data);
  }
  return Object.freeze({ dtype, shape: Object.freeze([...shape]), data: array }) as Tensor<D>;
}

/** The values of a tensor as float32 (a copy for f16/bf16, the same array for f32). */
export function tensorToFloat32(tensor: Tensor): Float32Array {
  if (tensor.dtype === 'f32') return tensor.data as Float32Array;
  return tensor.dtype === 'f16' ? fromF16(tensor.data as Uint16Array) : fromBf16(tensor.data as Uint16Array);
}
