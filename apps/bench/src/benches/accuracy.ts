/**
 * `kascade-bench accuracy`: does Kascade keep dense accuracy on the project's demo model?
 * Held-out test instances per family, greedy decoding of the answer under each policy,
 * exact match with a 95% Wilson interval per cell, and next-token KL from dense over
 * held-out natural text. Bench options follow `--` (see `accuracy/options.ts`).
 */
import { readFileSync } from 'node:fs';
import path from 'node:path';
import {
  FAMILIES,
  findDemoModelPackage,
  pickInstances,
  readInstances,
  readTextRuns,
  type TaskInstance,
} from '../accuracy/data.js';
import { appendJournal, jobKey, readJournal } from '../accuracy/journal.js';
import { wilsonInterval } from '../accuracy/metrics.js';
import { type GridCell, gridCells, parseAccuracyArgs } from '../accuracy/options.js';
import { type PlanLike, POLICIES, planHash, policySpec } from '../accuracy/policies.js';
import { type Job, type JobResult, runJobs, workersAvailable } from '../accuracy/runner.js';
import type { Bench, BenchOutput } from '../harness.js';
import type { Cell, Row } from '../results.js';

const round = (x: number, digits = 4) => Math.round(x * 10 ** digits) / 10 ** digits;

type TaskResult = Extract<JobResult, { kind: 'task' }>;

/** Rows per cell and family (plus `all`), with the gap to dense on the same instances. */
export function accuracyRows(
  cells: readonly GridCell[],
  results: readonly TaskResult[],
  families: readonly string[],
): Row[] {
  const withPlanLabels = new Set(cells.map((c) => c.plan?.label).filter((l) => l !== undefined)).size > 1;
  const rows: Row[] = [];
  const byCell = cells.map((_, i) => results.filter((r) => r.cell === i));
  cells.forEach((cell, i) => {
    const denseIdx = cells.findIndex((c) => c.policy === 'dense' && c.context === cell.context);
    const dense = new Map((denseIdx >= 0 ? byCell[denseIdx]! : []).map((r) => [r.id, r.correct]));
    for (const family of [...families, 'all']) {
      const mine = byCell[i]!.filter((r) => family === 'all' || r.family === family);
      if (mine.length === 0) continue;
      const correct = mine.filter((r) => r.correct).length;
      const ci = wilsonInterval(correct, mine.length);
      const paired = mine.filter((r) => dense.has(r.id));
      const row: Record<string, Cell> = {
        grid: cell.grid,
        policy: cell.policy,
        ...(cell.plan && withPlanLabels ? { plan: cell.plan.label } : {}),
        context: cell.context,
        percent: cell.policy === 'dense' ? 100 : cell.percent,
        family,
        n: mine.length,
        correct,
        accuracy: round(correct / mine.length),
        ciLow: round(ci.low),
        ciHigh: round(ci.high),
      };
      if (cell.policy !== 'dense' && paired.length > 0) {
        const d = paired.filter((r) => dense.get(r.id)).length;
        const k = paired.filter((r) => r.correct).length;
        row.gapVsDensePts = round(((d - k) / paired.length) * 100, 2);
      }
      rows.push(row);
    }
  });
  return rows;
}

/**
 * Per plan label: `gapPts_<label>` (dense minus kascade over all families at the main cell, in
 * points, on the same instances) and `worstFamilyGapPts_<label>`, for choosing a plan on the dev split.
 */
export function planGaps(
  rows: readonly Row[],
  plans: readonly { readonly label: string }[],
  families: readonly string[],
): Record<string, number> {
  const out: Record<string, number> = {};
  const multi = plans.length > 1;
  for (const { label } of plans) {
    const mine = rows.filter(
      (r) => r.grid === 'main' && r.policy === 'kascade' && (!multi || r.plan === label),
    );
    const all = mine.find((r) => r.family === 'all');
    if (typeof all?.gapVsDensePts !== 'number') continue;
    out[`gapPts_${label}`] = all.gapVsDensePts;
    const perFamily = families
      .map((f) => mine.find((r) => r.family === f)?.gapVsDensePts)
      .filter((g): g is number => typeof g === 'number');
    if (perFamily.length > 0) out[`worstFamilyGapPts_${label}`] = Math.max(...perFamily);
  }
  return out;
}

