import { spawnSync } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { buildDevCheck, nvccPath } from './dev-check.test-support.js';
import {
  PREFILL_V9_BLOCK_ROWS,
  type PrefillPlanShape,
  prefillTensorMapParams,
  prefillV9Block,
  prefillV9Grid,
  prefillV9QueryBlocks,
} from './prefill-plan.js';

interface Case extends PrefillPlanShape {
  readonly queryStart: number;
  readonly capacity: number;
}

const cases: readonly Case[] = [
  { batch: 1, heads: 32, kvHeads: 8, queries: 8192, queryStart: 0, capacity: 8192 },
  { batch: 1, heads: 8, kvHeads: 2, queries: 300, queryStart: 96, capacity: 500 },
  { batch: 2, heads: 4, kvHeads: 2, queries: 141, queryStart: 0, capacity: 146 },
  { batch: 1, heads: 2, kvHeads: 2, queries: 100, queryStart: 0, capacity: 100 },
  { batch: 3, heads: 16, kvHeads: 2, queries: 129, queryStart: 32, capacity: 161 },
];

/** Every CTA's block in launch order (x fastest, then y, then z). */
function launchOrder(s: PrefillPlanShape): { queryBlock: number; head: number; batch: number }[] {
  const g = prefillV9Grid(s);
  const out: { queryBlock: number; head: number; batch: number }[] = [];
  for (let z = 0; z < g.z; ++z)
    for (let y = 0; y < g.y; ++y)
      for (let x = 0; x < g.x; ++x) out.push({ ...prefillV9Block(s, x, y), batch: z });
  return out;
}

describe('dense prefill v9 plan (CTA order and tensor maps)', () => {
  it.each(cases)('covers every (query block, head) once, heaviest first, a group at a time: %o', (c) => {
    const order = launchOrder(c);
    const qb = prefillV9QueryBlocks(c);
    expect(qb).toBe(Math.ceil(c.queries / PREFILL_V9_BLOCK_ROWS));
    expect(order.length).toBe(qb * c.heads * c.batch);
    const seen = new Set(order.map((o) => `${o.batch}/${o.head}/${o.queryBlock}`));
    expect(seen.size).toBe(order.length);
    for (const o of order) {
      expect(o.queryBlock).toBeGreaterThanOrEqual(0);
      expect(o.queryBlock).toBeLessThan(qb);
      expect(o.head).toBeGreaterThanOrEqual(0);
      expect(o.head).toBeLessThan(c.heads);
    }
    const g = c.heads / c.kvHeads;
    const grid = prefillV9Grid(c);
    for (let i = 0; i < order.length; i += grid.x) {
      const row = order.slice(i, i + grid.x); // one KV head of one sequence
      const kv = Math.floor((row[0]?.head ?? 0) / g);
      // Every CTA of the row reads that KV head; query blocks never grow along the row (longest first).
      for (const [x, o] of row.entries()) {
        expect(Math.floor(o.head / g)).toBe(kv);
        if (x > 0) expect(o.queryBlock).toBeLessThanOrEqual(row[x - 1]?.queryBlock ?? 0);
      }
      // The group's g heads of a query block are consecutive CTAs (same K/V tiles at the same time).
      for (let x = 0; x < row.length; x += g) {
        const grp = row.slice(x, x + g);
        expect(new Set(grp.map((o) => o.queryBlock)).size).toBe(1);
        expect(grp.map((o) => o.head)).toEqual(Array.from({ length: g }, (_, k) => kv * g + k));
      }
    }
    expect(order[0]?.queryBlock).toBe(qb - 1);
  });

  it('builds maps the copy engine accepts: 128-byte rows of the box, 16-byte strides, boxes <= 256', () => {
    for (const c of cases) {
      const n = c.queryStart + c.queries;
      const q = prefillTensorMapParams(c.queries, c.queries, c.batch * c.heads);
      const k = prefillTensorMapParams(n, c.capacity, c.batch * c.kvHeads);
      for (const m of [q, k]) {
        expect(m.dims[0]).toBe(128);
        expect(m.box[0] * 2).toBe(128); // the 128-byte swizzle's span
        expect(m.box[1]).toBe(PREFILL_V9_BLOCK_ROWS);
        expect(m.box[2]).toBe(1);
        for (const b of m.box) expect(b).toBeLessThanOrEqual(256);
        for (const st of m.strides) expect(st % 16).toBe(0);
      }
      expect(q.dims[1]).toBe(c.queries);
      expect(q.strides[1]).toBe(c.queries * 256);
      expect(k.dims[1]).toBe(n); // keys past the chunk read as zeros (masked anyway)
      expect(k.strides[1]).toBe(c.capacity * 256);
      expect(k.dims[2]).toBe(c.batch * c.kvHeads);
    }
  });
});

// The C++ plan the kernel runs (kernels/cuda/dev/prefill_v9_plan_check.cu, host code only) must match the twin.
describe.skipIf(!nvccPath)('dense prefill v9 plan: the C++ functions agree (nvcc found)', () => {
  it('gives the same grid, CTA order and maps', { timeout: 120_000 }, () => {
    const dir = mkdtempSync(join(tmpdir(), 'pf-plan-'));
    try {
      const { exe, error } = buildDevCheck('prefill_v9_plan_check', dir);
      expect(error, error).toBeUndefined();
      const args = cases.flatMap((c) => [c.batch, c.heads, c.kvHeads, c.queries, c.queryStart, c.capacity]);
      const run = spawnSync(exe, args.map(String), { encoding: 'utf8', maxBuffer: 64 << 20 });
      expect(run.status, run.stderr).toBe(0);
      const lines = run.stdout.trim().split('\n');
      expect(lines.length).toBe(cases.length);
      for (const [i, c] of cases.entries()) {
        const got = JSON.parse(lines[i] ?? '{}') as {
          grid: number[];
          blocks: [number, number][];
          q: unknown;
          k: unknown;
          qTile: unknown;
          k64: unknown;
        };
        const g = prefillV9Grid(c);
        expect(got.grid).toEqual([g.x, g.y, g.z]);
        expect(got.blocks).toEqual(launchOrder(c).map((o) => [o.queryBlock, o.head]));
        const n = c.queryStart + c.queries;
        expect(got.q).toEqual(prefillTensorMapParams(c.queries, c.queries, c.batch * c.heads));
        expect(got.k).toEqual(prefillTensorMapParams(n, c.capacity, c.batch * c.kvHeads));
        expect(got.qTile).toEqual(prefillTensorMapParams(c.queries, c.queries, c.batch * c.heads, 32));
        expect(got.k64).toEqual(prefillTensorMapParams(n, c.capacity, c.batch * c.kvHeads, 64));
        expect(got.k64).not.toEqual(got.k);
      }
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });
});
