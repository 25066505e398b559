/** The policies the accuracy suite compares, and the engine spec of each at a budget percent. */
import { createHash } from 'node:crypto';
import type { PolicySpec } from '@kascade/engine';

export const POLICIES = [
  'dense',
  'kascade',
  'kascade-decode-only',
  'all-heads-pooled',
  'oracle-topk',
  'streaming',
] as const;
export type PolicyName = (typeof POLICIES)[number];

/** The parts of a plan the suite reads (it is otherwise passed to the engine as is). */
export interface PlanLike {
  readonly budget: {
    readonly percent: number;
    readonly kMin: number;
    readonly roundTo: number;
    readonly tileSize: number;
  };
  readonly anchors: readonly number[];
  readonly headMaps?: readonly (readonly number[])[];
}

/**
 * A short hash of what Kascade's selection reads from a plan: anchors, head maps, kMin, roundTo
 * and tile size (the percent is part of the cell). Journal keys carry it.
 */
export function planHash(plan: PlanLike): string {
  const { kMin, roundTo, tileSize } = plan.budget;
  const what = JSON.stringify({
    anchors: plan.anchors,
    headMaps: plan.headMaps ?? null,
    kMin,
    roundTo,
    tileSize,
  });
  return createHash('sha256').update(what).digest('hex').slice(0, 12);
}

/** The plan with its budget percent replaced (the engine's policies take the budget from the plan). */
export function planAtPercent(plan: PlanLike, percent: number): PlanLike {
  return { ...plan, budget: { ...plan.budget, percent } };
}

/** The engine spec of `policy` at `percent`, with the plan's kMin, roundTo and tile size for the plan-free policies. */
export function policySpec(policy: PolicyName, plan: PlanLike, percent: number): PolicySpec {
  const budget = { percent, kMin: plan.budget.kMin, roundTo: plan.budget.roundTo };
  const tileSize = plan.budget.tileSize;
  switch (policy) {
    case 'dense':
      return { kind: 'dense' };
    case 'kascade':
      return { kind: 'kascade', plan: planAtPercent(plan, percent) };
    case 'kascade-decode-only':
      return { kind: 'kascade', plan: planAtPercent(plan, percent), decodeOnly: true };
    case 'all-heads-pooled':
      return { kind: 'all-heads-pooled', plan: planAtPercent(plan, percent) };
    case 'oracle-topk':
      return { kind: 'oracle-topk', budget, tileSize };
    case 'streaming':
      return { kind: 'streaming', budget, tileSize };
  }
}
