import { readdirSync, readFileSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { describe, expect, it } from 'vitest';
import { WGSL_SOURCES } from './kernels.generated.js';
import { buildShader, cacheKey, unrollLoops } from './program.js';

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

  it('unrolls loops over numeric defines (nested), leaves the others, refuses a loop it cannot bound', () => {
    const src = [
      'for (var u = 0u; u < U; u++) {',
      '  for (var h = 0u; h < G; h++) {',
      '    x += a[u * G + h]; // {',
      '  }',
      '}',
      'for (var s = 0u; s < n; s++) {',
      '  y += 1.0;',
      '}',
    ].join('\n');
    const out = unrollLoops(src, { U: 2, G: 3 });
    expect(out.match(/x \+= a\[u \* G \+ h\]/g)?.length).toBe(6);
    expect(out).toContain('{ const u: u32 = 1u;');
    expect(out).toContain('  { const h: u32 = 2u;');
    expect(out).not.toContain('for (var u');
    expect(out).toContain('for (var s = 0u; s < n; s++) {');
    expect(() => unrollLoops('for (var u = 0u; u < U; u++) {\n  x += 1.0; }', { U: 2 })).toThrow(
      /does not close on a line of its own/,
    );
    const teams = buildShader('decode_teams', {
      HEAD_DIM: 128,
      GROUP: 4,
      WG: 128,
      TW: 32,
      PPL: 1,
      PV: 1,
      U: 4,
      SB: 4,
      GATHER: true,
      ACCUM_V: true,
      WRITE_SCORES: false,
      PREFETCH: true,
      FUSED: true,
      PIPE: false,
      KEYWISE: true,
      UNROLL: true,
      KP: 'f16x4',
    });
    expect(teams).toContain('const u: u32 = 3u;');
    expect(teams).not.toMatch(/for \(var (u|h|pp|i) = 0u; \1 < (U|GROUP|PPL|PV);/);
  });
});
