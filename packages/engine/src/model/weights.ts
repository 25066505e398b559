/** A weight matrix `[out, in]`: f32 values, or bf16 bits in a `Uint16Array` (kept as stored by bf16 checkpoints). */
export type WeightMatrix = Float32Array | Uint16Array;

/** Weights of one decoder layer, f32, linear weights `[out, in]`. */
export interface LayerWeights {
  readonly inputNorm: Float32Array;
  readonly q: WeightMatrix;
  readonly k: WeightMatrix;
  readonly v: WeightMatrix;
  readonly o: WeightMatrix;
  readonly qBias?: Float32Array;
  readonly kBias?: Float32Array;
  readonly vBias?: Float32Array;
  readonly oBias?: Float32Array;
  /** Qwen3: RMSNorm weights `[headDim]` applied to each q / k head before RoPE. */
  readonly qNorm?: Float32Array;
  readonly kNorm?: Float32Array;
  readonly postNorm: Float32Array;
  readonly gate: WeightMatrix;
  readonly up: WeightMatrix;
  readonly down: WeightMatrix;
}

export interface ModelWeights {
  /** `[vocab, hidden]` */
  readonly embed: WeightMatrix;
  readonly layers: readonly LayerWeights[];
  readonly finalNorm: Float32Array;
  /** `[vocab, hidden]`; the same array as `embed` when embeddings are tied. */
  readonly lmHead: WeightMatrix;
  /** GGUF `rope_freqs`: per-frequency divisors (Llama 3.1 scaling as llama.cpp stores it). */
  readonly ropeFactors?: Float32Array;
}
