import { readFile } from 'node:fs/promises';
import { join } from 'node:path';
import { type ModelConfig, parseConfig } from './config.js';
import { permuteQK } from './gguf-format.js';
import { encodeGguf, type GgufTensorIn, type GgufValue } from './gguf-writer.js';
import { ropeInverseFrequencies } from './rope.js';
import { openSafetensorsDir } from './safetensors.js';

/**
 * Converts a Llama-architecture Hugging Face checkpoint directory to GGUF the way
 * llama.cpp's converter does (q/k rows permuted for interleaved RoPE, Llama 3.1 scaling as
 * a `rope_freqs` tensor, byte-level BPE vocabulary in the metadata). Norms stay F32; the
 * matrices take `type`. For tests and tools: it holds the whole model in memory.
 */
export async function convertHfToGguf(
  dir: string,
  type: 'F32' | 'F16' | 'Q8_0',
  options: { tokenizer?: Record<string, GgufValue> } = {},
): Promise<Uint8Array> {
  const config = parseConfig(JSON.parse(await readFile(join(dir, 'config.json'), 'utf8')), 'config.json');
  if (config.architecture !== 'llama' && config.architecture !== 'mistral') {
    throw new RangeError(`convertHfToGguf: only llama/mistral checkpoints, got ${config.architecture}`);
  }
  const source = await openSafetensorsDir(dir);
  const tensors: GgufTensorIn[] = [];
  const matrix = (name: string, data: Float32Array, rows: number, cols: number) =>
    tensors.push({ name, dims: [cols, rows], type, data });
  const vector = (name: string, data: Float32Array) =>
    tensors.push({ name, dims: [data.length], type: 'F32', data });
  try {
    const { hiddenSize: dim, heads, kvHeads, headDim: d, intermediateSize: inter, vocabSize } = config;
    matrix('token_embd.weight', await source.read('model.embed_tokens.weight'), vocabSize, dim);
    vector('output_norm.weight', await source.read('model.norm.weight'));
    if (source.entry('lm_head.weight'))
      matrix('output.weight', await source.read('lm_head.weight'), vocabSize, dim);
    const scaling = ropeFactors(config);
    if (scaling) vector('rope_freqs.weight', scaling);
    for (let l = 0; l < config.layers; l++) {
      const p = `model.layers.${l}.`;
      const b = `blk.${l}.`;
      vector(`${b}attn_norm.weight`, await source.read(`${p}input_layernorm.weight`));
      matrix(
        `${b}attn_q.weight`,
        permuteQK(await source.read(`${p}self_attn.q_proj.weight`), heads, dim),
        heads * d,
        dim,
      );
      matrix(
        `${b}attn_k.weight`,
        permuteQK(await source.read(`${p}self_attn.k_proj.weight`), kvHeads, dim),
        kvHeads * d,
        dim,
      );
      matrix(`${b}attn_v.weight`, await source.read(`${p}self_attn.v_proj.weight`), kvHeads * d, dim);
      matrix(`${b}attn_output.weight`, await source.read(`${p}self_attn.o_proj.weight`), dim, heads * d);
      vector(`${b}ffn_norm.weight`, await source.read(`${p}post_attention_layernorm.weight`));
      matrix(`${b}ffn_gate.weight`, await source.read(`${p}mlp.gate_proj.weight`), inter, dim);
      matrix(`${b}ffn_up.weight`, await source.read(`${p}mlp.up_proj.weight`), inter, dim);
      matrix(`${b}ffn_down.weight`, await source.read(`${p}mlp.down_proj.weight`), dim, inter);
    }
  } finally {
    await source.close();
  }
  const meta: Record<string, GgufValue> = {
    'general.architecture': { type: 'string', value: 'llama' },
    'general.name': { type: 'string', value: dir.split('/').pop() ?? 'model' },
    'llama.context_length': { type: 'u32', value: config.maxContext },
    'llama.embedding_length': { type: 'u32', value: config.hiddenSize },
    'llama.block_count': { type: 'u32', value: config.layers },
    'llama.feed_forward_length': { type: 'u32', value: config.intermediateSize },
    'llama.attention.head_count': { type: 'u32', value: config.heads },
    'llama.attention.head_count_kv': { type: 'u32', value: config.kvHeads },
    'llama.rope.dimension_count': { type: 'u32', value: config.headDim },
    'llama.rope.freq_base': { type: 'f32', value: config.ropeTheta },
    'llama.attention.layer_norm_rms_epsilon': { type: 'f32', value: config.rmsNormEps },
    'llama.vocab_size': { type: 'u32', value: config.vocabSize },
    ...(options.tokenizer ?? (await tokenizerMetadata(dir, config))),
  };
  return encodeGguf(meta, tensors);
}

/** llama.cpp's `rope_freqs`: per-frequency divisors that turn the plain frequencies into the scaled ones. */
function ropeFactors(config: ModelConfig): Float32Array | undefined {
  if (!config.ropeScaling) return undefined;
  const { ropeScaling: _, ...plain } = config;
  const base = ropeInverseFrequencies(plain);
  const scaled = ropeInverseFrequencies(config);
  return base.map((f, i) => f / scaled[i]);
}

async function tokenizerMetadata(dir: string, config: ModelConfig): Promise<Record<string, GgufValue>> {
  const json = JSON.parse(await readFile(join(dir, 'tokenizer.json'), 'utf8')) as {
    model: { type: string; vocab: Record<string, number>; merges: (string | [string, string])[] };
    added_tokens?: { id: number; content: string; special: boolean }[];
    post_processor?: { type?: string } | null;
  };
  if (json.model.type !== 'BPE') throw new RangeError('convertHfToGguf: only BPE tokenizers');
  const tokens: string[] = new Array(config.vocabSize);
  const types: number[] = new Array(config.vocabSize).fill(1);
  for (const [tok, id] of Object.entries(json.model.vocab)) if (id < config.vocabSize) tokens[id] = tok;
  for (const t of json.added_tokens ?? []) {
    tokens[t.id] = t.content;
    types[t.id] = t.special ? 3 : 4;
  }
  for (let i = 0; i < tokens.length; i++) {
    if (tokens[i] === undefined) {
      tokens[i] = `[PAD${i}]`;
      types[i] = 5;
    }
  }
  const merges = json.model.merges.map((m) => (Array.isArray(m) ? m.join(' ') : m));
  return {
    'tokenizer.ggml.model': { type: 'string', value: 'gpt2' },
    'tokenizer.ggml.pre': { type: 'string', value: 'default' },
    'tokenizer.ggml.tokens': { type: 'string[]', value: tokens },
    'tokenizer.ggml.token_type': { type: 'i32[]', value: types },
    'tokenizer.ggml.merges': { type: 'string[]', value: merges },
    'tokenizer.ggml.add_bos_token': {
      type: 'bool',
      value: json.post_processor?.type === 'TemplateProcessing',
    },
    ...(config.bosTokenId !== undefined
      ? { 'tokenizer.ggml.bos_token_id': { type: 'u32', value: config.bosTokenId } }
      : {}),
    ...(config.eosTokenIds.length
      ? { 'tokenizer.ggml.eos_token_id': { type: 'u32', value: config.eosTokenIds[0] } }
      : {}),
  };
}
