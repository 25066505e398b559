import { type BudgetOptions, topkBudget } from '@kascade/core';
import type { KascadeGPU } from '../context.js';
import { WebGPUFeatureError, WebGPUShapeError } from '../errors.js';
import type { PieceType } from '../program.js';
import type { DeviceKV } from '../tensors.js';
import { groupSize, type Pass, packParams, positiveInt, resolveHeadMap } from './common.js';
import { encodeSelect, type SelectSchedule } from './select.js';

/** The layer roles of Kascade (plus plain dense, the baseline). */
export type LayerRole = 'dense' | 'dense-anchor' | 'anchor' | 'reuse';

/**
 * Which decode attention kernel streams the keys:
 * - `teams` (`decode_teams.wgsl`): subgroup teams read consecutive K/V rows with coalesced 16-byte
 *   loads and keep their own online softmax, no barrier in the key loop. Needs `subgroups` and the
 *   adapter's subgroup sizes; the default where the device has them.
 * - `chunked` (`decode_attend.wgsl`): chunks of keys in workgroup memory, one invocation per key
 *   in the scores pass (one subgroup per key with `subgroups`); works on every device.
 */
export type DecodeKernel = 'teams' | 'chunked';

/** The team kernel's shape on this device for a head dim and K/V dtype, or `null` when it cannot run. */
export function teamsLayout(
  gpu: KascadeGPU,
  headDim: number,
  dtype: 'f32' | 'f16',
  pieceBytes: 8 | 16 = 16,
  teamWidth?: number,
): { WG: number; TW: number; PPL: number; PV: number } | null {
  const sizes = gpu.info.subgroupSizes;
  if (!gpu.info.hasSubgroups || !sizes) return null;
  const pow2 = (x: number) => Number.isInteger(x) && x >= 1 && (x & (x - 1)) === 0;
  if (!pow2(sizes.min) || !pow2(sizes.max)) return null;
  if (pieceBytes === 8 && dtype !== 'f16') return null;
  // teams_partial binds 10 storage buffers (the split merge's among them).
  if ((gpu.limits?.maxStorageBuffersPerShaderStage ?? 10) < 10) return null;
  const pieces = (headDim * (dtype === 'f16' ? 2 : 4)) / pieceBytes;
  // teamWidth (a power of two): narrower teams, each lane more pieces of a row.
  const TW = Math.min(pieces, sizes.min, teamWidth ?? pieces);
  // Workgroups of up to 128 invocations (256, tried in sessions 5 and 6, was slower for every pass).
  const WG = Math.min(128, 16 * TW, gpu.limits?.maxComputeInvocationsPerWorkgroup ?? 256);
  if (sizes.max > WG) return null;
  return { WG, TW, PPL: pieces / TW, PV: dtype === 'f16' && pieceBytes === 16 ? 2 : 1 };
}

/** The decode kernel an op uses: `requested`, else `teams` where it can run, else `chunked`. */
export function resolveDecodeKernel(
  gpu: KascadeGPU,
  headDim: number,
  dtype: 'f32' | 'f16',
  requested?: DecodeKernel,
): DecodeKernel {
  const can = teamsLayout(gpu, headDim, dtype) !== null;
  if (requested === 'teams' && !can) {
    throw new WebGPUFeatureError(
      'subgroups',
      "decode kernel 'teams' needs the subgroups feature and the adapter's subgroup sizes (a power of two, at most 128)",
    );
  }
  return requested ?? (can ? 'teams' : 'chunked');
}

/** The decode index slot on the device: `indices [batch, kvHeads, kStride]` u32, first `k` of each row valid. */
export interface DeviceDecodeSlot {
  readonly indices: GPUBuffer;
  /** Where sequence 0's rows start in `indices` (set on the per-part views of a split K/V). */
  readonly byteOffset?: number;
  readonly batch: number;
  readonly kvHeads: number;
  readonly kStride: number;
  /** Keys selected per row by the last anchor that wrote it. */
  k: number;
}

export function createDecodeSlot(
  gpu: KascadeGPU,
  batch: number,
  kvHeads: number,
  kStride: number,
): DeviceDecodeSlot {
  const size = Math.max(16, batch * kvHeads * kStride * 4);
  gpu.checkBinding('decode slot', size);
  const indices = gpu.device.createBuffer({
    label: 'kascade:decode-slot',
    size,
    usage: GPUBufferUsage.STORAGE | GPUBufferUsage.COPY_SRC | GPUBufferUsage.COPY_DST,
  });
  return { indices, batch, kvHeads, kStride, k: 0 };
}

