/**
 * Counters every policy keeps: time in attention, keys attended per decode step, anchor
 * selections. One instance per sequence (per generation).
 */
import type { KascadeUsage, PolicySpec } from '../api.js';

export class PolicyStats {
  /** Wall time inside attention ops, milliseconds. */
  attentionMs = 0;
  /** Decode steps (counted at layer 0). */
  decodeSteps = 0;
  /** Sum over decode steps of the keys available (`n`, the new key counted). */
  decodeContextKeys = 0;
  /** (layer, step) pairs attended sparsely during decode, and the keys per KV head they attended. */
  sparseDecodeCalls = 0;
  sparseDecodeKeys = 0;
  /** Times an anchor layer (or any selecting layer) computed Top-k indices, decode and prefill. */
  anchorsHit = 0;
  /** Prefill chunks seen (counted at layer 0) and the tiles in them. */
  prefillChunks = 0;
  prefillTiles = 0;

  /** Mean keys attended per KV head per decode step over sparse layers; the context if none was sparse. */
  effectiveK(): number {
    if (this.sparseDecodeCalls > 0) return this.sparseDecodeKeys / this.sparseDecodeCalls;
    return this.contextKeys();
  }

  /** Mean keys available per decode step. */
  contextKeys(): number {
    return this.decodeSteps > 0 ? this.decodeContextKeys / this.decodeSteps : 0;
  }

  usage(policy: PolicySpec['kind'], anchorLayers: readonly number[]): KascadeUsage {
    return {
      policy,
      effectiveK: this.effectiveK(),
      contextKeys: this.contextKeys(),
      anchorLayers: [...anchorLayers],
      anchorsHit: this.anchorsHit,
    };
  }
}
