import { siluMulWasm } from './attention-wasm.js';
import type { ModelConfig } from './config.js';
import { bf16ToF32 } from './dtype.js';
import { abortError, ModelUsageError } from './errors.js';
import type { LayerAttention } from './hooks.js';
import { addInPlace, matmul, rmsNorm, swiglu } from './kernels.js';
import { applyRope, ropeInverseFrequencies, ropeTables } from './rope.js';
import type { ModelTokenizer } from './tokenizer.js';
import { WasmArena } from './wasm.js';
import type { LayerWeights, ModelWeights, WeightMatrix } from './weights.js';

/** One sequence's KV cache: per layer `k`, `v` of `[kvHeads, capacity, headDim]` f32, the first `length` tokens valid. */
export interface SequenceState {
  readonly capacity: number;
  /** Tokens in the cache (the position of the next token). */
  length: number;
  readonly k: readonly Float32Array[];
  readonly v: readonly Float32Array[];
}

export interface PrefillOptions {
  /** Query tile size `T` (default 32): the attention hook sees chunks starting on tile boundaries. */
  readonly tileSize?: number;
  /** Tiles per chunk (default 1): the forward pass runs one chunk at a time and checks `signal` between chunks. */
  readonly chunkTiles?: number;
  readonly signal?: AbortSignal;
  /** Called after each chunk with the tokens done so far and the total. */
  readonly onTile?: (done: number, total: number) => void;
}

/** A model whose forward pass runs on the CPU, with attention delegated to a {@link LayerAttention}. */
export interface CpuModel {
  readonly config: ModelConfig;
  readonly tokenizer: ModelTokenizer;
  readonly id: string;
  /** True for random-weight models (no trained weights). */
  readonly randomWeights: boolean;
  /** Which matrix kernels run: WebAssembly SIMD or plain JS. */
  readonly kernels: 'wasm' | 'js';
  /** How the layer matrices are held: f32, or bf16 (bf16 checkpoints on the wasm kernels). */
  readonly matrixDtype: 'f32' | 'bf16';
  /** Threads the matrix products use (1 unless `threads` was asked for). */
  readonly threads: number;
  createSequence(capacity: number): SequenceState;
  /** Runs the prompt through the model in query tiles; returns the logits `[vocab]` of its last token. */
  prefill(
    seq: SequenceState,
    tokenIds: Int32Array | readonly number[],
    attention: LayerAttention,
    options?: PrefillOptions,
  ): Float32Array;
  /** Appends one token and returns its logits `[vocab]`. */
  decode(seq: SequenceState, tokenId: number, attention: LayerAttention): Float32Array;
  /**
   * One decode step for several sequences at once (projections as matrix-matrix products
   * over the batch). `attention` is one hook for all, or one per sequence.
   */
  decodeBatch(
    seqs: readonly SequenceState[],
    tokenIds: readonly number[],
    attention: LayerAttention | readonly LayerAttention[],
  ): Float32Array[];
  dispose(): Promise<void>;
}

interface Group {
  readonly seq: SequenceState;
  /** First row of the group in the activation matrix. */
  readonly row: number;
  readonly count: number;
  readonly decode: boolean;
  readonly attention: LayerAttention;
  readonly tileSize: number;
}

/** The forward pass of the Llama family over {@link ModelWeights}. */
export class CpuTransformer implements CpuModel {
  readonly config: ModelConfig;
  readonly tokenizer: ModelTokenizer;
  readonly id: string;
  readonly randomWeights: boolean;
  readonly weights: ModelWeights;
  /** Which matrix kernels run: WebAssembly SIMD (weights in a wasm arena) or plain JS. */
  readonly kernels: 'wasm' | 'js';
  readonly matrixDtype: 'f32' | 'bf16';
  private readonly arena: WasmArena | undefined;
  private readonly invFreq: Float32Array;
  private disposed = false;

