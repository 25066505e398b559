/**
 * `createEngine`: load a model (a checkpoint directory, a GGUF file, or the built-in
 * random-weight model), pick a backend, load a plan, and hand out generations and
 * calibration runs.
 */
import { readFile, stat } from 'node:fs/promises';
import { join } from 'node:path';
import type { KascadePlan } from '@kascade/anchors';
import { KascadeRangeError } from '@kascade/core';
import type {
  BackendChoice,
  GenerateInput,
  GenerateOptions,
  Generation,
  KascadeEngine,
  ModelInfo,
  PolicySpec,
} from './api.js';
import { type BackendRequest, selectBackend } from './backend-select.js';
import {
  type CalibrateOptions,
  type CalibrationResult,
  calibrateModel,
  type DevPrompt,
} from './calibrate.js';
import {
  DEMO_MODEL_PACKAGE,
  defaultModelHooks,
  findDefaultModel,
  noticeRandomFallback,
  RANDOM_MODEL,
} from './default-model.js';
import { runGeneration } from './generate.js';
import type { ModelConfig } from './model/config.js';
import { loadModel } from './model/load.js';
import type { CpuModel } from './model/model.js';
import { createRandomModel } from './model/random.js';
import {
  type AttentionPolicy,
  createPolicy,
  type ModelShape,
  type PolicyOptions,
  planFor,
} from './policies/index.js';

/** The built-in model's id. */
export const RANDOM_TINY_ID = 'kascade-random-tiny (random weights)';

/** Shape of the built-in random-weight model: small enough for fast CPU tests. */
export const RANDOM_TINY_CONFIG: Partial<ModelConfig> = Object.freeze({
  architecture: 'llama',
  hiddenSize: 128,
  intermediateSize: 256,
  layers: 4,
  heads: 4,
  kvHeads: 2,
  headDim: 32,
  vocabSize: 259,
  maxContext: 8192,
});

/** Name of the plan file looked for in a checkpoint directory when no plan is given. */
export const PLAN_FILE = 'kascade-plan.json';

export interface CreateEngineOptions {
  /**
   * A Hugging Face checkpoint directory or a `.gguf` file, or `'random'` for the built-in
   * random-weight model (a directory named `random` is `'./random'`). Absent: the default model,
   * `@kascade/demo-model` with its shipped plan when that package is installed, else the
   * built-in random-weight model (with a warning, once per process).
   */
  readonly model?: string;
  /** The id the engine reports for a loaded checkpoint (default: its directory or file name). */
  readonly modelId?: string;
  /** A plan: a file path, JSON text, or a plan object. Default: `kascade-plan.json` in the model directory, if any. */
  readonly plan?: string | object;
  /** `auto` (default): CUDA, then WebGPU, then the CPU. */
  readonly backend?: BackendRequest;
  /** Default policy of `generate`: a spec or a kind. Default: `kascade` with the plan when there is one, else `dense`. */
  readonly policy?: PolicySpec | PolicySpec['kind'];
  /**
   * The built-in random model's shape and seed. Given without `model`, it asks for the random
   * model (no default-model lookup); ignored when `model` is a path or `cpuModel` is given.
   */
  readonly randomModel?: {
    readonly config?: Partial<ModelConfig>;
    readonly seed?: number;
    readonly id?: string;
  };
  /** Use this already-built model (benchmarks, tests). */
  readonly cpuModel?: CpuModel;
}

/** The engine `createEngine` returns: the public contract plus calibration and policy access. */
export interface CpuKascadeEngine extends KascadeEngine {
  readonly defaultPlan: KascadePlan | undefined;
  /**
   * Where the model came from, in words: a checkpoint path, `@kascade/demo-model (dir)`, or the
   * built-in random-weight model and why it was used.
   */
  readonly modelSource: string;
  /** The default policy of `generate`. */
  readonly policy: PolicySpec;
  /** The model itself (CPU forward pass). */
  readonly cpuModel: CpuModel;
  /** Tokens of an input after templating (what `generate` feeds the model). */
  tokenize(input: GenerateInput): number[];
  /** A fresh attention policy for one sequence (what `generate` uses), e.g. for custom loops. */
  createPolicy(spec?: PolicySpec, options?: PolicyOptions): AttentionPolicy;
  /** Runs calibration over `devSet` and returns the validated plan. */
  calibrate(devSet: readonly DevPrompt[], options: CalibrateOptions): Promise<KascadePlan>;
  /** Calibration with the statistics behind the plan (similarity matrix, importance). */
  calibrateWithStatistics(
    devSet: readonly DevPrompt[],
    options: CalibrateOptions,
  ): Promise<CalibrationResult>;
}

async function readPlan(plan: string | object): Promise<unknown> {
  if (typeof plan !== 'string') return plan;
  const text = plan.trimStart();
  if (text.startsWith('{')) return text;
  try {
    return await readFile(plan, 'utf8');
  } catch (e) {
    throw new KascadeRangeError(`cannot read plan file ${plan}: ${(e as Error).message}`);
  }
}

async function planInModelDir(model: string): Promise<string | undefined> {
  try {
    const info = await stat(model);
    if (!info.isDirectory()) return undefined;
    const file = join(model, PLAN_FILE);
    await stat(file);
    return file;
  } catch {
    return undefined;
  }
}

