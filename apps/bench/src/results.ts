/**
 * The one JSON shape every benchmark writes (the project's RESULTS spec), its validation,
 * and the Markdown table and SVG chart made from it.
 */

/** A cell of a result row: numbers for measurements, strings/booleans for labels. */
export type Cell = number | string | boolean;
export type Row = Readonly<Record<string, Cell>>;

export interface MachineInfo {
  readonly cpu: string;
  readonly cores: number;
  readonly node: string;
  /** GPU model, driver and CUDA version, passed in by GPU benches. */
  readonly gpu?: string;
  readonly driver?: string;
  readonly cuda?: string;
  readonly [extra: string]: string | number | undefined;
}

export interface BenchResults {
  readonly bench: string;
  readonly command: string;
  /** ISO 8601 date of the run. */
  readonly date: string;
  readonly gitCommit: string;
  readonly machine: MachineInfo;
  readonly config: Readonly<Record<string, Cell>>;
  readonly rows: readonly Row[];
  /** Target figures under the key the issue names, as plain finite numbers. */
  readonly summary: Readonly<Record<string, number>>;
}

/** A results object that does not have the RESULTS shape; `path` names the offending field. */
export class ResultsShapeError extends TypeError {
  override readonly name = 'ResultsShapeError';
  constructor(
    readonly path: string,
    problem: string,
  ) {
    super(`results.${path}: ${problem}`);
  }
}

function isRecord(x: unknown): x is Record<string, unknown> {
  return typeof x === 'object' && x !== null && !Array.isArray(x);
}

function isCell(x: unknown): x is Cell {
  return typeof x === 'string' || typeof x === 'boolean' || (typeof x === 'number' && Number.isFinite(x));
}

function requireString(obj: Record<string, unknown>, key: string, path = key): string {
  const v = obj[key];
  if (typeof v !== 'string' || v.length === 0)
    throw new ResultsShapeError(path, 'must be a non-empty string');
  return v;
}

/** Checks `x` has exactly the RESULTS shape and returns it typed; throws {@link ResultsShapeError}. */
export function validateResults(x: unknown): BenchResults {
  if (!isRecord(x)) throw new ResultsShapeError('(root)', 'must be an object');
  const allowed = new Set(['bench', 'command', 'date', 'gitCommit', 'machine', 'config', 'rows', 'summary']);
  for (const key of Object.keys(x)) {
    if (!allowed.has(key)) throw new ResultsShapeError(key, 'is not a field of the results shape');
  }
  requireString(x, 'bench');
  requireString(x, 'command');
  const date = requireString(x, 'date');
  if (!/^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}(\.\d+)?Z$/.test(date)) {
    throw new ResultsShapeError('date', `must be an ISO 8601 UTC date, got ${JSON.stringify(date)}`);
  }
  requireString(x, 'gitCommit');

  const machine = x.machine;
  if (!isRecord(machine)) throw new ResultsShapeError('machine', 'must be an object');
  requireString(machine, 'cpu', 'machine.cpu');
  requireString(machine, 'node', 'machine.node');
  if (!(Number.isInteger(machine.cores) && (machine.cores as number) > 0)) {
    throw new ResultsShapeError('machine.cores', 'must be a positive integer');
  }
  for (const [key, v] of Object.entries(machine)) {
    if (!(typeof v === 'string' || (typeof v === 'number' && Number.isFinite(v)))) {
      throw new ResultsShapeError(`machine.${key}`, 'must be a string or a finite number');
    }
  }

  if (!isRecord(x.config)) throw new ResultsShapeError('config', 'must be an object');
  for (const [key, v] of Object.entries(x.config)) {
    if (!isCell(v))
      throw new ResultsShapeError(`config.${key}`, 'must be a finite number, string or boolean');
  }

  if (!Array.isArray(x.rows)) throw new ResultsShapeError('rows', 'must be an array');
  x.rows.forEach((row: unknown, i: number) => {
    if (!isRecord(row)) throw new ResultsShapeError(`rows[${i}]`, 'must be an object');
    if (Object.keys(row).length === 0) throw new ResultsShapeError(`rows[${i}]`, 'must not be empty');
    for (const [key, v] of Object.entries(row)) {
      if (!isCell(v)) {
        throw new ResultsShapeError(`rows[${i}].${key}`, 'must be a finite number, string or boolean');
      }
    }
  });

  if (!isRecord(x.summary)) throw new ResultsShapeError('summary', 'must be an object');
  for (const [key, v] of Object.entries(x.summary)) {
    if (!(typeof v === 'number' && Number.isFinite(v))) {
      throw new ResultsShapeError(
        `summary.${key}`,
        'must be a finite number (leave out what was not measured)',
      );
    }
  }
  return x as unknown as BenchResults;
}

/** The columns of a row set: the union of the rows' keys, in first-seen order. */
export function columnsOf(rows: readonly Row[]): string[] {
  const seen = new Set<string>();
  for (const row of rows) for (const key of Object.keys(row)) seen.add(key);
  return [...seen];
}

