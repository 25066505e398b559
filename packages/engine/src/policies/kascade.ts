/**
 * `kascade` and `all-heads-pooled`: a validated plan decides each layer's role. Layer 0 is
 * the dense anchor (dense output, Top-k into the slot), anchors select exact head-aware
 * Top-k and attend over it, reuse layers read the latest anchor's slot through their head
 * map. `all-heads-pooled` is the paper's ablation: one set per layer pooled over all heads.
 * `decodeOnly` keeps prefill dense.
 */
import { anchorOf, type KascadePlan, layerRoles, parsePlan } from '@kascade/anchors';
import { attentionOps } from './ops.js';
import { createTablePolicy, fillRoles } from './table.js';
import type { AttentionPolicy, LayerRole, ModelShape, PolicyOptions } from './types.js';

export interface KascadePolicyOptions extends PolicyOptions {
  /** Keep prefill dense; sparse only in decode. */
  readonly decodeOnly?: boolean;
  /** One index set per layer pooled over all heads (the ablation), instead of one per KV head. */
  readonly allHeadsPooled?: boolean;
}

/** Parses `plan` against the model's shape: a plan made for another shape throws `PlanError`. */
export function planFor(plan: unknown, shape: ModelShape): KascadePlan {
  return parsePlan(plan, {
    layers: shape.layers,
    heads: shape.heads,
    kvHeads: shape.kvHeads,
    headDim: shape.headDim,
  });
}

export function createKascadePolicy(
  plan: unknown,
  shape: ModelShape,
  options: KascadePolicyOptions = {},
): AttentionPolicy {
  const parsed = planFor(plan, shape);
  const roles: LayerRole[] = layerRoles(parsed).map((r) => r);
  // anchorOf is what reuse layers read; the slot always holds the latest anchor's set, which is it.
  anchorOf(parsed);
  const pooled = options.allHeadsPooled === true;
  const ops = attentionOps(options.attention, shape.headDim);
  return createTablePolicy(
    {
      kind: pooled ? 'all-heads-pooled' : 'kascade',
      shape,
      budget: { percent: parsed.budget.percent, kMin: parsed.budget.kMin, roundTo: parsed.budget.roundTo },
      tileSize: parsed.budget.tileSize,
      decodeRoles: roles,
      prefillRoles: options.decodeOnly ? fillRoles(shape.layers, 'dense') : roles,
      headMaps: pooled ? undefined : parsed.headMaps,
      anchorLayers: [...parsed.anchors],
      selectCountsAsAnchor: false,
      selectDecode: pooled ? ops.allHeadsPooledDecodeTopk : ops.anchorDecodeTopk,
      selectPrefill: pooled ? ops.allHeadsPooledPrefillTopk : ops.anchorPrefillTopk,
      ...(pooled
        ? {}
        : { denseAnchorDecode: ops.denseAnchorDecode, denseAnchorPrefill: ops.denseAnchorPrefill }),
      ops,
    },
    options,
  );
}