export interface DecodeArgs {
  readonly role: LayerRole;
  readonly heads: number;
  /** `[batch, heads, headDim]` f32. */
  readonly q: GPUBuffer | GPUBufferBinding;
  readonly kv: DeviceKV;
  /** Valid keys per head (the new token's key already appended). */
  readonly n: number;
  /** `[batch, heads, headDim]` f32, written. */
  readonly out: GPUBuffer | GPUBufferBinding;
  /** Written by anchors, read by reuse layers. */
  readonly slot?: DeviceDecodeSlot;
  /** Reuse layers: KV head `j` reads the slot row of KV head `headMap[j]`. */
  readonly headMap?: ArrayLike<number>;
  readonly budget?: BudgetOptions;
  readonly scale?: number;
  /** The kernel that streams the keys (default: `teams` where the device can run it, else `chunked`). */
  readonly kernel?: DecodeKernel;
  /** `teams` only: about how many workgroups to split the keys over (default: `TEAM_DEFAULTS`; for tuning). */
  readonly targetWorkgroups?: number;
  /**
   * `teams` only: K/V rows a team loads per step, 1..16 (for tuning). Default: `TEAM_DEFAULTS` for
   * group sizes up to 4 (8), 2 for larger groups.
   */
  readonly keysPerStep?: number;
  /**
   * `teams` only, f16 K/V: bytes a lane loads per piece of a row, 16 or 8 (twice the lanes per team,
   * half the registers per lane for the query and the accumulators). Default: `TEAM_DEFAULTS`.
   */
  readonly pieceBytes?: 8 | 16;
  /** `teams` only: the fewest team steps a workgroup takes (default: `TEAM_DEFAULTS`; for tuning). */
  readonly minStepsPerSplit?: number;
  /**
   * `teams` only: lanes per team, a power of two (at most the pieces per row and the smallest
   * subgroup size, the default width). A narrower team holds more pieces of a row per lane (more query
   * and accumulator registers) and finishes each dot product in fewer shuffle rounds; its workgroup
   * has more teams. Default: `TEAM_DEFAULTS` (the widest).
   */
  readonly teamWidth?: number;
  /**
   * `teams` only, passes without V on the transposed reduction (the anchors' scores pass; ignored
   * elsewhere): each lane keeps the running softmax statistics of its own scores, merged across the
   * team once after the key loop, instead of the team's per-step maximum and sums. Default:
   * `TEAM_DEFAULTS` (off).
   */
  readonly laneStats?: boolean;
  /**
   * `teams` only: a team issues the next step's K/V loads before the current step's math (two steps
   * of rows in registers), so the math of one step overlaps the loads of the next. Default:
   * `TEAM_DEFAULTS` (off).
   */
  readonly loadsAhead?: boolean;
  /**
   * `teams` only, where `keysPerStep x group` equals the team's width (e.g. 8 keys x group 4 with
   * 8-byte pieces): the dot products are finished by a transposing butterfly that leaves each lane
   * one full score (team width - 1 shuffles per lane instead of log2(width) per score), with one exp
   * per lane. Default: `TEAM_DEFAULTS` (off).
   */
  readonly transposedReduce?: boolean;
  /**
   * `teams` only, for measurements: every K/V load reads one of a head's first 8 rows (served by the
   * caches), so a pass runs its attention math without its DRAM reads. The output is then not attention.
   */
  readonly cachedRows?: boolean;
  /**
   * `teams` only, for measurements: the split pass issues its K/V loads but skips the attention math
   * (the loaded pieces are summed into one register so the loads stay). The output is then not attention.
   */
  readonly loadsOnly?: boolean;
  /**
   * `teams` only, passes with V and without the transposed reduction (the gathers, layer 0's pass at
   * few rows, dense where its transposed reduction is off), `keysPerStep` even: the butterfly's first
   * round transposes (each half of the team keeps the scores of its half of the step's keys), the other
   * rounds reduce half as many scores, each half takes the exps of its own keys and the partner half's
   * probabilities by one shuffle each: the same bits as the full butterfly with fewer shuffles and exps.
   * Ignored on other passes. Default: `TEAM_DEFAULTS` (off).
   */
  readonly halfTransposedReduce?: boolean;
  /**
   * `teams` only, like `halfTransposedReduce` with the second butterfly round transposing too (each
   * quarter of the team reduces a quarter of the scores), `keysPerStep` a multiple of 4 and teams of at
   * least 4 lanes (else `halfTransposedReduce` where that applies). The same bits. Default: `TEAM_DEFAULTS` (off).
   */
  readonly quarterTransposedReduce?: boolean;
  /**
   * `teams` only, with the transposed reduction (group a power of two): lane L's slots hold the step's
   * keys and the query heads permuted by L (slot e holds element e XOR L), so each round of the
   * transposing butterfly needs no selects; the scores are the same bits, V is summed in a
   * lane-dependent key order. Default: `TEAM_DEFAULTS` (off).
   */
  readonly xorLayout?: boolean;
  /**
   * `teams` only, with `xorLayout`: a team loads the step's keys in order (each load instruction on one
   * row) and moves them to the lane-permuted slots afterwards by selects in registers (log2 of the
   * keys per step rounds of swaps); the scores are the bits of `xorLayout`, V is summed in key order.
   * Default: `TEAM_DEFAULTS` (off).
   */
  readonly permuteAfterLoad?: boolean;
  /** `teams` only, gathering passes: stage the key indices in workgroup memory first (default: `TEAM_DEFAULTS`, on). */
  readonly prefetchIndices?: boolean;
  /**
   * `teams` only: the teams of a workgroup merge with one barrier instead of two per query head (the
   * teams of a subgroup by shuffles, then the subgroups through workgroup memory, every head at
   * once), where the workgroup memory allows. Default: `TEAM_DEFAULTS` (off).
   */
  readonly subgroupTeamMerge?: boolean;
  /**
   * The classic select's values per invocation in its per-chunk passes: 4, 8 (default in decode) or
   * 16 (for tuning).
   */
  readonly selectValuesPerInvocation?: 4 | 8 | 16;
  /**
   * Anchors: how the select's passes are dispatched ({@link SelectSchedule}). Default: `folded` up to
   * {@link FEW_ROWS} rows (sequence x KV head), `classic` above: on the H200 (call A of session 7, 128k)
   * the select alone took 49.7 against 55.1 us at batch 1 (8 rows) but 219.7 against 151.6 at batch 8
   * (64 rows: every workgroup of a folded pass repeats the scan of its row's 2048 bins).
   */
  readonly selectSchedule?: SelectSchedule;
  /**
   * Anchors (for measurements): stop after this stage; the slot and the output are then not (fully)
   * written. `scores`: the streaming pass alone; `pool`: and the pooling (classic select only);
   * `select`: and the Top-k, without the sparse pass. `split` (any role): the first split pass alone,
   * without the merge of its splits (the output is then not written).
   */
  readonly untilStage?: 'split' | 'scores' | 'pool' | 'select';
  /**
   * Anchors (`dense-anchor`, `anchor`), for tuning: team options for the streaming pass (layer 0's,
   * or the anchor's scores pass) over the call's own, which then apply to the sparse pass only.
   */
  readonly streamPass?: Partial<TeamSettings>;
  /** Names this call's host-written scratch apart from other calls in the same submission (internal). */
  readonly scratchTag?: string;
}

