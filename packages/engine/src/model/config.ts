import { ModelLoadError } from './errors.js';

export type Architecture = 'llama' | 'mistral' | 'qwen2' | 'qwen3';

/** RoPE frequency scaling. `llama3` is Llama 3.1's; `linear` divides every frequency by `factor`. */
export type RopeScaling =
  | {
      readonly type: 'llama3';
      readonly factor: number;
      readonly lowFreqFactor: number;
      readonly highFreqFactor: number;
      readonly originalMaxPositionEmbeddings: number;
    }
  | { readonly type: 'linear'; readonly factor: number };

/** The shape and numerics of a decoder-only model of the Llama family. */
export interface ModelConfig {
  readonly architecture: Architecture;
  readonly hiddenSize: number;
  readonly intermediateSize: number;
  readonly layers: number;
  readonly heads: number;
  readonly kvHeads: number;
  readonly headDim: number;
  readonly vocabSize: number;
  readonly rmsNormEps: number;
  readonly ropeTheta: number;
  readonly ropeScaling?: RopeScaling;
  /** Longest context the model was configured for (`max_position_embeddings`). */
  readonly maxContext: number;
  readonly tieWordEmbeddings: boolean;
  /** q/k/v (and for Llama's `attention_bias`, o) projections carry biases (always for Qwen2). */
  readonly attentionBias: boolean;
  /** Per-head RMSNorm of q and k before RoPE (Qwen3). */
  readonly qkNorm: boolean;
  readonly bosTokenId?: number;
  readonly eosTokenIds: readonly number[];
}

const ARCHS: Record<string, Architecture> = {
  llama: 'llama',
  mistral: 'mistral',
  qwen2: 'qwen2',
  qwen3: 'qwen3',
  LlamaForCausalLM: 'llama',
  MistralForCausalLM: 'mistral',
  Qwen2ForCausalLM: 'qwen2',
  Qwen3ForCausalLM: 'qwen3',
};

type Json = Record<string, unknown>;

function isObject(v: unknown): v is Json {
  return typeof v === 'object' && v !== null && !Array.isArray(v);
}

/**
 * Reads a Hugging Face `config.json` (already parsed). Understands both spellings of RoPE
 * settings: `rope_theta` + `rope_scaling` and transformers 5's `rope_parameters`.
 * `file` names the source in errors.
 */
