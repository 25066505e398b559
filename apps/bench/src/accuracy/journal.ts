/**
 * The accuracy bench's journal: one JSON line per finished job, appended as the job ends, so
 * a long grid that is cut short (a time limit, a crash) keeps what it finished, and a grid can
 * be shared between machines (each appends to its own journal; a last run over their
 * concatenation runs nothing new and writes the results).
 *
 * Jobs are keyed by what they compute, not by their index: a task job by its cell
 * (policy, context, percent, and for kascade, its decode-only variant and all-heads-pooled the
 * hash of the plan's anchors, head maps and budget, so a new plan never reuses old rows) and
 * instance id; a text (KL) job by its run id, token and position
 * counts and the cells it compares. Cell indices inside results are stored as cell keys and
 * mapped back to the current grid when read, so a journal outlives a change of grid order.
 */
import { appendFileSync, existsSync, readFileSync } from 'node:fs';
import { cellId, type GridCell } from './options.js';
import type { Job, JobResult } from './runner.js';

/** A journal line that is not a finished job of this bench. */
export class JournalError extends Error {
  override readonly name = 'JournalError';
}

/** The cell's key in journal lines: policy, context, percent, and the plan hash of a plan-dependent policy. */
export function cellKey(cell: GridCell): string {
  return cellId(cell);
}

export function jobKey(job: Job, cells: readonly GridCell[]): string {
  if (job.kind === 'task') return `task ${cellKey(cells[job.cell]!)} ${job.instance.id}`;
  const compared = job.policies.map((p) => cellKey(cells[p.cell]!)).sort();
  return `text ${job.run.id} ${job.maxTokens}x${job.positions} ${compared.join(',')}`;
}

type StoredResult =
  | (Omit<Extract<JobResult, { kind: 'task' }>, 'cell'> & { cell: string })
  | (Omit<Extract<JobResult, { kind: 'text' }>, 'kl'> & {
      kl: { cell: string; values: number[] }[];
    });

function store(result: JobResult, cells: readonly GridCell[]): StoredResult {
  if (result.kind === 'task') return { ...result, cell: cellKey(cells[result.cell]!) };
  return {
    ...result,
    kl: result.kl.map((k) => ({ cell: cellKey(cells[k.cell]!), values: [...k.values] })),
  };
}

/** Appends one finished job (synchronously: a kill right after loses nothing). */
export function appendJournal(file: string, job: Job, result: JobResult, cells: readonly GridCell[]): void {
  appendFileSync(file, `${JSON.stringify({ key: jobKey(job, cells), result: store(result, cells) })}\n`);
}

/**
 * Reads a journal (a missing file is an empty journal) into results by job key, with cell
 * keys mapped to indices of `cells`; lines for cells this grid lacks are skipped. A torn last
 * line (the writer was killed mid-line) is ignored; any other malformed line is an error.
 */
export function readJournal(file: string, cells: readonly GridCell[]): Map<string, JobResult> {
  const out = new Map<string, JobResult>();
  if (!existsSync(file)) return out;
  const index = new Map(cells.map((c, i) => [cellKey(c), i]));
  const lines = readFileSync(file, 'utf8').split('\n');
  lines.forEach((line, n) => {
    if (line.trim() === '') return;
    let entry: { key?: unknown; result?: StoredResult };
    try {
      entry = JSON.parse(line) as { key?: unknown; result?: StoredResult };
    } catch (e) {
      if (n === lines.length - 1) return; // torn last line
      throw new JournalError(`${file}:${n + 1}: not JSON (${(e as Error).message})`);
    }
    const r = entry.result;
    if (typeof entry.key !== 'string' || !r || (r.kind !== 'task' && r.kind !== 'text'))
      throw new JournalError(`${file}:${n + 1}: not a journal entry (needs "key" and a task/text "result")`);
    if (r.kind === 'task') {
      const cell = index.get(r.cell);
      if (cell !== undefined) out.set(entry.key, { ...r, cell });
      return;
    }
    const kl = r.kl.map((k) => ({ cell: index.get(k.cell), values: k.values }));
    if (kl.some((k) => k.cell === undefined)) return;
    out.set(entry.key, { ...r, kl: kl as { cell: number; values: number[] }[] });
  });
  return out;
}
