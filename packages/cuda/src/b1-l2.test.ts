// Variant bit 8388608 (kernels/cuda/b1_l2.cuh): past its second grid barrier the b1 select drops the f32 logits' L2
// lines, each idle CTA one share of them (l2_line_share). A dropped line's data is undefined, so a share must never
// reach a line that also holds bytes past the logits (the select's candidate list follows them in the workspace) or
// before them, and the shares together must drop every line wholly inside. The real header compiled with the host
// C++ compiler; bases at several alignments, sizes and share counts.
import { dirname, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { describe, expect, it } from 'vitest';
import { hostCompiler, runHostDriver } from './host-cpp.js';

const header = resolve(dirname(fileURLToPath(import.meta.url)), '../../../kernels/cuda/b1_l2.cuh');

// Per case: lines dropped outside [ceil(begin / 128), floor(end / 128)), lines inside dropped not exactly once.
const driver = `
#include <cstdio>
#include <vector>
#include "${header}"
using namespace kascade;
int main() {
  const unsigned long long bases[] = {0x7f0000000000ull, 0x7f0000000004ull, 0x7f000000007cull, 0x7f0000000100ull};
  const unsigned long long sizes[] = {0, 4, 124, 128, 132, 4096 + 12, 131072ull * 32 * 4, 3 * 1000 * 4};
  const long long partsList[] = {1, 2, 7, 256, 264};
  for (unsigned long long b : bases)
    for (unsigned long long n : sizes)
      for (long long parts : partsList) {
        const unsigned long long e = b + n, lo = (b + 127) / 128, hi = e / 128;
        const unsigned long long inside = hi > lo ? hi - lo : 0;
        std::vector<int> hits(inside, 0);
        long long outside = 0;
        for (long long p = 0; p < parts; ++p) {
          uintptr_t f, l;
          l2_line_share(b, e, p, parts, &f, &l);
          for (uintptr_t x = f; x < l; ++x) {
            if (x < lo || x >= hi || x * 128 < b || x * 128 + 128 > e) ++outside;
            else ++hits[x - lo];
          }
        }
        long long notOnce = 0;
        for (int h : hits) notOnce += h != 1;
        std::printf("%llx %llu %lld %llu %lld %lld\\n", b, n, parts, inside, outside, notOnce);
      }
  return 0;
}
`;

describe.skipIf(!hostCompiler)(
  'b1_l2.cuh: the b1 select shares of the logits lines it drops (bit 8388608)',
  () => {
    it('drops every line wholly inside the logits exactly once and no line reaching outside them', () => {
      const lines = runHostDriver('the b1_l2.cuh line shares', driver).trim().split('\n');
      expect(lines.length).toBe(4 * 8 * 5);
      let inside = 0;
      for (const line of lines) {
        const [base, bytes, parts, lineCount, outside, notOnce] = line.split(' ');
        expect({ base, bytes, parts, outside: Number(outside) }).toEqual({ base, bytes, parts, outside: 0 });
        expect({ base, bytes, parts, notOnce: Number(notOnce) }).toEqual({ base, bytes, parts, notOnce: 0 });
        inside += Number(lineCount);
      }
      // The cases did drop lines (a 128k x 32-head f32 row set is 131072 lines).
      expect(inside).toBeGreaterThan(4 * 5 * 131072);
    });
  },
);
