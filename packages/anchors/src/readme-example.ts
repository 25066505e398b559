// The README's example, verbatim (readme.test.ts checks that and runs it).
import {
  buildPlan,
  CalibrationAccumulator,
  layerRoles,
  layerSimilarityMatrix,
  parsePlan,
  selectAnchors,
  serializePlan,
} from '@kascade/anchors';
import { layerImportance, pooledPrefillScores } from '@kascade/core';

const model = { id: 'toy', layers: 4, heads: 4, kvHeads: 2, headDim: 8 };
const hidden = model.heads * model.headDim;
const random = (size: number) => Float64Array.from({ length: size }, () => Math.random() * 4 - 2);

const acc = new CalibrationAccumulator({
  layers: 4,
  kvHeads: 2,
  tileSize: 4,
  budget: { percent: 25, kMin: 4 },
});
for (let prompt = 0; prompt < 3; prompt++) {
  const n = 32; // prompt tokens
  acc.beginPrompt();
  for (let layer = 0; layer < model.layers; layer++) {
    // A real run takes these from the model's dense forward pass; random ones keep the example short.
    const attention = { ...model, q: random(4 * n * 8), k: random(2 * n * 8), v: random(2 * n * 8) };
    const pooled = pooledPrefillScores({ ...attention, n, queries: n, queryStart: 0, tileSize: 4 });
    const importance = layerImportance(random(n * hidden), random(n * hidden), n, hidden);
    acc.addLayer({ layer, ...pooled, importance });
  }
  acc.endPrompt();
}

const statistics = acc.statistics();
const selection = selectAnchors({
  similarity: layerSimilarityMatrix(statistics.similarity),
  weights: statistics.importance,
  anchors: 2,
});
export const text = serializePlan(buildPlan({ model, statistics, selection }));
export const plan = parsePlan(text, model); // what the engine does when it loads the file
console.log(plan.anchors, layerRoles(plan)); // e.g. [ 0, 2 ] [ 'dense-anchor', 'reuse', 'anchor', 'reuse' ]
