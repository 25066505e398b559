/**
 * The engine's public contract: what `createEngine` returns and what `generate` yields.
 * The server and the benchmarks code against these types only.
 */
import type { BudgetOptions } from '@kascade/core';

/** A chat message, as OpenAI-style clients send it. */
export interface ChatMessage {
  readonly role: 'system' | 'user' | 'assistant' | 'tool';
  readonly content: string;
}

/** What to generate from: a raw prompt, or messages rendered with the model's chat template. */
export type GenerateInput = string | readonly ChatMessage[];

/**
 * The attention policy of a run. `plan` is a validated plan from `@kascade/anchors`
 * (`parsePlan`); it is typed loosely here so the engine's API does not force an import.
 */
export type PolicySpec =
  | { readonly kind: 'dense' }
  | { readonly kind: 'kascade'; readonly plan: unknown; readonly decodeOnly?: boolean }
  | {
      readonly kind: 'oracle-topk';
      readonly budget?: BudgetOptions;
      readonly tileSize?: number;
      readonly decodeOnly?: boolean;
    }
  | { readonly kind: 'all-heads-pooled'; readonly plan: unknown; readonly decodeOnly?: boolean }
  | {
      readonly kind: 'streaming';
      readonly sinkTokens?: number;
      readonly budget?: BudgetOptions;
      readonly tileSize?: number;
      readonly decodeOnly?: boolean;
    };

export interface GenerateOptions {
  /** Most tokens to generate (default 128). */
  readonly maxTokens?: number;
  /** 0 (default) is greedy. */
  readonly temperature?: number;
  readonly topP?: number;
  readonly topK?: number;
  /** Seed of the sampler; the same seed, prompt and options give the same tokens. */
  readonly seed?: number;
  /** Generation stops before any of these strings would be emitted. */
  readonly stop?: readonly string[];
  /** Cancels promptly, also during prefill (checked between query tiles). */
  readonly signal?: AbortSignal;
  /** Attention policy for this call; defaults to the engine's. */
  readonly policy?: PolicySpec;
}

/** One streamed piece of output. `text` may be empty while a multi-byte character is incomplete. */
export interface GenerationChunk {
  readonly tokenId: number;
  readonly text: string;
}

export type FinishReason = 'stop' | 'length' | 'abort';

/** What Kascade did during a call, so users can see what sparsity bought. */
export interface KascadeUsage {
  readonly policy: PolicySpec['kind'];
  /** Mean keys attended per KV head per decode step, over sparse layers. */
  readonly effectiveK: number;
  /** Mean keys available per decode step (the context length), for comparison. */
  readonly contextKeys: number;
  /** Anchor layers of the plan (empty for policies without a plan). */
  readonly anchorLayers: readonly number[];
  /** How many times an anchor layer selected Top-k during the call. */
  readonly anchorsHit: number;
}

export interface GenerationUsage {
  readonly promptTokens: number;
  readonly completionTokens: number;
  readonly prefillTokensPerS: number;
  readonly decodeTokensPerS: number;
  /** Wall time spent inside attention ops, milliseconds. */
  readonly attentionMs: number;
  readonly totalMs: number;
  readonly finishReason: FinishReason;
  readonly kascade: KascadeUsage;
}

/** A running generation: iterate it for chunks; `usage` settles when it ends (also on abort). */
export interface Generation extends AsyncIterable<GenerationChunk> {
  readonly usage: Promise<GenerationUsage>;
}

export interface ModelInfo {
  /** e.g. the checkpoint directory's name, or `kascade-random-tiny (random weights)`. */
  readonly id: string;
  readonly architecture: string;
  readonly layers: number;
  readonly heads: number;
  readonly kvHeads: number;
  readonly headDim: number;
  readonly vocabSize: number;
  readonly maxContext: number;
  /** True for random-weight models that the project generates (no trained weights). */
  readonly randomWeights: boolean;
}

export type BackendName = 'cpu' | 'cuda' | 'webgpu';

export interface BackendChoice {
  readonly backend: BackendName;
  /** Why this backend was chosen (and why others were not). */
  readonly reason: string;
}

export interface KascadeEngine {
  readonly model: ModelInfo;
  readonly backend: BackendChoice;
  /** The plan loaded with the model, if any (a validated plan object). */
  readonly defaultPlan: unknown | undefined;
  generate(input: GenerateInput, options?: GenerateOptions): Generation;
  /** Tokens the input takes after templating, without generating. */
  countTokens(input: GenerateInput): number;
  /** Frees worker threads and buffers. */
  dispose(): Promise<void>;
}
