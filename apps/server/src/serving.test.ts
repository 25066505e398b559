import { request as httpRequest } from 'node:http';
import { describe, expect, it } from 'vitest';
import { Scheduler } from './scheduler.js';
import { TestEngine } from './test-engine.js';
import { postJson, sseEvents, start, waitFor } from './test-helpers.js';

/** Sends a POST and resolves once the response's first body bytes arrived (or the headers, for non-streams). */
function openRequest(url: string, body: unknown, waitForBody: boolean) {
  const target = new URL(url);
  const payload = JSON.stringify(body);
  let destroy = () => {};
  const ready = new Promise<{ status: number; first: string }>((resolve, reject) => {
    const req = httpRequest(
      {
        host: target.hostname,
        port: target.port,
        path: target.pathname,
        method: 'POST',
        headers: { 'content-type': 'application/json', 'content-length': Buffer.byteLength(payload) },
      },
      (res) => {
        if (!waitForBody) resolve({ status: res.statusCode ?? 0, first: '' });
        res.once('data', (data: Buffer) => resolve({ status: res.statusCode ?? 0, first: data.toString() }));
      },
    );
    req.on('error', (error) => {
      if (!req.destroyed) reject(error);
    });
    destroy = () => req.destroy();
    req.end(payload);
  });
  return { ready, destroy: () => destroy() };
}

describe('Scheduler', () => {
  it('runs at most `concurrency`, queues up to `maxQueue`, refuses beyond', async () => {
    const s = new Scheduler({ concurrency: 2, maxQueue: 1 });
    const a = await s.acquire();
    const b = await s.acquire();
    expect(s.running).toBe(2);
    const queued = s.acquire();
    expect(s.queued).toBe(1);
    await expect(s.acquire()).rejects.toThrow(/busy/);
    a();
    a(); // a second release does nothing
    const c = await queued;
    expect(s.running).toBe(2);
    expect(s.queued).toBe(0);
    b();
    c();
    expect(s.running).toBe(0);
    await s.whenIdle();
  });

  it('drops a waiter whose signal aborts', async () => {
    const s = new Scheduler({ concurrency: 1, maxQueue: 4 });
    const a = await s.acquire();
    const controller = new AbortController();
    const waiting = s.acquire(controller.signal);
    expect(s.queued).toBe(1);
    controller.abort();
    await expect(waiting).rejects.toThrow(/aborted/);
    expect(s.queued).toBe(0);
    a();
    expect(s.running).toBe(0);
  });

  it('rejects bad sizes with a message naming them', () => {
    expect(() => new Scheduler({ concurrency: 0, maxQueue: 1 })).toThrow(/concurrency/);
    expect(() => new Scheduler({ concurrency: 1, maxQueue: -1 })).toThrow(/queue/);
  });
});

