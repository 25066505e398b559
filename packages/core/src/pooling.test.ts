import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { ShapeError } from './errors.js';
import {
  chunkArbitrary,
  decodeQuery,
  naiveProbabilities,
  prefillQuery,
  propertyRuns,
  randomDecode,
  randomPrefill,
  range,
  relativeError,
  seedArbitrary,
  shapeArbitrary,
  toShape,
} from './naive.test-support.js';
import {
  decodeProbabilities,
  pooledDecodeScores,
  pooledPrefillScores,
  poolGroupPostSoftmax,
  poolGroupPreSoftmax,
} from './pooling.js';

const shape = shapeArbitrary();
const chunk = chunkArbitrary();
const seed = seedArbitrary;
const runs = propertyRuns;

describe('decode pooling', () => {
  it('probabilities and post-softmax group pools equal naive sums over the group', () => {
    fc.assert(
      fc.property(shape, fc.integer({ min: 1, max: 40 }), seed, (s, n, sd) => {
        const inputs = randomDecode(toShape(s), n, sd);
        const probs = decodeProbabilities(inputs);
        const naive = range(0, inputs.heads).map((h) =>
          naiveProbabilities(inputs, decodeQuery(inputs, h), Math.floor(h / s.group), range(0, n)),
        );
        expect(
          relativeError(
            probs,
            naive.flatMap((p) => range(0, n).map((x) => p.get(x) ?? 0)),
          ),
        ).toBeLessThan(1e-12);
        const pooled = pooledDecodeScores(inputs);
        const want = range(0, s.kvHeads).flatMap((j) =>
          range(0, n).map((x) =>
            range(j * s.group, (j + 1) * s.group).reduce((acc, h) => acc + (naive[h].get(x) ?? 0), 0),
          ),
        );
        expect(relativeError(pooled, want)).toBeLessThan(1e-12);
        expect(relativeError(poolGroupPostSoftmax(probs, inputs, n), want)).toBeLessThan(1e-12);
        for (let j = 0; j < s.kvHeads; j++) {
          const total = pooled.subarray(j * n, (j + 1) * n).reduce((a, b) => a + b, 0);
          expect(total).toBeCloseTo(s.group, 10);
        }
      }),
      runs,
    );
  });

  it('pre-softmax pooling is the softmax of the group-mean logits', () => {
    fc.assert(
      fc.property(shape, fc.integer({ min: 1, max: 40 }), seed, (s, n, sd) => {
        const inputs = randomDecode(toShape(s), n, sd);
        const want: number[] = [];
        for (let j = 0; j < s.kvHeads; j++) {
          const heads = range(j * s.group, (j + 1) * s.group);
          const mean = new Array<number>(s.headDim).fill(0);
          for (const h of heads) {
            const q = decodeQuery(inputs, h);
            for (let e = 0; e < q.length; e++) mean[e] += q[e] / s.group;
          }
          const p = naiveProbabilities(inputs, mean, j, range(0, n));
          want.push(...range(0, n).map((x) => p.get(x) ?? 0));
        }
        expect(relativeError(poolGroupPreSoftmax(inputs), want)).toBeLessThan(1e-12);
      }),
      runs,
    );
  });

  it('rejects a probs array that does not match the shape', () => {
    expect(() => poolGroupPostSoftmax(new Float64Array(7), { heads: 2, kvHeads: 1, headDim: 4 }, 4)).toThrow(
      ShapeError,
    );
    expect(() => poolGroupPostSoftmax(new Float64Array(8), { heads: 3, kvHeads: 2, headDim: 4 }, 4)).toThrow(
      /multiple of kvHeads/,
    );
  });
});

describe('prefill pooling', () => {
  it('S[j,t](x) and the diagonal mass equal naive sums of full causal softmaxes', () => {
    let tilesChecked = 0;
    fc.assert(
      fc.property(shape, chunk, seed, (s, c, sd) => {
        const inputs = randomPrefill(toShape(s), c.queryStart, c.queries, c.tileSize, sd);
        const { scores, diagonalMass, tiles } = pooledPrefillScores(inputs);
        const n = inputs.n;
        expect(tiles).toBe(Math.ceil(c.queries / c.tileSize));
        expect(scores.length).toBe(s.kvHeads * tiles * n);
        const wantScores = new Float64Array(s.kvHeads * tiles * n);
        const wantDiag = new Float64Array(s.kvHeads * tiles);
        for (let h = 0; h < inputs.heads; h++) {
          const j = Math.floor(h / s.group);
          for (let i = 0; i < c.queries; i++) {
            const t = Math.floor(i / c.tileSize);
            const start = c.queryStart + t * c.tileSize;
            const pos = c.queryStart + i;
            const p = naiveProbabilities(inputs, prefillQuery(inputs, h, i), j, range(0, pos + 1));
            for (const [x, w] of p) {
              if (x < start) wantScores[(j * tiles + t) * n + x] += w;
              else wantDiag[j * tiles + t] += w;
            }
          }
        }
        expect(relativeError(scores, wantScores)).toBeLessThan(1e-12);
        expect(relativeError(diagonalMass, wantDiag)).toBeLessThan(1e-12);
        // Mass is conserved: every (j, t) holds g * (queries in tile).
        for (let j = 0; j < s.kvHeads; j++) {
          for (let t = 0; t < tiles; t++) {
            const inTile = Math.min(c.tileSize, c.queries - t * c.tileSize);
            const row = scores.subarray((j * tiles + t) * n, (j * tiles + t + 1) * n);
            const start = c.queryStart + t * c.tileSize;
            expect(row.subarray(start).every((x) => x === 0)).toBe(true);
            expect(row.reduce((a, b) => a + b, 0) + diagonalMass[j * tiles + t]).toBeCloseTo(
              s.group * inTile,
              9,
            );
            tilesChecked++;
          }
        }
      }),
      runs,
    );
    expect(tilesChecked).toBeGreaterThan(60);
  });

  it('puts all of a first tile on its diagonal', () => {
    const inputs = randomPrefill({ heads: 2, kvHeads: 1, headDim: 3 }, 0, 3, 4, 3);
    const { scores, diagonalMass } = pooledPrefillScores(inputs);
    expect(Array.from(scores).every((x) => x === 0)).toBe(true);
    expect(diagonalMass[0]).toBeCloseTo(6, 12);
  });
});
