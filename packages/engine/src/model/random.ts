import { completeConfig, type ModelConfig } from './config.js';
import { f32ToBf16 } from './dtype.js';
import { type CpuModel, CpuTransformer, WASM_WEIGHT_LIMIT } from './model.js';
import { ByteTokenizer, type ModelTokenizer } from './tokenizer.js';
import { WasmArena } from './wasm.js';
import type { LayerWeights, ModelWeights, WeightMatrix } from './weights.js';

/** A small seeded PRNG (mulberry32) giving uniforms in [0, 1). */
export function mulberry32(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

export interface RandomModelOptions {
  /** Defaults to the built-in byte-level tokenizer. */
  readonly tokenizer?: ModelTokenizer;
  readonly id?: string;
  /** Matrix kernels: WebAssembly SIMD (default where available) or plain JS. */
  readonly kernels?: 'wasm' | 'js';
  /** Threads for the wasm matrix products (default 1; 2 uses a worker thread as well). */
  readonly threads?: number;
  /** `'bf16'` rounds the layer matrices and the LM head to bf16 and keeps them so (default `'f32'`). */
  readonly matrixDtype?: 'f32' | 'bf16';
}

/**
 * A model of the given shape with seeded random weights (uniform, scaled by `1/sqrt(fan-in)`
 * so activations stay of order 1) and, unless given another, a byte-level tokenizer
 * (`vocabSize` at least 258). The same config and seed give the same weights.
 */
export function createRandomModel(
  partial: Partial<ModelConfig>,
  seed: number,
  options: RandomModelOptions = {},
): CpuModel {
  const tokenizer = options.tokenizer;
  const config = completeConfig({
    ...(tokenizer ? {} : { bosTokenId: ByteTokenizer.BOS, eosTokenIds: [ByteTokenizer.EOS] }),
    ...partial,
  });
  const rand = mulberry32(seed);
  const { hiddenSize: dim, heads, kvHeads, headDim: d, intermediateSize: inter, vocabSize } = config;
  const bf16 = options.matrixDtype === 'bf16';
  // The product matrices are made in the wasm memory directly (no second copy of the model).
  const perLayer = 2 * heads * d * dim + 2 * kvHeads * d * dim + 3 * inter * dim;
  const bytes = (bf16 ? 2 : 4) * (config.layers * perLayer + vocabSize * dim) + 64 * (7 * config.layers + 1);
  const arena =
    options.kernels === 'js' || bytes > WASM_WEIGHT_LIMIT ? undefined : WasmArena.create(bytes + (1 << 20));
  const matrix = (rows: number, cols: number, scale = 1, into?: Float32Array): Float32Array => {
    const a = into ?? new Float32Array(rows * cols);
    const r = (Math.sqrt(3) * scale) / Math.sqrt(cols);
    for (let i = 0; i < a.length; i++) a[i] = (2 * rand() - 1) * r;
    return a;
  };
  const mat = (rows: number, cols: number, scale = 1, product = true): WeightMatrix => {
    const inArena = arena !== undefined && product && cols % 16 === 0;
    if (bf16) {
      const bits = f32ToBf16(matrix(rows, cols, scale));
      return inArena ? arena.adopt(bits) : bits;
    }
    return matrix(rows, cols, scale, inArena ? arena.alloc(rows * cols) : undefined);
  };
  const ones = (n: number) => new Float32Array(n).fill(1);
  const layers: LayerWeights[] = [];
  for (let l = 0; l < config.layers; l++) {
    layers.push({
      inputNorm: ones(dim),
      q: mat(heads * d, dim, 2),
      k: mat(kvHeads * d, dim, 2),
      v: mat(kvHeads * d, dim),
      o: mat(dim, heads * d, 0.5),
      ...(config.attentionBias
        ? { qBias: matrix(1, heads * d), kBias: matrix(1, kvHeads * d), vBias: matrix(1, kvHeads * d) }
        : {}),
      ...(config.qkNorm ? { qNorm: ones(d), kNorm: ones(d) } : {}),
      postNorm: ones(dim),
      gate: mat(inter, dim),
      up: mat(inter, dim),
      down: mat(dim, inter, 0.5),
    });
  }
  const embed = mat(vocabSize, dim, Math.sqrt(dim), config.tieWordEmbeddings);
  const weights: ModelWeights = {
    embed,
    layers,
    finalNorm: ones(dim),
    lmHead: config.tieWordEmbeddings ? embed : mat(vocabSize, dim),
  };
  if (!tokenizer && vocabSize < 258) {
    throw new RangeError(`createRandomModel: the byte tokenizer needs vocabSize >= 258, got ${vocabSize}`);
  }
  return new CpuTransformer({
    config,
    weights,
    tokenizer: tokenizer ?? new ByteTokenizer(vocabSize),
    id: options.id ?? `kascade-random-${config.layers}L-${dim}h (random weights, seed ${seed})`,
    randomWeights: true,
    ...(options.kernels ? { kernels: options.kernels } : {}),
    ...(options.threads ? { threads: options.threads } : {}),
    ...(arena ? { arena } : {}),
  });
}
