/**
 * Test support (not exported from the package): opens a WebGPU backend the way CI and this
 * machine can, or says why not. Outside CI a missing driver skips the GPU tests; under CI=true it
 * fails them.
 */
import { existsSync } from 'node:fs';
import {
  type AttentionShape,
  type BudgetOptions,
  type DecodeInputs,
  type DecodeSelection,
  denseDecodeAttention,
  fromF16,
  pooledDecodeScores,
  sparseDecodeAttention,
  toF16,
  topkBudget,
} from '@kascade/core';
import { expect } from 'vitest';
import { readBuffer, uploadBuffer, WebGPUBackend } from './backend.js';
import { KascadeGPU } from './context.js';
import {
  createDecodeSlot,
  type DecodeArgs,
  type DeviceDecodeSlot,
  encodeDecode,
  type LayerRole,
} from './ops/decode.js';
import type { KVDType } from './program.js';
import { createDeviceKV, type DeviceKV, packKV, sequenceInputs } from './tensors.js';

export const SWIFTSHADER_ICD = '/usr/lib/chromium/vk_swiftshader_icd.json';

export interface GPUProbe {
  readonly backends: Partial<Record<KVDType, WebGPUBackend>>;
  readonly reason: string;
  /** The shared device; destroy it after the tests. */
  readonly context?: KascadeGPU;
}

export async function openTestBackends(
  dtypes: readonly KVDType[] = ['f32', 'f16'],
  options: { subgroups?: boolean } = {},
): Promise<GPUProbe> {
  if (!process.env.VK_ICD_FILENAMES && !process.env.VK_DRIVER_FILES && existsSync(SWIFTSHADER_ICD)) {
    process.env.VK_ICD_FILENAMES = SWIFTSHADER_ICD;
  }
  const backends: Partial<Record<KVDType, WebGPUBackend>> = {};
  try {
    const context = await KascadeGPU.create(options);
    for (const d of dtypes) backends[d] = await WebGPUBackend.create({ kvDType: d, context });
    return { backends, reason: '', context };
  } catch (e) {
    if (process.env.CI === 'true') throw e;
    const reason =
      `no WebGPU adapter (${e instanceof Error ? e.message : String(e)}); ` +
      'install Debian chromium (SwiftShader) and libvulkan1 to run these tests';
    console.warn(`[@kascade/webgpu] skipping GPU tests: ${reason}`);
    return { backends: {}, reason };
  }
}

/** Deterministic uniform floats in [-1, 1) (mulberry32). */
export function randomFloats(n: number, seed: number, amplitude = 1): Float32Array<ArrayBuffer> {
  let a = seed >>> 0;
  const out = new Float32Array(n);
  for (let i = 0; i < n; i++) {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    out[i] = ((((t ^ (t >>> 14)) >>> 0) / 4294967296) * 2 - 1) * amplitude;
  }
  return out;
}

/** `||a - b|| / ||b||`. */
export function relError(a: ArrayLike<number>, b: ArrayLike<number>): number {
  let num = 0;
  let den = 0;
  for (let i = 0; i < b.length; i++) {
    num += (a[i] - b[i]) ** 2;
    den += b[i] ** 2;
  }
  return Math.sqrt(num / den);
}

export function allFinite(a: ArrayLike<number>): boolean {
  for (let i = 0; i < a.length; i++) if (!Number.isFinite(a[i])) return false;
  return true;
}

/** FlashInfer-style Top-k checks against the float64 pooled scores; returns rows checked. */
export function checkTopk(
  sel: { indices: Int32Array },
  rowOffset: (row: number) => number,
  rows: number,
  length: (row: number) => number,
  k: (row: number) => number,
  pooled: (row: number) => Float64Array,
): number {
  let checked = 0;
  for (let r = 0; r < rows; r++) {
    const kk = k(r);
    const len = length(r);
    const got = Array.from(sel.indices.subarray(rowOffset(r), rowOffset(r) + kk));
    expect(got.length).toBe(kk);
    expect(new Set(got).size, `row ${r}: duplicates`).toBe(kk);
    for (const x of got) expect(x >= 0 && x < len, `row ${r}: index ${x} out of [0, ${len})`).toBe(true);
    if (kk === 0) continue;
    const s = pooled(r);
    const sorted = Array.from(s.subarray(0, len)).sort((a, b) => b - a);
    const kth = sorted[kk - 1];
    const total = sorted.reduce((a, b) => a + b, 0);
    const tol = 1e-6 * Math.max(1, sorted[0]);
    let mass = 0;
    for (const x of got) {
      expect(s[x], `row ${r}: key ${x} scores below the k-th largest`).toBeGreaterThanOrEqual(kth - tol);
      mass += s[x];
    }
    const best = sorted.slice(0, kk).reduce((a, b) => a + b, 0);
    expect(Math.abs(best - mass) / total, `row ${r}: captured mass`).toBeLessThan(1e-3);
    checked++;
  }
  return checked;
}

