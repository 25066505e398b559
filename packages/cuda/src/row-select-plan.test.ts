// The split plan of the row select (variant bit 65536: kernels/cuda/select_plan.h, row_select_chunk): the
// real C++ header compiled with the machine's C++ compiler (no CUDA needed), checked over a grid of shapes.
import { dirname, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { beforeAll, describe, expect, it } from 'vitest';
import { hostCompiler, runHostDriver } from './host-cpp.js';

const header = resolve(dirname(fileURLToPath(import.meta.url)), '../../../kernels/cuda/select_plan.h');

interface Chunk {
  rows: number;
  n: number;
  sms: number;
  chunk: number;
}

const driver = `
#include <cstdio>
#include "${header}"
int main() {
  const int ns[] = {1, 63, 64, 113, 1023, 4097, 8192, 30011, 32768, 131072, 131073, 524288};
  const long long rowsList[] = {1, 2, 8, 32, 256, 2048};
  const int smsList[] = {1, 78, 132};
  for (int n : ns)
    for (long long rows : rowsList)
      for (int sms : smsList) std::printf("%lld %d %d %d\\n", rows, n, sms, kascade::row_select_chunk(rows, n, sms));
  // Stage rows: for each (rows, lag), the virtual rows 0 .. rows + 2 lag - 1 and the rows whose stages A and B they run.
  const long long stageRows[] = {1, 8, 80, 256, 640};
  const int splitsList[] = {1, 4, 64, 256};
  for (long long rows : stageRows)
    for (int splits : splitsList) {
      const int lag = kascade::row_select_lag(splits, 132);
      for (long long r = 0; r < rows + 2LL * lag; ++r) {
        const kascade::RowSelectStages st = kascade::row_select_stage_rows(r, lag, rows);
        std::printf("S %lld %d %d %lld %lld %lld\\n", rows, splits, lag, r, st.a, st.b);
      }
    }
  return 0;
}
`;

let chunks: Chunk[] = [];
let stages: { rows: number; splits: number; lag: number; r: number; a: number; b: number }[] = [];

beforeAll(() => {
  if (!hostCompiler) return;
  const stdout = runHostDriver('select_plan.h', driver);
  const lines = stdout.trim().split('\n');
  stages = lines
    .filter((l) => l.startsWith('S '))
    .map((l) => {
      const [rows, splits, lag, r, a, b] = l.slice(2).split(' ').map(Number) as [
        number,
        number,
        number,
        number,
        number,
        number,
      ];
      return { rows, splits, lag, r, a, b };
    });
  chunks = lines
    .filter((l) => !l.startsWith('S '))
    .map((line) => {
      const [rows, n, sms, chunk] = line.split(' ').map(Number) as [number, number, number, number];
      return { rows, n, sms, chunk };
    });
});

describe.skipIf(!hostCompiler)('row select split plan (select_plan.h row_select_chunk)', () => {
  it('gives whole 64-key tiles between 256 and 4096 keys per split', () => {
    expect(chunks.length).toBe(12 * 6 * 3);
    for (const c of chunks) {
      const at = JSON.stringify(c);
      expect(c.chunk % 64, at).toBe(0);
      expect(c.chunk, at).toBeGreaterThanOrEqual(256);
      expect(c.chunk, at).toBeLessThanOrEqual(4096);
    }
  });

  it('aims at two CTAs per SM: the keys per split within one tile of rows x n / (2 SMs), clamped', () => {
    for (const c of chunks) {
      const at = JSON.stringify(c);
      const target = (c.rows * c.n) / (2 * c.sms);
      if (c.chunk > 256) expect(c.chunk - 64, at).toBeLessThan(target);
      if (c.chunk < 4096) expect(c.chunk, at).toBeGreaterThanOrEqual(Math.min(256, target));
      if (c.chunk < 4096 && c.chunk > 256) expect(c.chunk, at).toBeGreaterThanOrEqual(target);
    }
  });

  it('gives every row one stage-A and one stage-B runner row, after the row and in that order', () => {
    const groups = new Map<string, typeof stages>();
    for (const x of stages) {
      const key = `${x.rows} ${x.splits}`;
      groups.set(key, [...(groups.get(key) ?? []), x]);
    }
    expect(groups.size).toBe(5 * 4);
    for (const [key, g] of groups) {
      const { rows, lag } = g[0] as (typeof stages)[number];
      expect(lag, key).toBe(Math.ceil(396 / (g[0] as (typeof stages)[number]).splits) + 2);
      expect(g.length, key).toBe(rows + 2 * lag); // the scores grid's rows and the tail launch's
      for (let f = 0; f < rows; f++) {
        const ra = g.filter((x) => x.a === f).map((x) => x.r);
        const rb = g.filter((x) => x.b === f).map((x) => x.r);
        expect(ra.length, `${key} f ${f}`).toBe(1);
        expect(rb.length, `${key} f ${f}`).toBe(1);
        expect(ra[0] as number, `${key} f ${f}`).toBeGreaterThan(f); // waits on row f: a lower row
        expect(rb[0] as number, `${key} f ${f}`).toBeGreaterThan(ra[0] as number); // waits on stage A's row
      }
      expect(g.every((x) => x.a < rows && x.b < rows)).toBe(true);
    }
  });

  it('cuts the bench shapes on the H200 (132 SMs) as planned', () => {
    const at = (rows: number, n: number) =>
      chunks.find((c) => c.rows === rows && c.n === n && c.sms === 132)?.chunk;
    expect(at(256, 131072)).toBe(4096); // 128k batch 32: 32 splits per row, 8192 CTAs
    expect(at(8, 131072)).toBe(4032); // 128k batch 1: 33 splits per row, 264 CTAs
    expect(at(8, 8192)).toBe(256); // 8k batch 1: 32 splits per row
    expect(at(256, 8192)).toBe(4096);
  });
});
