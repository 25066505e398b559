import { describe, expect, it } from 'vitest';
import { denseAttention } from './dense.js';
import type { LayerAttention } from './hooks.js';
import { createRandomModel } from './random.js';

const shape = { hiddenSize: 64, heads: 4, kvHeads: 2, layers: 3, intermediateSize: 96, vocabSize: 300 };

/** Records which (layer, queryStart) the prefill asked for. */
function counting(observe: boolean): { hook: LayerAttention; calls: string[] } {
  const inner = denseAttention();
  const calls: string[] = [];
  const hook: LayerAttention = {
    decode: (l, inputs) => inner.decode(l, inputs),
    prefill: (l, inputs) => {
      calls.push(`${l}@${inputs.queryStart}`);
      return inner.prefill(l, inputs);
    },
    ...(observe ? { observe: () => {} } : {}),
  };
  return { hook, calls };
}

describe('prefill skips the last layer of chunks whose outputs nobody reads', () => {
  it('the last layer attends only in the final chunk; logits and the next decode are unchanged', () => {
    const model = createRandomModel(shape, 3);
    const ids = Array.from({ length: 19 }, (_, i) => (i * 11 + 2) % 300);
    const skipped = counting(false);
    const seqA = model.createSequence(24);
    const a = model.prefill(seqA, ids, skipped.hook, { tileSize: 8 });
    expect(skipped.calls).toEqual(['0@0', '1@0', '0@8', '1@8', '0@16', '1@16', '2@16']);
    // With an observer (calibration), every layer of every chunk runs.
    const full = counting(true);
    const seqB = model.createSequence(24);
    const b = model.prefill(seqB, ids, full.hook, { tileSize: 8 });
    expect(full.calls).toHaveLength(9);
    expect(Array.from(a)).toEqual(Array.from(b));
    // The last layer's K/V of every token are in the cache all the same.
    expect(Array.from(seqA.k[2]!)).toEqual(Array.from(seqB.k[2]!));
    expect(Array.from(seqA.v[2]!)).toEqual(Array.from(seqB.v[2]!));
    expect(Array.from(model.decode(seqA, 7, denseAttention()))).toEqual(
      Array.from(model.decode(seqB, 7, denseAttention())),
    );
  });
});