const WG = 256;
const PARTIAL_BINDINGS = [
  [0, 'uniform'],
  [1, 'read'],
  [2, 'read'],
  [3, 'read'],
  [4, 'read'],
  [5, 'write'],
  [6, 'write'],
  [7, 'write'],
] as const;
const COMBINE_BINDINGS = [
  [0, 'uniform'],
  [5, 'write'],
  [6, 'write'],
  [8, 'write'],
  [9, 'write'],
] as const;
const POOL_BINDINGS = [
  [0, 'uniform'],
  [1, 'read'],
  [2, 'read'],
  [3, 'write'],
] as const;

/** The team kernel's settings of one pass (what {@link DecodeArgs} can override). */
export interface TeamSettings {
  readonly keysPerStep: number;
  readonly loadsAhead: boolean;
  readonly minStepsPerSplit: number;
  readonly targetWorkgroups: number;
  readonly pieceBytes: 8 | 16;
  readonly prefetchIndices: boolean;
  readonly transposedReduce: boolean;
  readonly subgroupTeamMerge: boolean;
  readonly xorLayout: boolean;
  /** Lanes per team (0: the widest the row and the subgroup allow). */
  readonly teamWidth: number;
  readonly laneStats: boolean;
  readonly halfTransposedReduce: boolean;
  readonly quarterTransposedReduce: boolean;
  readonly permuteAfterLoad: boolean;
}

/**
 * The kinds of pass of the decode ops, each with its own team-kernel defaults: `stream` (dense: every
 * key, V accumulated), `layer0` (layer 0's pass: every key, V accumulated, scores written),
 * `scores` (the anchors' scores pass: every key, K only, scores written) and `gather` (reuse and
 * the anchors' sparse pass: the slot's keys).
 */
export type TeamPass = 'stream' | 'layer0' | 'scores' | 'gather';

const STREAM_FEW: TeamSettings = {
  keysPerStep: 8,
  loadsAhead: false,
  minStepsPerSplit: 4,
  targetWorkgroups: 1024,
  pieceBytes: 16,
  prefetchIndices: false,
  transposedReduce: false,
  subgroupTeamMerge: false,
  xorLayout: false,
  teamWidth: 0,
  laneStats: false,
  halfTransposedReduce: false,
  quarterTransposedReduce: false,
  permuteAfterLoad: false,
};
const STREAM_MANY: TeamSettings = { ...STREAM_FEW, targetWorkgroups: 2048 };
/** 8-byte pieces (teams of 32 lanes) with the transposed reduction: 8 keys x group 4 fill a team. */
const TRANSPOSED: Partial<TeamSettings> = { pieceBytes: 8, transposedReduce: true };
/** Lane-permuted slots filled after in-order loads (session 12). */
const PERMUTED: Partial<TeamSettings> = { xorLayout: true, permuteAfterLoad: true };

