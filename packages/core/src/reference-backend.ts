import {
  denseCausalPrefillAttention,
  denseDecodeAttention,
  sparseDecodeAttention,
  sparsePrefillAttention,
} from './attention.js';
import type { AttentionBackend } from './backend.js';
import { anchorDecodeTopk, anchorPrefillTopk } from './selection.js';

/**
 * The CPU reference backend: the definition every other backend is checked against. Synchronous,
 * float64, one sequence at a time.
 */
export const cpuReferenceBackend: AttentionBackend = Object.freeze({
  name: 'cpu-reference',
  denseDecode: (inputs) => denseDecodeAttention(inputs),
  denseAnchorDecode: (inputs, budget) => ({
    out: denseDecodeAttention(inputs),
    selection: anchorDecodeTopk(inputs, budget),
  }),
  anchorDecode: (inputs, budget) => {
    const selection = anchorDecodeTopk(inputs, budget);
    return { out: sparseDecodeAttention(inputs, selection), selection };
  },
  reuseDecode: (inputs, selection, headMap) => sparseDecodeAttention(inputs, selection, headMap),
  densePrefill: (inputs) => denseCausalPrefillAttention(inputs),
  denseAnchorPrefill: (inputs, budget) => ({
    out: denseCausalPrefillAttention(inputs),
    selection: anchorPrefillTopk(inputs, budget),
  }),
  anchorPrefill: (inputs, budget) => {
    const selection = anchorPrefillTopk(inputs, budget);
    return { out: sparsePrefillAttention(inputs, selection), selection };
  },
  reusePrefill: (inputs, selection, headMap) => sparsePrefillAttention(inputs, selection, headMap),
} satisfies AttentionBackend);
