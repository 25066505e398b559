import { existsSync, readFileSync } from 'node:fs';
import { demoModelId, demoPlanPath } from '@kascade/demo-model';
import { type Browser, chromium } from 'playwright-core';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { parseConfig } from './config.js';
import { type Running, startServer } from './serve.js';
import { TestEngine } from './test-engine.js';
import { type Started, start } from './test-helpers.js';

const CHROMIUM = '/usr/bin/chromium';
const haveChromium = existsSync(CHROMIUM);
if (!haveChromium && process.env.CI === 'true') {
  throw new Error(`${CHROMIUM} is missing under CI=true: .ci/run must install Debian's chromium`);
}
if (!haveChromium) {
  console.warn(`playground tests skipped: ${CHROMIUM} not found (apt-get install chromium)`);
}

describe.skipIf(!haveChromium)('playground page in headless Chromium', () => {
  const engine = new TestEngine({ tokenDelayMs: 25 });
  let s: Started;
  let browser: Browser;
  beforeAll(async () => {
    s = await start({ engine, plan: { opaque: true } });
    browser = await chromium.launch({
      executablePath: CHROMIUM,
      args: [
        '--headless',
        '--no-sandbox',
        '--disable-gpu',
        '--disable-background-networking',
        '--disable-component-update',
        '--disable-sync',
        '--no-first-run',
      ],
    });
  });
  afterAll(async () => {
    await browser?.close();
    await s?.close();
  });

  it('chat: type a prompt, see streamed text arrive, then the Kascade figures', async () => {
    const page = await browser.newPage();
    const errors: string[] = [];
    page.on('pageerror', (e) => errors.push(e.message));
    await page.goto(`${s.url}/`);
    await expect.poll(() => page.textContent('#model-line')).toContain(engine.model.id);
    expect(await page.isVisible('#random-warning')).toBe(true);
    await page.fill('#max-tokens', '24');
    await page.fill('#prompt', 'hello kascade');
    await page.click('#send');
    // watch the reply grow token by token
    const lengths = new Set<number>();
    const t0 = Date.now();
    while (Date.now() - t0 < 10_000) {
      const text = (await page.textContent('#messages li.assistant')) ?? '';
      lengths.add(text.length);
      if (await page.isEnabled('#send')) break;
      await page.waitForTimeout(20);
    }
    const final = ((await page.textContent('#messages li.assistant')) ?? '').trim();
    expect(final.split(' ')).toHaveLength(24);
    const partial = [...lengths].filter((n) => n > 0 && n < final.length);
    expect(partial.length).toBeGreaterThanOrEqual(2);
    expect(await page.textContent('#messages li.user')).toBe('hello kascade');
    expect(await page.textContent('#stat-policy')).toBe('kascade');
    expect(Number(await page.textContent('#stat-tps'))).toBeGreaterThan(0);
    expect(await page.textContent('#stat-k')).toMatch(/^\d+(\.\d)? \/ \d+(\.\d)?$/);
    expect(await page.locator('#anchors li').count()).toBe(engine.model.layers);
    expect(await page.locator('#anchors li.anchor').count()).toBe(2);
    expect(engine.lastOptions?.policy?.kind).toBe('kascade');
    expect(errors).toEqual([]);
    await page.close();
  });

  it('the dense toggle and the stop button reach the server', async () => {
    const page = await browser.newPage();
    await page.goto(`${s.url}/`);
    await expect.poll(() => page.textContent('#model-line')).toContain(engine.model.id);
    await page.check('#policy-dense');
    await page.fill('#max-tokens', '300');
    await page.fill('#prompt', 'a long one');
    await page.press('#prompt', 'Enter');
    await expect.poll(() => page.textContent('#messages li.assistant'), { timeout: 5000 }).toMatch(/\w+ \w+/);
    expect(engine.lastOptions?.policy?.kind).toBe('dense');
    await page.click('#stop');
    await expect.poll(() => page.textContent('#messages li.assistant')).toContain('[stopped]');
    await expect.poll(() => s.server.inFlight).toBe(0);
    await expect.poll(() => engine.live).toBe(0);
    await page.close();
  });
});

describe.skipIf(!haveChromium)(
  'playground page on the default model (@kascade/demo-model) in headless Chromium',
  () => {
    let running: Running;
    let browser: Browser;
    const shipped = JSON.parse(readFileSync(demoPlanPath, 'utf8')) as {
      anchors: number[];
      model: { layers: number };
    };
    beforeAll(async () => {
      running = await startServer(parseConfig(['--port', '0'], {}));
      browser = await chromium.launch({
        executablePath: CHROMIUM,
        args: [
          '--headless',
          '--no-sandbox',
          '--disable-gpu',
          '--disable-background-networking',
          '--disable-component-update',
          '--disable-sync',
          '--no-first-run',
        ],
      });
    });
    afterAll(async () => {
      await browser?.close();
      await running?.server.shutdown({ graceMs: 0 });
    });

    it('names the trained model without the random-weights warning, chats, and highlights the plan anchors', async () => {
      const page = await browser.newPage();
      const errors: string[] = [];
      page.on('pageerror', (e) => errors.push(e.message));
      await page.goto(`${running.url}/`);
      await expect.poll(() => page.textContent('#model-line')).toContain(demoModelId);
      expect(await page.textContent('#model-line')).toContain('plan loaded');
      expect(await page.isVisible('#random-warning')).toBe(false);
      await page.fill('#max-tokens', '8');
      await page.fill('#temperature', '0');
      await page.fill('#prompt', 'What is the special magic number?');
      await page.click('#send');
      await expect.poll(() => page.isEnabled('#send'), { timeout: 30_000 }).toBe(true);
      expect(((await page.textContent('#messages li.assistant')) ?? '').trim().length).toBeGreaterThan(0);
      expect(await page.textContent('#stat-policy')).toBe('kascade');
      expect(await page.locator('#anchors li').count()).toBe(shipped.model.layers);
      expect(await page.locator('#anchors li.anchor').count()).toBe(shipped.anchors.length);
      expect(await page.isVisible('#error')).toBe(false);
      expect(errors).toEqual([]);
      await page.close();
    });
  },
);
