#!/usr/bin/env node
// Bundles the bench CLI with the @kascade packages it imports into apps/bench/dist/device/,
// so it runs on a machine without node_modules (the GPU machine: carry that folder and
// `.device`, then `node apps/bench/dist/device/cli.js <bench> --out $OUT/<bench>.json`).
// Third-party packages stay external (a bench that needs one cannot run from the bundle)
// unless `--all` is given: then every JavaScript dependency is bundled too (the accuracy bench
// needs the tokenizer and zod there); optional native/GPU packages always stay external.
// Build first (`pnpm run build`): @kascade packages are taken from their dist.
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { build } from 'tsup';

const root = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..');
await build({
  entry: { cli: path.join(root, 'apps/bench/src/cli.ts') },
  outDir: path.join(root, 'apps/bench/dist/device'),
  format: ['esm'],
  target: 'node20',
  platform: 'node',
  noExternal: process.argv.includes('--all') ? [/^(?!webgpu$)/] : [/^@kascade\//],
  external: ['webgpu'],
  splitting: true,
  dts: false,
  clean: true,
  config: false,
  silent: true,
});
process.stdout.write('bundled apps/bench/dist/device/cli.js\n');
