#!/usr/bin/env node
/**
 * `kascade`: the engine's command line.
 *
 *   kascade calibrate --model DIR|FILE.gguf --data FILE.jsonl --anchors 5|auto --out plan.json
 *   kascade generate  --model DIR|FILE.gguf [--plan plan.json] [--policy kascade] --prompt "..."
 *
 * Without --model: @kascade/demo-model (and its plan) if installed, else the random-weight model.
 */
import { realpathSync } from 'node:fs';
import { readFile, writeFile } from 'node:fs/promises';
import { fileURLToPath } from 'node:url';
import { parseArgs } from 'node:util';
import { serializePlan } from '@kascade/anchors';
import type { PolicySpec } from './api.js';
import { type CalibrationProgress, type DevPrompt, planFromStatistics } from './calibrate.js';
import { createEngine } from './engine.js';

export interface CliIo {
  readonly stdout: { write(s: string): unknown };
  readonly stderr: { write(s: string): unknown; readonly isTTY?: boolean };
}

const USAGE = `kascade: Kascade sparse-attention engine

  kascade calibrate --data FILE.jsonl --anchors K|auto --out plan.json [options]
      --model DIR|FILE.gguf|random
                              checkpoint (default: @kascade/demo-model with its plan if it is
                              installed, else the built-in random-weight model; 'random' asks for that)
      --data FILE.jsonl       one prompt per line: {"prompt": "..."}, {"text": "..."} or a JSON string;
                              {"prompt": "...", "completion": "..."} also decodes the completion
                              teacher-forced, so similarity is measured from decode steps too
      --anchors K|auto[,...]  anchor count (layer 0 included), or the fewest reaching --tau; several
                              (e.g. 4,5,6,auto) share one calibration pass, --out then needs {k}
      --out FILE              where the plan goes ({k} is replaced by each --anchors value)
      --attend-from both|prefill|decode
                              query positions similarity is measured from (default both)
      --report FILE           also write the layer similarity matrices (all sources), importance
                              and decode steps as JSON
      --tau X                 threshold of --anchors auto (default 0.9)
      --percent P --kmin K --round-to R --tile T   budget and tile size (defaults 10, 128, 1, 32)
      --max-prompts N         use the first N prompts
      --max-tokens N          cut prompts to N tokens

  kascade generate --prompt TEXT [--model DIR|FILE.gguf|random] [--plan plan.json]
      [--policy dense|kascade|oracle-topk|all-heads-pooled|streaming] [--max-tokens N]
      [--temperature X] [--seed N]
`;

export class CliError extends Error {
  override readonly name = 'CliError';
}

function numberOption(name: string, value: string | undefined, integer = true): number | undefined {
  if (value === undefined) return undefined;
  const x = Number(value);
  if (!Number.isFinite(x) || (integer && !Number.isInteger(x))) {
    throw new CliError(
      `--${name} must be ${integer ? 'an integer' : 'a number'}, got ${JSON.stringify(value)}`,
    );
  }
  return x;
}

/** Reads a JSONL development set: one prompt per non-empty line. */
export function parseDevSet(text: string, file: string): DevPrompt[] {
  const out: DevPrompt[] = [];
  text.split('\n').forEach((line, i) => {
    if (line.trim() === '') return;
    let value: unknown;
    try {
      value = JSON.parse(line);
    } catch (e) {
      throw new CliError(`${file}:${i + 1}: not valid JSON (${(e as Error).message})`);
    }
    if (typeof value === 'string') out.push(value);
    else if (value && typeof value === 'object') {
      const o = value as { prompt?: unknown; text?: unknown; completion?: unknown };
      const prompt =
        typeof o.prompt === 'string' ? o.prompt : typeof o.text === 'string' ? o.text : undefined;
      if (prompt === undefined)
        throw new CliError(`${file}:${i + 1}: expected a "prompt" or "text" string field`);
      if (o.completion !== undefined && typeof o.completion !== 'string')
        throw new CliError(`${file}:${i + 1}: "completion" must be a string`);
      out.push(typeof o.completion === 'string' ? { prompt, completion: o.completion } : prompt);
    } else {
      throw new CliError(`${file}:${i + 1}: expected a JSON string or object`);
    }
  });
  if (out.length === 0) throw new CliError(`${file}: no prompts`);
  return out;
}

