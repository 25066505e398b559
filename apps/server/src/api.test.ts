import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { TestEngine } from './test-engine.js';
import { postJson, type Started, sseEvents, start } from './test-helpers.js';

const PLAN = { anchors: [0, 2], note: 'opaque to the server' };

describe('HTTP API (test engine)', () => {
  const engine = new TestEngine({ defaultPlan: undefined });
  let s: Started;
  beforeAll(async () => {
    s = await start({
      engine,
      plan: PLAN,
      validatePlan: (raw) => {
        if (typeof raw !== 'object' || raw === null || !('anchors' in raw))
          throw new Error('anchors is missing');
        return raw;
      },
      limits: { maxTokens: 64, maxPromptTokens: 100, bodyLimitBytes: 4096 },
    });
  });
  afterAll(() => s.close());

  it('GET /health reports the model and an idle queue', async () => {
    const res = await fetch(`${s.url}/health`);
    expect(res.status).toBe(200);
    expect(await res.json()).toMatchObject({ status: 'ok', model: engine.model.id, inFlight: 0, queued: 0 });
  });

  it('GET /v1/models lists the served model, marked as random weights', async () => {
    const res = await fetch(`${s.url}/v1/models`);
    const body = await res.json();
    expect(body.object).toBe('list');
    expect(body.data).toHaveLength(1);
    expect(body.data[0]).toMatchObject({ id: engine.model.id, object: 'model', owned_by: 'kascade' });
    expect(body.data[0].kascade).toMatchObject({
      random_weights: true,
      plan_loaded: true,
      default_policy: 'kascade',
    });
    const one = await fetch(`${s.url}/v1/models/${encodeURIComponent(engine.model.id)}`);
    expect((await one.json()).id).toBe(engine.model.id);
    const missing = await fetch(`${s.url}/v1/models/gpt-4`);
    expect(missing.status).toBe(404);
    expect((await missing.json()).error.code).toBe('model_not_found');
  });

  it('unknown routes answer a 404 OpenAI error', async () => {
    const res = await fetch(`${s.url}/v1/nothing`);
    expect(res.status).toBe(404);
    expect((await res.json()).error).toMatchObject({ type: 'not_found_error', code: 'not_found' });
  });

  it('POST /v1/completions answers the OpenAI shape with usage.kascade', async () => {
    const res = await postJson(`${s.url}/v1/completions`, {
      model: engine.model.id,
      prompt: 'one two three',
      max_tokens: 5,
    });
    expect(res.status).toBe(200);
    const body = await res.json();
    expect(body.id).toMatch(/^cmpl-/);
    expect(body.object).toBe('text_completion');
    expect(body.model).toBe(engine.model.id);
    expect(body.choices).toHaveLength(1);
    expect(body.choices[0].finish_reason).toBe('length');
    expect(body.choices[0].text.trim().split(' ')).toHaveLength(5);
    expect(body.usage).toMatchObject({ prompt_tokens: 3, completion_tokens: 5, total_tokens: 8 });
    expect(body.usage.kascade.policy).toBe('kascade');
    expect(body.usage.kascade.anchor_layers).toEqual([0, 2]);
    expect(body.usage.kascade.effective_k).toBeGreaterThan(0);
    // the server's loaded plan is the default policy
    expect(engine.lastOptions?.policy).toEqual({ kind: 'kascade', plan: PLAN });
    expect(engine.lastOptions?.maxTokens).toBe(5);
  });

  it('defaults max_tokens to 16 for completions, as OpenAI does', async () => {
    const body = await (await postJson(`${s.url}/v1/completions`, { prompt: 'hello' })).json();
    expect(body.usage.completion_tokens).toBe(16);
  });

  it('POST /v1/chat/completions answers the OpenAI shape and passes the messages through', async () => {
    const res = await postJson(`${s.url}/v1/chat/completions`, {
      messages: [
        { role: 'developer', content: 'be brief' },
        {
          role: 'user',
          content: [
            { type: 'text', text: 'hi ' },
            { type: 'text', text: 'there' },
          ],
        },
      ],
      max_completion_tokens: 3,
      temperature: 0.5,
      seed: 7,
      stop: ['zzz'],
    });
    expect(res.status).toBe(200);
    const body = await res.json();
    expect(body.id).toMatch(/^chatcmpl-/);
    expect(body.object).toBe('chat.completion');
    expect(body.choices[0].message.role).toBe('assistant');
    expect(body.choices[0].message.content.trim().split(' ')).toHaveLength(3);
    expect(body.usage.completion_tokens).toBe(3);
    expect(engine.lastInput).toEqual([
      { role: 'system', content: 'be brief' },
      { role: 'user', content: 'hi there' },
    ]);
    expect(engine.lastOptions).toMatchObject({ maxTokens: 3, temperature: 0.5, seed: 7, stop: ['zzz'] });
  });

  it('reports finish_reason stop when the engine stops', async () => {
    const body = await (
      await postJson(`${s.url}/v1/completions`, { prompt: 'STOP_EARLY please', max_tokens: 10 })
    ).json();
    expect(body.choices[0].finish_reason).toBe('stop');
    expect(body.usage.completion_tokens).toBe(2);
  });

  it('streams completions as SSE: chunks, finish, usage chunk, [DONE]', async () => {
    const req = { prompt: 'stream me please', max_tokens: 6, seed: 3 };
    const plain = await (await postJson(`${s.url}/v1/completions`, req)).json();
    const res = await postJson(`${s.url}/v1/completions`, {
      ...req,
      stream: true,
      stream_options: { include_usage: true },
    });
    expect(res.status).toBe(200);
    expect(res.headers.get('content-type')).toMatch(/^text\/event-stream/);
    const events = sseEvents(await res.text());
    expect(events.at(-1)).toBe('[DONE]');
    const chunks = events.slice(0, -1).map((e) => JSON.parse(e));
    const usageChunk = chunks.at(-1);
    expect(usageChunk.choices).toEqual([]);
    expect(usageChunk.usage).toMatchObject({ prompt_tokens: 3, completion_tokens: 6, total_tokens: 9 });
    expect(usageChunk.usage.kascade.policy).toBe('kascade');
    const finish = chunks.at(-2);
    expect(finish.choices[0].finish_reason).toBe('length');
    const textChunks = chunks.slice(0, -2);
    expect(textChunks).toHaveLength(6);
    for (const c of chunks.slice(0, -1)) {
      expect(c.object).toBe('text_completion');
      expect(c.usage).toBeNull();
      expect(c.id).toBe(chunks[0].id);
    }
    expect(textChunks.map((c) => c.choices[0].text).join('')).toBe(plain.choices[0].text);
  });

  it('streams chat with a role delta first and no usage chunk unless asked', async () => {
    const res = await postJson(`${s.url}/v1/chat/completions`, {
      messages: [{ role: 'user', content: 'hello' }],
      max_tokens: 4,
      stream: true,
    });
    const events = sseEvents(await res.text());
    expect(events.at(-1)).toBe('[DONE]');
    const chunks = events.slice(0, -1).map((e) => JSON.parse(e));
    expect(chunks[0].choices[0].delta).toEqual({ role: 'assistant', content: '' });
    expect(chunks.at(-1).choices[0]).toMatchObject({ delta: {}, finish_reason: 'length' });
    expect(chunks.every((c) => c.object === 'chat.completion.chunk' && !('usage' in c))).toBe(true);
    expect(
      chunks
        .slice(1, -1)
        .map((c) => c.choices[0].delta.content)
        .join('')
        .trim()
        .split(' '),
    ).toHaveLength(4);
  });

  it('the kascade field picks the policy per request', async () => {
    const cases = [
      [{ policy: 'dense' }, { kind: 'dense' }],
      [
        { policy: 'kascade', decodeOnly: true },
        { kind: 'kascade', plan: PLAN, decodeOnly: true },
      ],
      [{ policy: 'all-heads-pooled' }, { kind: 'all-heads-pooled', plan: PLAN }],
      [{ policy: 'oracle-topk' }, { kind: 'oracle-topk' }],
      [
        { policy: 'streaming', decodeOnly: false },
        { kind: 'streaming', decodeOnly: false },
      ],
      [
        { policy: 'kascade', plan: { anchors: [0, 1] } },
        { kind: 'kascade', plan: { anchors: [0, 1] } },
      ],
    ] as const;
    for (const [kascade, expected] of cases) {
      const res = await postJson(`${s.url}/v1/completions`, { prompt: 'x', max_tokens: 1, kascade });
      expect(res.status).toBe(200);
      const body = await res.json();
      expect(engine.lastOptions?.policy).toEqual(expected);
      expect(body.usage.kascade.policy).toBe(expected.kind);
    }
  });

  it('a bad kascade field is a 400 naming it', async () => {
    const bad = [
      [{ policy: 'sparse' }, 'kascade.policy'],
      [{ policy: 'kascade', plan: { nope: 1 } }, 'kascade.plan'],
      [{ policy: 'kascade', plan: 3 }, 'kascade.plan'],
      [{ policy: 'dense', decodeOnly: 'yes' }, 'kascade.decodeOnly'],
      [{ policy: 'dense', extra: 1 }, 'kascade'],
    ] as const;
    for (const [kascade, param] of bad) {
      const res = await postJson(`${s.url}/v1/completions`, { prompt: 'x', kascade });
      expect(res.status).toBe(400);
      const { error } = await res.json();
      expect(error.type).toBe('invalid_request_error');
      expect(error.param).toBe(param);
      expect(error.message).toContain(param);
    }
  });

  it('malformed JSON, wrong types and missing fields are 400s naming the field', async () => {
    const cases: [unknown, string | null, string][] = [
      ['{"prompt": "x",', null, 'invalid_json'],
      ['', null, 'invalid_json'],
      ['[1,2]', null, 'invalid_body'],
      ['"just a string"', null, 'invalid_body'],
      [{ prompt: 'x', max_tokens: '5' }, 'max_tokens', 'invalid_value'],
      [{ prompt: 'x', max_tokens: 0 }, 'max_tokens', 'invalid_value'],
      [{ prompt: 'x', max_tokens: 2.5 }, 'max_tokens', 'invalid_value'],
      [{ prompt: 'x', temperature: 3 }, 'temperature', 'invalid_value'],
      [{ prompt: 'x', n: 2 }, 'n', 'invalid_value'],
      [{ prompt: 'x', stream: 'yes' }, 'stream', 'invalid_value'],
      [{ prompt: 'x', stop: [1] }, 'stop', 'invalid_value'],
      [{ prompt: 'x', stop: [''] }, 'stop[0]', 'invalid_value'],
      [{ prompt: [1, 2, 3] }, 'prompt', 'invalid_value'],
      [{ max_tokens: 3 }, 'prompt', 'invalid_value'],
      [{ prompt: 'x', echo: true }, 'echo', 'invalid_value'],
    ];
    for (const [body, param, code] of cases) {
      const res = await postJson(`${s.url}/v1/completions`, body);
      expect(res.status, JSON.stringify(body)).toBe(400);
      const { error } = await res.json();
      expect(error).toMatchObject({ type: 'invalid_request_error', param, code });
      expect(typeof error.message).toBe('string');
      if (param !== null) expect(error.message).toContain(param);
    }
    const chat: [unknown, string][] = [
      [{ messages: [] }, 'messages'],
      [{ messages: 'hi' }, 'messages'],
      [{ messages: [{ role: 'user', content: 5 }] }, 'messages[0].content'],
      [
        {
          messages: [
            { role: 'user', content: 'a' },
            { role: 'robot', content: 'b' },
          ],
        },
        'messages[1].role',
      ],
      [{ messages: [{ role: 'user', content: 'a' }], max_completion_tokens: -1 }, 'max_completion_tokens'],
    ];
    for (const [body, param] of chat) {
      const res = await postJson(`${s.url}/v1/chat/completions`, body);
      expect(res.status, JSON.stringify(body)).toBe(400);
      expect((await res.json()).error.param).toBe(param);
    }
  });

  it('a request for another model is a 404 naming the field', async () => {
    const res = await postJson(`${s.url}/v1/completions`, { model: 'gpt-4o', prompt: 'x' });
    expect(res.status).toBe(404);
    expect((await res.json()).error).toMatchObject({ param: 'model', code: 'model_not_found' });
  });

  it('limits are 400s naming the field, never truncation', async () => {
    const before = engine.started;
    const over = await postJson(`${s.url}/v1/completions`, { prompt: 'x', max_tokens: 65 });
    expect(over.status).toBe(400);
    expect((await over.json()).error).toMatchObject({ param: 'max_tokens', code: 'max_tokens_exceeded' });
    const long = await postJson(`${s.url}/v1/completions`, { prompt: 'w '.repeat(101), max_tokens: 1 });
    expect(long.status).toBe(400);
    expect((await long.json()).error).toMatchObject({ param: 'prompt', code: 'context_length_exceeded' });
    const chatLong = await postJson(`${s.url}/v1/chat/completions`, {
      messages: [{ role: 'user', content: 'w '.repeat(98) }],
    });
    expect(chatLong.status).toBe(400);
    expect((await chatLong.json()).error).toMatchObject({
      param: 'messages',
      code: 'context_length_exceeded',
    });
    const big = await postJson(`${s.url}/v1/completions`, { prompt: 'x'.repeat(5000) });
    expect(big.status).toBe(400);
    expect((await big.json()).error).toMatchObject({ type: 'invalid_request_error', code: 'body_too_large' });
    expect(engine.started).toBe(before);
  });

  it('GET /metrics exports Prometheus text with the Kascade figures', async () => {
    await postJson(`${s.url}/v1/completions`, { prompt: 'count me', max_tokens: 2 });
    const res = await fetch(`${s.url}/metrics`);
    expect(res.status).toBe(200);
    expect(res.headers.get('content-type')).toMatch(/^text\/plain/);
    const text = await res.text();
    for (const name of [
      'kascade_requests_total',
      'kascade_tokens_total',
      'kascade_prefill_tokens_per_second',
      'kascade_decode_tokens_per_second',
      'kascade_queue_depth',
      'kascade_in_flight',
      'kascade_attention_seconds_total',
      'kascade_effective_k',
    ]) {
      expect(text).toContain(`# TYPE ${name} `);
    }
    expect(text).toMatch(/kascade_requests_total\{endpoint="\/v1\/completions",status="200"\} [1-9]/);
    expect(text).toMatch(/kascade_requests_total\{endpoint="\/v1\/completions",status="400"\} [1-9]/);
    expect(text).toMatch(/kascade_tokens_total\{kind="completion"\} [1-9]/);
    expect(text).toMatch(/kascade_effective_k\{policy="kascade"\} [0-9.]+/);
  });
});

