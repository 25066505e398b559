/**
 * `server-load`: short completions against `kascade-server` (its built CLI, in its own
 * process, on loopback) with autocannon at 1, 8 and 32 concurrent clients; the queue is
 * sized for the clients so that every request is served. Any non-2xx answer, socket error
 * or timeout counts as an error.
 */
import { type ChildProcess, spawn } from 'node:child_process';
import { existsSync } from 'node:fs';
import { createRequire } from 'node:module';
import { loadavg } from 'node:os';
import { fileURLToPath } from 'node:url';
import type { Bench } from '../harness.js';
import type { Row } from '../results.js';

/** The part of autocannon's API this bench uses (the package ships no types). */
interface AutocannonResult {
  readonly duration: number;
  readonly errors: number;
  readonly timeouts: number;
  readonly non2xx: number;
  readonly '2xx': number;
  readonly requests: { readonly total: number; readonly sent: number };
  readonly latency: {
    readonly p50: number;
    readonly p90: number;
    readonly p99: number;
    readonly mean: number;
    readonly max: number;
  };
}
type Autocannon = (options: {
  url: string;
  connections: number;
  duration: number;
  method: 'POST';
  headers: Record<string, string>;
  body: string;
  timeout: number;
  pipelining: number;
}) => Promise<AutocannonResult>;

const require = createRequire(import.meta.url);
const autocannon = require('autocannon') as Autocannon;

const CLIENTS = [1, 8, 32] as const;
/** Generations the server runs at once (its JS engine interleaves them on one thread). */
const SERVER_CONCURRENCY = 8;
const REQUEST = { prompt: 'Kascade reuses Top-k indices.', max_tokens: 8, temperature: 0 };

/** `apps/server/dist/cli.js`, from `src/benches/` or from the bundled `dist/`. */
function serverCli(): string {
  const override = process.env.KASCADE_SERVER_CLI;
  if (override !== undefined && override !== '') return override;
  for (const rel of ['../../../server/dist/cli.js', '../../server/dist/cli.js']) {
    const file = fileURLToPath(new URL(rel, import.meta.url));
    if (existsSync(file)) return file;
  }
  throw new Error('apps/server/dist/cli.js is not built: run `npx -y pnpm@12.4.2 run build` first');
}

interface Server {
  readonly url: string;
  readonly child: ChildProcess;
  readonly log: () => string;
}

async function startServer(cli: string, clients: number): Promise<Server> {
  const args = [
    // The server's default is now the trained demo model; this bench measures the random-weight one.
    '--model',
    'random',
    '--port',
    '0',
    '--concurrency',
    String(Math.min(clients, SERVER_CONCURRENCY)),
    '--queue',
    String(clients),
  ];
  const child = spawn(process.execPath, [cli, ...args], { stdio: ['ignore', 'ignore', 'pipe'] });
  let log = '';
  child.stderr?.on('data', (d: Buffer) => {
    log += d.toString();
  });
  const t0 = Date.now();
  for (;;) {
    const m = /listening on (http:\/\/\S+) /.exec(log);
    if (m) return { url: m[1]!, child, log: () => log };
    if (child.exitCode !== null || Date.now() - t0 > 120_000) {
      child.kill('SIGKILL');
      throw new Error(`kascade-server did not start:\n${log}`);
    }
    await new Promise((resolve) => setTimeout(resolve, 50));
  }
}

async function stopServer(server: Server): Promise<void> {
  const exited = new Promise<number | null>((resolve) => server.child.on('exit', (code) => resolve(code)));
  server.child.kill('SIGTERM');
  const code = await exited;
  if (code !== 0) throw new Error(`kascade-server exited with ${code} on SIGTERM:\n${server.log()}`);
}

function median(values: readonly number[]): number {
  const s = [...values].sort((a, b) => a - b);
  const m = s.length >> 1;
  return s.length % 2 ? s[m]! : (s[m - 1]! + s[m]!) / 2;
}

const round = (x: number, digits = 2) => Math.round(x * 10 ** digits) / 10 ** digits;

const bench: Bench = {
  name: 'server-load',
  description:
    'kascade-server on loopback (built-in random-weight model, CPU, demo plan): autocannon, short completions, 1/8/32 clients',
  defaults: { warmup: 1, repeats: 3 },
  async run(ctx) {
    const cli = serverCli();
    const durationS = ctx.quick ? 2 : 10;
    const warmupS = 2;
    const rows: Row[] = [];
    const summary: Record<string, number> = {};
    let totalErrors = 0;
    for (const clients of CLIENTS) {
      const server = await startServer(cli, clients);
      try {
        const url = `${server.url}/v1/completions`;
        const load = (duration: number) =>
          autocannon({
            url,
            connections: clients,
            duration,
            method: 'POST',
            headers: { 'content-type': 'application/json' },
            body: JSON.stringify(REQUEST),
            timeout: 30,
            pipelining: 1,
          });
        for (let i = 0; i < ctx.warmup; i++) await load(warmupS);
        const runs: AutocannonResult[] = [];
        for (let i = 0; i < ctx.repeats; i++) {
          const r = await load(durationS);
          runs.push(r);
          ctx.progress(
            `c=${clients} run ${i + 1}: ${r['2xx']} ok in ${r.duration.toFixed(1)} s, p50 ${r.latency.p50} ms, p99 ${r.latency.p99} ms, ` +
              `${r.errors} errors, ${r.timeouts} timeouts, ${r.non2xx} non-2xx`,
          );
        }
        const errors = runs.reduce((sum, r) => sum + r.errors + r.timeouts + r.non2xx, 0);
        totalErrors += errors;
        const requestsPerS = median(runs.map((r) => r['2xx'] / r.duration));
        const p50Ms = median(runs.map((r) => r.latency.p50));
        const p90Ms = median(runs.map((r) => r.latency.p90));
        const p99Ms = median(runs.map((r) => r.latency.p99));
        rows.push({
          clients,
          serverConcurrency: Math.min(clients, SERVER_CONCURRENCY),
          queue: clients,
          runs: runs.length,
          durationS,
          requests: runs.reduce((sum, r) => sum + r['2xx'], 0),
          requestsPerS: round(requestsPerS),
          p50Ms,
          p90Ms,
          p99Ms,
          maxMs: Math.max(...runs.map((r) => r.latency.max)),
          errors,
        });
        summary[`requestsPerS_c${clients}`] = round(requestsPerS);
        summary[`p50Ms_c${clients}`] = p50Ms;
        summary[`p99Ms_c${clients}`] = p99Ms;
      } finally {
        await stopServer(server);
      }
    }
    summary.errors = totalErrors;
    return {
      // The harness records the load average at the start; this machine may be shared.
      machine: { loadAvg1mEnd: round(loadavg()[0]!) },
      config: {
        model: 'kascade-random-tiny (random weights)',
        backend: 'cpu',
        policy: 'kascade (plan calibrated at startup)',
        prompt: REQUEST.prompt,
        maxTokens: REQUEST.max_tokens,
        temperature: 0,
        transport: 'HTTP/1.1 loopback, keep-alive, no pipelining',
        loadGenerator: 'autocannon 8 (same machine, separate process)',
        durationS,
        warmupS,
        statistic: 'median over runs of: 2xx/s, and autocannon latency percentiles (ms)',
      },
      rows,
      summary,
    };
  },
};

export default bench;
