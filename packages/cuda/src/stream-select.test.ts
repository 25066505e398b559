// Host-side pieces of the stream select and its f16 intermediate (kernels/cuda/select_plan.h, variant
// bits 1024 / 2048): the real C++ header compiled with the machine's C++ compiler (no CUDA needed),
// the u16 layout and the stream schedule checked over a grid of shapes, and the exact window's bound
// (f16 rounding of u against the 2^-9 window) checked on random pooled scores in TypeScript; and the anchor's
// sparse pass from the intermediate (bit 524288): its scores m16 + log2(u) - 15 against the exact logits.
import { dirname, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { fromF16, toF16 } from '@kascade/core';
import { beforeAll, describe, expect, it } from 'vitest';
import { hostCompiler, runHostDriver } from './host-cpp.js';

const header = resolve(dirname(fileURLToPath(import.meta.url)), '../../../kernels/cuda/select_plan.h');

/** mulberry32: a small seeded generator of uniform [0, 1) numbers. */
function mulberry32(seed0: number): () => number {
  let seed = seed0;
  return () => {
    seed = (seed + 0x6d2b79f5) | 0;
    let t = seed;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

const NS = [1, 2, 15, 16, 17, 113, 1023, 2048, 2049, 4097, 8192, 20000, 65537, 131072, 340000, 524288];
const ROWS = [1, 2, 8, 16, 80, 256, 640];
const SMS = [1, 78, 132];
const PER_SM = [1, 3, 4];

interface Layout {
  n: number;
  rows: number;
  stride: number;
  m16Offset: number;
  bytes: number;
  listOffset: number;
}
interface Plan {
  n: number;
  rows: number;
  perSm: number;
  sms: number;
  tiles: number;
  work: number;
  ctas: number;
}

const driver = `
#include <cstdio>
#include "${header}"
int main() {
  const int ns[] = {${NS.join(', ')}};
  const long long rowsList[] = {${ROWS.join(', ')}};
  const int smsList[] = {${SMS.join(', ')}};
  const int perSmList[] = {${PER_SM.join(', ')}};
  for (int n : ns)
    for (long long rows : rowsList) {
      std::printf("L %d %lld %d %zu %zu %zu\\n", n, rows, kascade::u16_stride(n), kascade::u16_m16_offset(rows, n),
                  kascade::u16_bytes(rows, n), kascade::u16_list_offset(rows, n));
      for (int sms : smsList)
        for (int perSm : perSmList) {
          const kascade::StreamPlan p = kascade::stream_plan(rows, n, perSm, sms);
          std::printf("P %d %lld %d %d %d %lld %d\\n", n, rows, perSm, sms, p.tiles, p.work, p.ctas);
        }
    }
  std::printf("W %.9g %d\\n", kascade::kStreamWindow, kascade::kStreamTile);
  return 0;
}
`;

const layouts: Layout[] = [];
const plans: Plan[] = [];
let window = 0;
let tile = 0;

beforeAll(() => {
  if (!hostCompiler) return;
  const stdout = runHostDriver('select_plan.h', driver);
  for (const line of stdout.trim().split('\n')) {
    const [tag, ...rest] = line.split(' ');
    const v = rest.map(Number);
    const at = (i: number) => v[i] as number;
    if (tag === 'L') {
      layouts.push({
        n: at(0),
        rows: at(1),
        stride: at(2),
        m16Offset: at(3),
        bytes: at(4),
        listOffset: at(5),
      });
    } else if (tag === 'P') {
      plans.push({ n: at(0), rows: at(1), perSm: at(2), sms: at(3), tiles: at(4), work: at(5), ctas: at(6) });
    } else if (tag === 'W') {
      window = v[0] as number;
      tile = v[1] as number;
    }
  }
});

describe.skipIf(!hostCompiler)('stream select host plan (select_plan.h, host C++ compiler)', () => {
  it('lays out the f16 intermediate in 16-aligned rows, the step maxima after them', () => {
    expect(layouts.length).toBe(NS.length * ROWS.length);
    for (const l of layouts) {
      const at = JSON.stringify(l);
      expect(l.stride % 16, at).toBe(0);
      expect(l.stride, at).toBeGreaterThanOrEqual(l.n);
      expect(l.stride, at).toBeLessThan(l.n + 16);
      // Rows of u (2 bytes each), then one f32 per 16-key step and row.
      expect(l.m16Offset, at).toBe(l.rows * l.stride * 2);
      expect(l.m16Offset % 16, at).toBe(0); // 8-key (16-byte) loads of u and aligned f32 maxima
      expect(l.bytes, at).toBe(l.m16Offset + l.rows * (l.stride / 16) * 4);
      // 2.25 bytes per key and head: under the f32 logits' 4 except for tiny rows.
      if (l.n >= 64) expect(l.bytes, at).toBeLessThan(l.rows * l.n * 4);
      // Bit 524288: the select's list starts past u and m16, 256-byte aligned (nothing of them overwritten).
      expect(l.listOffset % 256, at).toBe(0);
      expect(l.listOffset, at).toBeGreaterThanOrEqual(l.bytes);
      expect(l.listOffset, at).toBeLessThan(l.bytes + 256);
    }
  });

  it('covers every tile once with non-empty, equal shares of a resident grid', () => {
    expect(tile).toBe(2048);
    for (const p of plans) {
      const at = JSON.stringify(p);
      expect(p.tiles, at).toBe(Math.ceil(p.n / tile));
      expect(p.work, at).toBe(p.rows * p.tiles);
      expect(p.ctas, at).toBeGreaterThanOrEqual(1);
      expect(p.ctas, at).toBeLessThanOrEqual(p.perSm * p.sms); // co-resident (cooperative launch)
      expect(p.ctas, at).toBeLessThanOrEqual(Math.max(1, Math.floor(p.work / 2))); // two tiles per CTA
      // The kernel's partition: CTA c takes [floor(c W / P), floor((c + 1) W / P)).
      const W = BigInt(p.work);
      const P = BigInt(p.ctas);
      let covered = 0n;
      let minShare = W;
      for (let c = 0n; c < P; c++) {
        const share = ((c + 1n) * W) / P - (c * W) / P;
        covered += share;
        if (share < minShare) minShare = share;
      }
      expect(covered, at).toBe(W);
      expect(minShare >= 1n, at).toBe(true);
      // A row's CTAs are those of its first and last tiles, ((t + 1) P - 1) / W, and the ones
      // between (the count a per-row completion counter would need), against the partition itself.
      if (p.rows <= 16) {
        const T = BigInt(p.tiles);
        for (let r = 0n; r < BigInt(p.rows); r++) {
          const first = r * T;
          const last = first + T - 1n;
          const c0 = ((first + 1n) * P - 1n) / W;
          const c1 = ((last + 1n) * P - 1n) / W;
          let touching = 0n;
          for (let c = 0n; c < P; c++) {
            const b = (c * W) / P;
            const e = ((c + 1n) * W) / P;
            if (b <= last && e > first) touching++;
          }
          expect(c1 - c0 + 1n, `${at} row ${r}`).toBe(touching);
        }
      }
    }
  });

  it('gives the bench shapes their grids (H200: 132 SMs)', () => {
    const get = (n: number, rows: number, perSm: number) =>
      plans.find((p) => p.n === n && p.rows === rows && p.perSm === perSm && p.sms === 132);
    // 128k, batch 32 (256 rows of 64 tiles): the resident grid.
    expect(get(131072, 256, 4)).toMatchObject({ tiles: 64, work: 16384, ctas: 528 });
    // 128k, batch 1 (8 rows): two tiles per CTA.
    expect(get(131072, 8, 4)).toMatchObject({ work: 512, ctas: 256 });
    // One key: one CTA.
    expect(get(1, 1, 4)).toMatchObject({ tiles: 1, work: 1, ctas: 1 });
  });
});

describe('the exact window of the f16 intermediate (variant bit 1024)', () => {
  // Fixed seed: reproducible random pooled rows.
  const rand = mulberry32(12345);

  it('keeps every key whose order against the k-th score f16 rounding could flip', () => {
    const W = 0.001953125; // kStreamWindow (2^-9), also read from the header above when a compiler exists
    const A = 2 ** -38; // kStreamWindowAbsPerHead
    if (hostCompiler) expect(window).toBe(W);
    const g = 4;
    const n = 4096;
    const k = 410;
    for (let trial = 0; trial < 8; trial++) {
      // Per head: log2-domain logits with a spread that grows with the trial (peakier rows; the last
      // trials put keys deep below their step's max, where f16 leaves its normal range).
      const spread = 1 + 6 * trial;
      const logits = Array.from({ length: g }, () =>
        Float64Array.from({ length: n }, () => spread * (rand() * 2 - 1) ** 3),
      );
      const exact = new Float64Array(n);
      const approx = new Float64Array(n);
      for (let h = 0; h < g; h++) {
        const l = logits[h] as Float64Array;
        const M = Math.max(...l);
        let L = 0;
        for (const x of l) L += 2 ** (x - M);
        for (let s = 0; s < n; s += 16) {
          let m16 = Number.NEGATIVE_INFINITY;
          for (let x = s; x < s + 16; x++) m16 = Math.max(m16, l[x] as number);
          // The kernel's encoding: u = 2^15 exp2(l - m16) in f16, weight exp2(m16 - M - 15) / L.
          const u = Array.from({ length: 16 }, (_, i) => 2 ** ((l[s + i] as number) - m16 + 15));
          const u16 = fromF16(toF16(u));
          const c = 2 ** (m16 - M - 15) / L;
          for (let i = 0; i < 16; i++) {
            exact[s + i] = (exact[s + i] as number) + (u[i] as number) * c;
            approx[s + i] = (approx[s + i] as number) + (u16[i] as number) * c;
          }
        }
      }
      // The window's premise: |S' - S| <= 2^-11 S + g 2^-40 (half the window's W and A)...
      for (let x = 0; x < n; x++) {
        const e = exact[x] as number;
        expect(Math.abs((approx[x] as number) - e)).toBeLessThanOrEqual(2 ** -11 * e + g * 2 ** -40);
      }
      // ...so the exact Top-k = (approx above the window) + the best of the window by exact score.
      const order = (v: Float64Array) =>
        Array.from({ length: n }, (_, i) => i).sort((a, b) => (v[b] as number) - (v[a] as number));
      const ak = approx[order(approx)[k - 1] as number] as number;
      const hi = ak * (1 + W) + g * A;
      const lo = ak * (1 - W) - g * A;
      const keys = [...Array(n).keys()];
      const sure = keys.filter((x) => (approx[x] as number) > hi);
      const win = keys.filter((x) => (approx[x] as number) >= lo && (approx[x] as number) <= hi);
      expect(sure.length).toBeLessThan(k);
      expect(sure.length + win.length).toBeGreaterThanOrEqual(k);
      win.sort((a, b) => (exact[b] as number) - (exact[a] as number));
      const picked = new Set([...sure, ...win.slice(0, k - sure.length)]);
      expect(picked.size).toBe(k);
      const kth = exact[order(exact)[k - 1] as number] as number;
      for (const x of picked) expect(exact[x] as number).toBeGreaterThanOrEqual(kth);
    }
  });
});

describe('the sparse pass from the f16 intermediate (variant bit 524288)', () => {
  it('reads back every selected key score within f16 rounding, and attends within 1e-3 of the exact output', () => {
    const rand = mulberry32(777);
    const n = 2048;
    const d = 8;
    for (let trial = 0; trial < 6; trial++) {
      const spread = 1 + 5 * trial;
      // One head's log2-domain logits, V rows, and a 10 % selection (every 10th key, plus the row's best).
      const l = Float64Array.from({ length: n }, () => spread * (rand() * 2 - 1) ** 3);
      const v = Array.from({ length: n }, () => Float64Array.from({ length: d }, () => rand() * 2 - 1));
      const best = l.indexOf(Math.max(...l));
      const sel = [...Array(n).keys()].filter((x) => x % 10 === 3 || x === best);
      const exactOut = new Float64Array(d);
      const readOut = new Float64Array(d);
      let exactSum = 0;
      let readSum = 0;
      const M = Math.max(...sel.map((x) => l[x] as number));
      for (const x of sel) {
        const s0 = Math.floor(x / 16) * 16;
        let m16 = Number.NEGATIVE_INFINITY;
        for (let y = s0; y < s0 + 16; y++) m16 = Math.max(m16, l[y] as number);
        // The scores pass stores u = 2^15 exp2(l - m16) in f16; the sparse pass reads l' = m16 + log2(u) - 15.
        const u = fromF16(toF16([2 ** ((l[x] as number) - m16 + 15)]))[0] as number;
        const lx = l[x] as number;
        if (u === 0) continue; // f16 underflow: the kernel scores -inf (a key ~2^39 below its step's max)
        const back = m16 + Math.log2(u) - 15;
        // Normal range: |dl| <= log2(1 + 2^-11); below it f16's absolute step bounds u's error.
        if (u >= 2 ** -14) expect(Math.abs(back - lx)).toBeLessThanOrEqual(Math.log2(1 + 2 ** -11) + 1e-12);
        const we = 2 ** (lx - M);
        const wr = 2 ** (back - M);
        exactSum += we;
        readSum += wr;
        for (let i = 0; i < d; i++) {
          exactOut[i] = (exactOut[i] as number) + we * ((v[x] as Float64Array)[i] as number);
          readOut[i] = (readOut[i] as number) + wr * ((v[x] as Float64Array)[i] as number);
        }
      }
      let num = 0;
      let den = 0;
      for (let i = 0; i < d; i++) {
        const e = (exactOut[i] as number) / exactSum;
        num += ((readOut[i] as number) / readSum - e) ** 2;
        den += e * e;
      }
      expect(Math.sqrt(num / den)).toBeLessThan(1e-3);
    }
  });
});
