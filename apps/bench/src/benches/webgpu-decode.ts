/**
 * `kascade-bench webgpu-decode`: the WebGPU (WGSL) decode attention ops on one layer's KV cache,
 * Llama-3.1-8B attention shape (32 query heads, 8 KV heads, d 128), K/V f16 packed in u32,
 * p = 10% (kMin 128), contexts 8k/32k/128k, batch 1 and 8.
 *
 * Per (context, batch): dense, layer-0 dense anchor, anchor (scores + pooling + radix Top-k on the
 * GPU, then sparse attention) and reuse, each in its own compute pass, timed with timestamp queries
 * where the adapter has them (else wall clock to onSubmittedWorkDone), an L2 flush between runs;
 * medians. Bandwidth over the bytes each op must read at least; a 1 GiB WGSL vec4 copy in the same
 * run; the whole-model attention of the paper's layout, t(layer0) + 4 t(anchor) + 27 t(reuse),
 * against 32 t(dense). Inputs are device-side uniform random, never zeros.
 *
 * Each decode kernel the device can run is timed in the same run (`variant`: `teams`, the default
 * where subgroups allow, and `chunked`, the first kernel); the summary's target keys are the
 * default kernel's, the other's carry its name as a suffix. Before timing, a parity check on this
 * device: dense, anchor and reuse of every kernel against the float64 core reference (n 3000,
 * batch 2, K/V read back), `parityMaxRelErr`.
 *
 * A `pass-floor` row times a pass of one tiny dispatch (what every timed op pays at least);
 * `stage-select` rows the anchor's Top-k alone at the longest context (4, 8 and 16 values per
 * invocation), and `parity-select` rows compare their outputs index for index.
 * At the longest context the team kernel's options are timed per role (`sweep-*` rows, `options`
 * column: keysPerStep, targetWorkgroups, minStepsPerSplit, prefetchIndices, subgroupTeamMerge,
 * streamPass; `SWEEPS`), each checked on the device first (parity rows with `options`, three runs per
 * role that must agree bit for bit, the anchors' Top-k checked against the float64 pooled scores),
 * and every role of the defaults is run 30 times at full size, its split partials NaN-poisoned before
 * each run, compared bit for bit with the first run (`parity-repeat` rows).
 *
 * `whole-model-one-pass` rows: the default kernel's 32 layers of the layout (anchors 2, 8, 13, 14)
 * encoded in one pass against 32 dense layers in one pass, four K/V copies in turn
 * (`wholeModelOnePassSpeedupVsDense_*`; 10 timed runs).
 *
 * Bench arguments (after `--`): `--contexts=8192,32768`, `--batches=1,8`, `--kernels=teams,chunked`,
 * `--no-parity`, `--no-sweep`, `--no-one-pass`, `--sweep-only` (no main rows and no one-pass: the
 * sweep, the select rows and the repeat checks alone, so a device job can run them in a part of their own),
 * `--deadline-s=N` (sweep rows not started after N seconds are skipped, so the results still get written),
 * `--tuning=<json>` (team-kernel options for every op of the main rows and the one-pass models).
 */
import {
  type DecodeSelection,
  denseDecodeAttention,
  fromF16,
  pooledDecodeScores,
  sparseDecodeAttention,
  topkBudget,
} from '@kascade/core';
import {
  createDecodeSlot,
  createDeviceKV,
  type DecodeArgs,
  type DecodeKernel,
  type DeviceKV,
  destroyDeviceKV,
  encodeCopy,
  encodeDecode,
  encodeFillRandom,
  encodeSelect,
  type KascadeGPU,
  type LayerRole,
  readBuffer,
  sequenceInputs,
  TEAM_DEFAULTS,
  teamsLayout,
  WebGPUShapeError,
} from '@kascade/webgpu';
import type { Bench } from '../harness.js';
import type { Row } from '../results.js';
import {
  copyBandwidth,
  type DecodeInputs,
  decodeCall,
  fillBuffer,
  l2Flusher,
  machineOf,
  openGPU,
  round,
  timeOp,
} from './webgpu-common.js';
import { reuseProbe } from './webgpu-probe.js';

const H = 32;
const G = 8;
const D = 128;
const PERCENT = 10;
const KMIN = 128;

/** Options of the team kernel a sweep row times (a subset of {@link DecodeArgs}). */
type Tuning = Pick<
  DecodeArgs,
  | 'targetWorkgroups'
  | 'keysPerStep'
  | 'loadsAhead'
  | 'minStepsPerSplit'
  | 'prefetchIndices'
  | 'pieceBytes'
  | 'selectValuesPerInvocation'
  | 'selectSchedule'
  | 'streamPass'
  | 'transposedReduce'
  | 'subgroupTeamMerge'
  | 'xorLayout'
  | 'teamWidth'
  | 'laneStats'
  | 'halfTransposedReduce'
  | 'quarterTransposedReduce'
  | 'permuteAfterLoad'
>;

/** The subgroup team merge (session 5's candidate). */
const SGM: Tuning = { subgroupTeamMerge: true };
/** Session 6's select (nine dispatches; the folded one is the default up to 16 rows since session 7). */
const CLASSIC: Tuning = { selectSchedule: 'classic' };
/** The transposed reduction on lane-permuted slots, no selects (session 9; the anchors' scores pass, dense at many rows). */
const XOR: Tuning = { xorLayout: true };
/**
 * Layer 0's pass as before session 10 at many rows (teams of 16 lanes, 8 keys per step, no transposed
 * reduction), against its default since (teams of 8 lanes, 2 keys per step, the transposed reduction).
 */
const LAYER0_S9: Tuning = { streamPass: { teamWidth: 16, keysPerStep: 8, transposedReduce: false } };
/** Layer 0's pass at many rows since session 10 (asked for explicitly, so batch 2 checks it too). */
const LAYER0_NARROW: Tuning = {
  streamPass: {
    teamWidth: 8,
    keysPerStep: 2,
    transposedReduce: true,
    loadsAhead: true,
    subgroupTeamMerge: true,
  },
};
/**
 * Session 12 (calls A and B: webgpu-decode-s12a.json, -s12b.json): the butterfly's first round
 * transposing (HALF: the default of layer 0's pass at few rows and of the gathers at many rows), the
 * first two (QUARTER: layer 0's pass at many rows); the lane-permuted slots filled after in-order loads
 * (`permuteAfterLoad`) are the default of dense and the gathers at few rows.
 */
