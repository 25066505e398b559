import { open } from 'node:fs/promises';
import { basename } from 'node:path';
import { gguf } from '@huggingface/gguf';
import { type ModelConfig, validateConfig } from './config.js';
import { bf16ToF32, f16ToF32, halfBitsToNumber } from './dtype.js';
import { ModelLoadError } from './errors.js';
import {
  GGML_BF16,
  GGML_F16,
  GGML_F32,
  GGML_Q8_0,
  GGML_TYPE_NAMES,
  Q8_0_BLOCK,
  Q8_0_BYTES,
  unpermuteQK,
} from './gguf-format.js';
import type { LoadModelOptions } from './load.js';
import { readTensor } from './load.js';
import { type CpuModel, CpuTransformer, WASM_WEIGHT_LIMIT } from './model.js';
import type { TensorEntry, WeightSource } from './safetensors.js';
import { HfTokenizer, loadHfTokenizer, type ModelTokenizer } from './tokenizer.js';
import { WasmArena } from './wasm.js';
import type { LayerWeights } from './weights.js';

type Meta = Record<string, unknown>;

/** Loads a GGUF file of the `llama` architecture with F32, F16, BF16 or Q8_0 tensors. */
export async function loadGgufModel(file: string, options: LoadModelOptions = {}): Promise<CpuModel> {
  let parsed: Awaited<ReturnType<typeof gguf>>;
  try {
    parsed = await gguf(file, { allowLocalFile: true });
  } catch (e) {
    throw new ModelLoadError(file, `not a readable GGUF file: ${(e as Error).message}`);
  }
  const meta = parsed.metadata as unknown as Meta;
  const arch = meta['general.architecture'];
  if (arch !== 'llama') {
    throw new ModelLoadError(file, `unsupported GGUF architecture '${String(arch)}' (supported: llama)`);
  }
  const source = await openGgufTensors(file, parsed.tensorInfos, Number(parsed.tensorDataOffset));
  try {
    const config = ggufConfig(meta, source, file);
    const arena = options.kernels === 'js' ? undefined : ggufArena(source, config);
    const weights = await readGgufWeights(source, config, arena);
    const tokenizer: ModelTokenizer = options.tokenizerDir
      ? await loadHfTokenizer(options.tokenizerDir, config.eosTokenIds)
      : ggufTokenizer(meta, file, config.eosTokenIds);
    return new CpuTransformer({
      config: { ...config, eosTokenIds: [...new Set([...config.eosTokenIds, ...tokenizer.eosTokenIds])] },
      weights,
      tokenizer,
      id: options.id ?? basename(file),
      randomWeights: false,
      ...(options.kernels ? { kernels: options.kernels } : {}),
      ...(options.threads ? { threads: options.threads } : {}),
      ...(arena ? { arena } : {}),
    });
  } finally {
    await source.close();
  }
}

function ggufConfig(meta: Meta, source: WeightSource, file: string): ModelConfig {
  const get = (key: string): unknown => meta[`llama.${key}`];
  const int = (key: string, fallback?: number): number => {
    const v = get(key) ?? fallback;
    const n = typeof v === 'bigint' ? Number(v) : v;
    if (typeof n !== 'number' || !Number.isInteger(n) || n <= 0) {
      throw new ModelLoadError(file, `metadata 'llama.${key}' must be a positive integer, got ${String(v)}`);
    }
    return n;
  };
  const hiddenSize = int('embedding_length');
  const heads = int('attention.head_count');
  const tokens = meta['tokenizer.ggml.tokens'];
  const embed = source.entry('token_embd.weight');
  const vocabSize = int('vocab_size', Array.isArray(tokens) ? tokens.length : embed?.shape[1]);
  const scaleType = get('rope.scaling.type');
  const factor = get('rope.scaling.factor');
  if (scaleType !== undefined && scaleType !== 'none' && scaleType !== 'linear') {
    throw new ModelLoadError(
      file,
      `unsupported rope scaling type '${String(scaleType)}' (supported: none, linear)`,
    );
  }
  const eos = meta['tokenizer.ggml.eos_token_id'];
  const bos = meta['tokenizer.ggml.bos_token_id'];
  const config: ModelConfig = {
    architecture: 'llama',
    hiddenSize,
    intermediateSize: int('feed_forward_length'),
    layers: int('block_count'),
    heads,
    kvHeads: int('attention.head_count_kv', heads),
    headDim: int('attention.key_length', int('rope.dimension_count', hiddenSize / heads)),
    vocabSize,
    rmsNormEps: Number(get('attention.layer_norm_rms_epsilon') ?? 1e-5),
    ropeTheta: Number(get('rope.freq_base') ?? 10000),
    ...(scaleType === 'linear' && typeof factor === 'number'
      ? { ropeScaling: { type: 'linear', factor } }
      : {}),
    maxContext: int('context_length', 4096),
    tieWordEmbeddings: !source.entry('output.weight'),
    attentionBias: false,
    qkNorm: false,
    ...(typeof bos === 'number' ? { bosTokenId: bos } : {}),
    eosTokenIds: typeof eos === 'number' ? [eos] : [],
  };
  validateConfig(config, file);
  return config;
}

