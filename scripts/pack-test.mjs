#!/usr/bin/env node
// Packaging gates for every publishable package in packages/*, run from `pnpm run check`
// after the build:
//   1. `pnpm pack` into a temp dir (workspace:^ ranges become real versions);
//   2. `publint run <tarball> --strict` and `attw <tarball> --profile esm-only`;
//   3. a scratch npm project in os.tmpdir(), OUTSIDE the workspace, that `npm install`s the
//      tarball with the tarballs of the @kascade packages it depends on (third-party deps
//      come from the registry, as for a user), then
//      - imports it with plain `node` and checks it exports exactly the names the built dist does;
//      - type-checks a consumer file (NodeNext, strict, skipLibCheck off) that touches every
//        runtime export, so the .d.ts and the JavaScript agree;
//   4. size: every tarball, packed and unpacked, stays within 20 MB (issue 7's limit for the
//      demo model, the only large package);
//   5. the engine's default model, as users get it: `createEngine()` with the engine installed
//      alone falls back to the random-weight model and warns once; installed beside
//      @kascade/demo-model (an optional peer) it loads that model and its shipped plan.
// Usage: node scripts/pack-test.mjs [package-dir-name ...]   (default: all of packages/*)
import { execFile } from 'node:child_process';
import {
  existsSync,
  mkdirSync,
  mkdtempSync,
  readdirSync,
  readFileSync,
  rmSync,
  statSync,
  writeFileSync,
} from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

const root = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..');
const bin = (name) => path.join(root, 'node_modules', '.bin', name);
const keep = process.env.KASCADE_PACK_KEEP === '1';

/** Runs a command; resolves with its output, rejects with an Error holding command and output. */
function run(cmd, args, opts = {}) {
  return new Promise((resolve, reject) => {
    execFile(cmd, args, { maxBuffer: 64 * 1024 * 1024, timeout: 600_000, ...opts }, (err, stdout, stderr) => {
      const output = `${stdout}${stderr}`.trim();
      if (err) {
        const e = new Error(
          `\`${cmd} ${args.join(' ')}\` failed (exit ${err.code ?? err.signal}) in ${opts.cwd ?? root}\n${output}`,
        );
        reject(e);
      } else resolve(output);
    });
  });
}

async function whichPnpm() {
  try {
    await run('pnpm', ['--version']);
    return { cmd: 'pnpm', pre: [] };
  } catch {
    return { cmd: 'npx', pre: ['-y', 'pnpm@12.4.2'] };
  }
}

/** Every publishable package of packages/*, and the ones this run checks (named on the command line, or all). */
function publishable() {
  const wanted = process.argv.slice(2);
  const dirs = readdirSync(path.join(root, 'packages')).filter((d) =>
    existsSync(path.join(root, 'packages', d, 'package.json')),
  );
  for (const w of wanted) if (!dirs.includes(w)) throw new Error(`no package directory packages/${w}`);
  const all = dirs
    .map((d) => {
      const dir = path.join(root, 'packages', d);
      return { dir, base: d, manifest: JSON.parse(readFileSync(path.join(dir, 'package.json'), 'utf8')) };
    })
    .filter((p) => !p.manifest.private);
  return { all, checked: all.filter((p) => wanted.length === 0 || wanted.includes(p.base)) };
}

/** The file a package's `.` export points to for `import` (relative to the package). */
function entryOf(manifest) {
  const dot = manifest.exports?.['.'];
  const target = typeof dot === 'string' ? dot : (dot?.import ?? dot?.default ?? manifest.main);
  if (typeof target !== 'string') throw new Error(`${manifest.name}: no "." import entry in exports`);
  return target;
}

/** Packed and unpacked limit of every tarball, bytes (issue 7: the demo model is at most 20 MB). */
const SIZE_LIMIT = 20_000_000;

const tarballName = (name, version) => `${name.replace(/^@/, '').replace('/', '-')}-${version}.tgz`;

