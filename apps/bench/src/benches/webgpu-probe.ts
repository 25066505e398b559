/**
 * The reuse probe of `webgpu-decode --probe` (issue 5): where the batch-1 reuse op's time goes.
 * Rows `probe-*` (column `probe` says what ran), all at one context and batch, on the anchor's own
 * selection unless the row says otherwise:
 * - `probe-split` (session 12; the only rows at more than one sequence, with the gather alone in the
 *   reuse's grid there): the reuse's and dense's split pass as it runs, with its loads served by the
 *   caches (`cachedRows`: the math alone) and with its loads but no math (`loadsOnly`), the reuse also
 *   with the gathers' settings before session 12, and the reuse's split pass by k with and without its math;
 * - `probe-floor`: passes of 1, 4 and 16 tiny dispatches (the pass and per-dispatch cost), and the
 *   gather-only kernel's grid with nothing to read (`empty`);
 * - `probe-reuse`: the reuse op with k = 64 .. the budget (fixed vs per-row cost), on contiguous
 *   and on shuffled indices (the gather pattern), with the subgroup team merge or not, more or fewer
 *   workgroups, and 1, 2 or 8 reuse ops in one pass over two K/V copies (`perOpUs`: what an op adds
 *   inside a pass, which the whole model encoded in one pass pays);
 * - `probe-dense`: 1 and 8 dense ops in one pass, the same way (`perOpUs`);
 * - `probe-gather`: `probe.wgsl`'s gather_rows, the same rows read with no attention math at all
 *   (what the memory system gives a WGSL kernel for this gather), by keys per step, workgroups and
 *   index pattern, and with the reuse default's shape by k;
 * - `probe-stages`: layer 0 and the anchor stopped after the streaming pass, the pooling, the
 *   Top-k, or whole (`untilStage`), and the streaming pass alone under some team-kernel options.
 * Rows carry `dawnToggles` when the process ran with `KASCADE_DAWN_ENABLE`.
 */
import type { BudgetOptions } from '@kascade/core';
import {
  createDecodeSlot,
  createDeviceKV,
  type DecodeArgs,
  type DeviceDecodeSlot,
  type DeviceKV,
  destroyDeviceKV,
  encodeCopy,
  encodeDecode,
  type KascadeGPU,
  readBuffer,
  teamSplits,
} from '@kascade/webgpu';
import type { BenchContext } from '../harness.js';
import type { Row } from '../results.js';
import { decodeCall, fillBuffer, round, timeOp } from './webgpu-common.js';

export interface ProbeInputs {
  readonly gpu: KascadeGPU;
  readonly ctx: BenchContext;
  readonly flush: (pass: GPUComputePassEncoder) => void;
  readonly heads: number;
  readonly n: number;
  readonly kv: DeviceKV;
  readonly q: GPUBuffer;
  readonly out: GPUBuffer;
  /** Holds the anchor's selection (k = the budget) when the probe starts; left as it was. */
  readonly slot: DeviceDecodeSlot;
  readonly headMap: readonly number[];
  readonly budget: BudgetOptions;
}

type Options = Pick<
  DecodeArgs,
  | 'targetWorkgroups'
  | 'minStepsPerSplit'
  | 'prefetchIndices'
  | 'keysPerStep'
  | 'pieceBytes'
  | 'transposedReduce'
  | 'subgroupTeamMerge'
  | 'untilStage'
  | 'selectSchedule'
  | 'streamPass'
  | 'cachedRows'
  | 'xorLayout'
  | 'loadsOnly'
  | 'halfTransposedReduce'
  | 'permuteAfterLoad'
>;

/** The subgroup team merge (the gathers' default at many rows). */
const SGM: Options = { subgroupTeamMerge: true };
/** The op's split pass alone, without the dispatch that merges its splits. */
const SPLIT_ONLY: Options = { untilStage: 'split' };
/** Session 6's select (nine dispatches; the folded one is the default up to 16 rows since session 7). */
const CLASSIC: Options = { selectSchedule: 'classic' };
/** The gathers' settings before session 12 (8 keys per step, the full butterfly, slots in order). */
const OLD_GATHER: Options = {
  transposedReduce: false,
  xorLayout: false,
  permuteAfterLoad: false,
  halfTransposedReduce: false,
  keysPerStep: 8,
};

