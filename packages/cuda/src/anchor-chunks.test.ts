// The anchors' batch chunks (variant bit 262144: kernels/cuda/select_plan.h, anchor_chunks_plan, used by
// anchor_decode.cu's anchor_run): the real C++ header compiled with the machine's C++ compiler (no CUDA
// needed). Every sequence of the batch lands in exactly one chunk, no chunk is empty, and there are never
// more chunks than asked for (each chunk has its own workspace and its own events).
import { dirname, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { beforeAll, describe, expect, it } from 'vitest';
import { hostCompiler, runHostDriver } from './host-cpp.js';

const header = resolve(dirname(fileURLToPath(import.meta.url)), '../../../kernels/cuda/select_plan.h');

const WANTS = [1, 4, 8, 16, 32];
const MAX_BATCH = 80;

interface Chunks {
  batch: number;
  want: number;
  count: number;
  per: number;
  /** anchor_chunks_plan(batch, count).per: the per-chunk size anchor_decode.cu's chunk_shape uses. */
  perAgain: number;
}

const driver = `
#include <cstdio>
#include "${header}"
int main() {
  const int wants[] = {${WANTS.join(', ')}};
  for (int batch = 1; batch <= ${MAX_BATCH}; ++batch)
    for (int want : wants) {
      const kascade::AnchorChunks c = kascade::anchor_chunks_plan(batch, want);
      std::printf("%d %d %d %d %d\\n", batch, want, c.count, c.per, kascade::anchor_chunks_plan(batch, c.count).per);
    }
  return 0;
}
`;

const plans: Chunks[] = [];

beforeAll(() => {
  if (!hostCompiler) return;
  for (const line of runHostDriver('select_plan.h (anchor chunks)', driver).trim().split('\n')) {
    const [batch, want, count, per, perAgain] = line.split(' ').map(Number) as [
      number,
      number,
      number,
      number,
      number,
    ];
    plans.push({ batch, want, count, per, perAgain });
  }
});

describe.skipIf(!hostCompiler)(
  'anchor batch chunks (select_plan.h anchor_chunks_plan, host C++ compiler)',
  () => {
    it('splits every batch into at most `want` non-empty chunks that cover it once', () => {
      expect(plans.length).toBe(MAX_BATCH * WANTS.length);
      for (const p of plans) {
        const at = JSON.stringify(p);
        expect(p.count, at).toBeGreaterThanOrEqual(1);
        expect(p.count, at).toBeLessThanOrEqual(Math.min(p.want, p.batch));
        // The kernel's chunks: i starts at i x per and holds min(per, batch - i x per) sequences.
        let covered = 0;
        for (let i = 0; i < p.count; i++) {
          const size = Math.min(p.per, p.batch - i * p.per);
          expect(size, at).toBeGreaterThanOrEqual(1);
          covered += size;
        }
        expect(covered, at).toBe(p.batch);
        // Planning again from the count (what chunk_shape does) gives the same chunk size.
        expect(p.perAgain, at).toBe(p.per);
      }
    });

    it('asks for no chunks when one is wanted, and for `want` equal chunks when they divide the batch', () => {
      for (const p of plans) {
        const at = JSON.stringify(p);
        if (p.want === 1) expect(p.count, at).toBe(1);
        if (p.batch % p.want === 0) {
          expect(p.count, at).toBe(p.want);
          expect(p.per, at).toBe(p.batch / p.want);
        }
      }
      // The bench's batch 32: 4, 8, 16 and 32 chunks of 8, 4, 2 and 1 sequences.
      for (const want of [4, 8, 16, 32]) {
        const p = plans.find((x) => x.batch === 32 && x.want === want);
        expect(p?.count).toBe(want);
        expect(p?.per).toBe(32 / want);
      }
    });
  },
);