  constructor(args: {
    config: ModelConfig;
    weights: ModelWeights;
    tokenizer: ModelTokenizer;
    id: string;
    randomWeights: boolean;
    /** Default 'wasm' where WebAssembly SIMD and shared memory work, else 'js'. */
    kernels?: 'wasm' | 'js';
    /** Threads for the wasm matrix products (default 1): more use worker threads. */
    threads?: number;
    /** A wasm arena the loader already read (some of) the matrices into. */
    arena?: WasmArena;
  }) {
    this.config = args.config;
    // The wasm memory holds at most 4 GiB: larger models run on the JS kernels.
    const bytes = matrixBytes(args.weights);
    const fits = bytes <= WASM_WEIGHT_LIMIT;
    const arena =
      args.kernels === 'js' || !fits ? undefined : (args.arena ?? WasmArena.create(bytes + (1 << 20)));
    if (args.kernels === 'wasm' && !arena) {
      throw new ModelUsageError(
        fits
          ? 'WebAssembly SIMD kernels are unavailable in this runtime; use kernels: "js"'
          : `the model's ${(bytes / 2 ** 30).toFixed(1)} GiB of f32 matrices exceed the WebAssembly memory; use kernels: "js"`,
      );
    }
    this.arena = arena;
    if (arena && args.threads && args.threads > 1) arena.setThreads(args.threads);
    this.kernels = arena ? 'wasm' : 'js';
    this.weights = arena ? adoptWeights(arena, args.weights, args.config) : toF32Weights(args.weights);
    this.matrixDtype = this.weights.layers.some((l) => l.q instanceof Uint16Array) ? 'bf16' : 'f32';
    this.tokenizer = args.tokenizer;
    this.id = args.id;
    this.randomWeights = args.randomWeights;
    this.invFreq = ropeInverseFrequencies(args.config, args.weights.ropeFactors);
  }

  createSequence(capacity: number): SequenceState {
    if (!Number.isInteger(capacity) || capacity <= 0) {
      throw new ModelUsageError(`createSequence: capacity must be a positive integer, got ${capacity}`);
    }
    const { layers, kvHeads, headDim } = this.config;
    const size = kvHeads * capacity * headDim;
    const k: Float32Array[] = [];
    const v: Float32Array[] = [];
    for (let l = 0; l < layers; l++) {
      k.push(new Float32Array(size));
      v.push(new Float32Array(size));
    }
    return { capacity, length: 0, k, v };
  }

  prefill(
    seq: SequenceState,
    tokenIds: Int32Array | readonly number[],
    attention: LayerAttention,
    options: PrefillOptions = {},
  ): Float32Array {
    const tileSize = options.tileSize ?? 32;
    const chunkTiles = options.chunkTiles ?? 1;
    if (!Number.isInteger(tileSize) || tileSize <= 0) {
      throw new ModelUsageError(`prefill: tileSize must be a positive integer, got ${tileSize}`);
    }
    if (!Number.isInteger(chunkTiles) || chunkTiles <= 0) {
      throw new ModelUsageError(`prefill: chunkTiles must be a positive integer, got ${chunkTiles}`);
    }
    const total = tokenIds.length;
    if (total === 0) throw new ModelUsageError('prefill: no tokens');
    if (seq.length % tileSize !== 0) {
      throw new ModelUsageError(
        `prefill: the sequence holds ${seq.length} tokens, not a multiple of tileSize ${tileSize}; query tiles must start on tile boundaries`,
      );
    }
    this.checkRoom(seq, total);
    this.checkTokens(tokenIds);
    const chunk = tileSize * chunkTiles;
    let logits: Float32Array | undefined;
    for (let done = 0; done < total; ) {
      if (options.signal?.aborted) throw abortError(options.signal);
      const count = Math.min(chunk, total - done);
      const ids = Array.from({ length: count }, (_, i) => tokenIds[done + i]);
      // Only the last chunk's final hidden states are read (for the logits): earlier chunks
      // need the last layer's K/V appended, not its attention and MLP outputs. A hook that
      // observes the residual stream (calibration) still sees every layer of every chunk.
      const last = done + count === total;
      const h = this.forward([{ seq, row: 0, count, decode: false, attention, tileSize }], ids, {
        skipLastLayer: !last && attention.observe === undefined,
      });
      done += count;
      if (done === total) logits = this.logits(h, count - 1);
      options.onTile?.(done, total);
    }
    return logits!;
  }

  decode(seq: SequenceState, tokenId: number, attention: LayerAttention): Float32Array {
    this.checkRoom(seq, 1);
    this.checkTokens([tokenId]);
    const h = this.forward([{ seq, row: 0, count: 1, decode: true, attention, tileSize: 1 }], [tokenId]);
    return this.logits(h, 0);
  }