describe('HTTP API without a plan', () => {
  it('defaults to dense and refuses kascade with a 400 naming kascade.plan', async () => {
    const engine = new TestEngine();
    const s = await start({ engine });
    try {
      const ok = await (await postJson(`${s.url}/v1/completions`, { prompt: 'x', max_tokens: 1 })).json();
      expect(ok.usage.kascade.policy).toBe('dense');
      const res = await postJson(`${s.url}/v1/completions`, { prompt: 'x', kascade: { policy: 'kascade' } });
      expect(res.status).toBe(400);
      expect((await res.json()).error).toMatchObject({ param: 'kascade.plan', code: 'plan_required' });
      const sent = await postJson(`${s.url}/v1/completions`, {
        prompt: 'x',
        kascade: { policy: 'kascade', plan: {} },
      });
      expect(sent.status).toBe(400);
      expect((await sent.json()).error.param).toBe('kascade.plan');
    } finally {
      await s.close();
    }
  });

  it('an engine failure is a 500 server_error; an engine range error a 400', async () => {
    const engine = new TestEngine({ failOn: 'explode' });
    const s = await start({ engine });
    try {
      const res = await postJson(`${s.url}/v1/completions`, { prompt: 'explode now' });
      expect(res.status).toBe(500);
      expect((await res.json()).error.type).toBe('server_error');
      expect(s.server.inFlight).toBe(0);
      const range = await postJson(`${s.url}/v1/completions`, { prompt: 'RANGE_ERROR' });
      expect(range.status).toBe(400);
      expect((await range.json()).error).toMatchObject({
        type: 'invalid_request_error',
        message: /out of range/,
      });
      const health = await fetch(`${s.url}/health`);
      expect(health.status).toBe(200);
    } finally {
      await s.close();
    }
  });
});