/**
 * The team kernel's settings where a call does not give them, per kind of pass ({@link TeamPass})
 * with few (at most 16: batch 1 or 2 at 8 KV heads) or many rows (sequence x KV head).
 * Chosen from the H200 sweeps at 128k (`apps/bench/results/webgpu-decode*.json`, `sweep-*` rows):
 * few rows want fewer, fuller workgroups; dense and the
 * anchors' scores pass take the transposed reduction where it fits (call A3 of session 4, three
 * runs in turn: dense 201 against 220 us at batch 1, 1274 against 1524 at batch 8; the scores pass
 * 1343 against 1375 at batch 8, equal at batch 1), layer 0's pass does not (337 against 285 us);
 * the anchors' scores pass takes 2048 workgroups at batch 1 too (call B of session 5, twice in turn:
 * the anchor 227.5 against 235.9 us); layer 0's pass, and gathers at many rows, merge a workgroup's
 * teams by subgroups (call C of session 5, twice in turn: layer 0 262 against 286 us at batch 1, 1603
 * against 1782 at batch 8; reuse at batch 8 193 against 209; slower elsewhere: reuse at batch 1 57
 * against 47, the anchor 289 against 227, dense 224 against 201); the anchors' scores pass takes 4096
 * workgroups (call A of session 6, twice in turn: the anchor 225.5 and 224.0 against 228.1 and 227.2
 * us at batch 1, 1274 and 1273 against 1310 and 1308 at batch 8). Every pass merges its splits with
 * `teams_merge` (the merge in the last workgroup to finish, sessions 3-6, was removed: see
 * `decode_teams.wgsl`); layer 0's pass at many rows issues the next step's loads before a step's
 * math (call B of session 8, twice in turn at batch 8: 1517 and 1522 against 1568 and 1570 us; at
 * batch 1 245.0 and 245.1 against 245.4 and 245.6, left off; slower for every other pass: dense 288
 * against 195 us, the reuse 54.6 against 44.8 at batch 1); the anchors' scores pass takes the
 * transposed reduction on lane-permuted slots (`xorLayout`), and dense does at many rows (call C of
 * session 9, twice in turn at 128k: the anchor 204.5 and 204.1 against 217.8 and 217.0 us at batch
 * 1, 1136.0 and 1136.9 against 1253.4 and 1253.5 at batch 8; dense 1207.1 and 1207.6 against 1262.0
 * and 1260.4 at batch 8 but 202.7 and 203.5 against 194.7 and 195.3 at batch 1: its lanes then load
 * 8 rows per instruction instead of one); layer 0's pass at many rows takes teams of 8 lanes
 * (session 10 to 11), and the anchors' scores pass at many rows each lane's own softmax statistics
 * (`laneStats`) (call A of session 10, twice in turn at 128k batch 8: layer 0 1500.1 and 1499.3
 * against 1532.7 and 1527.0 us, the anchor 1124.4 and 1124.8 against 1136.9 and 1133.9; at batch 1
 * both slower: layer 0 272.6 and 273.2 against 245.6 and 245.8, the anchor 207.7 and 208.1 against
 * 204.6 and 203.6); since session 12 layer 0's pass takes `halfTransposedReduce` (at many rows on
 * teams of 16 lanes, 8 keys per step, with `quarterTransposedReduce`), the gathers at few rows and
 * dense at few rows the transposed reduction on slots permuted after in-order loads
 * (`permuteAfterLoad`), the gathers at many rows `halfTransposedReduce` at 6 keys per step (call B of
 * session 12, three times in turn at 128k: layer 0 228.2, 228.9 and 227.9 against 246.6, 245.8 and
 * 245.9 us at batch 1, with QUARTER at batch 8 1375.1, 1376.1 and 1377.2 against 1524-1528 without
 * either and 1471.5-1472.6 on teams of 8 lanes; the reuse 42.2, 41.6 and 41.3 against 45.4, 45.3 and
 * 45.5 at batch 1; dense 191.4 and 191.6 against 194.7 and 194.9 at batch 1; the package README);
 * `keysPerStep` applies to group sizes up to 4 (larger groups take 2; the transposed reduction then
 * stays off unless asked for).
 */
export const TEAM_DEFAULTS: Readonly<Record<TeamPass, Readonly<Record<'few' | 'many', TeamSettings>>>> = {
  stream: {
    few: { ...STREAM_FEW, ...TRANSPOSED, ...PERMUTED },
    many: { ...STREAM_MANY, ...TRANSPOSED, xorLayout: true },
  },
  layer0: {
    few: { ...STREAM_FEW, subgroupTeamMerge: true, halfTransposedReduce: true },
    many: {
      ...STREAM_MANY,
      subgroupTeamMerge: true,
      loadsAhead: true,
      halfTransposedReduce: true,
      quarterTransposedReduce: true,
    },
  },
  scores: {
    few: { ...STREAM_MANY, ...TRANSPOSED, targetWorkgroups: 4096, xorLayout: true },
    many: { ...STREAM_MANY, ...TRANSPOSED, targetWorkgroups: 4096, xorLayout: true, laneStats: true },
  },
  gather: {
    few: {
      ...STREAM_FEW,
      minStepsPerSplit: 2,
      targetWorkgroups: 512,
      ...TRANSPOSED,
      ...PERMUTED,
      prefetchIndices: true,
    },
    many: {
      ...STREAM_MANY,
      prefetchIndices: true,
      subgroupTeamMerge: true,
      keysPerStep: 6,
      halfTransposedReduce: true,
    },
  },
};

