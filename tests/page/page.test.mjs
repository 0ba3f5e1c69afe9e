// Page tests, in headless Chromium (Playwright) and headless Firefox (WebDriver): see browsers.mjs.
// Serves www/ (built by ./build.sh), opens the page on both engines and checks that frames stream,
// the run finishes on a real image, the canvas shows exactly that image (in Firefox drawn by
// WebGPU presentation, no readback), both engines agree, and bad states show their errors.
// PAGE_BROWSERS=chromium,firefox,webkit (the default) picks the browsers.
import { describe, test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { mkdirSync, copyFileSync, rmSync } from 'node:fs';
import path from 'node:path';
import { launch } from './browsers.mjs';

const ROOT = path.resolve(import.meta.dirname, '../..');
const OUT = path.join(ROOT, 'test-output');
const PORT = 18000 + Math.floor(Math.random() * 1000);
const BASE = `http://127.0.0.1:${PORT}`;
const RUN_TIMEOUT = 15 * 60 * 1000;
const BROWSERS = (process.env.PAGE_BROWSERS || 'chromium,firefox,webkit').split(',').filter(Boolean);
// What each browser offers here (checked by the tests, not assumed by them): WebGPU, and whether
// it can present a WebGPU canvas (headless Chromium cannot: its frames come by readback).
const OFFERS = {
  chromium: { webgpu: true, presents: false },
  firefox: { webgpu: true, presents: true },
  webkit: { webgpu: false, presents: false },
};

let server;

before(async () => {
  mkdirSync(OUT, { recursive: true });
  server = spawn('python3', [path.join(ROOT, 'tests/page/serve.py'), String(PORT), path.join(ROOT, 'www'),
                             '--mount', `/fixtures=${path.join(ROOT, 'tests/fixtures/models')}`],
                 { stdio: ['ignore', 'pipe', 'inherit'] });
  await new Promise((resolve, reject) => {
    server.stdout.once('data', resolve);
    server.once('exit', (code) => reject(new Error(`server exited ${code}`)));
  });
});

after(() => server?.kill());

async function waitForEnd(page) {
  await page.waitFor(() => ['done', 'error'].includes(document.body.dataset.state), RUN_TIMEOUT);
  const state = await page.eval(() => document.body.dataset.state);
  assert.equal(state, 'done', `the run ended in state ${state}: ${await page.text('#error')}`);
}

// What the canvas shows (through drawImage, as a page would copy it) and the engine's last sample
// rendered on the CPU (lastImage: x read back, mapped to RGBA in Rust).
const canvasAndLastImage = () => {
  const canvas = document.getElementById('canvas');
  const c = document.createElement('canvas');
  c.width = canvas.width; c.height = canvas.height;
  const ctx = c.getContext('2d');
  ctx.drawImage(canvas, 0, 0);
  const shown = ctx.getImageData(0, 0, c.width, c.height).data;
  const last = window.__lastImage;
  return { w: c.width, h: c.height, shown: Array.from(shown), last: { w: last.width, h: last.height, data: Array.from(last.data) } };
};

function assertCanvasShowsLastImage(r, label) {
  assert.equal(r.w, r.last.w, `${label}: canvas width`);
  assert.equal(r.h, r.last.h, `${label}: canvas height`);
  let worst = 0;
  for (let i = 0; i < r.shown.length; i++) worst = Math.max(worst, Math.abs(r.shown[i] - r.last.data[i]));
  // The present shader and the CPU presenter compute the same clamp((x+1)/2)·255; rounding may differ by 1.
  assert.ok(worst <= 1, `${label}: the canvas differs from the sample by up to ${worst} levels`);
}

for (const browserName of BROWSERS) {
  describe(browserName, () => {
    let browser;
    const finals = {};
    before(async () => { browser = await launch(browserName, BASE); });
    after(async () => { await browser?.close(); });

    const offers = OFFERS[browserName];
    for (const engine of offers.webgpu ? ['webgpu', 'cpu'] : ['cpu']) {
      test(`page samples live on the ${engine} engine`, { timeout: RUN_TIMEOUT + 60_000 }, async () => {
        const page = await browser.open(`?steps=10&seed=1&engine=${engine}`);
        await waitForEnd(page);
        const frames = await page.eval(() => window.__frames);
        assert.equal(frames.length, 10, 'one drawn frame per step');
        const distinct = new Set(frames.map((f) => f.hash)).size;
        assert.ok(distinct >= 5, `the canvas changed only ${distinct} times while sampling`);
        const last = frames[frames.length - 1];
        assert.ok(last.max - last.min > 64, `final image is nearly uniform (min ${last.min}, max ${last.max})`);
        assert.equal((await page.text('#step')).trim(), '10 / 10');
        assert.equal(await page.text('#engine'), engine === 'webgpu' ? 'WebGPU' : 'CPU (wasm)');
        const adapter = await page.text('#adapter');
        assert.ok(adapter.length > 3, 'adapter is named');
        if (engine === 'webgpu') {
          assert.equal(!/readback/.test(adapter), offers.presents, `WebGPU frames ${offers.presents ? 'presented' : 'read back'}: ${adapter}`);
        }
        const r = await page.eval(canvasAndLastImage);
        assertCanvasShowsLastImage(r, `${engine} engine`);
        await page.screenshot(path.join(OUT, `page-${browserName}-${engine}.png`));
        finals[engine] = r.last;
        assert.deepEqual(await page.errors(), [], 'no uncaught page errors');
        await page.close();
      });
    }

    // The engine in a module Web Worker drawing to the canvas's OffscreenCanvas (?thread=worker).
    for (const engine of offers.webgpu ? ['webgpu', 'cpu'] : ['cpu']) {
      test(`the ${engine} engine runs in a Web Worker on an OffscreenCanvas`, { timeout: RUN_TIMEOUT }, async () => {
        const page = await browser.open(`?steps=10&seed=1&batch=2&engine=${engine}&thread=worker`);
        await waitForEnd(page);
        assert.equal(await page.text('#thread'), 'Web Worker (OffscreenCanvas)');
        const frames = await page.eval(() => window.__frames);
        assert.equal(frames.length, 10, 'one frame per step');
        const distinct = new Set(frames.map((f) => f.hash)).size;
        assert.ok(distinct >= 5, `the canvas changed only ${distinct} times while sampling`);
        if (engine === 'webgpu') {
          const adapter = await page.text('#adapter');
          assert.equal(!/readback/.test(adapter), offers.presents, `WebGPU frames ${offers.presents ? 'presented' : 'read back'} in the worker: ${adapter}`);
        }
        assertCanvasShowsLastImage(await page.eval(canvasAndLastImage), `${engine} engine in a worker`);
        assert.deepEqual(await page.errors(), []);
        await page.close();
      });
    }

    test('webgpu and cpu engines end on the same image for the same seed', { skip: !offers.webgpu && 'no WebGPU' }, () => {
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

    // A 3-channel model (random weights: every colour appears), so a swapped red and blue in the
    // WebGPU canvas (bgra8unorm in Firefox) cannot pass.
    test('a colour model is drawn with its channels in place', { timeout: 300_000 }, async () => {
      const page = await browser.open(`?engine=${offers.webgpu ? 'webgpu' : 'cpu'}&steps=3&seed=4&batch=4&model=/fixtures/cifar_like/`);
      await waitForEnd(page);
      const r = await page.eval(canvasAndLastImage);
      let redBlue = 0;
      for (let i = 0; i < r.last.data.length; i += 4) redBlue += Math.abs(r.last.data[i] - r.last.data[i + 2]);
      assert.ok(redBlue / (r.last.data.length / 4) > 8, 'the sample has colour (red differs from blue)');
      assertCanvasShowsLastImage(r, 'colour model');
      await page.close();
    });

    test('the page\'s embedded <ddim-sampler> element runs', { timeout: 300_000 }, async () => {
      const page = await browser.open('?engine=cpu&steps=2&batch=1');
      await waitForEnd(page);
      await page.click('#embed-start');
      await page.waitFor(() => /^(done|error)/.test(document.getElementById('embed-status').textContent), 240_000);
      assert.match(await page.text('#embed-status'), /^done in/);
      assert.deepEqual(await page.errors(), []);
      await page.close();
    });

    test('a broken model URL shows its error in the page', async () => {
      const page = await browser.open('?engine=cpu&model=no-such-model/');
      await page.waitFor(() => document.body.dataset.state === 'error', 60_000);
      const text = await page.text('#error');
      assert.match(text, /no-such-model\/config\.json/);
      assert.match(text, /404/);
      assert.ok(await page.visible('#error'));
      await page.screenshot(path.join(OUT, `page-${browserName}-bad-model.png`));
      assert.deepEqual((await page.errors()).filter((e) => !/no-such-model/.test(e)), []);
      await page.close();
    });

    test('a model folder without scheduler_config.json samples with the defaults and says so', { timeout: 120_000 }, async () => {
      // The bundled model's weights in a folder that has no scheduler_config.json (served: HTTP 404).
      const dir = path.join(ROOT, 'www', `test-model-no-scheduler-${browserName}`);
      mkdirSync(dir, { recursive: true });
      for (const f of ['config.json', 'diffusion_pytorch_model.safetensors']) copyFileSync(path.join(ROOT, 'www', 'model', f), path.join(dir, f));
      try {
        const page = await browser.open(`?engine=cpu&steps=2&batch=1&model=test-model-no-scheduler-${browserName}/`);
        await waitForEnd(page);
        assert.match(await page.text('#model-info'), /scheduler: diffusers' DDIMScheduler defaults \(no scheduler_config\.json\)/);
        assert.deepEqual(await page.errors(), []);
        await page.close();
      } finally {
        rmSync(dir, { recursive: true, force: true });
      }
    });

    test('Stop cancels a run within a step', { timeout: 120_000 }, async () => {
      const page = await browser.open('?steps=500&engine=cpu&batch=1');
      await page.waitFor(() => (window.__frames || []).length >= 2, 60_000);
      await page.click('#stop');
      await page.waitFor(() => document.body.dataset.state === 'stopped', 10_000);
      const n = await page.eval(() => window.__frames.length);
      await new Promise((r) => setTimeout(r, 1000));
      assert.equal(await page.eval(() => window.__frames.length), n, 'no steps after the stop');
      assert.ok(n < 500);
      assert.equal(await page.visible('#error'), false, 'a stop is not an error');
      assert.deepEqual(await page.errors(), []);
      await page.close();
    });
  });
}

// Without WebGPU (Chromium: navigator.gpu removed; WebKitGTK: not built in) or without an adapter
// (Firefox with its WebGPU blocklist on, as most users have it): auto runs the CPU engine and says
// why; an explicit engine=webgpu is an error that says why, never a silent CPU run.
const NO_GPU = {
  chromium: { launch: {}, open: { noGpu: true }, why: /no WebGPU/ },
  firefox: { launch: { webgpu: false }, open: {}, why: /no adapter/ },
  webkit: { launch: {}, open: {}, why: /no WebGPU/ },
};
for (const browserName of BROWSERS) {
  describe(`${browserName} without WebGPU`, () => {
    let browser;
    before(async () => { browser = await launch(browserName, BASE, NO_GPU[browserName].launch); });
    after(async () => { await browser?.close(); });

    test('auto says so and runs the CPU engine', { timeout: 120_000 }, async () => {
      const page = await browser.open('?steps=3&seed=2', NO_GPU[browserName].open);
      await waitForEnd(page);
      assert.equal(await page.text('#engine'), 'CPU (wasm)');
      assert.match(await page.text('#engine-reason'), NO_GPU[browserName].why);
      assert.equal((await page.text('#step')).trim(), '3 / 3');
      assert.deepEqual(await page.errors(), []);
      await page.close();
    });

    test('an explicit engine=webgpu shows an error instead of running the CPU engine', { timeout: 60_000 }, async () => {
      const page = await browser.open('?steps=3&seed=2&engine=webgpu', NO_GPU[browserName].open);
      await page.waitFor(() => ['done', 'error'].includes(document.body.dataset.state), 30_000);
      assert.equal(await page.eval(() => document.body.dataset.state), 'error');
      const text = await page.text('#error');
      assert.match(text, /WebGPU was requested/);
      assert.match(text, NO_GPU[browserName].why);
      assert.equal(await page.eval(() => window.__frames.length), 0, 'nothing ran');
      await page.close();
    });
  });
}
