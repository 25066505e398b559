/**
 * Runs accuracy jobs on the CPU engine: greedy decoding of task answers, and next-token KL
 * from dense over natural text. Jobs run in this thread, or spread over worker threads
 * (each loads the model once) when `workers > 1` and this module is compiled JavaScript.
 */
import { fileURLToPath } from 'node:url';
import { isMainThread, parentPort, Worker, workerData } from 'node:worker_threads';
import { argmax, type CpuKascadeEngine, createEngine, type PolicySpec } from '@kascade/engine';
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

/** Greedy decoding of one instance's answer under `spec`; exact match needs EOS right after it. */
export function runTask(engine: CpuKascadeEngine, spec: PolicySpec, instance: TaskInstance): JobResult {
  const t0 = performance.now();
  const model = engine.cpuModel;
  const ids = engine.tokenize(instance.prompt);
  const answerIds = model.tokenizer.encode(` ${instance.answer}`, { addSpecialTokens: false });
  const maxTokens = answerIds.length + 1;
  const policy = engine.createPolicy(spec);
  const seq = model.createSequence(ids.length + maxTokens);
  let logits = model.prefill(seq, ids, policy, { tileSize: policy.tileSize });
  const eos = new Set(model.tokenizer.eosTokenIds);
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
  const completion = model.tokenizer.decode(out);
  return {
    kind: 'task',
    cell: 0,
    id: instance.id,
    family: instance.family,
    correct: exactMatch(completion, instance.answer, stopped),
    completion,
    promptTokens: ids.length,
    ms: performance.now() - t0,
  };
}

/**
 * Teacher-forced logits of the last `positions` predictions of `ids`: the prefix is
 * prefilled under the policy, the rest decoded token by token.
 */
function forcedLogits(
  engine: CpuKascadeEngine,
  spec: PolicySpec,
  ids: readonly number[],
  positions: number,
): Float32Array[] {
  const model = engine.cpuModel;
  const policy = engine.createPolicy(spec);
  const seq = model.createSequence(ids.length);
  const prefix = ids.length - positions;
  const out = [model.prefill(seq, ids.slice(0, prefix), policy, { tileSize: policy.tileSize })];
  for (let i = prefix; i < ids.length - 1; i++) out.push(model.decode(seq, ids[i]!, policy));
  return out;
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
    const logits = forcedLogits(engine, spec, ids, job.positions);
    return { cell, values: logits.map((l, i) => klDivergence(dense[i]!, l)) };
  });
  return { kind: 'text', id: job.run.id, tokens: ids.length, kl, ms: performance.now() - t0 };
}

function runJob(engine: CpuKascadeEngine, job: Job): JobResult {
  if (job.kind === 'task') return { ...runTask(engine, job.spec, job.instance), cell: job.cell } as JobResult;
  return runText(engine, job);
}

export function openEngine(setup: RunnerSetup): Promise<CpuKascadeEngine> {
  return createEngine({ model: setup.modelDir, plan: setup.planJson, backend: 'cpu', policy: 'dense' });
}

/** Whether worker threads can load this module (compiled JavaScript, not TypeScript source). */
export function workersAvailable(): boolean {
  return !import.meta.url.endsWith('.ts');
}

/**
 * Runs every job, `workers` at a time (1: in this thread), calling `onResult` as each ends.
 * Results come back in job order.
 */
export async function runJobs(
  setup: RunnerSetup,
  jobs: readonly Job[],
  workers: number,
  onResult: (result: JobResult, done: number) => void = () => {},
): Promise<JobResult[]> {
  const results: JobResult[] = new Array(jobs.length);
  let done = 0;
  if (workers <= 1 || jobs.length <= 1) {
    const engine = await openEngine(setup);
    try {
      for (let i = 0; i < jobs.length; i++) {
        results[i] = runJob(engine, jobs[i]!);
        onResult(results[i]!, ++done);
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
      let current = -1;
      const feed = () => {
        if (next >= jobs.length) {
          void worker.terminate().then(() => resolve());
          return;
        }
        current = next++;
        worker.postMessage(jobs[current]);
      };
      worker.on('message', (m: { ready?: true; result?: JobResult; error?: string }) => {
        if (m.error !== undefined) {
          void worker.terminate();
          reject(new Error(`accuracy worker: ${m.error}`));
          return;
        }
        if (m.result) {
          results[current] = m.result;
          onResult(m.result, ++done);
        }
        feed();
      });
      worker.on('error', reject);
    });
  try {
    await Promise.all(Array.from({ length: Math.min(workers, jobs.length) }, one));
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
  port.on('message', (job: Job) => {
    try {
      port.postMessage({ result: runJob(engine, job) });
    } catch (e) {
      port.postMessage({ error: (e as Error).stack ?? String(e) });
    }
  });
  port.postMessage({ ready: true });
}

const data = workerData as { kascadeAccuracyWorker?: boolean; setup?: RunnerSetup } | null;
if (!isMainThread && data?.kascadeAccuracyWorker === true && data.setup) void workerMain(data.setup);
