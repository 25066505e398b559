/** GGML tensor types the loader understands, and GGUF metadata value types. */
export const GGML_F32 = 0;
export const GGML_F16 = 1;
export const GGML_Q8_0 = 8;
export const GGML_BF16 = 30;
export const GGML_TYPE_NAMES: Record<number, string> = {
  0: 'F32',
  1: 'F16',
  2: 'Q4_0',
  3: 'Q4_1',
  6: 'Q5_0',
  7: 'Q5_1',
  8: 'Q8_0',
  9: 'Q8_1',
  10: 'Q2_K',
  11: 'Q3_K',
  12: 'Q4_K',
  13: 'Q5_K',
  14: 'Q6_K',
  15: 'Q8_K',
  30: 'BF16',
};
/** Q8_0: blocks of 32 values, one f16 scale then 32 int8. */
export const Q8_0_BLOCK = 32;
export const Q8_0_BYTES = 34;

/**
 * llama.cpp's converter stores `q_proj` / `k_proj` rows permuted for its interleaved RoPE:
 * within each head, row `2i` is the original row `i` and row `2i+1` the original `i + d/2`.
 * `permuteQK` applies that order (what the converter does); `unpermuteQK` undoes it.
 */
export function permuteQK(w: Float32Array, heads: number, cols: number): Float32Array {
  const rows = w.length / cols;
  const d = rows / heads;
  const half = d / 2;
  const out = new Float32Array(w.length);
  for (let h = 0; h < heads; h++) {
    for (let i = 0; i < half; i++) {
      out.set(w.subarray((h * d + i) * cols, (h * d + i + 1) * cols), (h * d + 2 * i) * cols);
      out.set(
        w.subarray((h * d + half + i) * cols, (h * d + half + i + 1) * cols),
        (h * d + 2 * i + 1) * cols,
      );
    }
  }
  return out;
}

export function unpermuteQK(w: Float32Array, heads: number, cols: number): Float32Array {
  const rows = w.length / cols;
  const d = rows / heads;
  const half = d / 2;
  const out = new Float32Array(w.length);
  for (let h = 0; h < heads; h++) {
    for (let i = 0; i < half; i++) {
      out.set(w.subarray((h * d + 2 * i) * cols, (h * d + 2 * i + 1) * cols), (h * d + i) * cols);
      out.set(w.subarray((h * d + 2 * i + 1) * cols, (h * d + 2 * i + 2) * cols), (h * d + half + i) * cols);
    }
  }
  return out;
}