const HALF: Tuning = { halfTransposedReduce: true };
const QUARTER: Tuning = { quarterTransposedReduce: true };
/** Layer 0's pass at many rows on teams of 16 lanes, 8 keys per step (session 9's), with QUARTER. */
const LAYER0_QUARTER: Tuning = { ...QUARTER, ...LAYER0_S9 };
/** Session 12, call B: the gathers' old defaults (before session 12: 8 keys per step, full butterfly). */
const NO_TRED_GATHER: Tuning = { transposedReduce: false, xorLayout: false, permuteAfterLoad: false };
const OLD_GATHER: Tuning = { ...NO_TRED_GATHER, halfTransposedReduce: false, keysPerStep: 8 };
const GATHER_QUARTER8: Tuning = { ...NO_TRED_GATHER, ...QUARTER, keysPerStep: 8 };
/** Layer 0's pass as before session 12: at few rows without HALF, at many rows on teams of 8 lanes. */
const OLD_LAYER0_FEW: Tuning = { streamPass: { halfTransposedReduce: false } };
const OLD_LAYER0_MANY: Tuning = {
  streamPass: { teamWidth: 8, keysPerStep: 2, transposedReduce: true, halfTransposedReduce: false },
};
const LAYER0_QUARTER_B: Tuning = { streamPass: { quarterTransposedReduce: true } };
/** Layer 0's pass at many rows as in call B (HALF without QUARTER). */
const LAYER0_HALF_MANY: Tuning = { streamPass: { quarterTransposedReduce: false } };
/** The anchors' sparse pass with the gathers' old settings, their scores pass as it is. */
const OLD_ANCHOR_SPARSE: Tuning = {
  ...OLD_GATHER,
  streamPass: { transposedReduce: true, xorLayout: true, permuteAfterLoad: false, keysPerStep: 8 },
};
/** Dense at few rows as before session 12 (slots not permuted). */
const OLD_DENSE_FEW: Tuning = { xorLayout: false, permuteAfterLoad: false };
/** Runs of each role at full size compared bit for bit (split partials NaN-poisoned before each). */
const REPEAT_RUNS = 30;
/** Parity runs per role (bit-identical outputs expected). */
const RUNS = 3;
const PARITY_OPTIONS: Tuning[] = [
  { prefetchIndices: true },
  { prefetchIndices: false, pieceBytes: 16 },
  { keysPerStep: 4, selectValuesPerInvocation: 4 },
  { selectValuesPerInvocation: 16 },
  { streamPass: { keysPerStep: 16 } },
  { transposedReduce: true, pieceBytes: 8 },
  { transposedReduce: true, pieceBytes: 16, keysPerStep: 4 },
  SGM,
  { ...SGM, pieceBytes: 16 },
  { subgroupTeamMerge: false },
  CLASSIC,
  { selectSchedule: 'folded', selectValuesPerInvocation: 16 },
  { loadsAhead: true },
  XOR,
  { streamPass: { xorLayout: false } },
  { transposedReduce: true, pieceBytes: 8, ...XOR },
  // Session 10.
  LAYER0_NARROW,
  { streamPass: { laneStats: true } },
  // Session 12: the gathers' first butterfly round transposing, at the few-row shape (8-byte pieces)
  // and the many-row one (16-byte pieces, the subgroup team merge); layer 0's pass and dense with it.
  // (Call A: HALF, LAYER0_HALF with loadsAhead, dense with HALF, PAL and the reuse on PAL passed.)
  { ...HALF, pieceBytes: 16, subgroupTeamMerge: true },
  // Call B: the old defaults of the gathers and of layer 0, the gathers' and layer 0's other candidates.
  OLD_GATHER,
  OLD_LAYER0_MANY,
  { ...GATHER_QUARTER8, pieceBytes: 16, subgroupTeamMerge: true },
  LAYER0_QUARTER_B,
  { ...LAYER0_QUARTER, loadsAhead: true },
];

/** Every combination of the given option values (a grid for the sweep). */
export function grid(axes: { [K in keyof Tuning]?: readonly Tuning[K][] }): Tuning[] {
  let out: Tuning[] = [{}];
  for (const [name, values] of Object.entries(axes) as [keyof Tuning, readonly unknown[]][]) {
    out = out.flatMap((t) => values.map((v) => ({ ...t, [name]: v }) as Tuning));
  }
  return out;
}

/** `[a, b, a, b, ...]`: candidates against the defaults in turn, so a slow stretch of the GPU shows as a break. */
function alternate(times: number, ...sets: Tuning[]): Tuning[] {
  return Array.from({ length: times }, () => sets).flat();
}

/**
 * What the sweep times per role at the longest context (the defaults are timed in the main rows):
 * grids over the team kernel's options (the device runs the whole job in well under a minute).
 */
