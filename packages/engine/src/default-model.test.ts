import { existsSync, readFileSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath, pathToFileURL } from 'node:url';
import { afterEach, beforeEach, describe, expect, it, vi } from 'vitest';
import { DEMO_MODEL_PACKAGE, defaultModelHooks, findDefaultModel, RANDOM_MODEL } from './default-model.js';
import { createEngine, RANDOM_TINY_ID } from './engine.js';

// The workspace's @kascade/demo-model entry. In this repository pnpm links the engine's optional
// peer, so the package also resolves by name (the first test); the others import it by path so
// they do not depend on that. `scripts/pack-test.mjs` checks real installs with and without it.
const demoEntry = join(dirname(fileURLToPath(import.meta.url)), '..', '..', 'demo-model', 'index.js');
const demoImporter = async (specifier: string): Promise<unknown> => {
  if (specifier !== DEMO_MODEL_PACKAGE) throw new Error(`unexpected import of ${specifier}`);
  return import(/* @vite-ignore */ pathToFileURL(demoEntry).href);
};
const missingImporter = async (specifier: string): Promise<unknown> => {
  const e = new Error(`Cannot find package '${specifier}' imported from /somewhere/engine.js`);
  (e as Error & { code: string }).code = 'ERR_MODULE_NOT_FOUND';
  throw e;
};

const saved = { ...defaultModelHooks };
let notices: string[];
beforeEach(() => {
  notices = [];
  defaultModelHooks.notice = (message) => notices.push(message);
  defaultModelHooks.noticeGiven = false;
});
afterEach(() => {
  Object.assign(defaultModelHooks, saved);
});

describe('findDefaultModel', () => {
  it('resolves @kascade/demo-model by name from the engine (the workspace links the optional peer)', async () => {
    const found = await findDefaultModel();
    expect(found).toMatchObject({
      found: true,
      id: 'kascade-demo-model',
      dir: join(dirname(demoEntry), 'model'),
    });
  });

  it('finds the demo model package: id, checkpoint directory and shipped plan', async () => {
    const found = await findDefaultModel(demoImporter);
    expect(found.found).toBe(true);
    if (!found.found) return;
    expect(found.id).toBe('kascade-demo-model');
    expect(existsSync(join(found.dir, 'config.json'))).toBe(true);
    expect(existsSync(join(found.dir, 'tokenizer.json'))).toBe(true);
    expect(found.planPath).toBe(join(found.dir, 'kascade-plan.json'));
    expect(existsSync(found.planPath!)).toBe(true);
    expect(found.detail).toContain(DEMO_MODEL_PACKAGE);
  });

  it('reports a missing package, one that fails to load, and one of the wrong shape, without throwing', async () => {
    await expect(findDefaultModel(missingImporter)).resolves.toEqual({
      found: false,
      detail: `${DEMO_MODEL_PACKAGE} is not installed`,
    });
    const broken = await findDefaultModel(async () => {
      throw new SyntaxError('Unexpected token');
    });
    expect(broken).toMatchObject({ found: false });
    expect(broken.detail).toMatch(/failed to load \(Unexpected token\)/);
    const wrong = await findDefaultModel(async () => ({ demoModelDir: 42 }));
    expect(wrong).toMatchObject({ found: false });
    expect(wrong.detail).toMatch(/exports no demoModelDir/);
  });
});

describe('createEngine without a model', () => {
  it('uses @kascade/demo-model and its shipped plan when it is installed', async () => {
    defaultModelHooks.importer = demoImporter;
    const engine = await createEngine({ backend: 'cpu' });
    try {
      const shipped = JSON.parse(
        readFileSync(join(dirname(demoEntry), 'model', 'kascade-plan.json'), 'utf8'),
      );
      expect(engine.model.id).toBe('kascade-demo-model');
      expect(engine.model.randomWeights).toBe(false);
      expect(engine.model.layers).toBe(shipped.model.layers);
      expect(engine.modelSource).toContain(DEMO_MODEL_PACKAGE);
      expect(engine.defaultPlan?.anchors).toEqual(shipped.anchors);
      expect(engine.defaultPlan?.headMaps).toEqual(shipped.headMaps);
      expect(engine.policy.kind).toBe('kascade');
      const gen = engine.generate('The special magic number is', { maxTokens: 3 });
      let n = 0;
      for await (const _ of gen) n++;
      const usage = await gen.usage;
      expect(n).toBe(usage.completionTokens);
      expect(usage.kascade.anchorLayers).toEqual(shipped.anchors);
      expect(notices).toEqual([]);
    } finally {
      await engine.dispose();
    }
  });

  it('falls back to the random-weight model when the package is missing, and says so once', async () => {
    defaultModelHooks.importer = missingImporter;
    const a = await createEngine({ backend: 'cpu' });
    const b = await createEngine({ backend: 'cpu' });
    try {
      for (const engine of [a, b]) {
        expect(engine.model.id).toBe(RANDOM_TINY_ID);
        expect(engine.model.randomWeights).toBe(true);
        expect(engine.modelSource).toMatch(/random-weight model: @kascade\/demo-model is not installed/);
      }
      expect(notices).toHaveLength(1);
      expect(notices[0]).toContain(`Install ${DEMO_MODEL_PACKAGE}`);
      expect(notices[0]).toContain(`'${RANDOM_MODEL}'`);
    } finally {
      await a.dispose();
      await b.dispose();
    }
  });

  it("model: 'random' and randomModel ask for the random-weight model without looking for the default", async () => {
    const importer = vi.fn(demoImporter);
    defaultModelHooks.importer = importer;
    const a = await createEngine({ model: RANDOM_MODEL, backend: 'cpu' });
    const b = await createEngine({ randomModel: { seed: 3, id: 'tiny (random weights)' }, backend: 'cpu' });
    try {
      expect(a.model.id).toBe(RANDOM_TINY_ID);
      expect(b.model.id).toBe('tiny (random weights)');
      expect(a.modelSource).toMatch(/random-weight model, as asked/);
      expect(importer).not.toHaveBeenCalled();
      expect(notices).toEqual([]);
    } finally {
      await a.dispose();
      await b.dispose();
    }
  });

  it('a checkpoint path takes modelId as its id', async () => {
    const engine = await createEngine({
      model: join(dirname(demoEntry), 'model'),
      modelId: 'my-demo',
      backend: 'cpu',
      policy: 'dense',
    });
    try {
      expect(engine.model.id).toBe('my-demo');
      expect(engine.defaultPlan).toBeDefined();
    } finally {
      await engine.dispose();
    }
  });
});
