/**
 * What every attention policy is: a {@link LayerAttention} for one sequence, holding that
 * sequence's index slot, plus the counters behind `GenerationUsage.kascade`.
 */
import type {
  AttentionShape,
  DecodeInputs,
  DecodeSelection,
  HeadMap,
  PrefillInputs,
  PrefillSelection,
} from '@kascade/core';
import type { KascadeUsage, PolicySpec } from '../api.js';
import type { LayerAttention } from '../model/hooks.js';
import type { AttentionImpl } from './ops.js';
import type { PolicyStats } from './stats.js';

/** The model shape a policy is built for. */
export interface ModelShape extends AttentionShape {
  readonly layers: number;
}

/** What a layer did, for callers that inspect selections (tests, recall measurements, calibration tools). */
export type SelectionEvent =
  | {
      readonly phase: 'decode';
      readonly layer: number;
      readonly role: LayerRole;
      readonly inputs: DecodeInputs;
      /** The index set the layer attended over (absent for dense layers). */
      readonly selection?: DecodeSelection;
      /** The head map the layer read the selection through (identity when absent). */
      readonly headMap?: HeadMap;
    }
  | {
      readonly phase: 'prefill';
      readonly layer: number;
      readonly role: LayerRole;
      readonly inputs: PrefillInputs;
      readonly selection?: PrefillSelection;
      readonly headMap?: HeadMap;
    };

/**
 * The role a layer plays under a policy: `dense` attends every key; `dense-anchor` attends
 * densely and writes the slot; `anchor` writes the slot then attends sparsely over it;
 * `reuse` reads the slot through its head map; `select` computes its own set and uses it
 * (oracle Top-k, streaming).
 */
export type LayerRole = 'dense' | 'dense-anchor' | 'anchor' | 'reuse' | 'select';

export interface PolicyOptions {
  /** Called after each layer's attention with what it attended (costs nothing when absent). */
  readonly onSelection?: (event: SelectionEvent) => void;
  /**
   * Which attention ops run: `'fast'` (default: float32 WebAssembly SIMD kernels, where the
   * head dim is a multiple of 16) or `'reference'` (the `@kascade/core` float64 definition).
   */
  readonly attention?: AttentionImpl;
}

/** A policy instance: one per sequence, since it holds that sequence's index slot. */
export interface AttentionPolicy extends LayerAttention {
  readonly kind: PolicySpec['kind'];
  /** Layers that select Top-k indices (empty for dense and streaming). */
  readonly anchorLayers: readonly number[];
  /** Per-layer role in decode and in prefill. */
  readonly decodeRoles: readonly LayerRole[];
  readonly prefillRoles: readonly LayerRole[];
  /** Query tile size the policy expects in prefill. */
  readonly tileSize: number;
  /** Which attention ops it runs (`'reference'` where asked, or where the fast kernels cannot run). */
  readonly attention: AttentionImpl;
  readonly stats: PolicyStats;
  usage(): KascadeUsage;
}