const GATHER_BINDINGS = [
  [0, 'uniform'],
  [1, 'read'],
  [2, 'read'],
  [3, 'read'],
  [4, 'write'],
] as const;

/** Encodes probe.wgsl's gather_rows over `k` keys of each of `rows` rows in `splits` workgroups per row. */
export function encodeGatherRows(
  gpu: KascadeGPU,
  pass: GPUComputePassEncoder,
  a: {
    kv: DeviceKV;
    sel: GPUBuffer | null;
    kStride: number;
    k: number;
    splits: number;
    keysPerStep: number;
    readV: boolean;
    workgroupSize?: number;
    /** Bytes a lane loads per piece of a row: 16 (teams of 16 lanes, the default) or 8 (32 lanes). */
    pieceBytes?: 8 | 16;
  },
): void {
  if (a.kv.headDim !== 128 || a.kv.dtype !== 'f16' || a.kv.parts.length !== 1) {
    throw new RangeError('gather_rows reads one part of f16 K/V with head dim 128');
  }
  const rows = a.kv.batch * a.kv.kvHeads;
  const span = Math.max(1, Math.ceil(Math.max(1, a.k) / a.splits));
  const p = gpu.pipeline(
    'probe',
    'gather_rows',
    {
      WG: a.workgroupSize ?? 128,
      U: a.keysPerStep,
      TW: 256 / (a.pieceBytes ?? 16),
      PV: a.pieceBytes === 8 ? 1 : 2,
      KP: a.pieceBytes === 8 ? 'f16x4' : 'f16',
      INDEXED: a.sel !== null,
      READ_V: a.readV,
    },
    GATHER_BINDINGS,
  );
  const params = new Uint32Array([a.k, a.kv.capacity, span, a.kStride]);
  pass.setPipeline(p.pipeline);
  pass.setBindGroup(
    0,
    gpu.bindGroup(p, 'kascade:probe.gather_rows', {
      0: gpu.params(params.buffer),
      ...(a.sel ? { 1: a.sel } : {}),
      2: a.kv.k,
      3: a.kv.v,
      4: gpu.scratchBuffer('probe.sink', 256),
    }),
  );
  pass.dispatchWorkgroups(a.splits, rows, 1);
}

/** A seeded permutation of `xs` (xorshift32, Fisher-Yates). */
function shuffled(xs: Int32Array, seed: number): Int32Array<ArrayBuffer> {
  const out = Int32Array.from(xs);
  let s = seed >>> 0 || 1;
  for (let i = out.length - 1; i > 0; i--) {
    s ^= s << 13;
    s >>>= 0;
    s ^= s >>> 17;
    s ^= s << 5;
    s >>>= 0;
    const j = s % (i + 1);
    [out[i], out[j]] = [out[j], out[i]];
  }
  return out;
}

