// The README's browser table, measured: the demo page on every browser and engine the page tests
// drive here (browsers.mjs), bundled model, batch 4, guidance 3 (8 U-Net items per step). Each
// browser/engine first runs for >= 10 s (V8/SpiderMonkey/JSC tier-up, pipeline compilation), then
// one measured run; prints ms per step and per U-Net item (median, min-max over the run's steps),
// the adapter line and how frames reach the canvas.
//   node tests/page/browsers_bench.mjs [STEPS]     (PAGE_BROWSERS as for the page tests)
import { spawn, execFileSync } from 'node:child_process';
import path from 'node:path';
import { launch } from './browsers.mjs';

const ROOT = path.resolve(import.meta.dirname, '../..');
const STEPS = Number(process.argv[2] || 10);
const PORT = 19000 + Math.floor(Math.random() * 1000);
const BASE = `http://127.0.0.1:${PORT}`;
const BROWSERS = (process.env.PAGE_BROWSERS || 'chromium,firefox,webkit').split(',').filter(Boolean);
const ENGINES = { chromium: ['webgpu', 'cpu'], firefox: ['webgpu', 'cpu'], webkit: ['cpu'] };
const ITEMS = 8;

function version(cmd, args) {
  try { return execFileSync(cmd, args, { encoding: 'utf8' }).trim().split('\n')[0]; } catch { return `${cmd}: unknown version`; }
}
const VERSIONS = {
  chromium: () => version('/usr/lib/chromium/chromium', ['--version']),
  firefox: () => version(process.env.FIREFOX || '/usr/bin/firefox-esr', ['--version']),
  webkit: () => `WebKitGTK ${version('dpkg-query', ['-W', '-f', '${Version}', 'libwebkit2gtk-4.1-0'])} (MiniBrowser on Xvfb)`,
};

const server = spawn('python3', [path.join(ROOT, 'tests/page/serve.py'), String(PORT), path.join(ROOT, 'www')], { stdio: ['ignore', 'pipe', 'inherit'] });
await new Promise((resolve) => server.stdout.once('data', resolve));

async function oneRun(page) {
  await page.waitFor(() => ['done', 'error'].includes(document.body.dataset.state), 20 * 60_000);
  if ((await page.eval(() => document.body.dataset.state)) !== 'done') throw new Error(await page.text('#error'));
  return page.eval(() => window.__frames.map((f) => f.ms));
}

// Start pressed again on the same sampler (the model stays loaded).
async function runAgain(page) {
  await page.eval(() => { document.body.dataset.state = 'restarting'; document.getElementById('start').click(); });
  return oneRun(page);
}

const median = (a) => { const s = [...a].sort((x, y) => x - y); return s[Math.floor(s.length / 2)]; };
const rows = [];
try {
  for (const name of BROWSERS) {
    const browser = await launch(name, BASE);
    try {
      for (const engine of ENGINES[name]) {
        const page = await browser.open(`?steps=${STEPS}&seed=1&batch=4&guidance=3&engine=${engine}`);
        const t0 = Date.now();
        await oneRun(page);
        while (Date.now() - t0 < 10_000) await runAgain(page);
        const ms = await runAgain(page);
        const adapter = await page.text('#adapter');
        rows.push({ browser: VERSIONS[name](), engine, step: median(ms), min: Math.min(...ms), max: Math.max(...ms), adapter });
        console.log(`${name} ${engine}: ${median(ms).toFixed(0)} ms/step (${adapter})`);
        await page.close();
      }
    } finally {
      await browser.close();
    }
  }
} finally {
  server.kill();
}

console.log(`\nbundled model, batch 4, guidance 3 (${ITEMS} U-Net items per step), ${STEPS} measured steps after >= 10 s of warm-up\n`);
console.log('| browser | engine | ms per step, median (min–max) | ms per U-Net item | adapter / how frames reach the canvas |');
console.log('|---|---|---|---|---|');
for (const r of rows) {
  console.log(`| ${r.browser} | ${r.engine} | ${r.step.toFixed(0)} (${r.min.toFixed(0)}–${r.max.toFixed(0)}) | ${(r.step / ITEMS).toFixed(1)} | ${r.adapter} |`);
}
