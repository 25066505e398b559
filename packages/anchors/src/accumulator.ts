/**
 * Calibration statistics: per prompt and per layer, the pooled post-softmax prefill attention
 * goes in; the head-pair similarity `Sim[a][l][j][u]` and the layer importance `w[l]` come out.
 */
import {
  type BudgetOptions,
  DEFAULT_BUDGET,
  type FloatArray,
  prefillTileBudget,
  topkIndices,
} from '@kascade/core';
import { CalibrationError } from './errors.js';

export interface CalibrationOptions {
  /** Layer count `L`. */
  readonly layers: number;
  /** KV heads `G`. */
  readonly kvHeads: number;
  /** Query tile size `T` (default 32). */
  readonly tileSize?: number;
  /** The budget the plan will record (defaults: percent 10, kMin 128, roundTo 1). */
  readonly budget?: BudgetOptions;
}

/**
 * One layer of one prefill chunk of the current prompt, as `pooledPrefillScores` gives it
 * (spread its result in), plus where the chunk sits and the layer's importance.
 */
export interface CalibrationLayerInput {
  readonly layer: number;
  /**
   * `S [kvHeads, tiles, n]`: pooled post-softmax attention of each KV head's query tile over
   * the keys. Only the keys before the tile's first query (`x < tileStart`) are read.
   */
  readonly scores: FloatArray;
  /** `D [kvHeads, tiles]`: mass of each tile on its own diagonal block. */
  readonly diagonalMass: ArrayLike<number>;
  /** Query tiles in the chunk. */
  readonly tiles: number;
  /** Position of the chunk's first query (default 0: the whole prompt in one chunk). */
  readonly queryStart?: number;
  /**
   * Per-tile budget `k` (default: the rolling `k(s)` of the accumulator's budget, `s` the tile's
   * first query position). Each must be an integer in `[0, s]`.
   */
  readonly budgets?: ArrayLike<number>;
  /** `layerImportance` of this layer over the chunk's tokens. */
  readonly importance: number;
  /** Tokens the importance averaged over, to weight chunks of one prompt (default `tiles * tileSize`). */
  readonly importanceTokens?: number;
}

/** Head-pair similarity `Sim[a][l][j][u]`, stored `[a][l][j][u]` row-major; entries with `a > l` are NaN. */
export interface HeadSimilarity {
  readonly layers: number;
  readonly kvHeads: number;
  readonly values: Float64Array;
}

/** What calibration produced: similarity, importance, and the settings it ran with. */
export interface CalibrationStatistics {
  readonly layers: number;
  readonly kvHeads: number;
  readonly tileSize: number;
  readonly budget: { readonly percent: number; readonly kMin: number; readonly roundTo: number };
  /** Prompts averaged over. */
  readonly prompts: number;
  /** Mean over prompts of the minimum over tiles of the per-tile similarity. */
  readonly similarity: HeadSimilarity;
  /** `w[l]`: mean over prompts of each prompt's (token-weighted) importance. */
  readonly importance: number[];
}

/** The index sets one layer selected in the current chunk: `sets[j * total + offsets[t] .. + k[t]]`. */
interface LayerSets {
  readonly sets: Int32Array;
  readonly offsets: Int32Array;
  readonly counts: Int32Array;
  readonly total: number;
}

function positiveInt(name: string, value: number): number {
  if (!(Number.isInteger(value) && value > 0)) {
    throw new CalibrationError(`CalibrationAccumulator: ${name} must be a positive integer, got ${value}`);
  }
  return value;
}

/**
 * Accumulates the calibration statistics of the anchor selection (see `KASCADE.md`,
 * "Calibration"). Feed it prompt by prompt:
 *
 * ```ts
 * acc.beginPrompt();
 * for (const chunk of chunks) for (let l = 0; l < L; l++) acc.addLayer({ layer: l, ...pooled, queryStart, importance });
 * acc.endPrompt();
 * ```
 *
 * Within a chunk the layers come in order `0 .. L-1`. Each `addLayer` computes the layer's own
 * Top-k set per KV head and tile (the rolling budget), then the per-tile similarity of every
 * earlier-or-equal layer's sets against this layer's scores, and folds it into the prompt's
 * running minimum; the scores are not kept. Only the index sets of the current chunk's layers are
 * held, and they are dropped when the next chunk starts and when the prompt ends, so memory does
 * not grow with the development set.
 */
export class CalibrationAccumulator {
  readonly layers: number;
  readonly kvHeads: number;
  readonly tileSize: number;
  readonly budget: { readonly percent: number; readonly kMin: number; readonly roundTo: number };

  readonly #simSum: Float64Array;
  readonly #promptMin: Float64Array;
  readonly #importanceSum: Float64Array;
  readonly #promptImportance: Float64Array;
  readonly #promptTokens: Float64Array;
  #prompts = 0;
  #open = false;
  /** Index sets of the current chunk's layers `0 .. nextLayer - 1`. */
  #held: (LayerSets | undefined)[];
  #nextLayer = 0;
  #chunks = 0;
  #chunkStart = 0;
  #chunkTiles = 0;