interface GgufTensorInfoLike {
  name: string;
  shape: bigint[];
  dtype: number;
  offset: bigint;
}

/** GGUF tensors as a {@link WeightSource}, shapes reported in PyTorch order (`[rows, cols]`). */
async function openGgufTensors(
  file: string,
  infos: readonly GgufTensorInfoLike[],
  dataOffset: number,
): Promise<WeightSource & { ggmlType(name: string): number }> {
  const fh = await open(file, 'r');
  const { size } = await fh.stat();
  const entries = new Map<string, TensorEntry & { begin: number; bytes: number; type: number }>();
  for (const t of infos) {
    const dims = t.shape.map(Number);
    const count = dims.reduce((a, b) => a * b, 1);
    const type = Number(t.dtype);
    let bytes: number;
    if (type === GGML_F32) bytes = count * 4;
    else if (type === GGML_F16 || type === GGML_BF16) bytes = count * 2;
    else if (type === GGML_Q8_0) {
      if (dims[0] % Q8_0_BLOCK !== 0) {
        await fh.close();
        throw new ModelLoadError(file, `Q8_0 rows of ${dims[0]} values are not whole blocks of 32`, t.name);
      }
      bytes = (count / Q8_0_BLOCK) * Q8_0_BYTES;
    } else bytes = -1;
    const begin = dataOffset + Number(t.offset);
    if (bytes >= 0 && begin + bytes > size) {
      await fh.close();
      throw new ModelLoadError(
        file,
        `truncated: tensor data ends at byte ${begin + bytes}, file has ${size}`,
        t.name,
      );
    }
    entries.set(t.name, {
      name: t.name,
      dtype: GGML_TYPE_NAMES[type] ?? `type ${type}`,
      shape: [...dims].reverse(),
      file,
      begin,
      bytes,
      type,
    });
  }
  return {
    description: file,
    entry: (name) => entries.get(name),
    names: () => [...entries.keys()],
    ggmlType: (name) => entries.get(name)?.type ?? -1,
    async read(name) {
      const e = entries.get(name);
      if (!e) throw new ModelLoadError(file, 'missing tensor', name);
      if (e.bytes < 0) {
        throw new ModelLoadError(
          file,
          `unsupported tensor type ${e.dtype} (supported: F32, F16, BF16, Q8_0)`,
          name,
        );
      }
      const buf = new ArrayBuffer(e.bytes);
      const { bytesRead } = await fh.read(new Uint8Array(buf), 0, e.bytes, e.begin);
      if (bytesRead !== e.bytes)
        throw new ModelLoadError(file, `truncated: read ${bytesRead} of ${e.bytes} bytes`, name);
      if (e.type === GGML_F32) return new Float32Array(buf);
      if (e.type === GGML_F16) return f16ToF32(new Uint16Array(buf));
      if (e.type === GGML_BF16) return bf16ToF32(new Uint16Array(buf));
      return dequantQ8_0(new DataView(buf), e.bytes / Q8_0_BYTES);
    },
    close: () => fh.close(),
  };
}

function dequantQ8_0(view: DataView, blocks: number): Float32Array {
  const out = new Float32Array(blocks * Q8_0_BLOCK);
  for (let b = 0; b < blocks; b++) {
    const d = halfBitsToNumber(view.getUint16(b * Q8_0_BYTES, true));
    for (let i = 0; i < Q8_0_BLOCK; i++) out[b * Q8_0_BLOCK + i] = d * view.getInt8(b * Q8_0_BYTES + 2 + i);
  }
  return out;
}

/** A wasm memory for the f32 product matrices, or undefined when they do not fit (JS kernels then). */
function ggufArena(source: WeightSource, c: ModelConfig): WasmArena | undefined {
  const { hiddenSize: dim, heads, kvHeads, headDim: d, intermediateSize: inter, vocabSize, layers } = c;
  const perLayer = 2 * heads * d * dim + 2 * kvHeads * d * dim + 3 * inter * dim;
  const bytes = 4 * (layers * perLayer + vocabSize * dim) + 64 * (7 * layers + 1);
  return bytes <= WASM_WEIGHT_LIMIT && source.entry('token_embd.weight')
    ? WasmArena.create(bytes + (1 << 20))
    : undefined;
}

