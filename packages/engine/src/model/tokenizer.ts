import { readFile } from 'node:fs/promises';
import { join } from 'node:path';
import { Template } from '@huggingface/jinja';
import { Tokenizer } from '@huggingface/tokenizers';
import { ModelLoadError } from './errors.js';

export interface TokenizerMessage {
  readonly role: string;
  readonly content: string;
}

/** Text <-> token ids, and the model's chat template. */
export interface ModelTokenizer {
  encode(text: string, options?: { addSpecialTokens?: boolean }): number[];
  /** Decodes ids to text, skipping special tokens. */
  decode(ids: readonly number[]): string;
  applyChatTemplate(
    messages: readonly TokenizerMessage[],
    options?: { addGenerationPrompt?: boolean },
  ): string;
  readonly eosTokenIds: readonly number[];
  readonly bosTokenId: number | undefined;
  readonly vocabSize: number;
}

/** Used when a checkpoint has no chat template: `<|role|>\ncontent\n` per message. */
export const FALLBACK_CHAT_TEMPLATE =
  "{% for m in messages %}{{ '<|' + m['role'] + '|>\\n' + m['content'] + '\\n' }}{% endfor %}" +
  "{% if add_generation_prompt %}{{ '<|assistant|>\\n' }}{% endif %}";

type Json = Record<string, unknown>;

function tokenText(v: unknown): string | undefined {
  if (typeof v === 'string') return v;
  if (v && typeof v === 'object' && typeof (v as Json).content === 'string')
    return (v as Json).content as string;
  return undefined;
}

/** A tokenizer from `tokenizer.json` + `tokenizer_config.json`, via `@huggingface/tokenizers` and `@huggingface/jinja`. */
export class HfTokenizer implements ModelTokenizer {
  readonly eosTokenIds: readonly number[];
  readonly bosTokenId: number | undefined;
  readonly vocabSize: number;
  private readonly tok: Tokenizer;
  private readonly template: Template;
  private readonly bosToken: string | undefined;
  /** `unk_token`, `pad_token` and the like, for templates that use them. */
  private readonly specialTokens: Record<string, string> = {};
  private readonly eosToken: string | undefined;

  constructor(
    tokenizerJson: Json,
    tokenizerConfig: Json,
    extraEosIds: readonly number[] = [],
    file = 'tokenizer.json',
  ) {
    try {
      this.tok = new Tokenizer(tokenizerJson, tokenizerConfig);
    } catch (e) {
      throw new ModelLoadError(file, `unsupported or corrupt tokenizer: ${(e as Error).message}`);
    }
    this.bosToken = tokenText(tokenizerConfig.bos_token);
    this.eosToken = tokenText(tokenizerConfig.eos_token);
    for (const key of ['unk_token', 'pad_token', 'sep_token', 'cls_token', 'mask_token']) {
      const text = tokenText(tokenizerConfig[key]);
      if (text !== undefined) this.specialTokens[key] = text;
    }
    const idOf = (t: string | undefined) => (t === undefined ? undefined : this.tokenId(t));
    this.bosTokenId = idOf(this.bosToken);
    const eos = new Set<number>(extraEosIds);
    const eosId = idOf(this.eosToken);
    if (eosId !== undefined) eos.add(eosId);
    this.eosTokenIds = [...eos];
    const model = tokenizerJson.model as Json | undefined;
    const vocab = model?.vocab;
    let size = vocab && typeof vocab === 'object' ? Object.keys(vocab).length : 0;
    for (const added of (tokenizerJson.added_tokens as Json[] | undefined) ?? []) {
      if (typeof added.id === 'number') size = Math.max(size, added.id + 1);
    }
    this.vocabSize = size;
    let chat = tokenizerConfig.chat_template;
    if (Array.isArray(chat)) {
      chat =
        (chat as Json[]).find((c) => c.name === 'default')?.template ??
        (chat[0] as Json | undefined)?.template;
    }
    try {
      this.template = new Template(typeof chat === 'string' ? chat : FALLBACK_CHAT_TEMPLATE);
    } catch (e) {
      throw new ModelLoadError(
        file.replace(/tokenizer\.json$/, 'tokenizer_config.json'),
        `bad chat_template: ${(e as Error).message}`,
      );
    }
  }

