/**
 * The Kascade plan: a versioned JSON document naming the model, the budget, the anchor layers and
 * the head maps, with the calibration scores that chose them. Validated on load.
 */
import { z } from 'zod';
import type { CalibrationStatistics } from './accumulator.js';
import { PlanError, type PlanIssue } from './errors.js';
import { headMaps as computeHeadMaps } from './heads.js';
import type { AnchorSelection } from './select.js';
import { anchorOfLayers } from './select.js';

/** The plan format version this build reads and writes. */
export const PLAN_VERSION = 1;
export const PLAN_FORMAT = 'kascade-plan';

/** Model identity and attention shape. */
export interface PlanModel {
  readonly id: string;
  readonly architecture?: string;
  readonly layers: number;
  readonly heads: number;
  readonly kvHeads: number;
  readonly headDim: number;
}

/** The budget rule's settings and the prefill tile size, as every backend must apply them. */
export interface PlanBudget {
  readonly percent: number;
  readonly kMin: number;
  readonly roundTo: number;
  readonly tileSize: number;
}

/** The scores the calibration gave the chosen anchors. */
export interface PlanCalibration {
  /** Prompts of the development set. */
  readonly prompts: number;
  /** The threshold, when the anchor count was chosen automatically. */
  readonly tau?: number;
  /** `sim(anchor(l), l)` per layer. */
  readonly layerSimilarity: number[];
  /** Importance `w[l]` per layer. */
  readonly importance: number[];
  /** `sum over l of w[l] * sim(anchor(l), l)`. */
  readonly objective: number;
}

export interface KascadePlan {
  readonly format: 'kascade-plan';
  readonly version: 1;
  readonly model: PlanModel;
  readonly budget: PlanBudget;
  /** `0 = a1 < a2 < ... < aK`, each a layer index. */
  readonly anchors: number[];
  /** `L x G`: KV head `j` of layer `l` reads the index set of KV head `headMaps[l][j]` of `anchor(l)`. */
  readonly headMaps: number[][];
  readonly calibration?: PlanCalibration;
  /** ISO 8601 time of creation. */
  readonly createdAt?: string;
  /** What wrote the plan, e.g. `@kascade/anchors 0.1.0`. */
  readonly tool?: string;
}

/** Shape a plan must match when loaded for a particular model. */
export interface ExpectedShape {
  readonly layers?: number;
  readonly heads?: number;
  readonly kvHeads?: number;
  readonly headDim?: number;
}

const numberError = (what: string) => (issue: { input?: unknown }) =>
  issue.input === undefined ? `${what} is required` : `${what} must be a number`;
const posInt = (what: string) =>
  z
    .number({ error: numberError(what) })
    .int(`${what} must be an integer`)
    .min(1, `${what} must be >= 1`);
const nonNegInt = (what: string) =>
  z
    .number({ error: numberError(what) })
    .int(`${what} must be an integer`)
    .min(0, `${what} must be >= 0`);
const finite = z.number().refine(Number.isFinite, 'must be a finite number');

/** The zod schema of the plan's structure (field types and ranges; `parsePlan` adds the cross-field rules). */
export const planSchema = z.strictObject({
  format: z.literal(PLAN_FORMAT),
  version: z.literal(PLAN_VERSION),
  model: z.strictObject({
    id: z.string().min(1, 'model id must be a non-empty string'),
    architecture: z.string().optional(),
    layers: posInt('layers'),
    heads: posInt('heads'),
    kvHeads: posInt('kvHeads'),
    headDim: posInt('headDim'),
  }),
  budget: z.strictObject({
    percent: z
      .number({ error: numberError('percent') })
      .gt(0, 'percent must be in (0, 100]')
      .lte(100, 'percent must be in (0, 100]'),
    kMin: nonNegInt('kMin'),
    roundTo: posInt('roundTo'),
    tileSize: posInt('tileSize'),
  }),
  anchors: z.array(nonNegInt('an anchor layer')).min(1, 'anchors must hold at least layer 0'),
  headMaps: z.array(z.array(nonNegInt('a head-map entry'))),
  calibration: z
    .strictObject({
      prompts: nonNegInt('prompts'),
      tau: z.number().min(0, 'tau must be in [0, 1]').max(1, 'tau must be in [0, 1]').optional(),
      layerSimilarity: z.array(finite),
      importance: z.array(finite),
      objective: finite,
    })
    .optional(),
  createdAt: z.string().optional(),
  tool: z.string().optional(),
});

// The schema's output and the documented interface are the same type.
type Same<A, B> = [A] extends [B] ? ([B] extends [A] ? true : false) : false;
const schemaMatchesInterface: Same<z.output<typeof planSchema>, KascadePlan> = true;
void schemaMatchesInterface;

function formatPath(path: readonly PropertyKey[]): string {
  let out = '';
  for (const key of path) {
    if (typeof key === 'number') out += `[${key}]`;
    else out += out === '' ? String(key) : `.${String(key)}`;
  }
  return out;
}

