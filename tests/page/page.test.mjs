// Page tests, in headless Chromium (Playwright) and headless Firefox (WebDriver): see browsers.mjs.
// Serves www/ (built by ./build.sh), opens the page on both engines and checks that frames stream,
// the run finishes on a real image, the canvas shows exactly that image (in Firefox drawn by
// WebGPU presentation, no readback), both engines agree, and bad states show their errors.
// PAGE_BROWSERS=chromium,firefox,webkit (the default) picks the browsers.
import { describe, test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { mkdirSync, mkdtempSync, copyFileSync, rmSync, readFileSync, writeFileSync } from 'node:fs';
import os from 'node:os';
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
// The Hub double's repos (serve.py --hub: /hub/OWNER/NAME/resolve/main/PATH, weights behind a 302):
// test/pipeline, the bundled model as a diffusers pipeline.
const HUB = mkdtempSync(path.join(os.tmpdir(), 'ddim-hub-'));

function makeHubRepos() {
  const repo = path.join(HUB, 'test', 'pipeline');
  for (const d of ['unet', 'scheduler']) mkdirSync(path.join(repo, d), { recursive: true });
  const bundled = path.join(ROOT, 'weights', 'mnist-cond');
  for (const f of ['config.json', 'diffusion_pytorch_model.safetensors']) copyFileSync(path.join(bundled, f), path.join(repo, 'unet', f));
  copyFileSync(path.join(bundled, 'scheduler_config.json'), path.join(repo, 'scheduler', 'scheduler_config.json'));
  writeFileSync(path.join(repo, 'model_index.json'), JSON.stringify({ _class_name: 'DDPMPipeline', unet: ['diffusers', 'UNet2DModel'], scheduler: ['diffusers', 'DDPMScheduler'] }));
}

before(async () => {
  mkdirSync(OUT, { recursive: true });
  makeHubRepos();
  server = spawn('python3', [path.join(ROOT, 'tests/page/serve.py'), String(PORT), path.join(ROOT, 'www'),
                             '--mount', `/fixtures=${path.join(ROOT, 'tests/fixtures/models')}`, '--hub', `/hub=${HUB}`, '--csp'],
                 { stdio: ['ignore', 'pipe', 'inherit'] });
  await new Promise((resolve, reject) => {
    server.stdout.once('data', resolve);
    server.once('exit', (code) => reject(new Error(`server exited ${code}`)));
  });
});

after(() => { server?.kill(); rmSync(HUB, { recursive: true, force: true }); });

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
      // The engines agree to ~1e-4 in x, ~0.01 of a level: 8-bit rounding can move a pixel by one
      // level where x sits on a boundary, and only a few pixels sit there (it was 6 levels and a
      // mean of 0.5, which a wrong step or channel order could pass).
      const mean = sum / a.data.length;
      console.log(`# webgpu vs cpu canvas: max ${worst} level(s), mean ${mean.toExponential(2)}`);
      assert.ok(worst <= 1, `max pixel difference ${worst}`);
      assert.ok(mean < 0.02, `mean pixel difference ${mean}`);
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

    test('the page\'s embedded <ddim-sampler> element runs, with classifier guidance by attributes too', { timeout: 300_000 }, async () => {
      const page = await browser.open('?engine=cpu&steps=2&batch=1');
      await waitForEnd(page);
      await page.eval(() => { document.getElementById('embed-section').open = true; }); await page.click('#embed-start');
      await page.waitFor(() => /^(done|error)/.test(document.getElementById('embed-status').textContent), 240_000);
      assert.match(await page.text('#embed-status'), /^done in/);
      // Again on the same sampler (its engine in the worker: Firefox once refused the canvas's 2D context the second time).
      await page.eval(() => { document.getElementById('embed-status').textContent = ''; });
      await page.click('#embed-start');
      await page.waitFor(() => /^(done|error)/.test(document.getElementById('embed-status').textContent), 240_000);
      assert.match(await page.text('#embed-status'), /^done in/, 'a second start of the same element');
      assert.deepEqual(await page.errors(), []);
      // Classifier guidance by attributes: the element loads the bundled classifier and runs; an
      // out-of-range class is an error event naming it.
      await page.eval(() => {
        const el = document.getElementById('embed');
        for (const [k, v] of Object.entries({ engine: 'cpu', label: '10', 'classifier-scale': '4', 'classifier-class': '3', steps: '4' })) el.setAttribute(k, v);
        document.getElementById('embed-status').textContent = ''; // the last run's "done" is not this one's
      });
      await page.eval(() => { document.getElementById('embed-section').open = true; }); await page.click('#embed-start');
      await page.waitFor(() => /^(done|error)/.test(document.getElementById('embed-status').textContent), 240_000);
      assert.match(await page.text('#embed-status'), /^done in/);
      await page.eval(() => { document.getElementById('embed').setAttribute('classifier-class', '12'); document.getElementById('embed-status').textContent = ''; });
      await page.eval(() => { document.getElementById('embed-section').open = true; }); await page.click('#embed-start');
      await page.waitFor(() => /^(done|error)/.test(document.getElementById('embed-status').textContent), 240_000);
      assert.match(await page.text('#embed-status'), /class 12 is not one of the classifier's 10 classes/);
      await page.close();
    });

    test('the sampler control runs DPM-Solver++(2M), Euler and Heun, counting U-Net evaluations, on the schedule plot', { timeout: 300_000 }, async () => {
      const finals = {};
      for (const [sampler, evaluations] of [['ddim', 5], ['dpm++2m', 5], ['euler', 5], ['heun', 9], ['lms', 5], ['euler-ancestral', 5]]) {
        const page = await browser.open(`?engine=cpu&steps=5&batch=2&seed=11&sampler=${encodeURIComponent(sampler)}`);
        await waitForEnd(page);
        const frames = await page.eval(() => window.__frames);
        assert.equal(frames.length, evaluations, `${sampler}: one frame per U-Net evaluation`);
        assert.equal(await page.text('#step'), `${evaluations} / ${evaluations}`, `${sampler}: the counter shows evaluations`);
        assert.ok(new Set(frames.map((f) => f.hash)).size >= evaluations - 1, `${sampler}: frames stream`);
        const last = frames[frames.length - 1];
        assert.ok(last.max - last.min > 100, `${sampler}: the sample is an image, not noise or a flat field`);
        assert.equal(await page.eval(() => document.querySelector('[name=eta]').disabled), sampler !== 'ddim', `${sampler}: η only for DDIM`);
        // The schedule plot marks every evaluation's timestep, the last one current, on a drawn curve.
        const plot = await page.eval(() => {
          const c = document.getElementById('schedule');
          const d = c.getContext('2d').getImageData(0, 0, c.width, c.height).data;
          let lit = 0;
          for (let i = 3; i < d.length; i += 4) lit += d[i] > 0;
          return { ...window.__schedulePlot, lit, frames: window.__frames.map((f) => f.timestep) };
        });
        assert.deepEqual(plot.marks, plot.frames, `${sampler}: the plot marks each evaluation's timestep`);
        assert.equal(plot.current, evaluations - 1, `${sampler}: the last evaluation is the current mark`);
        assert.equal(plot.T, 1000);
        assert.ok(plot.lit > 300, `${sampler}: the schedule curve is drawn (${plot.lit} pixels)`);
        finals[sampler] = last.hash;
        assert.deepEqual(await page.errors(), []);
        await page.close();
      }
      // DDIM (η = 0) is Euler's method on the same ODE in x/√ᾱ coordinates, so with the same
      // timesteps the two end on (nearly) the same image; DPM-Solver++ and Heun are other methods.
      const { ddim, 'dpm++2m': dpm, heun } = finals;
      assert.equal(new Set([ddim, dpm, heun]).size, 3, `DDIM, DPM-Solver++ and Heun end on different images from the same noise: ${JSON.stringify(finals)}`);
    });

    // A learned time embedding has one row per integer timestep: the samplers whose timesteps lie
    // between integers (Euler, Heun, LMS, …) are not offered; the fused and host-stepped VP ones are.
    test('the sampler list is what the loaded model can run', { timeout: 120_000 }, async () => {
      const options = () => [...document.querySelector('[name=sampler]').options].map((o) => o.value);
      const bundled = await browser.open('?engine=cpu&steps=2&batch=1');
      await waitForEnd(bundled);
      const all = await bundled.eval(options);
      for (const s of ['ddim', 'ddpm', 'dpm++2m', 'euler', 'heun', 'pndm', 'lms', 'euler-ancestral']) assert.ok(all.includes(s), `bundled: ${s} in ${all}`);
      assert.equal(await bundled.eval(() => document.querySelector('[name=sampler]').value), 'ddpm', 'the bundled model\'s own DDPMScheduler preselected');
      await bundled.close();
      const page = await browser.open('?engine=cpu&steps=4&batch=1&sampler=pndm&model=/fixtures/learned_mish/');
      await waitForEnd(page);
      const list = await page.eval(options);
      assert.ok(list.includes('ddim') && list.includes('pndm') && list.includes('dpm++2m'), `learned: ${list}`);
      for (const s of ['euler', 'heun', 'lms', 'euler-ancestral']) assert.ok(!list.includes(s), `learned: ${s} is not offered: ${list}`);
      assert.equal(await page.eval(() => document.querySelector('[name=sampler]').value), 'pndm', '?sampler= is kept where the model runs it');
      assert.deepEqual(await page.errors(), []);
      await page.close();
    });

    // The adaptive ODE solver: as many frames as U-Net evaluations, the counter following them, and
    // a looser tolerance taking fewer.
    test('the adaptive RK45 ODE solver shows its evaluations and takes fewer at a looser tolerance', { timeout: 300_000 }, async () => {
      const counts = {};
      for (const tol of ['0.01', '0.1']) {
        const page = await browser.open(`?engine=cpu&batch=1&seed=3&sampler=vp-ode-rk45&tolerance=${tol}`);
        await waitForEnd(page);
        const frames = await page.eval(() => window.__frames.length);
        assert.equal(await page.text('#step'), `${frames} / ${frames}`, `tolerance ${tol}: the counter ends on the evaluations`);
        assert.equal(await page.eval(() => document.querySelector('[name=tolerance]').disabled), false);
        counts[tol] = frames;
        await page.close();
      }
      assert.ok(counts['0.1'] < counts['0.01'] && counts['0.1'] >= 8, `evaluations at 0.1 and 0.01: ${JSON.stringify(counts)}`);
    });

    // The predicted-noise view on both engines: a signed map (the bundled model is one channel:
    // blue below zero, red above), other pixels than the x_t view of the same run.
    for (const engine of ['cpu', ...(offers.webgpu ? ['webgpu'] : [])]) {
      test(`the predicted-noise view draws ε̂ on a signed colour map (${engine})`, { timeout: 300_000 }, async () => {
        const shots = {};
        for (const view of ['xt', 'eps']) {
          const page = await browser.open(`?engine=${engine}&steps=3&batch=2&seed=6&sampler=ddim&view=${view}`);
          await waitForEnd(page);
          shots[view] = await page.eval(() => {
            const canvas = document.getElementById('canvas');
            const c = document.createElement('canvas');
            c.width = canvas.width; c.height = canvas.height;
            const ctx = c.getContext('2d');
            ctx.drawImage(canvas, 0, 0);
            const d = ctx.getImageData(0, 0, c.width, c.height).data;
            let blue = 0, red = 0, grey = 0;
            for (let i = 0; i < d.length; i += 4) {
              if (d[i + 2] > d[i] + 40) blue++; else if (d[i] > d[i + 2] + 40) red++; else grey++;
            }
            return { blue, red, grey, hash: Array.from(d.slice(0, 4000)).join(',') };
          });
          assert.deepEqual(await page.errors(), []);
          await page.close();
        }
        assert.equal(shots.xt.blue + shots.xt.red, 0, 'x_t of a one-channel model is grey');
        assert.ok(shots.eps.blue > 20 && shots.eps.red > 20, `ε̂ has both signs: ${JSON.stringify({ ...shots.eps, hash: undefined })}`);
        assert.notEqual(shots.eps.hash, shots.xt.hash);
      });
    }

    // Classifier-free guidance decomposed: ε(∅) and the guidance term drawn on both engines; without
    // guidance those views are refused with a message (and disabled in the list).
    test('the guidance views draw ε(∅) and w·(ε(c) − ε(∅)), and are refused without guidance', { timeout: 300_000 }, async () => {
      for (const engine of ['cpu', ...(offers.webgpu ? ['webgpu'] : [])]) {
        for (const view of ['eps_uncond', 'guidance']) {
          const page = await browser.open(`?engine=${engine}&steps=3&batch=2&seed=6&sampler=ddim&class=3&guidance=3&view=${view}`);
          await waitForEnd(page);
          const signs = await page.eval(() => {
            const canvas = document.getElementById('canvas');
            const c = document.createElement('canvas');
            c.width = canvas.width; c.height = canvas.height;
            const ctx = c.getContext('2d');
            ctx.drawImage(canvas, 0, 0);
            const d = ctx.getImageData(0, 0, c.width, c.height).data;
            let blue = 0, red = 0;
            for (let i = 0; i < d.length; i += 4) { blue += d[i + 2] > d[i] + 20; red += d[i] > d[i + 2] + 20; }
            return { blue, red };
          });
          // The last step's guidance term is small (t near 0): some pixels of each sign suffice.
          assert.ok(signs.blue > 0 && signs.red > 0 && signs.blue + signs.red > 20, `${engine} ${view}: both signs drawn ${JSON.stringify(signs)}`);
          await page.close();
        }
      }
      const page = await browser.open('?engine=cpu&steps=2&batch=1&guidance=0&view=guidance');
      await page.waitFor(() => ['done', 'error'].includes(document.body.dataset.state), RUN_TIMEOUT);
      assert.match(await page.text('#error'), /guidance/);
      assert.equal(await page.eval(() => document.querySelector('[name=view] option[value=guidance]').disabled), true);
      await page.close();
    });

    // The numbers row (#31 item 1): σ_t falls step by step, log-SNR rises, ‖x_T‖ is a unit
    // Gaussian's (≈ √784 = 28 for the bundled model), x̂₀'s change has a value from the second frame.
    test('the numbers row shows σ_t, log-SNR, ‖x_t‖ and ‖Δx̂₀‖ for every step', { timeout: 300_000 }, async () => {
      for (const engine of ['cpu', ...(offers.webgpu ? ['webgpu'] : [])]) {
        const page = await browser.open(`?engine=${engine}&steps=6&batch=2&seed=3&sampler=ddim`);
        await waitForEnd(page);
        const rows = await page.eval(() => window.__frames.map((f) => f.numbers));
        assert.equal(rows.length, 6, `${engine}: a row per frame`);
        for (let k = 1; k < rows.length; k++) {
          assert.ok(rows[k].sigma < rows[k - 1].sigma && rows[k].logSnr > rows[k - 1].logSnr, `${engine}: σ falls, log-SNR rises: ${JSON.stringify(rows)}`);
          assert.ok(rows[k].x0Change > 0, `${engine}: x̂₀ moves: ${JSON.stringify(rows[k])}`);
        }
        assert.equal(rows[0].x0Change, null);
        assert.ok(rows[0].xNorm > 20 && rows[0].xNorm < 36, `${engine}: ‖x_t‖ after the first step ${rows[0].xNorm}`);
        assert.match(await page.text('#numbers'), /σ_t\s*0\.\d+.*log-SNR\s*-?\d/);
        await page.close();
      }
    });

    // Export and share (#31 item 4, in part): "Copy link" gives a URL that samples the same image;
    // the filmstrip as one PNG sheet holds every recorded frame.
    test('a copied link restores the same image, and the filmstrip exports as one sheet', { timeout: 300_000 }, async () => {
      const first = await browser.open('?engine=cpu&steps=5&batch=2&seed=9&sampler=ddim&class=3&guidance=1&classifierScale=2');
      await waitForEnd(first);
      const image = await first.eval(() => Array.from(window.__lastImage.data));
      await first.eval(() => document.getElementById('copy-link').click());
      await first.waitFor(() => typeof window.__link === 'string', 10_000);
      const link = await first.eval(() => window.__link);
      assert.match(link, /seed=9/);
      assert.match(link, /classifierScale=2/);
      const sheet = await first.eval(() => window.__filmSheet());
      assert.equal(sheet.frames, 5);
      assert.ok(sheet.width > 0 && sheet.height > 0, JSON.stringify(sheet));
      await first.close();
      const again = await browser.open(link.slice(link.indexOf('?')));
      await waitForEnd(again);
      assert.deepEqual(await again.eval(() => Array.from(window.__lastImage.data)), image, 'the link samples the same image');
      await again.close();
    });

    // Classifier guidance (#30): the bundled digit classifier loads on first use and steers the
    // unconditional model (the null class); its gradient view draws during the run; the final image
    // moves away from the unguided one of the same seed; without a scale the view is disabled.
    test('classifier guidance steers the unconditional model, and its gradient view draws', { timeout: 300_000 }, async () => {
      for (const engine of ['cpu', ...(offers.webgpu ? ['webgpu'] : [])]) {
        const images = [];
        for (const [scale, view] of [[0, 'xt'], [10, 'xt'], [10, 'classifier']]) {
          const page = await browser.open(`?engine=${engine}&steps=8&batch=2&seed=4&sampler=ddim&class=10&guidance=0&classifierScale=${scale}&classifierClass=3&view=${view}`);
          await waitForEnd(page);
          if (view === 'classifier') {
            assert.equal(await page.eval(() => document.querySelector('[name=view]').value), 'classifier');
            // The term is s·σ_t·∇ log p: it fades with σ_t towards the last step (t = 0), so the
            // frames of the run are what show it: a blue (negative) pixel lowers a frame's red minimum.
            const mins = await page.eval(() => window.__frames.map((f) => f.min));
            assert.ok(Math.min(...mins) < 200, `${engine}: the classifier's gradient is drawn during the run (red minima ${mins})`);
          } else {
            images.push(await page.eval(() => Array.from(window.__lastImage.data)));
          }
          await page.close();
        }
        const moved = images[0].reduce((n, v, i) => n + (Math.abs(v - images[1][i]) > 64), 0);
        assert.ok(moved > 50, `${engine}: classifier guidance changed ${moved} pixel channels of the same seed's image`);
      }
      const page = await browser.open('?engine=cpu&steps=2&batch=1&classifierScale=0&view=classifier');
      await page.waitFor(() => ['done', 'error'].includes(document.body.dataset.state), RUN_TIMEOUT);
      assert.match(await page.text('#error'), /classifier guidance/);
      assert.equal(await page.eval(() => document.querySelector('[name=view] option[value=classifier]').disabled), true);
      await page.close();
    });

    // The page sends each CPU worker its compiled WebAssembly.Module; a worker sent none (a browser
    // that cannot clone one) loads its own wasm: it still loads the model and runs a forward.
    test('a CPU worker sent no compiled module loads its own wasm and runs', { timeout: 120_000 }, async () => {
      const page = await browser.open('?steps=1');
      await waitForEnd(page);
      const r = await page.eval(async () => {
        const [config, weights] = await Promise.all([fetch('model/config.json').then((x) => x.text()),
          fetch('model/diffusion_pytorch_model.safetensors').then((x) => x.arrayBuffer())]);
        const c = JSON.parse(config);
        const worker = new Worker(new URL('pkg/cpu-worker.js', location.href), { type: 'module' });
        const next = () => new Promise((resolve) => { worker.onmessage = (e) => resolve(e.data); });
        let reply = next();
        worker.postMessage({ type: 'load', config, weights });
        const loaded = await reply;
        const shape = [1, c.in_channels, c.sample_size, c.sample_size];
        reply = next();
        worker.postMessage({ type: 'forward', sample: new Float32Array(shape.reduce((a, b) => a * b)).fill(0.5), shape: new Uint32Array(shape),
          timesteps: new Float32Array([500]), labels: c.num_class_embeds ? new Uint32Array([0]) : undefined });
        const out = await reply;
        worker.terminate();
        return { loaded: loaded.type, result: out.type, error: out.message ?? loaded.message ?? null, length: out.out?.length ?? 0,
                 expected: c.out_channels * c.sample_size * c.sample_size, finite: !!out.out && Array.from(out.out).every(Number.isFinite) };
      });
      assert.deepEqual({ ...r, expected: undefined }, { loaded: 'ready', result: 'result', error: null, length: r.expected, finite: true, expected: undefined });
      assert.deepEqual(await page.errors(), [], 'no uncaught page errors');
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

    test('an hf: pipeline repo loads through the Hub layout and its redirect; a missing repo is named', { timeout: 120_000 }, async () => {
      const page = await browser.open('?engine=cpu&steps=2&batch=1&seed=1&model=hf:test/pipeline&hubEndpoint=/hub');
      await waitForEnd(page);
      assert.match(await page.text('#model-info'), /model: 1\.\d+ M parameters/);
      // A CSP violation (the redirect leaving the allowed hosts) would be listed here.
      assert.deepEqual(await page.errors(), []);
      await page.close();
      const missing = await browser.open('?engine=cpu&model=hf:test/missing&hubEndpoint=/hub');
      await missing.waitFor(() => document.body.dataset.state === 'error', 60_000);
      assert.match(await missing.text('#error'), /\/hub\/test\/missing\/resolve\/main\/config\.json: HTTP 404: the repo or the revision may not exist/);
      assert.deepEqual((await missing.errors()).filter((e) => !/test\/missing|404/.test(e)), []);
      await missing.close();
    });

    test('a model URL that returns HTML, or a config holding markup, is an error shown as text', { timeout: 120_000 }, async () => {
      const markup = '<img src=x onerror="window.__xss=1">';
      const config = JSON.parse(readFileSync(path.join(ROOT, 'www', 'model', 'config.json'), 'utf8'));
      config.down_block_types[0] = markup;
      const folders = {
        html: ['<!doctype html>\n<html><body><h1>Sign in</h1></body></html>', /config\.json: the file is HTML or XML, not JSON/],
        markup: [JSON.stringify(config), /down_block_types/],
      };
      for (const [kind, [text, want]] of Object.entries(folders)) {
        const dir = path.join(ROOT, 'www', `test-model-${kind}-${browserName}`);
        mkdirSync(dir, { recursive: true });
        writeFileSync(path.join(dir, 'config.json'), text);
        copyFileSync(path.join(ROOT, 'www', 'model', 'diffusion_pytorch_model.safetensors'), path.join(dir, 'diffusion_pytorch_model.safetensors'));
        try {
          const page = await browser.open(`?engine=cpu&steps=2&batch=1&model=test-model-${kind}-${browserName}/`);
          await page.waitFor(() => document.body.dataset.state === 'error', 60_000);
          const shown = await page.text('#error');
          assert.match(shown, want, kind);
          if (kind === 'markup') assert.ok(shown.includes(markup), `the markup is shown as text: ${shown}`);
          assert.equal(await page.eval(() => document.querySelector('#error *') === null && window.__xss === undefined), true, `${kind}: nothing was interpreted`);
          // Any CSP violation would be listed here too (the page is served with its CSP).
          assert.deepEqual(await page.errors(), []);
          await page.close();
        } finally {
          rmSync(dir, { recursive: true, force: true });
        }
      }
    });

    // URL parameters are user input (#33 item 3): out-of-range numbers are errors naming the field,
    // markup is never interpreted (number inputs drop it; text is shown as text), and nothing else breaks.
    test('URL parameters with markup or out-of-range numbers are errors or dropped, never interpreted', { timeout: 300_000 }, async () => {
      const markup = encodeURIComponent('<img src=x onerror="window.__xss=1">');
      const cases = [
        ['steps=100000', /steps/],
        ['batch=-3', /batch/],
        ['eta=-1&sampler=ddim', /eta/],
        ['tolerance=-1&sampler=vp-ode-rk45', /tolerance/],
        ['classifierScale=-2', /classifier guidance scale = -2/],
        [`seed=${markup}`, null], // a number input drops it: the run goes on with seed 0
        [`guidance=${markup}`, null],
        [`model=${markup}`, /config\.json/],
        [`view=${markup}`, /view/],
      ];
      for (const [query, want] of cases) {
        // The case's own value first: the page reads a parameter's first occurrence.
        const page = await browser.open(`?${query}&engine=cpu&steps=2&batch=1`);
        await page.waitFor(() => ['done', 'error'].includes(document.body.dataset.state), RUN_TIMEOUT);
        const state = await page.eval(() => document.body.dataset.state);
        const shown = await page.text('#error');
        if (want) {
          assert.equal(state, 'error', `${query}: an error (${shown})`);
          assert.match(shown, want, query);
        } else {
          assert.equal(state, 'done', `${query}: ${shown}`);
        }
        assert.equal(await page.eval(() => document.querySelector('#error *') === null && window.__xss === undefined), true, `${query}: nothing was interpreted`);
        // The only page error is the run's own (none where it ran); no CSP violation.
        assert.ok((await page.errors()).every((e) => !/CSP/.test(e)), `${query}: ${await page.errors()}`);
        await page.close();
      }
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

    test('a GPU device lost mid-run says so, and the next Start makes a new device', { skip: !offers.webgpu && 'no WebGPU', timeout: 600_000 }, async () => {
      for (const thread of ['main', 'worker']) {
        const page = await browser.open(`?engine=webgpu&steps=30&batch=1&seed=2&thread=${thread}&model=/fixtures/class_f16/`);
        await page.waitFor(() => (window.__frames || []).length >= 2, 240_000);
        assert.equal(await page.eval(() => window.__loseDevice()), true, `${thread}: the hook reached a WebGPU sampler`);
        await page.waitFor(() => document.body.dataset.state === 'error', 60_000);
        assert.match(await page.text('#error'), /the GPU device was lost/, `${thread}: the page names the loss`);
        assert.ok((await page.eval(() => window.__frames.length)) < 30, `${thread}: the run stopped at the loss`);
        await page.click('#start');
        await waitForEnd(page);
        assert.equal(await page.eval(() => window.__frames.length), 30, `${thread}: the next Start ran all steps on a new device`);
        assert.deepEqual(await page.errors(), []);
        await page.close();
      }
      // The widget element: the same loss, its `error` event and status, then its next start().
      const page = await browser.open('?engine=cpu&steps=1&batch=1');
      await waitForEnd(page);
      await page.eval(() => {
        const e = document.getElementById('embed');
        for (const [k, v] of Object.entries({ engine: 'webgpu', model: '/fixtures/class_f16/', steps: '30', label: '1' })) e.setAttribute(k, v);
        window.__embedErrors = [];
        e.addEventListener('error', (ev) => window.__embedErrors.push(ev.detail.message));
      });
      await page.eval(() => { document.getElementById('embed-section').open = true; }); await page.click('#embed-start');
      await page.waitFor(() => /^step ([3-9]|[12][0-9])/.test(document.getElementById('embed-status').textContent), 240_000);
      // The test hook is a registered symbol, not public API (www/widget/sampler.js).
      assert.equal(await page.eval(() => document.getElementById('embed')[Symbol.for('ddim-webgpu.loseDeviceForTest')]()), true);
      await page.waitFor(() => window.__embedErrors.length > 0, 60_000);
      assert.match(await page.eval(() => window.__embedErrors[0]), /the GPU device was lost/);
      assert.match(await page.text('#embed-status'), /the GPU device was lost/);
      await page.eval(() => { document.getElementById('embed-status').textContent = 'restarting'; });
      await page.eval(() => { document.getElementById('embed-section').open = true; }); await page.click('#embed-start');
      await page.waitFor(() => /^(done|error)/.test(document.getElementById('embed-status').textContent), 240_000);
      assert.match(await page.text('#embed-status'), /^done in/);
      await page.close();
    });

    // Long sessions through the package API, on both engines (Chromium only: the same code runs
    // in every browser, and this takes minutes on SwiftShader): 100 runs cancelled mid-way and
    // restarted, then 50 samplers made, used and destroyed. GPU buffers and bytes return to the
    // baseline and the page's wasm heap stops growing.
    test('100 cancel/restart and 50 create/destroy cycles leak nothing', { skip: browserName !== 'chromium' && 'Chromium only', timeout: 900_000 }, async () => {
      const page = await browser.open('?engine=cpu&steps=1&batch=1');
      await waitForEnd(page);
      await page.eval(() => {
        window.__session = (async () => {
          const { createSampler, loadModel, liveStats } = await import('./pkg/index.js');
          const files = await loadModel('/fixtures/class_f16/');
          const out = {};
          for (const engine of ['webgpu', 'cpu']) {
            const make = () => createSampler({ canvas: document.createElement('canvas'), files, engine, thread: 'main' });
            const full = async (s) => { for await (const f of s.run({ steps: 3, batch: 2, seed: 1 })) void f; };
            const before = liveStats();
            const s = await make();
            await full(s);
            const base = s.stats();
            const heap = [];
            let cancelled = 0;
            for (let i = 0; i < 100; i++) {
              const ac = new AbortController();
              try {
                for await (const f of s.run({ steps: 20, batch: 2, seed: i, signal: ac.signal })) if (f.step >= 1 + (i % 3)) ac.abort();
              } catch (e) {
                if (e.name !== 'AbortError') throw e;
                cancelled++;
              }
              heap.push(liveStats().wasmHeapBytes);
            }
            await full(s);
            const afterCancel = s.stats();
            s.destroy();
            const created = [];
            for (let i = 0; i < 50; i++) {
              const t = await make();
              await full(t);
              t.destroy();
              await new Promise((r) => setTimeout(r, 0));
              created.push(liveStats());
            }
            out[engine] = { before, base, afterCancel, cancelled, heap, created, after: liveStats() };
          }
          return out;
        })().then((r) => { window.__sessionResult = r; }, (e) => { window.__sessionResult = { error: String(e?.message ?? e) }; });
      });
      await page.waitFor(() => window.__sessionResult !== undefined, 840_000);
      const r = await page.eval(() => window.__sessionResult);
      assert.equal(r.error, undefined, r.error);
      for (const engine of ['webgpu', 'cpu']) {
        const e = r[engine];
        assert.equal(e.cancelled, 100, `${engine}: every run was cancelled`);
        assert.deepEqual(e.afterCancel, e.base, `${engine}: GPU buffers and bytes after 100 cancelled runs`);
        if (engine === 'webgpu') assert.ok(e.base.gpuBuffers > 0, 'the WebGPU sampler reports its buffers');
        assert.deepEqual({ ...e.after, wasmHeapBytes: 0 }, { ...e.before, wasmHeapBytes: 0 }, `${engine}: nothing live after 50 create/destroy cycles`);
        // wasm memory never shrinks; a leak grows it cycle after cycle. Compare late cycles.
        assert.equal(e.heap[99], e.heap[49], `${engine}: the wasm heap grew from ${e.heap[49]} to ${e.heap[99]} bytes over 50 cancelled runs`);
        assert.equal(e.created[49].wasmHeapBytes, e.created[24].wasmHeapBytes, `${engine}: the wasm heap grew over 25 create/destroy cycles`);
        console.log(`# ${engine}: GPU buffers ${e.base.gpuBuffers} (${e.base.gpuBytes} bytes) before and after 100 cancelled runs; ` +
          `wasm heap ${e.heap[0]} → ${e.heap[99]} bytes; after 50 create/destroy: ${e.after.samplers} samplers, ${e.after.gpuBuffers} buffers, heap ${e.after.wasmHeapBytes}`);
      }
      assert.deepEqual(await page.errors(), []);
      await page.close();
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
