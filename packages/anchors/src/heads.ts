/** Reading the head-pair similarity: layer similarity and head maps. */
import type { HeadSimilarity } from './accumulator.js';
import { AnchorSelectionError } from './errors.js';
import { anchorOfLayers } from './select.js';

function checkLayers(sim: HeadSimilarity, a: number, l: number, fn: string): void {
  if (!(Number.isInteger(a) && Number.isInteger(l) && a >= 0 && a <= l && l < sim.layers)) {
    throw new AnchorSelectionError(`${fn}: need layers 0 <= a <= l < ${sim.layers}, got a = ${a}, l = ${l}`);
  }
}

/** `Sim[a][l][j][u]`: the share of layer `l` head `j`'s oracle mass that layer `a` head `u`'s sets capture. */
export function headSimilarity(sim: HeadSimilarity, a: number, l: number, j: number, u: number): number {
  checkLayers(sim, a, l, 'headSimilarity');
  const G = sim.kvHeads;
  if (!(Number.isInteger(j) && Number.isInteger(u) && j >= 0 && u >= 0 && j < G && u < G)) {
    throw new AnchorSelectionError(`headSimilarity: heads must be in [0, ${G}), got j = ${j}, u = ${u}`);
  }
  return sim.values[((a * sim.layers + l) * G + j) * G + u];
}

/** `sim(a, l) = mean over j of max over u of Sim[a][l][j][u]`, with `sim(a, a) = 1`. */
export function layerSimilarity(sim: HeadSimilarity, a: number, l: number): number {
  checkLayers(sim, a, l, 'layerSimilarity');
  if (a === l) return 1;
  const G = sim.kvHeads;
  let sum = 0;
  for (let j = 0; j < G; j++) {
    const base = ((a * sim.layers + l) * G + j) * G;
    let best = sim.values[base];
    for (let u = 1; u < G; u++) best = Math.max(best, sim.values[base + u]);
    sum += best;
  }
  return sum / G;
}

/** The `L x L` matrix `layerSim[a][l]` the anchor DP takes; entries with `a > l` are NaN. */
export function layerSimilarityMatrix(sim: HeadSimilarity): number[][] {
  const L = sim.layers;
  const out: number[][] = [];
  for (let a = 0; a < L; a++) {
    const row = new Array<number>(L).fill(Number.NaN);
    for (let l = a; l < L; l++) row[l] = layerSimilarity(sim, a, l);
    out.push(row);
  }
  return out;
}

/**
 * Head maps of a plan: `M[l][j] = argmax over u of Sim[anchor(l)][l][j][u]` for reuse layers
 * (ties: the lowest `u`), the identity for anchors. `anchors` must start at 0, strictly increasing.
 */
export function headMaps(sim: HeadSimilarity, anchors: ArrayLike<number>): number[][] {
  const L = sim.layers;
  const G = sim.kvHeads;
  if (anchors.length === 0 || anchors[0] !== 0) {
    throw new AnchorSelectionError('headMaps: anchors must start at layer 0');
  }
  for (let i = 1; i < anchors.length; i++) {
    if (!(Number.isInteger(anchors[i]) && anchors[i] > anchors[i - 1] && anchors[i] < L)) {
      throw new AnchorSelectionError(
        `headMaps: anchors must be strictly increasing layer indices below ${L}; anchors[${i}] = ${anchors[i]}`,
      );
    }
  }
  const of = anchorOfLayers(anchors, L);
  const maps: number[][] = [];
  for (let l = 0; l < L; l++) {
    const a = of[l];
    const map = new Array<number>(G);
    for (let j = 0; j < G; j++) {
      if (a === l) {
        map[j] = j;
        continue;
      }
      const base = ((a * L + l) * G + j) * G;
      let best = 0;
      for (let u = 1; u < G; u++) if (sim.values[base + u] > sim.values[base + best]) best = u;
      map[j] = best;
    }
    maps.push(map);
  }
  return maps;
}
