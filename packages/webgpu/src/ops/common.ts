import { WebGPUShapeError } from '../errors.js';

/** Packs a uniform block: u32 and f32 fields in order, then an optional head map as u32 (padded to 32). */
export function packParams(
  fields: readonly (number | { f32: number })[],
  headMap?: ArrayLike<number>,
): ArrayBuffer {
  const words = fields.length + (headMap ? 32 : 0);
  const buf = new ArrayBuffer(Math.ceil((words * 4) / 16) * 16);
  const dv = new DataView(buf);
  fields.forEach((f, i) => {
    if (typeof f === 'number') dv.setUint32(i * 4, f >>> 0, true);
    else dv.setFloat32(i * 4, f.f32, true);
  });
  if (headMap) {
    for (let j = 0; j < headMap.length; j++) dv.setUint32((fields.length + j) * 4, headMap[j] >>> 0, true);
  }
  return buf;
}

/** Validates a head map of `kvHeads` entries, each in `[0, kvHeads)`; identity when absent. */
export function resolveHeadMap(kvHeads: number, headMap?: ArrayLike<number>): Uint32Array {
  if (kvHeads > 32) throw new WebGPUShapeError(`kvHeads must be <= 32 on WebGPU, got ${kvHeads}`);
  const out = new Uint32Array(kvHeads);
  if (!headMap) {
    for (let j = 0; j < kvHeads; j++) out[j] = j;
    return out;
  }
  if (headMap.length !== kvHeads) {
    throw new WebGPUShapeError(`headMap must have kvHeads = ${kvHeads} entries, got ${headMap.length}`);
  }
  for (let j = 0; j < kvHeads; j++) {
    const m = headMap[j];
    if (!(Number.isInteger(m) && m >= 0 && m < kvHeads)) {
      throw new WebGPUShapeError(`headMap[${j}] = ${m} is not a KV head in [0, ${kvHeads})`);
    }
    out[j] = m;
  }
  return out;
}

/** Group size `heads / kvHeads`, checked to be an integer in 1..8. */
export function groupSize(heads: number, kvHeads: number): number {
  if (
    !(
      Number.isInteger(heads) &&
      Number.isInteger(kvHeads) &&
      heads > 0 &&
      kvHeads > 0 &&
      heads % kvHeads === 0
    )
  ) {
    throw new WebGPUShapeError(`heads (${heads}) must be a positive multiple of kvHeads (${kvHeads})`);
  }
  const g = heads / kvHeads;
  if (g > 8) throw new WebGPUShapeError(`group size heads / kvHeads must be 1..8 on WebGPU, got ${g}`);
  return g;
}

export function positiveInt(name: string, v: number): void {
  if (!(Number.isInteger(v) && v > 0))
    throw new WebGPUShapeError(`${name} must be a positive integer, got ${v}`);
}

/** Everything of an op is dispatched into one compute pass the caller owns (one per op for timing). */
export type Pass = GPUComputePassEncoder;
