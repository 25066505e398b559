import { readdirSync, readFileSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { describe, expect, it } from 'vitest';
import { WGSL_SOURCES } from './kernels.generated.js';
import { buildShader, cacheKey, expandSnippets, WGSLSnippetError } from './program.js';

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

  it('pastes snippets inline with their arguments, nested, and names a missing one', () => {
    const shared = '//#snippet outer\nlet a$1 = $2;\n//#include inner $1\n//#end\n';
    const src = '//#snippet inner\nlet b$1 = a$1 * 2u;\n//#end\nfn f() {\n//#include outer 7 3u\n}';
    expect(expandSnippets(src, shared)).toBe('fn f() {\nlet a7 = 3u;\nlet b7 = a7 * 2u;\n}');
    expect(() => expandSnippets('//#include nowhere', shared)).toThrow(WGSLSnippetError);
    expect(() => expandSnippets('//#include outer 1', shared)).toThrow(/needs argument \$2/);
    expect(() => expandSnippets('//#snippet open\nx', '')).toThrow(/no \/\/#end/);
    // Every family expands (no unknown snippet), and no directive is left over.
    for (const family of Object.keys(WGSL_SOURCES) as (keyof typeof WGSL_SOURCES)[]) {
      const text = buildShader(family, { KV: 'f16', KP: 'f16', SUBGROUPS: true });
      expect(text).not.toMatch(/^\s*\/\/#(include|snippet|end)\b/m);
    }
    expect(buildShader('decode_teams', { KP: 'f16' })).toContain('subgroupShuffleXor(send, 16u)');
  });
});
