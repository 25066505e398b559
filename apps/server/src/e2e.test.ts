import { request as httpRequest } from 'node:http';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { parseConfig } from './config.js';
import { type Running, startServer } from './serve.js';
import { postJson, sseEvents, waitFor } from './test-helpers.js';

describe('end to end with the real engine (--model random: the built-in random-weight model, CPU)', () => {
  let running: Running;
  const lines: string[] = [];
  beforeAll(async () => {
    running = await startServer(
      parseConfig(['--model', 'random', '--port', '0', '--concurrency', '2'], {}),
      (line) => lines.push(line),
    );
  });
  afterAll(() => running?.server.shutdown({ graceMs: 0 }));

  it('starts with the random-weight model named as such and a calibrated plan', async () => {
    const models = await (await fetch(`${running.url}/v1/models`)).json();
    expect(models.data[0].id).toContain('random weights');
    expect(models.data[0].kascade).toMatchObject({
      random_weights: true,
      plan_loaded: true,
      default_policy: 'kascade',
    });
    expect(lines.join('\n')).toMatch(/plan: calibrated at startup/);
  });

  it('generates with Kascade and with dense, reporting the Kascade figures', async () => {
    const prompt = 'Kascade reuses Top-k indices from anchor layers. '.repeat(4);
    for (const policy of ['kascade', 'dense'] as const) {
      const res = await postJson(`${running.url}/v1/completions`, {
        prompt,
        max_tokens: 4,
        kascade: { policy },
      });
      expect(res.status).toBe(200);
      const body = await res.json();
      expect(body.usage.completion_tokens).toBeGreaterThan(0);
      expect(body.usage.completion_tokens).toBeLessThanOrEqual(4);
      expect(body.usage.kascade.policy).toBe(policy);
      expect(body.usage.kascade.context_keys).toBeGreaterThan(body.usage.prompt_tokens - 1);
      if (policy === 'kascade') {
        expect(body.usage.kascade.anchor_layers[0]).toBe(0);
        expect(body.usage.kascade.effective_k).toBeLessThan(body.usage.kascade.context_keys);
      }
    }
  });

  it('streams chat with the real engine', async () => {
    const res = await postJson(`${running.url}/v1/chat/completions`, {
      messages: [{ role: 'user', content: 'Say something.' }],
      max_tokens: 5,
      stream: true,
      stream_options: { include_usage: true },
    });
    const events = sseEvents(await res.text());
    expect(events.at(-1)).toBe('[DONE]');
    const usage = JSON.parse(events.at(-2)!).usage;
    expect(usage.completion_tokens).toBeGreaterThan(0);
    expect(running.server.inFlight).toBe(0);
  });

  it('rejects a malformed plan in a request with a 400 naming kascade.plan', async () => {
    const res = await postJson(`${running.url}/v1/completions`, {
      prompt: 'x',
      kascade: { policy: 'kascade', plan: { format: 'kascade-plan', version: 999 } },
    });
    expect(res.status).toBe(400);
    const { error } = await res.json();
    expect(error.param).toBe('kascade.plan');
    expect(error.message).toMatch(/version/);
  });

  it('rejects a request plan claiming 2^32-1 layers with a 400, and keeps serving', async () => {
    const served = (await (await fetch(`${running.url}/v1/models`)).json()).data[0].kascade;
    const plan = {
      format: 'kascade-plan',
      version: 1,
      model: { id: 'x', architecture: 'llama', layers: 2 ** 32 - 1, heads: 1, kvHeads: 1, headDim: 8 },
      budget: { percent: 10, kMin: 1, roundTo: 1, tileSize: 32 },
      anchors: [0],
      headMaps: [[0]],
    };
    const res = await postJson(`${running.url}/v1/completions`, {
      prompt: 'x',
      kascade: { policy: 'kascade', plan },
    });
    expect(res.status).toBe(400);
    const { error } = await res.json();
    expect(error.code).toBe('invalid_plan');
    expect(error.message).toMatch(new RegExp(`layers = 4294967295, the model has ${served.layers}`));
    const after = await postJson(`${running.url}/v1/completions`, { prompt: 'after', max_tokens: 1 });
    expect(after.status).toBe(200);
  });

  it('a busy port makes startServer reject (and not hang)', async () => {
    const port = new URL(running.url).port;
    await expect(startServer(parseConfig(['--model', 'random', '--port', port], {}))).rejects.toThrow(
      /EADDRINUSE/,
    );
  });

  it('a client that disconnects during a long prefill frees the engine promptly', async () => {
    const prompt = 'Kascade anchors and reuse layers. '.repeat(120); // ~4000 byte tokens
    const payload = JSON.stringify({ prompt, max_tokens: 5, kascade: { policy: 'dense' } });
    const target = new URL(`${running.url}/v1/completions`);
    const req = httpRequest({
      host: target.hostname,
      port: target.port,
      path: target.pathname,
      method: 'POST',
      headers: { 'content-type': 'application/json', 'content-length': Buffer.byteLength(payload) },
    });
    req.on('error', () => {});
    req.end(payload);
    await waitFor(() => running.server.inFlight === 1, 'the generation to start');
    await new Promise((resolve) => setTimeout(resolve, 100));
    const t0 = Date.now();
    req.destroy();
    await waitFor(() => running.server.inFlight === 0, 'the generation to be cancelled', 10_000);
    const cancelMs = Date.now() - t0;
    const metrics = await (await fetch(`${running.url}/metrics`)).text();
    expect(metrics).toMatch(/kascade_cancelled_total\{phase="prefill"\} 1/);
    // the next request is served at once
    const res = await postJson(`${running.url}/v1/completions`, { prompt: 'after', max_tokens: 2 });
    expect(res.status).toBe(200);
    expect(cancelMs).toBeLessThan(2000);
  });
});
