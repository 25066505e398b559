import type { Bench } from './harness.js';

/**
 * Every benchmark the CLI knows, by name. Add yours with one line: a module in
 * `./benches/` whose default export is a {@link Bench}, loaded lazily so a bench's
 * dependencies (a GPU addon, a browser) load only when it runs.
 */
export const registry: Readonly<Record<string, () => Promise<Bench>>> = {
  'core-topk': () => import('./benches/core-topk.js').then((m) => m.default),
  'core-attention': () => import('./benches/core-attention.js').then((m) => m.default),
  'cpu-engine': () => import('./benches/cpu-engine.js').then((m) => m.default),
  'cuda-decode': () => import('./benches/cuda-decode.js').then((m) => m.default),
  'cuda-prefill': () => import('./benches/cuda-prefill.js').then((m) => m.default),
  'server-load': () => import('./benches/server-load.js').then((m) => m.default),
  'webgpu-decode': () => import('./benches/webgpu-decode.js').then((m) => m.default),
  'webgpu-prefill': () => import('./benches/webgpu-prefill.js').then((m) => m.default),
  accuracy: () => import('./benches/accuracy.js').then((m) => m.default),
};

export function benchNames(): string[] {
  return Object.keys(registry).sort();
}
