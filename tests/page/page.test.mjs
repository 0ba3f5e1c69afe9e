// Page tests: Playwright (playwright-core) driving Debian's Chromium, headless, WebGPU on SwiftShader.
// Serves www/ (built by ./build.sh), opens the page on both engines and checks that frames stream,
// the run finishes on a real image, both engines agree, and a broken model URL shows its error.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { mkdtempSync, mkdirSync, copyFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { chromium } from 'playwright-core';

const ROOT = path.resolve(import.meta.dirname, '../..');
const OUT = path.join(ROOT, 'test-output');
const PORT = 18000 + Math.floor(Math.random() * 1000);
const BASE = `http://127.0.0.1:${PORT}`;
const CHROMIUM = process.env.CHROMIUM || '/usr/lib/chromium/chromium';
const RUN_TIMEOUT = 15 * 60 * 1000;

let server, context;
const finals = {};

before(async () => {
  mkdirSync(OUT, { recursive: true });
  server = spawn('python3', [path.join(ROOT, 'tests/page/serve.py'), String(PORT), path.join(ROOT, 'www')], { stdio: ['ignore', 'pipe', 'inherit'] });
  await new Promise((resolve, reject) => {
    server.stdout.once('data', resolve);
    server.once('exit', (code) => reject(new Error(`server exited ${code}`)));
  });
  context = await chromium.launchPersistentContext(mkdtempSync(path.join(tmpdir(), 'ddim-chromium-')), {
    executablePath: CHROMIUM,
    ignoreDefaultArgs: true,
    args: ['--headless=new', '--no-sandbox', '--enable-unsafe-webgpu', '--disable-background-networking',
           '--disable-component-update', '--disable-sync', '--no-first-run', '--disable-quic', '--remote-debugging-pipe',
           'about:blank'],
    viewport: { width: 1000, height: 800 },
  });
});

after(async () => {
  await context?.close();
  server?.kill();
});

async function openPage(query) {
  const page = await context.newPage();
  const errors = [];
  page.on('pageerror', (e) => errors.push(e.message));
  page.on('console', (m) => { if (m.type() === 'error') console.log(`[page console] ${m.text()}`); });
  await page.goto(`${BASE}/${query}`);
  return { page, errors };
}

async function waitForEnd(page) {
  await page.waitForFunction(() => ['done', 'error'].includes(document.body.dataset.state), null, { timeout: RUN_TIMEOUT, polling: 250 });
  const state = await page.evaluate(() => document.body.dataset.state);
  const error = await page.locator('#error').textContent();
  assert.equal(state, 'done', `the run ended in state ${state}: ${error}`);
}

for (const engine of ['webgpu', 'cpu']) {
  test(`page samples live on the ${engine} engine`, { timeout: RUN_TIMEOUT + 60_000 }, async () => {
    const { page, errors } = await openPage(`?steps=10&seed=1&engine=${engine}`);
    await waitForEnd(page);
    const frames = await page.evaluate(() => window.__frames);
    assert.equal(frames.length, 10, 'one drawn frame per step');
    const distinct = new Set(frames.map((f) => f.hash)).size;
    assert.ok(distinct >= 5, `the canvas changed only ${distinct} times while sampling`);
    const last = frames[frames.length - 1];
    assert.ok(last.max - last.min > 64, `final image is nearly uniform (min ${last.min}, max ${last.max})`);
    assert.equal((await page.locator('#step').textContent()).trim(), '10 / 10');
    const engineText = await page.locator('#engine').textContent();
    assert.equal(engineText, engine === 'webgpu' ? 'WebGPU' : 'CPU (wasm)');
    assert.ok((await page.locator('#adapter').textContent()).length > 3, 'adapter is named');
    await page.screenshot({ path: path.join(OUT, `page-${engine}.png`) });
    finals[engine] = await page.evaluate(() => { const i = window.__lastImage; return { w: i.width, h: i.height, data: Array.from(i.data) }; });
    assert.deepEqual(errors, [], 'no uncaught page errors');
    await page.close();
  });
}

