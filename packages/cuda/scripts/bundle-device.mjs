#!/usr/bin/env node
// Bundles the device scripts into single files under dist-device/ (no node_modules travel to
// the GPU machine). Workspace packages resolve to source through the @kascade/source condition.
import { createRequire } from 'node:module';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';

const pkg = resolve(dirname(fileURLToPath(import.meta.url)), '..');
const require = createRequire(require_base());
function require_base() {
  return createRequire(join(pkg, 'package.json')).resolve('tsup');
}
const esbuild = require('esbuild');
// --core-from-git: bundle @kascade/core as committed at HEAD (when a neighbour is mid-edit).
const alias = {};
if (process.argv.includes('--core-from-git')) {
  const { execSync } = await import('node:child_process');
  const { mkdtempSync } = await import('node:fs');
  const { tmpdir } = await import('node:os');
  const snap = mkdtempSync(join(tmpdir(), 'kascade-core-'));
  execSync(`git archive HEAD packages/core/src | tar -x -C ${snap}`, { cwd: resolve(pkg, '../..') });
  alias['@kascade/core'] = join(snap, 'packages/core/src/index.ts');
}
const entries = {
  'device-check': join(pkg, 'scripts', 'device-check.ts'),
  'profile-ops': join(pkg, 'scripts', 'profile-ops.ts'),
  'b1-probe': join(pkg, 'scripts', 'b1-probe.ts'),
  'bench-cli': resolve(pkg, '../../apps/bench/src/cli.ts'),
};
for (const [name, entry] of Object.entries(entries)) {
  await esbuild.build({
    entryPoints: [entry],
    bundle: true,
    platform: 'node',
    format: 'esm',
    target: 'node20',
    outfile: join(pkg, 'dist-device', `${name}.mjs`),
    conditions: ['@kascade/source'],
    alias,
    banner: {
      js: "import { createRequire as __cr } from 'node:module'; const require = __cr(import.meta.url);",
    },
    logLevel: 'warning',
  });
  console.log(`bundled dist-device/${name}.mjs`);
}
