// The host-side plan of the cluster Top-k select (kernels/cuda/select_plan.h, variant bits 256/512):
// the real C++ header compiled with the machine's C++ compiler (no CUDA needed), its plans checked
// over a grid of shapes for the invariants the kernel relies on.
import { dirname, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { beforeAll, describe, expect, it } from 'vitest';
import { hostCompiler, runHostDriver } from './host-cpp.js';

const header = resolve(dirname(fileURLToPath(import.meta.url)), '../../../kernels/cuda/select_plan.h');

interface Plan {
  n: number;
  rows: number;
  sms: number;
  wide: boolean;
  cluster: number;
  slice: number;
  inSmem: boolean;
  smemBytes: number;
  maxCluster: number;
  sliceTarget: number;
  sliceMax: number;
}

const SLICE_ALIGN = 2048; // kSelectSliceAlign: 16 warps x 128 scores
const FIXED_SMEM = 4 * 2048 * 4; // kSelectFixedSmem
const SMEM_LIMIT = 227 * 1024; // Hopper's opt-in shared memory per block

const driver = `
#include <cstdio>
#include "${header}"
int main() {
  const long long ns[] = {1, 2, 3, 113, 1023, 2048, 2049, 4097, 8192, 20000, 30011, 65537, 131072, 131073,
                          262144, 327680, 327681, 340000, 524288, 655361, 1048576, 2097152};
  const long long rowsList[] = {1, 2, 4, 8, 16, 32, 64, 256, 512, 2048};
  const int smsList[] = {1, 78, 114, 132};
  for (long long n : ns)
    for (long long rows : rowsList)
      for (int sms : smsList)
        for (int wide = 0; wide < 2; ++wide) {
          const kascade::SelectLimits lim = kascade::select_limits(wide != 0);
          const kascade::SelectPlan p = kascade::select_plan(n, rows, sms, lim);
          std::printf("%lld %lld %d %d %d %d %d %zu %d %d %d\\n", n, rows, sms, wide, p.cluster, p.slice, p.inSmem ? 1 : 0,
                      p.smemBytes, lim.maxCluster, lim.sliceTarget, lim.sliceMax);
        }
  return 0;
}
`;

let plans: Plan[] = [];

beforeAll(() => {
  if (!hostCompiler) return;
  const stdout = runHostDriver('select_plan.h', driver);
  plans = stdout
    .trim()
    .split('\n')
    .map((line) => {
      const [n, rows, sms, wide, cluster, slice, inSmem, smemBytes, maxCluster, sliceTarget, sliceMax] = line
        .split(' ')
        .map(Number) as number[];
      return {
        n: n as number,
        rows: rows as number,
        sms: sms as number,
        wide: wide === 1,
        cluster: cluster as number,
        slice: slice as number,
        inSmem: inSmem === 1,
        smemBytes: smemBytes as number,
        maxCluster: maxCluster as number,
        sliceTarget: sliceTarget as number,
        sliceMax: sliceMax as number,
      };
    });
});

const find = (n: number, rows: number, sms: number, wide: boolean): Plan => {
  const p = plans.find((x) => x.n === n && x.rows === rows && x.sms === sms && x.wide === wide);
  if (!p) throw new Error(`no plan for n ${n} rows ${rows} sms ${sms} wide ${wide}`);
  return p;
};

describe.skipIf(!hostCompiler)(
  'cluster select plan (select_plan.h, compiled with the host C++ compiler)',
  () => {
    it('covers every row exactly with whole, non-empty slices', () => {
      expect(plans.length).toBe(22 * 10 * 4 * 2);
      for (const p of plans) {
        const at = JSON.stringify(p);
        expect(p.cluster, at).toBeGreaterThanOrEqual(1);
        expect(p.cluster, at).toBeLessThanOrEqual(p.maxCluster);
        expect(p.slice % SLICE_ALIGN, at).toBe(0);
        expect(p.slice * p.cluster, at).toBeGreaterThanOrEqual(p.n); // the row is covered
        expect(p.slice * (p.cluster - 1), at).toBeLessThan(p.n); // the last CTA has at least one score
      }
    });

    it('keeps a slice in shared memory exactly when it fits, within the per-block limit', () => {
      for (const p of plans) {
        const at = JSON.stringify(p);
        expect(p.inSmem, at).toBe(p.slice <= p.sliceMax);
        expect(p.smemBytes, at).toBe(FIXED_SMEM + (p.inSmem ? 4 * p.slice : 0));
        expect(p.smemBytes, at).toBeLessThanOrEqual(SMEM_LIMIT);
      }
    });

    it('splits rows for parallelism at small batch and for shared memory at long contexts', () => {
      for (const p of plans) {
        const at = JSON.stringify(p);
        // Slices stay within the target whenever the cluster size allows it.
        if (Math.ceil(p.n / p.sliceTarget) <= p.maxCluster)
          expect(p.slice, at).toBeLessThanOrEqual(p.sliceTarget);
        // At least two CTAs per SM over all rows, or as many as whole slices under the cluster limit allow.
        const mostCtas = Math.ceil(
          p.n / (Math.ceil(Math.ceil(p.n / p.maxCluster) / SLICE_ALIGN) * SLICE_ALIGN),
        );
        expect(p.rows * p.cluster, at).toBeGreaterThanOrEqual(Math.min(2 * p.sms, p.rows * mostCtas));
      }
    });

    it('gives the H200 shapes of the bench the planned configurations', () => {
      // 128k, batch 1 (8 rows): 8 x 16384 (plain), 16 x 8192 (wide).
      expect(find(131072, 8, 132, false)).toMatchObject({
        cluster: 8,
        slice: 16384,
        inSmem: true,
        smemBytes: 98304,
      });
      expect(find(131072, 8, 132, true)).toMatchObject({
        cluster: 16,
        slice: 8192,
        inSmem: true,
        smemBytes: 65536,
      });
      // 128k, batch 32 (256 rows): the same slices (two / three CTAs per SM).
      expect(find(131072, 256, 132, false)).toMatchObject({ cluster: 8, slice: 16384, inSmem: true });
      expect(find(131072, 256, 132, true)).toMatchObject({ cluster: 16, slice: 8192, inSmem: true });
      // 512k, batch 1: plain keeps 65536-score slices in the workspace, wide fits 32768 in shared memory.
      expect(find(524288, 8, 132, false)).toMatchObject({
        cluster: 8,
        slice: 65536,
        inSmem: false,
        smemBytes: FIXED_SMEM,
      });
      expect(find(524288, 8, 132, true)).toMatchObject({ cluster: 16, slice: 32768, inSmem: true });
      // Tiny rows: one CTA.
      expect(find(1, 2, 132, true)).toMatchObject({ cluster: 1, slice: 2048 });
      expect(find(113, 4, 132, false)).toMatchObject({ cluster: 1, slice: 2048 });
      // 340000 (the device check's long row): plain past shared memory, so the workspace path runs.
      expect(find(340000, 1, 132, false)).toMatchObject({ cluster: 8, inSmem: false });
    });
  },
);
