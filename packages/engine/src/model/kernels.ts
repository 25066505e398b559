/**
 * CPU kernels of the forward pass, on f32 row-major data. Weights are `[out, in]` (as
 * PyTorch's `Linear` stores them), so every output is one contiguous dot product.
 */

/** `y[o] = sum_i w[o, i] * x[i] (+ bias[o])` for `rows` outputs of `cols` inputs. */
export function matvec(
  w: Float32Array,
  x: Float32Array,
  y: Float32Array,
  rows: number,
  cols: number,
  bias?: Float32Array,
  xOffset = 0,
  yOffset = 0,
): void {
  const c4 = cols & ~3;
  for (let o = 0; o < rows; o++) {
    const base = o * cols;
    let s0 = 0;
    let s1 = 0;
    let s2 = 0;
    let s3 = 0;
    let i = 0;
    for (; i < c4; i += 4) {
      s0 += w[base + i] * x[xOffset + i];
      s1 += w[base + i + 1] * x[xOffset + i + 1];
      s2 += w[base + i + 2] * x[xOffset + i + 2];
      s3 += w[base + i + 3] * x[xOffset + i + 3];
    }
    for (; i < cols; i++) s0 += w[base + i] * x[xOffset + i];
    y[yOffset + o] = s0 + s1 + s2 + s3 + (bias ? bias[o] : 0);
  }
}

/**
 * `y[t, o] = sum_i x[t, i] * w[o, i] (+ bias[o])` for `tokens` rows of `x` (`[tokens, cols]`),
 * `y` is `[tokens, rows]`. Each weight row is reused across 4 tokens at a time.
 */
export function matmul(
  w: Float32Array,
  x: Float32Array,
  y: Float32Array,
  tokens: number,
  rows: number,
  cols: number,
  bias?: Float32Array,
): void {
  let t = 0;
  for (; t + 4 <= tokens; t += 4) {
    const x0 = t * cols;
    const x1 = x0 + cols;
    const x2 = x1 + cols;
    const x3 = x2 + cols;
    for (let o = 0; o < rows; o++) {
      const base = o * cols;
      let s0 = 0;
      let s1 = 0;
      let s2 = 0;
      let s3 = 0;
      for (let i = 0; i < cols; i++) {
        const wi = w[base + i];
        s0 += wi * x[x0 + i];
        s1 += wi * x[x1 + i];
        s2 += wi * x[x2 + i];
        s3 += wi * x[x3 + i];
      }
      const b = bias ? bias[o] : 0;
      y[t * rows + o] = s0 + b;
      y[(t + 1) * rows + o] = s1 + b;
      y[(t + 2) * rows + o] = s2 + b;
      y[(t + 3) * rows + o] = s3 + b;
    }
  }
  for (; t < tokens; t++) matvec(w, x, y, rows, cols, bias, t * cols, t * rows);
}

/** RMSNorm of `tokens` rows of width `dim`: `y = x / sqrt(mean(x^2) + eps) * weight`. */
export function rmsNorm(
  x: Float32Array,
  weight: Float32Array,
  y: Float32Array,
  tokens: number,
  dim: number,
  eps: number,
): void {
  for (let t = 0; t < tokens; t++) {
    const base = t * dim;
    let ss = 0;
    for (let i = 0; i < dim; i++) ss += x[base + i] * x[base + i];
    const inv = 1 / Math.sqrt(ss / dim + eps);
    for (let i = 0; i < dim; i++) y[base + i] = x[base + i] * inv * weight[i];
  }
}

/** `gate = silu(gate) * up`, in place over `n` elements. */
export function swiglu(gate: Float32Array, up: Float32Array, n: number): void {
  for (let i = 0; i < n; i++) {
    const g = gate[i];
    gate[i] = (g / (1 + Math.exp(-g))) * up[i];
  }
}

/** `y += x` over `n` elements. */
export function addInPlace(y: Float32Array, x: Float32Array | Float64Array, n: number): void {
  for (let i = 0; i < n; i++) y[i] += x[i];
}