async function readGgufWeights(source: WeightSource, c: ModelConfig, arena: WasmArena | undefined) {
  const { hiddenSize: dim, heads, kvHeads, headDim: d, intermediateSize: inter, vocabSize } = c;
  const t = (name: string, shape: readonly number[]) => readTensor(source, name, shape);
  // Each product matrix moves into the wasm memory as it is read (one tensor extra at a time).
  const place = (a: Float32Array, cols: number) => (arena && cols % 16 === 0 ? arena.adopt(a) : a);
  const m = async (name: string, shape: readonly [number, number]) => place(await t(name, shape), shape[1]);
  const layers: LayerWeights[] = [];
  for (let l = 0; l < c.layers; l++) {
    const p = `blk.${l}.`;
    layers.push({
      inputNorm: await t(`${p}attn_norm.weight`, [dim]),
      q: place(unpermuteQK(await t(`${p}attn_q.weight`, [heads * d, dim]), heads, dim), dim),
      k: place(unpermuteQK(await t(`${p}attn_k.weight`, [kvHeads * d, dim]), kvHeads, dim), dim),
      v: await m(`${p}attn_v.weight`, [kvHeads * d, dim]),
      o: await m(`${p}attn_output.weight`, [dim, heads * d]),
      postNorm: await t(`${p}ffn_norm.weight`, [dim]),
      gate: await m(`${p}ffn_gate.weight`, [inter, dim]),
      up: await m(`${p}ffn_up.weight`, [inter, dim]),
      down: await m(`${p}ffn_down.weight`, [dim, inter]),
    });
  }
  // The embedding goes into the wasm memory only when it is also the LM head.
  const embed = c.tieWordEmbeddings
    ? await m('token_embd.weight', [vocabSize, dim])
    : await t('token_embd.weight', [vocabSize, dim]);
  const lmHead = c.tieWordEmbeddings ? embed : await m('output.weight', [vocabSize, dim]);
  const ropeFactors = source.entry('rope_freqs.weight') ? await t('rope_freqs.weight', [d / 2]) : undefined;
  return {
    embed,
    layers,
    finalNorm: await t('output_norm.weight', [dim]),
    lmHead,
    ...(ropeFactors ? { ropeFactors } : {}),
  };
}

// Pre-tokenizer split patterns of llama.cpp's `tokenizer.ggml.pre` names.
const LLAMA3_PATTERN =
  "(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\\r\\n\\p{L}\\p{N}]?\\p{L}+|\\p{N}{1,3}| ?[^\\s\\p{L}\\p{N}]+[\\r\\n]*|\\s*[\\r\\n]+|\\s+(?!\\S)|\\s+";
const QWEN2_PATTERN =
  "(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\\r\\n\\p{L}\\p{N}]?\\p{L}+|\\p{N}| ?[^\\s\\p{L}\\p{N}]+[\\r\\n]*|\\s*[\\r\\n]+|\\s+(?!\\S)|\\s+";

/**
 * Builds a tokenizer from GGUF metadata: byte-level BPE (`tokenizer.ggml.model = gpt2`,
 * with its merges) or SentencePiece BPE (`llama`: scores, byte fallback; merges derived from
 * the scores as transformers' converter does).
 */
