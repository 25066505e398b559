import type { KascadeGPU } from '../context.js';
import { WebGPUFeatureError, WebGPULimitError, WebGPUShapeError } from '../errors.js';
import { type Pass, packParams } from './common.js';

const WG = 256;
const BINS = 2048;

/** One row of a batched Top-k: where its values are, how many, how many to keep, where to write. */
export interface SelectRow {
  readonly offset: number;
  readonly length: number;
  readonly k: number;
  readonly outOffset: number;
}

/**
 * Encodes an exact Top-k (radix select, ties to the lower index) of many rows of non-negative f32
 * values. `rowInfo` must already hold the rows as `vec4<u32>(offset, length, k, outOffset)` at
 * `rowInfoOffset` (256-byte aligned); `tag` names the scratch buffers so independent selects in one
 * submission do not share them.
 */
export function encodeSelect(
  gpu: KascadeGPU,
  pass: Pass,
  args: {
    vals: GPUBuffer;
    rowInfo: GPUBufferBinding;
    rows: number;
    maxLength: number;
    out: GPUBuffer | GPUBufferBinding;
    tag: string;
    /**
     * Values per invocation in the per-chunk passes (a chunk is 256 x this many values): 4 (default),
     * 8 or 16; more means fewer workgroups, each clearing and flushing its 2048-bin histogram once
     * for more values.
     */
    valuesPerInvocation?: 4 | 8 | 16;
    /**
     * Decode anchors, with `subgroups`: compute the pooled values inside the first histogram pass
     * (`radix_hist0` of `topk_radix.wgsl`, which writes them to `vals`) instead of a pooling dispatch
     * before the select: nine dispatches in all.
     */
    pool?: RadixPool;
  },
): void {
  const { rows, maxLength } = args;
  const per = args.valuesPerInvocation ?? 4;
  if (![4, 8, 16].includes(per)) {
    throw new WebGPUShapeError(`valuesPerInvocation must be 4, 8 or 16, got ${per}`);
  }
  const CHUNK = WG * per;
  if (rows === 0 || maxLength === 0) return;
  const maxDim = gpu.limits.maxComputeWorkgroupsPerDimension;
  if (rows > maxDim) {
    throw new WebGPULimitError(
      'maxComputeWorkgroupsPerDimension',
      rows,
      maxDim,
      'too many Top-k rows in one select',
    );
  }
  const chunks = Math.ceil(maxLength / CHUNK);
  const hist = gpu.scratchBuffer(`select.hist`, rows * BINS * 4);
  const state = gpu.scratchBuffer(`select.state.${args.tag}`, rows * 8);
  const counts = gpu.scratchBuffer(`select.counts.${args.tag}`, rows * chunks * 8);
  const defines = { WG, PER: per };
  const B = [
    [0, 'uniform'],
    [1, 'read'],
    [2, 'read'],
    [3, 'write'],
    [4, 'write'],
    [5, 'write'],
    [6, 'write'],
  ] as const;
  const buffers = {
    1: args.rowInfo,
    2: { buffer: args.vals },
    3: { buffer: hist },
    4: { buffer: state },
    5: { buffer: counts },
    6: 'buffer' in args.out ? args.out : { buffer: args.out },
  };
  const run = (entry: string, pass_: number, x: number) => {
    const p = gpu.pipeline('topk_select', entry, defines, B);
    const params = gpu.params(packParams([pass_, chunks, 0, 0]));
    pass.setPipeline(p.pipeline);
    pass.setBindGroup(0, gpu.bindGroup(p, `kascade:${entry}`, { 0: params, ...buffers }));
    pass.dispatchWorkgroups(x, rows, 1);
  };
  for (let k = 0; k < 3; k++) {
    if (k === 0 && args.pool) {
      // The radix select's first pass: pooled values written to vals, the top digit's histogram
      // added into hist (the same 2048 bins per row); it binds but does not use state and counts.
      if (!gpu.info.hasSubgroups) {
        throw new WebGPUFeatureError('subgroups', 'the pooling fused into the select needs subgroups');
      }
      const rc = Math.ceil(maxLength / RADIX_CHUNK);
      radixPasses(gpu, pass, { ...args, hist, state, offsets: counts, chunks: rc })('radix_hist0', rc);
    } else {
      run('select_hist', k, chunks);
    }
    run('select_scan', k, 1);
  }
  run('select_count', 0, chunks);
  run('select_offsets', 0, 1);
  run('select_write', 0, chunks);
}

const RADIX_WG = 256;
/** Values per invocation of a radix pass: chunks of 1024 values, so a row's histogram atomics spread over many workgroups. */
const RADIX_LOADS = 4;
const RADIX_CHUNK = RADIX_WG * RADIX_LOADS;