/**
 * Job indices taken one per cell in turn (task jobs; text jobs after them), so that a run cut
 * by a time limit has the same instances in every cell (the first families listed first).
 */
export function roundRobin(todo: readonly number[], jobs: readonly Job[]): number[] {
  const byCell = new Map<number, number[]>();
  const text: number[] = [];
  for (const i of todo) {
    const job = jobs[i]!;
    if (job.kind !== 'task') {
      text.push(i);
      continue;
    }
    const list = byCell.get(job.cell) ?? [];
    list.push(i);
    byCell.set(job.cell, list);
  }
  const lists = [...byCell.values()];
  const out: number[] = [];
  for (let p = 0; lists.some((l) => p < l.length); p++)
    for (const l of lists) if (p < l.length) out.push(l[p]!);
  return [...out, ...text];
}

const bench: Bench = {
  name: 'accuracy',
  description:
    'exact match per task family (95% Wilson interval) and next-token KL from dense of dense, kascade, kascade decode-only, all-heads-pooled, oracle-topk and streaming on the demo model; options after --: --instances N --families a,b --context N --policies a,b --grids main,side --workers N --split dev|test --plans label=file,... --journal FILE --order reverse',
  defaults: { warmup: 0, repeats: 1 },
  async run(ctx): Promise<BenchOutput> {
    const o = parseAccuracyArgs(ctx.benchArgs ?? [], ctx.quick);
    const pkg = o.modelDir && o.heldoutDir ? undefined : findDemoModelPackage();
    const modelDir = path.resolve(o.modelDir ?? path.join(pkg!, 'model'));
    const heldoutDir = path.resolve(o.heldoutDir ?? path.join(pkg!, 'training', 'heldout'));
    const planFiles = (
      o.plans ?? [{ label: 'plan', file: o.planFile ?? path.join(modelDir, 'kascade-plan.json') }]
    ).map((p) => ({ label: p.label, file: path.resolve(p.file) }));
    const plans = planFiles.map(({ label, file }) => {
      let json: string;
      try {
        json = readFileSync(file, 'utf8');
      } catch {
        throw new Error(`accuracy: no plan at ${file}; calibrate one first (packages/demo-model/README.md)`);
      }
      const plan = JSON.parse(json) as PlanLike;
      return { label, file, json, plan, hash: planHash(plan) };
    });
    const planJson = plans[0]!.json;
    const plan = plans[0]!.plan;
    const planOf = (cell: GridCell) => plans.find((p) => p.label === cell.plan?.label)?.plan ?? plan;
    const config = JSON.parse(readFileSync(path.join(modelDir, 'config.json'), 'utf8')) as {
      max_position_embeddings: number;
    };
    const longest = config.max_position_embeddings;
    const test = readInstances(path.join(heldoutDir, `${o.split}.jsonl.gz`));
    if (test.some((r) => r.split !== o.split))
      throw new Error(`accuracy: ${o.split}.jsonl.gz holds records of another split`);

    const cells = gridCells(
      o,
      longest,
      plans.map((p) => ({ label: p.label, hash: p.hash })),
    );
    const jobs: Job[] = [];
    const picked = new Map<number, TaskInstance[]>();
    cells.forEach((cell, i) => {
      const instances = pickInstances(test, cell.context, o.families, cell.perFamily);
      if (instances.length === 0) {
        ctx.progress(`no test instances at ${cell.context} tokens: ${cell.policy} cell skipped`);
        return;
      }
      picked.set(i, instances);
      const spec = policySpec(cell.policy, planOf(cell), cell.percent);
      for (const instance of instances) jobs.push({ kind: 'task', cell: i, spec, instance });
    });
    const klCells = cells
      .map((c, i) => ({ c, i }))
      .filter(({ c }) => c.grid === 'main' && c.policy !== 'dense');
    const texts =
      o.klTexts > 0 ? readTextRuns(path.join(heldoutDir, 'text-heldout.jsonl.gz')).slice(0, o.klTexts) : [];
    if (klCells.length > 0) {
      for (const run of texts) {
        jobs.push({
          kind: 'text',
          run,
          policies: klCells.map(({ c, i }) => ({
            cell: i,
            spec: policySpec(c.policy, planOf(c), c.percent),
          })),
          maxTokens: o.klTokens,
          positions: o.klPositions,
        });
      }
    }
    const workers = o.workers > 1 && !workersAvailable() ? 1 : o.workers;
    if (workers !== o.workers)
      ctx.progress('worker threads need the built bench (dist); running in this thread');
    const journaled = o.journal ? readJournal(o.journal, cells) : new Map<string, JobResult>();
    const keys = jobs.map((job) => jobKey(job, cells));
    const todo = jobs.map((_, i) => i).filter((i) => !journaled.has(keys[i]!));
    if (o.order === 'reverse') todo.reverse();
    if (o.order === 'round-robin') todo.splice(0, todo.length, ...roundRobin(todo, jobs));
    ctx.progress(
      `${cells.length} cells, ${jobs.length} jobs (${jobs.length - todo.length} from the journal), ` +
        `${workers} worker(s); model ${modelDir}`,
    );
    const t0 = performance.now();
    const deadline = o.timeLimitS === undefined ? Number.POSITIVE_INFINITY : t0 + o.timeLimitS * 1000;
    const ran = await runJobs(
      { modelDir, planJson },
      todo.map((i) => jobs[i]!),
      workers,
      (r, done) => {
        const what =
          r.kind === 'task'
            ? `${cells[r.cell]!.policy} ${r.id} ${r.correct ? 'ok' : `x ${JSON.stringify(r.completion)}`}`
            : `KL ${r.id}`;
        ctx.progress(`${done}/${todo.length} ${what} (${(r.ms / 1000).toFixed(1)} s)`);
        if (o.journal) {
          const i = todo.find((j) => {
            const job = jobs[j]!;
            return (
              job.kind === r.kind &&
              (job.kind === 'task' ? job.instance.id : job.run.id) === r.id &&
              (job.kind !== 'task' || r.kind !== 'task' || job.cell === r.cell)
            );
          });
          if (i !== undefined) appendJournal(o.journal, jobs[i]!, r, cells);
        }
      },
      deadline,
    );
    const seconds = (performance.now() - t0) / 1000;
    const byIndex = new Map(todo.map((i, n) => [i, ran[n]!]));
    const all = jobs.map((_, i) => byIndex.get(i) ?? journaled.get(keys[i]!));
    const notRun = all.filter((r) => r === undefined).length;
    if (notRun > 0) ctx.progress(`${notRun} jobs not run (time limit): the rows count what finished`);
    const results = all.filter((r): r is JobResult => r !== undefined);

    const tasks = results.filter((r): r is TaskResult => r.kind === 'task');
    const rows = accuracyRows(cells, tasks, o.families);
    const textResults = results.filter((r): r is Extract<JobResult, { kind: 'text' }> => r.kind === 'text');
    if (textResults.length > 0) {
      const meanTokens = textResults.reduce((s, r) => s + r.tokens, 0) / textResults.length;
      for (const { c, i } of klCells) {
        const values = textResults.flatMap((r) => r.kl.find((k) => k.cell === i)?.values ?? []);
        const sorted = [...values].sort((a, b) => a - b);
        rows.push({
          grid: 'kl',
          policy: c.policy,
          ...(c.plan && plans.length > 1 ? { plan: c.plan.label } : {}),
          context: Math.round(meanTokens),
          percent: c.percent,
          family: 'text',
          n: values.length,
          klMeanNats: round(values.reduce((s, v) => s + v, 0) / values.length, 6),
          klP90Nats: round(sorted[Math.floor(0.9 * (sorted.length - 1))]!, 6),
        });
      }
    }

    // Target figures only from the full main grid (4k, p = 10, every family, >= 40 each, dense and kascade).
    const summary: Record<string, number> = {};
    const mainOf = (policy: string) =>
      cells.findIndex(
        (c) => c.grid === 'main' && c.policy === policy && c.context === 4096 && c.percent === 10,
      );
    const full =
      o.split === 'test' &&
      plans.length === 1 &&
      o.grids.includes('main') &&
      FAMILIES.every((f) => o.families.includes(f)) &&
      POLICIES.every((p) => o.policies.includes(p)) &&
      ['dense', 'kascade'].every((p) => {
        const i = mainOf(p);
        return (
          i >= 0 && FAMILIES.every((f) => tasks.filter((r) => r.cell === i && r.family === f).length >= 40)
        );
      });
    if (full) {
      const pooled = (policy: string, family = 'all') =>
        rows.find(
          (r) => r.grid === 'main' && r.policy === policy && r.context === 4096 && r.family === family,
        );
      summary.denseMeanAccuracy_4k = pooled('dense')!.accuracy as number;
      summary.kascadeGap_p10_4k = round(
        ((pooled('dense')!.accuracy as number) - (pooled('kascade')!.accuracy as number)) * 100,
        2,
      );
      summary.kascadeWorstFamilyGap_p10_4k = Math.max(
        ...FAMILIES.map(
          (f) =>
            ((pooled('dense', f)!.accuracy as number) - (pooled('kascade', f)!.accuracy as number)) * 100,
        ),
      );
      summary.kascadeWorstFamilyGap_p10_4k = round(summary.kascadeWorstFamilyGap_p10_4k, 2);
    }
    // Choosing a plan (on the dev split): each plan's gap to dense, pooled and worst family.
    if (plans.length > 1 || o.split === 'dev') Object.assign(summary, planGaps(rows, plans, o.families));

    return {
      config: {
        ...(o.note !== undefined ? { note: o.note } : {}),
        model: path.relative(process.cwd(), modelDir) || modelDir,
        plan: plans
          .map(
            (p) =>
              `${plans.length > 1 ? `${p.label}=` : ''}${path.relative(process.cwd(), p.file) || p.file}`,
          )
          .join(','),
        planAnchors: plans
          .map((p) => `${plans.length > 1 ? `${p.label}: ` : ''}${p.plan.anchors.join(' ')}`)
          .join('; '),
        planHash: plans.map((p) => `${plans.length > 1 ? `${p.label}=` : ''}${p.hash}`).join(','),
        kMin: plan.budget.kMin,
        tileSize: plan.budget.tileSize,
        split: o.split,
        families: o.families.join(','),
        instancesPerFamily: o.instances,
        sideInstancesPerFamily: o.sideInstances,
        mainContext: o.context,
        mainPercent: o.percent,
        grids: o.grids.join(','),
        decoding: 'greedy; exact match = the completion up to EOS equals the answer',
        interval: 'Wilson 95%',
        klTexts: textResults.length,
        klPositionsPerText: o.klPositions,
        klMaxTokens: o.klTokens,
        workers,
        ...(o.timeLimitS !== undefined ? { timeLimitS: o.timeLimitS } : {}),
        ...(notRun > 0 ? { jobsNotRun: notRun } : {}),
        ...(o.journal
          ? { journal: path.basename(o.journal), jobsFromJournal: jobs.length - todo.length }
          : {}),
        backend: 'cpu',
        seconds: round(seconds, 1),
      },
      rows,
      summary,
    };
  },
};

export default bench;
