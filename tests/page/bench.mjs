// Browser benchmark: ms per DDIM step of the bundled model on both engines, in headless Chromium
// (WebGPU there is SwiftShader, a CPU emulation). Run after ./build.sh:
//     node tests/page/bench.mjs [steps] [batch] [engines, e.g. cpu,webgpu] [warm-up seconds]
// Prints the median (min–max) ms/step per engine over the steps after the warm-up (V8 compiles
// wasm with Liftoff first and tiers up to TurboFan in the background: time only after ≥ 10 s).
import { spawn } from 'node:child_process';
import { mkdtempSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { chromium } from 'playwright-core';

const ROOT = path.resolve(import.meta.dirname, '../..');
const [steps, batch] = [Number(process.argv[2] || 6), Number(process.argv[3] || 1)];
const engines = (process.argv[4] || 'cpu,webgpu').split(',');
const warmMs = 1000 * Number(process.argv[5] ?? 10);
const PORT = 19000 + Math.floor(Math.random() * 1000);
const server = spawn('python3', [path.join(ROOT, 'tests/page/serve.py'), String(PORT), path.join(ROOT, 'www')], { stdio: ['ignore', 'pipe', 'inherit'] });
await new Promise((resolve) => server.stdout.once('data', resolve));
const context = await chromium.launchPersistentContext(mkdtempSync(path.join(tmpdir(), 'ddim-bench-')), {
  executablePath: process.env.CHROMIUM || '/usr/lib/chromium/chromium',
  ignoreDefaultArgs: true,
  args: ['--headless=new', '--no-sandbox', '--enable-unsafe-webgpu', '--disable-background-networking', '--disable-component-update',
         '--disable-sync', '--no-first-run', '--disable-quic', '--remote-debugging-pipe', 'about:blank'],
});
const median = (v) => { const s = [...v].sort((a, b) => a - b); return s[Math.floor(s.length / 2)]; };
try {
  for (const engine of engines) {
    const page = await context.newPage();
    await page.goto(`http://127.0.0.1:${PORT}/?engine=${engine}&steps=${steps}&batch=${batch}&guidance=3&seed=1`);
    await page.waitForFunction(() => ['done', 'error'].includes(document.body.dataset.state), null, { timeout: 20 * 60_000 });
    const r = await page.evaluate(() => ({ frames: window.__frames, adapter: document.getElementById('adapter').textContent,
                                           error: document.getElementById('error').textContent }));
    if (r.error) throw new Error(r.error);
    let elapsed = 0;
    const ms = r.frames.slice(1).filter((f) => (elapsed += f.ms) > warmMs).map((f) => f.ms);
    if (ms.length === 0) throw new Error(`${engine}: no step after the ${warmMs / 1000} s warm-up: raise the step count`);
    const sorted = [...ms].sort((a, b) => a - b);
    console.log(`${engine}: ${median(ms).toFixed(1)} ms/step median (${sorted[0].toFixed(1)}–${sorted.at(-1).toFixed(1)}, ${ms.length} steps after ` +
                `${warmMs / 1000} s warm-up); batch ${batch} with guidance = ${2 * batch} U-Net items/step ` +
                `→ ${(median(ms) / (2 * batch)).toFixed(1)} ms/item; ${r.adapter}`);
    await page.close();
  }
} finally {
  await context.close();
  server.kill();
}
