/** The accuracy suite's own options (what follows `--` on the kascade-bench command line) and its grid. */
import { parseArgs } from 'node:util';
import { FAMILIES, type Family } from './data.js';
import { POLICIES, type PolicyName } from './policies.js';

/** A bad accuracy option; the message names it. */
export class AccuracyOptionError extends RangeError {
  override readonly name = 'AccuracyOptionError';
}

export interface AccuracyOptions {
  /** Instances per family in each main-grid cell. */
  readonly instances: number;
  /** Instances per family in each side-grid cell. */
  readonly sideInstances: number;
  readonly families: readonly Family[];
  readonly policies: readonly PolicyName[];
  /** Context of the main grid (the test split has 1024, 2048 and 4096). */
  readonly context: number;
  /** Budget percent of the main grid. */
  readonly percent: number;
  readonly grids: readonly ('main' | 'side')[];
  /**
   * JSONL file of finished jobs: each finished job is appended at once, and jobs already in it
   * are not run again. A run that is cut short loses nothing; two machines can share a grid
   * (one with `order: 'reverse'`), then one more run over both journals writes the results.
   */
  readonly journal?: string;
  /**
   * Order in which jobs are started: as listed (cell by cell), reversed, or `round-robin` (one
   * job per cell in turn, so a cut run has the same instances in every cell).
   */
  readonly order: 'forward' | 'reverse' | 'round-robin';
  /** Held-out text runs for the KL check (0: none). */
  readonly klTexts: number;
  /** Predictions per text at which KL is measured. */
  readonly klPositions: number;
  /** Texts are cut to this many tokens. */
  readonly klTokens: number;
  readonly workers: number;
  /**
   * Start no job after this many seconds (the run then reports what finished and what the
   * journal holds; 0 runs nothing: results from the journal alone). Default: no limit.
   */
  readonly timeLimitS?: number;
  readonly modelDir?: string;
  readonly heldoutDir?: string;
  readonly planFile?: string;
  /**
   * Several plans compared in one run (`--plans k4=a.json,k6=b.json`): each plan-dependent
   * policy (kascade, its decode-only variant, all-heads-pooled) gets one cell per plan.
   */
  readonly plans?: readonly { readonly label: string; readonly file: string }[];
  /** Which held-out split the task instances come from: `test` (the suite) or `dev` (choosing a plan). */
  readonly split: 'dev' | 'test';
  /** A label recorded in the results' config (e.g. what run this is). */
  readonly note?: string;
}

function int(name: string, v: string | undefined, fallback: number, min: number): number {
  if (v === undefined) return fallback;
  if (!/^\d+$/.test(v) || Number(v) < min)
    throw new AccuracyOptionError(`--${name} must be an integer >= ${min}, got ${JSON.stringify(v)}`);
  return Number(v);
}

function list<T extends string>(
  name: string,
  v: string | undefined,
  allowed: readonly T[],
  fallback: readonly T[],
): T[] {
  if (v === undefined) return [...fallback];
  const items = v
    .split(',')
    .map((s) => s.trim())
    .filter((s) => s !== '');
  if (items.length === 0)
    throw new AccuracyOptionError(`--${name} needs at least one of ${allowed.join(', ')}`);
  for (const item of items) {
    if (!(allowed as readonly string[]).includes(item)) {
      throw new AccuracyOptionError(
        `--${name}: unknown ${JSON.stringify(item)}; known: ${allowed.join(', ')}`,
      );
    }
  }
  return [...new Set(items)] as T[];
}

/**
 * Parses the bench's arguments. Full defaults: the grid (4k, p = 10, 40 per family,
 * all six policies; side grid 9 per family so a cell has >= 50; KL on 40 texts x 64
 * positions). `quick`: 1k, 1 per family, main grid only, KL on 1 text x 8 positions.
 */