/** `[#####.....] 3/10 prompts  1234 tokens  4.2 s` */
export function progressBar(p: CalibrationProgress, width = 30): string {
  const filled = Math.round((p.done / p.total) * width);
  const bar = '#'.repeat(filled) + '.'.repeat(width - filled);
  return `[${bar}] ${p.done}/${p.total} prompts  ${p.tokens} tokens  ${(p.elapsedMs / 1000).toFixed(1)} s`;
}

function pad(s: string, n: number): string {
  return s.length >= n ? s : s + ' '.repeat(n - s.length);
}

/** `Sim[a][l][j][u]` as nested arrays (null where `a > l`), rounded to 6 digits. */
function headMatrix(sim: { layers: number; kvHeads: number; values: Float64Array }): (number | null)[][][][] {
  const { layers: L, kvHeads: G, values } = sim;
  return Array.from({ length: L }, (_, a) =>
    Array.from({ length: L }, (_, l) =>
      Array.from({ length: G }, (_, j) =>
        Array.from({ length: G }, (_, u) => {
          const x = values[((a * L + l) * G + j) * G + u]!;
          return Number.isNaN(x) ? null : Math.round(x * 1e6) / 1e6;
        }),
      ),
    ),
  );
}

/** `--anchors 4` / `auto` / `4,5,6,auto`: each an integer or 'auto', no repeats. */
export function parseAnchorList(value: string): (number | 'auto')[] {
  const items = value.split(',').map((x) => x.trim());
  const out = items.map((x) => (x === 'auto' ? 'auto' : numberOption('anchors', x)!));
  if (items.some((x) => x === '') || new Set(out).size !== out.length)
    throw new CliError(`--anchors must list distinct counts or 'auto', got ${JSON.stringify(value)}`);
  return out;
}

