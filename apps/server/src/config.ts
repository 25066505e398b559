/**
 * Server configuration from command-line flags and environment variables (flags win).
 */
import { parseArgs } from 'node:util';

export const BACKENDS = ['auto', 'cpu', 'cuda', 'webgpu'] as const;
export type BackendFlag = (typeof BACKENDS)[number];

export interface ServerConfig {
  /**
   * Checkpoint directory or GGUF file, or `random` (the built-in random-weight model);
   * undefined: the bundled default model, `@kascade/demo-model`.
   */
  readonly model: string | undefined;
  /** Plan file; undefined: the model directory's plan, if any. */
  readonly plan: string | undefined;
  readonly backend: BackendFlag;
  readonly host: string;
  readonly port: number;
  readonly concurrency: number;
  readonly queue: number;
  /** undefined: the model's context length. */
  readonly maxPromptTokens: number | undefined;
  readonly maxTokens: number;
  readonly bodyLimitBytes: number;
  readonly shutdownGraceS: number;
  /** When no plan is loaded, calibrate one at startup (`auto`) or serve dense only (`off`). */
  readonly calibrate: 'auto' | 'off';
  readonly log: boolean;
  readonly help: boolean;
}

/** A flag or variable with a bad value; the CLI prints it with the usage and exits 2. */
export class ConfigError extends Error {
  override readonly name = 'ConfigError';
}

export const USAGE = `Usage: kascade-server [options]

Serves a Kascade model with an OpenAI-compatible API and a playground page at /.

Options (environment variable in brackets; flags win):
  --model DIR|FILE|random   Hugging Face checkpoint directory or .gguf file, or  [KASCADE_MODEL]
                            random for the built-in random-weight model (default:
                            the trained demo model of @kascade/demo-model)
  --plan FILE               Kascade plan JSON (default: kascade-plan.json        [KASCADE_PLAN]
                            in the model directory, if any)
  --backend NAME            auto | cpu | cuda | webgpu (default: cpu)            [KASCADE_BACKEND]
  --host HOST               interface to listen on (default: 127.0.0.1)          [KASCADE_HOST]
  --port PORT               TCP port, 0 for any free one (default: 8080)         [KASCADE_PORT]
  --concurrency N           generations run at once (default: 1)                 [KASCADE_CONCURRENCY]
  --queue N                 requests that may wait; more get 429 (default: 16)   [KASCADE_QUEUE]
  --max-prompt-tokens N     longest prompt accepted (default: model context)     [KASCADE_MAX_PROMPT_TOKENS]
  --max-tokens N            largest max_tokens accepted (default: 1024)          [KASCADE_MAX_TOKENS]
  --body-limit BYTES        largest request body (default: 1048576)              [KASCADE_BODY_LIMIT]
  --shutdown-grace SECONDS  on SIGINT/SIGTERM, time given to in-flight requests  [KASCADE_SHUTDOWN_GRACE]
                            before they are cancelled (default: 10)
  --calibrate auto|off      with no plan, calibrate one at startup (default:     [KASCADE_CALIBRATE]
                            auto) or serve dense only (off)
  --log                     log each request as JSON lines                       [KASCADE_LOG=1]
  -h, --help                show this help
`;

const OPTIONS = {
  model: { type: 'string' },
  plan: { type: 'string' },
  backend: { type: 'string' },
  host: { type: 'string' },
  port: { type: 'string' },
  concurrency: { type: 'string' },
  queue: { type: 'string' },
  'max-prompt-tokens': { type: 'string' },
  'max-tokens': { type: 'string' },
  'body-limit': { type: 'string' },
  'shutdown-grace': { type: 'string' },
  calibrate: { type: 'string' },
  log: { type: 'boolean' },
  help: { type: 'boolean', short: 'h' },
} as const;

type FlagName = keyof typeof OPTIONS;

const ENV: Record<Exclude<FlagName, 'help'>, string> = {
  model: 'KASCADE_MODEL',
  plan: 'KASCADE_PLAN',
  backend: 'KASCADE_BACKEND',
  host: 'KASCADE_HOST',
  port: 'KASCADE_PORT',
  concurrency: 'KASCADE_CONCURRENCY',
  queue: 'KASCADE_QUEUE',
  'max-prompt-tokens': 'KASCADE_MAX_PROMPT_TOKENS',
  'max-tokens': 'KASCADE_MAX_TOKENS',
  'body-limit': 'KASCADE_BODY_LIMIT',
  'shutdown-grace': 'KASCADE_SHUTDOWN_GRACE',
  calibrate: 'KASCADE_CALIBRATE',
  log: 'KASCADE_LOG',
};

function integer(raw: string, what: string, min: number, max = Number.MAX_SAFE_INTEGER): number {
  const value = Number(raw.trim());
  if (!/^\s*\d+\s*$/.test(raw) || !Number.isSafeInteger(value) || value < min || value > max) {
    throw new ConfigError(`${what} must be an integer from ${min} to ${max}, got '${raw}'`);
  }
  return value;
}

export function parseConfig(
  argv: readonly string[],
  env: Readonly<Record<string, string | undefined>> = {},
): ServerConfig {
  let values: Partial<Record<FlagName, string | boolean>>;
  try {
    ({ values } = parseArgs({ args: [...argv], options: OPTIONS, strict: true, allowPositionals: false }));
  } catch (error) {
    throw new ConfigError(error instanceof Error ? error.message : String(error));
  }
  /** The flag's value, else the variable's, with a label naming where it came from. */
  const get = (name: Exclude<FlagName, 'help' | 'log'>): { raw: string; what: string } | undefined => {
    const flag = values[name];
    if (typeof flag === 'string') return { raw: flag, what: `--${name}` };
    const fromEnv = env[ENV[name]];
    if (fromEnv !== undefined && fromEnv !== '') return { raw: fromEnv, what: ENV[name] };
    return undefined;
  };
  const int = (
    name: Exclude<FlagName, 'help' | 'log'>,
    fallback: number,
    min: number,
    max?: number,
  ): number => {
    const v = get(name);
    return v === undefined ? fallback : integer(v.raw, v.what, min, max);
  };
  const backendValue = get('backend');
  const backend = (backendValue?.raw ?? 'cpu') as BackendFlag;
  if (!BACKENDS.includes(backend)) {
    throw new ConfigError(
      `${backendValue?.what ?? '--backend'} must be one of ${BACKENDS.join(', ')}, got '${backend}'`,
    );
  }
  const calibrateValue = get('calibrate');
  const calibrate = calibrateValue?.raw ?? 'auto';
  if (calibrate !== 'auto' && calibrate !== 'off') {
    throw new ConfigError(`${calibrateValue?.what} must be auto or off, got '${calibrate}'`);
  }
  const maxPrompt = get('max-prompt-tokens');
  const logEnv = env[ENV.log];
  return {
    model: get('model')?.raw,
    plan: get('plan')?.raw,
    backend,
    host: get('host')?.raw ?? '127.0.0.1',
    port: int('port', 8080, 0, 65535),
    concurrency: int('concurrency', 1, 1, 1024),
    queue: int('queue', 16, 0, 100_000),
    maxPromptTokens: maxPrompt === undefined ? undefined : integer(maxPrompt.raw, maxPrompt.what, 1),
    maxTokens: int('max-tokens', 1024, 1),
    bodyLimitBytes: int('body-limit', 1 << 20, 64),
    shutdownGraceS: int('shutdown-grace', 10, 0, 3600),
    calibrate,
    log: values.log === true || logEnv === '1' || logEnv === 'true',
    help: values.help === true,
  };
}
