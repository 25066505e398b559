import type { ModelConfig } from './config.js';

/**
 * RoPE inverse frequencies `theta^(-2i/d)`, in f32 as transformers computes them, with
 * Llama 3.1's `llama3` scaling or linear scaling applied. `factors` (GGUF's `rope_freqs`)
 * divides each frequency, as llama.cpp does.
 */
export function ropeInverseFrequencies(config: ModelConfig, factors?: Float32Array): Float32Array {
  const half = config.headDim / 2;
  const inv = new Float32Array(half);
  for (let i = 0; i < half; i++) {
    inv[i] = 1 / Math.fround(config.ropeTheta ** Math.fround((2 * i) / config.headDim));
  }
  const s = config.ropeScaling;
  if (s?.type === 'linear') {
    for (let i = 0; i < half; i++) inv[i] /= s.factor;
  } else if (s?.type === 'llama3') {
    const lowWavelen = s.originalMaxPositionEmbeddings / s.lowFreqFactor;
    const highWavelen = s.originalMaxPositionEmbeddings / s.highFreqFactor;
    for (let i = 0; i < half; i++) {
      const f = inv[i];
      const wavelen = (2 * Math.PI) / f;
      if (wavelen > lowWavelen) {
        inv[i] = f / s.factor;
      } else if (wavelen >= highWavelen) {
        const smooth =
          (s.originalMaxPositionEmbeddings / wavelen - s.lowFreqFactor) /
          (s.highFreqFactor - s.lowFreqFactor);
        inv[i] = (1 - smooth) * (f / s.factor) + smooth * f;
      }
    }
  }
  if (factors) for (let i = 0; i < half; i++) inv[i] /= factors[i];
  return inv;
}

/** cos/sin tables `[tokens, headDim / 2]` for positions `start .. start + tokens - 1`. */
export function ropeTables(
  inv: Float32Array,
  start: number,
  tokens: number,
): { cos: Float32Array; sin: Float32Array } {
  const half = inv.length;
  const cos = new Float32Array(tokens * half);
  const sin = new Float32Array(tokens * half);
  for (let t = 0; t < tokens; t++) {
    for (let i = 0; i < half; i++) {
      const angle = Math.fround((start + t) * inv[i]);
      cos[t * half + i] = Math.cos(angle);
      sin[t * half + i] = Math.sin(angle);
    }
  }
  return { cos, sin };
}

/**
 * Rotates one head vector `x[offset .. offset + 2 * half)` of token `t` in place, in
 * transformers' "rotate half" layout (pairs `i` and `i + d/2`).
 */
export function applyRope(
  x: Float32Array,
  offset: number,
  cos: Float32Array,
  sin: Float32Array,
  t: number,
  half: number,
): void {
  const tb = t * half;
  for (let i = 0; i < half; i++) {
    const a = x[offset + i];
    const b = x[offset + half + i];
    const c = cos[tb + i];
    const s = sin[tb + i];
    x[offset + i] = a * c - b * s;
    x[offset + half + i] = b * c + a * s;
  }
}
