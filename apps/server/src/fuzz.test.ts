import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { parseConfig } from './config.js';
import { startServer } from './serve.js';
import type { KascadeServer } from './server.js';
import { TestEngine } from './test-engine.js';
import { postJson, start } from './test-helpers.js';

/** Values for known fields: right types, wrong types, edge numbers, nesting. */
const anyValue = fc.oneof(
  fc.jsonValue({ maxDepth: 2 }),
  fc.constantFrom(0, -1, 1, 1.5, 2, 16, 1e9, -0, null, true, false, '', 'dense', 'kascade', [], {}),
  fc.integer({ min: -5, max: 40 }),
  fc.double({ noNaN: true }),
);
const message = fc.record(
  {
    role: fc.oneof(fc.constantFrom('system', 'user', 'assistant', 'tool', 'developer'), anyValue),
    content: anyValue,
  },
  { requiredKeys: [] },
);
const requestBody = fc.record(
  {
    model: anyValue,
    prompt: fc.oneof(fc.string({ maxLength: 40 }), anyValue),
    messages: fc.oneof(fc.array(message, { maxLength: 3 }), anyValue),
    max_tokens: fc.oneof(fc.integer({ min: -2, max: 40 }), anyValue),
    max_completion_tokens: anyValue,
    temperature: anyValue,
    top_p: anyValue,
    top_k: anyValue,
    n: anyValue,
    stream: fc.oneof(fc.boolean(), anyValue),
    stream_options: fc.oneof(fc.record({ include_usage: anyValue }, { requiredKeys: [] }), anyValue),
    stop: anyValue,
    seed: anyValue,
    kascade: fc.oneof(
      fc.record(
        {
          policy: fc.oneof(fc.constantFrom('dense', 'kascade', 'oracle-topk', 'streaming'), anyValue),
          decodeOnly: anyValue,
          plan: anyValue,
        },
        { requiredKeys: [] },
      ),
      anyValue,
    ),
    echo: anyValue,
    logprobs: anyValue,
  },
  { requiredKeys: [] },
);
/** Bodies valid for both endpoints (each ignores the other's field), so the happy path is fuzzed too. */
const validBody = (maxTokens: number) =>
  fc.record(
    {
      prompt: fc.string({ maxLength: 40 }),
      messages: fc.array(
        fc.record({
          role: fc.constantFrom('system', 'user', 'assistant'),
          content: fc.string({ maxLength: 20 }),
        }),
        { minLength: 1, maxLength: 3 },
      ),
      max_tokens: fc.integer({ min: 1, max: maxTokens }),
      temperature: fc.double({ min: 0, max: 2, noNaN: true }),
      stream: fc.boolean(),
      stream_options: fc.record({ include_usage: fc.boolean() }),
      seed: fc.integer(),
      stop: fc.oneof(fc.string({ maxLength: 5 }), fc.array(fc.string({ maxLength: 5 }), { maxLength: 4 })),
      kascade: fc.record(
        {
          policy: fc.constantFrom('dense', 'kascade', 'oracle-topk', 'all-heads-pooled', 'streaming'),
          decodeOnly: fc.boolean(),
        },
        { requiredKeys: ['policy'] },
      ),
    },
    { requiredKeys: ['prompt', 'messages'] },
  );
const rawBody = (maxTokens: number) =>
  fc.oneof(
    validBody(maxTokens).map((b) => JSON.stringify(b)),
    fc.tuple(validBody(maxTokens), requestBody).map(([a, b]) => JSON.stringify({ ...a, ...b })),
    requestBody.map((b) => JSON.stringify(b)),
    fc.jsonValue({ maxDepth: 3 }).map((v) => JSON.stringify(v)),
    fc.string({ maxLength: 60 }),
    requestBody.map((b) => JSON.stringify(b).slice(0, -1)),
  );

/** Posts `numRuns` fuzzed bodies; every answer must be a 2xx or a 4xx in the OpenAI shape. */
async function fuzz(url: string, server: KascadeServer, maxTokens: number, numRuns: number): Promise<void> {
  let ok = 0;
  let refused = 0;
  await fc.assert(
    fc.asyncProperty(
      fc.constantFrom('/v1/completions', '/v1/chat/completions'),
      rawBody(maxTokens),
      async (path, body) => {
        const res = await postJson(`${url}${path}`, body);
        const text = await res.text();
        expect(res.status, `${path} ${body} -> ${text}`).toBeLessThan(500);
        if (res.status === 200) {
          ok++;
          if (res.headers.get('content-type')?.startsWith('text/event-stream'))
            expect(text.endsWith('data: [DONE]\n\n')).toBe(true);
          else expect(JSON.parse(text).choices).toHaveLength(1);
        } else {
          refused++;
          const { error } = JSON.parse(text);
          expect(typeof error.message).toBe('string');
          expect(typeof error.type).toBe('string');
        }
      },
    ),
    { numRuns },
  );
  // the generators reach both sides
  expect(ok).toBeGreaterThan(0);
  expect(refused).toBeGreaterThan(0);
  expect(server.inFlight).toBe(0);
  expect((await fetch(`${url}/health`)).status).toBe(200);
}

describe('fuzzing request bodies: no 5xx, OpenAI-shaped errors, the server stays up', () => {
  it('with the test engine (300 bodies)', async () => {
    const s = await start({
      engine: new TestEngine(),
      plan: { opaque: true },
      limits: { maxTokens: 32, bodyLimitBytes: 8192 },
      maxQueue: 64,
    });
    try {
      await fuzz(s.url, s.server, 32, 300);
    } finally {
      await s.close();
    }
  });

  it('with the real engine (built-in random model, 60 bodies)', async () => {
    const running = await startServer(
      parseConfig(['--model', 'random', '--port', '0', '--max-tokens', '4', '--body-limit', '8192'], {}),
    );
    try {
      await fuzz(running.url, running.server, 4, 60);
    } finally {
      await running.server.shutdown({ graceMs: 0 });
    }
  });
});