  decodeBatch(
    seqs: readonly SequenceState[],
    tokenIds: readonly number[],
    attention: LayerAttention | readonly LayerAttention[],
  ): Float32Array[] {
    if (seqs.length !== tokenIds.length) {
      throw new ModelUsageError(`decodeBatch: ${seqs.length} sequences but ${tokenIds.length} tokens`);
    }
    if (new Set(seqs).size !== seqs.length)
      throw new ModelUsageError('decodeBatch: a sequence appears twice');
    const hooks = Array.isArray(attention) ? (attention as readonly LayerAttention[]) : undefined;
    if (hooks && hooks.length !== seqs.length) {
      throw new ModelUsageError(`decodeBatch: ${seqs.length} sequences but ${hooks.length} attention hooks`);
    }
    for (const s of seqs) this.checkRoom(s, 1);
    this.checkTokens(tokenIds);
    const groups: Group[] = seqs.map((seq, i) => ({
      seq,
      row: i,
      count: 1,
      decode: true,
      attention: hooks ? hooks[i] : (attention as LayerAttention),
      tileSize: 1,
    }));
    const h = this.forward(groups, tokenIds);
    return seqs.map((_, i) => this.logits(h, i));
  }

  async dispose(): Promise<void> {
    this.disposed = true;
    await this.arena?.close();
  }

  /** Threads the matrix products use. */
  get threads(): number {
    return this.arena?.threads ?? 1;
  }

  /** `y = x W^T (+ bias)` for `tokens` rows, on the wasm kernels when the weight lives in the arena. */
  private mm(
    w: WeightMatrix,
    x: Float32Array,
    y: Float32Array,
    tokens: number,
    rows: number,
    cols: number,
    bias?: Float32Array,
    sameX = false,
  ): void {
    if (this.arena?.matmul(w, x, y, tokens, rows, cols, sameX)) {
      if (bias) for (let t = 0; t < tokens; t++) for (let o = 0; o < rows; o++) y[t * rows + o] += bias[o];
      return;
    }
    // Matrices the wasm kernels cannot take were stored as f32 (see adoptWeights / toF32Weights).
    matmul(w as Float32Array, x, y, tokens, rows, cols, bias);
  }

  private checkRoom(seq: SequenceState, tokens: number): void {
    if (this.disposed) throw new ModelUsageError('the model has been disposed');
    if (seq.k.length !== this.config.layers)
      throw new ModelUsageError('the sequence was created by another model');
    if (seq.length + tokens > seq.capacity) {
      throw new ModelUsageError(
        `the sequence's KV cache holds ${seq.capacity} tokens: ${seq.length} used, ${tokens} more do not fit`,
      );
    }
  }

  private checkTokens(ids: ArrayLike<number>): void {
    const vocab = this.config.vocabSize;
    for (let i = 0; i < ids.length; i++) {
      const id = ids[i];
      if (!Number.isInteger(id) || id < 0 || id >= vocab) {
        throw new ModelUsageError(`token id ${id} at index ${i} is outside the vocabulary [0, ${vocab})`);
      }
    }
  }

  /** Final norm and LM head for row `row` of the hidden states. */
  private logits(h: Float32Array, row: number): Float32Array {
    const { hiddenSize: dim, vocabSize, rmsNormEps } = this.config;
    const x = new Float32Array(dim);
    rmsNorm(h.subarray(row * dim, (row + 1) * dim), this.weights.finalNorm, x, 1, dim, rmsNormEps);
    const out = new Float32Array(vocabSize);
    this.mm(this.weights.lmHead, x, out, 1, vocabSize, dim);
    return out;
  }

