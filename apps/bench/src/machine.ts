import { execFileSync } from 'node:child_process';
import os from 'node:os';
import type { MachineInfo } from './results.js';

/**
 * CPU model, logical cores, Node version and the 1-minute load average when the run began (a
 * shared machine's other work shows there); GPU fields come from GPU benches.
 */
export function machineInfo(): MachineInfo {
  const cpus = os.cpus();
  return {
    cpu: cpus[0]?.model.trim() || 'unknown',
    cores: Math.max(1, os.availableParallelism?.() ?? cpus.length),
    node: process.version,
    loadAvg1m: Math.round(os.loadavg()[0] * 100) / 100,
  };
}

/**
 * The short commit of HEAD, with `-dirty` when tracked files differ from it; `KASCADE_GIT_COMMIT`
 * when set (for machines that get a copy of the tree without `.git`); `unknown` otherwise.
 */
export function gitCommit(cwd: string = process.cwd()): string {
  const given = process.env.KASCADE_GIT_COMMIT;
  if (given) return given;
  try {
    const commit = execFileSync('git', ['rev-parse', '--short', 'HEAD'], { cwd, encoding: 'utf8' }).trim();
    const dirty = execFileSync('git', ['status', '--porcelain', '--untracked-files=no'], {
      cwd,
      encoding: 'utf8',
    }).trim();
    return dirty.length > 0 ? `${commit}-dirty` : commit;
  } catch {
    return 'unknown';
  }
}
