import { spawnSync } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { buildDevCheck, nvccPath } from './dev-check.test-support.js';
import {
  LEAN_TILE_KEYS,
  type LeanPlan,
  type LeanSegment,
  leanPlan,
  leanSegments,
  leanTileBegin,
  liteSplits,
  WS_GROUP_KEYS,
} from './lean.js';

/** Every segment of every CTA, tagged with its CTA. */
function allSegments(plan: LeanPlan, listLen: number): (LeanSegment & { cta: number })[] {
  const out: (LeanSegment & { cta: number })[] = [];
  for (let c = 0; c < plan.ctas; ++c)
    for (const g of leanSegments(c, plan, listLen)) out.push({ ...g, cta: c });
  return out;
}

/** Checks the partition's invariants; returns the largest number of CTAs a row has. */
function checkPartition(rows: number, listLen: number, ctas: number): number {
  const plan = leanPlan(rows, listLen, ctas);
  const tiles = Math.ceil(listLen / LEAN_TILE_KEYS);
  expect(plan.tiles).toBe(tiles);
  expect(plan.work).toBe(rows * tiles);
  expect(plan.ctas).toBe(Math.min(ctas, plan.work));
  // Equal shares: every CTA has at least one tile, and sizes differ by at most one.
  let lo = Number.POSITIVE_INFINITY;
  let hi = 0;
  for (let c = 0; c < plan.ctas; ++c) {
    const size = leanTileBegin(c + 1, plan) - leanTileBegin(c, plan);
    lo = Math.min(lo, size);
    hi = Math.max(hi, size);
  }
  expect(lo).toBeGreaterThanOrEqual(1);
  expect(hi - lo).toBeLessThanOrEqual(1);
  expect(leanTileBegin(plan.ctas, plan)).toBe(plan.work);

  const segs = allSegments(plan, listLen);
  const byRow = new Map<number, (LeanSegment & { cta: number })[]>();
  for (const g of segs) {
    expect(g.row).toBeGreaterThanOrEqual(0);
    expect(g.row).toBeLessThan(rows);
    expect(g.begin % LEAN_TILE_KEYS).toBe(0);
    expect(g.end).toBeGreaterThan(g.begin);
    expect(g.end).toBeLessThanOrEqual(listLen);
    const list = byRow.get(g.row) ?? [];
    list.push(g);
    byRow.set(g.row, list);
  }
  expect(byRow.size).toBe(rows);
  let most = 0;
  for (const [, list] of byRow) {
    // The row's key list is covered once, in order, by consecutive CTAs in slots 0, 1, ...
    list.sort((x, y) => x.begin - y.begin);
    let at = 0;
    list.forEach((g, i) => {
      expect(g.begin).toBe(at);
      at = g.end;
      expect(g.slot).toBe(i);
      expect(g.cta).toBe(list[0]!.cta + i);
      expect(g.nslots).toBe(list.length);
      expect(g.rowLast).toBe(i === list.length - 1);
    });
    expect(at).toBe(listLen);
    expect(list.length).toBeLessThanOrEqual(plan.slots);
    most = Math.max(most, list.length);
  }
  // The slot bound is tight to within one.
  expect(plan.slots - most).toBeLessThanOrEqual(1);
  // A CTA's segments run over consecutive rows; only its first may start mid-row, only its last end mid-row.
  for (let c = 0; c < plan.ctas; ++c) {
    const mine = leanSegments(c, plan, listLen);
    expect(mine.length).toBeGreaterThanOrEqual(1);
    mine.forEach((g, i) => {
      if (i > 0) {
        expect(g.row).toBe(mine[i - 1]!.row + 1);
        expect(g.begin).toBe(0);
      }
      if (i < mine.length - 1) expect(g.end).toBe(listLen);
    });
  }
  return most;
}

