/**
 * The one policy engine: a table from layer to role (per phase) plus the selectors that
 * fill the index slot. Every named policy (`dense`, `kascade`, `oracle-topk`,
 * `all-heads-pooled`, `streaming`) is such a table over the core reference ops.
 */
import {
  type BudgetOptions,
  type DecodeInputs,
  type DecodeSelection,
  KascadeRangeError,
  type PrefillInputs,
  type PrefillSelection,
} from '@kascade/core';
import type { PolicySpec } from '../api.js';
import { type AttendedSelection, type AttentionOps, referenceOps } from './ops.js';
import { PolicyStats } from './stats.js';
import type { AttentionPolicy, LayerRole, ModelShape, PolicyOptions } from './types.js';

export interface PolicyTable {
  readonly kind: PolicySpec['kind'];
  readonly shape: ModelShape;
  readonly budget: BudgetOptions;
  readonly tileSize: number;
  readonly decodeRoles: readonly LayerRole[];
  readonly prefillRoles: readonly LayerRole[];
  /** `headMaps[l]` for reuse layers; identity where absent. */
  readonly headMaps?: readonly (readonly number[])[];
  readonly anchorLayers: readonly number[];
  /** Whether `select` layers count as anchor hits (true for oracle Top-k, false for streaming). */
  readonly selectCountsAsAnchor: boolean;
  selectDecode(inputs: DecodeInputs, budget: BudgetOptions): DecodeSelection;
  selectPrefill(inputs: PrefillInputs, budget: BudgetOptions): PrefillSelection;
  /** One-pass dense output + selection for the dense-anchor role (else dense, then the selector). */
  denseAnchorDecode?(inputs: DecodeInputs, budget: BudgetOptions): AttendedSelection<DecodeSelection>;
  denseAnchorPrefill?(inputs: PrefillInputs, budget: BudgetOptions): AttendedSelection<PrefillSelection>;
  /** The attention ops the roles call (default: the core reference ops). */
  readonly ops?: AttentionOps;
}

/** Error for a policy used out of order or with the wrong shape. */
export class PolicyError extends KascadeRangeError {
  override readonly name = 'PolicyError';
}

const now = () => performance.now();

