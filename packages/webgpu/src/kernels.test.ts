import { readdirSync, readFileSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { describe, expect, it } from 'vitest';
import { WGSL_SOURCES } from './kernels.generated.js';
import { buildShader, cacheKey } from './program.js';

const dir = join(dirname(fileURLToPath(import.meta.url)), '../../../kernels/wgsl');

describe('embedded WGSL', () => {
  it('matches kernels/wgsl/*.wgsl (run node scripts/gen-kernels.mjs after editing a kernel)', () => {
    const files = readdirSync(dir).filter((f) => f.endsWith('.wgsl'));
    expect(Object.keys(WGSL_SOURCES).sort()).toEqual(files.map((f) => f.replace(/\.wgsl$/, '')).sort());
    for (const f of files) {
      expect(WGSL_SOURCES[f.replace(/\.wgsl$/, '') as keyof typeof WGSL_SOURCES]).toBe(
        readFileSync(join(dir, f), 'utf8'),
      );
    }
  });

  it('prepends constants and the K/V element type, and keys pipelines by them', () => {
    const f16 = buildShader('decode_attend', { HEAD_DIM: 128, GROUP: 4, GATHER: true, KV: 'f16' });
    expect(f16).toContain('const HEAD_DIM: u32 = 128u;');
    expect(f16).toContain('const GATHER: bool = true;');
    expect(f16).toContain('unpack2x16float');
    expect(buildShader('decode_attend', { KV: 'f32' })).toContain('alias KV4 = vec4<f32>;');
    expect(cacheKey('pool', 'pool_decode', { B: 1, A: 2 })).toBe(
      cacheKey('pool', 'pool_decode', { A: 2, B: 1 }),
    );
    expect(cacheKey('pool', 'pool_decode', { A: 1 })).not.toBe(cacheKey('pool', 'pool_decode', { A: 2 }));
  });
});
