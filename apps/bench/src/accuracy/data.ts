/** The held-out task instances and natural text of `@kascade/demo-model` (gzipped JSONL). */
import { existsSync, readFileSync } from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { gunzipSync } from 'node:zlib';

/** The six task families, in the order tables list them. */
export const FAMILIES = [
  'niah_single',
  'niah_multikey',
  'niah_multivalue',
  'niah_multiquery',
  'vt',
  'kv',
] as const;
export type Family = (typeof FAMILIES)[number];

/** One held-out instance: a raw prompt (the engine adds BOS) whose expected output is `" " + answer`, then EOS. */
export interface TaskInstance {
  readonly id: string;
  readonly split: string;
  readonly family: Family;
  /** The nominal context the instance was made for (1024, 2048, 4096). */
  readonly length: number;
  readonly promptTokens: number;
  readonly prompt: string;
  readonly answer: string;
}

/** A run of held-out natural text for the next-token KL check. */
export interface TextRun {
  readonly id: string;
  readonly text: string;
}

/** A data file that is missing or malformed; the message names the file and line. */
export class AccuracyDataError extends Error {
  override readonly name = 'AccuracyDataError';
}

function readJsonlGz(file: string): unknown[] {
  if (!existsSync(file)) throw new AccuracyDataError(`${file}: not found`);
  const text = (file.endsWith('.gz') ? gunzipSync(readFileSync(file)) : readFileSync(file)).toString('utf8');
  return text
    .split('\n')
    .filter((l) => l.trim() !== '')
    .map((line, i) => {
      try {
        return JSON.parse(line) as unknown;
      } catch (e) {
        throw new AccuracyDataError(`${file}:${i + 1}: not valid JSON (${(e as Error).message})`);
      }
    });
}

const isRecord = (x: unknown): x is Record<string, unknown> => typeof x === 'object' && x !== null;

/** Reads `dev.jsonl.gz` or `test.jsonl.gz`: every record checked for the fields the suite uses. */
export function readInstances(file: string): TaskInstance[] {
  return readJsonlGz(file).map((r, i) => {
    const where = `${file}:${i + 1}`;
    if (!isRecord(r)) throw new AccuracyDataError(`${where}: expected an object`);
    for (const k of ['id', 'split', 'family', 'prompt', 'answer'] as const) {
      if (typeof r[k] !== 'string') throw new AccuracyDataError(`${where}: field ${k} must be a string`);
    }
    for (const k of ['length', 'promptTokens'] as const) {
      if (!Number.isInteger(r[k])) throw new AccuracyDataError(`${where}: field ${k} must be an integer`);
    }
    if (!(FAMILIES as readonly string[]).includes(r.family as string)) {
      throw new AccuracyDataError(`${where}: unknown family ${JSON.stringify(r.family)}`);
    }
    return {
      id: r.id as string,
      split: r.split as string,
      family: r.family as Family,
      length: r.length as number,
      promptTokens: r.promptTokens as number,
      prompt: r.prompt as string,
      answer: r.answer as string,
    };
  });
}

/** Reads `text-heldout.jsonl.gz`. */
export function readTextRuns(file: string): TextRun[] {
  return readJsonlGz(file).map((r, i) => {
    if (!isRecord(r) || typeof r.text !== 'string' || typeof r.id !== 'string') {
      throw new AccuracyDataError(`${file}:${i + 1}: expected {id, text} strings`);
    }
    return { id: r.id, text: r.text };
  });
}

/**
 * `packages/demo-model` of this repository: looked up from `start` (default: the working
 * directory, then this module's folder) upwards.
 */
export function findDemoModelPackage(start?: string): string {
  const starts = start ? [start] : [process.cwd(), path.dirname(fileURLToPath(import.meta.url))];
  for (const s of starts) {
    let dir = path.resolve(s);
    for (;;) {
      const candidate = path.join(dir, 'packages', 'demo-model');
      if (existsSync(path.join(candidate, 'model', 'config.json'))) return candidate;
      const up = path.dirname(dir);
      if (up === dir) break;
      dir = up;
    }
  }
  throw new AccuracyDataError(
    'packages/demo-model/model not found above the working directory; pass -- --model DIR --heldout DIR',
  );
}

/**
 * Up to `perFamily` instances of each family at `length`, in file order (so the same
 * command picks the same instances).
 */
export function pickInstances(
  all: readonly TaskInstance[],
  length: number,
  families: readonly Family[],
  perFamily: number,
): TaskInstance[] {
  const out: TaskInstance[] = [];
  for (const f of families) {
    out.push(...all.filter((r) => r.length === length && r.family === f).slice(0, perFamily));
  }
  return out;
}
