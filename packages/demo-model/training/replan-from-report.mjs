// Plans for other K from a `kascade calibrate --report` file, without running the model again:
// the report's head similarity Sim[a][l][j][u] (rounded to 1e-6) and importance are the statistics
// the DP reads. Reproduces the calibration's own plans (checked: K = 4, 6, 8 of the 4k dev run).
//   node packages/demo-model/training/replan-from-report.mjs REPORT.json OUT-{k}.json K [K ...]
import { readFileSync, writeFileSync } from 'node:fs';
// The engine as built in this workspace (`pnpm run build`): a dev-only script, so the model package
// does not depend on the engine that depends on it.
import { planFromStatistics } from '../../engine/dist/index.js';

const r = JSON.parse(readFileSync(process.argv[2], 'utf8'));
const L = r.importance.length,
  G = r.headSimilarity[0][0].length;
const values = new Float64Array(L * L * G * G);
for (let a = 0; a < L; a++)
  for (let l = 0; l < L; l++)
    for (let j = 0; j < G; j++)
      for (let u = 0; u < G; u++) {
        const x = r.headSimilarity[a][l][j][u];
        values[((a * L + l) * G + j) * G + u] = x === null ? NaN : x;
      }
const statistics = {
  layers: L,
  kvHeads: G,
  tileSize: r.tileSize,
  budget: r.budget,
  prompts: r.prompts,
  similarity: { layers: L, kvHeads: G, values },
  importance: r.importance,
};
const layerSimilarity = r.layerSimilarity.map((row) => row.map((x) => (x === null ? NaN : x)));
const model = {
  id: 'model',
  config: { architecture: 'llama', layers: L, heads: 8, kvHeads: G, headDim: 64 },
};
for (const k of process.argv.slice(4)) {
  const plan = planFromStatistics(model, statistics, layerSimilarity, k === 'auto' ? 'auto' : Number(k));
  writeFileSync(process.argv[3].replace('{k}', k), `${JSON.stringify(plan, null, 2)}\n`);
  console.log(
    k,
    plan.anchors.join(' '),
    plan.calibration.objective.toFixed(4),
    JSON.stringify(plan.headMaps),
  );
}
