import { cpSync, mkdtempSync, readFileSync, truncateSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { parseConfig } from './config.js';
import { ModelLoadError } from './errors.js';
import { convertHfToGguf } from './gguf-convert.js';
import { encodeGguf } from './gguf-writer.js';
import { loadModel } from './load.js';
import { encodeSafetensors } from './safetensors.js';

const FIXTURES = join(import.meta.dirname, '../../fixtures/hf');
const root = mkdtempSync(join(tmpdir(), 'kascade-load-'));
let n = 0;
/** A fresh copy of a fixture directory to damage. */
const copy = (name = 'llama-tied') => {
  const dir = join(root, `${name}-${n++}`);
  cpSync(join(FIXTURES, name), dir, { recursive: true });
  return dir;
};

async function loadError(path: string): Promise<ModelLoadError> {
  const err = await loadModel(path).then(
    () => undefined,
    (e: unknown) => e,
  );
  expect(err).toBeInstanceOf(ModelLoadError);
  return err as ModelLoadError;
}

describe('loadModel errors name the file, the tensor and the problem', () => {
  it('unsupported architecture', async () => {
    const dir = copy();
    const cfg = JSON.parse(readFileSync(join(dir, 'config.json'), 'utf8'));
    writeFileSync(
      join(dir, 'config.json'),
      JSON.stringify({ ...cfg, model_type: 'gpt2', architectures: ['GPT2LMHeadModel'] }),
    );
    const e = await loadError(dir);
    expect(e.file).toBe(join(dir, 'config.json'));
    expect(e.message).toMatch(/unsupported architecture 'gpt2'/);
  });

  it('truncated safetensors file', async () => {
    const dir = copy();
    const file = join(dir, 'model.safetensors');
    truncateSync(file, readFileSync(file).length - 1000);
    const e = await loadError(dir);
    expect(e.file).toBe(file);
    expect(e.tensor).toBeDefined();
    expect(e.message).toMatch(/truncated/);
  });

  it('corrupt safetensors header', async () => {
    const dir = copy();
    const file = join(dir, 'model.safetensors');
    const bytes = readFileSync(file);
    bytes[10] = 0x7b; // '{' inside the JSON header
    bytes[11] = 0x7b;
    writeFileSync(file, bytes);
    const e = await loadError(dir);
    expect(e.message).toMatch(/corrupt header/);
  });

  it('unsupported dtype, missing tensor and wrong shape', async () => {
    const dir = copy();
    const file = join(dir, 'model.safetensors');
    const bytes = readFileSync(file);
    const len = Number(bytes.readBigUInt64LE(0));
    const header = JSON.parse(bytes.subarray(8, 8 + len).toString('utf8'));
    const name = 'model.layers.1.mlp.up_proj.weight';
    // Same byte length, different dtype: I32.
    const patched = JSON.stringify({ ...header, [name]: { ...header[name], dtype: 'I32' } }).padEnd(len, ' ');
    bytes.write(patched, 8, 'utf8');
    writeFileSync(file, bytes);
    let e = await loadError(dir);
    expect([e.tensor, e.problem]).toEqual([name, expect.stringMatching(/unsupported dtype I32/)]);

    const dir2 = copy();
    writeFileSync(
      join(dir2, 'model.safetensors'),
      encodeSafetensors({ 'model.norm.weight': { shape: [64], data: new Float32Array(64).fill(1) } }),
    );
    e = await loadError(dir2);
    expect(e.problem).toBe('missing tensor');
    expect(e.tensor).toBe('model.layers.0.input_layernorm.weight');

    const dir3 = copy();
    const cfg = JSON.parse(readFileSync(join(dir3, 'config.json'), 'utf8'));
    writeFileSync(join(dir3, 'config.json'), JSON.stringify({ ...cfg, intermediate_size: 96 }));
    e = await loadError(dir3);
    expect(e.tensor).toBe('model.layers.0.mlp.gate_proj.weight');
    expect(e.problem).toMatch(/shape \[128, 64\] does not match the config's \[96, 64\]/);
  });

  it('a shard named in the index but absent', async () => {
    const dir = copy('qwen3-qknorm-sharded');
    const index = JSON.parse(readFileSync(join(dir, 'model.safetensors.index.json'), 'utf8'));
    const first = Object.keys(index.weight_map)[0];
    index.weight_map[first] = 'model-00009-of-00004.safetensors';
    writeFileSync(join(dir, 'model.safetensors.index.json'), JSON.stringify(index));
    const e = await loadError(dir);
    expect(e.file).toBe(join(dir, 'model-00009-of-00004.safetensors'));
    expect(e.message).toMatch(/cannot open/);
  });

  it('GGUF: unsupported architecture, unsupported tensor type, truncated data', async () => {
    const qwen = join(root, 'qwen.gguf');
    writeFileSync(qwen, encodeGguf({ 'general.architecture': { type: 'string', value: 'qwen2' } }, []));
    expect((await loadError(qwen)).message).toMatch(/unsupported GGUF architecture 'qwen2'/);

    const good = await convertHfToGguf(join(FIXTURES, 'llama-tied'), 'F32');
    const truncated = join(root, 'truncated.gguf');
    writeFileSync(truncated, good.subarray(0, good.length - 4096));
    const t = await loadError(truncated);
    expect(t.tensor).toBeDefined();
    expect(t.problem).toMatch(/truncated/);

    // Re-type one tensor as Q4_0 (type 2) in the tensor-info table: find its name, then the type field.
    const bytes = Buffer.from(good);
    const name = Buffer.from('blk.1.ffn_up.weight');
    const at = bytes.indexOf(name) + name.length;
    // n_dims (u32) + 2 dims (u64 each), then the type (u32).
    bytes.writeUInt32LE(2, at + 4 + 16);
    const q4 = join(root, 'q4.gguf');
    writeFileSync(q4, bytes);
    const e = await loadError(q4);
    expect([e.tensor, e.problem]).toEqual([
      'blk.1.ffn_up.weight',
      expect.stringMatching(/unsupported tensor type Q4_0/),
    ]);
  });

  it('a file that is neither a directory nor .gguf, and a missing path', async () => {
    const file = join(root, 'weights.bin');
    writeFileSync(file, 'x');
    expect((await loadError(file)).message).toMatch(/expected a checkpoint directory or a .gguf file/);
    expect((await loadError(join(root, 'nope'))).message).toMatch(/cannot open/);
  });
});

describe('parseConfig', () => {
  const base = {
    model_type: 'llama',
    hidden_size: 64,
    intermediate_size: 128,
    num_hidden_layers: 2,
    num_attention_heads: 4,
    num_key_value_heads: 2,
    vocab_size: 300,
    rms_norm_eps: 1e-5,
  };
  it('reads rope_theta/rope_scaling and rope_parameters alike', () => {
    const scaling = {
      factor: 8,
      low_freq_factor: 1,
      high_freq_factor: 4,
      original_max_position_embeddings: 8192,
    };
    const legacy = parseConfig({
      ...base,
      rope_theta: 500000,
      rope_scaling: { rope_type: 'llama3', ...scaling },
    });
    const v5 = parseConfig({
      ...base,
      rope_parameters: { rope_type: 'llama3', rope_theta: 500000, ...scaling },
    });
    expect(v5).toEqual(legacy);
    expect(v5.ropeTheta).toBe(500000);
    expect(v5.ropeScaling).toEqual({
      type: 'llama3',
      factor: 8,
      lowFreqFactor: 1,
      highFreqFactor: 4,
      originalMaxPositionEmbeddings: 8192,
    });
    expect(v5.headDim).toBe(16);
  });
  it("knows each architecture's extras and rejects what it cannot run", () => {
    expect(parseConfig({ ...base, model_type: 'qwen2' }).attentionBias).toBe(true);
    expect(parseConfig({ ...base, model_type: 'qwen3', head_dim: 32 })).toMatchObject({
      qkNorm: true,
      headDim: 32,
    });
    expect(() => parseConfig({ ...base, rope_scaling: { rope_type: 'yarn', factor: 4 } }, 'c.json')).toThrow(
      /c.json: unsupported rope scaling type 'yarn'/,
    );
    expect(() => parseConfig({ ...base, num_key_value_heads: 3 })).toThrow(ModelLoadError);
    expect(() => parseConfig({ ...base, hidden_size: undefined })).toThrow(
      /'hidden_size' must be a positive integer/,
    );
  });
});

describe('chat templates', () => {
  it('get raise_exception, strftime_now and the special tokens, as transformers gives them', async () => {
    const dir = copy('mistral');
    const cfg = JSON.parse(readFileSync(join(dir, 'tokenizer_config.json'), 'utf8'));
    const template =
      "{% if messages[0]['role'] != 'user' %}{{ raise_exception('first message must be the user') }}{% endif %}" +
      "{{ unk_token }}|{{ strftime_now('%Y-%m') }}|{{ messages[0]['content'] }}";
    writeFileSync(
      join(dir, 'tokenizer_config.json'),
      JSON.stringify({ ...cfg, unk_token: '<|bos|>', chat_template: template }),
    );
    const model = await loadModel(dir);
    const now = new Date();
    const ym = `${now.getFullYear()}-${String(now.getMonth() + 1).padStart(2, '0')}`;
    expect(model.tokenizer.applyChatTemplate([{ role: 'user', content: 'hi' }])).toBe(`<|bos|>|${ym}|hi`);
    expect(() => model.tokenizer.applyChatTemplate([{ role: 'system', content: 'x' }])).toThrow(
      /first message must be the user/,
    );
  });
});
