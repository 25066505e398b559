import { readFile, stat } from 'node:fs/promises';
import { basename, join, resolve } from 'node:path';
import { type ModelConfig, parseConfig } from './config.js';
import { ModelLoadError } from './errors.js';
import { loadGgufModel } from './gguf.js';
import { type CpuModel, CpuTransformer, WASM_WEIGHT_LIMIT } from './model.js';
import { openSafetensorsDir, type TensorEntry, type WeightSource } from './safetensors.js';
import { loadHfTokenizer, type ModelTokenizer } from './tokenizer.js';
import { WasmArena } from './wasm.js';
import type { LayerWeights, ModelWeights, WeightMatrix } from './weights.js';

export interface LoadModelOptions {
  /** Overrides the model id (default: the directory or file name). */
  readonly id?: string;
  /** GGUF only: a directory with `tokenizer.json` (+ `tokenizer_config.json`) to use instead of the GGUF's vocabulary. */
  readonly tokenizerDir?: string;
  /** Matrix kernels: WebAssembly SIMD (default where available) or plain JS. */
  readonly kernels?: 'wasm' | 'js';
  /** Threads for the wasm matrix products (default 1; 2 uses a worker thread as well). */
  readonly threads?: number;
  /**
   * `'auto'` (default): the matrices of BF16 checkpoints stay bf16 (half the memory and
   * memory traffic, the same values) where the wasm kernels run; `'f32'`: all converted.
   */
  readonly matrixDtype?: 'auto' | 'f32';
}

/**
 * Loads a Hugging Face checkpoint directory (`config.json`, `model.safetensors` or a
 * sharded `model.safetensors.index.json`, `tokenizer.json`, `tokenizer_config.json`) or a
 * `.gguf` file (architecture `llama`, F32/F16/Q8_0). Weights are converted to f32.
 */
export async function loadModel(pathOrDir: string, options: LoadModelOptions = {}): Promise<CpuModel> {
  const path = resolve(pathOrDir);
  const info = await stat(path).catch((e: unknown) => {
    throw new ModelLoadError(path, `cannot open: ${(e as Error).message}`);
  });
  if (info.isFile()) {
    if (!path.endsWith('.gguf')) {
      throw new ModelLoadError(path, 'expected a checkpoint directory or a .gguf file');
    }
    return loadGgufModel(path, options);
  }
  const configFile = join(path, 'config.json');
  let configJson: unknown;
  try {
    configJson = JSON.parse(await readFile(configFile, 'utf8'));
  } catch (e) {
    throw new ModelLoadError(configFile, `cannot read config: ${(e as Error).message}`);
  }
  const config = parseConfig(configJson, configFile);
  const genEos = await readGenerationEos(join(path, 'generation_config.json'));
  const source = await openSafetensorsDir(path);
  try {
    const keepBf16 = options.matrixDtype !== 'f32';
    const arena = options.kernels === 'js' ? undefined : arenaFor(source, config, keepBf16);
    const weights = await readHfWeights(source, config, keepBf16, arena);
    const tokenizer: ModelTokenizer = await loadHfTokenizer(path, [...config.eosTokenIds, ...genEos]);
    const eosTokenIds = [...new Set([...config.eosTokenIds, ...genEos, ...tokenizer.eosTokenIds])];
    return new CpuTransformer({
      config: { ...config, eosTokenIds },
      weights,
      tokenizer,
      id: options.id ?? basename(path),
      randomWeights: false,
      ...(options.kernels ? { kernels: options.kernels } : {}),
      ...(options.threads ? { threads: options.threads } : {}),
      ...(arena ? { arena } : {}),
    });
  } finally {
    await source.close();
  }
}

async function readGenerationEos(file: string): Promise<number[]> {
  let text: string;
  try {
    text = await readFile(file, 'utf8');
  } catch {
    return [];
  }
  try {
    const eos = (JSON.parse(text) as { eos_token_id?: unknown }).eos_token_id;
    return (Array.isArray(eos) ? eos : [eos]).filter((x): x is number => typeof x === 'number');
  } catch (e) {
    throw new ModelLoadError(file, `not valid JSON: ${(e as Error).message}`);
  }
}

function checkShape(e: TensorEntry, name: string, shape: readonly number[]): void {
  if (e.shape.length !== shape.length || e.shape.some((s, i) => s !== shape[i])) {
    throw new ModelLoadError(
      e.file,
      `shape [${e.shape.join(', ')}] does not match the config's [${shape.join(', ')}]`,
      name,
    );
  }
}

/** Reads a tensor as f32, checking it exists with the expected shape and finite values. */
export async function readTensor(
  source: WeightSource,
  name: string,
  shape: readonly number[],
): Promise<Float32Array> {
  const e = source.entry(name);
  if (!e) throw new ModelLoadError(source.description, 'missing tensor', name);
  checkShape(e, name, shape);
  const data = await source.read(name);
  if (!data.every(Number.isFinite)) {
    throw new ModelLoadError(e.file, 'holds NaN or infinite values', name);
  }
  return data;
}

/**
 * Like {@link readTensor}, but BF16 data stays bf16 bits when `keepBf16` (and the source
 * can), and with an `arena` a matrix the wasm kernels take (rows a multiple of 16 values)
 * is read straight into the WebAssembly memory: loading then holds one copy of the weights.
 */
