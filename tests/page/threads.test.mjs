// The CPU engine's wasm threads (#32): on a cross-origin isolated page (COOP/COEP) the engine runs
// the threaded build, one worker whose forwards split across it and its fork workers; elsewhere the
// batch workers. Checked in headless Chromium and Firefox (PAGE_BROWSERS):
// - a forward whose every conv splits across 3 threads (the cost model overruled: the bundled
//   model's convs are too small for it to split) gives the same bits as the same build on one thread,
//   and agrees with the unthreaded build (which may run relaxed SIMD: a fused multiply-add);
// - the page says which mode runs and why, on both servers, and both end on the same image
//   (within the relaxed build's rounding).
import { describe, test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import path from 'node:path';
import { launch } from './browsers.mjs';

const ROOT = path.resolve(import.meta.dirname, '../..');
const PORT = 19000 + Math.floor(Math.random() * 500);
const BROWSERS = (process.env.PAGE_BROWSERS || 'chromium,firefox').split(',').filter((b) => b === 'chromium' || b === 'firefox');
const servers = [];

async function serve(port, ...flags) {
  const server = spawn('python3', [path.join(ROOT, 'tests/page/serve.py'), String(port), path.join(ROOT, 'www'), '--csp', ...flags],
    { stdio: ['ignore', 'pipe', 'inherit'] });
  servers.push(server);
  await new Promise((resolve, reject) => {
    server.stdout.once('data', resolve);
    server.once('exit', (code) => reject(new Error(`server exited ${code}`)));
  });
  return `http://127.0.0.1:${port}`;
}

let isolated, plain;
before(async () => {
  isolated = await serve(PORT, '--isolated');
  plain = await serve(PORT + 500);
});
after(() => servers.forEach((s) => s.kill()));

async function waitForEnd(page) {
  await page.waitFor(() => ['done', 'error'].includes(document.body.dataset.state), 10 * 60_000);
  assert.equal(await page.eval(() => document.body.dataset.state), 'done', await page.text('#error'));
}

// In the page: one forward of the bundled model on a worker script with `load` options, x = a fixed ramp.
const forwardOn = async ({ script, load }) => {
  const [config, weights] = await Promise.all([fetch('model/config.json').then((x) => x.text()),
    fetch('model/diffusion_pytorch_model.safetensors').then((x) => x.arrayBuffer())]);
  const c = JSON.parse(config);
  const worker = new Worker(new URL(script, location.href), { type: 'module' });
  const next = () => new Promise((resolve) => { worker.onmessage = (e) => resolve(e.data); worker.onerror = (e) => resolve({ type: 'error', message: e.message }); });
  let reply = next();
  worker.postMessage({ type: 'load', config, weights, ...load });
  const loaded = await reply;
  if (loaded.type !== 'ready') { worker.terminate(); return { error: loaded.message }; }
  const n = 2; // the batch splits too, where threads are
  const shape = [n, c.in_channels, c.sample_size, c.sample_size];
  const x = new Float32Array(shape.reduce((a, b) => a * b)).map((_, i) => Math.sin(i * 0.37));
  reply = next();
  worker.postMessage({ type: 'forward', sample: x, shape: new Uint32Array(shape), timesteps: new Float32Array([500, 120]),
    labels: c.num_class_embeds ? new Uint32Array([1, 7]) : undefined });
  const out = await reply;
  worker.terminate();
  return { threads: loaded.threads ?? null, kernel: loaded.kernel ?? null, error: out.message ?? null, out: out.out ? Array.from(out.out) : [] };
};

for (const browserName of BROWSERS) {
  describe(browserName, () => {
    test('a forward split across 3 wasm threads gives the one-thread bits, and agrees with the unthreaded build', { timeout: 300_000 }, async () => {
      const browser = await launch(browserName, isolated);
      try {
        const page = await browser.open('?steps=1&batch=1');
        await waitForEnd(page);
        assert.equal(await page.eval(() => self.crossOriginIsolated), true, 'serve.py --isolated: the page is cross-origin isolated');
        const split = await page.eval(forwardOn, { script: 'pkg/cpu-worker-threads.js', load: { threads: 3, minShareForks: 0 } });
        const one = await page.eval(forwardOn, { script: 'pkg/cpu-worker-threads.js', load: { threads: 1 } });
        const unthreaded = await page.eval(forwardOn, { script: 'pkg/cpu-worker.js', load: {} });
        for (const [name, r] of Object.entries({ split, one, unthreaded })) assert.equal(r.error, null, `${name}: ${r.error}`);
        assert.equal(split.threads, 3);
        assert.equal(one.threads, 1);
        assert.ok(split.out.length > 0 && split.out.every(Number.isFinite), 'a finite output');
        assert.ok(split.out.every((v, i) => Object.is(v, one.out[i])), 'the split forward differs from one thread');
        const worst = Math.max(...split.out.map((v, i) => Math.abs(v - unthreaded.out[i])));
        assert.ok(worst < 1e-3, `threaded (${split.kernel}) against unthreaded (${unthreaded.kernel}): ${worst}`);
        assert.deepEqual(await page.errors(), []);
        await page.close();
      } finally {
        await browser.close();
      }
    });

    test('the page runs wasm threads where it is cross-origin isolated, batch workers where not, and says which', { timeout: 600_000 }, async () => {
      const finals = {};
      for (const [name, base] of [['isolated', isolated], ['plain', plain]]) {
        const browser = await launch(browserName, base);
        try {
          const page = await browser.open('?engine=cpu&threads=2&steps=4&batch=2&seed=5');
          await waitForEnd(page);
          const adapter = await page.text('#adapter');
          if (name === 'isolated') assert.match(adapter, /in 1 Web Worker with 2 wasm threads \(cross-origin isolated/, adapter);
          else assert.match(adapter, /in 2 Web Worker\(s\), one image each \[not cross-origin isolated: wasm threads need .*COOP\/COEP/, adapter);
          finals[name] = await page.eval(() => Array.from(window.__lastImage.data));
          assert.deepEqual(await page.errors(), []);
          await page.close();
        } finally {
          await browser.close();
        }
      }
      let worst = 0;
      finals.isolated.forEach((v, i) => { worst = Math.max(worst, Math.abs(v - finals.plain[i])); });
      assert.ok(worst <= 2, `the threaded and the batch workers' images differ by ${worst} levels`);
    });
  });
}
