// Runs the code examples in every package README, so they stay real.
// A fenced block marked ```ts, ```typescript, ```js or ```javascript runs; add a word after
// the language to opt out with a reason (```ts skip, ```ts no-run, ```ts gpu). Blocks run as
// ES modules that import `@kascade/*`: under `vitest.config.ts` from package source, under
// `vitest.dist.config.ts` from the built dist. A block importing anything else than
// `@kascade/*` and `node:*` (a client library, say) is reported as skipped, naming the import.
// An example that throws a package's "no such device here" error (no WebGPU adapter, no CUDA
// device) skips with that message, except under CI=true, where .ci/run provides SwiftShader.
import {
  existsSync,
  mkdirSync,
  mkdtempSync,
  readdirSync,
  readFileSync,
  rmSync,
  symlinkSync,
  writeFileSync,
} from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath, pathToFileURL } from 'node:url';
import { afterAll, describe, expect, it } from 'vitest';

const root = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..');

interface Example {
  readonly lang: 'ts' | 'js';
  readonly line: number;
  readonly code: string;
}

/** The runnable fenced blocks of a Markdown text (language ts/js with nothing after it). */
function runnableBlocks(markdown: string): Example[] {
  const out: Example[] = [];
  const lines = markdown.split('\n');
  for (let i = 0; i < lines.length; i++) {
    const open = /^(\s*)(`{3,}|~{3,})\s*([\w-]*)\s*(.*)$/.exec(lines[i]);
    if (!open) continue;
    const [, indent, fence, info, rest] = open;
    const body: string[] = [];
    let j = i + 1;
    while (j < lines.length && !lines[j].trimStart().startsWith(fence))
      body.push(lines[j++].slice(indent.length));
    const lang = { ts: 'ts', typescript: 'ts', js: 'js', javascript: 'js' }[info] as 'ts' | 'js' | undefined;
    if (lang && rest.trim() === '') out.push({ lang, line: i + 1, code: body.join('\n') });
    i = j;
  }
  return out;
}

/** Bare import specifiers of a block other than `@kascade/*` and `node:*`. */
function foreignImports(code: string): string[] {
  const specs = [
    ...code.matchAll(
      /(?:^|[\s;])(?:import|export)\s[^'"]*?from\s*['"]([^'"]+)['"]|import\s*\(\s*['"]([^'"]+)['"]\s*\)|^\s*import\s*['"]([^'"]+)['"]/gm,
    ),
  ].map((m) => m[1] ?? m[2] ?? m[3]);
  return [...new Set(specs.filter((x) => !x.startsWith('@kascade/') && !x.startsWith('node:')))];
}

/** The packages' typed errors for a device this machine lacks (WebGPU adapter, CUDA device). */
function missingHardware(err: unknown): boolean {
  return (
    err instanceof Error && /^(WebGPUNotAvailable|CudaUnavailable|BackendUnavailable)Error$/.test(err.name)
  );
}

function readmes(): { pkg: string; name: string; file: string }[] {
  const found = [];
  for (const group of ['packages', 'apps']) {
    for (const d of readdirSync(path.join(root, group))) {
      const file = path.join(root, group, d, 'README.md');
      const manifest = path.join(root, group, d, 'package.json');
      if (existsSync(file) && existsSync(manifest)) {
        found.push({
          pkg: `${group}/${d}`,
          name: JSON.parse(readFileSync(manifest, 'utf8')).name as string,
          file,
        });
      }
    }
  }
  return found;
}

// A scratch dir outside the repo whose node_modules/@kascade/* link to the workspace packages.
const scratch = mkdtempSync(path.join(os.tmpdir(), 'kascade-readme-'));
mkdirSync(path.join(scratch, 'node_modules', '@kascade'), { recursive: true });
for (const { pkg, name } of readmes()) {
  if (name.startsWith('@kascade/')) {
    symlinkSync(path.join(root, pkg), path.join(scratch, 'node_modules', name), 'dir');
  }
}
afterAll(() => rmSync(scratch, { recursive: true, force: true }));

describe('runnableBlocks', () => {
  it('keeps ts/js blocks without an opt-out word and gives their line', () => {
    const md = [
      '# x',
      '```ts',
      'a()',
      '```',
      '```ts skip',
      'b()',
      '```',
      '```bash',
      'c',
      '```',
      '```js',
      'd()',
      '```',
    ].join('\n');
    expect(runnableBlocks(md)).toEqual([
      { lang: 'ts', line: 2, code: 'a()' },
      { lang: 'js', line: 11, code: 'd()' },
    ]);
  });

  it('names the imports that keep a block from running', () => {
    const code =
      "import OpenAI from 'openai';\nimport { x } from '@kascade/core';\nimport fs from 'node:fs';\nconst m = await import('zod');";
    expect(foreignImports(code)).toEqual(['openai', 'zod']);
    expect(foreignImports("import { a,\n b } from '@kascade/anchors';")).toEqual([]);
  });
});

for (const { pkg, file } of readmes()) {
  const blocks = runnableBlocks(readFileSync(file, 'utf8'));
  if (blocks.length === 0) continue;
  describe(`${pkg}/README.md`, () => {
    blocks.forEach((block, n) => {
      const foreign = foreignImports(block.code);
      if (foreign.length > 0) {
        it.skip(`example at line ${block.line}: not run, imports ${foreign.join(', ')} (only @kascade/* and node:* run)`, () => {});
        return;
      }
      it(`example at line ${block.line} runs`, async (ctx) => {
        const f = path.join(scratch, `${pkg.replace('/', '-')}-${n}.${block.lang === 'ts' ? 'ts' : 'mjs'}`);
        writeFileSync(f, `${block.code}\nexport {};\n`);
        try {
          await import(/* @vite-ignore */ pathToFileURL(f).href);
        } catch (err) {
          // No GPU / WebGPU adapter here: the packages throw typed errors for that. Outside CI the
          // example skips saying so; under CI=true (.ci/run provides SwiftShader) it fails.
          if (missingHardware(err) && process.env.CI !== 'true') {
            const reason = `${pkg}/README.md:${block.line} skipped: ${(err as Error).name}: ${(err as Error).message}`;
            process.stderr.write(`${reason}\n`);
            ctx.skip(reason);
          }
          throw err;
        }
      }, 120_000);
    });
  });
}