export async function readMatrix(
  source: WeightSource,
  name: string,
  shape: readonly number[],
  keepBf16: boolean,
  arena?: WasmArena,
): Promise<WeightMatrix> {
  const e = source.entry(name);
  if (arena && e && source.readInto && shape.length === 2 && shape[1] % 16 === 0) {
    checkShape(e, name, shape);
    const n = shape[0] * shape[1];
    if (e.dtype === 'F32' || (e.dtype === 'BF16' && keepBf16)) {
      const a = e.dtype === 'F32' ? arena.alloc(n) : arena.allocBf16(n);
      await source.readInto(name, new Uint8Array(a.buffer, a.byteOffset, a.byteLength));
      const finite =
        a instanceof Float32Array ? a.every(Number.isFinite) : a.every((b) => (b & 0x7f80) !== 0x7f80);
      if (!finite) throw new ModelLoadError(e.file, 'holds NaN or infinite values', name);
      return a;
    }
    return arena.adopt(await readTensor(source, name, shape));
  }
  if (!keepBf16 || e?.dtype !== 'BF16' || !source.readBf16) return readTensor(source, name, shape);
  checkShape(e, name, shape);
  const bits = await source.readBf16(name);
  for (let i = 0; i < bits.length; i++) {
    if ((bits[i] & 0x7f80) === 0x7f80) throw new ModelLoadError(e.file, 'holds NaN or infinite values', name);
  }
  return bits;
}

/** HF names of the matrices the products use (the embedding only when tied to the LM head). */
function productMatrices(source: WeightSource, c: ModelConfig): string[] {
  const names: string[] = [];
  for (let l = 0; l < c.layers; l++) {
    for (const n of [
      'self_attn.q_proj',
      'self_attn.k_proj',
      'self_attn.v_proj',
      'self_attn.o_proj',
      'mlp.gate_proj',
      'mlp.up_proj',
      'mlp.down_proj',
    ]) {
      names.push(`model.layers.${l}.${n}.weight`);
    }
  }
  names.push(
    source.entry('lm_head.weight') || !c.tieWordEmbeddings ? 'lm_head.weight' : 'model.embed_tokens.weight',
  );
  return names;
}

/** A wasm memory sized for the model's matrices, or undefined when they do not fit (the JS kernels then run). */
function arenaFor(source: WeightSource, c: ModelConfig, keepBf16: boolean): WasmArena | undefined {
  let bytes = 0;
  for (const name of productMatrices(source, c)) {
    const e = source.entry(name);
    if (!e) continue; // reported as missing when read
    const n = e.shape.reduce((a, b) => a * b, 1);
    bytes += n * (e.dtype === 'BF16' && keepBf16 ? 2 : 4) + 64;
  }
  return bytes <= WASM_WEIGHT_LIMIT ? WasmArena.create(bytes + (1 << 20)) : undefined;
}

async function readHfWeights(
  source: WeightSource,
  c: ModelConfig,
  keepBf16: boolean,
  arena: WasmArena | undefined,
): Promise<ModelWeights> {
  const { hiddenSize: dim, heads, kvHeads, headDim: d, intermediateSize: inter, vocabSize } = c;
  const t = (name: string, shape: readonly number[]) => readTensor(source, name, shape);
  const m = (name: string, shape: readonly number[]) => readMatrix(source, name, shape, keepBf16, arena);
  const opt = async (name: string, shape: readonly number[]) =>
    source.entry(name) ? t(name, shape) : undefined;
  const layers: LayerWeights[] = [];
  for (let l = 0; l < c.layers; l++) {
    const p = `model.layers.${l}.`;
    const bias = async (proj: string, n: number, required: boolean) =>
      required ? t(`${p}self_attn.${proj}_proj.bias`, [n]) : opt(`${p}self_attn.${proj}_proj.bias`, [n]);
    const qBias = await bias('q', heads * d, c.attentionBias);
    const kBias = await bias('k', kvHeads * d, c.attentionBias);
    const vBias = await bias('v', kvHeads * d, c.attentionBias);
    const oBias = await bias('o', dim, false);
    const qNorm = c.qkNorm ? await t(`${p}self_attn.q_norm.weight`, [d]) : undefined;
    const kNorm = c.qkNorm ? await t(`${p}self_attn.k_norm.weight`, [d]) : undefined;
    layers.push({
      inputNorm: await t(`${p}input_layernorm.weight`, [dim]),
      q: await m(`${p}self_attn.q_proj.weight`, [heads * d, dim]),
      k: await m(`${p}self_attn.k_proj.weight`, [kvHeads * d, dim]),
      v: await m(`${p}self_attn.v_proj.weight`, [kvHeads * d, dim]),
      o: await m(`${p}self_attn.o_proj.weight`, [dim, heads * d]),
      ...(qBias ? { qBias } : {}),
      ...(kBias ? { kBias } : {}),
      ...(vBias ? { vBias } : {}),
      ...(oBias ? { oBias } : {}),
      ...(qNorm ? { qNorm } : {}),
      ...(kNorm ? { kNorm } : {}),
      postNorm: await t(`${p}post_attention_layernorm.weight`, [dim]),
      gate: await m(`${p}mlp.gate_proj.weight`, [inter, dim]),
      up: await m(`${p}mlp.up_proj.weight`, [inter, dim]),
      down: await m(`${p}mlp.down_proj.weight`, [dim, inter]),
    });
  }
  const tied = c.tieWordEmbeddings && !source.entry('lm_head.weight');
  // An untied embedding is only looked up: it stays outside the wasm memory.
  const embed = tied
    ? await m('model.embed_tokens.weight', [vocabSize, dim])
    : await readMatrix(source, 'model.embed_tokens.weight', [vocabSize, dim], keepBf16);
  const lmHead = tied ? embed : await m('lm_head.weight', [vocabSize, dim]);
  return { embed, layers, finalNorm: await t('model.norm.weight', [dim]), lmHead };
}
