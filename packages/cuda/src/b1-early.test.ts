// Variant bit 33554432 (kernels/cuda/b1_early.cuh): the early sparse pass's schedule of a row's 16-entry groups over
// its splits. Every group of the row must be taken exactly once, by exactly one (split, stage, warp), and each split
// must take its groups in increasing order (the groups past the select's phase-2 count, the row's last, then come last
// in every split). The real header compiled with the host C++ compiler, over list lengths, split counts and warps per
// stage (the wide gather's 8, the narrow one's 4).
import { dirname, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { describe, expect, it } from 'vitest';
import { hostCompiler, runHostDriver } from './host-cpp.js';

const header = resolve(dirname(fileURLToPath(import.meta.url)), '../../../kernels/cuda/b1_early.cuh');

// Per case: groups taken not exactly once, groups out of range, splits whose groups are not increasing.
const driver = `
#include <cstdio>
#include <vector>
#include "${header}"
using namespace kascade;
int main() {
  const int topks[] = {1, 15, 16, 17, 820, 3277, 13107, 52429};
  const int splitsList[] = {1, 2, 15, 16, 33, 64};
  const int ncs[] = {4, 8};
  for (int topk : topks)
    for (int splits : splitsList)
      for (int NC : ncs) {
        const int G = (topk + 15) / 16;
        std::vector<int> hits(G, 0);
        long long outside = 0, unordered = 0;
        for (int s = 0; s < splits; ++s) {
          const int ng = b1_early_groups(G, s, splits);
          const int stages = (ng + NC - 1) / NC;
          int prev = -1;
          for (int i = 0; i < stages; ++i)
            for (int w = 0; w < NC; ++w) {
              if (i * NC + w >= ng) continue;  // past the split's groups: the kernel skips the group
              const int g = b1_early_group(i, w, NC, s, splits);
              if (g < 0 || g >= G) { ++outside; continue; }
              ++hits[g];
              if (g <= prev) ++unordered;
              prev = g;
            }
        }
        long long notOnce = 0;
        for (int h : hits) notOnce += h != 1;
        std::printf("%d %d %d %d %lld %lld %lld\\n", topk, splits, NC, G, notOnce, outside, unordered);
      }
  return 0;
}
`;

describe.skipIf(!hostCompiler)(
  'b1_early.cuh: the early sparse pass schedule of a row over its splits (bit 33554432)',
  () => {
    it('takes every 16-entry group exactly once, each split in increasing order', () => {
      const lines = runHostDriver('the b1_early.cuh schedule', driver).trim().split('\n');
      expect(lines.length).toBe(8 * 6 * 2);
      for (const line of lines) {
        const [topk, splits, nc, groups, notOnce, outside, unordered] = line.split(' ');
        const tag = { topk, splits, nc, groups };
        expect({
          ...tag,
          notOnce: Number(notOnce),
          outside: Number(outside),
          unordered: Number(unordered),
        }).toEqual({
          ...tag,
          notOnce: 0,
          outside: 0,
          unordered: 0,
        });
      }
    });
  },
);