function crossFieldIssues(plan: KascadePlan, expected: ExpectedShape | undefined): PlanIssue[] {
  const issues: PlanIssue[] = [];
  const { layers: L, heads, kvHeads: G } = plan.model;
  if (heads % G !== 0) {
    issues.push({ path: 'model.heads', message: `heads (${heads}) must be a multiple of kvHeads (${G})` });
  }
  if (expected !== undefined) {
    for (const key of ['layers', 'heads', 'kvHeads', 'headDim'] as const) {
      const want = expected[key];
      if (want !== undefined && plan.model[key] !== want) {
        issues.push({
          path: `model.${key}`,
          message: `shape mismatch: the plan says ${key} = ${plan.model[key]}, the model has ${want}`,
        });
      }
    }
  }
  const { anchors } = plan;
  if (anchors[0] !== 0) {
    issues.push({ path: 'anchors[0]', message: `anchors must start at layer 0, got ${anchors[0]}` });
  }
  // A set, not an array of L flags: `layers` comes from the input and may be huge.
  const anchorSet = new Set<number>();
  anchors.forEach((a, i) => {
    if (a >= L) {
      issues.push({ path: `anchors[${i}]`, message: `anchor layer ${a} is out of range [0, ${L})` });
    } else {
      anchorSet.add(a);
    }
    if (i > 0) {
      const prev = anchors[i - 1];
      if (a === prev) {
        issues.push({ path: `anchors[${i}]`, message: `anchors are duplicated: layer ${a} appears twice` });
      } else if (a < prev) {
        issues.push({
          path: `anchors[${i}]`,
          message: `anchors are unsorted: ${a} follows ${prev} (they must be strictly increasing)`,
        });
      }
    }
  });
  if (plan.headMaps.length !== L) {
    issues.push({
      path: 'headMaps',
      message: `head maps cover ${plan.headMaps.length} layers, the model has ${L} (one map per layer)`,
    });
  }
  plan.headMaps.forEach((map, l) => {
    if (map.length !== G) {
      issues.push({
        path: `headMaps[${l}]`,
        message: `head map of layer ${l} has ${map.length} entries, expected kvHeads = ${G}`,
      });
      return;
    }
    map.forEach((u, j) => {
      if (u >= G) {
        issues.push({
          path: `headMaps[${l}][${j}]`,
          message: `KV head index ${u} is out of range [0, ${G})`,
        });
      } else if (anchorSet.has(l) && u !== j) {
        issues.push({
          path: `headMaps[${l}][${j}]`,
          message: `layer ${l} is an anchor, so its head map must be the identity; entry ${j} is ${u}`,
        });
      }
    });
  });
  const cal = plan.calibration;
  if (cal !== undefined) {
    for (const key of ['layerSimilarity', 'importance'] as const) {
      if (cal[key].length !== L) {
        issues.push({
          path: `calibration.${key}`,
          message: `${key} has ${cal[key].length} entries, expected one per layer (${L})`,
        });
      }
    }
  }
  return issues;
}

/**
 * Validates a plan (an object, or its JSON text) and returns it typed. Checks the format and
 * version first, then the structure (zod), then the cross-field rules: every index in range,
 * anchors strictly increasing from 0, one head map of `G` entries per layer, the identity at
 * anchors, calibration arrays of `L` entries, and, when `expected` is given, the model's shape.
 *
 * @throws PlanError naming the offending field in `.path` and in its message.
 */
export function parsePlan(json: unknown, expected?: ExpectedShape): KascadePlan {
  let value = json;
  if (typeof json === 'string') {
    try {
      value = JSON.parse(json);
    } catch (error) {
      throw new PlanError([{ path: '', message: `not valid JSON (${(error as Error).message})` }]);
    }
  }
  if (typeof value !== 'object' || value === null || Array.isArray(value)) {
    throw new PlanError([{ path: '', message: 'a plan must be a JSON object' }]);
  }
  const head = value as { format?: unknown; version?: unknown };
  if (head.format !== PLAN_FORMAT) {
    throw new PlanError([
      {
        path: 'format',
        message: `expected "${PLAN_FORMAT}", got ${JSON.stringify(head.format) ?? 'nothing'}`,
      },
    ]);
  }
  if (head.version !== PLAN_VERSION) {
    throw new PlanError([
      {
        path: 'version',
        message: `unknown plan version ${JSON.stringify(head.version) ?? '(missing)'}; this build reads version ${PLAN_VERSION}`,
      },
    ]);
  }
  const parsed = planSchema.safeParse(value);
  if (!parsed.success) {
    throw new PlanError(
      parsed.error.issues.map((issue) => ({
        // an unknown key is reported at its parent; name the key itself
        path: formatPath(issue.code === 'unrecognized_keys' ? [...issue.path, issue.keys[0]] : issue.path),
        message: issue.message,
      })),
    );
  }
  const plan = parsed.data;
  const issues = crossFieldIssues(plan, expected);
  if (issues.length > 0) throw new PlanError(issues);
  return plan;
}

