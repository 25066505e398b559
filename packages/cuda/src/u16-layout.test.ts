// The f16 intermediate's two orders (kernels/cuda/select_plan.h: u16_index / u16_m16_index; head-major, and the
// key-major order of variant bit 1048576): the real header compiled with the host C++ compiler, every index
// of a few rows enumerated, checked to be a bijection onto the same buffer, with the contiguity the kernels'
// loads and stores rely on.
import { dirname, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { beforeAll, describe, expect, it } from 'vitest';
import { hostCompiler, runHostDriver } from './host-cpp.js';

const header = resolve(dirname(fileURLToPath(import.meta.url)), '../../../kernels/cuda/select_plan.h');

// Per (order, GS, n): the u slots of the buffer, indices out of range, slots hit exactly once, the 8-key groups
// whose indices run consecutively (per head: head-major readers; all GS heads key by key: key-major readers), the
// 16-key steps whose GS x 16 entries fill one block, the same bijection figures for m16, and (key-major) the keys
// whose GS step maxima are adjacent.
const driver = `
#include <cstdio>
#include <vector>
#include "${header}"
using namespace kascade;
int main() {
  const int gsList[] = {1, 2, 4, 8};
  const int nList[] = {1, 15, 16, 17, 100, 2049};
  const int kvRows = 3;
  for (int order = 0; order < 2; ++order)
    for (int GS : gsList)
      for (int n : nList) {
        const int nU = u16_stride(n);
        const size_t total = static_cast<size_t>(kvRows) * GS * nU, mTotal = total / 16;
        std::vector<int> seen(total, 0), mSeen(mTotal, 0);
        long long bad = 0, mBad = 0, groups8 = 0, steps = 0, mAdj = 0;
        for (int r = 0; r < kvRows; ++r) {
          const size_t bh0 = static_cast<size_t>(r) * GS;
          for (int h = 0; h < GS; ++h)
            for (int x = 0; x < nU; ++x) {
              const size_t i = u16_index(bh0, h, x, nU, GS, order == 1);
              if (i >= total) ++bad; else ++seen[i];
              if (x % 16 == 0) {
                const size_t m = u16_m16_index(bh0, h, x, nU, GS, order == 1);
                if (m >= mTotal) ++mBad; else ++mSeen[m];
                for (int e = 1; e < 16; ++e)
                  if (u16_m16_index(bh0, h, x + e, nU, GS, order == 1) != m) ++mBad;
              }
              if (x % 8 == 0 && order == 0) {
                bool run = true;
                for (int e = 1; e < 8; ++e) run = run && u16_index(bh0, h, x + e, nU, GS, false) == i + e;
                groups8 += run ? 1 : 0;
              }
              if (x % 8 == 0 && order == 1 && h == 0) {
                bool run = true;
                for (int e = 0; e < 8; ++e)
                  for (int g = 0; g < GS; ++g)
                    run = run && u16_index(bh0, g, x + e, nU, GS, true) == i + e * GS + g;
                groups8 += run ? 1 : 0;
              }
              if (order == 1 && h == 0) {
                bool adj = true;
                for (int g = 1; g < GS; ++g)
                  adj = adj && u16_m16_index(bh0, g, x, nU, GS, true) == u16_m16_index(bh0, 0, x, nU, GS, true) + g;
                mAdj += adj ? 1 : 0;
              }
            }
          for (int x = 0; x < nU; x += 16) {
            const size_t first = u16_index(bh0, 0, x, nU, GS, order == 1);
            bool block = true;
            for (int h = 0; h < GS; ++h)
              for (int e = 0; e < 16; ++e)
                block = block && u16_index(bh0, h, x + e, nU, GS, order == 1) >= first &&
                        u16_index(bh0, h, x + e, nU, GS, order == 1) < first + GS * 16;
            steps += block ? 1 : 0;
          }
        }
        long long once = 0, mOnce = 0;
        for (int c : seen) once += c == 1 ? 1 : 0;
        for (int c : mSeen) mOnce += c == 1 ? 1 : 0;
        std::printf("%d %d %d %zu %lld %lld %lld %lld %zu %lld %lld %lld\\n", order, GS, n, total, bad, once, groups8, steps,
                    mTotal, mBad, mOnce, mAdj);
      }
  std::printf("probe %zu %zu %zu %zu\\n", u16_index(8, 2, 37, 48, 4, true), u16_m16_index(8, 2, 37, 48, 4, true),
              u16_index(8, 2, 37, 48, 4, false), u16_m16_index(8, 2, 37, 48, 4, false));
  return 0;
}
`;

interface Case {
  keyMajor: boolean;
  gs: number;
  n: number;
  total: number;
  bad: number;
  once: number;
  groups8: number;
  steps: number;
  mTotal: number;
  mBad: number;
  mOnce: number;
  mAdj: number;
}

let cases: Case[] = [];
let probe: number[] = [];

beforeAll(() => {
  if (!hostCompiler) return;
  const lines = runHostDriver('select_plan.h (u16 orders)', driver).trim().split('\n');
  probe = (lines.pop() ?? '').split(' ').slice(1).map(Number);
  cases = lines.map((line) => {
    const [order, gs, n, total, bad, once, groups8, steps, mTotal, mBad, mOnce, mAdj] = line
      .split(' ')
      .map(Number) as number[];
    return {
      keyMajor: order === 1,
      gs: gs as number,
      n: n as number,
      total: total as number,
      bad: bad as number,
      once: once as number,
      groups8: groups8 as number,
      steps: steps as number,
      mTotal: mTotal as number,
      mBad: mBad as number,
      mOnce: mOnce as number,
      mAdj: mAdj as number,
    };
  });
});

describe.skipIf(!hostCompiler)(
  'the f16 intermediate orders (select_plan.h, compiled with the host C++ compiler)',
  () => {
    it('maps every (row, head, key) and every step maximum to its own slot of the same buffer in both orders', () => {
      expect(cases.length).toBe(2 * 4 * 6);
      for (const c of cases) {
        const at = JSON.stringify(c);
        const nU = Math.ceil(c.n / 16) * 16;
        expect(c.total, at).toBe(3 * c.gs * nU);
        expect(c.bad, at).toBe(0);
        expect(c.once, at).toBe(c.total); // a bijection: every slot hit exactly once
        expect(c.mTotal, at).toBe(c.total / 16);
        expect(c.mBad, at).toBe(0); // in range, and one maximum per 16-key step
        expect(c.mOnce, at).toBe(c.mTotal);
      }
    });

    it("keeps the readers' 8-key groups consecutive and, key-major, each step one block", () => {
      for (const c of cases) {
        const at = JSON.stringify(c);
        const nU = Math.ceil(c.n / 16) * 16;
        // Head-major: each head's 8 keys; key-major: the 8 keys' GS heads, key by key (one group per 8 keys).
        expect(c.groups8, at).toBe(c.keyMajor ? (3 * nU) / 8 : (3 * c.gs * nU) / 8);
        // Head-major: a step's heads are nU apart, one block per step only at GS = 1 or a one-step row (nU = 16).
        expect(c.steps, at).toBe(c.keyMajor || c.gs === 1 || nU === 16 ? (3 * nU) / 16 : 0);
        // Key-major: every key's GS step maxima side by side (the sparse pass's 16-byte copies).
        expect(c.mAdj, at).toBe(c.keyMajor ? 3 * nU : 0);
      }
    });

    it('places a worked example where the layout comment says', () => {
      // Query head 8 + 2 of a row with GS 4, key 37 (step 2, offset 5), nU 48.
      expect(probe).toEqual([
        8 * 48 + 2 * 64 + 5 * 4 + 2,
        8 * 3 + 2 * 4 + 2,
        (8 + 2) * 48 + 37,
        (8 + 2) * 3 + 2,
      ]);
    });
  },
);

// Variant bit 2097152 (burst_writes.cuh): a staged step's record lands where the direct key-major stores would put it,
// and the pass's lanes fill every slot of the record once. Per GS: mismatches of the record's u / m16 places against
// u16_index / u16_m16_index over a few rows and keys, then the lane map's slot coverage (slots hit once, of GS x 16).
const burstDriver = `
#include <cstdio>
#include <vector>
#include "${header}"
using namespace kascade;
int main() {
  const int gsList[] = {1, 2, 4, 8};
  const int nList[] = {17, 100, 2049};
  for (int GS : gsList) {
    long long bad = 0, mBad = 0, checked = 0;
    for (int n : nList) {
      const int nU = u16_stride(n);
      for (size_t kvRow = 0; kvRow < 3; ++kvRow)
        for (int x = 0; x < nU; ++x)
          for (int h = 0; h < GS; ++h) {
            const unsigned long long g = u16_burst_step(kvRow, x, nU);
            bad += g * GS * 16 + u16_burst_slot(x & 15, h, GS) != u16_index(kvRow * GS, h, x, nU, GS, true);
            mBad += g * GS + h != u16_m16_index(kvRow * GS, h, x, nU, GS, true);
            ++checked;
          }
    }
    // The kernel's lanes (row = lane / 4 < GS, quad = lane % 4; nb 0, 1) each store one 4-byte pair of slots.
    std::vector<int> hit(GS * 16, 0);
    for (int lane = 0; lane < 32; ++lane) {
      const int row = lane >> 2, quad = lane & 3;
      if (row >= GS) continue;
      for (int nb = 0; nb < 2; ++nb) {
        const int key = nb * 8 + quad * 2 + (GS > 1 ? (row & 1) : 0);
        const int s = u16_burst_slot(key, GS > 1 ? (row & ~1) : 0, GS);
        if (s >= 0 && s + 1 < GS * 16) { ++hit[s]; ++hit[s + 1]; }
      }
    }
    long long once = 0;
    for (int c : hit) once += c == 1;
    std::printf("%d %lld %lld %lld %lld\\n", GS, checked, bad, mBad, once);
  }
  return 0;
}
`;

describe.skipIf(!hostCompiler)(
  'the burst records (variant bit 2097152, select_plan.h with the host compiler)',
  () => {
    it("puts every staged value where the key-major stores put it, and the lanes fill each record's slots once", () => {
      const rows = runHostDriver('select_plan.h (burst records)', burstDriver)
        .trim()
        .split('\n')
        .map((l) => l.split(' ').map(Number));
      expect(rows.map((r) => r[0])).toEqual([1, 2, 4, 8]);
      for (const [gs, checked, bad, mBad, once] of rows as number[][]) {
        expect(checked, `GS ${gs}`).toBe(3 * gs * (32 + 112 + 2064));
        expect(bad, `GS ${gs}`).toBe(0);
        expect(mBad, `GS ${gs}`).toBe(0);
        expect(once, `GS ${gs}`).toBe((gs as number) * 16);
      }
    });
  },
);
