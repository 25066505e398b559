// The split plan of the row select (variant bit 65536: kernels/cuda/select_plan.h, row_select_chunk): the
// real C++ header compiled with the machine's C++ compiler (no CUDA needed), checked over a grid of shapes.
import { spawnSync } from 'node:child_process';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';

const header = resolve(dirname(fileURLToPath(import.meta.url)), '../../../kernels/cuda/select_plan.h');
const compiler = ['c++', 'g++', 'clang++'].find((c) => spawnSync(c, ['--version']).status === 0);

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
  return 0;
}
`;

let dir = '';
let chunks: Chunk[] = [];

beforeAll(() => {
  if (!compiler) return;
  dir = mkdtempSync(join(tmpdir(), 'row-select-plan-'));
  writeFileSync(join(dir, 'main.cpp'), driver);
  const exe = join(dir, 'plan');
  const cc = spawnSync(compiler, ['-std=c++17', '-O1', '-o', exe, join(dir, 'main.cpp')], {
    encoding: 'utf8',
  });
  if (cc.status !== 0) throw new Error(`compiling select_plan.h failed:\n${cc.stderr}`);
  const run = spawnSync(exe, [], { encoding: 'utf8' });
  if (run.status !== 0) throw new Error(`the plan driver failed:\n${run.stderr}`);
  chunks = run.stdout
    .trim()
    .split('\n')
    .map((line) => {
      const [rows, n, sms, chunk] = line.split(' ').map(Number) as [number, number, number, number];
      return { rows, n, sms, chunk };
    });
});

afterAll(() => {
  if (dir) rmSync(dir, { recursive: true, force: true });
});

describe.skipIf(!compiler)('row select split plan (select_plan.h row_select_chunk)', () => {
  it('gives whole 64-key tiles between 256 and 2048 keys per split', () => {
    expect(chunks.length).toBe(12 * 6 * 3);
    for (const c of chunks) {
      const at = JSON.stringify(c);
      expect(c.chunk % 64, at).toBe(0);
      expect(c.chunk, at).toBeGreaterThanOrEqual(256);
      expect(c.chunk, at).toBeLessThanOrEqual(2048);
    }
  });

  it('aims at two CTAs per SM: the keys per split within one tile of rows x n / (2 SMs), clamped', () => {
    for (const c of chunks) {
      const at = JSON.stringify(c);
      const target = (c.rows * c.n) / (2 * c.sms);
      if (c.chunk > 256) expect(c.chunk - 64, at).toBeLessThan(target);
      if (c.chunk < 2048) expect(c.chunk, at).toBeGreaterThanOrEqual(Math.min(256, target));
      if (c.chunk < 2048 && c.chunk > 256) expect(c.chunk, at).toBeGreaterThanOrEqual(target);
    }
  });

  it('cuts the bench shapes on the H200 (132 SMs) as planned', () => {
    const at = (rows: number, n: number) =>
      chunks.find((c) => c.rows === rows && c.n === n && c.sms === 132)?.chunk;
    expect(at(256, 131072)).toBe(2048); // 128k batch 32: 64 splits per row, 16384 CTAs
    expect(at(8, 131072)).toBe(2048); // 128k batch 1: 64 splits per row, 512 CTAs
    expect(at(8, 8192)).toBe(256); // 8k batch 1: 32 splits per row
    expect(at(256, 8192)).toBe(2048);
  });
});