describe('serving behaviour', () => {
  it('answers 429 with Retry-After when the queue is full, then serves again', async () => {
    const engine = new TestEngine({ tokenDelayMs: 20 });
    const s = await start({ engine, concurrency: 1, maxQueue: 1, retryAfterS: 2 });
    try {
      const running = openRequest(
        `${s.url}/v1/completions`,
        { prompt: 'a', max_tokens: 200, stream: true },
        true,
      );
      await running.ready;
      const queued = postJson(`${s.url}/v1/completions`, { prompt: 'b', max_tokens: 1 });
      await waitFor(() => s.server.scheduler.queued === 1, 'one queued request');
      const refused = await postJson(`${s.url}/v1/completions`, { prompt: 'c', max_tokens: 1 });
      expect(refused.status).toBe(429);
      expect(refused.headers.get('retry-after')).toBe('2');
      expect((await refused.json()).error).toMatchObject({ type: 'rate_limit_error', code: 'queue_full' });
      running.destroy();
      const served = await queued;
      expect(served.status).toBe(200);
      expect((await served.json()).usage.completion_tokens).toBe(1);
      await waitFor(() => s.server.inFlight === 0, 'in-flight back to 0');
      const metrics = await (await fetch(`${s.url}/metrics`)).text();
      expect(metrics).toMatch(/kascade_rejected_total\{reason="queue_full"\} 1/);
    } finally {
      await s.close();
    }
  });

  it('a client that disconnects mid-stream cancels its generation and frees its slot', async () => {
    const engine = new TestEngine({ tokenDelayMs: 10 });
    const s = await start({ engine, concurrency: 2 });
    try {
      const r = openRequest(
        `${s.url}/v1/chat/completions`,
        {
          messages: [{ role: 'user', content: 'long answer' }],
          max_tokens: 400,
          stream: true,
        },
        true,
      );
      const { status, first } = await r.ready;
      expect(status).toBe(200);
      expect(first).toContain('data: ');
      expect(s.server.inFlight).toBe(1);
      expect(engine.live).toBe(1);
      await waitFor(() => engine.yielded >= 2, 'tokens to be generated');
      r.destroy();
      await waitFor(() => s.server.inFlight === 0 && engine.live === 0, 'the generation to be freed');
      expect(engine.aborted).toBe(1);
      expect(engine.lastOptions?.signal?.aborted).toBe(true);
      const health = await (await fetch(`${s.url}/health`)).json();
      expect(health).toMatchObject({ inFlight: 0, queued: 0 });
      const metrics = await (await fetch(`${s.url}/metrics`)).text();
      expect(metrics).toMatch(/kascade_cancelled_total\{phase="decode"\} 1/);
      expect(metrics).toMatch(/kascade_in_flight 0/);
    } finally {
      await s.close();
    }
  });

  it('a client that disconnects during prefill cancels it promptly', async () => {
    const engine = new TestEngine({ prefillDelayMs: 2000 });
    const s = await start({ engine });
    try {
      const r = openRequest(`${s.url}/v1/completions`, { prompt: 'long prompt', max_tokens: 5 }, false);
      await waitFor(() => engine.live === 1, 'prefill to start');
      const t0 = Date.now();
      r.destroy();
      await waitFor(() => s.server.inFlight === 0 && engine.live === 0, 'prefill to be cancelled', 3000);
      expect(Date.now() - t0).toBeLessThan(2500);
      expect(engine.aborted).toBe(1);
      const metrics = await (await fetch(`${s.url}/metrics`)).text();
      expect(metrics).toMatch(/kascade_cancelled_total\{phase="prefill"\} 1/);
    } finally {
      await s.close();
    }
  });

  it('a queued client that disconnects leaves the queue without starting', async () => {
    const engine = new TestEngine({ tokenDelayMs: 10 });
    const s = await start({ engine, concurrency: 1, maxQueue: 4 });
    try {
      const running = openRequest(
        `${s.url}/v1/completions`,
        { prompt: 'a', max_tokens: 500, stream: true },
        true,
      );
      await running.ready;
      const waiting = openRequest(`${s.url}/v1/completions`, { prompt: 'b', max_tokens: 5 }, false);
      await waitFor(() => s.server.scheduler.queued === 1, 'a queued request');
      waiting.destroy();
      await waitFor(() => s.server.scheduler.queued === 0, 'the queue to empty');
      expect(engine.started).toBe(1);
      running.destroy();
      await waitFor(() => s.server.inFlight === 0 && engine.live === 0, 'everything freed');
    } finally {
      await s.close();
    }
  });

  it('shutdown lets in-flight requests finish, then refuses new ones', async () => {
    const engine = new TestEngine({ tokenDelayMs: 5 });
    const s = await start({ engine });
    const pending = postJson(`${s.url}/v1/completions`, {
      prompt: 'finish me',
      max_tokens: 20,
      stream: true,
    });
    await waitFor(() => engine.live === 1, 'the generation to start');
    await s.server.shutdown({ graceMs: 5000 });
    const res = await pending;
    const events = sseEvents(await res.text());
    expect(events.at(-1)).toBe('[DONE]');
    expect(JSON.parse(events.at(-2)!).choices[0].finish_reason).toBe('length');
    expect(engine.live).toBe(0);
    await expect(fetch(`${s.url}/health`)).rejects.toThrow();
  });

  it('shutdown cancels what does not finish within the grace period', async () => {
    const engine = new TestEngine({ tokenDelayMs: 20 });
    const s = await start({ engine, concurrency: 2 });
    const streamed = postJson(`${s.url}/v1/completions`, { prompt: 'x', max_tokens: 400, stream: true });
    const plain = postJson(`${s.url}/v1/completions`, { prompt: 'y', max_tokens: 400 });
    await waitFor(() => engine.live === 2, 'both generations to start');
    const t0 = Date.now();
    await s.server.shutdown({ graceMs: 100 });
    expect(Date.now() - t0).toBeLessThan(2000);
    expect(engine.live).toBe(0);
    expect(engine.aborted).toBe(2);
    const events = sseEvents(await (await streamed).text());
    expect(events.at(-1)).toBe('[DONE]');
    expect(JSON.parse(events.at(-2)!).error.code).toBe('shutting_down');
    const plainRes = await plain;
    expect(plainRes.status).toBe(503);
    expect((await plainRes.json()).error.code).toBe('shutting_down');
  });

  it('shutdown cuts connections whose engine ignores the abort', async () => {
    const engine = new TestEngine({ tokenDelayMs: 20, ignoreAbort: true });
    const s = await start({ engine });
    const streamed = postJson(`${s.url}/v1/completions`, { prompt: 'x', max_tokens: 400, stream: true });
    await waitFor(() => engine.live === 1, 'the generation to start');
    const t0 = Date.now();
    await s.server.shutdown({ graceMs: 50, forceMs: 200 });
    expect(Date.now() - t0).toBeLessThan(2000);
    await expect((await streamed).text()).rejects.toThrow();
  });
});
