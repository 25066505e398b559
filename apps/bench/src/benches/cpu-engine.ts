/**
 * `cpu-engine`: whole-model CPU prefill and decode speed, dense against Kascade, on one
 * random-weight model (speed does not depend on the weights). Attention runs the engine's
 * default fast ops (float32 WebAssembly SIMD, K and V read a chunk of keys at a time) through
 * its policies; the projections, MLP and logits are the engine's f32 kernels. The committed
 * results are from the GPU machine's host CPU (16-core Xeon VM, one thread), call C of
 * session 6: decode 1.50x dense at 16k (23.6 vs 35.5 tokens/s), prefill 2.78x.
 *
 * At each context `c` the KV cache is filled with random keys and values up to the point
 * measured (filling it by a dense prefill would take hours at 16k on this CPU), then:
 * - decode: one token at position `c - 1`, so it attends `c` keys;
 * - prefill: one query tile of 32 tokens at positions `c - 32 .. c - 1` (the marginal
 *   prefill rate at that context: the last tile of a `c`-token prompt).
 */
import { topkBudget } from '@kascade/core';
import { attentionLimits, createEngine, type PolicySpec } from '@kascade/engine';
import { type Bench, timingCells } from '../harness.js';
import type { Row } from '../results.js';
import { summarize } from '../stats.js';

const config = {
  architecture: 'llama',
  layers: 12,
  heads: 8,
  kvHeads: 2,
  headDim: 64,
  hiddenSize: 256,
  intermediateSize: 512,
  vocabSize: 259,
  maxContext: 16384,
} as const;
const tileSize = 32;
const budget = { percent: 10, kMin: 128, roundTo: 1 };
const anchors = [0, 4, 8];

/** A hand-written plan (no calibration: the weights are random): 3 anchors of 12 layers. */
const plan = {
  format: 'kascade-plan',
  version: 1,
  model: {
    id: 'cpu-engine bench (random weights)',
    layers: config.layers,
    heads: config.heads,
    kvHeads: config.kvHeads,
    headDim: config.headDim,
  },
  budget: { ...budget, tileSize },
  anchors,
  // Reuse layers swap the two KV heads' sets on odd layers (the cost is the same either way).
  headMaps: Array.from({ length: config.layers }, (_, l) =>
    anchors.includes(l) || l % 2 === 0 ? [0, 1] : [1, 0],
  ),
};

/**
 * The attention workspace's tunables for this run: the defaults, or `CPU_ENGINE_KEY_CHUNK`
 * (keys per chunk, a multiple of 16) and `CPU_ENGINE_TOUCH` (`0`/`1`: scattered rows loaded
 * once before their copy) from the environment, to compare settings on one machine.
 */
function attentionTuning(): { keyChunk: number; touchScattered: boolean; defaults: typeof attentionLimits } {
  const defaults = { ...attentionLimits };
  const chunk = process.env.CPU_ENGINE_KEY_CHUNK;
  const touch = process.env.CPU_ENGINE_TOUCH;
  if (chunk !== undefined && chunk !== '') {
    const keyChunk = Number(chunk);
    if (!(Number.isInteger(keyChunk) && keyChunk > 0 && keyChunk % 16 === 0)) {
      throw new RangeError(`CPU_ENGINE_KEY_CHUNK must be a positive multiple of 16, got ${chunk}`);
    }
    attentionLimits.keyChunk = keyChunk;
  }
  if (touch !== undefined && touch !== '') {
    if (touch !== '0' && touch !== '1') throw new RangeError(`CPU_ENGINE_TOUCH must be 0 or 1, got ${touch}`);
    attentionLimits.touchScattered = touch === '1';
  }
  return { keyChunk: attentionLimits.keyChunk, touchScattered: attentionLimits.touchScattered, defaults };
}