/**
 * Encodes one compute pass with `encode`, submits it and waits for the queue, inside
 * `gpu.checked(label, ...)` so that a validation or out-of-memory error fails the test with its label.
 */
export async function runComputePass(
  gpu: KascadeGPU,
  label: string,
  encode: (pass: GPUComputePassEncoder) => void,
): Promise<void> {
  await gpu.checked(label, async () => {
    const enc = gpu.device.createCommandEncoder();
    const pass = enc.beginComputePass();
    encode(pass);
    pass.end();
    gpu.flushParams();
    gpu.device.queue.submit([enc.finish()]);
    await gpu.device.queue.onSubmittedWorkDone();
  });
}

/**
 * Reads the `k` indices of each of `batch` sequences x `kvHeads` rows from an index slot (rows
 * `stride` apart), checks every row with `checkTopk` against the float64 pooled scores of
 * `reference(b)` (keys 0 .. n - 1), and returns the selections for the reference sparse attention.
 */
export async function readCheckedSelections(
  gpu: KascadeGPU,
  indices: GPUBuffer,
  shape: { batch: number; kvHeads: number; k: number; stride: number; n: number },
  reference: (b: number) => DecodeInputs,
): Promise<DecodeSelection[]> {
  const { batch, kvHeads, k, stride, n } = shape;
  const all = new Int32Array(await readBuffer(gpu, indices, batch * kvHeads * stride * 4));
  const sels: DecodeSelection[] = Array.from({ length: batch }, (_, b) => {
    const rows = new Int32Array(kvHeads * k);
    for (let j = 0; j < kvHeads; j++)
      rows.set(all.subarray((b * kvHeads + j) * stride, (b * kvHeads + j) * stride + k), j * k);
    return { kvHeads, k, indices: rows };
  });
  sels.forEach((sel, b) => {
    const pooled = pooledDecodeScores(reference(b));
    const rows = checkTopk(
      sel,
      (r) => r * k,
      kvHeads,
      () => n,
      () => k,
      (r) => pooled.subarray(r * n, (r + 1) * n),
    );
    expect(rows).toBe(kvHeads);
  });
  return sels;
}

/**
 * Checks one decode role's output (`out`: `batch x heads x headDim` floats) against the float64 core
 * reference of each sequence: dense attention for `dense` / `dense-anchor`, sparse attention over
 * `sels[b]` (through `headMap` for `reuse`) otherwise; relErr < 1e-5 per sequence.
 */
export function expectDecodeOutputs(
  role: 'dense' | 'dense-anchor' | 'anchor' | 'reuse',
  out: Float32Array,
  shape: { batch: number; heads: number; headDim: number },
  reference: (b: number) => DecodeInputs,
  sels: readonly DecodeSelection[],
  headMap: readonly number[],
): void {
  const { batch, heads, headDim: d } = shape;
  for (let b = 0; b < batch; b++) {
    const want =
      role === 'dense' || role === 'dense-anchor'
        ? denseDecodeAttention(reference(b))
        : sparseDecodeAttention(reference(b), sels[b]!, role === 'reuse' ? headMap : undefined);
    expect(
      relError(out.subarray(b * heads * d, (b + 1) * heads * d), want),
      `${role}, sequence ${b}`,
    ).toBeLessThan(1e-5);
  }
}

/** A decode test shape: `batch` sequences of `n` keys in K/V of `capacity` rows (default `n`). */
export interface DecodeCase extends AttentionShape {
  readonly dtype: KVDType;
  readonly batch: number;
  readonly n: number;
  readonly capacity?: number;
}

/**
 * Random K/V (seeds `seed`, `seed + 1`, amplitude 1) and queries (`seed + 2`, `qAmplitude`) of `batch`
 * sequences, uploaded to a new device K/V of `capacity` rows (default `n`) and a query buffer, with
 * the reference inputs of each sequence over the values as stored (f16-rounded for f16 K/V).
 */