test('webgpu and cpu engines end on the same image for the same seed', () => {
  const [a, b] = [finals.webgpu, finals.cpu];
  assert.ok(a && b, 'both engine runs finished');
  assert.equal(a.w, b.w);
  assert.equal(a.h, b.h);
  let worst = 0, sum = 0;
  for (let i = 0; i < a.data.length; i++) { const d = Math.abs(a.data[i] - b.data[i]); worst = Math.max(worst, d); sum += d; }
  // The engines agree to ~1e-4 in x; after 10 steps and 8-bit rounding a pixel may differ by a few levels.
  assert.ok(worst <= 6, `max pixel difference ${worst}`);
  assert.ok(sum / a.data.length < 0.5, `mean pixel difference ${sum / a.data.length}`);
});

test('a broken model URL shows its error in the page', async () => {
  const { page, errors } = await openPage('?engine=cpu&model=no-such-model/');
  await page.waitForFunction(() => document.body.dataset.state === 'error', null, { timeout: 60_000 });
  const text = await page.locator('#error').textContent();
  assert.match(text, /no-such-model\/config\.json/);
  assert.match(text, /404/);
  assert.ok(await page.locator('#error').isVisible());
  await page.screenshot({ path: path.join(OUT, 'page-bad-model.png') });
  assert.deepEqual(errors.filter((e) => !/no-such-model/.test(e)), []);
  await page.close();
});

test('a model folder without scheduler_config.json samples with the defaults and says so', { timeout: 120_000 }, async () => {
  // The bundled model's weights in a folder that has no scheduler_config.json (served: HTTP 404).
  const dir = path.join(ROOT, 'www', 'test-model-no-scheduler');
  mkdirSync(dir, { recursive: true });
  for (const f of ['config.json', 'diffusion_pytorch_model.safetensors']) copyFileSync(path.join(ROOT, 'www', 'model', f), path.join(dir, f));
  try {
    const { page, errors } = await openPage('?engine=cpu&steps=2&batch=1&model=test-model-no-scheduler/');
    await waitForEnd(page);
    assert.match(await page.locator('#model-info').textContent(), /scheduler: diffusers' DDIMScheduler defaults \(no scheduler_config\.json\)/);
    assert.deepEqual(errors, []);
    await page.close();
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});

test('without WebGPU the page says so and runs the CPU engine', { timeout: 120_000 }, async () => {
  const page = await context.newPage();
  const errors = [];
  page.on('pageerror', (e) => errors.push(e.message));
  await page.addInitScript(() => { delete Navigator.prototype.gpu; });
  await page.goto(`${BASE}/?steps=3&seed=2`);
  await waitForEnd(page);
  assert.equal(await page.locator('#engine').textContent(), 'CPU (wasm)');
  assert.match(await page.locator('#engine-reason').textContent(), /no WebGPU/);
  assert.equal((await page.locator('#step').textContent()).trim(), '3 / 3');
  assert.deepEqual(errors, []);
  await page.close();
});

test('Stop cancels a run within a step', { timeout: 120_000 }, async () => {
  const { page, errors } = await openPage('?steps=500&engine=cpu&batch=1');
  await page.waitForFunction(() => (window.__frames || []).length >= 2, null, { timeout: 60_000 });
  await page.click('#stop');
  await page.waitForFunction(() => document.body.dataset.state === 'stopped', null, { timeout: 10_000 });
  const n = await page.evaluate(() => window.__frames.length);
  await new Promise((r) => setTimeout(r, 1000));
  assert.equal(await page.evaluate(() => window.__frames.length), n, 'no steps after the stop');
  assert.ok(n < 500);
  assert.ok(await page.locator('#error').isHidden(), 'a stop is not an error');
  assert.deepEqual(errors, []);
  await page.close();
});