const bench: Bench = {
  name: 'cpu-engine',
  description:
    'CPU whole-model prefill (one 32-token tile at the end of the context) and decode tokens/s, dense vs kascade, ' +
    'random weights: 12 layers, 8 query heads, 2 KV heads, head dim 64, hidden 256',
  defaults: { warmup: 1, repeats: 7 },
  async run(ctx) {
    const contexts = ctx.quick ? [256, 1024] : [1024, 4096, 16384];
    const tuning = attentionTuning();
    const engine = await createEngine({
      backend: 'cpu',
      randomModel: { config, seed: 1, id: 'cpu-engine bench (random weights)' },
    });
    const model = engine.cpuModel;
    const capacity = Math.max(...contexts);
    const seq = model.createSequence(capacity);
    let s = 12345;
    const rand = () => {
      s = (Math.imul(s, 1103515245) + 12345) >>> 0;
      return s / 4294967296;
    };
    for (let l = 0; l < config.layers; l++) {
      const k = seq.k[l]!;
      const v = seq.v[l]!;
      for (let i = 0; i < k.length; i++) {
        k[i] = 2 * rand() - 1;
        v[i] = 2 * rand() - 1;
      }
    }
    const specs: PolicySpec[] = [{ kind: 'dense' }, { kind: 'kascade', plan }];
    const rows: Row[] = [];
    const median: Record<string, number> = {};
    const cpuMedian: Record<string, number> = {};
    const tile = Array.from({ length: tileSize }, (_, i) => 97 + (i % 26));
    for (const c of contexts) {
      for (const phase of ['decode', 'prefill'] as const) {
        // Dense and kascade calls alternate (the order flips every repeat), so both see the
        // same load on this shared machine; wall and CPU time are taken per call.
        const runs = specs.map((spec) => ({
          spec,
          policy: engine.createPolicy(spec),
          wall: [] as number[],
          cpu: [] as number[],
          attentionMs: 0,
          wallMs: 0,
        }));
        const call = (run: (typeof runs)[number], timed: boolean) => {
          const attn0 = run.policy.stats.attentionMs;
          const cpu0 = process.cpuUsage();
          const t0 = process.hrtime.bigint();
          if (phase === 'decode') {
            seq.length = c - 1;
            model.decode(seq, 65, run.policy);
          } else {
            seq.length = c - tileSize;
            model.prefill(seq, tile, run.policy, { tileSize });
          }
          const us = Number(process.hrtime.bigint() - t0) / 1000;
          const cpu = process.cpuUsage(cpu0);
          if (timed) {
            run.wall.push(us);
            run.cpu.push(cpu.user + cpu.system);
            run.attentionMs += run.policy.stats.attentionMs - attn0;
            run.wallMs += us / 1000;
          }
        };
        // Warm-up: at least `warmup` rounds, and until each policy has run 0.5 s (so the JIT
        // has settled on the cheap calls too), at most 200 rounds.
        const warmStart = performance.now();
        for (let w = 0; w < 200 && (w < ctx.warmup || performance.now() - warmStart < 1000); w++) {
          for (const run of runs) call(run, false);
        }
        // Decode calls are cheap and noisier on a shared machine: three times the repeats.
        const repeats = phase === 'decode' ? 3 * ctx.repeats : ctx.repeats;
        for (let r = 0; r < repeats; r++) {
          const order = r % 2 === 0 ? runs : [...runs].reverse();
          for (const run of order) call(run, true);
          if (c >= 4096) ctx.progress(`  ${phase} c=${c}: ${r + 1}/${repeats} repeats`);
        }
        for (const run of runs) {
          const stats = summarize(run.wall);
          const cpuStats = summarize(run.cpu);
          const tokens = phase === 'decode' ? 1 : tileSize;
          const tokensPerS = (tokens * 1e6) / stats.median;
          median[`${phase}-${run.spec.kind}-${c}`] = stats.median;
          cpuMedian[`${phase}-${run.spec.kind}-${c}`] = cpuStats.median;
          rows.push({
            phase,
            policy: run.spec.kind,
            context: c,
            tokens,
            topk: topkBudget(phase === 'decode' ? c : c - tileSize, budget),
            ...timingCells(stats),
            cpuMedianUs: Math.round(cpuStats.median * 100) / 100,
            tokensPerS: Math.round(tokensPerS * 100) / 100,
            cpuTokensPerS: Math.round(((tokens * 1e6) / cpuStats.median) * 100) / 100,
            attentionShare: Math.round((run.attentionMs / run.wallMs) * 1000) / 1000,
          });
          ctx.progress(
            `${phase} ${run.spec.kind} context ${c}: ${tokensPerS.toFixed(2)} tokens/s (wall median)`,
          );
        }
      }
    }
    const summary: Record<string, number> = {};
    const label = (c: number) => (c >= 1024 ? `${c / 1024}k` : String(c));
    for (const c of contexts) {
      for (const phase of ['decode', 'prefill'] as const) {
        const dense = median[`${phase}-dense-${c}`];
        const kascade = median[`${phase}-kascade-${c}`];
        if (dense && kascade) {
          const key = `kascade${phase === 'decode' ? 'Decode' : 'Prefill'}Speedup_${label(c)}`;
          summary[key] = Math.round((dense / kascade) * 1000) / 1000;
          const cpuDense = cpuMedian[`${phase}-dense-${c}`]!;
          const cpuKascade = cpuMedian[`${phase}-kascade-${c}`]!;
          summary[`${key}_cpuTime`] = Math.round((cpuDense / cpuKascade) * 1000) / 1000;
        }
      }
    }
    await engine.dispose();
    Object.assign(attentionLimits, tuning.defaults);
    return {
      config: {
        model: `random weights, ${config.layers} layers, hidden ${config.hiddenSize}, MLP ${config.intermediateSize}, vocab ${config.vocabSize}`,
        layers: config.layers,
        heads: config.heads,
        kvHeads: config.kvHeads,
        headDim: config.headDim,
        dtype:
          "f32 weights and KV cache; attention: the engine's default fast ops (float32 WebAssembly SIMD)",
        anchors: anchors.join(' '),
        topkPercent: budget.percent,
        kMin: budget.kMin,
        tileSize,
        prefillMeasured: 'one 32-token tile ending at the context length',
        kvCache: 'random keys/values up to the measured position',
        threads: 1,
        decodeRepeats: '3 x repeats (prefill: repeats)',
        warmupRule: 'at least `warmup` rounds of both policies and 1 s in all (at most 200 rounds)',
        timing: 'dense and kascade calls interleaved; wall (hrtime) and process CPU time per call',
        keyChunk: tuning.keyChunk,
        touchScattered: tuning.touchScattered,
      },
      rows,
      summary,
    };
  },
};

export default bench;