describe('lean (stream-K) work partition', () => {
  const lists = [1, 63, 64, 65, 113, 1023, 4096, 13107];
  it.each([1, 2, 3, 7, 16, 32, 64])(
    'covers every key once, equal shares, slots in bound: batch %i',
    (batch) => {
      let checked = 0;
      for (const kvHeads of [1, 8])
        for (const listLen of lists)
          for (const ctas of [1, 5, 132, 264, 528]) {
            checkPartition(batch * kvHeads, listLen, ctas);
            checked++;
          }
      expect(checked).toBe(2 * lists.length * 5);
    },
  );

  it('splits long rows across many CTAs and packs short rows several to a CTA', () => {
    // 128k keys, 8 KV heads, batch 1, 264 CTAs: each row spread over about 33 CTAs.
    expect(checkPartition(8, 131072, 264)).toBeGreaterThanOrEqual(33);
    // Batch 32, 128k: about one row boundary per CTA.
    expect(checkPartition(256, 131072, 264)).toBeLessThanOrEqual(3);
    // One key per row, 64 rows, 5 CTAs: rows packed 12-13 to a CTA, one slot each.
    const plan = leanPlan(64, 1, 5);
    expect(plan.slots).toBe(1);
    expect(leanSegments(0, plan, 1).map((g) => g.row)).toEqual([0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11]);
    // More CTAs than tiles: one tile each.
    expect(leanPlan(3, 100, 1000)).toEqual({ work: 6, tiles: 2, ctas: 6, slots: 2 });
  });

  it('sizes the workspace for the largest grid: slots never shrink as CTAs grow', () => {
    for (const rows of [1, 8, 64, 256, 512])
      for (const listLen of [1, 113, 13107, 131072, 524288]) {
        let prev = 0;
        for (let ctas = 1; ctas <= 528; ctas += 13) {
          const s = leanPlan(rows, listLen, ctas).slots;
          expect(s).toBeGreaterThanOrEqual(prev);
          prev = s;
        }
        expect(leanPlan(rows, listLen, 528).slots).toBeGreaterThanOrEqual(prev);
      }
  });

  it('partials merged over the slots (empty slots skipped) give the softmax over all keys', () => {
    // Float64 flash-decoding over the partition, for a few rows with random logits and values.
    let seed = 12345;
    const rand = () => {
      seed = (seed * 1103515245 + 12345) % 2147483648;
      return seed / 2147483648;
    };
    for (const [rows, listLen, ctas] of [
      [3, 113, 4],
      [8, 1000, 37],
      [5, 64, 9],
      [2, 4097, 132],
    ] as const) {
      const dim = 3;
      const logit = Array.from({ length: rows * listLen }, () => (rand() - 0.5) * 20);
      const value = Array.from({ length: rows * listLen * dim }, () => rand() - 0.5);
      const plan = leanPlan(rows, listLen, ctas);
      // Slots start poisoned: a merge that reads an unwritten slot fails.
      const ml = new Float64Array(rows * plan.slots * 2).fill(Number.NaN);
      const po = new Float64Array(rows * plan.slots * dim).fill(Number.NaN);
      for (let c = 0; c < plan.ctas; ++c)
        for (const g of leanSegments(c, plan, listLen)) {
          let m = Number.NEGATIVE_INFINITY;
          for (let x = g.begin; x < g.end; ++x) m = Math.max(m, logit[g.row * listLen + x]!);
          let l = 0;
          const o = new Float64Array(dim);
          for (let x = g.begin; x < g.end; ++x) {
            const p = Math.exp(logit[g.row * listLen + x]! - m);
            l += p;
            for (let d = 0; d < dim; ++d) o[d]! += p * value[(g.row * listLen + x) * dim + d]!;
          }
          const at = g.row * plan.slots + g.slot;
          ml[2 * at] = m;
          ml[2 * at + 1] = l;
          po.set(o, at * dim);
          if (g.rowLast)
            for (let x = g.nslots; x < plan.slots; ++x) {
              ml[2 * (g.row * plan.slots + x)] = Number.NEGATIVE_INFINITY;
              ml[2 * (g.row * plan.slots + x) + 1] = 0;
            }
        }
      for (let r = 0; r < rows; ++r) {
        let M = Number.NEGATIVE_INFINITY;
        for (let x = 0; x < plan.slots; ++x) M = Math.max(M, ml[2 * (r * plan.slots + x)]!);
        let L = 0;
        const o = new Float64Array(dim);
        for (let x = 0; x < plan.slots; ++x) {
          const m = ml[2 * (r * plan.slots + x)]!;
          if (m === Number.NEGATIVE_INFINITY) continue;
          const w = Math.exp(m - M);
          L += w * ml[2 * (r * plan.slots + x) + 1]!;
          for (let d = 0; d < dim; ++d) o[d]! += w * po[(r * plan.slots + x) * dim + d]!;
        }
        // Direct softmax over the row.
        const row = logit.slice(r * listLen, (r + 1) * listLen);
        const mx = Math.max(...row);
        const p = row.map((s) => Math.exp(s - mx));
        const sum = p.reduce((a, b) => a + b, 0);
        for (let d = 0; d < dim; ++d) {
          let ref = 0;
          for (let x = 0; x < listLen; ++x) ref += (p[x]! / sum) * value[(r * listLen + x) * dim + d]!;
          expect(Math.abs(o[d]! / L - ref)).toBeLessThan(1e-12);
        }
      }
    }
  });
});

