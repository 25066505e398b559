import { existsSync, readFileSync } from 'node:fs';
import { createRequire } from 'node:module';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import type { NativeBinding } from './binding.types.js';

/** Where the addon was looked for, and why CUDA is (not) usable. */
export interface LoadReport {
  readonly binding: NativeBinding | null;
  /** Why CUDA is off; absent when a device is usable. */
  readonly reason?: string;
  /** Each path tried, with what happened. */
  readonly tried: readonly string[];
}

let cached: LoadReport | undefined;

function candidates(): string[] {
  const here = dirname(fileURLToPath(import.meta.url));
  const list: string[] = [];
  if (process.env.KASCADE_CUDA_ADDON) list.push(process.env.KASCADE_CUDA_ADDON);
  // src/ or dist/ sit beside build/ in the package.
  list.push(join(here, '..', 'build', 'kascade_cuda.node'));
  list.push(join(here, 'build', 'kascade_cuda.node'));
  return list;
}

function buildStatus(here: string): string | undefined {
  const file = join(here, '..', 'build', 'status.json');
  if (!existsSync(file)) return undefined;
  try {
    const s = JSON.parse(readFileSync(file, 'utf8')) as { built?: boolean; reason?: string };
    return s.built ? undefined : s.reason;
  } catch {
    return undefined;
  }
}

/**
 * Loads the addon once. Never throws: a missing build, a binary that fails to load, a
 * missing driver or no device all come back as `reason`, with every path tried.
 */
export function loadNative(): LoadReport {
  if (cached) return cached;
  const here = dirname(fileURLToPath(import.meta.url));
  const require = createRequire(import.meta.url);
  const tried: string[] = [];
  for (const path of candidates()) {
    if (!existsSync(path)) {
      tried.push(`${path}: not found`);
      continue;
    }
    try {
      const binding = require(path) as NativeBinding;
      const probe = binding.probe();
      tried.push(`${path}: loaded`);
      cached = probe.available
        ? { binding, tried }
        : {
            binding,
            tried,
            reason: `the CUDA addon loaded but no device is usable: ${probe.reason ?? 'unknown'}`,
          };
      return cached;
    } catch (e) {
      tried.push(`${path}: ${(e as Error).message}`);
    }
  }
  const why = buildStatus(here);
  cached = {
    binding: null,
    tried,
    reason:
      `the CUDA addon is not built${why ? ` (${why})` : ''}; build it with ` +
      '`node packages/cuda/native/build.mjs` (needs nvcc, e.g. /usr/local/cuda). Tried: ' +
      tried.join('; '),
  };
  return cached;
}