export function modelShape(model: CpuModel): ModelShape {
  const { layers, heads, kvHeads, headDim } = model.config;
  return { layers, heads, kvHeads, headDim };
}

export async function createEngine(options: CreateEngineOptions = {}): Promise<CpuKascadeEngine> {
  const backend: BackendChoice = await selectBackend(options.backend ?? 'auto');
  const randomModel = (): CpuModel =>
    createRandomModel(
      { ...RANDOM_TINY_CONFIG, ...options.randomModel?.config },
      options.randomModel?.seed ?? 0,
      { id: options.randomModel?.id ?? RANDOM_TINY_ID },
    );
  // Which model: one passed in, a path, the random model asked for, else the default model.
  let model: CpuModel;
  let modelSource: string;
  let modelDir: string | undefined;
  let shippedPlan: string | undefined;
  if (options.cpuModel !== undefined) {
    model = options.cpuModel;
    modelSource = 'the model passed in (cpuModel)';
  } else if (options.model === RANDOM_MODEL || (options.model === undefined && options.randomModel)) {
    model = randomModel();
    modelSource = 'the built-in random-weight model, as asked';
  } else if (options.model !== undefined) {
    model = await loadModel(options.model, options.modelId ? { id: options.modelId } : {});
    modelSource = options.model;
    modelDir = options.model;
  } else {
    const found = await findDefaultModel(defaultModelHooks.importer);
    if (found.found) {
      model = await loadModel(found.dir, { id: options.modelId ?? found.id });
      modelSource = found.detail;
      modelDir = found.dir;
      shippedPlan = found.planPath;
    } else {
      noticeRandomFallback(found.detail);
      model = randomModel();
      modelSource = `the built-in random-weight model: ${found.detail} (the default model comes from ${DEMO_MODEL_PACKAGE})`;
    }
  }
  const shape = modelShape(model);
  const planSource =
    options.plan ?? shippedPlan ?? (modelDir !== undefined ? await planInModelDir(modelDir) : undefined);
  // When the engine cannot be made (a plan that cannot be read or does not fit, a policy without
  // a plan), free the model this call loaded, not one passed in.
  const freeModel = async (): Promise<void> => {
    if (options.cpuModel === undefined) await model.dispose().catch(() => {});
  };
  let defaultPlan: KascadePlan | undefined;
  try {
    defaultPlan = planSource !== undefined ? planFor(await readPlan(planSource), shape) : undefined;
  } catch (error) {
    await freeModel();
    throw error;
  }

  const resolveSpec = (spec: PolicySpec | PolicySpec['kind']): PolicySpec => {
    const s: PolicySpec = typeof spec === 'string' ? ({ kind: spec } as PolicySpec) : spec;
    if (s.kind === 'kascade' || s.kind === 'all-heads-pooled') {
      const plan = s.plan ?? defaultPlan;
      if (plan === undefined || plan === null) {
        throw new KascadeRangeError(
          `policy '${s.kind}' needs a plan: pass one in the policy, or give the engine a plan (createEngine({ plan }))`,
        );
      }
      return { ...s, plan };
    }
    return s;
  };
  let policy: PolicySpec;
  try {
    policy = resolveSpec(options.policy ?? (defaultPlan ? 'kascade' : 'dense'));
  } catch (error) {
    await freeModel();
    throw error;
  }

  const { config } = model;
  const info: ModelInfo = {
    id: model.id,
    architecture: config.architecture,
    layers: config.layers,
    heads: config.heads,
    kvHeads: config.kvHeads,
    headDim: config.headDim,
    vocabSize: config.vocabSize,
    maxContext: config.maxContext,
    randomWeights: model.randomWeights,
  };

  const tokenize = (input: GenerateInput): number[] => {
    if (typeof input === 'string') return model.tokenizer.encode(input, { addSpecialTokens: true });
    if (!Array.isArray(input))
      throw new KascadeRangeError('input must be a string or an array of chat messages');
    for (const [i, m] of input.entries()) {
      if (!m || typeof m.content !== 'string' || typeof m.role !== 'string') {
        throw new KascadeRangeError(`messages[${i}] must have a string role and content`);
      }
    }
    // Chat templates write their own special tokens (e.g. BOS), as Hugging Face does.
    const text = model.tokenizer.applyChatTemplate(input, { addGenerationPrompt: true });
    return model.tokenizer.encode(text, { addSpecialTokens: false });
  };

  const newPolicy = (spec?: PolicySpec, policyOptions?: PolicyOptions): AttentionPolicy =>
    createPolicy(spec ? resolveSpec(spec) : policy, shape, policyOptions);

  return {
    model: info,
    backend,
    defaultPlan,
    modelSource,
    policy,
    cpuModel: model,
    tokenize,
    countTokens: (input) => tokenize(input).length,
    createPolicy: newPolicy,
    generate(input: GenerateInput, generateOptions: GenerateOptions = {}): Generation {
      const promptIds = tokenize(input);
      const attention = newPolicy(generateOptions.policy);
      return runGeneration({
        model,
        promptIds,
        policy: attention,
        options: generateOptions,
        tileSize: attention.tileSize,
      });
    },
    calibrateWithStatistics: (devSet, calibrateOptions) => calibrateModel(model, devSet, calibrateOptions),
    async calibrate(devSet, calibrateOptions) {
      return (await calibrateModel(model, devSet, calibrateOptions)).plan;
    },
    dispose: () => model.dispose(),
  };
}