describe('lite splits (variant bit 8192)', () => {
  it('cover the list in whole tiles and never ask for more CTAs than fit at once', () => {
    for (const rows of [1, 2, 8, 16, 64, 256, 640])
      for (const listLen of [1, 9, 64, 65, 1023, 3277, 13107, 52429])
        for (const ctas of [132, 264, 396, 528]) {
          const { splits, chunk } = liteSplits(rows, listLen, ctas);
          expect(chunk % LEAN_TILE_KEYS).toBe(0);
          expect(splits * chunk).toBeGreaterThanOrEqual(listLen);
          expect((splits - 1) * chunk).toBeLessThan(listLen);
          if (rows <= ctas) expect(rows * splits).toBeLessThanOrEqual(ctas);
          // The workspace is sized at 4 CTAs per SM (528 here): never fewer slots than a smaller grid.
          expect(liteSplits(rows, listLen, 528).splits).toBeGreaterThanOrEqual(splits);
        }
    // 128k at batch 1 (8 rows, 13107 keys) on 3 x 132 CTAs: 41 splits of 320 keys, 328 CTAs.
    expect(liteSplits(8, 13107, 396)).toEqual({ splits: 41, chunk: 320 });
  });
});

describe('warp-specialised gather splits (variant bit 32768)', () => {
  it('cover the list in whole 16-key groups, one wave, all CTAs busy at batch 1', () => {
    for (const rows of [1, 2, 8, 16, 64, 256, 640])
      for (const listLen of [1, 9, 16, 17, 1023, 3277, 13107, 52429])
        for (const ctas of [132, 264, 396, 528]) {
          const { splits, chunk } = liteSplits(rows, listLen, ctas, WS_GROUP_KEYS);
          expect(chunk % WS_GROUP_KEYS).toBe(0);
          expect(splits * chunk).toBeGreaterThanOrEqual(listLen);
          expect((splits - 1) * chunk).toBeLessThan(listLen);
          if (rows <= ctas) expect(rows * splits).toBeLessThanOrEqual(ctas);
          expect(liteSplits(rows, listLen, 528, WS_GROUP_KEYS).splits).toBeGreaterThanOrEqual(splits);
        }
    // 128k at batch 1 (8 rows, 13107 keys) on 2 x 132 CTAs: 33 splits of 400 keys fill all 264
    // (64-key tiles would leave 24 idle: 30 splits of 448).
    expect(liteSplits(8, 13107, 264, WS_GROUP_KEYS)).toEqual({ splits: 33, chunk: 400 });
    expect(liteSplits(8, 13107, 264)).toEqual({ splits: 30, chunk: 448 });
    // Bit 64 (one wide CTA per SM, session 8): 16 splits per row on 128 of the 132 CTAs, the last of a row's 16
    // shorter (13107 - 15 x 832 = 627 keys); 820 groups over 16 CTAs leave some CTA 52 groups (832 keys) anyway.
    expect(liteSplits(8, 13107, 132, WS_GROUP_KEYS)).toEqual({ splits: 16, chunk: 832 });
  });
});