/**
 * The decode anchors' classic select takes 8 values per invocation (chunks of 2048): on the H200 in
 * call A of session 4, 53.8 against 58.9 us with 4 at 128k batch 1 (8 rows), 150.7 against 172.4
 * at batch 8, the same indices (rows `stage-select`, `parity-select`).
 */
const DECODE_SELECT_VALUES_PER_INVOCATION = 8;

/** Rows (sequence x KV head) up to which a pass takes the `few` defaults. */
export const FEW_ROWS = 16;

/**
 * Workgroup memory of `teams_partial` (bytes): staged indices (`indexWords`), the per-head team merge,
 * and with the subgroup team merge its buffers for `subgroups` subgroups.
 */
export function teamsWorkgroupBytes(
  layout: { WG: number; TW: number },
  indexWords: number,
  group: number,
  headDim: number,
  subgroups: number,
): number {
  const NT = layout.WG / layout.TW;
  const D4 = headDim / 4;
  return indexWords * 4 + NT * 8 + NT * D4 * 16 + subgroups * group * (D4 * 16 + 8) + 64;
}

/** Keys per chunk in workgroup memory: `GROUP * CH` scores fit 4 KiB. */
function chunkFor(group: number): number {
  return Math.floor(1024 / group);
}

/**
 * How the team kernel splits the keys over workgroups: about `targetWorkgroups` (default 2048, a
 * large GPU full several times over) in all, each at least 4 steps of `stepKeys` keys.
 */
export function teamSplits(
  batch: number,
  kvHeads: number,
  keys: number,
  stepKeys: number,
  targetWorkgroups = 2048,
  minSteps = 4,
): { span: number; splits: number } {
  const steps = Math.ceil(keys / stepKeys);
  const want = Math.max(1, Math.ceil(targetWorkgroups / (batch * kvHeads)));
  const perSplit = Math.max(minSteps, Math.ceil(steps / want));
  const span = perSplit * stepKeys;
  return { span, splits: Math.ceil(keys / span) };
}

/** How the keys are split over workgroups (flash-decoding): enough workgroups to fill a large GPU. */
export function decodeSplits(
  batch: number,
  kvHeads: number,
  keys: number,
  group: number,
): { span: number; splits: number } {
  const ch = chunkFor(group);
  const chunks = Math.ceil(keys / ch);
  const want = Math.max(1, Math.ceil(1024 / (batch * kvHeads)));
  const perSplit = Math.ceil(chunks / Math.min(chunks, want));
  const span = perSplit * ch;
  return { span, splits: Math.ceil(keys / span) };
}

/**
 * Encodes one decode attention op of a layer role into `pass`:
 * - `dense`: dense attention.
 * - `dense-anchor` (layer 0): dense attention, and the pooled post-softmax Top-k into `slot`.
 * - `anchor`: pooled Top-k into `slot` (scores pass reads K only), then sparse attention over it.
 * - `reuse`: sparse attention over `slot` through `headMap`.
 */
export function encodeDecode(gpu: KascadeGPU, pass: Pass, a: DecodeArgs): void {
  const { kv, heads } = a;
  if (kv.parts.length > 1) {
    // K/V split by sequence: one pass of the op per part, on views of q, out and the slot.
    const slot = a.slot;
    if (slot && (slot.kvHeads * slot.kStride * 4) % 256 !== 0) {
      throw new WebGPUShapeError(
        `a split K/V needs each sequence's slot rows 256-byte aligned: use a kStride that is a multiple of 64 (got ${slot.kStride})`,
      );
    }
    if (slot && (slot.batch !== kv.batch || slot.kvHeads !== kv.kvHeads)) {
      throw new WebGPUShapeError(
        `slot is [${slot.batch}, ${slot.kvHeads}], K/V is [${kv.batch}, ${kv.kvHeads}]`,
      );
    }
    const qBytes = heads * kv.headDim * 4;
    for (const [index, part] of kv.parts.entries()) {
      const partSlot = slot && {
        ...slot,
        batch: part.batch,
        byteOffset: (slot.byteOffset ?? 0) + part.batchStart * slot.kvHeads * slot.kStride * 4,
      };
      encodeDecode(gpu, pass, {
        ...a,
        kv: { ...kv, k: part.k, v: part.v, batch: part.batch, parts: [{ ...part, batchStart: 0 }] },
        q: view(a.q, part.batchStart * qBytes, part.batch * qBytes),
        out: view(a.out, part.batchStart * qBytes, part.batch * qBytes),
        slot: partSlot,
        scratchTag: `${a.scratchTag ?? ''}.part${index}`,
      });
      if (slot && partSlot) slot.k = partSlot.k;
    }
    return;
  }
  encodeDecodePart(gpu, pass, a);
}

/** A sub-range of a buffer (or of a buffer binding) as a binding; `offset` must be 256-aligned. */
export function view(b: GPUBuffer | GPUBufferBinding, offset: number, size: number): GPUBufferBinding {
  if ('buffer' in b) return { buffer: b.buffer, offset: (b.offset ?? 0) + offset, size };
  return { buffer: b, offset, size };
}