  /** Runs all layers over `rows` tokens (grouped by sequence); returns the final hidden states `[rows, hidden]`. */
  private forward(
    groups: readonly Group[],
    ids: ArrayLike<number>,
    options: { readonly skipLastLayer?: boolean } = {},
  ): Float32Array {
    const c = this.config;
    const { hiddenSize: dim, heads, kvHeads, headDim: d, intermediateSize: inter, rmsNormEps: eps } = c;
    const rows = ids.length;
    const half = d / 2;
    const qDim = heads * d;
    const kvDim = kvHeads * d;
    const h = new Float32Array(rows * dim);
    for (let r = 0; r < rows; r++)
      embedRow(this.weights.embed, ids[r], dim, h.subarray(r * dim, (r + 1) * dim));
    // RoPE tables per row (positions differ between sequences of a batch).
    const cos = new Float32Array(rows * half);
    const sin = new Float32Array(rows * half);
    for (const g of groups) {
      const t = ropeTables(this.invFreq, g.seq.length, g.count);
      cos.set(t.cos, g.row * half);
      sin.set(t.sin, g.row * half);
    }
    const x = new Float32Array(rows * dim);
    const q = new Float32Array(rows * qDim);
    const k = new Float32Array(rows * kvDim);
    const v = new Float32Array(rows * kvDim);
    const attnRows = new Float32Array(rows * qDim);
    const attnOut = new Float32Array(rows * dim);
    const gate = new Float32Array(rows * inter);
    const up = new Float32Array(rows * inter);
    const down = new Float32Array(rows * dim);
    for (let l = 0; l < c.layers; l++) {
      const w = this.weights.layers[l];
      rmsNorm(h, w.inputNorm, x, rows, dim, eps);
      this.mm(w.q, x, q, rows, qDim, dim, w.qBias);
      // k, v (and up, below) read the x the previous product staged: it is not re-copied.
      this.mm(w.k, x, k, rows, kvDim, dim, w.kBias, true);
      this.mm(w.v, x, v, rows, kvDim, dim, w.vBias, true);
      if (w.qNorm) rmsNorm(q, w.qNorm, q, rows * heads, d, eps);
      if (w.kNorm) rmsNorm(k, w.kNorm, k, rows * kvHeads, d, eps);
      for (let r = 0; r < rows; r++) {
        for (let hh = 0; hh < heads; hh++) applyRope(q, r * qDim + hh * d, cos, sin, r, half);
        for (let j = 0; j < kvHeads; j++) applyRope(k, r * kvDim + j * d, cos, sin, r, half);
      }
      const skip = options.skipLastLayer === true && l === c.layers - 1;
      for (const g of groups) {
        const { seq } = g;
        const cap = seq.capacity;
        const kc = seq.k[l];
        const vc = seq.v[l];
        const start = seq.length;
        for (let t = 0; t < g.count; t++) {
          const r = g.row + t;
          for (let j = 0; j < kvHeads; j++) {
            const dst = (j * cap + start + t) * d;
            kc.set(k.subarray(r * kvDim + j * d, r * kvDim + (j + 1) * d), dst);
            vc.set(v.subarray(r * kvDim + j * d, r * kvDim + (j + 1) * d), dst);
          }
        }
        if (skip) continue;
        // q as [heads, count, headDim] for the hook.
        const qh = new Float32Array(heads * g.count * d);
        for (let t = 0; t < g.count; t++) {
          for (let hh = 0; hh < heads; hh++) {
            const src = (g.row + t) * qDim + hh * d;
            const dst = (hh * g.count + t) * d;
            for (let i = 0; i < d; i++) qh[dst + i] = q[src + i]!;
          }
        }
        const shape = { heads, kvHeads, headDim: d, k: kc, v: vc, n: start + g.count, capacity: cap };
        const out = g.decode
          ? g.attention.decode(l, { ...shape, q: qh })
          : g.attention.prefill(l, {
              ...shape,
              q: qh,
              queries: g.count,
              queryStart: start,
              tileSize: g.tileSize,
            });
        if (out.length !== heads * g.count * d) {
          throw new ModelUsageError(
            `attention hook of layer ${l} returned ${out.length} values, expected ${heads * g.count * d}`,
          );
        }
        if (out instanceof Float32Array) {
          for (let t = 0; t < g.count; t++) {
            for (let hh = 0; hh < heads; hh++) {
              const src = (hh * g.count + t) * d;
              const dst = (g.row + t) * qDim + hh * d;
              for (let i = 0; i < d; i++) attnRows[dst + i] = out[src + i]!;
            }
          }
        } else {
          for (let t = 0; t < g.count; t++) {
            for (let hh = 0; hh < heads; hh++) {
              const src = (hh * g.count + t) * d;
              const dst = (g.row + t) * qDim + hh * d;
              for (let i = 0; i < d; i++) attnRows[dst + i] = out[src + i]!;
            }
          }
        }
      }
      // The last layer of a chunk whose outputs nobody reads: its K/V are in the cache.
      if (skip) break;
      this.mm(w.o, attnRows, attnOut, rows, dim, qDim, w.oBias);
      for (const g of groups) {
        g.attention.observe?.(
          l,
          h.subarray(g.row * dim, (g.row + g.count) * dim),
          attnOut.subarray(g.row * dim, (g.row + g.count) * dim),
          g.count,
        );
      }
      addInPlace(h, attnOut, rows * dim);
      rmsNorm(h, w.postNorm, x, rows, dim, eps);
      this.mm(w.gate, x, gate, rows, inter, dim);
      this.mm(w.up, x, up, rows, inter, dim, undefined, true);
      if (!(this.arena && siluMulWasm(gate, up, rows * inter))) swiglu(gate, up, rows * inter);
      this.mm(w.down, gate, down, rows, dim, inter);
      addInPlace(h, down, rows * dim);
    }
    for (const g of groups) g.seq.length += g.count;
    return h;
  }
}

