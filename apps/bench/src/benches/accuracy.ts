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
import { type PlanLike, POLICIES, policySpec } from '../accuracy/policies.js';
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

const bench: Bench = {
  name: 'accuracy',
  description:
    'exact match per task family (95% Wilson interval) and next-token KL from dense of dense, kascade, kascade decode-only, all-heads-pooled, oracle-topk and streaming on the demo model; options after --: --instances N --families a,b --context N --policies a,b --grids main,side --workers N',
  defaults: { warmup: 0, repeats: 1 },
  async run(ctx): Promise<BenchOutput> {
    const o = parseAccuracyArgs(ctx.benchArgs ?? [], ctx.quick);
    const pkg = o.modelDir && o.heldoutDir ? undefined : findDemoModelPackage();
    const modelDir = path.resolve(o.modelDir ?? path.join(pkg!, 'model'));
    const heldoutDir = path.resolve(o.heldoutDir ?? path.join(pkg!, 'training', 'heldout'));
    const planFile = path.resolve(o.planFile ?? path.join(modelDir, 'kascade-plan.json'));
    let planJson: string;
    try {
      planJson = readFileSync(planFile, 'utf8');
    } catch {
      throw new Error(
        `accuracy: no plan at ${planFile}; calibrate one first (packages/demo-model/README.md)`,
      );
    }
    const plan = JSON.parse(planJson) as PlanLike;
    const config = JSON.parse(readFileSync(path.join(modelDir, 'config.json'), 'utf8')) as {
      max_position_embeddings: number;
    };
    const longest = config.max_position_embeddings;
    const test = readInstances(path.join(heldoutDir, 'test.jsonl.gz'));
    if (test.some((r) => r.split !== 'test'))
      throw new Error('accuracy: test.jsonl.gz holds records of another split');

    const cells = gridCells(o, longest);
    const jobs: Job[] = [];
    const picked = new Map<number, TaskInstance[]>();
    cells.forEach((cell, i) => {
      const instances = pickInstances(test, cell.context, o.families, cell.perFamily);
      if (instances.length === 0) {
        ctx.progress(`no test instances at ${cell.context} tokens: ${cell.policy} cell skipped`);
        return;
      }
      picked.set(i, instances);
      const spec = policySpec(cell.policy, plan, cell.percent);
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
          policies: klCells.map(({ c, i }) => ({ cell: i, spec: policySpec(c.policy, plan, c.percent) })),
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
    ctx.progress(
      `${cells.length} cells, ${jobs.length} jobs (${jobs.length - todo.length} from the journal), ` +
        `${workers} worker(s); model ${modelDir}`,
    );
    const t0 = performance.now();
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
    );
    const seconds = (performance.now() - t0) / 1000;
    const byIndex = new Map(todo.map((i, n) => [i, ran[n]!]));
    const results = jobs.map((_, i) => byIndex.get(i) ?? journaled.get(keys[i]!)!);

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

    return {
      config: {
        ...(o.note !== undefined ? { note: o.note } : {}),
        model: path.relative(process.cwd(), modelDir) || modelDir,
        plan: path.relative(process.cwd(), planFile) || planFile,
        planAnchors: plan.anchors.join(' '),
        kMin: plan.budget.kMin,
        tileSize: plan.budget.tileSize,
        split: 'test',
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