  constructor(options: CalibrationOptions) {
    this.layers = positiveInt('layers', options.layers);
    this.kvHeads = positiveInt('kvHeads', options.kvHeads);
    this.tileSize = positiveInt('tileSize', options.tileSize ?? 32);
    this.budget = Object.freeze({
      percent: options.budget?.percent ?? DEFAULT_BUDGET.percent,
      kMin: options.budget?.kMin ?? DEFAULT_BUDGET.kMin,
      roundTo: options.budget?.roundTo ?? DEFAULT_BUDGET.roundTo,
    });
    prefillTileBudget(0, this.budget); // validates the budget settings
    const L = this.layers;
    const G = this.kvHeads;
    this.#simSum = new Float64Array(L * L * G * G);
    this.#promptMin = new Float64Array(L * L * G * G);
    this.#importanceSum = new Float64Array(L);
    this.#promptImportance = new Float64Array(L);
    this.#promptTokens = new Float64Array(L);
    this.#held = new Array(L).fill(undefined);
  }

  /** Completed prompts. */
  get prompts(): number {
    return this.#prompts;
  }

  /** How many layers' index sets are held right now (at most `L`, 0 between prompts). */
  get retainedLayers(): number {
    return this.#held.reduce((c, s) => c + (s === undefined ? 0 : 1), 0);
  }

  /** Bytes of index sets held right now (0 between prompts). */
  get retainedBytes(): number {
    return this.#held.reduce((c, s) => c + (s === undefined ? 0 : s.sets.byteLength), 0);
  }

