/**
 * Runs accuracy jobs on the CPU engine: greedy decoding of task answers, and next-token KL
 * from dense over natural text. Jobs run in this thread, or spread over worker threads
 * (each loads the model once) when `workers > 1` and this module is compiled JavaScript.
 */
import { fileURLToPath } from 'node:url';
import { isMainThread, parentPort, Worker, workerData } from 'node:worker_threads';
import {
  type AttentionPolicy,
  argmax,
  type CpuKascadeEngine,
  createEngine,
  loadModel,
  type PolicySpec,
  type SequenceState,
} from '@kascade/engine';
import type { TaskInstance, TextRun } from './data.js';
import { exactMatch, klDivergence } from './metrics.js';

/** What every job needs: the model directory and the plan (JSON text). */
export interface RunnerSetup {
  readonly modelDir: string;
  readonly planJson: string;
}

export type Job =
  | {
      readonly kind: 'task';
      readonly cell: number;
      readonly spec: PolicySpec;
      readonly instance: TaskInstance;
    }
  | {
      readonly kind: 'text';
      readonly run: TextRun;
      /** Policies compared with dense on this text (cell index and spec). */
      readonly policies: readonly { readonly cell: number; readonly spec: PolicySpec }[];
      /** The text is cut to this many tokens (BOS included). */
      readonly maxTokens: number;
      /** KL is measured at the last `positions` next-token predictions (decode steps). */
      readonly positions: number;
    };

export type JobResult =
  | {
      readonly kind: 'task';
      readonly cell: number;
      readonly id: string;
      readonly family: string;
      readonly correct: boolean;
      readonly completion: string;
      readonly promptTokens: number;
      readonly ms: number;
    }
  | {
      readonly kind: 'text';
      readonly id: string;
      readonly tokens: number;
      /** Per policy: the KL (nats) at each measured position. */
      readonly kl: readonly { readonly cell: number; readonly values: readonly number[] }[];
      readonly ms: number;
    };

/** Whether `spec` keeps prefill dense (so its prefill is the dense policy's, number for number). */
export function prefillIsDense(spec: PolicySpec): boolean {
  return spec.kind === 'dense' || spec.decodeOnly === true;
}

/**
 * Prefill in chunks of 4 query tiles: the same numbers as one tile at a time (attention is
 * per tile either way; the matrix kernels group tokens by 4 from the chunk's start, so
 * tiles of a multiple of 4 tokens keep the groups), with fewer, larger products (measured
 * about 9% less CPU for a dense 4k prefill).
 */
export const PREFILL_CHUNK_TILES = 4;

export function prefillOptions(policy: AttentionPolicy): { tileSize: number; chunkTiles: number } {
  return { tileSize: policy.tileSize, chunkTiles: policy.tileSize % 4 === 0 ? PREFILL_CHUNK_TILES : 1 };
}

/** A prefilled sequence: the prompt's KV cache and the logits of its last token. */
interface Prefilled {
  readonly seq: SequenceState;
  readonly logits: Float32Array;
  readonly tileSize: number;
}

/** A copy of a sequence's KV cache (the first `length` tokens) with room for as many tokens. */
function cloneSequence(engine: CpuKascadeEngine, seq: SequenceState): SequenceState {
  const copy = engine.cpuModel.createSequence(seq.capacity);
  for (let l = 0; l < seq.k.length; l++) {
    copy.k[l]!.set(seq.k[l]!);
    copy.v[l]!.set(seq.v[l]!);
  }
  copy.length = seq.length;
  return copy;
}

/**
 * The text of generated tokens; none (EOS came first) is the empty string. The Hugging Face
 * tokenizer throws on an empty id list, which ended a whole device run once (a plan that made
 * the model stop at once).
 */
export function completionText(
  tokenizer: { decode(ids: readonly number[]): string },
  ids: readonly number[],
): string {
  return ids.length === 0 ? '' : tokenizer.decode(ids);
}

/** Greedy decoding of one instance's answer under `policy` from a prefilled prompt; exact match needs EOS right after it. */
function decodeAnswer(
  engine: CpuKascadeEngine,
  policy: AttentionPolicy,
  from: Prefilled,
  instance: TaskInstance,
  maxTokens: number,
): { correct: boolean; completion: string } {
  const model = engine.cpuModel;
  const eos = new Set(model.tokenizer.eosTokenIds);
  const seq = from.seq;
  let logits = from.logits;
  const out: number[] = [];
  let stopped = false;
  for (let step = 0; step < maxTokens; step++) {
    const next = argmax(logits);
    if (eos.has(next)) {
      stopped = true;
      break;
    }
    out.push(next);
    if (step + 1 < maxTokens) logits = model.decode(seq, next, policy);
  }
  const completion = completionText(model.tokenizer, out);
  return { correct: exactMatch(completion, instance.answer, stopped), completion };
}