export function createTablePolicy(table: PolicyTable, options: PolicyOptions = {}): AttentionPolicy {
  const { shape, budget, decodeRoles, prefillRoles } = table;
  const stats = new PolicyStats();
  const onSelection = options.onSelection;
  const ops = table.ops ?? referenceOps;
  let decodeSlot: { n: number; selection: DecodeSelection } | undefined;
  let prefillSlot: { queryStart: number; queries: number; selection: PrefillSelection } | undefined;

  const checkLayer = (layer: number, inputs: { heads: number; kvHeads: number; headDim: number }) => {
    if (!(Number.isInteger(layer) && layer >= 0 && layer < shape.layers)) {
      throw new PolicyError(`${table.kind} policy: layer ${layer} is outside 0..${shape.layers - 1}`);
    }
    if (
      inputs.heads !== shape.heads ||
      inputs.kvHeads !== shape.kvHeads ||
      inputs.headDim !== shape.headDim
    ) {
      throw new PolicyError(
        `${table.kind} policy: layer ${layer} has shape heads=${inputs.heads} kvHeads=${inputs.kvHeads} headDim=${inputs.headDim}, ` +
          `the policy was built for heads=${shape.heads} kvHeads=${shape.kvHeads} headDim=${shape.headDim}`,
      );
    }
  };
  const headMapOf = (layer: number) => table.headMaps?.[layer];

  return {
    kind: table.kind,
    anchorLayers: table.anchorLayers,
    decodeRoles,
    prefillRoles,
    tileSize: table.tileSize,
    attention: ops.impl,
    stats,
    usage: () => stats.usage(table.kind, table.anchorLayers),

    decode(layer, inputs) {
      checkLayer(layer, inputs);
      const t0 = now();
      if (layer === 0) {
        stats.decodeSteps++;
        stats.decodeContextKeys += inputs.n;
      }
      const role = decodeRoles[layer]!;
      let out: Float32Array | Float64Array;
      let selection: DecodeSelection | undefined;
      let headMap: readonly number[] | undefined;
      switch (role) {
        case 'dense':
          out = ops.denseDecode(inputs);
          break;
        case 'dense-anchor':
          if (table.denseAnchorDecode) {
            const r = table.denseAnchorDecode(inputs, budget);
            out = r.out;
            decodeSlot = { n: inputs.n, selection: r.selection };
          } else {
            out = ops.denseDecode(inputs);
            decodeSlot = { n: inputs.n, selection: table.selectDecode(inputs, budget) };
          }
          stats.anchorsHit++;
          break;
        case 'anchor':
        case 'select':
          selection = table.selectDecode(inputs, budget);
          if (role === 'anchor') decodeSlot = { n: inputs.n, selection };
          if (role === 'anchor' || table.selectCountsAsAnchor) stats.anchorsHit++;
          out = ops.sparseDecode(inputs, selection);
          break;
        case 'reuse': {
          if (!decodeSlot || decodeSlot.n !== inputs.n) {
            throw new PolicyError(
              `${table.kind} policy: reuse layer ${layer} found no index slot for this decode step ` +
                `(n=${inputs.n}); its anchor layer must run first in the same step`,
            );
          }
          selection = decodeSlot.selection;
          headMap = headMapOf(layer);
          out = ops.sparseDecode(inputs, selection, headMap);
          break;
        }
      }
      if (selection) {
        stats.sparseDecodeCalls++;
        stats.sparseDecodeKeys += selection.k;
      }
      stats.attentionMs += now() - t0;
      if (onSelection) {
        onSelection({
          phase: 'decode',
          layer,
          role,
          inputs,
          ...(selection ? { selection } : {}),
          ...(headMap ? { headMap } : {}),
        });
      }
      return out;
    },

    prefill(layer, inputs) {
      checkLayer(layer, inputs);
      const t0 = now();
      if (layer === 0) {
        stats.prefillChunks++;
        stats.prefillTiles += Math.ceil(inputs.queries / inputs.tileSize);
      }
      const role = prefillRoles[layer]!;
      if (role !== 'dense' && inputs.tileSize !== table.tileSize) {
        throw new PolicyError(
          `${table.kind} policy: prefill tileSize ${inputs.tileSize} differs from the policy's tileSize ${table.tileSize}`,
        );
      }
      let out: Float32Array | Float64Array;
      let selection: PrefillSelection | undefined;
      let headMap: readonly number[] | undefined;
      switch (role) {
        case 'dense':
          out = ops.denseCausalPrefill(inputs);
          break;
        case 'dense-anchor': {
          let written: PrefillSelection;
          if (table.denseAnchorPrefill) {
            const r = table.denseAnchorPrefill(inputs, budget);
            out = r.out;
            written = r.selection;
          } else {
            out = ops.denseCausalPrefill(inputs);
            written = table.selectPrefill(inputs, budget);
          }
          prefillSlot = { queryStart: inputs.queryStart, queries: inputs.queries, selection: written };
          stats.anchorsHit++;
          break;
        }
        case 'anchor':
        case 'select':
          selection = table.selectPrefill(inputs, budget);
          if (role === 'anchor')
            prefillSlot = { queryStart: inputs.queryStart, queries: inputs.queries, selection };
          if (role === 'anchor' || table.selectCountsAsAnchor) stats.anchorsHit++;
          out = ops.sparsePrefill(inputs, selection);
          break;
        case 'reuse': {
          if (
            !prefillSlot ||
            prefillSlot.queryStart !== inputs.queryStart ||
            prefillSlot.queries !== inputs.queries
          ) {
            throw new PolicyError(
              `${table.kind} policy: reuse layer ${layer} found no index slot for the prefill chunk at ` +
                `${inputs.queryStart} (+${inputs.queries}); its anchor layer must run first on the same chunk`,
            );
          }
          selection = prefillSlot.selection;
          headMap = headMapOf(layer);
          out = ops.sparsePrefill(inputs, selection, headMap);
          break;
        }
      }
      stats.attentionMs += now() - t0;
      if (onSelection) {
        onSelection({
          phase: 'prefill',
          layer,
          role,
          inputs,
          ...(selection ? { selection } : {}),
          ...(headMap ? { headMap } : {}),
        });
      }
      return out;
    },
  };
}

/** `n` copies of a role. */
export function fillRoles(layers: number, role: LayerRole): LayerRole[] {
  return Array.from({ length: layers }, () => role);
}
