/**
 * `oracle-topk`: every layer after layer 0 selects its own exact head-aware Top-k and
 * attends over it (the upper bound of what any reuse scheme can reach at that budget).
 * Layer 0 stays dense, as it does under Kascade, so the two differ only in which sets
 * the sparse layers use. `decodeOnly` keeps prefill dense.
 */
import type { BudgetOptions } from '@kascade/core';
import { attentionOps } from './ops.js';
import { createTablePolicy, fillRoles } from './table.js';
import type { AttentionPolicy, LayerRole, ModelShape, PolicyOptions } from './types.js';

export interface OracleTopkOptions extends PolicyOptions {
  readonly budget?: BudgetOptions;
  readonly tileSize?: number;
  readonly decodeOnly?: boolean;
}

export function createOracleTopkPolicy(shape: ModelShape, options: OracleTopkOptions = {}): AttentionPolicy {
  const roles: LayerRole[] = fillRoles(shape.layers, 'select');
  roles[0] = 'dense';
  const ops = attentionOps(options.attention, shape.headDim);
  return createTablePolicy(
    {
      kind: 'oracle-topk',
      shape,
      budget: options.budget ?? {},
      tileSize: options.tileSize ?? 32,
      decodeRoles: roles,
      prefillRoles: options.decodeOnly ? fillRoles(shape.layers, 'dense') : roles,
      anchorLayers: Array.from({ length: shape.layers - 1 }, (_, i) => i + 1),
      selectCountsAsAnchor: true,
      selectDecode: ops.anchorDecodeTopk,
      selectPrefill: ops.anchorPrefillTopk,
      ops,
    },
    options,
  );
}