const SWEEPS: Record<'dense' | 'dense-anchor' | 'anchor' | 'reuse', Tuning[]> = {
  // Session 7, call C: the final defaults against session 6's select, twice in turn. Calls A and B
  // (webgpu-decode-s7a.json, -s7b.json) hold what lost: gathers at 16 keys per step (188-189 against
  // 46-47 us), workgroups of one team for the gathers, the streaming passes and dense, teams_combine
  // (all removed); the folded select at batch 8.
  // Session 6's calls (webgpu-decode-s6a.json, -s6b.json) hold the candidates that lost then.
  // Session 8, call C (final): the defaults against layer 0's pass without loadsAhead. Calls A to C
  // (webgpu-decode-s8a.json, -s8b.json, -s8c-tuned.json and this file's sweep) hold what lost: the
  // loads of two steps issued together with their math one after the other (stepsPerLoad 2: dense
  // 960 against 196 us), the next step's loads before this step's math elsewhere (loadsAhead: dense
  // 288 against 195, the reuse 54.6 against 44.8, the anchor's scores pass 221 against 215), the
  // reuse with the transposed reduction (54.2 and 49.7 against 44.9), the anchors' scores pass with
  // one key per invocation (keyPerInvocation: the anchor 239.7 and 238.9 against 216.0 and 216.1 at
  // batch 1, 1528 and 1484 against 1267 at batch 8; its subgroup merge order followed an atomic
  // counter while its keys followed the invocation index, so runs differed in the last bits).
  // Session 9, call D (final): the defaults (the anchors' scores pass on lane-permuted slots, dense
  // at many rows too) against them off, and dense with them at few rows. Call C
  // (webgpu-decode-s9c.json) chose them; calls A and B (-s9a.json, -s9b.json) hold what lost: the
  // split merge in the split pass (the reuse 61.2 against 44.7 us), the ping-pong loads (65.7), each
  // K/V piece unpacked once per key (45.0 against 44.7, dense 201 against 196), the lazy rescale
  // (45.8, dense 203), the reuse with the transposed reduction (50.3 and 50.6) and with it on
  // permuted slots (84.0 and 84.8).
  // Session 10, call C (final): the new defaults at many rows (layer 0's pass on teams of 8 lanes, the
  // anchors' scores pass with each lane's own softmax statistics) against session 9's. Calls A and B
  // (webgpu-decode-s10a.json, -s10b.json) hold what lost: narrow teams elsewhere, V accumulated
  // across the subgroup (by head too), the query in workgroup memory, the rescale skipped where the
  // maximum stays, the select's histogram atomics aggregated per subgroup, the reuse at 4 or 6 keys
  // per step.
  // Session 11 (calls A and B: webgpu-decode-s11a.json, -s11b.json): every candidate lost (rows staged
  // through workgroup memory, the scores pass by scores_keys, the folded select's coarse histograms), so
  // the defaults did not change; the final call keeps session 10's checks of its many-row choices.
  // Call C: the reuse at batch 8 (0.1505 of dense in call B) with other workgroup counts and piece sizes
  // (all slower at batch 1 and 8: the package README).
  // Session 12, call A (webgpu-decode-s12a.json): the first (HALF) butterfly round transposing, the
  // lane-permuted slots filled after in-order loads (PAL), with other workgroup counts, piece sizes and
  // keys per step; the winners are call B's defaults.
  // Session 12, call B (webgpu-decode-s12b.json): the new defaults against the old settings, three
  // times in turn (all kept but the K/V parts of 4 + 4 sequences, and the gathers at 10 or 12 keys per
  // step and on 16-byte pieces with the transposed reduction). Call C (final): the same, twice, with
  // layer 0's pass at many rows on QUARTER (call B: 1375-1377 against 1405-1408 us at batch 8).
  reuse: alternate(2, {}, OLD_GATHER),
  anchor: alternate(2, {}, OLD_ANCHOR_SPARSE),
  'dense-anchor': alternate(2, {}, OLD_LAYER0_FEW, LAYER0_HALF_MANY, OLD_LAYER0_MANY),
  dense: alternate(2, {}, OLD_DENSE_FEW),
};