/** The @kascade packages `name` needs at run time, itself included (dependencies + peers, transitively). */
function closure(name, byName) {
  const out = new Set();
  const visit = (n) => {
    if (out.has(n)) return;
    const p = byName.get(n);
    if (!p) throw new Error(`${name} depends on ${n}, which is not a publishable workspace package`);
    out.add(n);
    const m = p.manifest;
    // Optional peers (the engine's @kascade/demo-model) are the user's choice, not needed.
    const optional = (dep) => m.peerDependenciesMeta?.[dep]?.optional === true;
    for (const dep of Object.keys({ ...m.dependencies, ...m.peerDependencies })) {
      if (dep.startsWith('@kascade/') && !optional(dep)) visit(dep);
    }
  };
  visit(name);
  return [...out];
}

/** Sum of the file sizes in a .tgz (what it takes on disk once installed, before block rounding). */
async function unpackedSize(tgz) {
  const verbose = await run('tar', ['tzvf', tgz]);
  let total = 0;
  for (const line of verbose.split('\n')) {
    const size = Number(line.trim().split(/\s+/)[2]);
    if (Number.isFinite(size)) total += size;
  }
  return total;
}

async function exportNames(cwd, specifier) {
  const script = `const m = await import(${JSON.stringify(specifier)}); console.log(JSON.stringify(Object.keys(m).sort()));`;
  const out = await run(process.execPath, ['--input-type=module', '-e', script], { cwd });
  return JSON.parse(out.split('\n').at(-1));
}

const identifier = /^[A-Za-z_$][A-Za-z0-9_$]*$/;

/** Packages a consumer of the key also installs, for the default-model check (step 5). */
const INSTALLED_BESIDE = { '@kascade/demo-model': ['@kascade/engine'] };

/**
 * Step 5: what `createEngine()` picks with no model, run by plain node in the scratch project.
 * `demo: true`: @kascade/demo-model is installed beside the engine and must be the model, with its
 * shipped plan and no warning; `demo: false`: the random-weight model, with exactly one warning.
 */
async function defaultModelCheck(cwd, demo) {
  const script = `
    import { readFileSync } from 'node:fs';
    const warnings = [];
    process.on('warning', (w) => warnings.push(w));
    const { createEngine, DEFAULT_MODEL_WARNING_CODE } = await import('@kascade/engine');
    const a = await createEngine({ backend: 'cpu' });
    const b = await createEngine({ backend: 'cpu' });
    let tokens = 0;
    for await (const _ of a.generate('The special magic number is', { maxTokens: 2 })) tokens++;
    await new Promise((resolve) => setTimeout(resolve, 10));
    const out = { id: a.model.id, randomWeights: a.model.randomWeights, anchors: a.defaultPlan?.anchors ?? null,
      source: a.modelSource, warnings: warnings.filter((w) => w.code === DEFAULT_MODEL_WARNING_CODE).length, tokens };
    if (${demo}) {
      const dm = await import('@kascade/demo-model');
      out.expectedId = dm.demoModelId;
      out.shippedAnchors = JSON.parse(readFileSync(dm.demoPlanPath, 'utf8')).anchors;
    }
    await a.dispose();
    await b.dispose();
    console.log(JSON.stringify(out));`;
  const output = await run(process.execPath, ['--input-type=module', '-e', script], { cwd });
  // `run` gives stdout then stderr (where the warning goes): the result is the last JSON line.
  const got = JSON.parse(output.split('\n').findLast((l) => l.startsWith('{')) ?? 'null');
  if (got === null) throw new Error(`createEngine() default-model check printed no result\n${output}`);
  const problems = [];
  if (got.tokens < 1) problems.push('generated no token');
  if (demo) {
    if (got.id !== got.expectedId || got.randomWeights)
      problems.push(`model is ${got.id}, not ${got.expectedId}`);
    if (JSON.stringify(got.anchors) !== JSON.stringify(got.shippedAnchors))
      problems.push(
        `plan anchors ${JSON.stringify(got.anchors)}, shipped ${JSON.stringify(got.shippedAnchors)}`,
      );
    if (got.warnings !== 0) problems.push(`${got.warnings} default-model warnings`);
  } else {
    if (!got.randomWeights) problems.push(`model is ${got.id}, not the random-weight model`);
    if (got.warnings !== 1) problems.push(`${got.warnings} default-model warnings, not 1`);
    if (!/not installed/.test(got.source)) problems.push(`modelSource does not say why: ${got.source}`);
  }
  if (problems.length > 0) throw new Error(`createEngine() default model: ${problems.join('; ')}\n${output}`);
  return demo
    ? `createEngine() loads ${got.id} with its shipped plan (anchors ${got.anchors.join(' ')})`
    : 'createEngine() without @kascade/demo-model: the random-weight model and one warning';
}

