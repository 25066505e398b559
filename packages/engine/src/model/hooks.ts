/**
 * The seam between the model's forward pass (`model/`) and the attention policies
 * (`policies/`): the model computes q/k/v, applies RoPE, appends to the KV cache, then
 * asks the hook for the layer's attention output; policies implement the hook with the
 * core reference ops. Calibration observes the residual stream through `observe`.
 */
import type { DecodeInputs, PrefillInputs } from '@kascade/core';

export interface LayerAttention {
  /** Output `[heads, headDim]` for one new token; `inputs.n` counts the new key. */
  decode(layer: number, inputs: DecodeInputs): Float32Array | Float64Array;
  /** Output `[heads, queries, headDim]` for a prefill chunk (a whole number of tiles, but the last may be partial). */
  prefill(layer: number, inputs: PrefillInputs): Float32Array | Float64Array;
  /**
   * Optional: called after each layer's attention block with the residual `x` entering it
   * and the block's output after `o_proj` (`[tokens, hidden]` each), for layer importance.
   */
  observe?(layer: number, residual: Float32Array, attnOut: Float32Array, tokens: number): void;
}
