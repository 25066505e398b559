import { describe, expect, it } from 'vitest';
import {
  denseCausalPrefillAttention,
  denseDecodeAttention,
  sparseDecodeAttention,
  sparsePrefillAttention,
} from './attention.js';
import { randomDecode, randomPrefill, relativeError } from './naive.test-support.js';
import { cpuReferenceBackend as cpu } from './reference-backend.js';
import { anchorDecodeTopk, anchorPrefillTopk } from './selection.js';
import type { DecodeSelection, PrefillSelection, SelectedOutput } from './types.js';

const shape = { heads: 8, kvHeads: 2, headDim: 5 };
const budget = { percent: 25, kMin: 3 };

describe('cpuReferenceBackend', () => {
  it('decode ops compose the reference functions: dense-anchor, anchor, reuse through a head map', () => {
    const anchor = randomDecode(shape, 29, 1);
    const reuse = randomDecode(shape, 29, 2);
    const denseAnchor = cpu.denseAnchorDecode(anchor, budget) as SelectedOutput<DecodeSelection>;
    expect(relativeError(denseAnchor.out, denseDecodeAttention(anchor))).toBe(0);
    expect(denseAnchor.selection).toEqual(anchorDecodeTopk(anchor, budget));
    expect(denseAnchor.selection.k).toBe(7); // max(kMin 3, floor(25% of 29))
    const a = cpu.anchorDecode(anchor, budget) as SelectedOutput<DecodeSelection>;
    expect(relativeError(a.out, sparseDecodeAttention(anchor, a.selection))).toBe(0);
    expect(relativeError(a.out, denseDecodeAttention(anchor))).toBeGreaterThan(0);
    const swapped = cpu.reuseDecode(reuse, a.selection, [1, 0]) as Float64Array;
    expect(relativeError(swapped, sparseDecodeAttention(reuse, a.selection, [1, 0]))).toBe(0);
    expect(relativeError(swapped, sparseDecodeAttention(reuse, a.selection))).toBeGreaterThan(0);
    expect(relativeError(cpu.denseDecode(reuse) as Float64Array, denseDecodeAttention(reuse))).toBe(0);
  });

  it('prefill ops compose the reference functions', () => {
    const anchor = randomPrefill(shape, 8, 13, 4, 3);
    const reuse = randomPrefill(shape, 8, 13, 4, 4);
    const denseAnchor = cpu.denseAnchorPrefill(anchor, budget) as SelectedOutput<PrefillSelection>;
    expect(relativeError(denseAnchor.out, denseCausalPrefillAttention(anchor))).toBe(0);
    expect(denseAnchor.selection).toEqual(anchorPrefillTopk(anchor, budget));
    const a = cpu.anchorPrefill(anchor, budget) as SelectedOutput<PrefillSelection>;
    expect(relativeError(a.out, sparsePrefillAttention(anchor, a.selection))).toBe(0);
    const out = cpu.reusePrefill(reuse, a.selection, [0, 0]) as Float64Array;
    expect(relativeError(out, sparsePrefillAttention(reuse, a.selection, [0, 0]))).toBe(0);
    expect(relativeError(cpu.densePrefill(reuse) as Float64Array, denseCausalPrefillAttention(reuse))).toBe(
      0,
    );
    expect(cpu.name).toBe('cpu-reference');
  });
});
