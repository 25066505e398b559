/** `dense`: every layer attends every key (the baseline). */
import { anchorDecodeTopk, anchorPrefillTopk } from '@kascade/core';
import { createTablePolicy, fillRoles } from './table.js';
import type { AttentionPolicy, ModelShape, PolicyOptions } from './types.js';

export function createDensePolicy(
  shape: ModelShape,
  options: PolicyOptions & { tileSize?: number } = {},
): AttentionPolicy {
  const roles = fillRoles(shape.layers, 'dense');
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
      selectDecode: anchorDecodeTopk,
      selectPrefill: anchorPrefillTopk,
    },
    options,
  );
}
