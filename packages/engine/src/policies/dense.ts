/** `dense`: every layer attends every key (the baseline). */
import { attentionOps } from './ops.js';
import { createTablePolicy, fillRoles } from './table.js';
import type { AttentionPolicy, ModelShape, PolicyOptions } from './types.js';

export function createDensePolicy(
  shape: ModelShape,
  options: PolicyOptions & { tileSize?: number } = {},
): AttentionPolicy {
  const roles = fillRoles(shape.layers, 'dense');
  const ops = attentionOps(options.attention, shape.headDim);
  return createTablePolicy(
    {
      kind: 'dense',
      shape,
      budget: {},
      tileSize: options.tileSize ?? 32,
      decodeRoles: roles,
      prefillRoles: roles,
      anchorLayers: [],
      selectCountsAsAnchor: false,
      // Never called: no layer of a dense policy selects.
      selectDecode: ops.anchorDecodeTopk,
      selectPrefill: ops.anchorPrefillTopk,
      ops,
    },
    options,
  );
}