async function consumerCheck(pkg, byName, tarDir, scratchRoot) {
  const { name } = pkg.manifest;
  const scratch = path.join(scratchRoot, name.replace('/', '__'));
  mkdirSync(scratch, { recursive: true });
  writeFileSync(
    path.join(scratch, 'package.json'),
    `${JSON.stringify({ name: 'kascade-pack-consumer', version: '0.0.0', private: true, type: 'module' }, null, 2)}\n`,
  );
  const beside = (INSTALLED_BESIDE[name] ?? []).filter((n) => byName.has(n));
  const names = [...new Set([...closure(name, byName), ...beside.flatMap((n) => closure(n, byName))])];
  const tarballs = names.map((n) => path.join(tarDir, tarballName(n, byName.get(n).manifest.version)));
  await run(
    'npm',
    [
      'install',
      '--no-audit',
      '--no-fund',
      '--loglevel=error',
      '--prefer-offline',
      ...tarballs,
      '@types/node@20',
    ],
    { cwd: scratch },
  );

  // 1. Plain node imports the installed package; same runtime exports as the workspace entry.
  const installed = await exportNames(scratch, name);
  const built = await exportNames(pkg.dir, path.join(pkg.dir, entryOf(pkg.manifest)));
  if (JSON.stringify(installed) !== JSON.stringify(built)) {
    throw new Error(
      `${name}: installed exports ${installed.join(', ')} differ from dist's ${built.join(', ')}`,
    );
  }

  // 2. tsc on a consumer that touches every runtime export through the published types.
  const m = pkg.manifest;
  const webgpuTypes = '@webgpu/types' in { ...m.dependencies, ...m.peerDependencies };
  const exported = installed.filter((n) => identifier.test(n) && n !== 'default');
  writeFileSync(
    path.join(scratch, 'consumer.ts'),
    [
      `import * as pkg from '${name}';`,
      `export const used = [${exported.map((n) => `pkg.${n}`).join(', ')}] as const;`,
      `export type Module = typeof pkg;`,
      '',
    ].join('\n'),
  );
  writeFileSync(
    path.join(scratch, 'tsconfig.json'),
    `${JSON.stringify(
      {
        compilerOptions: {
          target: 'ES2022',
          module: 'NodeNext',
          moduleResolution: 'NodeNext',
          // A package whose types build on @webgpu/types gets the DOM lib those need (as its users have).
          lib: webgpuTypes ? ['ES2023', 'DOM'] : ['ES2023'],
          types: ['node'],
          strict: true,
          noEmit: true,
          skipLibCheck: false,
        },
        files: ['consumer.ts'],
      },
      null,
      2,
    )}\n`,
  );
  await run(
    process.execPath,
    [path.join(root, 'node_modules', 'typescript', 'bin', 'tsc'), '-p', 'tsconfig.json'],
    {
      cwd: scratch,
    },
  );
  // 3. The engine's default model (step 5 above).
  const defaults =
    name === '@kascade/engine'
      ? `; ${await defaultModelCheck(scratch, false)}`
      : name === '@kascade/demo-model' && beside.length > 0
        ? `; ${await defaultModelCheck(scratch, true)}`
        : '';
  // A package still being written may export only types; that is reported, not failed.
  return installed.length === 0
    ? `imports and type-checks, but has no runtime exports yet${defaults}`
    : `${installed.length} exports import and type-check${defaults}`;
}