export function uploadDecodeCase(
  gpu: KascadeGPU,
  c: DecodeCase,
  seed: number,
  qAmplitude: number,
): { kv: DeviceKV; q: GPUBuffer; ref: (b: number) => DecodeInputs } {
  const { batch: B, heads: H, kvHeads: G, headDim: d, n } = c;
  const cap = c.capacity ?? n;
  const per = G * cap * d;
  const kh = randomFloats(B * per, seed, 1);
  const vh = randomFloats(B * per, seed + 1, 1);
  const qh = randomFloats(B * H * d, seed + 2, qAmplitude);
  const kv = createDeviceKV(gpu, { batch: B, kvHeads: G, capacity: cap, headDim: d, dtype: c.dtype });
  for (const [buf, host] of [
    [kv.parts[0].k, packKV(kh, c.dtype)],
    [kv.parts[0].v, packKV(vh, c.dtype)],
  ] as const) {
    gpu.device.queue.writeBuffer(buf, 0, host.buffer as ArrayBuffer, host.byteOffset, host.byteLength);
  }
  const stored = (x: Float32Array) => (c.dtype === 'f32' ? x : fromF16(toF16(x)));
  const ref = sequenceInputs({ ...c, capacity: cap }, qh, stored(kh), stored(vh));
  return { kv, q: uploadBuffer(gpu, qh, 'q'), ref };
}

/**
 * A decode test's selection setup: the budget's k for `n` keys, a slot whose kStride is k rounded up to
 * 64, and a reuse head map (KV head j reads row j + 1, cyclically, unless given).
 */
export function decodeSlotCase(
  gpu: KascadeGPU,
  shape: { batch: number; kvHeads: number; n: number },
  budget: BudgetOptions = { percent: 10, kMin: 16 },
  headMap?: number[],
): { budget: BudgetOptions; k: number; slot: DeviceDecodeSlot; headMap: number[] } {
  const { batch, kvHeads, n } = shape;
  const k = topkBudget(n, budget);
  const slot = createDecodeSlot(gpu, batch, kvHeads, Math.ceil(k / 64) * 64);
  return {
    budget,
    k,
    slot,
    headMap: headMap ?? Array.from({ length: kvHeads }, (_, j) => (j + 1) % kvHeads),
  };
}

/** The arguments of one decode op of a test on shared inputs (the team kernel unless `extra` says otherwise). */
export function decodeOp(
  on: Pick<DecodeArgs, 'heads' | 'q' | 'kv' | 'n' | 'out' | 'slot' | 'headMap' | 'budget'>,
  role: LayerRole,
  extra: Partial<DecodeArgs> = {},
): DecodeArgs {
  return { ...on, role, kernel: 'teams', ...extra };
}

/**
 * One decode role's output after it ran: finite; for an anchor role, the slot's selections read and
 * checked FlashInfer-style (`readCheckedSelections`, k = `slot.k`); the output against the float64
 * reference (`expectDecodeOutputs`). Returns the selections the later roles are checked with.
 */
export async function checkDecodeRole(
  gpu: KascadeGPU,
  role: LayerRole,
  out: Float32Array,
  shape: { batch: number; heads: number; kvHeads: number; headDim: number; n: number },
  reference: (b: number) => DecodeInputs,
  slot: DeviceDecodeSlot,
  headMap: readonly number[],
  sels: DecodeSelection[],
): Promise<DecodeSelection[]> {
  expect(allFinite(out), role).toBe(true);
  const { batch, kvHeads, n } = shape;
  const picked =
    role === 'anchor' || role === 'dense-anchor'
      ? await readCheckedSelections(
          gpu,
          slot.indices,
          { batch, kvHeads, k: slot.k, stride: slot.kStride, n },
          reference,
        )
      : sels;
  expectDecodeOutputs(role, out, shape, reference, picked, headMap);
  return picked;
}

/**
 * Runs `roles` in order on shared inputs (the output NaN-poisoned before each) and checks each with
 * `checkDecodeRole` (the anchors' selections carried to the reuse role).
 */
export async function runDecodeRoles(
  gpu: KascadeGPU,
  roles: readonly LayerRole[],
  on: Pick<DecodeArgs, 'heads' | 'q' | 'kv' | 'n' | 'headMap' | 'budget'> & {
    out: GPUBuffer;
    slot: DeviceDecodeSlot;
    headMap: readonly number[];
  },
  extra: Partial<DecodeArgs>,
  shape: { batch: number; heads: number; kvHeads: number; headDim: number; n: number },
  reference: (b: number) => DecodeInputs,
): Promise<void> {
  const size = shape.batch * shape.heads * shape.headDim;
  let sels: DecodeSelection[] = [];
  for (const role of roles) {
    gpu.device.queue.writeBuffer(on.out, 0, new Float32Array(size).fill(Number.NaN));
    await runComputePass(gpu, `decode ${role}`, (pass) => encodeDecode(gpu, pass, decodeOp(on, role, extra)));
    const o = new Float32Array(await readBuffer(gpu, on.out, size * 4));
    sels = await checkDecodeRole(gpu, role, o, shape, reference, on.slot, on.headMap, sels);
  }
}