function stableJson(value: unknown, indent: string): string {
  if (Array.isArray(value)) {
    if (value.every((v) => typeof v !== 'object' || v === null))
      return `[${value.map((v) => JSON.stringify(v)).join(', ')}]`;
    const inner = indent + '  ';
    return `[\n${value.map((v) => inner + stableJson(v, inner)).join(',\n')}\n${indent}]`;
  }
  if (typeof value === 'object' && value !== null) {
    const inner = indent + '  ';
    const entries = Object.entries(value).filter(([, v]) => v !== undefined);
    return `{\n${entries.map(([k, v]) => `${inner}${JSON.stringify(k)}: ${stableJson(v, inner)}`).join(',\n')}\n${indent}}`;
  }
  return JSON.stringify(value);
}

/**
 * The plan as JSON text: validated first, keys in the schema's order (whatever order the object
 * was built in), number arrays on one line, a trailing newline. The same plan always gives the
 * same text, and `parsePlan(serializePlan(p))` equals `p`.
 */
export function serializePlan(plan: KascadePlan): string {
  const p = parsePlan(plan);
  const ordered = {
    format: p.format,
    version: p.version,
    model: {
      id: p.model.id,
      architecture: p.model.architecture,
      layers: p.model.layers,
      heads: p.model.heads,
      kvHeads: p.model.kvHeads,
      headDim: p.model.headDim,
    },
    budget: {
      percent: p.budget.percent,
      kMin: p.budget.kMin,
      roundTo: p.budget.roundTo,
      tileSize: p.budget.tileSize,
    },
    anchors: p.anchors,
    headMaps: p.headMaps,
    calibration:
      p.calibration === undefined
        ? undefined
        : {
            prompts: p.calibration.prompts,
            tau: p.calibration.tau,
            layerSimilarity: p.calibration.layerSimilarity,
            importance: p.calibration.importance,
            objective: p.calibration.objective,
          },
    createdAt: p.createdAt,
    tool: p.tool,
  };
  return `${stableJson(ordered, '')}\n`;
}

export interface BuildPlanInput {
  readonly model: PlanModel;
  /** The accumulator's statistics: they give the budget, tile size, head maps and importance. */
  readonly statistics: CalibrationStatistics;
  /** The DP's (or `selectAnchorsAuto`'s) result. */
  readonly selection: AnchorSelection;
  readonly createdAt?: string;
  readonly tool?: string;
}

/** A validated plan from the calibration statistics and the anchor selection. */
export function buildPlan(input: BuildPlanInput): KascadePlan {
  const { model, statistics, selection } = input;
  if (statistics.layers !== model.layers) {
    throw new PlanError([
      {
        path: 'model.layers',
        message: `the calibration statistics cover ${statistics.layers} layers, the model has ${model.layers}`,
      },
    ]);
  }
  if (statistics.kvHeads !== model.kvHeads) {
    throw new PlanError([
      {
        path: 'model.kvHeads',
        message: `the calibration statistics have ${statistics.kvHeads} KV heads, the model has ${model.kvHeads}`,
      },
    ]);
  }
  const plan: KascadePlan = {
    format: PLAN_FORMAT,
    version: PLAN_VERSION,
    model: { ...model },
    budget: { ...statistics.budget, tileSize: statistics.tileSize },
    anchors: [...selection.anchors],
    headMaps: computeHeadMaps(statistics.similarity, selection.anchors),
    calibration: {
      prompts: statistics.prompts,
      ...(selection.tau === undefined ? {} : { tau: selection.tau }),
      layerSimilarity: [...selection.layerSimilarity],
      importance: [...statistics.importance],
      objective: selection.objective,
    },
    ...(input.createdAt === undefined ? {} : { createdAt: input.createdAt }),
    ...(input.tool === undefined ? {} : { tool: input.tool }),
  };
  return parsePlan(plan, model);
}

/** What each layer does under a plan. */
export type LayerRole = 'dense-anchor' | 'anchor' | 'reuse';

/** `role[l]`: layer 0 is the dense anchor, the other anchors select, the rest reuse. */
export function layerRoles(plan: KascadePlan): LayerRole[] {
  const anchors = new Set(plan.anchors);
  return Array.from({ length: plan.model.layers }, (_, l) =>
    l === 0 ? 'dense-anchor' : anchors.has(l) ? 'anchor' : 'reuse',
  );
}

/** `anchorOf[l]`: the largest anchor `<= l`, the layer whose index sets layer `l` reads. */
export function anchorOf(plan: KascadePlan): number[] {
  return anchorOfLayers(plan.anchors, plan.model.layers);
}
