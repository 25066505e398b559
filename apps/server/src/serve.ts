/**
 * From a configuration to a listening server: load the engine, find or calibrate a plan,
 * build the HTTP server, listen. With no `--model`, the server serves the trained demo model
 * (`@kascade/demo-model`, a dependency of the server) with its shipped plan; `--model random`
 * serves the built-in random-weight model.
 */
import { parsePlan } from '@kascade/anchors';
import { demoModelDir, demoModelId, demoPlanPath } from '@kascade/demo-model';
import { type CpuKascadeEngine, createEngine, RANDOM_MODEL } from '@kascade/engine';
import type { ServerConfig } from './config.js';
import { buildServer, type KascadeServer } from './server.js';

/** Short texts the built-in random-weight model is calibrated on when no plan is given. */
const DEV_PROMPTS: readonly string[] = [
  'Kascade reuses the Top-k key indices computed in a few anchor layers in the layers between them.',
  'The quick brown fox jumps over the lazy dog, again and again, until the dog finally wakes up and chases it away.',
  'Attention over a long context is dominated by a small set of keys; selecting them once per anchor saves time.',
  'Once upon a time there was a server that answered requests in the shape clients already knew.',
  'Prefill processes the prompt in tiles of queries; decode processes one token at a time with the KV cache.',
  'Numbers: 1 2 3 5 8 13 21 34 55 89 144 233 377 610 987 1597 2584 4181 6765 10946 17711 28657.',
];

export interface Running {
  readonly server: KascadeServer;
  readonly url: string;
  /** How the plan was obtained, for the startup log. */
  readonly planSource: string;
}

export async function startServer(
  config: ServerConfig,
  log: (line: string) => void = () => {},
): Promise<Running> {
  // The default model is passed by path (not left to the engine's lookup), so the server never
  // falls back to the random-weight model by accident: `--model random` asks for that.
  const engine = await createEngine({
    ...(config.model !== undefined
      ? { model: config.model }
      : { model: demoModelDir, modelId: demoModelId, plan: config.plan ?? demoPlanPath }),
    ...(config.plan !== undefined ? { plan: config.plan } : {}),
    backend: config.backend,
  });
  try {
    return await serveEngine(engine, config, log);
  } catch (error) {
    // A failed calibration, a bad limit or a busy port must not leave the engine's workers running.
    await engine.dispose().catch(() => {});
    throw error;
  }
}

async function serveEngine(
  engine: CpuKascadeEngine,
  config: ServerConfig,
  log: (line: string) => void,
): Promise<Running> {
  const model = engine.model;
  const source =
    config.model === undefined
      ? `@kascade/demo-model, the default (--model ${RANDOM_MODEL} serves the random-weight model)`
      : engine.modelSource;
  log(
    `model: ${model.id} (${model.architecture}, ${model.layers} layers, context ${model.maxContext}; from ${source})`,
  );
  log(`backend: ${engine.backend.backend} (${engine.backend.reason})`);
  let plan: unknown = engine.defaultPlan;
  let planSource =
    plan === undefined
      ? 'none'
      : (config.plan ??
        (config.model === undefined
          ? 'kascade-plan.json shipped with @kascade/demo-model'
          : 'the model directory'));
  if (plan === undefined && config.calibrate === 'auto' && model.randomWeights) {
    const t0 = performance.now();
    // A demonstration plan for a model without trained weights: half the layers as anchors (so
    // reuse layers exist; automatic K picks every layer on random weights) and a small kMin so
    // that the sparsity shows on the playground's short chats.
    const anchors = Math.max(1, Math.ceil(model.layers / 2));
    plan = await engine.calibrate(DEV_PROMPTS, { anchors, budget: { percent: 10, kMin: 16 } });
    planSource = `calibrated at startup on ${DEV_PROMPTS.length} built-in prompts in ${Math.round(performance.now() - t0)} ms`;
  }
  if (plan === undefined) {
    log('plan: none; serving dense attention (give --plan FILE to serve Kascade)');
  } else {
    const anchors = (plan as { anchors?: unknown }).anchors;
    log(`plan: ${planSource}; anchor layers ${JSON.stringify(anchors)}`);
  }
  const shape = { layers: model.layers, heads: model.heads, kvHeads: model.kvHeads, headDim: model.headDim };
  const server = await buildServer({
    engine,
    plan,
    validatePlan: (raw) => parsePlan(raw, shape),
    concurrency: config.concurrency,
    maxQueue: config.queue,
    limits: {
      maxTokens: Math.min(config.maxTokens, model.maxContext),
      bodyLimitBytes: config.bodyLimitBytes,
      ...(config.maxPromptTokens !== undefined ? { maxPromptTokens: config.maxPromptTokens } : {}),
    },
    logger: config.log,
  });
  let url: string;
  try {
    url = await server.listen({ host: config.host, port: config.port });
  } catch (error) {
    await server.app.close().catch(() => {});
    throw error;
  }
  return { server, url, planSource };
}
