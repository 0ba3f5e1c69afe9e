// The page's instruments (#31): views side by side, each equal to the engine's arrays; branching
// (a fork that changes nothing ends on the unforked image exactly, one that changes the class does
// not, nodes past the budget are dropped and said so); the sampler race (each sampler ends on its
// single run's image); WebM export (a frame per evaluation); the layout at 1280×800 and at a
// phone's width; screenshots for docs/ (UPDATE_SCREENSHOTS=1 writes docs/screenshots/).
// PAGE_BROWSERS picks the browsers (Chromium, and Firefox where WebGPU presents).
import { describe, test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { mkdirSync } from 'node:fs';
import path from 'node:path';
import { launch } from './browsers.mjs';

const ROOT = path.resolve(import.meta.dirname, '../..');
const SHOTS = path.join(ROOT, 'docs', 'screenshots');
const PORT = 19000 + Math.floor(Math.random() * 1000);
const BASE = `http://127.0.0.1:${PORT}`;
const BROWSERS = (process.env.PAGE_BROWSERS || 'chromium,firefox').split(',').filter((b) => b === 'chromium' || b === 'firefox');
const WEBGPU = { chromium: true, firefox: true };
let server;

before(async () => {
  server = spawn('python3', [path.join(ROOT, 'tests/page/serve.py'), String(PORT), path.join(ROOT, 'www'), '--csp'], { stdio: ['ignore', 'pipe', 'inherit'] });
  await new Promise((resolve, reject) => {
    server.stdout.once('data', resolve);
    server.once('exit', (code) => reject(new Error(`server exited ${code}`)));
  });
});
after(() => server?.kill());

async function waitForEnd(page, ms = 300_000) {
  await page.waitFor(() => ['done', 'error', 'stopped'].includes(document.body.dataset.state), ms);
  const state = await page.eval(() => document.body.dataset.state);
  assert.equal(state, 'done', `the run ended in state ${state}: ${await page.text('#error')}`);
}

/** Sets form controls (firing change), then calls `go` in the page (a function name on window, with args). */
async function setForm(page, settings) {
  await page.eval((s) => {
    const f = document.getElementById('controls').elements;
    for (const [k, v] of Object.entries(s)) {
      if (f[k].type === 'checkbox') f[k].checked = v; else f[k].value = String(v);
      f[k].dispatchEvent(new Event('change'));
      f[k].dispatchEvent(new Event('input'));
    }
  }, settings);
}

// The two presenters' maps (image_grid.rs / present.wgsl): levels for x, blue–white–red for v/scale.
const level = (v) => Math.round(Math.min(1, Math.max(0, (v + 1) / 2)) * 255);
function diverging(v) {
  const t = Math.min(1, Math.max(-1, v));
  const [end, a] = t < 0 ? [[59, 76, 192], -t] : [[180, 4, 38], t];
  return end.map((e) => { const x = 255 * (1 - a) + e * a; const r = Math.round(x); return Math.abs(x - Math.trunc(x)) === 0.5 && r % 2 ? r - 1 : r; });
}

/** The largest channel difference between panel `k` of a frame and `values` mapped (one channel). */
function panelError(frame, k, panels, values, scale) {
  const gw = (frame.w - (panels - 1) * 4) / panels, size = 28, cols = gw / size;
  let worst = 0;
  for (let gy = 0; gy < frame.h; gy++) {
    for (let gx = 0; gx < gw; gx++) {
      const item = Math.floor(gy / size) * cols + Math.floor(gx / size);
      if (item * size * size >= values.length) continue;
      const v = values[item * size * size + (gy % size) * size + (gx % size)];
      const want = scale ? diverging(v / scale) : [level(v), level(v), level(v)];
      const at = (gy * frame.w + k * (gw + 4) + gx) * 4;
      for (let c = 0; c < 3; c++) worst = Math.max(worst, Math.abs(frame.px[at + c] - want[c]));
    }
  }
  return worst;
}

for (const browserName of BROWSERS) {
  describe(`instruments (${browserName})`, () => {
    let browser;
    before(async () => { browser = await launch(browserName, BASE); });
    after(async () => { await browser?.close(); });

    for (const engine of ['cpu', ...(WEBGPU[browserName] ? ['webgpu'] : [])]) {
      test(`views side by side equal the engine's arrays, mapped (${engine})`, { timeout: 300_000 }, async () => {
        const page = await browser.open(`?engine=${engine}&steps=2&batch=2&seed=6&sampler=ddim&class=3&guidance=3`);
        await waitForEnd(page);
        const frames = await page.eval(async () => {
          const s = window.__sampler(), canvas = document.getElementById('canvas'), out = [];
          const views = ['xt', 'eps', 'guidance'];
          for await (const f of s.run({ steps: 3, batch: 2, seed: 6, sampler: 'ddim', classLabel: 3, guidance: 3, views, arrays: views })) {
            const c = document.createElement('canvas');
            c.width = canvas.width; c.height = canvas.height;
            const g = c.getContext('2d');
            g.drawImage(canvas, 0, 0);
            out.push({ w: c.width, h: c.height, px: Array.from(g.getImageData(0, 0, c.width, c.height).data), xt: Array.from(f.xt), eps: Array.from(f.eps), guidance: Array.from(f.guidance) });
          }
          return out;
        });
        assert.equal(frames.length, 3);
        for (const [i, f] of frames.entries()) {
          assert.equal(f.w, 3 * 56 + 8, 'three 56-px grids, 4 px apart');
          assert.ok(Math.max(...f.eps.map(Math.abs)) > 0.5, 'ε̂ read back');
          // Mapped values within one 8-bit level (the presenters' rounding): |Δε| ≤ 3/255 ≈ 1e-2, far below 1e-4 × … only at a level edge.
          assert.ok(panelError(f, 0, 3, f.xt, null) <= 1, `frame ${i}: the x_t panel is x_t`);
          assert.ok(panelError(f, 1, 3, f.eps, 3) <= 1, `frame ${i}: the ε̂ panel is the ε̂ read back (${panelError(f, 1, 3, f.eps, 3)})`);
          assert.ok(panelError(f, 2, 3, f.guidance, 0.5) <= 1, `frame ${i}: the guidance panel is w·(ε(c) − ε(∅)) read back`);
        }
        // A view the run cannot give is refused with a message.
        const refused = await page.eval(async () => {
          try { for await (const f of window.__sampler().run({ steps: 2, batch: 1, guidance: 0, classLabel: 3, views: 'xt,guidance' })) void f; return 'ran'; } catch (e) { return e.message; }
        });
        assert.match(refused, /guidance/);
        assert.deepEqual(await page.errors(), []);
        await page.close();
      });
    }

    test('the element takes views and arrays as attributes: frame.detail carries the arrays', { timeout: 300_000 }, async () => {
      const page = await browser.open('?engine=cpu&steps=2&batch=1&seed=1');
      await waitForEnd(page);
      const got = await page.eval(async () => {
        const el = document.getElementById('embed');
        document.getElementById('embed-section').open = true;
        Object.entries({ engine: 'cpu', steps: '3', views: 'xt,eps,x0', arrays: 'eps,x0' }).forEach(([k, v]) => el.setAttribute(k, v));
        const frames = [];
        el.addEventListener('frame', (e) => frames.push({ eps: e.detail.eps?.length, x0: e.detail.x0?.length, noXt: !('xt' in e.detail), type: Object.prototype.toString.call(e.detail.eps) }));
        await el.start();
        const canvas = el.shadowRoot.querySelector('canvas');
        return { frames, width: canvas.width, height: canvas.height };
      });
      assert.equal(got.frames.length, 3);
      // (Firefox's WebDriver sees page objects through wrappers: the type by its tag, not instanceof.)
      assert.deepEqual(got.frames[0], { eps: 784, x0: 784, noXt: true, type: '[object Float32Array]' });
      assert.deepEqual([got.width, got.height], [3 * 28 + 2 * 4, 28], 'three views side by side');
      await page.close();
    });

    test('branching: a fork that changes nothing reproduces the run; one that changes the class does not; the budget drops nodes', { timeout: 600_000 }, async () => {
      const page = await browser.open('?engine=cpu&steps=8&batch=2&seed=5&sampler=ddim&eta=0.5&class=3&guidance=2');
      await waitForEnd(page);
      let tree = await page.eval(() => window.__branches());
      assert.equal(tree.length, 1);
      assert.equal(tree[0].nodes.length, 8, 'a node per evaluation');
      const root = tree[0], node = root.nodes[3];
      await page.eval((id) => { window.__selectNode(id); window.__continueFrom(false); }, node);
      await waitForEnd(page);
      // Replay the root's own settings from the node, the form changed first: the root's image again.
      await setForm(page, { class: 5 });
      await page.eval((id) => { window.__selectNode(id); window.__continueFrom(true); }, node);
      await waitForEnd(page);
      assert.equal(await page.eval(() => document.querySelector('[name=class]').value), '3', 'a replay puts its settings back into the form');
      await setForm(page, { class: 8 });
      await page.eval((id) => { window.__selectNode(id); window.__continueFrom(false); }, node);
      await waitForEnd(page);
      tree = await page.eval(() => window.__branches());
      assert.equal(tree.length, 4);
      assert.equal(tree[1].from, node);
      assert.equal(tree[1].nodes.length, 4, 'the fork ran the evaluations after its node');
      assert.deepEqual(tree[1].final, root.final, 'nothing changed: the same image exactly');
      assert.deepEqual(tree[2].final, root.final, 'the replay: the same image exactly');
      assert.notDeepEqual(tree[3].final, root.final, 'another class from step 5: another image');
      assert.equal(await page.eval(() => document.querySelectorAll('#tree .node').length), 8 + 4 + 4 + 4);
      // The copied link holds the root's settings and the fork: opened, it ends on the fork's image.
      const link = await page.eval(() => new Promise((r) => { document.getElementById('copy-link').click(); setTimeout(() => r(window.__link), 300); }));
      assert.match(decodeURIComponent(link), /class=3.*forks=\[\{"at":4,"s":\{.*"class":"8"/);
      assert.deepEqual(await page.errors(), []);
      await page.close();
      const again = await browser.open(link.slice(link.indexOf('?')));
      await again.waitFor(() => window.__forksDone || document.body.dataset.state === 'error', 300_000);
      assert.equal(await again.eval(() => document.body.dataset.state), 'done', await again.text('#error'));
      const replayed = await again.eval(() => window.__branches());
      assert.deepEqual(replayed.map((b) => b.nodes.length), [8, 4]);
      assert.deepEqual(replayed[1].final, tree[3].final, 'the link reproduces the branch');
      await again.close();
      const bad = await browser.open(`?engine=cpu&steps=3&batch=1&forks=${encodeURIComponent('[{"at":9,"s":{}}]')}`);
      await bad.waitFor(() => document.body.dataset.state === 'error', 120_000);
      assert.match(await bad.text('#error'), /forks: step 9 is not a kept node/);
      await bad.close();

      // A budget of 50 kB holds two nodes of 18.8 kB: the older ones are dropped, the page says so,
      // and resuming from a dropped node is an error naming it.
      const small = await browser.open('?engine=cpu&steps=5&batch=2&seed=5&sampler=ddim&class=3&guidance=2&branchBudgetMB=0.05');
      await waitForEnd(small);
      const t = await small.eval(() => window.__branches());
      assert.deepEqual(t[0].dropped, t[0].nodes.slice(0, 3));
      assert.match(await small.text('#branch-note'), /3 oldest node\(s\) dropped/);
      assert.match(await small.text('#branch-budget'), /18\.4 kB; the tree keeps up to 0\.05 MB/);
      const msg = await small.eval(async (id) => {
        try { for await (const f of window.__sampler().run({ steps: 5, batch: 2, seed: 5, classLabel: 3, guidance: 2, resume: id })) void f; return 'ran'; } catch (e) { return e.message; }
      }, t[0].nodes[0]);
      assert.match(msg, new RegExp(`node ${t[0].nodes[0]} is not kept`));
      await small.close();
    });

    test('the sampler race: each sampler ends on its single run\'s image, and the plot has a line per sampler', { timeout: 600_000 }, async () => {
      const page = await browser.open('?engine=cpu&steps=5&batch=1&seed=9&class=4&guidance=2&sampler=ddim');
      await waitForEnd(page);
      await page.eval(() => { document.getElementById('race-panel').open = true; window.__runRace(['ddim', 'euler', 'heun']); });
      await page.waitFor(() => window.__race || document.body.dataset.state === 'error', 300_000);
      const race = await page.eval(() => window.__race);
      assert.deepEqual(race.map((r) => [r.sampler, r.evaluations]), [['ddim', 5], ['euler', 5], ['heun', 9]]);
      for (const r of race) {
        assert.ok(r.distances.at(-1) < 1e-6 && r.distances[0] > 0.3, `${r.sampler}: the distance falls to 0 (${r.distances.map((d) => d.toFixed(2))})`);
        await setForm(page, { sampler: r.sampler });
        await page.eval(() => document.getElementById('start').click());
        await waitForEnd(page);
        assert.deepEqual(await page.eval(() => Array.from(window.__sampler().lastSample())), r.final, `${r.sampler}: the race's image is the single run's`);
      }
      assert.match(await page.text('#race-label'), /Heun.*9 evaluations|heun: 9 evaluations/);
      assert.deepEqual(await page.errors(), []);
      await page.close();
    });

    test('a recorded WebM has a frame per evaluation', { timeout: 300_000 }, async () => {
      const page = await browser.open('?engine=cpu&steps=6&batch=2&seed=2&class=1&guidance=2&sampler=ddim');
      await waitForEnd(page);
      const unsupported = await page.eval(() => document.getElementById('video-label').hidden && document.getElementById('link').textContent);
      if (unsupported) { assert.match(unsupported, /video export: this browser/); await page.close(); return; }
      await setForm(page, { video: true });
      await page.eval(() => document.getElementById('start').click());
      await waitForEnd(page);
      await page.waitFor(() => window.__video, 30_000);
      const video = await page.eval(async () => ({ frames: window.__video.frames, bytes: Array.from(new Uint8Array(await window.__video.blob.arrayBuffer())) }));
      assert.equal(video.frames, 6);
      assert.equal(webmFrames(Uint8Array.from(video.bytes)), 6, 'WebM blocks = evaluations');
      assert.match(await page.text('#video-link'), /WebM \(6 frames/);
      await page.close();
    });

    test('the layout: the image, counter and Start fit 1280×800; the page works at 375 px; screenshots', { skip: browserName !== 'chromium' && 'Chromium sets the viewport', timeout: 600_000 }, async () => {
      const page = await browser.open('?engine=cpu&steps=20&batch=4&seed=3&class=7&guidance=3&sampler=ddim');
      await page.resize(1280, 800);
      await waitForEnd(page);
      const fit = await page.eval(() => {
        const r = (id) => document.getElementById(id).getBoundingClientRect();
        return { scroll: document.documentElement.scrollHeight, inner: innerHeight, start: r('start').bottom, canvas: r('canvas').bottom, counter: r('step').bottom };
      });
      assert.ok(fit.scroll <= fit.inner, `no vertical scrolling at 1280×800: ${JSON.stringify(fit)}`);
      await shoot(page, 'default');
      // Instruments on demand: views side by side, the tree of a fork, the race.
      await page.eval(() => { document.getElementById('instruments').open = true; for (const v of ['eps', 'x0']) document.querySelector(`[name=also][value=${v}]`).checked = true; document.getElementById('start').click(); });
      await waitForEnd(page);
      await shoot(page, 'views', 'main');
      await page.eval(() => { document.getElementById('instruments').open = false; document.getElementById('branch-panel').open = true; const b = window.__branches().at(-1); window.__selectNode(b.nodes[7]); document.querySelector('[name=class]').value = '2'; window.__continueFrom(false); });
      await waitForEnd(page);
      await shoot(page, 'branches', 'main');
      await page.eval(() => { document.getElementById('branch-panel').open = false; document.getElementById('race-panel').open = true; window.__runRace(['ddim', 'dpm++2m', 'euler', 'heun']); });
      await page.waitFor(() => window.__race || document.body.dataset.state === 'error', 300_000);
      await shoot(page, 'race', 'main');
      await page.resize(375, 740);
      await page.eval(() => { document.getElementById('race-panel').open = false; window.scrollTo(0, 0); });
      const phone = await page.eval(() => ({ scrollW: document.documentElement.scrollWidth, inner: innerWidth, start: document.getElementById('start').getBoundingClientRect().width > 0, pad: getComputedStyle(document.getElementById('pad')).touchAction }));
      assert.ok(phone.scrollW <= phone.inner, `no sideways scrolling at 375 px: ${JSON.stringify(phone)}`);
      assert.ok(phone.start && phone.pad === 'none', 'Start is there; the pad takes touch strokes');
      await page.eval(() => document.getElementById('start').click());
      await waitForEnd(page);
      await shoot(page, 'phone');
      assert.deepEqual(await page.errors(), []);
      await page.close();
    });
  });
}

async function shoot(page, name, sel) {
  if (!process.env.UPDATE_SCREENSHOTS) return;
  mkdirSync(SHOTS, { recursive: true });
  const file = path.join(SHOTS, `${name}.png`);
  await (sel ? page.screenshotOf(sel, file) : page.screenshot(file));
}

/** Frames in a WebM: SimpleBlocks and BlockGroups in its Clusters (EBML walked by element sizes). */
function webmFrames(b) {
  let count = 0;
  const vint = (at) => {
    const first = b[at];
    let len = 1;
    while (len <= 8 && !(first & (0x80 >> (len - 1)))) len++;
    return len;
  };
  const readId = (at) => { const len = vint(at); let v = 0; for (let i = 0; i < len; i++) v = v * 256 + b[at + i]; return [v, len]; };
  const readSize = (at) => {
    const len = vint(at);
    let v = b[at] & (0xff >> len);
    let unknown = v === (0xff >> len);
    for (let i = 1; i < len; i++) { v = v * 256 + b[at + i]; if (b[at + i] !== 0xff) unknown = false; }
    return [unknown ? -1 : v, len];
  };
  const CONTAINERS = new Set([0x18538067, 0x1f43b675, 0xa0]); // Segment, Cluster, BlockGroup
  const walk = (start, end) => {
    let at = start;
    while (at < end) {
      const [id, il] = readId(at);
      const [size, sl] = readSize(at + il);
      const body = at + il + sl;
      if (id === 0xa3 || id === 0xa1) count++; // SimpleBlock, Block
      if (CONTAINERS.has(id)) {
        walk(body, size < 0 ? end : Math.min(end, body + size));
        if (size < 0) return; // an unknown-size element runs to its parent's end
      }
      if (size < 0) return;
      at = body + size;
    }
  };
  walk(0, b.length);
  return count;
}