/**
 * Greedy decoding of one instance's answer under each spec. Specs that keep prefill dense
 * (`dense`, decode-only variants) with the same tile size share one dense prefill: the KV
 * cache is copied for each, so they decode from the same numbers (a dense prefill does not
 * depend on which of them ran it). The shared prefill's time counts in the first job's `ms`.
 */
export function runTasks(
  engine: CpuKascadeEngine,
  specs: readonly PolicySpec[],
  instance: TaskInstance,
): JobResult[] {
  const model = engine.cpuModel;
  const ids = engine.tokenize(instance.prompt);
  const answerIds = model.tokenizer.encode(` ${instance.answer}`, { addSpecialTokens: false });
  const maxTokens = answerIds.length + 1;
  let shared: Prefilled | undefined;
  return specs.map((spec, i) => {
    const t0 = performance.now();
    const policy = engine.createPolicy(spec);
    let from: Prefilled;
    if (shared && prefillIsDense(spec) && policy.tileSize === shared.tileSize) {
      // The last user of the shared prefill may take it; the others decode from a copy.
      const last = !specs.slice(i + 1).some((s) => prefillIsDense(s));
      from = last ? shared : { ...shared, seq: cloneSequence(engine, shared.seq) };
    } else {
      const seq = model.createSequence(ids.length + maxTokens);
      const logits = model.prefill(seq, ids, policy, prefillOptions(policy));
      from = { seq, logits, tileSize: policy.tileSize };
      if (prefillIsDense(spec) && specs.slice(i + 1).some((s) => prefillIsDense(s))) {
        shared = { ...from, seq: cloneSequence(engine, seq) };
      }
    }
    const { correct, completion } = decodeAnswer(engine, policy, from, instance, maxTokens);
    return {
      kind: 'task',
      cell: 0,
      id: instance.id,
      family: instance.family,
      correct,
      completion,
      promptTokens: ids.length,
      ms: performance.now() - t0,
    };
  });
}

/** Greedy decoding of one instance's answer under `spec`; exact match needs EOS right after it. */
export function runTask(engine: CpuKascadeEngine, spec: PolicySpec, instance: TaskInstance): JobResult {
  return runTasks(engine, [spec], instance)[0]!;
}

/**
 * Teacher-forced logits of the last `positions` predictions of `ids`: the prefix is
 * prefilled under the policy (or taken from `prefilled`, a dense prefill of it, when the
 * policy keeps prefill dense with the same tile size), the rest decoded token by token.
 */
function forcedLogits(
  engine: CpuKascadeEngine,
  spec: PolicySpec,
  ids: readonly number[],
  positions: number,
  prefilled?: Prefilled,
): { logits: Float32Array[]; prefilled: Prefilled } {
  const model = engine.cpuModel;
  const policy = engine.createPolicy(spec);
  const prefix = ids.length - positions;
  let from: Prefilled;
  if (prefilled && prefillIsDense(spec) && prefilled.tileSize === policy.tileSize) {
    from = { ...prefilled, seq: cloneSequence(engine, prefilled.seq) };
  } else {
    const seq = model.createSequence(ids.length);
    const logits = model.prefill(seq, ids.slice(0, prefix), policy, prefillOptions(policy));
    from = { seq, logits, tileSize: policy.tileSize };
  }
  const kept = prefilled ?? (prefillIsDense(spec) ? { ...from, seq: cloneSequence(engine, from.seq) } : from);
  const out = [from.logits];
  for (let i = prefix; i < ids.length - 1; i++) out.push(model.decode(from.seq, ids[i]!, policy));
  return { logits: out, prefilled: kept };
}

/** Mean next-token KL from dense at the last positions of one text, per policy. */
export function runText(engine: CpuKascadeEngine, job: Extract<Job, { kind: 'text' }>): JobResult {
  const t0 = performance.now();
  const ids = engine.tokenize(job.run.text).slice(0, job.maxTokens);
  if (ids.length <= job.positions + 1) {
    throw new RangeError(
      `text ${job.run.id}: ${ids.length} tokens, too few for ${job.positions} KL positions`,
    );
  }
  const dense = forcedLogits(engine, { kind: 'dense' }, ids, job.positions);
  const kl = job.policies.map(({ cell, spec }) => {
    const { logits } = forcedLogits(engine, spec, ids, job.positions, dense.prefilled);
    return { cell, values: logits.map((l, i) => klDivergence(dense.logits[i]!, l)) };
  });
  return { kind: 'text', id: job.run.id, tokens: ids.length, kl, ms: performance.now() - t0 };
}

/**
 * Jobs that run together: a dense task job with the tasks of the same instance whose specs
 * keep prefill dense (they share its prefill, see {@link runTasks}); every other job alone.
 * Units are ordered by their first job.
 */
