// The npm package as a web developer gets it: `npm pack www/pkg`, the tarball installed into fresh
// copies of consumer projects — tests/consumer/html (a plain page with an import map) and
// tests/consumer/vite (a Vite build; vite from the registry, pinned by its package-lock.json) —
// served statically and driven with Playwright in headless Chromium; and a strict TypeScript
// consumer (tests/consumer/ts) type-checked with tsc against the package's declarations.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { spawn, execFileSync } from 'node:child_process';
import { mkdtempSync, cpSync, rmSync, readFileSync, writeFileSync, utimesSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { launch } from '../page/browsers.mjs';

const ROOT = path.resolve(import.meta.dirname, '../..');
const PORT = 17000 + Math.floor(Math.random() * 1000);
const BASE = `http://127.0.0.1:${PORT}`;
const WEIGHTS = '/html/node_modules/ddim-webgpu/model/diffusion_pytorch_model.safetensors';

let tmp, server, browser;
const requests = []; // "METHOD /path" served, in order

const npm = (args, cwd) => execFileSync('npm', [...args, '--no-audit', '--no-fund', '--loglevel=error'], { cwd, stdio: 'inherit' });

function install(project) {
  const dir = path.join(tmp, project);
  cpSync(path.join(ROOT, 'tests/consumer', project), dir, { recursive: true, filter: (f) => !f.includes('node_modules') });
  if (project === 'vite') npm(['ci'], dir); // vite at the version package-lock.json pins
  execFileSync('npm', ['install', '--no-audit', '--no-fund', '--no-save', '--loglevel=error', path.join(tmp, TARBALL)], { cwd: dir, stdio: 'inherit' });
  return dir;
}
let TARBALL;

before(async () => {
  tmp = mkdtempSync(path.join(tmpdir(), 'ddim-consumer-'));
  TARBALL = execFileSync('npm', ['pack', path.join(ROOT, 'www/pkg'), '--pack-destination', tmp, '--silent'], { encoding: 'utf8' }).trim().split('\n').pop();
  install('html');
  const vite = install('vite');
  npm(['run', 'build'], vite);
  server = spawn('python3', [path.join(ROOT, 'tests/page/serve.py'), String(PORT), tmp, '-v'], { stdio: ['ignore', 'pipe', 'pipe'] });
  server.stderr.on('data', (d) => {
    for (const m of String(d).matchAll(/"(GET|HEAD) ([^ ]+) HTTP/g)) requests.push(`${m[1]} ${m[2]}`);
  });
  await new Promise((resolve, reject) => {
    server.stdout.once('data', resolve);
    server.once('exit', (code) => reject(new Error(`server exited ${code}`)));
  });
  browser = await launch('chromium', BASE);
});

after(async () => {
  await browser?.close();
  server?.kill();
  if (tmp) rmSync(tmp, { recursive: true, force: true });
});

async function openConsumer(project = 'html') {
  const page = await browser.open(project === 'vite' ? 'vite/dist/index.html' : 'html/index.html');
  await page.waitFor(() => document.body.dataset.ready === 'yes', 30_000);
  return page;
}

// Adds a <ddim-sampler> with `attrs` (autoplay) and resolves when it fires done or error, with
// the load detail, every frame (with a checksum of the canvas as shown) and the progress events.
const runElement = async (attrs) => {
  const hash = (canvas) => {
    const c = document.createElement('canvas');
    c.width = canvas.width; c.height = canvas.height;
    const ctx = c.getContext('2d');
    ctx.drawImage(canvas, 0, 0);
    let h = 2166136261 >>> 0;
    for (const v of ctx.getImageData(0, 0, c.width, c.height).data) h = Math.imul(h ^ v, 16777619) >>> 0;
    return h;
  };
  const el = document.createElement('ddim-sampler');
  for (const [k, v] of Object.entries(attrs)) el.setAttribute(k, v);
  el.setAttribute('autoplay', '');
  const out = { frames: [], progress: [], load: null, done: null, error: null };
  el.addEventListener('load', (e) => { out.load = e.detail; });
  el.addEventListener('progress', (e) => out.progress.push(e.detail));
  el.addEventListener('frame', (e) => out.frames.push({ ...e.detail, hash: hash(el.shadowRoot.querySelector('canvas')) }));
  const end = new Promise((resolve) => {
    el.addEventListener('done', (e) => { out.done = e.detail; resolve(); });
    el.addEventListener('error', (e) => { out.error = e.detail.message; resolve(); });
  });
  document.getElementById('slot').append(el);
  await end;
  return out;
};

test('the element streams frames on the CPU engine and fires done', { timeout: 120_000 }, async () => {
  const page = await openConsumer();
  const r = await page.eval(runElement, { engine: 'cpu', steps: '10', batch: '2', seed: '3' });
  assert.equal(r.error, null, `error event: ${r.error}`);
  assert.equal(r.frames.length, 10);
  assert.ok(new Set(r.frames.map((f) => f.hash)).size >= 5, 'at least 5 distinct frames');
  assert.deepEqual(r.done.steps, 10);
  assert.equal(r.load.engine, 'cpu');
  assert.match(r.load.reason, /CPU engine requested/);
  assert.equal(r.load.thread, 'worker', `the engine runs off the page's thread: ${r.load.threadReason}`);
  assert.equal(r.load.modelInfo.numClassEmbeds, 11, 'the bundled model, resolved relative to the package');
  assert.ok(r.progress.length >= 1 && r.progress.at(-1).loaded === r.progress.at(-1).total, 'download progress reaches the total');
  assert.deepEqual(await page.errors(), []);
  await page.close();
});

test('in a Vite build, the element runs with the bundled model and the CPU workers', { timeout: 300_000 }, async () => {
  const page = await openConsumer('vite');
  for (const engine of ['cpu', 'webgpu']) {
    const r = await page.eval(runElement, { engine, steps: '6', batch: '2', seed: '3' });
    assert.equal(r.error, null, `${engine}: error event: ${r.error}`);
    assert.equal(r.load.modelInfo.numClassEmbeds, 11, 'the bundled model, emitted as assets by Vite');
    assert.ok(new Set(r.frames.map((f) => f.hash)).size >= 5, `${engine}: at least 5 distinct frames`);
    if (engine === 'cpu') assert.match(r.load.adapter, /in \d+ Web Worker\(s\)/, 'the CPU engine runs in the bundled workers');
    assert.equal(r.load.thread, 'worker', `${engine}: the bundled engine worker runs it: ${r.load.threadReason}`);
  }
  assert.deepEqual(await page.errors(), []);
  await page.close();
});

test('the element runs on WebGPU too', { timeout: 300_000 }, async () => {
  const page = await openConsumer();
  const r = await page.eval(runElement, { engine: 'webgpu', steps: '6', batch: '1', seed: '3' });
  assert.equal(r.error, null, `error event: ${r.error}`);
  assert.equal(r.load.engine, 'webgpu');
  assert.equal(r.load.thread, 'worker', `WebGPU in the engine worker: ${r.load.threadReason}`);
  assert.ok(new Set(r.frames.map((f) => f.hash)).size >= 5, 'at least 5 distinct frames');
  await page.close();
});

test('stop() ends a run within one step', { timeout: 120_000 }, async () => {
  const page = await openConsumer();
  const r = await page.eval(async () => {
    const el = document.createElement('ddim-sampler');
    el.setAttribute('engine', 'cpu'); el.setAttribute('steps', '500'); el.setAttribute('batch', '1');
    let frames = 0, done = false, error = null;
    el.addEventListener('frame', () => frames++);
    el.addEventListener('done', () => { done = true; });
    el.addEventListener('error', (e) => { error = e.detail.message; });
    document.getElementById('slot').append(el);
    const running = el.start();
    while (frames < 2) await new Promise((r) => setTimeout(r, 20));
    await el.stop();
    const atStop = frames;
    await running;
    await new Promise((r) => setTimeout(r, 500));
    return { atStop, after: frames, done, error };
  });
  assert.ok(r.after <= r.atStop + 1, `frames after stop(): ${r.atStop} → ${r.after}`);
  assert.ok(r.after < 500);
  assert.equal(r.done, false, 'a stopped run does not fire done');
  assert.equal(r.error, null, 'a stop is not an error');
  await page.close();
});

test('an aborted signal ends an API run within one step', { timeout: 120_000 }, async () => {
  const page = await openConsumer();
  const r = await page.eval(async () => {
    const s = await window.ddim.createSampler({ canvas: document.getElementById('api-canvas'), engine: 'cpu' });
    const ac = new AbortController();
    let frames = 0, thrown = null;
    try {
      for await (const f of s.run({ steps: 500, batch: 1, signal: ac.signal })) {
        frames = f.step;
        if (frames === 2) ac.abort();
      }
    } catch (e) { thrown = e.name; }
    s.destroy();
    return { frames, thrown };
  });
  assert.equal(r.thrown, 'AbortError');
  assert.ok(r.frames <= 3, `${r.frames} frames`);
  await page.close();
});

test('removing the element and adding a new one 20 times brings live GPU buffers back to the baseline', { timeout: 600_000 }, async () => {
  const page = await openConsumer();
  const r = await page.eval(async () => {
    const baseline = window.ddim.liveStats();
    const during = [];
    for (let i = 0; i < 20; i++) {
      const el = document.createElement('ddim-sampler');
      el.setAttribute('engine', 'webgpu'); el.setAttribute('steps', '1'); el.setAttribute('batch', '1');
      document.getElementById('slot').append(el);
      await el.start();
      during.push(window.ddim.liveStats());
      el.remove();
      await new Promise((r) => setTimeout(r, 0));
    }
    await new Promise((r) => setTimeout(r, 100));
    return { baseline, during, after: window.ddim.liveStats() };
  });
  assert.ok(r.during.every((s) => s.samplers === r.baseline.samplers + 1 && s.gpuBuffers > r.baseline.gpuBuffers),
    `one live sampler holding GPU buffers while attached: ${JSON.stringify(r.during.slice(0, 3))}`);
  const live = ({ wasmHeapBytes, ...rest }) => rest; // the heap is checked below: it exists only once wasm has loaded
  assert.deepEqual(live(r.after), live(r.baseline), 'every removed element freed its sampler and GPU buffers');
  assert.equal(r.during[19].wasmHeapBytes, r.during[4].wasmHeapBytes, 'the page\'s wasm heap stops growing');
  await page.close();
});

test('the raw wasm-bindgen class (ddim-webgpu/raw) runs the CPU engine in workers too', { timeout: 120_000 }, async () => {
  const page = await openConsumer();
  const r = await page.eval(async () => {
    const raw = await import('ddim-webgpu/raw');
    await raw.default();
    const base = new URL('node_modules/ddim-webgpu/model/', location.href);
    const config = await (await fetch(new URL('config.json', base))).text();
    const weights = new Uint8Array(await (await fetch(new URL('diffusion_pytorch_model.safetensors', base))).arrayBuffer());
    const canvas = document.createElement('canvas');
    const s = await raw.DiffusionSampler.create(canvas, config, weights, undefined, 'cpu:2');
    let frames = 0;
    await s.run({ steps: 3, batch: 2 }, () => { frames++; });
    const adapter = s.adapter;
    s.destroy();
    return { adapter, frames };
  });
  assert.match(r.adapter, /in 2 Web Worker\(s\)/, 'workers started from the package without the JS wrapper');
  assert.equal(r.frames, 3);
  await page.close();
});

test('a bad model URL fires error with a readable message', { timeout: 60_000 }, async () => {
  const page = await openConsumer();
  const r = await page.eval(runElement, { engine: 'cpu', model: 'no-such-model/' });
  assert.match(r.error, /no-such-model\/config\.json: HTTP 404/);
  assert.equal(r.done, null);
  await page.close();
});

test('the second page load reads the weights from Cache Storage (no download); a changed file is downloaded again', { timeout: 120_000 }, async () => {
  let page = await openConsumer();
  await page.eval(() => caches.delete('ddim-webgpu-models-v1'));
  const first = requests.length;
  let r = await page.eval(runElement, { engine: 'cpu', steps: '1', batch: '1' });
  assert.equal(r.error, null);
  assert.ok(requests.slice(first).includes(`GET ${WEIGHTS}`), 'the first load downloads the weights');
  assert.equal(r.progress.at(-1).fromCache, false);
  await page.close();
  page = await openConsumer();
  const second = requests.length;
  r = await page.eval(runElement, { engine: 'cpu', steps: '1', batch: '1' });
  assert.equal(r.error, null);
  const weightRequests = requests.slice(second).filter((q) => q.endsWith(WEIGHTS));
  assert.deepEqual(weightRequests, [`HEAD ${WEIGHTS}`], 'only a HEAD revalidation, no GET');
  assert.equal(r.progress.at(-1).fromCache, true);
  await page.close();
  // A changed file (new Last-Modified) is downloaded again.
  const later = new Date(Date.now() + 60_000);
  utimesSync(path.join(tmp, WEIGHTS), later, later);
  page = await openConsumer();
  const third = requests.length;
  r = await page.eval(runElement, { engine: 'cpu', steps: '1', batch: '1' });
  assert.equal(r.error, null);
  assert.ok(requests.slice(third).includes(`GET ${WEIGHTS}`), 'a changed file is fetched again');
  assert.equal(r.progress.at(-1).fromCache, false);
  await page.close();
});

test('a strict TypeScript consumer type-checks against the declarations', { timeout: 120_000 }, () => {
  const dir = install('ts');
  const tsc = path.join(ROOT, 'node_modules/typescript/bin/tsc');
  try {
    execFileSync('node', [tsc, '--noEmit', '-p', dir], { encoding: 'utf8' });
  } catch (e) {
    assert.fail(`tsc --noEmit failed:\n${e.stdout}${e.stderr}`);
  }
  // And the checker is really checking: a wrong option type must fail.
  const app = path.join(dir, 'app.ts');
  writeFileSync(app, readFileSync(app, 'utf8').replace('steps: 20,', "steps: '20',"));
  assert.throws(() => execFileSync('node', [tsc, '--noEmit', '-p', dir], { encoding: 'utf8', stdio: 'pipe' }), 'a string for steps is a type error');
});
