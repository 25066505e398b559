/** Weights of one decoder layer, f32, linear weights `[out, in]`. */
export interface LayerWeights {
  readonly inputNorm: Float32Array;
  readonly q: Float32Array;
  readonly k: Float32Array;
  readonly v: Float32Array;
  readonly o: Float32Array;
  readonly qBias?: Float32Array;
  readonly kBias?: Float32Array;
  readonly vBias?: Float32Array;
  readonly oBias?: Float32Array;
  /** Qwen3: RMSNorm weights `[headDim]` applied to each q / k head before RoPE. */
  readonly qNorm?: Float32Array;
  readonly kNorm?: Float32Array;
  readonly postNorm: Float32Array;
  readonly gate: Float32Array;
  readonly up: Float32Array;
  readonly down: Float32Array;
}

export interface ModelWeights {
  /** `[vocab, hidden]` */
  readonly embed: Float32Array;
  readonly layers: readonly LayerWeights[];
  readonly finalNorm: Float32Array;
  /** `[vocab, hidden]`; the same array as `embed` when embeddings are tied. */
  readonly lmHead: Float32Array;
  /** GGUF `rope_freqs`: per-frequency divisors (Llama 3.1 scaling as llama.cpp stores it). */
  readonly ropeFactors?: Float32Array;
}