describe('split shares (variant bits 8192 and 32768)', () => {
  it('cover every key once, and the merge of the shares gives the softmax', () => {
    const shares = (listLen: number, ctas: number, grain: number): [number, number][] => {
      const { splits, chunk } = liteSplits(1, listLen, ctas, grain);
      return Array.from({ length: splits }, (_, r) => [r * chunk, Math.min(listLen, (r + 1) * chunk)]);
    };
    for (const listLen of [1, 9, 63, 64, 65, 113, 1023, 3277, 13107, 52429])
      for (const ctas of [2, 4, 8, 12, 16, 33])
        for (const grain of [LEAN_TILE_KEYS, WS_GROUP_KEYS]) {
          let next = 0;
          for (const [begin, end] of shares(listLen, ctas, grain)) {
            expect(begin).toBe(next);
            expect(end).toBeGreaterThan(begin);
            next = end;
          }
          expect(next).toBe(listLen);
        }
    // Float64: per-share (m, l, o), merged with weights exp(m_r - M), empty shares skipped.
    let seed = 777;
    const rand = () => {
      seed = (seed * 1103515245 + 12345) % 2147483648;
      return seed / 2147483648;
    };
    for (const [listLen, c] of [
      [9, 16],
      [113, 4],
      [1000, 16],
      [4097, 8],
    ] as const) {
      const logit = Array.from({ length: listLen }, () => (rand() - 0.5) * 30);
      const value = Array.from({ length: listLen }, () => rand() - 0.5);
      const parts = shares(listLen, c, WS_GROUP_KEYS).map(([b, e]) => {
        let m = Number.NEGATIVE_INFINITY;
        for (let x = b; x < e; ++x) m = Math.max(m, logit[x]!);
        let l = 0;
        let o = 0;
        for (let x = b; x < e; ++x) {
          const p = Math.exp(logit[x]! - m);
          l += p;
          o += p * value[x]!;
        }
        return { m, l, o };
      });
      const M = Math.max(...parts.map((p) => p.m));
      let L = 0;
      let O = 0;
      for (const p of parts) {
        if (p.m === Number.NEGATIVE_INFINITY) continue;
        const w = Math.exp(p.m - M);
        L += w * p.l;
        O += w * p.o;
      }
      const mx = Math.max(...logit);
      const ps = logit.map((s) => Math.exp(s - mx));
      const sum = ps.reduce((a, b) => a + b, 0);
      const ref = ps.reduce((a, p, x) => a + (p / sum) * value[x]!, 0);
      expect(Math.abs(O / L - ref)).toBeLessThan(1e-12);
    }
  });
});

// The C++ partition the kernel runs (kernels/cuda/dev/lean_plan_check.cu, host code only) must
// match this twin segment for segment.
describe.skipIf(!nvccPath)('lean partition: the C++ functions agree (nvcc found)', () => {
  it('gives the same plan and segments', { timeout: 120_000 }, () => {
    const dir = mkdtempSync(join(tmpdir(), 'lean-'));
    try {
      const { exe, error } = buildDevCheck('lean_plan_check', dir);
      expect(error, error).toBeUndefined();
      const cases: [number, number, number][] = [
        [1, 1, 1],
        [8, 131072, 264],
        [256, 131072, 264],
        [8, 13107, 264],
        [64, 113, 528],
        [3, 100, 1000],
        [2, 4097, 132],
        [512, 65, 7],
      ];
      const run = spawnSync(exe, cases.flat().map(String), { encoding: 'utf8', maxBuffer: 64 << 20 });
      expect(run.status, run.stderr).toBe(0);
      const lines = run.stdout.trim().split('\n');
      expect(lines).toHaveLength(cases.length);
      cases.forEach(([rows, listLen, ctas], i) => {
        const got = JSON.parse(lines[i]!) as LeanPlan & { segments: number[][][] };
        const plan = leanPlan(rows, listLen, ctas);
        expect({ work: got.work, tiles: got.tiles, ctas: got.ctas, slots: got.slots }).toEqual(plan);
        const want = Array.from({ length: plan.ctas }, (_, c) =>
          leanSegments(c, plan, listLen).map((g) => [
            g.row,
            g.begin,
            g.end,
            g.slot,
            g.nslots,
            g.rowLast ? 1 : 0,
          ]),
        );
        expect(got.segments).toEqual(want);
      });
      // Bit 8192's split counts.
      const lite: [number, number, number][] = [
        [8, 13107, 396],
        [8, 3277, 396],
        [256, 13107, 396],
        [1, 1, 528],
        [640, 65, 396],
        [16, 52429, 528],
      ];
      const splits = spawnSync(exe, ['--lite', ...lite.flat().map(String)], { encoding: 'utf8' });
      expect(splits.status, splits.stderr).toBe(0);
      expect(splits.stdout.trim().split('\n')).toEqual(
        lite.map(([r, l, c]) => {
          const x = liteSplits(r, l, c);
          return `${x.splits} ${x.chunk}`;
        }),
      );
      // Bit 32768's split counts (16-key groups).
      const ws = spawnSync(exe, ['--ws', ...lite.flat().map(String)], { encoding: 'utf8' });
      expect(ws.status, ws.stderr).toBe(0);
      expect(ws.stdout.trim().split('\n')).toEqual(
        lite.map(([r, l, c]) => {
          const x = liteSplits(r, l, c, WS_GROUP_KEYS);
          return `${x.splits} ${x.chunk}`;
        }),
      );
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });
});