async function calibrate(args: string[], io: CliIo): Promise<void> {
  const { values } = parseArgs({
    args,
    options: {
      model: { type: 'string' },
      data: { type: 'string' },
      anchors: { type: 'string' },
      out: { type: 'string' },
      tau: { type: 'string' },
      percent: { type: 'string' },
      kmin: { type: 'string' },
      'round-to': { type: 'string' },
      tile: { type: 'string' },
      'max-prompts': { type: 'string' },
      'max-tokens': { type: 'string' },
      'attend-from': { type: 'string' },
      report: { type: 'string' },
    },
    strict: true,
  });
  if (!values.data) throw new CliError('--data FILE.jsonl is required');
  if (!values.anchors) throw new CliError('--anchors K|auto is required');
  if (!values.out) throw new CliError('--out plan.json is required');
  const anchorList = parseAnchorList(values.anchors);
  if (anchorList.length > 1 && !values.out.includes('{k}'))
    throw new CliError('--out must contain {k} when --anchors lists several values');
  const attendFrom = values['attend-from'] ?? 'both';
  if (attendFrom !== 'both' && attendFrom !== 'prefill' && attendFrom !== 'decode')
    throw new CliError(`--attend-from must be both, prefill or decode, got ${JSON.stringify(attendFrom)}`);
  const tau = numberOption('tau', values.tau, false);
  let devSet = parseDevSet(await readFile(values.data, 'utf8'), values.data);
  const maxPrompts = numberOption('max-prompts', values['max-prompts']);
  if (maxPrompts !== undefined) devSet = devSet.slice(0, maxPrompts);
  const engine = await createEngine({ model: values.model, backend: 'cpu' });
  try {
    const m = engine.model;
    const completions = devSet.filter((p) => typeof p !== 'string' && p.completion).length;
    io.stderr.write(
      `model ${m.id}: ${m.layers} layers, ${m.heads} heads, ${m.kvHeads} KV heads, head dim ${m.headDim}` +
        `${m.randomWeights ? ' (random weights)' : ''}; from ${engine.modelSource}\ncalibrating on ${devSet.length} prompts from ${values.data}` +
        ` (${completions} with a completion; similarity from ${attendFrom === 'both' ? 'prefill tiles and decode steps' : attendFrom === 'prefill' ? 'prefill tiles' : 'decode steps'})\n`,
    );
    const tty = io.stderr.isTTY === true;
    const result = await engine.calibrateWithStatistics(devSet, {
      anchors: anchorList[0]!,
      tau,
      budget: {
        percent: numberOption('percent', values.percent, false),
        kMin: numberOption('kmin', values.kmin),
        roundTo: numberOption('round-to', values['round-to']),
      },
      tileSize: numberOption('tile', values.tile),
      maxPromptTokens: numberOption('max-tokens', values['max-tokens']),
      attendFrom,
      onProgress: (p) => io.stderr.write(tty ? `\r${progressBar(p)}` : `${progressBar(p)}\n`),
    });
    if (tty) io.stderr.write('\n');
    const { layerSimilarity, bySource } = result;
    if (values.report) {
      const matrix = (m: number[][] | undefined) =>
        m?.map((row) => row.map((x) => (Number.isNaN(x) ? null : Math.round(x * 1e6) / 1e6)));
      await writeFile(
        values.report,
        `${JSON.stringify(
          {
            prompts: result.statistics.prompts,
            decodeSteps: result.decodeSteps,
            attendFrom,
            budget: result.statistics.budget,
            tileSize: result.statistics.tileSize,
            importance: result.statistics.importance,
            layerSimilarity: matrix(layerSimilarity),
            prefillSimilarity: matrix(bySource.prefill) ?? null,
            decodeSimilarity: matrix(bySource.decode) ?? null,
            // Sim[a][l][j][u] of the measured source(s): KV head j of layer l borrowing head u of layer a.
            headSimilarity: headMatrix(result.statistics.similarity),
          },
          null,
          1,
        )}\n`,
      );
    }
    const lines: string[] = [`decode steps measured: ${result.decodeSteps}`];
    for (const anchors of anchorList) {
      const plan =
        anchors === anchorList[0]
          ? result.plan
          : planFromStatistics(
              { id: engine.cpuModel.id, config: engine.cpuModel.config },
              result.statistics,
              layerSimilarity,
              anchors,
              tau,
            );
      const out = values.out.replaceAll('{k}', String(anchors));
      await writeFile(out, serializePlan(plan));
      const cal = plan.calibration!;
      const source = (which: number[][] | undefined, a: number, l: number) =>
        which === undefined ? '-' : which[a]![l]!.toFixed(4);
      lines.push(
        '',
        `anchors: ${plan.anchors.join(' ')}   (--anchors ${anchors}, objective ${cal.objective.toFixed(4)}, ${cal.prompts} prompts)`,
        `${pad('layer', 6)}${pad('role', 8)}${pad('anchor', 7)}${pad('sim', 8)}${pad('prefill', 9)}${pad('decode', 8)}${pad('importance', 12)}${pad('best other', 12)}head map`,
      );
      let anchor = 0;
      for (let l = 0; l < plan.model.layers; l++) {
        const isAnchor = plan.anchors.includes(l);
        if (isAnchor) anchor = l;
        // The best similarity any earlier layer offers (what an anchor here forgoes by being one).
        let bestOther = Number.NaN;
        for (let a = 0; a < l; a++)
          bestOther = Number.isNaN(bestOther)
            ? layerSimilarity[a]![l]!
            : Math.max(bestOther, layerSimilarity[a]![l]!);
        lines.push(
          `${pad(String(l), 6)}${pad(l === 0 ? 'dense' : isAnchor ? 'anchor' : 'reuse', 8)}${pad(String(anchor), 7)}` +
            `${pad(cal.layerSimilarity[l]!.toFixed(4), 8)}${pad(source(bySource.prefill, anchor, l), 9)}${pad(source(bySource.decode, anchor, l), 8)}` +
            `${pad(cal.importance[l]!.toFixed(4), 12)}` +
            `${pad(Number.isNaN(bestOther) ? '-' : bestOther.toFixed(4), 12)}[${plan.headMaps[l]!.join(',')}]`,
        );
      }
      lines.push(`plan written to ${out}`);
    }
    io.stdout.write(`${lines.join('\n')}\n`);
  } finally {
    await engine.dispose();
  }
}

