/**
 * The engine's default model. When `createEngine()` is given no model, it uses
 * `@kascade/demo-model` (the project's trained model and its calibrated plan) if that package
 * can be imported. It is an optional peer dependency, looked up with a dynamic import as the GPU
 * packages are (`backend-select.ts`), so the engine never pulls its 20 MB on a user who does not
 * want it. When it cannot be imported, the engine falls back to the built-in random-weight model
 * and says so once per process (a Node warning, code `KASCADE_DEFAULT_MODEL_MISSING`).
 */

/** The package the default model comes from. */
export const DEMO_MODEL_PACKAGE = '@kascade/demo-model';

/** `model: 'random'` (and `--model random` on the CLIs) asks for the built-in random-weight model. */
export const RANDOM_MODEL = 'random';

/** The warning code of the once-per-process notice that the random-weight model stands in. */
export const DEFAULT_MODEL_WARNING_CODE = 'KASCADE_DEFAULT_MODEL_MISSING';

/** What the lookup of the default model found. */
export type DefaultModelLookup =
  | {
      readonly found: true;
      /** The model id the engine reports (`demoModelId`). */
      readonly id: string;
      /** The checkpoint directory (`demoModelDir`). */
      readonly dir: string;
      /** The plan shipped with it (`demoPlanPath`), if the package names one. */
      readonly planPath: string | undefined;
      readonly detail: string;
    }
  | {
      readonly found: false;
      /** Why not: not installed, failed to load, or not the expected shape. */
      readonly detail: string;
    };

type Importer = (specifier: string) => Promise<unknown>;

// A variable specifier keeps bundlers and TypeScript from resolving the optional package.
const defaultImporter: Importer = (specifier) => import(/* @vite-ignore */ specifier);

function errorText(e: unknown): string {
  return e instanceof Error ? e.message.split('\n')[0]! : String(e);
}

/**
 * Looks for `@kascade/demo-model` (from where `@kascade/engine` is installed). Never throws:
 * a package that is missing, fails to load or does not export `demoModelDir` is reported as
 * not found, with the reason.
 */
export async function findDefaultModel(importer: Importer = defaultImporter): Promise<DefaultModelLookup> {
  let mod: Record<string, unknown>;
  try {
    mod = (await importer(DEMO_MODEL_PACKAGE)) as Record<string, unknown>;
  } catch (e) {
    const code = (e as { code?: unknown }).code;
    const missing =
      (code === 'ERR_MODULE_NOT_FOUND' || code === 'MODULE_NOT_FOUND') &&
      errorText(e).includes(DEMO_MODEL_PACKAGE);
    return {
      found: false,
      detail: missing
        ? `${DEMO_MODEL_PACKAGE} is not installed`
        : `${DEMO_MODEL_PACKAGE} failed to load (${errorText(e)})`,
    };
  }
  const dir = mod?.demoModelDir;
  if (typeof dir !== 'string' || dir === '') {
    return {
      found: false,
      detail: `${DEMO_MODEL_PACKAGE} was imported but exports no demoModelDir path (an incompatible version?)`,
    };
  }
  const id = typeof mod.demoModelId === 'string' && mod.demoModelId !== '' ? mod.demoModelId : 'demo-model';
  const planPath = typeof mod.demoPlanPath === 'string' ? mod.demoPlanPath : undefined;
  return { found: true, id, dir, planPath, detail: `${DEMO_MODEL_PACKAGE} (${dir})` };
}

/** Test seams: the importer `createEngine` uses and the once-per-process notice. Not exported by the package. */
export const defaultModelHooks: {
  importer: Importer;
  notice: (message: string) => void;
  noticeGiven: boolean;
} = {
  importer: defaultImporter,
  notice: (message) => process.emitWarning(message, { code: DEFAULT_MODEL_WARNING_CODE }),
  noticeGiven: false,
};

/** Says, once per process, that the random-weight model stands in for the missing default. */
export function noticeRandomFallback(detail: string): void {
  if (defaultModelHooks.noticeGiven) return;
  defaultModelHooks.noticeGiven = true;
  defaultModelHooks.notice(
    `no model given and ${detail}: using the built-in random-weight model, whose text is noise. ` +
      `Install ${DEMO_MODEL_PACKAGE} for the trained default model, pass a model ` +
      `(createEngine({ model: 'path/to/checkpoint' }), --model DIR), or ask for model '${RANDOM_MODEL}' to silence this.`,
  );
}
