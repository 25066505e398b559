// Test support, not part of the package's entry: the CPU tests of the kernels' host-side plans
// (kernels/cuda/select_plan.h and friends) compile a small C++ driver around the real header with
// the machine's C++ compiler (no CUDA needed) and parse what it prints.
import { spawnSync } from 'node:child_process';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

/** The first C++ compiler found on PATH, or undefined (the tests that need one then skip, saying so). */
export const hostCompiler: string | undefined = ['c++', 'g++', 'clang++'].find(
  (c) => spawnSync(c, ['--version']).status === 0,
);

/**
 * Compiles `source` (C++17) and runs it; returns its standard output. Throws an error that names
 * `what` and carries the compiler's or the program's standard error when either fails.
 */
export function runHostDriver(what: string, source: string): string {
  if (!hostCompiler) throw new Error(`no C++ compiler (c++, g++ or clang++) on PATH to build ${what}`);
  const dir = mkdtempSync(join(tmpdir(), 'kascade-host-'));
  try {
    writeFileSync(join(dir, 'main.cpp'), source);
    const exe = join(dir, 'driver');
    const cc = spawnSync(hostCompiler, ['-std=c++17', '-O1', '-o', exe, join(dir, 'main.cpp')], {
      encoding: 'utf8',
    });
    if (cc.status !== 0) throw new Error(`compiling ${what} failed:\n${cc.stderr}`);
    const run = spawnSync(exe, [], { encoding: 'utf8' });
    if (run.status !== 0) throw new Error(`the driver of ${what} failed:\n${run.stderr}`);
    return run.stdout;
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
}
