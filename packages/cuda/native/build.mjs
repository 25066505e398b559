#!/usr/bin/env node
// Builds the addon build/kascade_cuda.node with nvcc (sm_90a, cudart static).
// Without a CUDA toolkit it writes build/status.json saying why and exits 0 (install succeeds,
// isAvailable() reports the reason). With `--strict` a missing toolkit or a compile error exits 1.
// Skips the compile when the addon is newer than every source (pass --force to rebuild).
import { execFileSync, spawnSync } from 'node:child_process';
import { existsSync, mkdirSync, readdirSync, statSync, writeFileSync } from 'node:fs';
import { createRequire } from 'node:module';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';

const here = dirname(fileURLToPath(import.meta.url));
const pkg = resolve(here, '..');
// Kernel sources: the monorepo's kernels/cuda, or a copy shipped inside the package.
const kernels = [resolve(pkg, '../../kernels/cuda'), join(pkg, 'kernels')].find((d) =>
  existsSync(join(d, 'kascade_cuda.h')),
);
const buildDir = join(pkg, 'build');
const out = join(buildDir, 'kascade_cuda.node');
const strict = process.argv.includes('--strict');
const force = process.argv.includes('--force');

function status(built, reason, extra = {}) {
  mkdirSync(buildDir, { recursive: true });
  writeFileSync(join(buildDir, 'status.json'), `${JSON.stringify({ built, reason, ...extra }, null, 2)}\n`);
}

function findNvcc() {
  const candidates = [];
  for (const v of ['CUDA_HOME', 'CUDA_PATH'])
    if (process.env[v]) candidates.push(join(process.env[v], 'bin', 'nvcc'));
  candidates.push('/usr/local/cuda/bin/nvcc');
  for (const c of candidates) if (existsSync(c)) return c;
  const which = spawnSync('which', ['nvcc'], { encoding: 'utf8' });
  return which.status === 0 ? which.stdout.trim() : null;
}

function nodeIncludeDir() {
  const dirs = [
    process.env.NODE_INCLUDE_DIR,
    join(dirname(process.execPath), '..', 'include', 'node'),
    '/usr/include/node',
  ];
  return dirs.find((d) => d && existsSync(join(d, 'node_api.h'))) ?? null;
}

if (!kernels) {
  const reason = 'kernel sources (kernels/cuda) not found beside the package: the CUDA addon was not built';
  status(false, reason);
  console.warn(`[@kascade/cuda] ${reason}`);
  process.exit(strict ? 1 : 0);
}
const sources = [
  join(here, 'binding.cc'),
  ...readdirSync(kernels)
    .filter((f) => f.endsWith('.cu'))
    .map((f) => join(kernels, f)),
];
const headers = readdirSync(kernels)
  .filter((f) => /\.(cuh|h)$/.test(f))
  .map((f) => join(kernels, f));

const nvcc = findNvcc();
if (!nvcc) {
  const reason =
    'nvcc not found (looked at $CUDA_HOME, $CUDA_PATH, /usr/local/cuda, PATH): the CUDA addon was not built';
  status(false, reason);
  console.warn(`[@kascade/cuda] ${reason}`);
  process.exit(strict ? 1 : 0);
}
const nodeInc = nodeIncludeDir();
let addonInc = null;
try {
  addonInc = dirname(createRequire(join(pkg, 'package.json')).resolve('node-addon-api/package.json'));
} catch {
  const reason = 'node-addon-api is not installed (run pnpm install): the CUDA addon was not built';
  status(false, reason);
  console.warn(`[@kascade/cuda] ${reason}`);
  process.exit(strict ? 1 : 0);
}
if (!nodeInc) {
  const reason = 'Node.js headers (node_api.h) not found; set NODE_INCLUDE_DIR';
  status(false, reason);
  console.warn(`[@kascade/cuda] ${reason}`);
  process.exit(strict ? 1 : 0);
}

if (!force && existsSync(out)) {
  const built = statSync(out).mtimeMs;
  if ([...sources, ...headers, fileURLToPath(import.meta.url)].every((f) => statSync(f).mtimeMs < built)) {
    console.log(`[@kascade/cuda] ${out} is up to date`);
    process.exit(0);
  }
}

mkdirSync(buildDir, { recursive: true });
const args = [
  '-std=c++17',
  '-O3',
  '-shared',
  '-Xcompiler',
  '-fPIC',
  '-Xcompiler',
  '-fvisibility=hidden',
  '-gencode=arch=compute_90a,code=sm_90a',
  '-cudart=static',
  '-DNAPI_VERSION=8',
  '-DNODE_ADDON_API_DISABLE_DEPRECATED',
  '-DNAPI_CPP_EXCEPTIONS',
  `-I${nodeInc}`,
  `-I${addonInc}`,
  `-I${kernels}`,
  ...(process.env.KASCADE_NVCC_FLAGS ? process.env.KASCADE_NVCC_FLAGS.split(' ') : []),
  '-o',
  out,
  ...sources,
];
console.log(`[@kascade/cuda] ${nvcc} ${args.join(' ')}`);
const t0 = Date.now();
const r = spawnSync(nvcc, args, { stdio: 'inherit' });
if (r.status !== 0) {
  const reason = `nvcc failed (exit ${r.status}); see the compiler output above`;
  status(false, reason, { nvcc });
  console.error(`[@kascade/cuda] ${reason}`);
  process.exit(strict ? 1 : 0);
}
let version = '';
try {
  version = execFileSync(nvcc, ['--version'], { encoding: 'utf8' }).trim().split('\n').pop() ?? '';
} catch {}
status(true, 'built', { nvcc, nvccVersion: version, seconds: (Date.now() - t0) / 1000, arch: 'sm_90a' });
console.log(`[@kascade/cuda] built ${out} in ${((Date.now() - t0) / 1000).toFixed(1)} s`);