async function main() {
  const started = performance.now();
  const { all, checked } = publishable();
  const byName = new Map(all.map((p) => [p.manifest.name, p]));
  // Pack what is checked and the @kascade packages those depend on; gate only the checked ones.
  const needed = new Set(
    checked.flatMap((p) =>
      [p.manifest.name, ...(INSTALLED_BESIDE[p.manifest.name] ?? []).filter((n) => byName.has(n))].flatMap(
        (n) => closure(n, byName),
      ),
    ),
  );
  const pkgs = all.filter((p) => needed.has(p.manifest.name));
  const isChecked = new Set(checked.map((p) => p.manifest.name));
  const pnpm = await whichPnpm();
  const tmp = mkdtempSync(path.join(os.tmpdir(), 'kascade-pack-'));
  const tarDir = path.join(tmp, 'tarballs');
  const failures = [];
  const report = (name, step, ok, detail) => {
    process.stdout.write(
      `${ok ? 'PASS' : 'FAIL'}  ${name.padEnd(18)} ${step.padEnd(8)} ${detail.split('\n')[0]}\n`,
    );
    if (!ok) failures.push(`${name} ${step}: ${detail}`);
  };

  try {
    for (const p of pkgs) {
      const { name, version } = p.manifest;
      const entry = path.join(p.dir, entryOf(p.manifest));
      if (!existsSync(entry)) {
        report(name, 'pack', false, `${path.relative(root, entry)} is missing: build first (pnpm run build)`);
        continue;
      }
      try {
        await run(pnpm.cmd, [...pnpm.pre, 'pack', '--pack-destination', tarDir], { cwd: p.dir });
        const tgz = path.join(tarDir, tarballName(name, version));
        if (!existsSync(tgz)) throw new Error(`pnpm pack did not write ${tgz}`);
        const listing = await run('tar', ['tzf', tgz]);
        const leaked = listing.split('\n').filter((f) => /\.test\.|\/src\//.test(f));
        if (leaked.length > 0) throw new Error(`tarball ships test or source files: ${leaked.join(', ')}`);
        const packedBytes = statSync(tgz).size;
        const unpackedBytes = await unpackedSize(tgz);
        const mb = (b) => `${(b / 1e6).toFixed(2)} MB`;
        if (packedBytes > SIZE_LIMIT || unpackedBytes > SIZE_LIMIT) {
          throw new Error(
            `tarball is ${mb(packedBytes)} packed, ${mb(unpackedBytes)} unpacked: over the ${mb(SIZE_LIMIT)} limit`,
          );
        }
        report(
          name,
          'pack',
          true,
          `${listing.split('\n').length} files, ${mb(packedBytes)} packed, ${mb(unpackedBytes)} unpacked`,
        );
      } catch (e) {
        report(name, 'pack', false, e.message);
      }
    }
    const packed = pkgs.filter(
      (p) =>
        isChecked.has(p.manifest.name) &&
        existsSync(path.join(tarDir, tarballName(p.manifest.name, p.manifest.version))),
    );

    await Promise.all(
      packed.map(async (p) => {
        const tgz = path.join(tarDir, tarballName(p.manifest.name, p.manifest.version));
        try {
          await run(bin('publint'), ['run', tgz, '--strict']);
          report(p.manifest.name, 'publint', true, '--strict clean');
        } catch (e) {
          report(p.manifest.name, 'publint', false, e.message);
        }
        try {
          await run(bin('attw'), [
            tgz,
            '--profile',
            'esm-only',
            '--no-definitely-typed',
            '--format',
            'ascii',
            '--no-color',
          ]);
          report(p.manifest.name, 'attw', true, '--profile esm-only clean');
        } catch (e) {
          report(p.manifest.name, 'attw', false, e.message);
        }
      }),
    );

    const scratchRoot = path.join(tmp, 'consumers');
    await Promise.all(
      packed.map(async (p) => {
        try {
          report(p.manifest.name, 'consume', true, await consumerCheck(p, byName, tarDir, scratchRoot));
        } catch (e) {
          report(p.manifest.name, 'consume', false, e.message);
        }
      }),
    );
  } finally {
    if (keep) process.stdout.write(`kept ${tmp}\n`);
    else rmSync(tmp, { recursive: true, force: true });
  }

  const secs = ((performance.now() - started) / 1000).toFixed(1);
  if (failures.length > 0) {
    process.stderr.write(
      `\npack test: ${failures.length} failure(s) in ${secs} s\n\n${failures.join('\n\n')}\n`,
    );
    process.exit(1);
  }
  process.stdout.write(
    `pack test: ${checked.length} packages packed, linted, installed and imported in ${secs} s\n`,
  );
}

main().catch((e) => {
  process.stderr.write(`pack test: ${e.stack ?? e}\n`);
  process.exit(1);
});