/** Pooling fused into the radix select's first pass (decode anchors): `vals` is written from these. */
export interface RadixPool {
  /** `[batch, heads, scoreStride]` f32 scaled logits. */
  readonly scores: GPUBuffer;
  /** `[batch, heads, 2]` f32 (max, sum) of each query head's softmax. */
  readonly stats: GPUBuffer;
  readonly heads: number;
  readonly kvHeads: number;
  readonly group: number;
  readonly scoreStride: number;
}

/** Whether {@link encodeRadixSelect} can run here (it needs `subgroups`). */
export function canRadixSelect(gpu: KascadeGPU, _maxLength?: number): boolean {
  return gpu.info.hasSubgroups;
}

/**
 * Exact Top-k of many rows (radix select, ties to the lower index, output in index order) in five
 * dispatches (`topk_radix.wgsl`), each parallel over (chunk of 1024 values, row): a histogram of the top
 * 11 bits (with `pool`, computing the pooled values first and writing them to `vals`), one pass per
 * lower digit, a count pass and the write. Needs `subgroups`.
 */
export function encodeRadixSelect(
  gpu: KascadeGPU,
  pass: Pass,
  args: {
    vals: GPUBuffer;
    rowInfo: GPUBufferBinding;
    rows: number;
    maxLength: number;
    out: GPUBuffer | GPUBufferBinding;
    tag: string;
    pool?: RadixPool;
  },
): void {
  const { rows, maxLength } = args;
  if (rows === 0 || maxLength === 0) return;
  const maxDim = gpu.limits.maxComputeWorkgroupsPerDimension;
  if (rows > maxDim) {
    throw new WebGPULimitError(
      'maxComputeWorkgroupsPerDimension',
      rows,
      maxDim,
      'too many Top-k rows in one select',
    );
  }
  if (!gpu.info.hasSubgroups) throw new WebGPUFeatureError('subgroups', 'the radix select needs subgroups');
  const chunks = Math.ceil(maxLength / RADIX_CHUNK);
  const hist = gpu.scratchBuffer('radix.hist', 3 * rows * BINS * 4);
  const state = gpu.scratchBuffer(`radix.state.${args.tag}`, 3 * rows * 8);
  const offsets = gpu.scratchBuffer(`radix.offsets.${args.tag}`, rows * chunks * 8);
  const run = radixPasses(gpu, pass, { ...args, hist, state, offsets, chunks });
  run('radix_hist0', chunks);
  run('radix5_digit', chunks, 1);
  run('radix5_digit', chunks, 2);
  run('radix5_count', chunks);
  run('radix5_emit', chunks);
}

/** Binds the radix select's buffers; returns a function that encodes one of its passes. */
function radixPasses(
  gpu: KascadeGPU,
  pass: Pass,
  args: {
    vals: GPUBuffer;
    rowInfo: GPUBufferBinding;
    rows: number;
    out: GPUBuffer | GPUBufferBinding;
    pool?: RadixPool;
    hist: GPUBuffer;
    state: GPUBuffer;
    offsets: GPUBuffer;
    chunks: number;
  },
): (entry: string, x: number, phase?: number) => void {
  const { rows, chunks, hist, state } = args;
  const CHUNK = RADIX_CHUNK;
  const pool = args.pool;
  const defines = {
    WG: RADIX_WG,
    LOADS: RADIX_LOADS,
    CHUNK,
    POOL: pool !== undefined,
    GROUP: pool?.group ?? 1,
    SUBGROUPS: true,
  };
  const B = [
    [0, 'uniform'],
    [1, 'read'],
    [2, 'write'],
    [3, 'write'],
    [4, 'write'],
    [5, 'write'],
    [6, 'write'],
    [7, 'read'],
    [8, 'read'],
  ] as const;
  const paramsOf = (phase: number) =>
    gpu.params(
      packParams([chunks, pool?.heads ?? 0, pool?.kvHeads ?? 1, pool?.scoreStride ?? 0, phase, rows, 0, 0]),
    );
  const buffers = {
    1: args.rowInfo,
    2: { buffer: args.vals },
    3: { buffer: hist },
    4: { buffer: state },
    5: { buffer: args.offsets },
    6: 'buffer' in args.out ? args.out : { buffer: args.out },
    ...(pool ? { 7: { buffer: pool.scores }, 8: { buffer: pool.stats } } : {}),
  };
  return (entry: string, x: number, phase = 0) => {
    const p = gpu.pipeline('topk_radix', entry, defines, B);
    pass.setPipeline(p.pipeline);
    pass.setBindGroup(0, gpu.bindGroup(p, `kascade:${entry}`, { 0: paramsOf(phase), ...buffers }));
    pass.dispatchWorkgroups(x, rows, 1);
  };
}
