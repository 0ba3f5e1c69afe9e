// Browser benchmark: ms per DDIM step of the bundled model on both engines, in headless Chromium
// (WebGPU there is SwiftShader, a CPU emulation). Run after ./build.sh:
//     node tests/page/bench.mjs [steps] [batch]
// Prints the median ms/step per engine (after the first step, which includes pipeline warm-up).
import { spawn } from 'node:child_process';
import { mkdtempSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { chromium } from 'playwright-core';

const ROOT = path.resolve(import.meta.dirname, '../..');
const [steps, batch] = [Number(process.argv[2] || 6), Number(process.argv[3] || 1)];
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
  for (const engine of ['cpu', 'webgpu']) {
    const page = await context.newPage();
    await page.goto(`http://127.0.0.1:${PORT}/?engine=${engine}&steps=${steps}&batch=${batch}&guidance=3&seed=1`);
    await page.waitForFunction(() => ['done', 'error'].includes(document.body.dataset.state), null, { timeout: 20 * 60_000 });
    const r = await page.evaluate(() => ({ frames: window.__frames, adapter: document.getElementById('adapter').textContent,
                                           error: document.getElementById('error').textContent }));
    if (r.error) throw new Error(r.error);
    const ms = r.frames.slice(1).map((f) => f.ms);
    console.log(`${engine}: ${median(ms).toFixed(1)} ms/step (median of ${ms.length}; batch ${batch}, guidance on = ${2 * batch} U-Net items/step; ${r.adapter})`);
    await page.close();
  }
} finally {
  await context.close();
  server.kill();
}
