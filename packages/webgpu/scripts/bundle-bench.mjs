// Bundles the WebGPU benches into one file that runs without node_modules (for the GPU machine):
// node scripts/bundle-bench.mjs  ->  .bench/webgpu-device.mjs
import { realpathSync } from 'node:fs';
import { createRequire } from 'node:module';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';

const here = dirname(fileURLToPath(import.meta.url));
// esbuild comes with tsup (a root devDependency).
const require = createRequire(realpathSync(join(here, '../../../node_modules/tsup/package.json')));
const esbuild = require('esbuild');
await esbuild.build({
  entryPoints: [join(here, '../../../apps/bench/src/benches/webgpu-device.ts')],
  outfile: join(here, '../.bench/webgpu-device.mjs'),
  bundle: true,
  platform: 'node',
  format: 'esm',
  target: 'node20',
  conditions: ['@kascade/source'],
  external: ['webgpu'],
  banner: {
    js: "import { createRequire as __cr } from 'node:module'; const require = __cr(import.meta.url);",
  },
  logLevel: 'warning',
});
console.log('wrote .bench/webgpu-device.mjs');