export async function reuseProbe(p: ProbeInputs): Promise<Row[]> {
  const { gpu, ctx, flush, n, kv, slot } = p;
  const inputs = p;
  const { batch, kvHeads } = kv;
  const rowsN = batch * kvHeads;
  const k = slot.k;
  if (!(k > 0)) throw new RangeError('reuseProbe needs the anchor selection in the slot');
  const rows: Row[] = [];
  // With extra Dawn toggles (a second process, to compare): the defaults, the gather and the stages only.
  const full = !process.env.KASCADE_DAWN_ENABLE;
  const rowBytes = 2 * kv.headDim * 2;
  const base = { context: n, batch, k };
  const push = (
    kernel: string,
    probe: string,
    s: { median: number; p10: number; p90: number; clockRatio?: number },
    extra: Row,
  ) =>
    rows.push({
      kernel,
      probe,
      ...base,
      medianUs: round(s.median),
      p10Us: round(s.p10),
      p90Us: round(s.p90),
      ...extra,
      // The SM-clock check around the timing (with the clock guard on): above ~1.05 it ran slow.
      ...(process.env.KASCADE_CLOCK_GUARD === '1' && s.clockRatio !== undefined
        ? { clockRatio: s.clockRatio }
        : {}),
      ...(process.env.KASCADE_DAWN_ENABLE ? { dawnToggles: process.env.KASCADE_DAWN_ENABLE } : {}),
    });

  // Index sets in a slot of their own: the anchor's (sorted), contiguous 0..k-1, the anchor's shuffled.
  const anchorIdx: Int32Array<ArrayBuffer> = new Int32Array(
    await readBuffer(gpu, slot.indices, rowsN * slot.kStride * 4),
  );
  const contiguous = new Int32Array(rowsN * slot.kStride).fill(-1);
  const mixed = new Int32Array(rowsN * slot.kStride).fill(-1);
  for (let r = 0; r < rowsN; r++) {
    for (let i = 0; i < k; i++) contiguous[r * slot.kStride + i] = i;
    mixed.set(shuffled(anchorIdx.subarray(r * slot.kStride, r * slot.kStride + k), 17 + r), r * slot.kStride);
  }
  const probeSlot = createDecodeSlot(gpu, batch, kvHeads, slot.kStride);
  probeSlot.k = k;
  const sets: Record<'anchor' | 'contiguous' | 'shuffled', Int32Array<ArrayBuffer>> = {
    anchor: anchorIdx,
    contiguous,
    shuffled: mixed,
  };
  const useSet = (name: keyof typeof sets) => gpu.device.queue.writeBuffer(probeSlot.indices, 0, sets[name]);
  useSet('anchor');
  // A second K/V (same shape) so that ops in one pass do not find the previous op's rows in L2.
  let kv2: DeviceKV | null = null;
  try {
    kv2 = createDeviceKV(
      gpu,
      { batch, kvHeads, capacity: n, headDim: kv.headDim, dtype: kv.dtype },
      'probe.kv',
    );
    for (const [i, part] of kv2.parts.entries()) {
      fillBuffer(gpu, part.k, 301 + 2 * i, true);
      fillBuffer(gpu, part.v, 302 + 2 * i, true);
    }
  } catch (e) {
    ctx.progress(`probe: no second K/V (${e instanceof Error ? e.message : String(e)})`);
  }
  const reuse = (pass: GPUComputePassEncoder, o: Options = {}, onKv = kv, tag = '') =>
    encodeDecode(
      gpu,
      pass,
      decodeCall({ ...inputs, kv: onKv, slot: probeSlot }, 'reuse', { scratchTag: tag, ...o }),
    );
  try {
    // 0. The split passes taken apart (session 12), at any batch: the reuse's and dense's split pass
    //    as it runs, with its loads served by the caches (`cachedRows`: the math alone), with its loads
    //    and no math (`loadsOnly`), the reuse with its settings before session 12; the reuse's split
    //    pass by k; the gather alone in the reuse's grid. Rows `probe-split`.
    const splitParts: [string, 'reuse' | 'dense', Options][] = [
      ['reuse whole', 'reuse', {}],
      ['reuse whole', 'reuse', OLD_GATHER],
      ['reuse split', 'reuse', SPLIT_ONLY],
      ['reuse split', 'reuse', { ...SPLIT_ONLY, cachedRows: true }],
      ['reuse split', 'reuse', { ...SPLIT_ONLY, loadsOnly: true }],
      ['reuse split', 'reuse', { ...SPLIT_ONLY, ...OLD_GATHER }],
      ['reuse split', 'reuse', { ...SPLIT_ONLY, ...OLD_GATHER, cachedRows: true }],
      ['dense split', 'dense', SPLIT_ONLY],
      ['dense split', 'dense', { ...SPLIT_ONLY, cachedRows: true }],
      ['dense split', 'dense', { ...SPLIT_ONLY, loadsOnly: true }],
    ];
    for (const [what, role, o] of splitParts) {
      const s = await timeOp(
        gpu,
        ctx,
        `probe: ${what} ${JSON.stringify(o)}`,
        (pass) => (role === 'reuse' ? reuse(pass, o) : encodeDecode(gpu, pass, decodeCall(inputs, role, o))),
        flush,
      );
      push('probe-split', what, s, {
        ...(Object.keys(o).length > 0 ? { options: JSON.stringify(o) } : {}),
        ...(role === 'reuse' ? { gbPerS: Math.round((rowsN * k * rowBytes) / (s.median * 1e3)) } : {}),
      });
    }
    for (const kk of [1024, 4096].filter((x) => x < k)) {
      probeSlot.k = kk;
      for (const o of [SPLIT_ONLY, { ...SPLIT_ONLY, loadsOnly: true }]) {
        const s = await timeOp(
          gpu,
          ctx,
          `probe: reuse split k=${kk} ${JSON.stringify(o)}`,
          (pass) => reuse(pass, o),
          flush,
        );
        push('probe-split', `reuse split, k ${kk}`, s, { k: kk, options: JSON.stringify(o) });
      }
    }
    probeSlot.k = k;
    if (batch > 1) {
      // The gather alone in the reuse's grid at many rows (16-byte pieces, teams of 16, 8 keys per step,
      // the reuse's splits per row).
      const splits = teamSplits(batch, kvHeads, k, 64, 2048, 4).splits;
      // (gather_rows reads one part of K/V: not at 128k batch 8 on the H200, which splits it in two.)
      for (const pieceBytes of kv.parts.length === 1 ? ([16, 8] as const) : []) {
        const s = await timeOp(
          gpu,
          ctx,
          `probe: gather_rows like the reuse default, ${splits} per row, ${pieceBytes}-byte pieces`,
          (pass) =>
            encodeGatherRows(gpu, pass, {
              kv,
              sel: probeSlot.indices,
              kStride: slot.kStride,
              k,
              splits,
              keysPerStep: 8,
              readV: true,
              pieceBytes,
            }),
          flush,
        );
        push('probe-gather', `gather only, reuse-default grid at many rows, ${pieceBytes}-byte pieces`, s, {
          keysPerStep: 8,
          workgroups: splits * rowsN,
          gbPerS: Math.round((rowsN * k * rowBytes) / (s.median * 1e3)),
        });
      }
      return rows;
    }
    // 1. Floors: a pass of 1, 4, 16 tiny dispatches; the gather-only grid with nothing to read.
    const a = gpu.scratchBuffer('bench.tinyA', 256);
    const b = gpu.scratchBuffer('bench.tinyB', 256);
    for (const count of [1, 4, 16]) {
      const s = await timeOp(
        gpu,
        ctx,
        `probe: pass of ${count} tiny dispatches`,
        (pass) => {
          for (let i = 0; i < count; i++) encodeCopy(gpu, pass, a, b, 256);
        },
        flush,
      );
      push('probe-floor', `tiny dispatches x${count}`, s, { dispatches: count });
    }
    for (const splits of [1, 59, 1024]) {
      const s = await timeOp(
        gpu,
        ctx,
        `probe: empty gather grid ${splits}x${rowsN}`,
        (pass) =>
          encodeGatherRows(gpu, pass, {
            kv,
            sel: probeSlot.indices,
            kStride: slot.kStride,
            k: 0,
            splits,
            keysPerStep: 4,
            readV: true,
          }),
        flush,
      );
      push('probe-floor', `empty gather grid, ${splits} workgroups per row`, s, {
        workgroups: splits * rowsN,
      });
    }
    // 2. The reuse op: fixed vs per-row cost (k), the index pattern, the merge and the split count.
    for (const [what, o] of [
      ['defaults', {}],
      ['split pass alone (no merge dispatch)', SPLIT_ONLY],
    ] as const) {
      for (const kk of [...[64, 1024, 4096].filter((x) => x < k), k]) {
        probeSlot.k = kk;
        try {
          const s = await timeOp(gpu, ctx, `probe: reuse ${what} k=${kk}`, (pass) => reuse(pass, o), flush);
          push('probe-reuse', `${what}, anchor indices, k ${kk}`, s, {
            k: kk,
            ...(Object.keys(o).length > 0 ? { options: JSON.stringify(o) } : {}),
            gbPerS: Math.round((rowsN * kk * rowBytes) / (s.median * 1e3)),
          });
        } catch (e) {
          gpu.resetParams();
          ctx.progress(`probe: reuse ${what} k=${kk} failed: ${e instanceof Error ? e.message : String(e)}`);
        }
      }
    }
    // The reuse default's grid (59 workgroups per row at 128k) with one team step per workgroup (32
    // keys on the H200: 4 teams of 8), whole and its split pass alone: the fixed cost of a workgroup
    // against the empty grid's (section 1) and the 7 steps of the full k.
    const oneStep = Math.min(k, 59 * 32);
    for (const [what, o] of [
      ['defaults, one step per workgroup', { minStepsPerSplit: 1 }],
      ['split pass alone, one step per workgroup', { ...SPLIT_ONLY, minStepsPerSplit: 1 }],
    ] as const) {
      probeSlot.k = oneStep;
      const s = await timeOp(gpu, ctx, `probe: reuse ${what} k=${oneStep}`, (pass) => reuse(pass, o), flush);
      push('probe-reuse', `${what}, anchor indices, k ${oneStep}`, s, {
        k: oneStep,
        options: JSON.stringify(o),
        gbPerS: Math.round((rowsN * oneStep * rowBytes) / (s.median * 1e3)),
      });
    }
    probeSlot.k = k;
    for (const set of ['contiguous', 'shuffled'] as const) {
      useSet(set);
      for (const [what, o] of [
        ['defaults', {}],
        ['subgroup team merge', SGM],
      ] as const) {
        const s = await timeOp(
          gpu,
          ctx,
          `probe: reuse ${what} on ${set} indices`,
          (pass) => reuse(pass, o),
          flush,
        );
        push('probe-reuse', `${what}, ${set} indices`, s, {
          ...(Object.keys(o).length > 0 ? { options: JSON.stringify(o) } : {}),
          gbPerS: Math.round((rowsN * k * rowBytes) / (s.median * 1e3)),
        });
      }
    }
    useSet('anchor');
    // More workgroups, whole and without the merge dispatch (does the split pass gain what the merge loses?).
    const tunings: Options[] = [{ targetWorkgroups: 1024 }, { ...SPLIT_ONLY, targetWorkgroups: 1024 }];
    for (const o of full ? tunings : []) {
      const s = await timeOp(gpu, ctx, `probe: reuse ${JSON.stringify(o)}`, (pass) => reuse(pass, o), flush);
      push('probe-reuse', 'options, anchor indices', s, {
        options: JSON.stringify(o),
        gbPerS: Math.round((rowsN * k * rowBytes) / (s.median * 1e3)),
      });
    }
    for (const [what, o] of [
      ['defaults', {}],
      ['subgroup team merge', SGM],
    ] as const) {
      for (const count of full ? [1, 2, 8] : []) {
        const s = await timeOp(
          gpu,
          ctx,
          `probe: ${count} reuse ops (${what}) in one pass`,
          (pass) => {
            for (let i = 0; i < count; i++) reuse(pass, o, i % 2 === 1 && kv2 ? kv2 : kv, `.probe${i}`);
          },
          flush,
        );
        push('probe-reuse', `${count} reuse ops in one pass (two K/V in turn), ${what}`, s, {
          ops: count,
          perOpUs: round(s.median / count),
          ...(Object.keys(o).length > 0 ? { options: JSON.stringify(o) } : {}),
        });
      }
    }
    // Dense the same way (what a per-op figure amortised over a pass must be compared with).
    for (const count of full ? [1, 8] : []) {
      const s = await timeOp(
        gpu,
        ctx,
        `probe: ${count} dense ops in one pass`,
        (pass) => {
          for (let i = 0; i < count; i++) {
            encodeDecode(
              gpu,
              pass,
              decodeCall({ ...inputs, kv: i % 2 === 1 && kv2 ? kv2 : kv }, 'dense', {
                scratchTag: `.probe${i}`,
              }),
            );
          }
        },
        flush,
      );
      push('probe-dense', `${count} dense ops in one pass (two K/V in turn)`, s, {
        ops: count,
        perOpUs: round(s.median / count),
      });
    }
    // 3. The same rows read by a kernel that does nothing else: by load width (16-byte pieces, teams
    //    of 16 lanes, or 8-byte pieces, teams of 32 lanes: the reuse default's), keys per team step,
    //    workgroups, K only; session 7's index-pattern rows (contiguous and shuffled within 3%) dropped.
    //    Then every row read in order (`stream`: what dense and the anchors' scores pass read) in the
    //    grids of dense (1024 workgroups, 8-byte pieces, 8 keys per step) and of the scores pass (4096, K only).
    const gatherRuns: {
      sel: 'anchor' | 'none';
      U: number;
      splits: number;
      readV: boolean;
      pieceBytes: 8 | 16;
    }[] = [
      { sel: 'anchor', U: 4, splits: 59, readV: true, pieceBytes: 16 },
      { sel: 'anchor', U: 8, splits: 59, readV: true, pieceBytes: 8 },
      { sel: 'anchor', U: 4, splits: 59, readV: true, pieceBytes: 8 },
      { sel: 'anchor', U: 4, splits: 256, readV: true, pieceBytes: 16 },
      { sel: 'anchor', U: 8, splits: 256, readV: true, pieceBytes: 8 },
      { sel: 'anchor', U: 4, splits: 59, readV: false, pieceBytes: 16 },
      { sel: 'none', U: 8, splits: 128, readV: true, pieceBytes: 8 },
      { sel: 'none', U: 4, splits: 256, readV: true, pieceBytes: 16 },
      { sel: 'none', U: 8, splits: 512, readV: false, pieceBytes: 8 },
      { sel: 'none', U: 4, splits: 512, readV: false, pieceBytes: 16 },
      { sel: 'none', U: 16, splits: 512, readV: false, pieceBytes: 8 },
    ];
    for (const g of gatherRuns) {
      if (g.sel === 'anchor') useSet('anchor');
      const keys = g.sel === 'none' ? n : k;
      const s = await timeOp(
        gpu,
        ctx,
        `probe: gather_rows ${JSON.stringify(g)}`,
        (pass) =>
          encodeGatherRows(gpu, pass, {
            kv,
            sel: g.sel === 'none' ? null : probeSlot.indices,
            kStride: slot.kStride,
            k: keys,
            splits: g.splits,
            keysPerStep: g.U,
            readV: g.readV,
            pieceBytes: g.pieceBytes,
          }),
        flush,
      );
      const what = g.sel === 'none' ? `stream read, every row (k ${keys})` : 'gather only, anchor indices';
      push('probe-gather', `${what}${g.readV ? '' : ', K only'}, ${g.pieceBytes}-byte pieces`, s, {
        k: keys,
        keysPerStep: g.U,
        workgroups: g.splits * rowsN,
        gbPerS: Math.round((rowsN * keys * rowBytes * (g.readV ? 1 : 0.5)) / (s.median * 1e3)),
      });
    }
    // The gather alone with the reuse default's shape at 128k batch 1 (224 keys per workgroup, 4 teams
    // of 32 lanes, 8-byte pieces, 8 keys per step: 7 steps), by k: the per-step cost without the math.
    useSet('anchor');
    for (const kk of [...[64, 1024].filter((x) => x < k), k]) {
      const splits = Math.ceil(kk / 224);
      const s = await timeOp(
        gpu,
        ctx,
        `probe: gather_rows like the reuse default, k=${kk}`,
        (pass) =>
          encodeGatherRows(gpu, pass, {
            kv,
            sel: probeSlot.indices,
            kStride: slot.kStride,
            k: kk,
            splits,
            keysPerStep: 8,
            readV: true,
            pieceBytes: 8,
          }),
        flush,
      );
      push('probe-gather', `gather only, reuse-default shape (128 invocations, 8-byte pieces), k ${kk}`, s, {
        k: kk,
        keysPerStep: 8,
        workgroups: splits * rowsN,
        gbPerS: Math.round((rowsN * kk * rowBytes) / (s.median * 1e3)),
      });
    }
    // 4. The anchors' stages: the streaming pass alone, + pooling, + Top-k, the whole op.
    //    `split`: the streaming pass without the merge of its splits; the classic select's stages too.
    const stages = [
      ['split', {}],
      ['scores', {}],
      ['pool', {}],
      ['select', {}],
      [undefined, {}],
      ['select', CLASSIC],
      [undefined, CLASSIC],
    ] as const;
    for (const role of ['dense-anchor', 'anchor'] as const) {
      for (const [stage, o] of stages) {
        const s = await timeOp(
          gpu,
          ctx,
          `probe: ${role} until ${stage ?? 'the end'} ${JSON.stringify(o)}`,
          (pass) =>
            encodeDecode(
              gpu,
              pass,
              decodeCall(inputs, role, { ...(stage ? { untilStage: stage } : {}), ...o }),
            ),
          flush,
        );
        push(
          'probe-stages',
          `${role === 'dense-anchor' ? 'layer0' : role} until ${stage ?? 'the end'}`,
          s,
          Object.keys(o).length > 0 ? { options: JSON.stringify(o) } : {},
        );
      }
    }
    // Dense's and the reuse's split pass alone (against the reads of section 3), and each with every
    // K/V load served by the caches (`cachedRows`: the attention math without the DRAM reads, so
    // math + reads - the pass says how much of the math the loads hide), dense's also with the
    // transposed reduction on lane-permuted slots (`xorLayout`).
    const splitOptions: ['dense' | 'reuse', Options][] = [
      ['dense', SPLIT_ONLY],
      ['dense', { ...SPLIT_ONLY, cachedRows: true }],
      ['dense', { ...SPLIT_ONLY, cachedRows: true, xorLayout: true }],
      ['reuse', SPLIT_ONLY],
      ['reuse', { ...SPLIT_ONLY, cachedRows: true }],
    ];
    for (const [role, o] of splitOptions) {
      const s = await timeOp(
        gpu,
        ctx,
        `probe: ${role} ${JSON.stringify(o)}`,
        (pass) => encodeDecode(gpu, pass, decodeCall(inputs, role, o)),
        flush,
      );
      push('probe-stages', `${role} until split`, s, {
        options: JSON.stringify(o),
      });
    }
    // The anchors' streaming pass alone (without the merge of its splits) with every K load served by
    // the caches (its math without its DRAM reads), and with and without lane-permuted slots (the
    // scores pass's default at few rows; layer 0's pass has no transposed reduction, so no change).
    const streamOptions: Options[] = [
      { ...SPLIT_ONLY, cachedRows: true },
      { ...SPLIT_ONLY, cachedRows: true, streamPass: { xorLayout: false } },
      { ...SPLIT_ONLY, streamPass: { xorLayout: false } },
    ];
    for (const role of ['dense-anchor', 'anchor'] as const) {
      for (const o of full ? streamOptions : []) {
        const s = await timeOp(
          gpu,
          ctx,
          `probe: ${role} until scores ${JSON.stringify(o)}`,
          (pass) => encodeDecode(gpu, pass, decodeCall(inputs, role, { untilStage: 'scores', ...o })),
          flush,
        );
        push('probe-stages', `${role === 'dense-anchor' ? 'layer0' : role} until scores, options`, s, {
          options: JSON.stringify(o),
        });
      }
    }
  } finally {
    probeSlot.indices.destroy();
    if (kv2) destroyDeviceKV(kv2);
  }
  return rows;
}
