// Larger models in the browser: benchmarkConfig (src/web/bench.rs) on seeded random weights in the
// shapes of google/ddpm-cifar10-32 and google/ddpm-celebahq-256 (tests/bench/configs/), on the CPU
// engine (this thread; and the threaded build in its worker, "threads:N") and on WebGPU within its default buffer limits, in headless Chromium.
// ms per forward (batch 1) and the memory it took. Run after ./build.sh (./build.sh bench does):
//     node tests/page/scale_bench.mjs [max seconds per case] [only cases whose "shape engine" contains this]
import { spawn } from 'node:child_process';
import { existsSync, mkdtempSync, readFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { chromium } from 'playwright-core';

const ROOT = path.resolve(import.meta.dirname, '../..');
const limit = Number(process.argv[2] ?? 900);
const PORT = 19000 + Math.floor(Math.random() * 1000);
// onnxruntime-web on the cifar10-32 shape where it is installed and the export exists
// (tests/bench/side_by_side.py --config tests/bench/configs/ddpm-cifar10-32.json writes it).
const ORT = path.join(ROOT, 'node_modules/onnxruntime-web/dist');
const ONNX = path.join(ROOT, 'target/bench');
const withOrt = existsSync(ORT) && existsSync(path.join(ONNX, 'ddpm-cifar10-32.onnx'));
const server = spawn('python3', [path.join(ROOT, 'tests/page/serve.py'), String(PORT), path.join(ROOT, 'www'),
  '--mount', `/configs=${path.join(ROOT, 'tests/bench/configs')}`, '--mount', `/benchpage=${path.join(ROOT, 'tests/page')}`, '--isolated',
  '--mount', `/ort=${ORT}`, '--mount', `/onnx=${ONNX}`],
  { stdio: ['ignore', 'pipe', 'inherit'] });
await new Promise((resolve) => server.stdout.once('data', resolve));
const context = await chromium.launchPersistentContext(mkdtempSync(path.join(tmpdir(), 'ddim-scale-')), {
  executablePath: process.env.CHROMIUM || '/usr/lib/chromium/chromium',
  ignoreDefaultArgs: true,
  args: ['--headless=new', '--no-sandbox', '--enable-unsafe-webgpu', '--disable-background-networking', '--disable-component-update',
         '--disable-sync', '--no-first-run', '--disable-quic', '--remote-debugging-pipe', 'about:blank'],
});
// "threads:N": the threaded build in its worker on N wasm threads (the page is cross-origin isolated).
// "ort:N": onnxruntime-web's wasm EP on N threads, the same shape's ONNX export (its own random weights).
const cases = [['ddpm-cifar10-32', 'cpu', 8], ['ddpm-cifar10-32', 'threads:1', 8], ['ddpm-cifar10-32', 'ort:1', 8],
  ['ddpm-cifar10-32', 'threads:2', 8], ['ddpm-cifar10-32', 'ort:2', 8], ['ddpm-cifar10-32', 'webgpu', 2], ['ddpm-celebahq-256', 'cpu', 1], ['ddpm-celebahq-256', 'webgpu', 1]]
  .filter(([name, engine]) => `${name} ${engine}`.includes(process.argv[3] ?? ''))
  .filter(([, engine]) => withOrt || !engine.startsWith('ort:'));
try {
  console.log(`Chromium ${context.browser()?.version() ?? ''}; seeded random weights, batch 1; ms per forward (each run), memory after the runs`);
  console.log('| shape | engine | params | ms per forward | memory | what |');
  console.log('|---|---|---|---|---|---|');
  for (const [name, engine, reps] of cases) {
    // A fresh page per case: the wasm heap of one case does not carry into the next.
    const page = await context.newPage();
    if (engine.startsWith('ort:')) {
      // Its own page: onnxruntime-web warms for 10 s, then times ≥ 20 runs (bench_ort.html).
      const c = JSON.parse(readFileSync(path.join(ROOT, 'tests/bench/configs', `${name}.json`), 'utf8'));
      const shape = `channels=${c.in_channels}&size=${c.sample_size}&labels=${c.num_class_embeds ? 1 : 0}`;
      await page.goto(`http://127.0.0.1:${PORT}/benchpage/bench_ort.html?ep=wasm&threads=${engine.slice(4)}&batch=1&warm=10&onnx=${name}&${shape}`);
      await page.waitForFunction(() => window.__result, null, { timeout: limit * 1000, polling: 500 });
      const r = await page.evaluate(() => window.__result);
      await page.close();
      console.log(`| ${name} | ${engine} | | ${r.error ?? `${r.median.toFixed(0)} median (${r.min.toFixed(0)}–${r.max.toFixed(0)}, ${r.runs} runs)`} | | onnxruntime-web wasm EP, isolated=${r.isolated} |`);
      continue;
    }
    await page.goto(`http://127.0.0.1:${PORT}/benchpage/scale.html`);
    await page.waitForFunction(() => window.__ready, null, { timeout: 60_000 });
    const started = Date.now();
    let timer;
    const r = await Promise.race([
      page.evaluate(([n, e, r]) => (e.startsWith('threads:') ? window.__benchThreads(n, Number(e.slice(8)), 1, r) : window.__bench(n, e, 1, r))
        .catch((err) => ({ error: String(err.message || err) })), [name, engine, reps]),
      new Promise((resolve) => { timer = setTimeout(() => resolve({ error: `not finished after ${limit} s` }), limit * 1000); }),
    ]);
    // A pending limit would keep node alive for up to `limit` seconds after the last case.
    clearTimeout(timer);
    await page.close();
    if (r.error) {
      console.log(`| ${name} | ${engine} | | ${r.error} (${((Date.now() - started) / 1000).toFixed(0)} s) | | |`);
      continue;
    }
    const mem = engine !== 'webgpu' ? `wasm heap ${(r.memoryBytes / 1e6).toFixed(0)} MB` : `GPU buffers ${(r.memoryBytes / 1e6).toFixed(0)} MB`;
    console.log(`| ${name} | ${engine} | ${(r.params / 1e6).toFixed(1)} M (${(r.weightsBytes / 1e6).toFixed(0)} MB f32) | ` +
                `${r.msPerForward.map((v) => v.toFixed(0)).join(', ')} | ${mem} | ${r.what} |`);
  }
} finally {
  await context.close();
  server.kill();
}
