/** Attention policies: build one per sequence from a {@link PolicySpec}. */
import type { PolicySpec } from '../api.js';
import { createDensePolicy } from './dense.js';
import { createKascadePolicy } from './kascade.js';
import { createOracleTopkPolicy } from './oracle-topk.js';
import { createStreamingPolicy } from './streaming.js';
import { PolicyError } from './table.js';
import type { AttentionPolicy, ModelShape, PolicyOptions } from './types.js';

export { createDensePolicy } from './dense.js';
export { denseAnchorDecode } from './fused.js';
export { createKascadePolicy, type KascadePolicyOptions, planFor } from './kascade.js';
export {
  type AttendedSelection,
  type AttentionImpl,
  type AttentionOps,
  attentionOps,
  type PooledScores,
  referenceOps,
} from './ops.js';
export { createOracleTopkPolicy, type OracleTopkOptions } from './oracle-topk.js';
export { PolicyStats } from './stats.js';
export {
  createStreamingPolicy,
  type StreamingOptions,
  streamingDecodeSelection,
  streamingPrefillSelection,
} from './streaming.js';
export { createTablePolicy, PolicyError, type PolicyTable } from './table.js';
export type { AttentionPolicy, LayerRole, ModelShape, PolicyOptions, SelectionEvent } from './types.js';

/** A fresh policy instance (with its own index slot and counters) for one sequence. */
export function createPolicy(
  spec: PolicySpec,
  shape: ModelShape,
  options: PolicyOptions & { tileSize?: number } = {},
): AttentionPolicy {
  switch (spec.kind) {
    case 'dense':
      return createDensePolicy(shape, options);
    case 'kascade':
      return createKascadePolicy(spec.plan, shape, { ...options, decodeOnly: spec.decodeOnly });
    case 'all-heads-pooled':
      return createKascadePolicy(spec.plan, shape, {
        ...options,
        decodeOnly: spec.decodeOnly,
        allHeadsPooled: true,
      });
    case 'oracle-topk':
      return createOracleTopkPolicy(shape, {
        ...options,
        budget: spec.budget,
        tileSize: spec.tileSize ?? options.tileSize,
        decodeOnly: spec.decodeOnly,
      });
    case 'streaming':
      return createStreamingPolicy(shape, {
        ...options,
        sinkTokens: spec.sinkTokens,
        budget: spec.budget,
        tileSize: spec.tileSize ?? options.tileSize,
        decodeOnly: spec.decodeOnly,
      });
    default: {
      const kind = (spec as { kind?: unknown }).kind;
      throw new PolicyError(
        `unknown attention policy ${JSON.stringify(kind)}; expected dense, kascade, oracle-topk, all-heads-pooled or streaming`,
      );
    }
  }
}