function ggufTokenizer(meta: Meta, file: string, eos: readonly number[]): ModelTokenizer {
  const model = meta['tokenizer.ggml.model'];
  const tokens = meta['tokenizer.ggml.tokens'];
  if ((model !== 'gpt2' && model !== 'llama') || !Array.isArray(tokens)) {
    throw new ModelLoadError(
      file,
      `GGUF tokenizer model '${String(model)}' is not supported (supported: 'gpt2' byte-level BPE, 'llama' SentencePiece BPE); pass options.tokenizerDir with a tokenizer.json`,
    );
  }
  const types = (meta['tokenizer.ggml.token_type'] as number[] | undefined) ?? [];
  const vocab: Record<string, number> = {};
  tokens.forEach((tok: string, i: number) => {
    if (!(tok in vocab)) vocab[tok] = i;
  });
  const added = tokens
    .map((content: string, id: number) => ({ content, id, type: types[id] }))
    .filter((t) => t.type === 3 || t.type === 4)
    .map((t) => ({
      id: t.id,
      content: t.content,
      single_word: false,
      lstrip: false,
      rstrip: false,
      normalized: t.type === 4,
      special: t.type === 3,
    }));
  const pre = String(meta['tokenizer.ggml.pre'] ?? 'default');
  let json: Meta;
  if (model === 'llama') {
    const scores = (meta['tokenizer.ggml.scores'] as number[] | undefined) ?? [];
    const unk = meta['tokenizer.ggml.unknown_token_id'];
    const prefix = meta['tokenizer.ggml.add_space_prefix'] !== false;
    json = {
      version: '1.0',
      added_tokens: added,
      normalizer: {
        type: 'Sequence',
        normalizers: [
          ...(prefix ? [{ type: 'Prepend', prepend: '\u2581' }] : []),
          { type: 'Replace', pattern: { String: ' ' }, content: '\u2581' },
        ],
      },
      pre_tokenizer: null,
      post_processor: null,
      decoder: {
        type: 'Sequence',
        decoders: [
          { type: 'Replace', pattern: { String: '\u2581' }, content: ' ' },
          { type: 'ByteFallback' },
          { type: 'Fuse' },
          ...(prefix ? [{ type: 'Strip', content: ' ', start: 1, stop: 0 }] : []),
        ],
      },
      model: {
        type: 'BPE',
        vocab,
        merges: sentencePieceMerges(tokens as string[], scores, types, vocab),
        ...(typeof unk === 'number' ? { unk_token: tokens[unk] } : {}),
        fuse_unk: true,
        byte_fallback: true,
        ignore_merges: false,
      },
    };
  } else {
    const merges = (meta['tokenizer.ggml.merges'] as string[] | undefined) ?? [];
    const pattern =
      pre === 'llama-bpe' || pre === 'llama3' ? LLAMA3_PATTERN : pre === 'qwen2' ? QWEN2_PATTERN : undefined;
    const byteLevel = {
      type: 'ByteLevel',
      add_prefix_space: false,
      trim_offsets: true,
      use_regex: pattern === undefined,
    };
    const preTokenizer = pattern
      ? {
          type: 'Sequence',
          pretokenizers: [
            { type: 'Split', pattern: { Regex: pattern }, behavior: 'Isolated', invert: false },
            byteLevel,
          ],
        }
      : byteLevel;
    json = {
      version: '1.0',
      added_tokens: added,
      normalizer: null,
      pre_tokenizer: preTokenizer,
      post_processor: null,
      decoder: { type: 'ByteLevel', add_prefix_space: false, trim_offsets: true, use_regex: true },
      model: { type: 'BPE', vocab, merges, ignore_merges: false, byte_fallback: false },
    };
  }
  const tokenAt = (key: string) => {
    const id = meta[key];
    return typeof id === 'number' ? tokens[id] : undefined;
  };
  // llama.cpp adds BOS when `tokenizer.ggml.add_bos_token` says so (Llama 3's 'llama-bpe' does by default).
  const bosId = meta['tokenizer.ggml.bos_token_id'];
  const addBos =
    meta['tokenizer.ggml.add_bos_token'] ?? (model === 'llama' || pre === 'llama-bpe' || pre === 'llama3');
  if (addBos === true && typeof bosId === 'number') {
    const bos = tokens[bosId];
    const special = { SpecialToken: { id: bos, type_id: 0 } };
    json.post_processor = {
      type: 'TemplateProcessing',
      single: [special, { Sequence: { id: 'A', type_id: 0 } }],
      pair: [special, { Sequence: { id: 'A', type_id: 0 } }, special, { Sequence: { id: 'B', type_id: 0 } }],
      special_tokens: { [bos]: { id: bos, ids: [bosId], tokens: [bos] } },
    };
  }
  const template = meta['tokenizer.chat_template'];
  const cfg: Meta = {
    ...(tokenAt('tokenizer.ggml.bos_token_id') ? { bos_token: tokenAt('tokenizer.ggml.bos_token_id') } : {}),
    ...(tokenAt('tokenizer.ggml.eos_token_id') ? { eos_token: tokenAt('tokenizer.ggml.eos_token_id') } : {}),
    ...(typeof template === 'string' ? { chat_template: template } : {}),
  };
  return new HfTokenizer(json, cfg, eos, file);
}

/**
 * BPE merges equivalent to a SentencePiece BPE vocabulary: every split of a normal piece
 * into two pieces of the vocabulary, ranked by the merged piece's score (highest first),
 * ties by the ids of the halves (transformers' `SentencePieceExtractor`).
 */
export function sentencePieceMerges(
  tokens: readonly string[],
  scores: readonly number[],
  types: readonly number[],
  vocab: Record<string, number>,
): [string, string][] {
  const found: { left: string; right: string; score: number; l: number; r: number; order: number }[] = [];
  tokens.forEach((piece, id) => {
    if (types[id] !== undefined && types[id] !== 1) return; // only normal pieces are merge results
    const chars = Array.from(piece);
    for (let i = 1; i < chars.length; i++) {
      const left = chars.slice(0, i).join('');
      const right = chars.slice(i).join('');
      const l = vocab[left];
      const r = vocab[right];
      if (l !== undefined && r !== undefined) {
        found.push({ left, right, score: scores[id] ?? 0, l, r, order: found.length });
      }
    }
  });
  found.sort((a, b) => b.score - a.score || a.l - b.l || a.r - b.r || a.order - b.order);
  return found.map((m) => [m.left, m.right]);
}
