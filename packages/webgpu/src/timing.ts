import type { KascadeGPU } from './context.js';
import type { Pass } from './ops/common.js';

/**
 * Times an op on the GPU: `warmup` untimed then `repeats` timed runs, each in its own compute
 * pass. With `timestamp-query` the times are the passes' GPU durations; without, the wall time of
 * each run from submit to `onSubmittedWorkDone`. `between` (e.g. a cache flush) runs untimed before
 * every run. Returns microseconds per run.
 */
export async function timeGPU(
  gpu: KascadeGPU,
  label: string,
  encode: (pass: Pass) => void,
  opts: { warmup: number; repeats: number; between?: (pass: Pass) => void; useTimestamps?: boolean },
): Promise<{ samplesUs: Float64Array; source: 'timestamp-query' | 'wall-clock' }> {
  const { device } = gpu;
  const runOnce = (enc: GPUCommandEncoder, timestampWrites?: GPUComputePassTimestampWrites) => {
    if (opts.between) {
      const f = enc.beginComputePass({ label: `${label}:between` });
      opts.between(f);
      f.end();
    }
    const pass = enc.beginComputePass({ label, ...(timestampWrites ? { timestampWrites } : {}) });
    encode(pass);
    pass.end();
  };
  for (let i = 0; i < opts.warmup; i++) {
    const enc = device.createCommandEncoder({ label: `${label}:warmup` });
    runOnce(enc);
    gpu.flushParams();
    device.queue.submit([enc.finish()]);
    await device.queue.onSubmittedWorkDone();
  }
  const samplesUs = new Float64Array(opts.repeats);
  if (gpu.info.hasTimestamps && (opts.useTimestamps ?? true)) {
    const querySet = device.createQuerySet({ label: `${label}:timestamps`, type: 'timestamp', count: 2 });
    const resolve = device.createBuffer({
      label: `${label}:resolve`,
      size: 16,
      usage: GPUBufferUsage.QUERY_RESOLVE | GPUBufferUsage.COPY_SRC,
    });
    const read = device.createBuffer({
      label: `${label}:read`,
      size: 16,
      usage: GPUBufferUsage.MAP_READ | GPUBufferUsage.COPY_DST,
    });
    for (let i = 0; i < opts.repeats; i++) {
      const enc = device.createCommandEncoder({ label });
      runOnce(enc, { querySet, beginningOfPassWriteIndex: 0, endOfPassWriteIndex: 1 });
      enc.resolveQuerySet(querySet, 0, 2, resolve, 0);
      enc.copyBufferToBuffer(resolve, 0, read, 0, 16);
      gpu.flushParams();
      device.queue.submit([enc.finish()]);
      await read.mapAsync(GPUMapMode.READ);
      const t = new BigUint64Array(read.getMappedRange().slice(0));
      read.unmap();
      samplesUs[i] = Number(t[1] - t[0]) / 1000;
    }
    querySet.destroy();
    resolve.destroy();
    read.destroy();
    return { samplesUs, source: 'timestamp-query' };
  }
  for (let i = 0; i < opts.repeats; i++) {
    const enc = device.createCommandEncoder({ label });
    runOnce(enc);
    gpu.flushParams();
    const cb = enc.finish();
    const t0 = performance.now();
    device.queue.submit([cb]);
    await device.queue.onSubmittedWorkDone();
    samplesUs[i] = (performance.now() - t0) * 1000;
  }
  return { samplesUs, source: 'wall-clock' };
}
