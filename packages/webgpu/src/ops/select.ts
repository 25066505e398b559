import type { KascadeGPU } from '../context.js';
import { WebGPULimitError, WebGPUShapeError } from '../errors.js';
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
 * How the select's passes are dispatched: `classic`, nine dispatches (a scan dispatch after each of the
 * three histogram passes, a count, an offsets scan, the write); `folded`, five (each pass repeats the
 * scan it depends on in every workgroup, and the write sums the earlier chunks' counts itself).
 */
export type SelectSchedule = 'classic' | 'folded';

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
    /** `classic` (default) or `folded` ({@link SelectSchedule}); both give the same output. */
    schedule?: SelectSchedule;
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
  const folded = args.schedule === 'folded';
  if (args.schedule !== undefined && !folded && args.schedule !== 'classic') {
    throw new WebGPUShapeError(`schedule must be 'classic' or 'folded', got ${String(args.schedule)}`);
  }
  const chunks = Math.ceil(maxLength / CHUNK);
  // Folded: three histograms and three (prefix, remaining) per row.
  const perRow = folded ? 3 : 1;
  const hist = gpu.scratchBuffer(folded ? 'select.hist3' : 'select.hist', rows * perRow * BINS * 4);
  const state = gpu.scratchBuffer(`select.state${folded ? '3' : ''}.${args.tag}`, rows * perRow * 8);
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
  if (folded) {
    for (let k = 0; k < 3; k++) run('fold_hist', k, chunks);
    run('fold_count', 0, chunks);
    run('fold_write', 0, chunks);
    return;
  }
  for (let k = 0; k < 3; k++) {
    run('select_hist', k, chunks);
    run('select_scan', k, 1);
  }
  run('select_count', 0, chunks);
  run('select_offsets', 0, 1);
  run('select_write', 0, chunks);
}
