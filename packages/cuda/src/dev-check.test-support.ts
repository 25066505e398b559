import { spawnSync } from 'node:child_process';
import { existsSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';

/** The repository root (the host check programs live in kernels/cuda/dev). */
export const repoRoot = join(dirname(fileURLToPath(import.meta.url)), '..', '..', '..');

/** nvcc, where the machine has one (the host checks are skipped without it). */
export const nvccPath = [
  '/usr/local/cuda/bin/nvcc',
  process.env.CUDA_HOME && join(process.env.CUDA_HOME, 'bin', 'nvcc'),
].find((p): p is string => !!p && existsSync(p));

/**
 * Builds the host check program kernels/cuda/dev/<name>.cu (host code only) into `dir`; returns the executable's
 * path, or the compiler's output as the error.
 */
export function buildDevCheck(name: string, dir: string): { exe: string; error?: string } {
  const exe = join(dir, name);
  const build = spawnSync(
    nvccPath as string,
    [
      '-std=c++17',
      '-O1',
      '-I',
      join(repoRoot, 'kernels', 'cuda'),
      join(repoRoot, `kernels/cuda/dev/${name}.cu`),
      '-o',
      exe,
    ],
    { encoding: 'utf8' },
  );
  return build.status === 0 ? { exe } : { exe, error: `${build.stdout}\n${build.stderr}` };
}