const bench: Bench = {
  name: 'webgpu-decode',
  description:
    'WebGPU decode attention: dense, layer-0 anchor, anchor, reuse (Llama-3.1-8B shape, f16 K/V, p=10%)',
  defaults: { warmup: 3, repeats: 20 },
  async run(ctx) {
    const started = performance.now();
    let skipped = 0;
    const args = benchArgs(ctx.benchArgs ?? []);
    const tuning: Tuning = args.tuning ?? {};
    const gpu = await openGPU();
    ctx.progress(`maxComputeWorkgroupStorageSize ${gpu.limits.maxComputeWorkgroupStorageSize}`);
    const flushKind = args.flush ?? 'copy';
    const flush = l2Flusher(gpu, ctx.quick, flushKind);
    const rows: Row[] = [];
    const summary: Record<string, number> = {};
    const available: DecodeKernel[] = teamsLayout(gpu, D, 'f16') ? ['teams', 'chunked'] : ['chunked'];
    const kernels = available.filter((k) => !args.kernels || args.kernels.includes(k));
    const suffixOf = (kernel: DecodeKernel) => (kernel === available[0] ? '' : `_${kernel}`);
    const budget = { percent: PERCENT, kMin: KMIN };
    if (args.parity) {
      let worst = 0;
      let selectionBad = 0;
      const checks: { kernel: DecodeKernel; options: Tuning }[] = kernels.map((kernel) => ({
        kernel,
        options: {},
      }));
      if (kernels.includes('teams')) {
        // Every option the sweep times, checked here first (runs must agree bit for bit).
        for (const options of PARITY_OPTIONS) checks.push({ kernel: 'teams', options });
      }
      for (const { kernel, options } of checks) {
        let got: Row[];
        try {
          got = await parity(gpu, kernel, budget, options);
        } catch (e) {
          // Only a shape this device cannot run (e.g. a transposed reduction on another subgroup
          // size) is skipped; anything else is a failure.
          if (!(e instanceof WebGPUShapeError)) throw e;
          gpu.resetParams();
          ctx.progress(`parity ${kernel} ${JSON.stringify(options)}: not run here (${e.message})`);
          continue;
        }
        for (const row of got) {
          rows.push(row);
          worst = Math.max(worst, Number(row.relErr));
          selectionBad += Number(row.selectionErrors ?? 0);
          ctx.progress(
            `parity ${kernel} ${JSON.stringify(options)} ${row.role}: relErr ${Number(row.relErr).toExponential(2)}` +
              (row.runToRun !== undefined ? `, run-to-run diff ${row.runToRun}` : '') +
              (row.selectionErrors !== undefined ? `, Top-k rows failing ${row.selectionErrors}` : ''),
          );
        }
      }
      summary.parityMaxRelErr = worst;
      summary.paritySelectionErrors = selectionBad;
    }
    if (args.parityOnly) {
      gpu.destroy();
      const config: Record<string, number | string> = {
        dtype: 'f16 (packed in u32)',
        heads: H,
        kvHeads: G,
        headDim: D,
        topkPercent: PERCENT,
        kMin: KMIN,
      };
      return {
        config,
        rows,
        summary,
        machine: machineOf(gpu),
      };
    }
    const copy = await copyBandwidth(gpu, ctx, flush);
    rows.push(copy.row);
    summary.copyGbPerS = Math.round(copy.gbPerS);
    {
      // The floor of a timed pass: one dispatch that copies 256 bytes.
      const a = gpu.scratchBuffer('bench.tinyA', 256);
      const b = gpu.scratchBuffer('bench.tinyB', 256);
      const s = await timeOp(
        gpu,
        ctx,
        'one-dispatch pass (256 B copy)',
        (p) => encodeCopy(gpu, p, a, b, 256),
        flush,
      );
      rows.push({
        kernel: 'pass-floor',
        context: 0,
        batch: 0,
        medianUs: round(s.median),
        p10Us: round(s.p10),
        p90Us: round(s.p90),
        timing: s.source,
      });
    }
    const contexts = args.contexts ?? (ctx.quick ? [4096] : [8192, 32768, 131072]);
    const batches = args.batches ?? (ctx.quick ? [1] : [1, 8]);
    for (const n of contexts) {
      for (const batch of batches) {
        const k = topkBudget(n, budget);
        let kv: ReturnType<typeof createDeviceKV>;
        try {
          kv = createDeviceKV(gpu, { batch, kvHeads: G, capacity: n, headDim: D, dtype: 'f16' }, 'bench.kv');
          if (kv.parts.length > 1) {
            ctx.progress(
              `n=${n} b=${batch}: K/V in parts of ${kv.parts.map((p) => p.batch).join(' + ')} sequences`,
            );
          }
        } catch (e) {
          ctx.progress(`skip n=${n} batch=${batch}: ${e instanceof Error ? e.message : String(e)}`);
          continue;
        }
        const usage = GPUBufferUsage.STORAGE | GPUBufferUsage.COPY_SRC;
        const q = gpu.device.createBuffer({ label: 'bench.q', size: batch * H * D * 4, usage });
        const out = gpu.device.createBuffer({
          label: 'bench.out',
          size: batch * H * D * 4,
          usage: usage | GPUBufferUsage.COPY_DST, // NaN-poisoned by the repeat checks
        });
        for (const [i, part] of kv.parts.entries()) {
          fillBuffer(gpu, part.k, 1 + 2 * i, true);
          fillBuffer(gpu, part.v, 2 + 2 * i, true);
        }
        fillBuffer(gpu, q, 3, false);
        // kStride a multiple of 64 so a K/V split by sequence can address each sequence's rows.
        const slot = createDecodeSlot(gpu, batch, G, Math.ceil(k / 64) * 64);
        const headMap = [1, 0, 3, 2, 5, 4, 7, 6];
        const inputs: DecodeInputs = { heads: H, q, kv, n, out, slot, headMap, budget };
        const kvRow = 2 * D * 2; // K + V bytes per token and head
        const minBytes: Record<LayerRole, number> = {
          dense: batch * G * n * kvRow,
          'dense-anchor': batch * G * n * kvRow,
          anchor: batch * G * (n * D * 2 + k * D * 2),
          reuse: batch * G * k * kvRow,
        };
        const noMain = args.sweepOnly === true || args.probeOnly === true;
        if (noMain) {
          // No main rows: one untimed anchor fills the pooled scores and the slot the sweep reads.
          await gpu.checked('sweep-only anchor', async () => {
            const enc = gpu.device.createCommandEncoder({ label: 'bench.anchor' });
            const pass = enc.beginComputePass();
            encodeDecode(gpu, pass, decodeCall(inputs, 'anchor'));
            pass.end();
            gpu.flushParams();
            gpu.device.queue.submit([enc.finish()]);
            await gpu.device.queue.onSubmittedWorkDone();
          });
        }
        for (const kernel of noMain ? [] : kernels) {
          const times: Partial<Record<LayerRole, number>> = {};
          for (const role of ['dense', 'dense-anchor', 'anchor', 'reuse'] as const) {
            const label = `${kernel} ${role} n=${n} b=${batch}`;
            try {
              const s = await timeOp(
                gpu,
                ctx,
                label,
                (pass) => encodeDecode(gpu, pass, decodeCall(inputs, role, { kernel, ...tuning })),
                flush,
              );
              times[role] = s.median;
              rows.push({
                kernel: role === 'dense-anchor' ? 'layer0' : role,
                variant: kernel,
                context: n,
                batch,
                k: role === 'dense' ? n : k,
                medianUs: round(s.median),
                p10Us: round(s.p10),
                p90Us: round(s.p90),
                gbPerS: Math.round(minBytes[role] / (s.median * 1e3)),
                timing: s.source,
                ...clockField(s),
              });
            } catch (e) {
              ctx.progress(`${label} failed: ${e instanceof Error ? e.message : String(e)}`);
            }
          }
          const { dense, anchor, reuse } = times;
          const layer0 = times['dense-anchor'];
          if (dense && anchor && reuse && layer0) {
            const whole = layer0 + 4 * anchor + 27 * reuse;
            rows.push({
              kernel: 'whole-model',
              variant: kernel,
              context: n,
              batch,
              k,
              medianUs: round(whole),
              denseUs: round(32 * dense),
              speedupVsDense: round((32 * dense) / whole, 3),
            });
            const tag = tagOf(n);
            const suffix = `${batch === 1 ? '' : `_b${batch}`}${suffixOf(kernel)}`;
            summary[`reuseOverDense_${tag}${suffix}`] = round(reuse / dense, 4);
            summary[`anchorOverDense_${tag}${suffix}`] = round(anchor / dense, 4);
            summary[`layer0OverDense_${tag}${suffix}`] = round(layer0 / dense, 4);
            summary[`wholeModelSpeedupVsDense_${tag}${suffix}`] = round((32 * dense) / whole, 3);
          }
          if (dense && n === 131072 && batch === 8) {
            summary[`denseBandwidthShare_128k${suffixOf(kernel)}`] = round(
              minBytes.dense / (dense * 1e3) / copy.gbPerS,
              4,
            );
          }
        }
        if (args.onePass && !noMain) {
          // The whole model's attention encoded in one pass, as an engine would: layer 0, anchors at
          // 2, 8, 13, 14 (the shipped Llama-3.1-8B plan), reuse elsewhere, against 32 dense layers.
          // Four K/V copies in turn, so no layer finds the previous layer's rows in L2.
          const kernel = kernels[0];
          const kvs = [kv];
          try {
            for (let c = 1; c < 4; c++) {
              const extra = createDeviceKV(
                gpu,
                { batch, kvHeads: G, capacity: n, headDim: D, dtype: 'f16' },
                'bench.kv',
              );
              for (const [i, part] of extra.parts.entries()) {
                fillBuffer(gpu, part.k, 100 * c + 2 * i, true);
                fillBuffer(gpu, part.v, 101 * c + 2 * i, true);
              }
              kvs.push(extra);
            }
            const anchors = new Set([2, 8, 13, 14]);
            const roleOf = (l: number): LayerRole =>
              l === 0 ? 'dense-anchor' : anchors.has(l) ? 'anchor' : 'reuse';
            const model = async (sparse: boolean) =>
              timeOp(
                gpu,
                ctx,
                `${kernel} ${sparse ? 'kascade' : 'dense'} model (32 layers, one pass) n=${n} b=${batch}`,
                (pass) => {
                  for (let l = 0; l < 32; l++) {
                    encodeDecode(
                      gpu,
                      pass,
                      decodeCall({ ...inputs, kv: kvs[l % 4] }, sparse ? roleOf(l) : 'dense', {
                        kernel,
                        scratchTag: `.layer${l}`,
                        ...tuning,
                      }),
                    );
                  }
                },
                flush,
                Math.min(ctx.repeats, 10),
                Math.min(ctx.warmup, 2),
              );
            const denseModel = await model(false);
            const sparseModel = await model(true);
            rows.push({
              kernel: 'whole-model-one-pass',
              variant: kernel,
              context: n,
              batch,
              k,
              medianUs: round(sparseModel.median),
              p10Us: round(sparseModel.p10),
              p90Us: round(sparseModel.p90),
              denseUs: round(denseModel.median),
              speedupVsDense: round(denseModel.median / sparseModel.median, 3),
              timing: sparseModel.source,
              ...clockField(sparseModel, denseModel),
            });
            summary[`wholeModelOnePassSpeedupVsDense_${tagOf(n)}${batch === 1 ? '' : `_b${batch}`}`] = round(
              denseModel.median / sparseModel.median,
              3,
            );
          } catch (e) {
            ctx.progress(
              `one-pass model n=${n} b=${batch} failed: ${e instanceof Error ? e.message : String(e)}`,
            );
          } finally {
            for (const extra of kvs.slice(1)) destroyDeviceKV(extra);
          }
        }
        if (args.sweep && !args.probeOnly && n === Math.max(...contexts)) {
          // The anchor's Top-k alone, classic at 4 and 8 values per invocation and folded at 8 and 16, on
          // the pooled scores the last anchor left; the outputs compared (they must be equal, order included).
          const rowsN = batch * G;
          const rowInfo = gpu.scratchBuffer('bench.rowInfo', rowsN * 16);
          const info = new Uint32Array(rowsN * 4);
          for (let r = 0; r < rowsN; r++) info.set([r * n, n, k, r * slot.kStride], r * 4);
          gpu.device.queue.writeBuffer(rowInfo, 0, info);
          const pooled = gpu.scratchBuffer('decode.pooled', rowsN * n * 4);
          const outs: Record<string, GPUBuffer> = {};
          const SELECT_VARIANTS = {
            classic: { valuesPerInvocation: 4 },
            classic8: { valuesPerInvocation: 8 },
            folded8: { valuesPerInvocation: 8, schedule: 'folded' },
            folded16: { valuesPerInvocation: 16, schedule: 'folded' },
          } as const;
          for (const [variant, options] of Object.entries(SELECT_VARIANTS)) {
            const selOut = gpu.scratchBuffer(`bench.selectOut.${variant}`, rowsN * slot.kStride * 4);
            outs[variant] = selOut;
            const selectArgs = {
              vals: pooled,
              rowInfo: { buffer: rowInfo, offset: 0, size: rowsN * 16 },
              rows: rowsN,
              maxLength: n,
              out: selOut,
              tag: 'bench',
            };
            const s = await timeOp(
              gpu,
              ctx,
              `select ${variant} ${rowsN} rows of ${n}, k ${k}`,
              (pass) => encodeSelect(gpu, pass, { ...selectArgs, ...options }),
              flush,
            );
            rows.push({
              kernel: 'stage-select',
              variant,
              context: n,
              batch,
              k,
              medianUs: round(s.median),
              p10Us: round(s.p10),
              p90Us: round(s.p90),
              timing: s.source,
            });
          }
          for (const variant of Object.keys(SELECT_VARIANTS).slice(1)) {
            if (!(outs[variant] && outs.classic)) continue;
            const a = new Int32Array(await readBuffer(gpu, outs[variant], rowsN * slot.kStride * 4));
            const b = new Int32Array(await readBuffer(gpu, outs.classic, rowsN * slot.kStride * 4));
            let differ = 0;
            for (let r = 0; r < rowsN; r++) {
              for (let i = 0; i < k; i++) if (a[r * slot.kStride + i] !== b[r * slot.kStride + i]) differ++;
            }
            rows.push({ kernel: 'parity-select', variant, context: n, batch, k, rowsChecked: rowsN, differ });
            ctx.progress(`select ${variant} vs classic, ${rowsN} rows of ${n}: ${differ} indices differ`);
            const key = `select${variant[0].toUpperCase()}${variant.slice(1)}Mismatches`;
            summary[`${key}_${tagOf(n)}${batch === 1 ? '' : `_b${batch}`}`] = differ;
          }
        }
        if (args.sweep && !args.probeOnly && n === Math.max(...contexts) && kernels.includes('teams')) {
          // The team kernel's options per role (the defaults are the main rows above); fewer repeats.
          // Reuse first (27 of the 32 layers), dense last; a deadline (--deadline-s) cuts the rest.
          // Tunings with very many registers per invocation (16 keys per step) last: in call C of
          // session 3 everything timed after them in the same process ran 2.6x slow.
          const heavy = (t: Tuning) => (t.keysPerStep ?? 0) >= 16 || (t.streamPass?.keysPerStep ?? 0) >= 16;
          const order = (['reuse', 'anchor', 'dense-anchor', 'dense'] as const).flatMap((role) =>
            SWEEPS[role].filter((t) => !heavy(t)).map((tuning) => ({ role, tuning })),
          );
          for (const role of ['reuse', 'anchor', 'dense-anchor', 'dense'] as const) {
            for (const tuning of SWEEPS[role].filter(heavy)) order.push({ role, tuning });
          }
          for (const { role, tuning } of order) {
            {
              if (args.deadlineS !== undefined && (performance.now() - started) / 1000 > args.deadlineS) {
                skipped++;
                continue;
              }
              const label = `teams ${role} n=${n} b=${batch} ${JSON.stringify(tuning)}`;
              try {
                const s = await timeOp(
                  gpu,
                  ctx,
                  label,
                  (pass) => encodeDecode(gpu, pass, decodeCall(inputs, role, tuning)),
                  flush,
                  Math.min(ctx.repeats, 10),
                  Math.min(ctx.warmup, 2),
                );
                rows.push({
                  kernel: `sweep-${role === 'dense-anchor' ? 'layer0' : role}`,
                  variant: 'teams',
                  options: JSON.stringify(tuning),
                  context: n,
                  batch,
                  k: role === 'dense' ? n : k,
                  medianUs: round(s.median),
                  p10Us: round(s.p10),
                  p90Us: round(s.p90),
                  gbPerS: Math.round(minBytes[role] / (s.median * 1e3)),
                  timing: s.source,
                });
              } catch (e) {
                ctx.progress(`${label} failed: ${e instanceof Error ? e.message : String(e)}`);
              }
            }
          }
        }
        if (args.sweep && !args.probeOnly && n === Math.max(...contexts) && kernels.includes('teams')) {
          // At full size: every role of the defaults run REPEAT_RUNS times must give the same bits (the
          // output and the split partials NaN-poisoned before each run, so a merge that read a partial
          // before it landed would show as NaN, not as the last run's equal value).
          const repeated: [LayerRole, Tuning][] = [
            ['dense', {}],
            ['dense-anchor', {}],
            ['anchor', {}],
            ['reuse', {}],
          ];
          for (const [role, tuning] of repeated) {
            // A check that throws (e.g. a shape this batch cannot run) costs only its own row.
            try {
              const slotWords = batch * G * slot.kStride;
              const once = async () => {
                gpu.device.queue.writeBuffer(out, 0, new Float32Array(batch * H * D).fill(Number.NaN));
                for (const name of ['decode.partML', 'decode.partO']) {
                  const buf = gpu.scratchBuffer(name, 16);
                  gpu.device.queue.writeBuffer(buf, 0, new Float32Array(buf.size / 4).fill(Number.NaN));
                }
                const selects = role === 'anchor' || role === 'dense-anchor';
                // Anchors: the slot poisoned too, and compared (layer 0's output does not depend on it).
                if (selects)
                  gpu.device.queue.writeBuffer(slot.indices, 0, new Int32Array(slotWords).fill(-5));
                const enc = gpu.device.createCommandEncoder({ label: 'bench.repeat-check' });
                const pass = enc.beginComputePass();
                encodeDecode(gpu, pass, decodeCall(inputs, role, tuning));
                pass.end();
                gpu.flushParams();
                gpu.device.queue.submit([enc.finish()]);
                const o = new Float32Array(await readBuffer(gpu, out, batch * H * D * 4));
                if (!selects) return o;
                // The first k indices of each row, as numbers; one still poisoned counts as non-finite.
                const picked = new Int32Array(await readBuffer(gpu, slot.indices, slotWords * 4));
                const both = new Float32Array(o.length + batch * G * k);
                both.set(o);
                for (let r = 0; r < batch * G; r++) {
                  for (let i = 0; i < k; i++) {
                    const v = picked[r * slot.kStride + i];
                    both[o.length + r * k + i] = v === -5 ? Number.NaN : v;
                  }
                }
                return both;
              };
              const first = await once();
              let differ = 0;
              let runsDiffering = 0;
              for (let r = 1; r < REPEAT_RUNS; r++) {
                const o = await once();
                let d = 0;
                for (let i = 0; i < o.length; i++) if (!Object.is(o[i], first[i])) d++;
                differ += d;
                if (d > 0) runsDiffering++;
              }
              const nonFinite = first.filter((x) => !Number.isFinite(x)).length;
              rows.push({
                kernel: 'parity-repeat',
                role,
                ...(Object.keys(tuning).length > 0 ? { options: JSON.stringify(tuning) } : {}),
                context: n,
                batch,
                runs: REPEAT_RUNS,
                runToRun: differ,
                runsDiffering,
                nonFinite,
              });
              summary[`repeatMismatches_${tagOf(n)}${batch === 1 ? '' : `_b${batch}`}`] =
                (summary[`repeatMismatches_${tagOf(n)}${batch === 1 ? '' : `_b${batch}`}`] ?? 0) +
                differ +
                nonFinite;
              ctx.progress(
                `repeat ${role} ${JSON.stringify(tuning)} n=${n} b=${batch}: ${differ} values in ${runsDiffering} of ${REPEAT_RUNS - 1} runs differ from the first (partials NaN-poisoned), ${nonFinite} non-finite`,
              );
            } catch (e) {
              ctx.progress(
                `repeat ${role} ${JSON.stringify(tuning)} n=${n} b=${batch} failed: ${e instanceof Error ? e.message : String(e)}`,
              );
            }
          }
        }
        if ((args.probe || args.probeOnly) && n === Math.max(...contexts) && kernels.includes('teams')) {
          // Where the reuse op's time goes (rows probe-*; webgpu-probe.ts); the slot holds the anchor's selection.
          try {
            rows.push(
              ...(await reuseProbe({ gpu, ctx, flush, heads: H, n, kv, q, out, slot, headMap, budget })),
            );
          } catch (e) {
            ctx.progress(`probe n=${n} b=${batch} failed: ${e instanceof Error ? e.message : String(e)}`);
          }
        }
        destroyDeviceKV(kv);
        for (const b of [q, out, slot.indices]) b.destroy();
      }
    }
    if (skipped > 0) {
      ctx.progress(`deadline: ${skipped} sweep rows not timed`);
      summary.sweepRowsSkipped = skipped;
    }
    const timing = rows.find((r) => typeof r.timing === 'string')?.timing ?? 'none';
    const workgroupStorage = gpu.limits.maxComputeWorkgroupStorageSize;
    gpu.destroy();
    return {
      config: {
        dtype: 'f16 (packed in u32)',
        heads: H,
        kvHeads: G,
        headDim: D,
        topkPercent: PERCENT,
        kMin: KMIN,
        timing: String(timing),
        layout: 't(layer0) + 4 t(anchor) + 27 t(reuse) vs 32 t(dense)',
        kernels: kernels.join(','),
        defaultKernel: available[0],
        teamDefaults: JSON.stringify(TEAM_DEFAULTS),
        workgroupStorageBytes: workgroupStorage,
        ...(args.tuning ? { tuning: JSON.stringify(args.tuning) } : {}),
        l2Flush:
          flushKind === 'copy'
            ? 'a 256 MiB copy before each timed run (the L2 left full of dirty lines)'
            : 'a 256 MiB read before each timed run (the L2 left full of clean lines)',
      },
      rows,
      summary,
      machine: machineOf(gpu),
    };
  },
};