  beginPrompt(): void {
    if (this.#open)
      throw new CalibrationError('beginPrompt: the previous prompt was not ended (call endPrompt)');
    this.#open = true;
    this.#promptMin.fill(Number.POSITIVE_INFINITY);
    this.#promptImportance.fill(0);
    this.#promptTokens.fill(0);
    this.#nextLayer = 0;
    this.#chunks = 0;
  }

  addLayer(input: CalibrationLayerInput): void {
    const L = this.layers;
    const G = this.kvHeads;
    const T = this.tileSize;
    if (!this.#open) throw new CalibrationError('addLayer: no prompt is open (call beginPrompt first)');
    const { layer } = input;
    const expected = this.#nextLayer === L ? 0 : this.#nextLayer;
    if (layer !== expected) {
      throw new CalibrationError(
        `addLayer: expected layer ${expected} next (layers come in order 0 .. ${L - 1} per chunk), got ${layer}`,
      );
    }
    const tiles = input.tiles;
    const queryStart = input.queryStart ?? 0;
    if (!(Number.isInteger(tiles) && tiles > 0)) {
      throw new CalibrationError(`addLayer(layer ${layer}): tiles must be a positive integer, got ${tiles}`);
    }
    if (!(Number.isInteger(queryStart) && queryStart >= 0 && queryStart % T === 0)) {
      throw new CalibrationError(
        `addLayer(layer ${layer}): queryStart must be a non-negative multiple of tileSize ${T}, got ${queryStart}`,
      );
    }
    if (layer !== 0 && (queryStart !== this.#chunkStart || tiles !== this.#chunkTiles)) {
      throw new CalibrationError(
        `addLayer(layer ${layer}): chunk at queryStart ${queryStart} with ${tiles} tiles, but layer 0 of this chunk had queryStart ${this.#chunkStart} and ${this.#chunkTiles} tiles`,
      );
    }
    const { scores, diagonalMass } = input;
    if (scores.length % (G * tiles) !== 0) {
      throw new CalibrationError(
        `addLayer(layer ${layer}): scores has ${scores.length} values, not a multiple of kvHeads * tiles = ${G * tiles}`,
      );
    }
    const n = scores.length / (G * tiles);
    const lastStart = queryStart + (tiles - 1) * T;
    if (lastStart > n) {
      throw new CalibrationError(
        `addLayer(layer ${layer}): scores rows hold ${n} keys, but tile ${tiles - 1} starts at ${lastStart}`,
      );
    }
    if (diagonalMass.length !== G * tiles) {
      throw new CalibrationError(
        `addLayer(layer ${layer}): diagonalMass has ${diagonalMass.length} values, expected kvHeads * tiles = ${G * tiles}`,
      );
    }
    const importance = input.importance;
    const importanceTokens = input.importanceTokens ?? tiles * T;
    if (!Number.isFinite(importance)) {
      throw new CalibrationError(`addLayer(layer ${layer}): importance must be finite, got ${importance}`);
    }
    if (!(Number.isFinite(importanceTokens) && importanceTokens > 0)) {
      throw new CalibrationError(
        `addLayer(layer ${layer}): importanceTokens must be positive, got ${importanceTokens}`,
      );
    }

    for (let i = 0; i < G * tiles; i++) {
      const d = diagonalMass[i];
      if (!(Number.isFinite(d) && d >= 0)) {
        throw new CalibrationError(
          `addLayer(layer ${layer}): diagonalMass[${i}] = ${d} is not a finite non-negative number`,
        );
      }
    }

    // This layer's own Top-k sets, per KV head and tile.
    const counts = new Int32Array(tiles);
    const offsets = new Int32Array(tiles);
    let total = 0;
    for (let t = 0; t < tiles; t++) {
      const start = queryStart + t * T;
      const k = input.budgets === undefined ? prefillTileBudget(start, this.budget) : input.budgets[t];
      if (!(Number.isInteger(k) && k >= 0 && k <= start)) {
        throw new CalibrationError(
          `addLayer(layer ${layer}): budgets[${t}] = ${k} is not an integer in [0, ${start}] (the tile's earlier keys)`,
        );
      }
      counts[t] = k;
      offsets[t] = total;
      total += k;
    }
    const sets = new Int32Array(G * total);
    for (let j = 0; j < G; j++) {
      for (let t = 0; t < tiles; t++) {
        const row = scores.subarray((j * tiles + t) * n, (j * tiles + t + 1) * n);
        sets.set(topkIndices(row, counts[t], queryStart + t * T), j * total + offsets[t]);
      }
    }
    if (layer === 0) {
      // A new chunk: the previous chunk's sets are no longer needed.
      this.#held.fill(undefined);
      this.#chunkStart = queryStart;
      this.#chunkTiles = tiles;
      this.#chunks++;
    }
    this.#held[layer] = { sets, offsets, counts, total };

    // Per-tile similarity of every held layer a <= l, head pair (j, u), against this layer's scores.
    const l = layer;
    const ownMass = new Float64Array(G * tiles);
    for (let j = 0; j < G; j++) {
      for (let t = 0; t < tiles; t++) {
        const d = diagonalMass[j * tiles + t];
        ownMass[j * tiles + t] =
          massOf(scores, (j * tiles + t) * n, sets, j * total + offsets[t], counts[t]) + d;
      }
    }
    const min = this.#promptMin;
    for (let a = 0; a <= l; a++) {
      const borrowedSets = this.#held[a];
      if (borrowedSets === undefined) continue; // unreachable: layers 0 .. l of this chunk are held
      for (let j = 0; j < G; j++) {
        for (let u = 0; u < G; u++) {
          const at = ((a * L + l) * G + j) * G + u;
          let worst = min[at];
          for (let t = 0; t < tiles; t++) {
            const d = diagonalMass[j * tiles + t];
            const borrowed =
              massOf(
                scores,
                (j * tiles + t) * n,
                borrowedSets.sets,
                u * borrowedSets.total + borrowedSets.offsets[t],
                borrowedSets.counts[t],
              ) + d;
            const oracle = ownMass[j * tiles + t];
            const share = oracle === 0 && borrowed === 0 ? 1 : borrowed / oracle;
            if (share < worst) worst = share;
          }
          min[at] = worst;
        }
      }
    }
    this.#promptImportance[l] += importance * importanceTokens;
    this.#promptTokens[l] += importanceTokens;
    this.#nextLayer = l + 1;
  }

  endPrompt(): void {
    if (!this.#open) throw new CalibrationError('endPrompt: no prompt is open');
    if (this.#chunks === 0 || this.#nextLayer !== this.layers) {
      throw new CalibrationError(
        `endPrompt: the prompt's last chunk is incomplete (fed layers 0 .. ${this.#nextLayer - 1} of ${this.layers})`,
      );
    }
    const L = this.layers;
    const G = this.kvHeads;
    for (let a = 0; a < L; a++) {
      for (let l = a; l < L; l++) {
        const base = (a * L + l) * G * G;
        for (let i = base; i < base + G * G; i++) this.#simSum[i] += this.#promptMin[i];
      }
    }
    for (let l = 0; l < L; l++) this.#importanceSum[l] += this.#promptImportance[l] / this.#promptTokens[l];
    this.#prompts++;
    this.#open = false;
    this.#held.fill(undefined);
  }

  /** Drops the open prompt without counting it. */
  abortPrompt(): void {
    this.#open = false;
    this.#held.fill(undefined);
  }

  /** The statistics of the completed prompts. */
  statistics(): CalibrationStatistics {
    if (this.#prompts === 0) throw new CalibrationError('statistics: no prompt has been completed yet');
    const L = this.layers;
    const G = this.kvHeads;
    const values = new Float64Array(L * L * G * G).fill(Number.NaN);
    for (let a = 0; a < L; a++) {
      for (let l = a; l < L; l++) {
        const base = (a * L + l) * G * G;
        for (let i = base; i < base + G * G; i++) values[i] = this.#simSum[i] / this.#prompts;
      }
    }
    return {
      layers: L,
      kvHeads: G,
      tileSize: this.tileSize,
      budget: this.budget,
      prompts: this.#prompts,
      similarity: { layers: L, kvHeads: G, values },
      importance: Array.from(this.#importanceSum, (s) => s / this.#prompts),
    };
  }
}

function massOf(scores: FloatArray, rowStart: number, sets: Int32Array, from: number, count: number): number {
  let sum = 0;
  for (let i = from; i < from + count; i++) sum += scores[rowStart + sets[i]];
  return sum;
}
