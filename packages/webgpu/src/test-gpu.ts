/**
 * Test support (not exported from the package): opens a WebGPU backend the way CI and this
 * machine can, or says why not. Outside CI a missing driver skips the GPU tests; under CI=true it
 * fails them.
 */
import { existsSync } from 'node:fs';
import { WebGPUBackend } from './backend.js';
import type { KVDType } from './program.js';

export const SWIFTSHADER_ICD = '/usr/lib/chromium/vk_swiftshader_icd.json';

export interface GPUProbe {
  readonly backends: Partial<Record<KVDType, WebGPUBackend>>;
  readonly reason: string;
}

export async function openTestBackends(dtypes: readonly KVDType[] = ['f32', 'f16']): Promise<GPUProbe> {
  if (!process.env.VK_ICD_FILENAMES && !process.env.VK_DRIVER_FILES && existsSync(SWIFTSHADER_ICD)) {
    process.env.VK_ICD_FILENAMES = SWIFTSHADER_ICD;
  }
  const backends: Partial<Record<KVDType, WebGPUBackend>> = {};
  try {
    for (const d of dtypes) backends[d] = await WebGPUBackend.create({ kvDType: d });
    return { backends, reason: '' };
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
export function randomFloats(n: number, seed: number, amplitude = 1): Float32Array {
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
