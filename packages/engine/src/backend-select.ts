/**
 * Backend selection: `auto` prefers CUDA, then WebGPU, then the CPU, and says which it
 * picked and why. The GPU packages are optional: they are looked up with a dynamic import
 * and never required by the engine. Today no GPU package runs a whole model (they provide
 * attention kernels only), so `auto` says so and uses the CPU, and asking for a GPU
 * backend by name fails with a {@link BackendUnavailableError} that explains why.
 */
import type { BackendChoice, BackendName } from './api.js';

export type BackendRequest = 'auto' | BackendName;

/** Thrown when a backend asked for by name cannot run the model. */
export class BackendUnavailableError extends Error {
  override readonly name = 'BackendUnavailableError';
  constructor(
    readonly backend: BackendName,
    readonly reason: string,
  ) {
    super(`backend '${backend}' is not usable: ${reason}`);
  }
}

/** What a probe found out about one GPU package. */
export interface BackendProbe {
  readonly backend: Exclude<BackendName, 'cpu'>;
  /** The package could be imported. */
  readonly installed: boolean;
  /** The package reports a working device. */
  readonly available: boolean;
  /** The package can run a whole model (not only attention kernels). */
  readonly runsWholeModels: boolean;
  readonly detail: string;
}

type Importer = (specifier: string) => Promise<unknown>;

// A variable specifier keeps bundlers and TypeScript from resolving the optional packages.
const defaultImporter: Importer = (specifier) => import(/* @vite-ignore */ specifier);

const PACKAGES: Record<Exclude<BackendName, 'cpu'>, string> = {
  cuda: '@kascade/cuda',
  webgpu: '@kascade/webgpu',
};

function errorText(e: unknown): string {
  return e instanceof Error ? e.message.split('\n')[0]! : String(e);
}

/**
 * Reads `isAvailable()` (boolean, `{available, reason}` or a promise of either) and, when it
 * says no, `unavailableReason()`, if the package has them.
 */
async function availability(mod: Record<string, unknown>): Promise<{ ok: boolean; why: string }> {
  const fn = mod.isAvailable ?? mod.available;
  if (typeof fn !== 'function')
    return { ok: false, why: 'no device check (the package exports no isAvailable())' };
  try {
    const r: unknown = await (fn as () => unknown)();
    let ok = false;
    let why: string | undefined;
    if (typeof r === 'boolean') ok = r;
    else if (r && typeof r === 'object') {
      const o = r as { available?: unknown; reason?: unknown };
      ok = o.available === true;
      if (typeof o.reason === 'string') why = o.reason;
    } else return { ok: false, why: `isAvailable() returned ${String(r)}` };
    if (!ok && why === undefined && typeof mod.unavailableReason === 'function') {
      const reason: unknown = (mod.unavailableReason as () => unknown)();
      if (typeof reason === 'string') why = reason;
    }
    return { ok, why: why ?? (ok ? 'a device is available' : 'no device is available') };
  } catch (e) {
    return { ok: false, why: `isAvailable() threw: ${errorText(e)}` };
  }
}

/** Looks for one GPU package and asks it what it can do. Never throws. */
export async function probeBackend(
  backend: Exclude<BackendName, 'cpu'>,
  importer: Importer = defaultImporter,
): Promise<BackendProbe> {
  const name = PACKAGES[backend];
  let mod: Record<string, unknown>;
  try {
    mod = (await importer(name)) as Record<string, unknown>;
  } catch (e) {
    const missing = (e as { code?: unknown }).code === 'ERR_MODULE_NOT_FOUND' && errorText(e).includes(name);
    return {
      backend,
      installed: false,
      available: false,
      runsWholeModels: false,
      detail: missing ? `${name} is not installed` : `${name} failed to load (${errorText(e)})`,
    };
  }
  const { ok, why } = await availability(mod);
  // A package that can run whole models says so with `runsWholeModels: true` (none does yet).
  const runsWholeModels = mod.runsWholeModels === true;
  return {
    backend,
    installed: true,
    available: ok,
    runsWholeModels,
    detail: runsWholeModels
      ? `${name}: ${why}`
      : `${name} is installed (${why}) but provides attention kernels only and cannot run a whole model yet`,
  };
}

/**
 * Picks the backend for `request`. `auto`: CUDA, then WebGPU, then the CPU, with the reason
 * naming what each GPU probe found. A GPU backend asked for by name must be usable, else
 * {@link BackendUnavailableError}.
 */
export async function selectBackend(
  request: BackendRequest = 'auto',
  importer: Importer = defaultImporter,
): Promise<BackendChoice> {
  if (request === 'cpu') return { backend: 'cpu', reason: 'the CPU backend was requested' };
  if (request === 'cuda' || request === 'webgpu') {
    const probe = await probeBackend(request, importer);
    if (probe.available && probe.runsWholeModels) return { backend: request, reason: probe.detail };
    throw new BackendUnavailableError(request, probe.detail);
  }
  if (request !== 'auto') {
    throw new BackendUnavailableError(
      request as BackendName,
      `unknown backend ${JSON.stringify(request)}; expected auto, cpu, cuda or webgpu`,
    );
  }
  const notes: string[] = [];
  for (const backend of ['cuda', 'webgpu'] as const) {
    const probe = await probeBackend(backend, importer);
    if (probe.available && probe.runsWholeModels) {
      return { backend, reason: `auto: ${probe.detail}${notes.length ? `; ${notes.join('; ')}` : ''}` };
    }
    notes.push(probe.detail);
  }
  return { backend: 'cpu', reason: `auto: using the CPU; ${notes.join('; ')}` };
}