/** A cell as printed: numbers to at most 4 significant decimals, no exponent for ordinary sizes. */
export function formatCell(v: Cell | undefined): string {
  if (v === undefined) return '';
  if (typeof v !== 'number') return String(v);
  if (Number.isInteger(v)) return String(v);
  const abs = Math.abs(v);
  if (abs >= 1000) return v.toFixed(1);
  if (abs >= 1) return v.toFixed(2);
  return v.toPrecision(3);
}

/** A plain-text table (for the terminal). */
export function textTable(rows: readonly Row[]): string {
  const cols = columnsOf(rows);
  const cells = [cols, ...rows.map((row) => cols.map((c) => formatCell(row[c])))];
  const widths = cols.map((_, j) => Math.max(...cells.map((r) => r[j].length)));
  return cells
    .map((r, i) => {
      const line = r.map((c, j) => c.padStart(widths[j])).join('  ');
      return i === 0 ? `${line}\n${widths.map((w) => '-'.repeat(w)).join('  ')}` : line;
    })
    .join('\n');
}

function escapeMd(s: string): string {
  return s.replace(/\|/g, '\\|');
}

/** The Markdown report of a run: provenance, config, the rows table and the summary. */
export function toMarkdown(r: BenchResults): string {
  const cols = columnsOf(r.rows);
  const machine = Object.entries(r.machine)
    .filter(([, v]) => v !== undefined)
    .map(([k, v]) => `${k}: ${v}`)
    .join(', ');
  const config = Object.entries(r.config)
    .map(([k, v]) => `${k}: ${formatCell(v)}`)
    .join(', ');
  const lines = [
    `# ${r.bench}`,
    '',
    `- command: \`${r.command}\``,
    `- date: ${r.date}, commit: ${r.gitCommit}`,
    `- machine: ${escapeMd(machine)}`,
    `- config: ${escapeMd(config)}`,
    '',
    `| ${cols.map(escapeMd).join(' | ')} |`,
    `|${cols.map(() => '---:').join('|')}|`,
    ...r.rows.map((row) => `| ${cols.map((c) => escapeMd(formatCell(row[c]))).join(' | ')} |`),
  ];
  const summary = Object.entries(r.summary);
  if (summary.length > 0) {
    lines.push('', '## Summary', '', '| figure | value |', '|---|---:|');
    for (const [k, v] of summary) lines.push(`| ${escapeMd(k)} | ${formatCell(v)} |`);
  }
  return `${lines.join('\n')}\n`;
}

function escapeXml(s: string): string {
  return s.replace(/&/g, '&amp;').replace(/</g, '&lt;').replace(/>/g, '&gt;').replace(/"/g, '&quot;');
}

/**
 * A horizontal bar chart of the rows' first time column (`medianUs` or `medianMs`), one bar
 * per row labelled by its string/boolean cells and integer shape cells; `undefined` when
 * no row has such a column.
 */
export function toSvg(r: BenchResults): string | undefined {
  const key = ['medianUs', 'medianMs'].find((k) => r.rows.some((row) => typeof row[k] === 'number'));
  if (key === undefined) return undefined;
  const unit = key.endsWith('Us') ? 'µs' : 'ms';
  const bars = r.rows
    .filter((row) => typeof row[key] === 'number')
    .map((row) => ({
      label: Object.entries(row)
        .filter(([k, v]) => typeof v !== 'number' || (Number.isInteger(v) && !/(Us|Ms|PerS)$/.test(k)))
        .map(([k, v]) => (typeof v === 'number' ? `${k}=${v}` : String(v)))
        .join(' '),
      value: row[key] as number,
    }));
  const max = Math.max(...bars.map((b) => b.value), Number.MIN_VALUE);
  const min = Math.min(...bars.map((b) => b.value));
  // Past a 100x spread a linear axis hides the small bars: use a log axis from min / 2.
  const log = min > 0 && max / min > 100;
  const scale = (v: number) => (log ? Math.log10(v / (min / 2)) / Math.log10(max / (min / 2)) : v / max);
  const labelW = 330;
  const barW = 420;
  const rowH = 22;
  const top = 34;
  const height = top + bars.length * rowH + 10;
  const width = labelW + barW + 110;
  const parts = [
    `<svg xmlns="http://www.w3.org/2000/svg" width="${width}" height="${height}" font-family="sans-serif" font-size="12">`,
    `<text x="8" y="20" font-size="14" font-weight="bold">${escapeXml(`${r.bench}: ${key} (${unit}${log ? ', log scale' : ''}, lower is better)`)}</text>`,
  ];
  bars.forEach((b, i) => {
    const y = top + i * rowH;
    const w = Math.max(1, scale(b.value) * barW);
    parts.push(
      `<text x="${labelW - 6}" y="${y + 15}" text-anchor="end">${escapeXml(b.label)}</text>`,
      `<rect x="${labelW}" y="${y + 3}" width="${w.toFixed(1)}" height="${rowH - 6}" fill="#3b6ea5"/>`,
      `<text x="${(labelW + w + 4).toFixed(1)}" y="${y + 15}">${escapeXml(formatCell(b.value))}</text>`,
    );
  });
  parts.push('</svg>');
  return `${parts.join('\n')}\n`;
}