/** f32 matrices above this many bytes stay on the JS kernels (the wasm memory's 4 GiB, less room for scratch). */
export const WASM_WEIGHT_LIMIT = 3.75 * 2 ** 30;

function matrixBytes(w: ModelWeights): number {
  const seen = new Set<WeightMatrix>();
  for (const l of w.layers) for (const m of [l.q, l.k, l.v, l.o, l.gate, l.up, l.down]) seen.add(m);
  seen.add(w.lmHead);
  let n = 0;
  for (const m of seen) n += m.byteLength;
  return n;
}

/** Row `id` of an embedding table as f32 into `out`. */
function embedRow(embed: WeightMatrix, id: number, dim: number, out: Float32Array): void {
  const row = embed.subarray(id * dim, (id + 1) * dim);
  if (row instanceof Float32Array) out.set(row);
  else bf16ToF32(row, out);
}

const f32Of = (m: WeightMatrix): Float32Array => (m instanceof Float32Array ? m : bf16ToF32(m));

/** All matrices as f32 (for the JS kernels); tied arrays stay tied. */
function toF32Weights(w: ModelWeights): ModelWeights {
  const done = new Map<WeightMatrix, Float32Array>();
  const conv = (m: WeightMatrix) => {
    let r = done.get(m);
    if (!r) {
      r = f32Of(m);
      done.set(m, r);
    }
    return r;
  };
  return {
    ...w,
    embed: conv(w.embed),
    lmHead: conv(w.lmHead),
    layers: w.layers.map((l) => ({
      ...l,
      q: conv(l.q),
      k: conv(l.k),
      v: conv(l.v),
      o: conv(l.o),
      gate: conv(l.gate),
      up: conv(l.up),
      down: conv(l.down),
    })),
  };
}

/**
 * Moves the matrices into the wasm arena (vectors stay where they are); tied arrays stay
 * tied. A matrix whose row length the wasm kernels cannot take (not a multiple of 16)
 * stays outside, as f32, for the JS kernel.
 */
function adoptWeights(arena: WasmArena, w: ModelWeights, c: ModelConfig): ModelWeights {
  const moved = new Map<WeightMatrix, WeightMatrix>();
  const adopt = (a: WeightMatrix, cols: number) => {
    let b = moved.get(a);
    if (!b) {
      b = arena.ptrOf(a) !== undefined ? a : cols % 16 === 0 ? arena.adopt(a) : f32Of(a);
      moved.set(a, b);
    }
    return b;
  };
  const { hiddenSize: dim, heads, headDim, intermediateSize: inter } = c;
  const layers = w.layers.map(
    (l): LayerWeights => ({
      ...l,
      q: adopt(l.q, dim),
      k: adopt(l.k, dim),
      v: adopt(l.v, dim),
      o: adopt(l.o, heads * headDim),
      gate: adopt(l.gate, dim),
      up: adopt(l.up, dim),
      down: adopt(l.down, inter),
    }),
  );
  return { ...w, layers, lmHead: adopt(w.lmHead, dim), embed: moved.get(w.embed) ?? w.embed };
}