export function jobUnits(jobs: readonly Job[]): number[][] {
  const units: number[][] = [];
  const byInstance = new Map<string, number[]>();
  jobs.forEach((job, i) => {
    if (job.kind === 'task' && prefillIsDense(job.spec)) {
      const key = `${job.instance.id}\u0000${job.instance.prompt}`;
      const unit = byInstance.get(key);
      if (unit) {
        unit.push(i);
        return;
      }
      const fresh = [i];
      byInstance.set(key, fresh);
      units.push(fresh);
      return;
    }
    units.push([i]);
  });
  return units;
}

function runUnit(engine: CpuKascadeEngine, unit: readonly Job[]): JobResult[] {
  if (unit.length === 1 && unit[0]!.kind === 'text') return [runText(engine, unit[0]!)];
  const tasks = unit as readonly Extract<Job, { kind: 'task' }>[];
  const results = runTasks(
    engine,
    tasks.map((j) => j.spec),
    tasks[0]!.instance,
  );
  return results.map((r, i) => ({ ...r, cell: tasks[i]!.cell }) as JobResult);
}

/**
 * The engine over the model with f32 matrices (a bf16 checkpoint's values widened exactly:
 * the same numbers, and the f32 kernels are the faster ones).
 */
export async function openEngine(setup: RunnerSetup): Promise<CpuKascadeEngine> {
  const cpuModel = await loadModel(setup.modelDir, { matrixDtype: 'f32' });
  return createEngine({ cpuModel, plan: setup.planJson, backend: 'cpu', policy: 'dense' });
}

/** Whether worker threads can load this module (compiled JavaScript, not TypeScript source). */
export function workersAvailable(): boolean {
  return !import.meta.url.endsWith('.ts');
}

/**
 * Runs every job, `workers` at a time (1: in this thread), calling `onResult` as each ends.
 * Results come back in job order. With `deadlineMs` (a `performance.now()` time), no job is
 * started after it: the jobs not run are `undefined` in the result.
 */
export async function runJobs(
  setup: RunnerSetup,
  jobs: readonly Job[],
  workers: number,
  onResult: (result: JobResult, done: number) => void = () => {},
  deadlineMs = Number.POSITIVE_INFINITY,
): Promise<(JobResult | undefined)[]> {
  const results: (JobResult | undefined)[] = new Array(jobs.length).fill(undefined);
  if (jobs.length === 0 || performance.now() >= deadlineMs) return results;
  const units = jobUnits(jobs);
  let done = 0;
  const finish = (unit: readonly number[], out: readonly JobResult[]) => {
    unit.forEach((i, u) => {
      results[i] = out[u]!;
      onResult(out[u]!, ++done);
    });
  };
  if (workers <= 1 || units.length <= 1) {
    const engine = await openEngine(setup);
    try {
      for (const unit of units) {
        if (performance.now() >= deadlineMs) break;
        finish(
          unit,
          runUnit(
            engine,
            unit.map((i) => jobs[i]!),
          ),
        );
        await new Promise<void>((r) => setImmediate(r));
      }
    } finally {
      await engine.dispose();
    }
    return results;
  }
  let next = 0;
  const started: Worker[] = [];
  const one = () =>
    new Promise<void>((resolve, reject) => {
      const worker = new Worker(fileURLToPath(import.meta.url), {
        workerData: { kascadeAccuracyWorker: true, setup },
      });
      started.push(worker);
      let current: number[] = [];
      const feed = () => {
        if (next >= units.length || performance.now() >= deadlineMs) {
          void worker.terminate().then(() => resolve());
          return;
        }
        current = units[next++]!;
        worker.postMessage(current.map((i) => jobs[i]));
      };
      worker.on('message', (m: { ready?: true; results?: JobResult[]; error?: string }) => {
        if (m.error !== undefined) {
          void worker.terminate();
          reject(new Error(`accuracy worker: ${m.error}`));
          return;
        }
        if (m.results) finish(current, m.results);
        feed();
      });
      worker.on('error', reject);
    });
  try {
    await Promise.all(Array.from({ length: Math.min(workers, units.length) }, one));
  } catch (e) {
    // One worker failed: stop the others so the process can exit with the error.
    await Promise.all(started.map((w) => w.terminate()));
    throw e;
  }
  return results;
}

async function workerMain(setup: RunnerSetup): Promise<void> {
  const port = parentPort!;
  let engine: CpuKascadeEngine;
  try {
    engine = await openEngine(setup);
  } catch (e) {
    port.postMessage({ error: (e as Error).stack ?? String(e) });
    return;
  }
  port.on('message', (unit: Job[]) => {
    try {
      port.postMessage({ results: runUnit(engine, unit) });
    } catch (e) {
      port.postMessage({ error: (e as Error).stack ?? String(e) });
    }
  });
  port.postMessage({ ready: true });
}

const data = workerData as { kascadeAccuracyWorker?: boolean; setup?: RunnerSetup } | null;
if (!isMainThread && data?.kascadeAccuracyWorker === true && data.setup) void workerMain(data.setup);
