/**
 * Drives the browser parity page (`browser/index.html`) in headless Chromium through
 * playwright-core: bundles `browser/parity.ts` with esbuild, serves the page on 127.0.0.1, and
 * asserts every parity check the page ran on `navigator.gpu`. Needs Debian's chromium (CI installs
 * it); elsewhere without it the test says so and skips.
 */
import { existsSync, mkdtempSync, readFileSync, realpathSync, rmSync, writeFileSync } from 'node:fs';
import { createServer, type Server } from 'node:http';
import { createRequire } from 'node:module';
import type { AddressInfo } from 'node:net';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { afterAll, describe, expect, it } from 'vitest';

const CHROMIUM = process.env.KASCADE_CHROMIUM ?? '/usr/bin/chromium';
const here = dirname(fileURLToPath(import.meta.url));
const haveChromium = existsSync(CHROMIUM);
if (!haveChromium && process.env.CI === 'true') {
  throw new Error(`CI=true but ${CHROMIUM} is missing: .ci/run installs Debian's chromium`);
}
if (!haveChromium)
  console.warn(`[@kascade/webgpu] skipping the browser test: no ${CHROMIUM} (apt-get install chromium)`);

/** What `browser/parity.ts` publishes on `window.kascadeParity`. */
interface ParityReport {
  adapter: string;
  subgroups: boolean;
  checks: { name: string; value: number; limit: number; pass: boolean }[];
  bench: { op: string; keys: number; medianUs: number; timing: string }[];
  error?: string;
  done: boolean;
}

interface EsbuildLike {
  build(options: Record<string, unknown>): Promise<unknown>;
}

async function buildPage(dir: string): Promise<void> {
  // esbuild comes with tsup (a root devDependency).
  const req = createRequire(realpathSync(join(here, '../../../node_modules/tsup/package.json')));
  const esbuild = req('esbuild') as EsbuildLike;
  await esbuild.build({
    entryPoints: [join(here, '../browser/parity.ts')],
    outfile: join(dir, 'parity.js'),
    bundle: true,
    format: 'esm',
    platform: 'browser',
    target: 'chrome120',
    conditions: ['@kascade/source'],
    logLevel: 'warning',
  });
  writeFileSync(join(dir, 'index.html'), readFileSync(join(here, '../browser/index.html')));
}

function serve(dir: string): Promise<Server> {
  const server = createServer((req, res) => {
    const name =
      (req.url ?? '/').split('?')[0] === '/' ? 'index.html' : (req.url ?? '').slice(1).split('?')[0];
    const file = join(dir, name);
    if (!/^[\w.-]+$/.test(name) || !existsSync(file)) {
      res.writeHead(404).end();
      return;
    }
    const type = name.endsWith('.js') ? 'text/javascript' : 'text/html';
    res.writeHead(200, { 'content-type': type }).end(readFileSync(file));
  });
  return new Promise((resolve) => server.listen(0, '127.0.0.1', () => resolve(server)));
}

describe.skipIf(!haveChromium)('browser parity page (headless Chromium, navigator.gpu)', () => {
  const dir = mkdtempSync(join(tmpdir(), 'kascade-webgpu-page-'));
  afterAll(() => rmSync(dir, { recursive: true, force: true }));

  it('runs every parity check and the benchmark on navigator.gpu', async () => {
    await buildPage(dir);
    const server = await serve(dir);
    const { chromium } = await import('playwright-core');
    const browser = await chromium.launch({
      executablePath: CHROMIUM,
      headless: true,
      args: [
        '--no-sandbox',
        '--enable-unsafe-webgpu',
        '--disable-background-networking',
        '--disable-component-update',
        '--disable-sync',
        '--no-first-run',
      ],
    });
    try {
      const page = await browser.newPage();
      const logs: string[] = [];
      page.on('console', (m) => logs.push(m.text()));
      page.on('pageerror', (e) => logs.push(String(e)));
      const port = (server.address() as AddressInfo).port;
      await page.goto(`http://127.0.0.1:${port}/`);
      await page.waitForFunction(
        () => (window as unknown as { kascadeParity?: { done: boolean } }).kascadeParity?.done === true,
        undefined,
        { timeout: 240_000, polling: 500 },
      );
      const report = (await page.evaluate(
        () => (window as unknown as { kascadeParity: unknown }).kascadeParity,
      )) as ParityReport;
      expect(report.error, `page error: ${report.error}; console: ${logs.join(' | ')}`).toBeUndefined();
      // 7 checks per dtype, f32 and f16, and each one passed.
      expect(report.checks.length).toBe(14);
      for (const c of report.checks) expect(c.pass, `${c.name}: ${c.value} vs ${c.limit}`).toBe(true);
      expect(report.bench.map((b) => b.op)).toEqual(['dense', 'anchor', 'reuse']);
      for (const b of report.bench) expect(b.medianUs).toBeGreaterThan(0);
    } finally {
      await browser.close();
      server.close();
    }
  }, 300_000);
});