async function generate(args: string[], io: CliIo): Promise<void> {
  const { values } = parseArgs({
    args,
    options: {
      model: { type: 'string' },
      plan: { type: 'string' },
      policy: { type: 'string' },
      prompt: { type: 'string' },
      'max-tokens': { type: 'string' },
      temperature: { type: 'string' },
      seed: { type: 'string' },
    },
    strict: true,
  });
  if (values.prompt === undefined) throw new CliError('--prompt TEXT is required');
  const engine = await createEngine({
    model: values.model,
    plan: values.plan,
    backend: 'cpu',
    ...(values.policy ? { policy: values.policy as PolicySpec['kind'] } : {}),
  });
  try {
    io.stderr.write(`model ${engine.model.id} (from ${engine.modelSource})\n`);
    const gen = engine.generate(values.prompt, {
      maxTokens: numberOption('max-tokens', values['max-tokens']) ?? 64,
      temperature: numberOption('temperature', values.temperature, false),
      seed: numberOption('seed', values.seed),
    });
    for await (const chunk of gen) io.stdout.write(chunk.text);
    const u = await gen.usage;
    io.stderr.write(
      `\n[${u.kascade.policy}] ${u.promptTokens} prompt + ${u.completionTokens} generated tokens, ` +
        `prefill ${u.prefillTokensPerS.toFixed(1)} tok/s, decode ${u.decodeTokensPerS.toFixed(1)} tok/s, ` +
        `attention ${u.attentionMs.toFixed(1)} ms, effective k ${u.kascade.effectiveK.toFixed(1)} of ${u.kascade.contextKeys.toFixed(1)}, ` +
        `finish: ${u.finishReason}\n`,
    );
  } finally {
    await engine.dispose();
  }
}

/** Runs the CLI; returns the exit code. */
export async function main(argv: readonly string[], io: CliIo = process): Promise<number> {
  const [command, ...rest] = argv;
  try {
    if (command === 'calibrate') await calibrate(rest, io);
    else if (command === 'generate') await generate(rest, io);
    else if (command === undefined || command === '--help' || command === '-h' || command === 'help') {
      io.stdout.write(USAGE);
      return command === undefined ? 1 : 0;
    } else throw new CliError(`unknown command ${JSON.stringify(command)}\n\n${USAGE}`);
    return 0;
  } catch (e) {
    io.stderr.write(
      `kascade: ${e instanceof Error ? `${e.name === 'Error' ? '' : `${e.name}: `}${e.message}` : String(e)}\n`,
    );
    return 2;
  }
}

/** True when this file is the process's entry point (the `kascade` bin), not an import. */
function invokedDirectly(): boolean {
  const arg = process.argv[1];
  if (arg === undefined) return false;
  try {
    return realpathSync(arg) === realpathSync(fileURLToPath(import.meta.url));
  } catch {
    return false;
  }
}

if (invokedDirectly()) {
  main(process.argv.slice(2)).then((code) => {
    process.exitCode = code;
  });
}