/** `clockRatio` (the worse SM-clock check around the timings) when the clock guard is on. */
function clockField(...stats: { clockRatio: number }[]): Row {
  if (process.env.KASCADE_CLOCK_GUARD !== '1') return {};
  return { clockRatio: Math.max(...stats.map((s) => s.clockRatio)) };
}

function tagOf(n: number): string {
  return n === 131072 ? '128k' : n === 32768 ? '32k' : n === 8192 ? '8k' : `${n}`;
}

/** The JSON object of `--tuning=<json>` (team-kernel options, {@link Tuning}). */
function tuningArg(json: string): Tuning {
  let v: unknown;
  try {
    v = JSON.parse(json);
  } catch {
    throw new RangeError(`--tuning takes a JSON object of team-kernel options, got '${json}'`);
  }
  if (typeof v !== 'object' || v === null || Array.isArray(v)) {
    throw new RangeError(`--tuning takes a JSON object of team-kernel options, got '${json}'`);
  }
  return v as Tuning;
}

/**
 * Bench arguments: `--contexts=a,b`, `--batches=a,b`, `--kernels=teams,chunked`, `--no-parity`, `--no-sweep`,
 * `--no-one-pass`, `--sweep-only`, `--deadline-s=N`, `--probe` (the reuse probe at the longest context),
 * `--probe-only` (the probe alone: no main rows, sweep or one-pass), `--tuning=<json>` (team-kernel
 * options for every op of the main rows and the one-pass models, e.g. a candidate default; the
 * results' config names them), `--flush=copy|read` (the L2 flush before each timed run: a 256 MiB copy,
 * the default, or a read that leaves no dirty lines; `config.l2Flush` names it).
 */
