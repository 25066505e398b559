import * as core from '@kascade/core';
import { describe, expect, it } from 'vitest';

// The public surface other packages code against. Under `test:dist` this resolves to the built
// `dist`, so it also checks the published shape.
const functions = [
  'f32ToF16Bits',
  'f16BitsToF32',
  'f32ToBf16Bits',
  'bf16BitsToF32',
  'toF16',
  'fromF16',
  'toBf16',
  'fromBf16',
  'createTensor',
  'tensorSize',
  'tensorToFloat32',
  'softmax',
  'topkIndices',
  'decodeProbabilities',
  'poolGroupPostSoftmax',
  'poolGroupPreSoftmax',
  'pooledDecodeScores',
  'pooledPrefillScores',
  'denseDecodeAttention',
  'denseCausalPrefillAttention',
  'sparseDecodeAttention',
  'sparsePrefillAttention',
  'anchorDecodeTopk',
  'anchorPrefillTopk',
  'allHeadsPooledDecodeTopk',
  'allHeadsPooledPrefillTopk',
  'validateSelection',
  'topkBudget',
  'prefillTileBudget',
] as const;

describe('@kascade/core exports', () => {
  it.each(functions)('exports %s', (name) => {
    // biome-ignore lint/performance/noDynamicNamespaceImportAccess: the test enumerates the public surface by name
    expect(typeof core[name]).toBe('function');
  });

  it('exports the typed errors as a hierarchy and the reference backend', () => {
    expect(new core.ShapeError('x')).toBeInstanceOf(core.KascadeRangeError);
    expect(new core.SelectionError('x')).toBeInstanceOf(RangeError);
    expect(new core.ShapeError('x').name).toBe('ShapeError');
    expect(core.cpuReferenceBackend.name).toBe('cpu-reference');
  });

  it('runs a decode step end to end through the package entry', () => {
    const heads = 4;
    const kvHeads = 2;
    const headDim = 8;
    const n = 300;
    let state = 1;
    const random = (length: number) =>
      Float32Array.from({ length }, () => {
        state = (state * 1103515245 + 12345) % 2147483648;
        return state / 1073741824 - 1;
      });
    const inputs = {
      heads,
      kvHeads,
      headDim,
      n,
      q: random(heads * headDim),
      k: random(kvHeads * n * headDim),
      v: random(kvHeads * n * headDim),
    };
    const { out, selection } = core.cpuReferenceBackend.anchorDecode(
      inputs,
      {},
    ) as core.SelectedOutput<core.DecodeSelection>;
    expect(selection.k).toBe(core.topkBudget(n)); // max(128, 30) = 128
    expect(selection.k).toBe(128);
    expect(out.length).toBe(heads * headDim);
    expect(Array.from(out).every(Number.isFinite)).toBe(true);
  });
});