export function parseConfig(json: unknown, file = 'config.json'): ModelConfig {
  if (!isObject(json)) throw new ModelLoadError(file, 'config is not a JSON object');
  const c = isObject(json.text_config) && json.model_type === undefined ? json.text_config : json;
  const modelType = typeof c.model_type === 'string' ? c.model_type : undefined;
  const archList = Array.isArray(c.architectures) ? c.architectures : [];
  const architecture =
    (modelType !== undefined ? ARCHS[modelType] : undefined) ??
    archList.map((a) => (typeof a === 'string' ? ARCHS[a] : undefined)).find((a) => a !== undefined);
  if (architecture === undefined) {
    throw new ModelLoadError(
      file,
      `unsupported architecture '${modelType ?? archList.join(',')}' (supported: llama, mistral, qwen2, qwen3)`,
    );
  }
  const int = (key: string, fallback?: number): number => {
    const v = c[key] ?? fallback;
    if (typeof v !== 'number' || !Number.isInteger(v) || v <= 0) {
      throw new ModelLoadError(file, `'${key}' must be a positive integer, got ${JSON.stringify(v)}`);
    }
    return v;
  };
  const num = (key: string, v: unknown, fallback: number): number => {
    const x = v ?? fallback;
    if (typeof x !== 'number' || !Number.isFinite(x) || x <= 0) {
      throw new ModelLoadError(file, `'${key}' must be a positive number, got ${JSON.stringify(x)}`);
    }
    return x;
  };
  const hiddenSize = int('hidden_size');
  const heads = int('num_attention_heads');
  const kvHeads = int('num_key_value_heads', heads);
  const headDim = c.head_dim == null ? hiddenSize / heads : int('head_dim');
  if (!Number.isInteger(headDim) || headDim % 2 !== 0) {
    throw new ModelLoadError(file, `head dim ${headDim} must be an even integer`);
  }
  if (heads % kvHeads !== 0) {
    throw new ModelLoadError(
      file,
      `num_attention_heads ${heads} is not a multiple of num_key_value_heads ${kvHeads}`,
    );
  }
  // RoPE: transformers 5 writes `rope_parameters`; older configs `rope_theta` + `rope_scaling`.
  const params = isObject(c.rope_parameters) ? c.rope_parameters : undefined;
  const ropeTheta = num('rope_theta', params?.rope_theta ?? c.rope_theta, 10000);
  const scalingJson = params ?? (isObject(c.rope_scaling) ? c.rope_scaling : undefined);
  let ropeScaling: RopeScaling | undefined;
  if (scalingJson) {
    const type = scalingJson.rope_type ?? scalingJson.type ?? 'default';
    if (type === 'llama3') {
      ropeScaling = {
        type: 'llama3',
        factor: num('rope_scaling.factor', scalingJson.factor, Number.NaN),
        lowFreqFactor: num('rope_scaling.low_freq_factor', scalingJson.low_freq_factor, 1),
        highFreqFactor: num('rope_scaling.high_freq_factor', scalingJson.high_freq_factor, 4),
        originalMaxPositionEmbeddings: num(
          'rope_scaling.original_max_position_embeddings',
          scalingJson.original_max_position_embeddings,
          8192,
        ),
      };
    } else if (type === 'linear') {
      ropeScaling = { type: 'linear', factor: num('rope_scaling.factor', scalingJson.factor, Number.NaN) };
    } else if (type !== 'default') {
      throw new ModelLoadError(
        file,
        `unsupported rope scaling type '${String(type)}' (supported: default, llama3, linear)`,
      );
    }
  }
  const eos = c.eos_token_id ?? json.eos_token_id;
  const eosTokenIds = (Array.isArray(eos) ? eos : eos == null ? [] : [eos]).filter(
    (x): x is number => typeof x === 'number',
  );
  const bos = c.bos_token_id ?? json.bos_token_id;
  const tie = c.tie_word_embeddings ?? json.tie_word_embeddings;
  return {
    architecture,
    hiddenSize,
    intermediateSize: int('intermediate_size'),
    layers: int('num_hidden_layers'),
    heads,
    kvHeads,
    headDim,
    vocabSize: int('vocab_size'),
    rmsNormEps: num('rms_norm_eps', c.rms_norm_eps, 1e-6),
    ropeTheta,
    ...(ropeScaling ? { ropeScaling } : {}),
    maxContext: int('max_position_embeddings', 4096),
    // Missing means false: the default of LlamaConfig, MistralConfig, Qwen2Config and Qwen3Config.
    tieWordEmbeddings: tie === true,
    attentionBias: architecture === 'qwen2' || c.attention_bias === true,
    qkNorm: architecture === 'qwen3',
    ...(typeof bos === 'number' ? { bosTokenId: bos } : {}),
    eosTokenIds,
  };
}

/** Fills a partial config with a small default shape (for random models). */
export function completeConfig(partial: Partial<ModelConfig>): ModelConfig {
  const hiddenSize = partial.hiddenSize ?? 256;
  const heads = partial.heads ?? 4;
  const kvHeads = partial.kvHeads ?? Math.max(1, heads / 4);
  const headDim = partial.headDim ?? hiddenSize / heads;
  const config: ModelConfig = {
    architecture: partial.architecture ?? 'llama',
    hiddenSize,
    intermediateSize: partial.intermediateSize ?? hiddenSize * 3,
    layers: partial.layers ?? 4,
    heads,
    kvHeads,
    headDim,
    vocabSize: partial.vocabSize ?? 259,
    rmsNormEps: partial.rmsNormEps ?? 1e-5,
    ropeTheta: partial.ropeTheta ?? 10000,
    ...(partial.ropeScaling ? { ropeScaling: partial.ropeScaling } : {}),
    maxContext: partial.maxContext ?? 32768,
    tieWordEmbeddings: partial.tieWordEmbeddings ?? false,
    attentionBias: partial.attentionBias ?? partial.architecture === 'qwen2',
    qkNorm: partial.qkNorm ?? partial.architecture === 'qwen3',
    ...(partial.bosTokenId !== undefined ? { bosTokenId: partial.bosTokenId } : {}),
    eosTokenIds: partial.eosTokenIds ?? [],
  };
  validateConfig(config, 'config');
  return config;
}

export function validateConfig(c: ModelConfig, file: string): void {
  for (const key of [
    'hiddenSize',
    'intermediateSize',
    'layers',
    'heads',
    'kvHeads',
    'headDim',
    'vocabSize',
  ] as const) {
    if (!Number.isInteger(c[key]) || c[key] <= 0) {
      throw new ModelLoadError(file, `${key} must be a positive integer, got ${c[key]}`);
    }
  }
  if (c.heads % c.kvHeads !== 0)
    throw new ModelLoadError(file, `heads ${c.heads} not a multiple of kvHeads ${c.kvHeads}`);
  if (c.headDim % 2 !== 0) throw new ModelLoadError(file, `headDim ${c.headDim} must be even`);
}