export function benchArgs(argv: readonly string[]): {
  contexts?: number[];
  batches?: number[];
  kernels?: DecodeKernel[];
  parity: boolean;
  sweep: boolean;
  onePass: boolean;
  sweepOnly?: boolean;
  deadlineS?: number;
  parityOnly?: boolean;
  probe?: boolean;
  probeOnly?: boolean;
  tuning?: Tuning;
  flush?: 'copy' | 'read';
} {
  const out: ReturnType<typeof benchArgs> = { parity: true, sweep: true, onePass: true };
  const ints = (name: string, v: string) => {
    const xs = v.split(',').map(Number);
    if (!xs.every((x) => Number.isInteger(x) && x > 0)) {
      throw new RangeError(`--${name} takes positive integers separated by commas, got '${v}'`);
    }
    return xs;
  };
  for (const a of argv) {
    const [name, value = ''] = a.replace(/^--/, '').split('=');
    if (name === 'contexts') out.contexts = ints(name, value);
    else if (name === 'batches') out.batches = ints(name, value);
    else if (name === 'kernels') {
      const ks = value.split(',');
      for (const k of ks) {
        if (k !== 'teams' && k !== 'chunked') throw new RangeError(`--kernels: unknown kernel '${k}'`);
      }
      out.kernels = ks as DecodeKernel[];
    } else if (name === 'no-parity') out.parity = false;
    else if (name === 'no-sweep') out.sweep = false;
    else if (name === 'no-one-pass') out.onePass = false;
    else if (name === 'sweep-only') out.sweepOnly = true;
    else if (name === 'parity-only') out.parityOnly = true;
    else if (name === 'probe') out.probe = true;
    else if (name === 'probe-only') out.probeOnly = true;
    else if (name === 'deadline-s') out.deadlineS = ints(name, value)[0];
    else if (name === 'tuning') out.tuning = tuningArg(a.slice(a.indexOf('=') + 1));
    else if (name === 'flush') {
      if (value !== 'copy' && value !== 'read')
        throw new RangeError(`--flush takes copy or read, got '${value}'`);
      out.flush = value;
    } else throw new RangeError(`webgpu-decode: unknown argument '${a}'`);
  }
  return out;
}

