import type {
  BudgetOptions,
  DecodeInputs,
  DecodeSelection,
  HeadMap,
  PrefillInputs,
  PrefillSelection,
  SelectedOutput,
} from './types.js';

/**
 * The attention half of what every backend implements (see the project's ARCHITECTURE):
 * three layer roles x two phases, plus plain dense ops for the baseline.
 *
 * - `dense-anchor` (layer 0): dense output, plus the pooled Top-k written to the slot.
 * - `anchor`: pooled Top-k into the slot, then sparse attention over it.
 * - `reuse`: sparse attention over the slot, read through the layer's head map.
 *
 * The CPU reference in this package is the definition; GPU backends must agree with it.
 * This host-array form is what the engine calls; GPU packages also expose device-tensor
 * variants of the same ops.
 */
export interface AttentionBackend {
  readonly name: string;

  denseDecode(inputs: DecodeInputs): Float64Array | Promise<Float64Array>;
  denseAnchorDecode(
    inputs: DecodeInputs,
    budget: BudgetOptions,
  ): SelectedOutput<DecodeSelection> | Promise<SelectedOutput<DecodeSelection>>;
  anchorDecode(
    inputs: DecodeInputs,
    budget: BudgetOptions,
  ): SelectedOutput<DecodeSelection> | Promise<SelectedOutput<DecodeSelection>>;
  reuseDecode(
    inputs: DecodeInputs,
    selection: DecodeSelection,
    headMap: HeadMap,
  ): Float64Array | Promise<Float64Array>;

  densePrefill(inputs: PrefillInputs): Float64Array | Promise<Float64Array>;
  denseAnchorPrefill(
    inputs: PrefillInputs,
    budget: BudgetOptions,
  ): SelectedOutput<PrefillSelection> | Promise<SelectedOutput<PrefillSelection>>;
  anchorPrefill(
    inputs: PrefillInputs,
    budget: BudgetOptions,
  ): SelectedOutput<PrefillSelection> | Promise<SelectedOutput<PrefillSelection>>;
  reusePrefill(
    inputs: PrefillInputs,
    selection: PrefillSelection,
    headMap: HeadMap,
  ): Float64Array | Promise<Float64Array>;
}