export function parseAccuracyArgs(args: readonly string[], quick: boolean): AccuracyOptions {
  let values: Record<string, string | undefined>;
  try {
    values = parseArgs({
      args: [...args],
      options: Object.fromEntries(
        [
          'instances',
          'side-instances',
          'families',
          'policies',
          'context',
          'percent',
          'grids',
          'kl-texts',
          'kl-positions',
          'kl-tokens',
          'workers',
          'model',
          'heldout',
          'plan',
          'note',
          'journal',
          'order',
          'plans',
          'split',
          'time-limit',
        ].map((k) => [k, { type: 'string' as const }]),
      ),
      strict: true,
      allowPositionals: false,
    }).values as Record<string, string | undefined>;
  } catch (e) {
    throw new AccuracyOptionError((e as Error).message);
  }
  const percent = values.percent === undefined ? 10 : Number(values.percent);
  if (!(percent > 0 && percent <= 100))
    throw new AccuracyOptionError(`--percent must be in (0, 100], got ${values.percent}`);
  return {
    instances: int('instances', values.instances, quick ? 1 : 40, 1),
    sideInstances: int('side-instances', values['side-instances'], quick ? 1 : 9, 1),
    families: list('families', values.families, FAMILIES, FAMILIES),
    policies: list('policies', values.policies, POLICIES, POLICIES),
    context: int('context', values.context, quick ? 1024 : 4096, 1),
    percent,
    grids: list('grids', values.grids, ['main', 'side'] as const, quick ? ['main'] : ['main', 'side']),
    klTexts: int('kl-texts', values['kl-texts'], quick ? 1 : 40, 0),
    klPositions: int('kl-positions', values['kl-positions'], quick ? 8 : 64, 1),
    klTokens: int('kl-tokens', values['kl-tokens'], 1024, 2),
    workers: int('workers', values.workers, 1, 1),
    ...(values['time-limit'] !== undefined
      ? { timeLimitS: int('time-limit', values['time-limit'], 0, 0) }
      : {}),
    ...(values.model !== undefined ? { modelDir: values.model } : {}),
    ...(values.heldout !== undefined ? { heldoutDir: values.heldout } : {}),
    ...(values.plan !== undefined ? { planFile: values.plan } : {}),
    ...(values.note !== undefined ? { note: values.note } : {}),
    ...(values.journal !== undefined ? { journal: values.journal } : {}),
    order: list('order', values.order, ['forward', 'reverse', 'round-robin'] as const, ['forward'])[0]!,
    split: list('split', values.split, ['dev', 'test'] as const, ['test'])[0]!,
    ...(values.plans !== undefined ? { plans: parsePlanList(values.plans, values.plan) } : {}),
  };
}

/** `--plans label=file,label=file`: distinct labels of letters, digits, `-` and `_`. */
function parsePlanList(v: string, single: string | undefined): { label: string; file: string }[] {
  if (single !== undefined) throw new AccuracyOptionError('give either --plan or --plans, not both');
  const out = v
    .split(',')
    .filter((s) => s.trim() !== '')
    .map((item) => {
      const eq = item.indexOf('=');
      const label = item.slice(0, eq).trim();
      const file = item.slice(eq + 1).trim();
      if (eq < 0 || !/^[A-Za-z0-9_-]+$/.test(label) || file === '')
        throw new AccuracyOptionError(
          `--plans: expected label=file items (label of letters, digits, - and _), got ${JSON.stringify(item)}`,
        );
      return { label, file };
    });
  if (out.length === 0) throw new AccuracyOptionError('--plans needs at least one label=file');
  if (new Set(out.map((p) => p.label)).size !== out.length)
    throw new AccuracyOptionError('--plans: labels must be distinct');
  return out;
}

/** One cell of the grid: a policy at a context and budget percent (and, if it depends on one, a plan). */
export interface GridCell {
  readonly grid: 'main' | 'side';
  readonly policy: PolicyName;
  readonly context: number;
  readonly percent: number;
  readonly perFamily: number;
  /** The plan of a plan-dependent policy: its label (from `--plans`, else `plan`) and content hash. */
  readonly plan?: { readonly label: string; readonly hash: string };
}

/** One plan a grid runs with: a label and the hash of what selection reads from it (`planHash`). */
export interface GridPlan {
  readonly label: string;
  readonly hash: string;
}

/**
 * The cells to run: the main grid (every policy at `context`, `percent`) and the side grid
 * (kascade at 5 and 20% at `context`; dense and kascade at 2048 and at `longest`), without
 * repeating a cell the main grid has.
 */
export function gridCells(
  o: AccuracyOptions,
  longest: number,
  plans: readonly GridPlan[] = [{ label: 'plan', hash: '' }],
): GridCell[] {
  if (plans.length === 0) throw new AccuracyOptionError('gridCells: at least one plan is needed');
  const cells: GridCell[] = [];
  const add = (c: Omit<GridCell, 'plan'>) => {
    for (const plan of PLAN_POLICIES.includes(c.policy) ? plans : [undefined]) {
      const cell = plan ? { ...c, plan } : c;
      if (!cells.some((x) => cellId(x) === cellId(cell))) cells.push(cell);
    }
  };
  if (o.grids.includes('main')) {
    for (const policy of o.policies)
      add({ grid: 'main', policy, context: o.context, percent: o.percent, perFamily: o.instances });
  }
  if (o.grids.includes('side')) {
    for (const percent of [5, 20])
      add({ grid: 'side', policy: 'kascade', context: o.context, percent, perFamily: o.sideInstances });
    for (const context of [2048, longest]) {
      for (const policy of ['dense', 'kascade'] as const)
        add({ grid: 'side', policy, context, percent: 10, perFamily: o.sideInstances });
    }
  }
  return cells;
}

/** The policies whose results depend on the plan (its anchors and head maps). */
export const PLAN_POLICIES: readonly PolicyName[] = ['kascade', 'kascade-decode-only', 'all-heads-pooled'];

/**
 * What a cell computes: policy, context, budget percent, and for a plan-dependent policy the
 * plan's hash (so results of another plan are never taken for this one).
 */
export function cellId(cell: GridCell): string {
  const base = `${cell.policy}@${cell.context}/p${cell.percent}`;
  return cell.plan && cell.plan.hash !== '' ? `${base}#${cell.plan.hash}` : base;
}