  private tokenId(token: string): number | undefined {
    const ids = this.tok.encode(token, { add_special_tokens: false }).ids;
    return ids.length === 1 ? ids[0] : undefined;
  }

  encode(text: string, options: { addSpecialTokens?: boolean } = {}): number[] {
    return this.tok.encode(text, { add_special_tokens: options.addSpecialTokens ?? true }).ids;
  }

  decode(ids: readonly number[]): string {
    // @huggingface/tokenizers throws on an empty list; an empty completion (EOS first) is ''.
    if (ids.length === 0) return '';
    return this.tok.decode([...ids], { skip_special_tokens: true });
  }

  applyChatTemplate(
    messages: readonly TokenizerMessage[],
    options: { addGenerationPrompt?: boolean } = {},
  ): string {
    return this.template.render({
      ...this.specialTokens,
      messages: messages.map((m) => ({ role: m.role, content: m.content })),
      add_generation_prompt: options.addGenerationPrompt ?? true,
      bos_token: this.bosToken ?? '',
      eos_token: this.eosToken ?? '',
    });
  }
}

async function readJson(file: string, required: boolean): Promise<Json | undefined> {
  let text: string;
  try {
    text = await readFile(file, 'utf8');
  } catch (e) {
    if (!required) return undefined;
    throw new ModelLoadError(file, `cannot read: ${(e as Error).message}`);
  }
  try {
    return JSON.parse(text) as Json;
  } catch (e) {
    throw new ModelLoadError(file, `not valid JSON: ${(e as Error).message}`);
  }
}

/** Loads `tokenizer.json` and `tokenizer_config.json` (optional) from a checkpoint directory. */
export async function loadHfTokenizer(
  dir: string,
  extraEosIds: readonly number[] = [],
): Promise<HfTokenizer> {
  const file = join(dir, 'tokenizer.json');
  const json = (await readJson(file, true))!;
  const config = (await readJson(join(dir, 'tokenizer_config.json'), false)) ?? {};
  return new HfTokenizer(json, config, extraEosIds, file);
}

/**
 * The built-in byte-level tokenizer of random models: ids 0..255 are bytes, 256 is
 * `<bos>`, 257 `<eos>`; ids past 257 decode to nothing.
 */
export class ByteTokenizer implements ModelTokenizer {
  static readonly BOS = 256;
  static readonly EOS = 257;
  readonly eosTokenIds: readonly number[] = [ByteTokenizer.EOS];
  readonly bosTokenId = ByteTokenizer.BOS;
  private readonly template = new Template(FALLBACK_CHAT_TEMPLATE);
  private readonly encoder = new TextEncoder();

  constructor(readonly vocabSize: number) {}

  encode(text: string, options: { addSpecialTokens?: boolean } = {}): number[] {
    const ids = Array.from(this.encoder.encode(text));
    return (options.addSpecialTokens ?? true) ? [ByteTokenizer.BOS, ...ids] : ids;
  }

  decode(ids: readonly number[]): string {
    const bytes = Uint8Array.from(ids.filter((id) => id >= 0 && id < 256));
    return new TextDecoder('utf-8', { fatal: false }).decode(bytes);
  }

  applyChatTemplate(
    messages: readonly TokenizerMessage[],
    options: { addGenerationPrompt?: boolean } = {},
  ): string {
    return this.template.render({
      messages: messages.map((m) => ({ role: m.role, content: m.content })),
      add_generation_prompt: options.addGenerationPrompt ?? true,
    });
  }
}