/**
 * Parity on this device: dense, anchor and reuse of `kernel` at n 3000, batch 2, against the float64
 * core reference on the K/V read back (f16), the anchor's selection read back for the sparse ones.
 */
async function parity(
  gpu: KascadeGPU,
  kernel: DecodeKernel,
  budget: { percent: number; kMin: number },
  options: Tuning = {},
): Promise<Row[]> {
  const [B, n] = [2, 3000];
  const kv: DeviceKV = createDeviceKV(gpu, { batch: B, kvHeads: G, capacity: n, headDim: D, dtype: 'f16' });
  const usage = GPUBufferUsage.STORAGE | GPUBufferUsage.COPY_SRC | GPUBufferUsage.COPY_DST;
  const q = gpu.device.createBuffer({ label: 'parity.q', size: B * H * D * 4, usage });
  const out = gpu.device.createBuffer({ label: 'parity.out', size: B * H * D * 4, usage });
  fillBuffer(gpu, kv.k, 11, true);
  fillBuffer(gpu, kv.v, 12, true);
  {
    const enc = gpu.device.createCommandEncoder({ label: 'parity.q' });
    const pass = enc.beginComputePass();
    encodeFillRandom(gpu, pass, q, B * H * D, { seed: 13, amplitude: 4 });
    pass.end();
    gpu.flushParams();
    gpu.device.queue.submit([enc.finish()]);
  }
  const per = G * n * D;
  const kh = fromF16(new Uint16Array(await readBuffer(gpu, kv.k, B * per * 2)));
  const vh = fromF16(new Uint16Array(await readBuffer(gpu, kv.v, B * per * 2)));
  const qh = new Float32Array(await readBuffer(gpu, q, B * H * D * 4));
  const ref = sequenceInputs({ heads: H, kvHeads: G, headDim: D, n }, qh, kh, vh);
  const k = topkBudget(n, budget);
  const kStride = Math.ceil(k / 64) * 64;
  const slot = createDecodeSlot(gpu, B, G, kStride);
  const headMap = [1, 0, 3, 2, 5, 4, 7, 6];
  const rows: Row[] = [];
  let sels: DecodeSelection[] = [];
  for (const role of ['dense', 'dense-anchor', 'anchor', 'reuse'] as const) {
    // Run RUNS times; every run must give the same bits (a merge reading a partial too early
    // would not).
    const runs: Float32Array[] = [];
    for (let rep = 0; rep < RUNS; rep++) {
      await gpu.checked(`parity ${kernel} ${role}`, async () => {
        gpu.device.queue.writeBuffer(out, 0, new Float32Array(B * H * D).fill(Number.NaN));
        const enc = gpu.device.createCommandEncoder({ label: 'parity' });
        const pass = enc.beginComputePass();
        encodeDecode(
          gpu,
          pass,
          decodeCall({ heads: H, q, kv, n, out, slot, headMap, budget }, role, { kernel, ...options }),
        );
        pass.end();
        gpu.flushParams();
        gpu.device.queue.submit([enc.finish()]);
        await gpu.device.queue.onSubmittedWorkDone();
      });
      runs.push(new Float32Array(await readBuffer(gpu, out, B * H * D * 4)));
    }
    const o = runs[0];
    let runToRun = 0;
    for (const r of runs.slice(1)) {
      for (let i = 0; i < o.length; i++) if (!Object.is(r[i], o[i])) runToRun++;
    }
    let badRows: number | undefined;
    if (role === 'anchor' || role === 'dense-anchor') {
      const all = new Int32Array(await readBuffer(gpu, slot.indices, B * G * kStride * 4));
      const got = Array.from({ length: B }, (_, b) => {
        const indices = new Int32Array(G * k);
        for (let j = 0; j < G; j++) {
          indices.set(all.subarray((b * G + j) * kStride, (b * G + j) * kStride + k), j * k);
        }
        return { kvHeads: G, k, indices };
      });
      badRows = got.reduce((sum, sel, b) => sum + selectionErrors(sel, pooledDecodeScores(ref(b)), n), 0);
      if (role === 'anchor') sels = got;
    }
    let num = 0;
    let den = 0;
    for (let b = 0; b < B; b++) {
      const want =
        role === 'dense' || role === 'dense-anchor'
          ? denseDecodeAttention(ref(b))
          : sparseDecodeAttention(ref(b), sels[b], role === 'reuse' ? headMap : undefined);
      for (let i = 0; i < want.length; i++) {
        const got = o[b * H * D + i];
        num += Number.isFinite(got) ? (got - want[i]) ** 2 : Number.POSITIVE_INFINITY;
        den += want[i] ** 2;
      }
    }
    const relErr = Math.sqrt(num / den);
    rows.push({
      kernel: 'parity',
      variant: kernel,
      ...(Object.keys(options).length > 0 ? { options: JSON.stringify(options) } : {}),
      role,
      context: n,
      batch: B,
      k,
      relErr: Number.isFinite(relErr) ? relErr : 1e30,
      runs: RUNS,
      runToRun,
      ...(badRows !== undefined ? { selectionErrors: badRows } : {}),
    });
  }
  destroyDeviceKV(kv);
  for (const b of [q, out, slot.indices]) b.destroy();
  return rows;
}

/**
 * Rows (KV heads) of one sequence's selection that fail the FlashInfer-style check against the
 * float64 pooled scores: indices in range and distinct, each pick's score at least the k-th largest
 * (relative tolerance 1e-4: the device pools f32 logits).
 */
export function selectionErrors(sel: DecodeSelection, pooled: Float64Array, n: number): number {
  let bad = 0;
  for (let j = 0; j < sel.kvHeads; j++) {
    const row = pooled.subarray(j * n, (j + 1) * n);
    const kth = Float64Array.from(row).sort()[n - sel.k];
    const seen = new Set<number>();
    let ok = true;
    for (let i = 0; i < sel.k; i++) {
      const x = sel.indices[j * sel.k + i];
      if (!(Number.isInteger(x) && x >= 0 && x < n) || seen.has(x) || row[x] < kth * (1 - 1e-4)) ok = false;
      seen.add(x);
    }
    if (!ok) bad++;
  }
  return bad;
}

export default bench;
