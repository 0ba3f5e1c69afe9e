// Browser benchmark, side by side, one Chromium, one run: our engines on the page (the bundled
// model; batch 1 with guidance = 2 U-Net items per step) and onnxruntime-web on the same model's
// ONNX export (batch 2), in ms per U-Net item. Run after ./build.sh (./build.sh bench does it all):
//     node tests/page/bench.mjs [warm-up seconds] [timed seconds]
// onnxruntime-web runs only if node_modules/onnxruntime-web and target/bench/mnist-cond.onnx exist
// (./build.sh bench installs the first; tests/bench/side_by_side.py writes the second).
// V8 compiles wasm with Liftoff first and tiers up to TurboFan in the background: every engine is
// warmed for ≥ 10 s before timing.
import { spawn } from 'node:child_process';
import { existsSync, mkdtempSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { chromium } from 'playwright-core';

const ROOT = path.resolve(import.meta.dirname, '../..');
const [warm, timed] = [Number(process.argv[2] ?? 10), Number(process.argv[3] ?? 10)];
const ORT = path.join(ROOT, 'node_modules/onnxruntime-web/dist');
const ONNX = path.join(ROOT, 'target/bench');
const withOrt = existsSync(ORT) && existsSync(path.join(ONNX, 'mnist-cond.onnx'));
const PORT = 19000 + Math.floor(Math.random() * 1000);
const server = spawn('python3', [path.join(ROOT, 'tests/page/serve.py'), String(PORT), path.join(ROOT, 'www'), '--isolated',
  '--mount', `/ort=${ORT}`, '--mount', `/onnx=${ONNX}`, '--mount', `/benchpage=${path.join(ROOT, 'tests/page')}`],
  { stdio: ['ignore', 'pipe', 'inherit'] });
await new Promise((resolve) => server.stdout.once('data', resolve));
// The same page not cross-origin isolated: the CPU engine's batch workers (the isolated page runs wasm threads).
const plainServer = spawn('python3', [path.join(ROOT, 'tests/page/serve.py'), String(PORT + 1000), path.join(ROOT, 'www')], { stdio: ['ignore', 'pipe', 'inherit'] });
await new Promise((resolve) => plainServer.stdout.once('data', resolve));
const PLAIN = `http://127.0.0.1:${PORT + 1000}`;
const context = await chromium.launchPersistentContext(mkdtempSync(path.join(tmpdir(), 'ddim-bench-')), {
  executablePath: process.env.CHROMIUM || '/usr/lib/chromium/chromium',
  ignoreDefaultArgs: true,
  args: ['--headless=new', '--no-sandbox', '--enable-unsafe-webgpu', '--disable-background-networking', '--disable-component-update',
         '--disable-sync', '--no-first-run', '--disable-quic', '--remote-debugging-pipe', 'about:blank'],
});
const BASE = `http://127.0.0.1:${PORT}`;
const stats = (v) => { const s = [...v].sort((a, b) => a - b); return { median: s[s.length >> 1], min: s[0], max: s.at(-1), runs: s.length }; };

/// Our page: steps run until warm + timed seconds have passed, then Stop; ms per U-Net item. A run
/// stops at 1000 steps (DDIM's limit), which a fast engine can finish inside warm + timed: then
/// Start is pressed again (same sampler, model loaded) until enough steps were timed.
async function ours(engine, threads, base = BASE) {
  const page = await context.newPage();
  const q = `engine=${engine}${threads ? `&threads=${threads}` : ''}&steps=1000&batch=1&guidance=3&seed=1`;
  await page.goto(`${base}/?${q}`);
  let skip = warm * 1000, need = timed * 1000, what = '';
  const ms = [];
  for (;;) {
    // Each run's first step is left out (cold); `skip` ms of warm-up, then `need` ms timed.
    await page.waitForFunction(([skip, need, count]) => {
      if (['done', 'error'].includes(document.body.dataset.state)) return true;
      let got = 0, n = count;
      for (const x of (window.__frames || []).slice(1)) { if (skip > 0) skip -= x.ms; else { got += x.ms; n++; } }
      return got > need && n > 25;
    }, [skip, need, ms.length], { timeout: 30 * 60_000, polling: 500 });
    const r = await page.evaluate(() => ({ frames: window.__frames, state: document.body.dataset.state,
                                           adapter: document.getElementById('adapter').textContent,
                                           error: document.getElementById('error').textContent }));
    if (r.error || r.state === 'error') throw new Error(`${engine}: ${r.error || 'the run failed'}`);
    what = r.adapter;
    for (const f of r.frames.slice(1)) {
      if (skip > 0) skip -= f.ms;
      else { need -= f.ms; ms.push(f.ms / 2); }
    }
    if (r.state !== 'done') break;
    if (need <= 0 && ms.length > 25) break;
    await page.evaluate(() => { document.body.dataset.state = 'restarting'; document.getElementById('start').click(); });
  }
  await page.click('#stop').catch(() => {});
  await page.close();
  return { ...stats(ms), what };
}

async function ort(ep, threads) {
  const page = await context.newPage();
  await page.goto(`${BASE}/benchpage/bench_ort.html?ep=${ep}&threads=${threads}&batch=2&warm=${warm}`);
  await page.waitForFunction(() => window.__result, null, { timeout: 30 * 60_000, polling: 500 });
  const r = await page.evaluate(() => window.__result);
  await page.close();
  if (r.error) throw new Error(`onnxruntime-web ${ep}: ${r.error}`);
  return { median: r.median / 2, min: r.min / 2, max: r.max / 2, runs: r.runs, what: `isolated=${r.isolated}` };
}

/// The default page (no parameters: 50 DDIM steps, batch 4, guidance 3, engine auto) from navigation
/// to the final image, with the 95th-percentile gap between animation frames (main-thread stalls);
/// `query` adds parameters (?thread=worker: the engine in a Web Worker).
async function defaultPageOnce(query) {
  const page = await context.newPage();
  await page.addInitScript(() => {
    window.__gaps = [];
    let last = performance.now();
    const tick = (t) => { window.__gaps.push(t - last); last = t; requestAnimationFrame(tick); };
    requestAnimationFrame(tick);
  });
  await page.goto(`${BASE}/${query}`);
  await page.waitForFunction(() => ['done', 'error'].includes(document.body.dataset.state), null, { timeout: 30 * 60_000, polling: 100 });
  const r = await page.evaluate(() => ({ frames: window.__frames, gaps: window.__gaps, engine: document.getElementById('engine').textContent,
                                         adapter: document.getElementById('adapter').textContent, thread: document.getElementById('thread').textContent }));
  await page.close();
  const gaps = [...r.gaps].sort((a, b) => a - b);
  return { first: r.frames[0].at / 1000, last: r.frames.at(-1).at / 1000, p95: gaps[Math.floor(gaps.length * 0.95)], engine: `${r.engine} on the ${r.thread}: ${r.adapter}` };
}

/// `PAGE_LOADS` (default 5) fresh loads of the default page: one load is too noisy on this VM to
/// judge a first frame against a 0.5 s goal. Median (min–max) of each number.
async function defaultPage(query = '') {
  const runs = [];
  for (let i = 0; i < Number(process.env.PAGE_LOADS ?? 5); i++) runs.push(await defaultPageOnce(query));
  const of = (k) => stats(runs.map((r) => r[k]));
  return { first: of('first'), last: of('last'), p95: of('p95'), engine: runs[0].engine };
}

const fmt = (r) => `${r.median.toFixed(1)} (${r.min.toFixed(1)}–${r.max.toFixed(1)}, ${r.runs} runs)`;
try {
  const version = context.browser()?.version() ?? (await (await context.newPage()).evaluate(() => navigator.userAgent));
  console.log(`Chromium ${version}; bundled mnist-cond; ms per U-Net item, median (min–max); ${warm} s warm-up each`);
  // BENCH_ONLY=webgpu (or cpu) runs those rows alone and skips the default page (kernel work).
  const only = process.env.BENCH_ONLY;
  const row = async (name, engine, threads, ep, epThreads, base) =>
    [name, await ours(engine, threads, base), withOrt && [ep === 'wasm' ? `wasm EP, ${epThreads} thread${epThreads > 1 ? 's' : ''}` : 'WebGPU EP', await ort(ep, epThreads)]];
  const rows = [];
  if (!only || only === 'cpu') {
    // Cross-origin isolated (the page and onnxruntime-web's threads): our wasm threads; not isolated: our batch workers.
    rows.push(await row('CPU engine, 1 wasm thread (isolated)', 'cpu', 1, 'wasm', 1));
    rows.push(await row('CPU engine, 1 worker (not isolated)', 'cpu', 1, 'wasm', 1, PLAIN));
    rows.push(await row('CPU engine, 2 wasm threads (isolated)', 'cpu', 2, 'wasm', 2));
    rows.push(await row('CPU engine, 2 workers (not isolated)', 'cpu', 2, 'wasm', 2, PLAIN));
  }
  if (!only || only === 'webgpu') rows.push(await row('WebGPU engine', 'webgpu', 0, 'webgpu', 1));
  console.log('| ours | ms/item | onnxruntime-web 1.30 | ms/item | ours / theirs |');
  console.log('|---|---|---|---|---|');
  for (const [name, us, them] of rows) {
    console.log(`| ${name} | ${fmt(us)} | ${them ? them[0] : '(not installed)'} | ${them ? fmt(them[1]) : ''} | ${them ? (us.median / them[1].median).toFixed(2) + '×' : ''} |`);
  }
  for (const [name, us] of rows) console.log(`  ${name}: ${us.what}`);
  for (const query of only ? [] : (process.env.PAGE_QUERIES ?? ',?thread=worker').split(',')) {
    const d = await defaultPage(query);
    const sec = (x) => `${x.median.toFixed(2)} s (${x.min.toFixed(2)}–${x.max.toFixed(2)})`;
    console.log(`default page${query} (50 steps, batch 4, w = 3; ${d.engine}; median of ${d.first.runs} loads): first frame ${sec(d.first)}, ` +
                `final image ${sec(d.last)} after navigation; 95th-percentile animation-frame gap ${d.p95.median.toFixed(0)} ms ` +
                `(${d.p95.min.toFixed(0)}–${d.p95.max.toFixed(0)})`);
  }
} finally {
  await context.close();
  server.kill();
  plainServer.kill();
}
