import { type ChildProcess, spawn } from 'node:child_process';
import { existsSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { afterEach, describe, expect, it } from 'vitest';

const CLI = fileURLToPath(new URL('../dist/cli.js', import.meta.url));
const built = existsSync(CLI);
if (!built) console.warn(`CLI tests skipped: ${CLI} is not built (run the build first)`);

function run(args: string[], env: Record<string, string> = {}) {
  const child = spawn(process.execPath, [CLI, ...args], {
    env: { ...process.env, ...env },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  let stderr = '';
  let stdout = '';
  child.stderr.on('data', (d: Buffer) => {
    stderr += d.toString();
  });
  child.stdout.on('data', (d: Buffer) => {
    stdout += d.toString();
  });
  const exited = new Promise<number | null>((resolve) => child.on('exit', (code) => resolve(code)));
  return { child, exited, out: () => stdout, err: () => stderr };
}

describe.skipIf(!built)('kascade-server CLI (dist/cli.js)', () => {
  let child: ChildProcess | undefined;
  afterEach(() => {
    if (child && child.exitCode === null) child.kill('SIGKILL');
  });

  it('--help prints the usage and exits 0', async () => {
    const r = run(['--help']);
    expect(await r.exited).toBe(0);
    expect(r.out()).toContain('--backend NAME');
  });

  it('a bad flag exits 2 naming it', async () => {
    const r = run(['--port', 'eighty']);
    expect(await r.exited).toBe(2);
    expect(r.err()).toContain('--port must be an integer');
  });

  /** Starts the CLI and waits for its 'listening on' line; returns the URL. */
  async function listening(r: ReturnType<typeof run>): Promise<string> {
    child = r.child;
    const t0 = Date.now();
    while (!/listening on (http:\/\/\S+) /.test(r.err())) {
      if (Date.now() - t0 > 60_000 || r.child.exitCode !== null)
        throw new Error(`server did not start: ${r.err()}`);
      await new Promise((resolve) => setTimeout(resolve, 50));
    }
    return /listening on (http:\/\/\S+) /.exec(r.err())![1]!;
  }

  async function complete(url: string) {
    const res = await fetch(`${url}/v1/completions`, {
      method: 'POST',
      headers: { 'content-type': 'application/json' },
      body: JSON.stringify({ prompt: 'hi', max_tokens: 3 }),
    });
    return res.json();
  }

  it('serves the default model (@kascade/demo-model, its plan) from environment settings and exits 0 on SIGTERM', async () => {
    const r = run([], { KASCADE_PORT: '0', KASCADE_CALIBRATE: 'off' });
    const url = await listening(r);
    expect(url).toMatch(/^http:\/\/127\.0\.0\.1:\d+$/);
    const health = await (await fetch(`${url}/health`)).json();
    expect(health.model).toBe('kascade-demo-model');
    expect((await complete(url)).usage.kascade.policy).toBe('kascade');
    expect(r.err()).toContain('plan: kascade-plan.json shipped with @kascade/demo-model');
    r.child.kill('SIGTERM');
    expect(await r.exited).toBe(0);
    expect(r.err()).toContain('stopped');
  });

  it('KASCADE_MODEL=random serves the random-weight model (dense with --calibrate off)', async () => {
    const r = run([], { KASCADE_PORT: '0', KASCADE_CALIBRATE: 'off', KASCADE_MODEL: 'random' });
    const url = await listening(r);
    const health = await (await fetch(`${url}/health`)).json();
    expect(health.model).toContain('random weights');
    expect((await complete(url)).usage.kascade.policy).toBe('dense');
    expect(r.err()).toContain('plan: none');
    r.child.kill('SIGTERM');
    expect(await r.exited).toBe(0);
  });
});