/** The binding of a slot's rows for `batch` sequences. */
export function slotBinding(
  slot: { indices: GPUBuffer; byteOffset?: number },
  bytes: number,
): GPUBufferBinding {
  return { buffer: slot.indices, offset: slot.byteOffset ?? 0, size: Math.max(4, bytes) };
}

function encodeDecodePart(gpu: KascadeGPU, pass: Pass, a: DecodeArgs): void {
  const { kv, heads, n, role } = a;
  const { batch, kvHeads, headDim } = kv;
  const group = groupSize(heads, kvHeads);
  positiveInt('n', n);
  if (n > kv.capacity) throw new WebGPUShapeError(`n = ${n} exceeds the K/V capacity ${kv.capacity}`);
  const scale = a.scale ?? 1 / Math.sqrt(headDim);
  const D4 = headDim / 4;
  const selects = role !== 'dense' && role !== 'reuse';
  const slot = a.slot;
  if (role !== 'dense') {
    if (!slot) throw new WebGPUShapeError(`decode role '${role}' needs an index slot`);
    if (slot.batch !== batch || slot.kvHeads !== kvHeads) {
      throw new WebGPUShapeError(`slot is [${slot.batch}, ${slot.kvHeads}], K/V is [${batch}, ${kvHeads}]`);
    }
  }
  const headMap = resolveHeadMap(kvHeads, role === 'reuse' ? a.headMap : undefined);
  let k = 0;
  if (selects) {
    k = topkBudget(n, a.budget);
    if (k > slot!.kStride)
      throw new WebGPUShapeError(`budget k = ${k} exceeds the slot's kStride ${slot!.kStride}`);
  } else if (role === 'reuse') {
    k = slot!.k;
    if (!(k > 0 && k <= n)) throw new WebGPUShapeError(`reuse: the slot holds k = ${k} keys, n = ${n}`);
  }
  const base = { HEAD_DIM: headDim, D4, GROUP: group, WG, CH: chunkFor(group), KV: kv.dtype };
  const partialDefs = { SUBGROUPS: gpu.info.hasSubgroups };
  const kernel = resolveDecodeKernel(gpu, headDim, kv.dtype, a.kernel);
  for (const o of [a, a.streamPass ?? {}]) {
    if (o.targetWorkgroups !== undefined) positiveInt('targetWorkgroups', o.targetWorkgroups);
    if (o.pieceBytes !== undefined && o.pieceBytes !== 8 && o.pieceBytes !== 16) {
      throw new WebGPUShapeError(`pieceBytes must be 8 or 16, got ${o.pieceBytes}`);
    }
    if (o.pieceBytes === 8 && kv.dtype !== 'f16') {
      throw new WebGPUShapeError('pieceBytes 8 needs f16 K/V (a lane loads four f16)');
    }
    if (
      o.keysPerStep !== undefined &&
      !(Number.isInteger(o.keysPerStep) && o.keysPerStep >= 1 && o.keysPerStep <= 16)
    ) {
      throw new WebGPUShapeError(`keysPerStep must be an integer in 1..16, got ${o.keysPerStep}`);
    }
    if (o.minStepsPerSplit !== undefined) positiveInt('minStepsPerSplit', o.minStepsPerSplit);
    if (
      o.teamWidth !== undefined &&
      !(Number.isInteger(o.teamWidth) && o.teamWidth >= 1 && (o.teamWidth & (o.teamWidth - 1)) === 0)
    ) {
      throw new WebGPUShapeError(`teamWidth must be a power of two, got ${o.teamWidth}`);
    }
  }
  // The team kernel's settings of one pass: the call's options, else the defaults for streaming
  // (every key) or gathering (the slot's keys) passes.
  const tuned = (kind: TeamPass) => {
    const gather = kind === 'gather';
    const d = TEAM_DEFAULTS[kind][batch * kvHeads <= FEW_ROWS ? 'few' : 'many'];
    const o: Partial<TeamSettings> & DecodeArgs =
      kind === 'layer0' || kind === 'scores' ? { ...a, ...a.streamPass } : a;
    const pieceBytes = o.pieceBytes ?? (kv.dtype === 'f16' ? d.pieceBytes : 16);
    const width = o.teamWidth ?? (d.teamWidth || undefined);
    const narrow = teamsLayout(gpu, headDim, kv.dtype, pieceBytes, width);
    if (!narrow && o.teamWidth !== undefined) {
      throw new WebGPUShapeError(
        `teamWidth ${o.teamWidth} with ${pieceBytes}-byte pieces does not fit this device (workgroup of 16 teams below the largest subgroup)`,
      );
    }
    const layout = narrow ?? teamsLayout(gpu, headDim, kv.dtype)!;
    const U = o.keysPerStep ?? (group <= 4 ? d.keysPerStep : 2);
    return {
      // Keys a workgroup takes per step: a team step of each team.
      stepKeys: (layout.WG / layout.TW) * U,
      layout,
      pieceType: (pieceBytes === 8 && layout.PV === 1 && kv.dtype === 'f16'
        ? 'f16x4'
        : kv.dtype) as PieceType,
      U,
      ahead: o.loadsAhead ?? d.loadsAhead,
      minSteps: o.minStepsPerSplit ?? d.minStepsPerSplit,
      targetWorkgroups: o.targetWorkgroups ?? d.targetWorkgroups,
      prefetch: gather && (o.prefetchIndices ?? d.prefetchIndices),
      // Asked for, it must fit (checked below); as a default, only where it fits.
      tred: o.transposedReduce ?? (d.transposedReduce && U * group === layout.TW),
      sgMerge: o.subgroupTeamMerge ?? d.subgroupTeamMerge,
      cachedRows: a.cachedRows === true,
      xor: o.xorLayout ?? d.xorLayout,
      laneStats: o.laneStats ?? d.laneStats,
      halfTred: o.halfTransposedReduce ?? d.halfTransposedReduce,
      quarterTred: o.quarterTransposedReduce ?? d.quarterTransposedReduce,
      permuteAfterLoad: o.permuteAfterLoad ?? d.permuteAfterLoad,
      loadsOnly: a.loadsOnly === true,
    };
  };
  const teams = kernel === 'teams';
  const splitsFor = (keys: number, kind: TeamPass) => {
    if (!teams) return decodeSplits(batch, kvHeads, keys, group);
    const t = tuned(kind);
    return teamSplits(batch, kvHeads, keys, t.stepKeys, t.targetWorkgroups, t.minSteps);
  };
  const partML = (splits: number) => gpu.scratchBuffer('decode.partML', batch * heads * splits * 8);
  const partO = (splits: number) => gpu.scratchBuffer('decode.partO', batch * heads * splits * headDim * 4);
  const stats = gpu.scratchBuffer('decode.stats', batch * heads * 8);
  // Size every scratch buffer for this n before anything is bound (they only grow; a buffer that
  // grew after a bind group was made would leave that bind group pointing at a destroyed buffer).
  const streamKind: TeamPass = role === 'dense-anchor' ? 'layer0' : role === 'anchor' ? 'scores' : 'stream';
  const most = Math.max(splitsFor(n, streamKind).splits, splitsFor(Math.max(1, k), 'gather').splits);
  partML(most);
  partO(most);

  const attend = (opts: {
    gather: boolean;
    accumV: boolean;
    writeScores: boolean;
    keys: number;
    scores?: GPUBuffer;
  }) => {
    const kind: TeamPass = opts.gather ? 'gather' : streamKind;
    const { span, splits } = splitsFor(opts.keys, kind);
    const defs = { ...base, GATHER: opts.gather, ACCUM_V: opts.accumV, WRITE_SCORES: opts.writeScores };
    const t = teams ? tuned(kind) : null;
    const ml = partML(splits);
    const po = opts.accumV ? partO(splits) : null;
    const params = gpu.params(
      packParams(
        [
          opts.keys,
          kv.capacity,
          span,
          splits,
          heads,
          kvHeads,
          slot?.kStride ?? 0,
          n,
          { f32: scale },
          0,
          0,
          0,
        ],
        headMap,
      ),
    );
    const stepKeys = t ? t.stepKeys : 1;
    if (t?.tred && t.U * group !== t.layout.TW) {
      throw new WebGPUShapeError(
        `transposedReduce needs keysPerStep x group = the team width: ${t.U} x ${group} != ${t.layout.TW}`,
      );
    }
    // The most subgroups of a workgroup, and whether the subgroup team merge's workgroup memory fits.
    const MSG = t ? Math.max(1, t.layout.WG / (gpu.info.subgroupSizes?.min ?? t.layout.WG)) : 1;
    const SB = Math.max(1, Math.floor(512 / stepKeys));
    const sgm =
      t?.sgMerge === true &&
      teamsWorkgroupBytes(t.layout, stepKeys * SB, group, headDim, MSG) <=
        (gpu.limits?.maxComputeWorkgroupStorageSize ?? 16384);
    const tredXor = t?.tred === true && t.xor && (group & (group - 1)) === 0;
    const teamDefs = t && {
      HEAD_DIM: headDim,
      GROUP: group,
      ...t.layout,
      U: t.U,
      AHEAD: t.ahead,
      SB,
      GATHER: opts.gather,
      ACCUM_V: opts.accumV,
      WRITE_SCORES: opts.writeScores,
      PREFETCH: t.prefetch,
      SGM: sgm,
      MSG,
      TRED: t.tred,
      // Only with the transposed reduction and a group that is a power of two.
      TRED_XOR: tredXor,
      KP: t.pieceType,
      SUBGROUPS: true,
      // Only where on, so the default pipelines stay as they were.
      ...(t.cachedRows ? { CACHED_ROWS: true } : {}),
      ...(t.loadsOnly ? { LOADS_ONLY: true } : {}),
      ...(tredXor && t.permuteAfterLoad ? { PERMUTE_AFTER_LOAD: true } : {}),
      // Where it applies (no transposed reduction, V accumulated, an even step, teams of 2+ lanes).
      ...(t.halfTred && !t.tred && opts.accumV && t.U % 2 === 0 && t.layout.TW >= 2
        ? { HALF_TRED: true }
        : {}),
      ...(t.quarterTred && !t.tred && opts.accumV && t.U % 4 === 0 && t.layout.TW >= 4
        ? { HALF_TRED: true, QUARTER_TRED: true }
        : {}),
      ...(t.laneStats && t.tred && !opts.accumV ? { LANE_STATS: true } : {}),
    };
    const p1 = teamDefs
      ? gpu.pipeline('decode_teams', 'teams_partial', teamDefs, PARTIAL_BINDINGS)
      : gpu.pipeline('decode_attend', 'attend_partial', { ...defs, ...partialDefs }, PARTIAL_BINDINGS);
    pass.setPipeline(p1.pipeline);
    pass.setBindGroup(
      0,
      gpu.bindGroup(p1, `kascade:decode.${teams ? 'teams' : 'attend'}_partial`, {
        0: params,
        1: a.q,
        2: kv.k,
        3: kv.v,
        ...(opts.gather ? { 4: slotBinding(slot!, batch * kvHeads * slot!.kStride * 4) } : {}),
        5: ml,
        ...(po ? { 6: po } : {}),
        ...(opts.scores ? { 7: opts.scores } : {}),
      }),
    );
    pass.dispatchWorkgroups(splits, kvHeads, batch);
    if (a.untilStage === 'split') return;
    const p2 = teamDefs
      ? gpu.pipeline(
          'decode_teams',
          'teams_merge',
          // teams_merge's workgroup: 512 invocations where the device allows.
          {
            ...teamDefs,
            MERGE: true,
            MWG: Math.min(512, gpu.limits?.maxComputeInvocationsPerWorkgroup ?? 256),
          },
          COMBINE_BINDINGS,
        )
      : gpu.pipeline('decode_attend', 'attend_combine', defs, COMBINE_BINDINGS);
    pass.setPipeline(p2.pipeline);
    pass.setBindGroup(
      0,
      gpu.bindGroup(p2, `kascade:decode.${teamDefs ? 'teams' : 'attend'}_combine`, {
        0: params,
        5: ml,
        ...(po ? { 6: po } : {}),
        ...(opts.accumV ? { 8: a.out } : {}),
        9: stats,
      }),
    );
    pass.dispatchWorkgroups(heads, batch, 1);
  };

  if (role === 'dense') {
    attend({ gather: false, accumV: true, writeScores: false, keys: n });
    return;
  }
  if (role === 'reuse') {
    attend({ gather: true, accumV: true, writeScores: false, keys: k });
    return;
  }
  // Anchors: every scaled logit, the row statistics, the pooled scores, the select.
  const scores = gpu.scratchBuffer('decode.scores', batch * heads * n * 4);
  const pooled = gpu.scratchBuffer('decode.pooled', batch * kvHeads * n * 4);
  const rows = batch * kvHeads;
  const rowInfo = gpu.scratchBuffer(`decode.rowInfo${a.scratchTag ?? ''}`, rows * 16);
  const info = new Uint32Array(rows * 4);
  for (let r = 0; r < rows; r++) info.set([r * n, n, k, r * slot!.kStride], r * 4);
  gpu.device.queue.writeBuffer(rowInfo, 0, info);
  // Size the select's scratch before anything binds it.
  const schedule = a.selectSchedule ?? (rows <= FEW_ROWS ? 'folded' : 'classic');
  if (schedule === 'folded') gpu.scratchBuffer('select.hist3', rows * 3 * 2048 * 4);
  else gpu.scratchBuffer('select.hist', rows * 2048 * 4);

  attend({ gather: false, accumV: role === 'dense-anchor', writeScores: true, keys: n, scores });
  if (a.untilStage === 'scores' || a.untilStage === 'split') return;
  const pp = gpu.pipeline('pool', 'pool_decode', { ...base, TILE: 1, RB: 1 }, POOL_BINDINGS);
  pass.setPipeline(pp.pipeline);
  pass.setBindGroup(
    0,
    gpu.bindGroup(pp, 'kascade:decode.pool', {
      0: gpu.params(packParams([n, heads, kvHeads, kv.capacity, n, n, 0, 0, 0, 0, { f32: scale }, 0])),
      1: scores,
      2: stats,
      3: pooled,
    }),
  );
  pass.dispatchWorkgroups(Math.ceil(n / WG), kvHeads, batch);
  if (a.untilStage === 'pool') return;
  encodeSelect(gpu, pass, {
    vals: pooled,
    rowInfo: { buffer: rowInfo, offset: 0, size: rows * 16 },
    rows,
    maxLength: n,
    out: slotBinding(slot!, batch * kvHeads * slot!.kStride * 4),
    tag: 'decode',
    valuesPerInvocation: a.selectValuesPerInvocation ?? DECODE_SELECT_VALUES_PER_INVOCATION,
    schedule,
  });
  slot!.k = k;
  if (role === 'anchor' && a.untilStage !== 'select') {
    attend({ gather: true, accumV: true, writeScores: false, keys: k });
  }
}
