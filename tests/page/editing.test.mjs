// The editing features on the page, in headless Chromium (Playwright), each exercised once through
// its page control on the CPU engine: the drawing pad, SDEdit, RePaint, DDIM inversion with its
// reconstruction error, slerp interpolation, the forward process, the filmstrip and "same noise,
// other sampler". Each checks that frames stream and that the result differs from its input where
// it should. UPDATE_SCREENSHOTS=1 writes the README's screenshots (tests/page/screenshots/).
import { describe, test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { mkdirSync } from 'node:fs';
import path from 'node:path';
import { launch } from './browsers.mjs';

const ROOT = path.resolve(import.meta.dirname, '../..');
const SHOTS = path.join(ROOT, 'tests/page/screenshots');
const PORT = 19000 + Math.floor(Math.random() * 1000);
const BASE = `http://127.0.0.1:${PORT}`;
const BROWSERS = (process.env.PAGE_BROWSERS || 'chromium').split(',');
// A 28×28 digit model, 10 steps, one image of class 3, no guidance: quick on the CPU engine.
const QUERY = '?engine=cpu&steps=10&batch=1&seed=1&class=3&guidance=0&sampler=ddim';

let server, browser;

before(async () => {
  if (!BROWSERS.includes('chromium')) return;
  server = spawn('python3', [path.join(ROOT, 'tests/page/serve.py'), String(PORT), path.join(ROOT, 'www'), '--csp'],
                 { stdio: ['ignore', 'pipe', 'inherit'] });
  await new Promise((resolve, reject) => {
    server.stdout.once('data', resolve);
    server.once('exit', (code) => reject(new Error(`server exited ${code}`)));
  });
  browser = await launch('chromium', BASE);
});

after(async () => { await browser?.close(); server?.kill(); });

async function waitForEnd(page) {
  await page.waitFor(() => ['done', 'error', 'stopped'].includes(document.body.dataset.state), 300_000);
  const state = await page.eval(() => document.body.dataset.state);
  assert.equal(state, 'done', `the run ended in state ${state}: ${await page.text('#error')}`);
}

/** Sets form controls, presses Start (the state turns "starting" at once) and waits for the end. */
async function runWith(page, settings) {
  await page.eval((s) => {
    const f = document.getElementById('controls').elements;
    for (const [k, v] of Object.entries(s)) {
      if (f[k].type === 'checkbox') f[k].checked = v; else f[k].value = String(v);
      f[k].dispatchEvent(new Event('change'));
    }
    document.getElementById('start').click();
  }, settings);
  await waitForEnd(page);
  return page.eval(() => ({ frames: window.__frames, film: window.__film, result: window.__lastResult }));
}

/** The pad's image and the page's last sample, as values in −1 … 1. */
const padImage = (page) => page.eval(() => Array.from(window.__pad.image()));
const lastValues = (page) => page.eval(() => {
  const img = window.__lastImage; // RGBA of the batch grid; item 0 is the top-left 28×28
  return Array.from({ length: 28 * 28 }, (_, i) => (img.data[((i / 28 | 0) * img.width + (i % 28)) * 4] / 255) * 2 - 1);
});
const rms = (a, b, keep = () => true) => {
  let s = 0, n = 0;
  a.forEach((v, i) => { if (keep(i)) { s += (v - b[i]) ** 2; n++; } });
  return Math.sqrt(s / n);
};

async function shoot(page, name) {
  if (!process.env.UPDATE_SCREENSHOTS) return;
  mkdirSync(SHOTS, { recursive: true });
  await page.screenshotOf('main', path.join(SHOTS, `${name}.png`));
}

/** A first page: its opening run (a sample from noise) fills the pad. */
async function openPage() {
  const page = await browser.open(QUERY);
  await waitForEnd(page);
  await page.waitFor(() => window.__pad && window.__pad.image().some((v) => v > 0), 10_000);
  await page.eval(() => { document.getElementById('image-details').open = true; }); // the pad is drawn on: shown
  return page;
}

describe('editing on the page (chromium)', { skip: !BROWSERS.includes('chromium') }, () => {
  test('the drawing pad: pointer strokes, undo, clear, and a painted mask', { timeout: 300_000 }, async () => {
    const page = await openPage();
    const drawn = await page.eval(() => {
      const pad = document.getElementById('pad');
      const r = pad.getBoundingClientRect();
      const ev = (type, x, y) => pad.dispatchEvent(new PointerEvent(type, { clientX: r.left + x * r.width, clientY: r.top + y * r.height, pointerId: 1, bubbles: true }));
      const sum = () => window.__pad.image().reduce((a, v) => a + v, 0);
      document.getElementById('pad-clear').click();
      const cleared = sum();
      ev('pointerdown', 0.2, 0.2); ev('pointermove', 0.5, 0.8); ev('pointermove', 0.8, 0.2); ev('pointerup', 0.8, 0.2);
      const stroked = sum();
      document.getElementById('pad-undo').click();
      const undone = sum();
      const paint = document.querySelector('[name=paint]');
      paint.value = 'mask'; paint.dispatchEvent(new Event('change'));
      ev('pointerdown', 0.1, 0.5); ev('pointermove', 0.9, 0.5); ev('pointerup', 0.9, 0.5);
      return { cleared, stroked, undone, hole: window.__pad.holeSize() };
    });
    assert.equal(drawn.cleared, -784, 'Clear leaves a black (−1) image');
    assert.ok(drawn.stroked > drawn.cleared + 50, `a stroke paints white: ${JSON.stringify(drawn)}`);
    assert.equal(drawn.undone, drawn.cleared, 'Undo removes the stroke');
    assert.ok(drawn.hole > 28 && drawn.hole < 400, `the mask stroke marks a band to fill (${drawn.hole} pixels)`);
    assert.deepEqual(await page.errors(), []);
    await page.close();
  });

  test('edit (SDEdit): the noising streams, then the denoising; low strength stays near the image', { timeout: 300_000 }, async () => {
    const page = await openPage();
    const input = await padImage(page);
    const { frames, film } = await runWith(page, { mode: 'edit', strength: 0.5, class: 8 });
    // 10 steps at strength 0.5: 5 noising frames, then the last 5 steps.
    assert.deepEqual(frames.map((f) => f.phase), [...Array(5).fill('forward'), ...Array(5).fill('reverse')]);
    assert.ok(new Set(frames.map((f) => f.hash)).size >= 8, 'frames stream');
    assert.equal(film.length, 10, 'the filmstrip holds every frame');
    const out = await lastValues(page);
    const d = rms(out, input);
    assert.ok(d > 0.05, `the edit changed the image (RMS ${d})`);
    await shoot(page, 'edit');
    assert.deepEqual(await page.errors(), []);
    await page.close();
  });

  test('inpaint (RePaint): the painted hole is filled, the rest is the image', { timeout: 300_000 }, async () => {
    const page = await openPage();
    // Blank the right half of the image and paint it as the hole.
    await page.eval(() => {
      const pad = window.__pad;
      const g = pad.img.getContext('2d');
      g.fillStyle = '#000'; g.fillRect(14, 0, 14, 28);
      const m = pad.msk.getContext('2d');
      m.fillStyle = '#f33'; m.fillRect(14, 0, 14, 28);
      pad.draw();
    });
    const input = await padImage(page);
    const { frames } = await runWith(page, { mode: 'inpaint', jumpLength: 3, jumpNSample: 2 });
    // 10 steps + one extra pass of 3 steps at steps 0, 3 and 6: 19 evaluations.
    assert.equal(frames.length, 19);
    assert.ok(frames.every((f) => f.phase === 'reverse'));
    const out = await lastValues(page);
    const right = (i) => i % 28 >= 14;
    assert.ok(rms(out, input, (i) => !right(i)) < 0.01, 'the known half is kept (to 8-bit rounding)');
    assert.ok(rms(out, input, right) > 0.1, 'the hole was filled');
    await shoot(page, 'inpaint');
    assert.deepEqual(await page.errors(), []);
    await page.close();
  });

  test('invert: to x_T and back, with the reconstruction error; interpolate to the inverted image', { timeout: 300_000 }, async () => {
    const page = await openPage();
    const input = await padImage(page);
    const { frames, result } = await runWith(page, { mode: 'invert', steps: 50 });
    assert.deepEqual(frames.map((f) => f.phase), [...Array(50).fill('inversion'), ...Array(50).fill('reverse')]);
    // The CLI gives the same numbers for this image (a 10-step sample): RMSE 0.070, PSNR 29.2 dB.
    const r = result.reconstruction;
    assert.ok(r.rmse < 0.1 && r.psnr > 25, `reconstruction ${JSON.stringify(r)}`);
    assert.match(await page.text('#recon'), /RMSE 0\.\d{4}.*PSNR \d+\.\d dB/);
    assert.ok(rms(await lastValues(page), input) < 0.1, 'the reconstruction is the image');
    await shoot(page, 'invert');
    // Interpolate from seed 5 to the inverted image: the strip ends on the reconstruction.
    const interp = await runWith(page, { mode: 'interpolate', seed: 5, batch: 6, toLatent: true, steps: 50 });
    assert.equal(interp.frames.length, 50);
    const strip = await page.eval(() => {
      const c = document.getElementById('strip');
      const d = c.getContext('2d').getImageData(0, 0, c.width, c.height).data;
      const tile = (k) => Array.from({ length: 28 * 28 }, (_, i) => (d[((i / 28 | 0) * c.width + k * 28 + (i % 28)) * 4] / 255) * 2 - 1);
      return { w: c.width, h: c.height, first: tile(0), last: tile(5), visible: !document.getElementById('strip-figure').hidden };
    });
    assert.deepEqual([strip.w, strip.h, strip.visible], [6 * 28, 28, true]);
    assert.ok(rms(strip.last, input) < 0.1, 'the strip ends on the inverted image');
    assert.ok(rms(strip.first, input) > 0.2, 'and starts elsewhere');
    await shoot(page, 'interpolate');
    assert.deepEqual(await page.errors(), []);
    await page.close();
  });

  test('the forward process, the filmstrip scrub, and the same noise with another sampler', { timeout: 300_000 }, async () => {
    const page = await openPage();
    const { frames } = await runWith(page, { mode: 'forward', steps: 8, tEnd: 999 });
    assert.deepEqual(frames.map((f) => f.timestep), [124, 249, 374, 499, 624, 749, 874, 999]);
    assert.ok(frames.every((f) => f.phase === 'forward'));
    assert.ok(new Set(frames.map((f) => f.hash)).size === 8, 'every level looks different');
    // Scrub back to the first frame: the film shows the least noised image beside the clean one.
    const scrub = await page.eval(() => {
      const pos = document.getElementById('film-pos');
      const grab = () => {
        const c = document.getElementById('film');
        return Array.from(c.getContext('2d').getImageData(0, 0, c.width, c.height).data);
      };
      const end = grab();
      pos.value = '0'; pos.dispatchEvent(new Event('input'));
      return { max: pos.max, label: document.getElementById('film-label').textContent, changed: grab().some((v, i) => v !== end[i]) };
    });
    assert.equal(scrub.max, '7');
    assert.match(scrub.label, /frame 1 \/ 8: forward, t = 124/);
    assert.ok(scrub.changed, 'scrubbing shows another frame');
    await shoot(page, 'forward');
    // Same noise, other sampler: DDIM then Heun from seed 1.
    await page.eval(() => {
      document.querySelector('[name=mode]').value = 'sample';
      document.querySelector('[name=steps]').value = '10';
      document.getElementById('compare-sampler').value = 'heun';
      document.getElementById('compare-run').click();
    });
    await page.waitFor(() => window.__compare?.length === 2 || document.body.dataset.state === 'error', 300_000);
    const cmp = await page.eval(() => window.__compare);
    assert.ok(cmp, await page.text('#error'));
    assert.deepEqual(cmp.map((c) => [c.sampler, c.evaluations]), [['ddim', 10], ['heun', 19]]);
    assert.ok(cmp[0].data.some((v, i) => v !== cmp[1].data[i]), 'two samplers, two images');
    assert.ok(await page.visible('#compare-figure'));
    await shoot(page, 'compare');
    assert.deepEqual(await page.errors(), []);
    await page.close();
  });
});
