import { mkdtemp, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { PlanError } from '@kascade/anchors';
import { describe, expect, it } from 'vitest';
import { BackendUnavailableError, selectBackend } from './backend-select.js';
import { createEngine, RANDOM_TINY_ID } from './engine.js';

function tinyPlan(layers = 4, kvHeads = 2, headDim = 32) {
  return {
    format: 'kascade-plan',
    version: 1,
    model: { id: 'test', layers, heads: 4, kvHeads, headDim },
    budget: { percent: 10, kMin: 16, roundTo: 1, tileSize: 16 },
    anchors: [0, 2],
    headMaps: Array.from({ length: layers }, (_, l) => (l === 1 ? [1, 0] : [0, 1])),
  };
}

async function drain(gen: AsyncIterable<{ text: string }>) {
  let text = '';
  for await (const c of gen) text += c.text;
  return text;
}

describe('createEngine', () => {
  it("model 'random' is the built-in random-weight model on the CPU, and the engine says why", async () => {
    const engine = await createEngine({ model: 'random' });
    expect(engine.model).toMatchObject({
      id: RANDOM_TINY_ID,
      randomWeights: true,
      layers: 4,
      heads: 4,
      kvHeads: 2,
    });
    expect(engine.backend.backend).toBe('cpu');
    expect(engine.backend.reason).toMatch(/@kascade\/cuda/);
    expect(engine.policy).toEqual({ kind: 'dense' });
    expect(engine.defaultPlan).toBeUndefined();
    expect(engine.countTokens('abc')).toBe(4); // BOS + 3 bytes
    expect(engine.countTokens([{ role: 'user', content: 'hi' }])).toBeGreaterThan(2);
    await engine.dispose();
  });

  it('a plan makes kascade the default policy; plans load from objects, JSON text and files', async () => {
    const dir = await mkdtemp(join(tmpdir(), 'kascade-engine-'));
    const file = join(dir, 'plan.json');
    await writeFile(file, JSON.stringify(tinyPlan()));
    for (const plan of [tinyPlan(), JSON.stringify(tinyPlan()), file]) {
      const engine = await createEngine({ model: 'random', plan });
      expect(engine.policy.kind).toBe('kascade');
      expect(engine.defaultPlan!.anchors).toEqual([0, 2]);
    }
    const engine = await createEngine({ model: 'random', plan: tinyPlan() });
    const gen = engine.generate([{ role: 'user', content: 'Tell me about sparse attention. '.repeat(3) }], {
      maxTokens: 6,
    });
    await drain(gen);
    const usage = await gen.usage;
    expect(usage.kascade).toMatchObject({ policy: 'kascade', anchorLayers: [0, 2], effectiveK: 16 });
    // Two anchors per decode step and per prefill tile.
    expect(usage.kascade.anchorsHit).toBe(2 * 5 + 2 * Math.ceil(usage.promptTokens / 16));
    expect(usage.attentionMs).toBeGreaterThan(0);
    expect(usage.prefillTokensPerS).toBeGreaterThan(0);
    expect(usage.decodeTokensPerS).toBeGreaterThan(0);
  });

  it('a plan for another model shape is rejected at load and per call', async () => {
    await expect(createEngine({ model: 'random', plan: tinyPlan(6) })).rejects.toThrow(PlanError);
    await expect(createEngine({ model: 'random', plan: tinyPlan(4, 1) })).rejects.toThrow(/kvHeads/);
    const engine = await createEngine({ model: 'random' });
    expect(() => engine.generate('x', { policy: { kind: 'kascade', plan: tinyPlan(4, 2, 64) } })).toThrow(
      PlanError,
    );
    expect(() => engine.generate('x', { policy: { kind: 'kascade' } as never })).toThrow(/needs a plan/);
    await expect(createEngine({ model: 'random', plan: '/nonexistent/plan.json' })).rejects.toThrow(
      /cannot read plan file/,
    );
  });

  it('a rejected plan leaves a model passed in usable (only a model the call loaded is freed)', async () => {
    const engine = await createEngine({ model: 'random' });
    await expect(createEngine({ cpuModel: engine.cpuModel, plan: tinyPlan(6) })).rejects.toThrow(PlanError);
    await expect(createEngine({ cpuModel: engine.cpuModel, policy: 'kascade' })).rejects.toThrow(
      /needs a plan/,
    );
    expect((await drain(engine.generate('abc', { maxTokens: 2 }))).length).toBeGreaterThan(0);
    await engine.dispose();
    await expect(drain(engine.generate('abc', { maxTokens: 2 }))).rejects.toThrow(/disposed/);
  });

  it('every policy generates through the engine', async () => {
    const engine = await createEngine({ model: 'random', plan: tinyPlan() });
    for (const policy of [
      { kind: 'dense' },
      { kind: 'kascade', plan: tinyPlan(), decodeOnly: true },
      { kind: 'all-heads-pooled', plan: tinyPlan() },
      { kind: 'oracle-topk', budget: { kMin: 16 }, tileSize: 16 },
      { kind: 'streaming', sinkTokens: 2, budget: { kMin: 16 } },
    ] as const) {
      const gen = engine.generate('word '.repeat(40), { maxTokens: 3, policy });
      await drain(gen);
      const u = await gen.usage;
      expect(u.completionTokens + (u.finishReason === 'stop' ? 1 : 0)).toBeGreaterThan(0);
      expect(u.kascade.policy).toBe(policy.kind);
    }
  });
});

describe('backend selection', () => {
  const missing = async (name: string) => {
    throw Object.assign(new Error(`Cannot find package '${name}'`), { code: 'ERR_MODULE_NOT_FOUND' });
  };

  it('auto falls back to the CPU and names what it found', async () => {
    const choice = await selectBackend('auto', missing);
    expect(choice.backend).toBe('cpu');
    expect(choice.reason).toMatch(/@kascade\/cuda is not installed.*@kascade\/webgpu is not installed/);
  });

  it('a GPU package with a device but kernels only: auto says so and uses the CPU; asking for it by name fails', async () => {
    const importer = async (name: string) =>
      name === '@kascade/cuda'
        ? { isAvailable: () => ({ available: true, reason: 'H200 found' }) }
        : missing(name);
    const choice = await selectBackend('auto', importer);
    expect(choice.backend).toBe('cpu');
    expect(choice.reason).toMatch(
      /@kascade\/cuda is installed \(H200 found\) but provides attention kernels only/,
    );
    const noDevice = async (name: string) =>
      name === '@kascade/cuda'
        ? { isAvailable: () => false, unavailableReason: () => 'no CUDA driver' }
        : missing(name);
    expect((await selectBackend('auto', noDevice)).reason).toMatch(/no CUDA driver/);
    await expect(selectBackend('cuda', importer)).rejects.toThrow(BackendUnavailableError);
  });

  it('prefers CUDA, then WebGPU, when they can run whole models', async () => {
    const both = async () => ({ isAvailable: async () => true, runsWholeModels: true });
    expect((await selectBackend('auto', both)).backend).toBe('cuda');
    const webgpuOnly = async (name: string) =>
      name === '@kascade/webgpu' ? { isAvailable: () => true, runsWholeModels: true } : missing(name);
    const choice = await selectBackend('auto', webgpuOnly);
    expect(choice.backend).toBe('webgpu');
    expect(choice.reason).toMatch(/cuda is not installed/);
    expect((await selectBackend('cpu', missing)).backend).toBe('cpu');
    await expect(selectBackend('tpu' as never, missing)).rejects.toThrow(/unknown backend/);
  });
});
