import { readFileSync } from 'node:fs';
import { demoModelId, demoPlanPath } from '@kascade/demo-model';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { parseConfig } from './config.js';
import { type Running, startServer } from './serve.js';
import { postJson, sseEvents } from './test-helpers.js';

// The plan shipped beside the weights (it changes when the model is retrained, so it is read, not copied).
const shipped = JSON.parse(readFileSync(demoPlanPath, 'utf8')) as {
  anchors: number[];
  model: { layers: number; heads: number; kvHeads: number; headDim: number };
};

// A single-needle retrieval prompt in the format the demo model was trained on (its README's example).
const needle =
  'Some special magic numbers are hidden in the following text. Memorize them. I will ask about them afterwards.\n' +
  'One of the special magic numbers for bakumi is: 4821337.\n' +
  'Return the number of items in the queue.\n' +
  '\nWhat is the special magic number for bakumi mentioned in the text above?\nAnswer:';

describe('with no --model the server serves the trained demo model and its shipped plan', () => {
  let running: Running;
  const lines: string[] = [];
  beforeAll(async () => {
    running = await startServer(parseConfig(['--port', '0'], {}), (line) => lines.push(line));
  });
  afterAll(() => running?.server.shutdown({ graceMs: 0 }));

  it('/v1/models and /health name it; the startup log says where the model and plan came from', async () => {
    const models = await (await fetch(`${running.url}/v1/models`)).json();
    expect(models.data).toHaveLength(1);
    expect(models.data[0].id).toBe(demoModelId);
    expect(models.data[0].kascade).toMatchObject({
      random_weights: false,
      plan_loaded: true,
      default_policy: 'kascade',
      layers: shipped.model.layers,
      heads: shipped.model.heads,
      kv_heads: shipped.model.kvHeads,
      head_dim: shipped.model.headDim,
    });
    expect((await (await fetch(`${running.url}/health`)).json()).model).toBe(demoModelId);
    const log = lines.join('\n');
    expect(log).toContain(`model: ${demoModelId} (llama, ${shipped.model.layers} layers`);
    expect(log).toContain('from @kascade/demo-model');
    expect(log).toContain(
      `plan: kascade-plan.json shipped with @kascade/demo-model; anchor layers ${JSON.stringify(shipped.anchors)}`,
    );
  });

  it('answers a needle-retrieval prompt as the trained model does, under Kascade (the default) and dense', async () => {
    for (const kascade of [undefined, { policy: 'dense' }]) {
      const res = await postJson(`${running.url}/v1/completions`, {
        model: demoModelId,
        prompt: needle,
        max_tokens: 12,
        ...(kascade ? { kascade } : {}),
      });
      expect(res.status).toBe(200);
      const body = await res.json();
      expect(body.model).toBe(demoModelId);
      expect(body.choices[0].text.trim()).toBe('4821337');
      expect(body.choices[0].finish_reason).toBe('stop');
      expect(body.usage.kascade.policy).toBe(kascade ? 'dense' : 'kascade');
      if (!kascade) expect(body.usage.kascade.anchor_layers).toEqual(shipped.anchors);
    }
  });

  it('streams a chat reply through the model chat template', async () => {
    const res = await postJson(`${running.url}/v1/chat/completions`, {
      messages: [{ role: 'user', content: 'What is Kascade?' }],
      max_tokens: 6,
      stream: true,
      stream_options: { include_usage: true },
    });
    expect(res.status).toBe(200);
    const events = sseEvents(await res.text());
    expect(events.at(-1)).toBe('[DONE]');
    const usage = JSON.parse(events.at(-2)!).usage;
    expect(usage.completion_tokens).toBeGreaterThan(0);
    expect(usage.prompt_tokens).toBeGreaterThan(5);
    expect(usage.kascade.policy).toBe('kascade');
    expect(running.server.inFlight).toBe(0);
  });
});
