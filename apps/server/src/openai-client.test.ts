import OpenAI from 'openai';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { TestEngine } from './test-engine.js';
import { type Started, start } from './test-helpers.js';

interface KascadeUsageJson {
  policy: string;
  effective_k: number;
  anchor_layers: number[];
}

describe('the official openai client (v5) works unchanged', () => {
  const engine = new TestEngine();
  let s: Started;
  let client: OpenAI;
  beforeAll(async () => {
    s = await start({ engine, plan: { opaque: true } });
    client = new OpenAI({ baseURL: `${s.url}/v1`, apiKey: 'not-needed', maxRetries: 0 });
  });
  afterAll(() => s.close());

  it('lists models', async () => {
    const models = await client.models.list();
    expect(models.data.map((m) => m.id)).toEqual([engine.model.id]);
  });

  it('completions, plain and streamed, agree', async () => {
    const plain = await client.completions.create({
      model: engine.model.id,
      prompt: 'the quick brown fox',
      max_tokens: 7,
    });
    expect(plain.choices[0]!.text.length).toBeGreaterThan(0);
    expect(plain.usage?.completion_tokens).toBe(7);
    const stream = await client.completions.create({
      model: engine.model.id,
      prompt: 'the quick brown fox',
      max_tokens: 7,
      stream: true,
      stream_options: { include_usage: true },
    });
    let text = '';
    let usage: OpenAI.CompletionUsage | null | undefined;
    for await (const chunk of stream) {
      text += chunk.choices[0]?.text ?? '';
      if (chunk.usage) usage = chunk.usage;
    }
    expect(text).toBe(plain.choices[0]!.text);
    expect(usage?.total_tokens).toBe(plain.usage?.total_tokens);
  });

  it('chat, plain and streamed, with the kascade extension field', async () => {
    const body = {
      model: engine.model.id,
      messages: [{ role: 'user' as const, content: 'tell me about kascade' }],
      max_tokens: 5,
      kascade: { policy: 'dense' },
    };
    const plain = await client.chat.completions.create(body);
    expect(plain.choices[0]!.message.role).toBe('assistant');
    expect(plain.choices[0]!.finish_reason).toBe('length');
    const kascade = (plain.usage as unknown as { kascade: KascadeUsageJson }).kascade;
    expect(kascade.policy).toBe('dense');
    const stream = await client.chat.completions.create({
      ...body,
      stream: true,
      stream_options: { include_usage: true },
    });
    let text = '';
    let finish: string | null | undefined;
    let streamedKascade: KascadeUsageJson | undefined;
    for await (const chunk of stream) {
      text += chunk.choices[0]?.delta.content ?? '';
      finish = chunk.choices[0]?.finish_reason ?? finish;
      if (chunk.usage) streamedKascade = (chunk.usage as unknown as { kascade: KascadeUsageJson }).kascade;
    }
    expect(text).toBe(plain.choices[0]!.message.content);
    expect(finish).toBe('length');
    expect(streamedKascade?.policy).toBe('dense');
  });

  it('surfaces a 400 as a BadRequestError naming the field', async () => {
    const error = await client.completions
      .create({ model: engine.model.id, prompt: 'x', max_tokens: 100_000 })
      .catch((e: unknown) => e);
    expect(error).toBeInstanceOf(OpenAI.BadRequestError);
    expect((error as InstanceType<typeof OpenAI.BadRequestError>).param).toBe('max_tokens');
  });
});
