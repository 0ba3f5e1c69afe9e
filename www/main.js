// The live denoising page: a consumer of the package's JS API (www/widget/, shipped in pkg/):
// chooseEngine picks and explains the engine, createSampler loads the model, run() streams steps.
import { ready, chooseEngine, createSampler, loadModel } from './pkg/index.js'; // also defines <ddim-sampler>
import { Pad } from './pad.js';

const $ = (id) => document.getElementById(id);
const form = $('controls');
const params = new URLSearchParams(location.search);
const DEFAULT_MODEL = 'model/';
// ?hubEndpoint=URL: where hf: models come from (a Hub mirror; the page's CSP must allow it).
const hubEndpoint = params.has('hubEndpoint') ? new URL(params.get('hubEndpoint'), location.href).href : undefined;
// The model field: a Hub id (hf:owner/name[@revision]) as it is, else a URL relative to the page.
const modelSource = (model) => (model.startsWith('hf:') ? model : new URL(model, location.href).href);

let sampler = null;      // the DiffusionSampler in use
let samplerKey = '';     // engine + model it was built for
let samplerModel = '';   // the model URL it was built for ('' for chosen files)
let running = null;      // promise of the current run
let userFiles = null;    // FileList chosen with the picker
window.__frames = [];    // a checksum of the canvas after every step (read by the page tests)
window.__loseDevice = () => sampler?.[Symbol.for('ddim-webgpu.loseDeviceForTest')](); // test hook (not public API): a device loss mid-run
const pad = new Pad($('pad'));
window.__pad = pad;      // the page tests draw and read it
let film = [];           // the recorded frames of the last run

function setState(s) { document.body.dataset.state = s; }

function showError(e) {
  const box = $('error');
  box.hidden = false;
  box.textContent = 'Error: ' + (e && e.message ? e.message : String(e));
  setState('error');
  console.error(e);
}

function clearError() { $('error').hidden = true; $('error').textContent = ''; }

for (const k of ['steps', 'eta', 'tolerance', 'seed', 'batch', 'guidance', 'classifierScale', 'classifierClass', 'engine', 'sampler', 'view', 'model', 'mode', 'strength', 'jumpLength', 'jumpNSample', 'tEnd', 'toSeed']) {
  if (params.has(k)) form.elements[k].value = params.get(k);
}
if (!params.has('seed')) form.elements.seed.value = Math.floor(Math.random() * 1e6);
// η belongs to DDIM; inpainting and inversion run DDIM's update (RePaint, DDIMInverseScheduler).
const DDIM_ONLY = ['inpaint', 'invert'];
const etaFollowsSampler = () => {
  const f = form.elements;
  f.sampler.disabled = DDIM_ONLY.includes(f.mode.value);
  f.eta.disabled = f.sampler.value !== 'ddim' || f.mode.value === 'invert';
  f.tolerance.disabled = f.sampler.value !== 'vp-ode-rk45';
};
form.elements.sampler.addEventListener('change', etaFollowsSampler);
form.elements.mode.addEventListener('change', etaFollowsSampler);
etaFollowsSampler();

function readForm() {
  const f = form.elements;
  const num = (k) => Number(f[k].value);
  return {
    // η belongs to DDIM alone (the other samplers refuse it).
    steps: num('steps'), eta: f.sampler.value === 'ddim' ? num('eta') : undefined,
    tolerance: f.sampler.value === 'vp-ode-rk45' ? num('tolerance') : undefined, seed: num('seed'), batch: num('batch'), guidance: num('guidance'),
    classifierScale: num('classifierScale') || undefined,
    classifierClass: num('classifierScale') && f.classifierClass.value !== '' ? Number(f.classifierClass.value) : undefined,
    classLabel: f.class.value === '' ? undefined : Number(f.class.value),
    sampler: f.sampler.value, view: f.view.value, engine: f.engine.value, model: f.model.value.trim() || DEFAULT_MODEL,
    mode: f.mode.value,
  };
}

let latent = null; // x_T of the last inversion (an end of an interpolation)

/** The run options of the form's mode: the pad's image and mask where the mode needs them. */
function modeOptions(o) {
  const f = form.elements;
  const num = (k) => Number(f[k].value);
  const run = { ...o, record: true };
  if (['edit', 'inpaint', 'invert', 'forward'].includes(o.mode)) run.image = pad.image();
  if (o.mode === 'edit') run.strength = num('strength');
  if (DDIM_ONLY.includes(o.mode)) run.sampler = 'ddim';
  if (o.mode === 'inpaint') Object.assign(run, { mask: pad.mask(), jumpLength: num('jumpLength'), jumpNSample: num('jumpNSample') });
  // One image: its inversion, its forward process (the batch would repeat it).
  if (o.mode === 'invert' || o.mode === 'forward') { run.batch = undefined; run.eta = undefined; }
  if (o.mode === 'forward') run.tEnd = num('tEnd');
  if (o.mode === 'interpolate') {
    Object.assign(run, { from: o.seed, to: f.toLatent.checked && latent ? latent : num('toSeed'), seed: undefined, batch: Math.max(2, o.batch) });
    if (run.sampler === 'ddpm') run.sampler = 'ddim'; // a walk between noises needs a deterministic sampler
    if (run.sampler === 'ddim') run.eta = 0;
    // One class along the strip (mixed classes would change the digit at every frame).
    run.classLabel ??= sampler.modelInfo.numClassEmbeds ? 0 : undefined;
  }
  return run;
}

// A canvas keeps the first context type it is given, so every sampler gets a fresh one.
function newCanvas() {
  const old = $('canvas');
  const c = document.createElement('canvas');
  c.id = 'canvas';
  c.width = old.width; c.height = old.height;
  old.replaceWith(c);
  return c;
}

async function readFile(files, pick) {
  const f = [...files].find(pick);
  return f ? new Uint8Array(await f.arrayBuffer()) : null;
}

const onProgress = (p) => { $('step').textContent = `loading ${p.total ? Math.round((100 * p.loaded) / p.total) : '…'}%${p.fromCache ? ' (cache)' : ''}`; };

/** `prefetched`: the model's files, already downloading (loadModel) while the engine was chosen. */
async function newSampler(choice, opts, prefetched) {
  const canvas = newCanvas();
  // ?threads=N: the CPU engine on N Web Workers (default: one per core, up to 4).
  const engine = choice.engine === 'cpu' && params.has('threads') ? { ...choice, engine: `cpu:${params.get('threads')}` } : choice;
  let files = prefetched ?? undefined; // a promise: createSampler awaits it (and ends its spare workers if it fails)
  if (userFiles) {
    const config = await readFile(userFiles, (f) => f.name === 'config.json');
    const weights = await readFile(userFiles, (f) => f.name.endsWith('.safetensors'));
    const sched = await readFile(userFiles, (f) => f.name === 'scheduler_config.json');
    if (!config || !weights) throw new Error('choose a config.json and a .safetensors file of a diffusers UNet2DModel');
    const dec = new TextDecoder();
    files = { config: dec.decode(config), weights, scheduler: sched ? dec.decode(sched) : undefined };
  }
  // ?thread=worker (or auto): the engine in a Web Worker on an OffscreenCanvas; the page's thread by default.
  const thread = params.get('thread') || 'main';
  return createSampler({ canvas, model: modelSource(opts.model), engine, files, onProgress, thread, hubEndpoint });
}

function showModel(s) {
  const info = s.modelInfo;
  const k = info.numClassEmbeds;
  const select = form.elements.class;
  const want = params.get('class') ?? select.value;
  select.replaceChildren(new Option('mixed', ''));
  if (k) for (let c = 0; c < k - 1; c++) select.add(new Option(String(c), String(c)));
  // The null class: the model unconditional (classifier guidance can then steer it).
  if (k) select.add(new Option('none (null class)', String(k - 1)));
  select.disabled = !k;
  // Classifier-free guidance needs a class-conditional model.
  form.elements.guidance.disabled = !k;
  if (!k) form.elements.guidance.value = 0;
  if ([...select.options].some((o) => o.value === want)) select.value = want;
  showSamplers(info);
  viewsFollowGuidance();
  pad.setModel(info.sampleSize ?? 32, info.inChannels);
  $('model-info').textContent = `model: ${(info.parameters / 1e6).toFixed(2)} M parameters (${info.storedDtype}), ` +
    `${info.inChannels} channel(s), ${info.sampleSize}×${info.sampleSize}` + (k ? `, ${k - 1} classes + null class` : '') +
    `; scheduler: ${info.scheduler}`;
}

// ε(∅) and the guidance term exist only with classifier-free guidance (a class model, w > 0).
function viewsFollowGuidance() {
  const f = form.elements;
  const guiding = !f.guidance.disabled && Number(f.guidance.value) > 0;
  for (const o of f.view.options) if (o.value === 'eps_uncond' || o.value === 'guidance') o.disabled = !guiding;
  for (const o of f.view.options) if (o.value === 'classifier') o.disabled = !(Number(f.classifierScale.value) > 0);
  f.classifierClass.disabled = !(Number(f.classifierScale.value) > 0);
  if (f.view.selectedOptions[0]?.disabled) f.view.value = 'eps';
}
form.elements.guidance.addEventListener('input', viewsFollowGuidance);
form.elements.classifierScale.addEventListener('input', viewsFollowGuidance);

// The samplers this model can run (a learned time embedding needs integer timesteps, a Fourier
// one σ > 0), its own scheduler's preselected unless ?sampler= names another it can run.
const SAMPLER_LABELS = {
  'dpm++2m': 'DPM-Solver++(2M)', 'vp-sde': 'reverse SDE (Euler–Maruyama)', 'vp-ode': 'probability-flow ODE (Euler)',
  'vp-pc': 'predictor–corrector (Langevin)', 'vp-ode-rk45': 'probability-flow ODE (adaptive RK45)',
  'score-sde-ve': 'score SDE VE (predictor–corrector)',
};
function showSamplers(info) {
  const fill = (select, want) => {
    select.replaceChildren(...info.samplers.map((n) => new Option(SAMPLER_LABELS[n] ?? n, n)));
    select.value = info.samplers.includes(want) ? want : info.defaultSampler;
  };
  fill(form.elements.sampler, params.get('sampler') ?? info.defaultSampler);
  const other = info.samplers.find((n) => n !== form.elements.sampler.value) ?? form.elements.sampler.value;
  fill($('compare-sampler'), info.samplers.includes($('compare-sampler').value) && $('compare-sampler').value !== form.elements.sampler.value ? $('compare-sampler').value : other);
  etaFollowsSampler();
}

// The schedule plot: log-SNR over the train timesteps, this run's evaluations as dots (the
// current one highlighted). window.__schedulePlot records what was drawn, for the page tests.
function drawSchedule(alphas, marks, current) {
  const c = $('schedule');
  if (!c || !alphas?.length) return;
  const ctx = c.getContext('2d');
  const T = alphas.length;
  const snr = Array.from(alphas, (a) => Math.log(a / (1 - a)));
  const finite = snr.filter(Number.isFinite);
  const lo = Math.min(...finite), hi = Math.max(...finite);
  const x = (t) => 4 + (t / Math.max(1, T - 1)) * (c.width - 8);
  const y = (v) => 4 + (1 - (Math.min(hi, Math.max(lo, v)) - lo) / (hi - lo || 1)) * (c.height - 8);
  ctx.clearRect(0, 0, c.width, c.height);
  ctx.strokeStyle = '#6cf';
  ctx.lineWidth = 1.5;
  ctx.beginPath();
  snr.forEach((v, t) => (t ? ctx.lineTo(x(t), y(v)) : ctx.moveTo(x(t), y(v))));
  ctx.stroke();
  marks.forEach((t, i) => {
    const ti = Math.min(T - 1, Math.max(0, Math.round(t)));
    ctx.fillStyle = i === current ? '#f93' : '#fff';
    ctx.beginPath();
    ctx.arc(x(ti), y(snr[ti]), i === current ? 4 : 2, 0, 2 * Math.PI);
    ctx.fill();
  });
  window.__schedulePlot = { marks: [...marks], current, T };
}

/** The numbers row: σ_t, log-SNR, ‖x_t‖ and ‖Δx̂₀‖ of the frame (forward-process frames have none). */
function showNumbers(n) {
  const show = (id, v, digits) => { $(id).textContent = v == null ? '–' : v.toFixed(digits); };
  show('n-sigma', n?.sigma, 3); show('n-logsnr', n?.logSnr, 2); show('n-xnorm', n?.xNorm, 2); show('n-x0change', n?.x0Change, 3);
}

function checksum(canvas) {
  const c = document.createElement('canvas');
  c.width = canvas.width; c.height = canvas.height;
  const ctx = c.getContext('2d');
  ctx.drawImage(canvas, 0, 0);
  const d = ctx.getImageData(0, 0, c.width, c.height).data;
  let h = 2166136261 >>> 0, min = 255, max = 0;
  for (let i = 0; i < d.length; i += 4) {
    h = Math.imul(h ^ d[i], 16777619) >>> 0;
    min = Math.min(min, d[i]); max = Math.max(max, d[i]);
  }
  return { hash: h, min, max };
}

async function start(overrides = {}) {
  if (running) { sampler?.stop(); await running.catch(() => {}); }
  clearError();
  setState('starting');
  const opts = { ...readForm(), ...overrides };
  // A new model downloads while the adapter answers (both are on the first frame's path).
  const prefetched = !userFiles && (!sampler || samplerModel !== opts.model) ? loadModel(modelSource(opts.model), { onProgress, hubEndpoint }) : null;
  prefetched?.catch(() => {}); // reported where newSampler awaits it
  const choice = await chooseEngine(opts.engine);
  const { engine, reason } = choice;
  $('engine').textContent = engine === 'webgpu' ? 'WebGPU' : 'CPU (wasm)';
  $('engine-reason').textContent = reason;
  const key = `${engine}|${userFiles ? [...userFiles].map((f) => f.name + f.size).join(',') : opts.model}`;
  if (!sampler || samplerKey !== key) {
    sampler?.destroy();
    sampler = null;
    sampler = await newSampler(choice, opts, prefetched);
    samplerKey = key;
    samplerModel = userFiles ? '' : opts.model;
    showModel(sampler);
  }
  $('adapter').textContent = sampler.adapter;
  $('thread').textContent = sampler.thread === 'worker' ? 'Web Worker (OffscreenCanvas)' : "page's thread";
  $('thread').title = sampler.threadReason || '';
  window.__frames = [];
  const marks = [];
  drawSchedule(sampler.modelInfo.alphasCumprod, marks, -1);
  const t0 = performance.now();
  $('start').disabled = true; $('stop').disabled = false; $('download').disabled = true; $('compare-run').disabled = true;
  setState('running');
  const canvas = $('canvas');
  try {
    // The class and sampler lists and guidance's state exist once the model is known (showModel).
    const { classLabel, guidance, sampler: samplerName, eta, tolerance, classifierScale, classifierClass } = readForm();
    // Classifier guidance: the bundled digit classifier, loaded on first use.
    if (classifierScale && !sampler.modelInfo.classifier) await sampler.loadClassifier();
    const run = modeOptions({ ...opts, classLabel, guidance, sampler: samplerName, eta, tolerance, classifierScale, classifierClass, numbers: true, ...overrides });
    running = (async () => {
      for await (const s of sampler.run(run)) {
        $('step').textContent = `${s.step} / ${s.total}`;
        $('timestep').textContent = s.phase === 'reverse' ? s.timestep : `${s.timestep} (${s.phase})`;
        $('ms').textContent = s.ms.toFixed(1);
        $('total').textContent = `${((performance.now() - t0) / 1000).toFixed(2)} s`;
        showNumbers(s.numbers);
        window.__frames.push({ ...checksum(canvas), ms: s.ms, at: performance.now(), timestep: s.timestep, phase: s.phase, numbers: s.numbers ?? null });
        marks.push(s.timestep);
        drawSchedule(sampler.modelInfo.alphasCumprod, marks, marks.length - 1);
      }
    })();
    await running;
    window.__lastImage = sampler.lastImage();
    afterRun(run);
    setState('done');
    $('download').disabled = false;
  } catch (e) {
    if ((e && e.message) !== 'cancelled') throw e;
    setState('stopped');
  } finally {
    running = null;
    $('start').disabled = false; $('stop').disabled = true; $('compare-run').disabled = false;
  }
}

/** What a finished run leaves: the filmstrip, an inversion's error and x_T, an interpolation strip. */
function afterRun(run) {
  film = sampler.film();
  window.__film = film.map((f) => ({ timestep: f.timestep, phase: f.phase }));
  $('film-figure').hidden = !film.length;
  $('film-pos').max = String(Math.max(0, film.length - 1));
  $('film-pos').value = $('film-pos').max;
  showFilmFrame();
  const result = sampler.lastResult();
  window.__lastResult = result;
  if (run.mode === 'invert' && result?.reconstruction) {
    const r = result.reconstruction;
    latent = sampler.lastLatent();
    form.elements.toLatent.disabled = false;
    $('recon').textContent = `reconstruction from the inverted x_T: RMSE ${r.rmse.toFixed(4)}, max |error| ${r.maxError.toFixed(3)}, PSNR ${r.psnr.toFixed(1)} dB`;
  }
  if (run.mode === 'interpolate') drawRow($('strip'), sampler.lastSample(), sampler.modelInfo);
  $('strip-figure').hidden = run.mode !== 'interpolate';
  // The first sample fills an untouched pad, so there is an image to edit at once.
  if (run.mode === 'sample' && !pad.touched) pad.setValues(sampler.lastSample());
}

/** Grey/RGB pixels of values in −1 … 1 at [item, ·, h, w]. */
function pixels(values, item, c, size) {
  const plane = size * size, px = new ImageData(size, size);
  const byte = (v) => Math.round(Math.min(1, Math.max(0, (v + 1) / 2)) * 255);
  for (let i = 0; i < plane; i++) {
    const at = item * c * plane + i, r = byte(values[at]);
    px.data.set(c >= 3 ? [r, byte(values[at + plane]), byte(values[at + 2 * plane]), 255] : [r, r, r, 255], i * 4);
  }
  return px;
}

/** A batch as one row of images (the interpolation strip). */
function drawRow(canvas, values, info) {
  const size = info.sampleSize, c = info.inChannels, n = values.length / (c * size * size);
  canvas.width = n * size; canvas.height = size;
  const g = canvas.getContext('2d');
  for (let k = 0; k < n; k++) g.putImageData(pixels(values, k, c, size), k * size, 0);
}

// The filmstrip: any recorded frame of the last run, x_t beside the predicted x₀.
function showFilmFrame() {
  const f = film[Number($('film-pos').value)];
  if (!f) return;
  const c = $('film'), gap = 2;
  c.width = 2 * f.width + gap; c.height = f.height;
  const g = c.getContext('2d');
  g.fillStyle = '#333';
  g.fillRect(0, 0, c.width, c.height);
  g.putImageData(new ImageData(f.xt, f.width, f.height), 0, 0);
  g.putImageData(new ImageData(f.x0, f.width, f.height), f.width + gap, 0);
  const what = f.phase === 'forward' ? 'x₀ given' : 'predicted x₀';
  $('film-label').textContent = `frame ${Number($('film-pos').value) + 1} / ${film.length}: ${f.phase}, t = ${f.timestep} — left x_t, right ${what}`;
}

// Same noise, other sampler: the form's run, then the same seed with the other sampler, side by side.
async function compare() {
  const other = $('compare-sampler').value;
  const shots = [];
  for (const s of [form.elements.sampler.value, other]) {
    await start({ sampler: s, mode: 'sample' });
    if (document.body.dataset.state !== 'done') return;
    shots.push({ sampler: s, img: sampler.lastImage(), evaluations: window.__frames.length });
  }
  const [a, b] = shots, gap = 4, c = $('compare');
  c.width = a.img.width + gap + b.img.width; c.height = Math.max(a.img.height, b.img.height);
  const g = c.getContext('2d');
  g.fillStyle = '#333';
  g.fillRect(0, 0, c.width, c.height);
  g.putImageData(new ImageData(a.img.data, a.img.width, a.img.height), 0, 0);
  g.putImageData(new ImageData(b.img.data, b.img.width, b.img.height), a.img.width + gap, 0);
  $('compare-label').textContent = `seed ${form.elements.seed.value}, the same x_T: left ${a.sampler} (${a.evaluations} evaluations), right ${b.sampler} (${b.evaluations})`;
  $('compare-figure').hidden = false;
  window.__compare = shots.map((s) => ({ sampler: s.sampler, evaluations: s.evaluations, data: Array.from(s.img.data) }));
}

/** Saves a canvas as a PNG download named `name`. */
function savePng(c, name) {
  c.toBlob((blob) => {
    const a = document.createElement('a');
    a.href = URL.createObjectURL(blob);
    a.download = name;
    a.click();
  }, 'image/png');
}

function download() {
  const img = sampler?.lastImage();
  if (!img) return;
  const c = document.createElement('canvas');
  c.width = img.width; c.height = img.height;
  c.getContext('2d').putImageData(new ImageData(img.data, img.width, img.height), 0, 0);
  savePng(c, `ddim-seed${form.elements.seed.value}.png`);
}

// The settings of the form as URL parameters (the ones the page reads at load), so a copied link
// samples the same image; the model only where it is not the bundled one.
const LINK_KEYS = ['steps', 'eta', 'tolerance', 'seed', 'batch', 'class', 'guidance', 'classifierScale', 'classifierClass', 'sampler', 'view', 'mode', 'engine', 'model', 'strength', 'tEnd', 'toSeed', 'jumpLength', 'jumpNSample'];
function linkToThisRun() {
  const q = new URLSearchParams();
  for (const k of LINK_KEYS) {
    const el = form.elements[k];
    if (!el || el.disabled || el.value === '') continue;
    if (k === 'model' && el.value.trim() === DEFAULT_MODEL) continue;
    q.set(k, el.value);
  }
  for (const k of ['thread', 'hubEndpoint']) if (params.has(k)) q.set(k, params.get(k));
  return `${location.origin}${location.pathname}?${q}`;
}
async function copyLink() {
  const link = linkToThisRun();
  window.__link = link;
  $('link').textContent = link;
  try { await navigator.clipboard.writeText(link); $('link').textContent = `copied: ${link}`; } catch { /* no clipboard here: the link is shown to copy by hand */ }
}

/** Every recorded frame, x_t beside x̂₀, in rows of up to 8, as one canvas. */
function filmSheet() {
  if (!film.length) return null;
  const gap = 2, f0 = film[0], cellW = 2 * f0.width + gap + gap, cellH = f0.height + gap, cols = Math.min(8, film.length);
  const c = document.createElement('canvas');
  c.width = cols * cellW; c.height = Math.ceil(film.length / cols) * cellH;
  const g = c.getContext('2d');
  g.fillStyle = '#333';
  g.fillRect(0, 0, c.width, c.height);
  film.forEach((f, k) => {
    const x = (k % cols) * cellW, y = Math.floor(k / cols) * cellH;
    g.putImageData(new ImageData(f.xt, f.width, f.height), x, y);
    g.putImageData(new ImageData(f.x0, f.width, f.height), x + f.width + gap, y);
  });
  return c;
}
window.__filmSheet = () => { const c = filmSheet(); return c && { width: c.width, height: c.height, frames: film.length }; };
function downloadFilmSheet() {
  const c = filmSheet();
  if (c) savePng(c, `ddim-film-seed${form.elements.seed.value}.png`);
}

// The embedded element: a second consumer, of the element this time.
const embed = $('embed');
embed.addEventListener('frame', (e) => { $('embed-status').textContent = `step ${e.detail.step} / ${e.detail.total}`; });
embed.addEventListener('done', (e) => { $('embed-status').textContent = `done in ${(e.detail.ms / 1000).toFixed(2)} s`; });
embed.addEventListener('error', (e) => { $('embed-status').textContent = `error: ${e.detail.message}`; });
$('embed-start').addEventListener('click', () => embed.start().catch(() => {}));

form.addEventListener('submit', (e) => { e.preventDefault(); start().catch(showError); });
$('compare-run').addEventListener('click', () => compare().catch(showError));
$('film-pos').addEventListener('input', showFilmFrame);
form.elements.paint.addEventListener('change', () => { pad.target = form.elements.paint.value; });
form.elements.brush.addEventListener('input', () => { pad.brush = Number(form.elements.brush.value); });
$('pad-undo').addEventListener('click', () => pad.undo());
$('pad-clear').addEventListener('click', () => pad.clear());
$('pad-sample').addEventListener('click', () => { pad.setValues(sampler?.lastSample()); pad.touched = true; });
$('image-file').addEventListener('change', (e) => { if (e.target.files[0]) pad.setImageFile(e.target.files[0]).catch(showError); });
pad.onError = showError;
$('stop').addEventListener('click', () => sampler?.stop());
$('download').addEventListener('click', download);
$('copy-link').addEventListener('click', () => copyLink().catch(showError));
$('film-sheet').addEventListener('click', downloadFilmSheet);
$('files').addEventListener('change', (e) => { userFiles = e.target.files.length ? e.target.files : null; });
form.elements.model.addEventListener('change', () => { userFiles = null; $('files').value = ''; });

// Uncaught errors are shown, and recorded for the page tests (WebDriver has no event for them).
window.__pageErrors = [];
window.addEventListener('error', (e) => { window.__pageErrors.push(String(e.message)); showError(e.error || e.message); });
// A Content-Security-Policy violation is a page error too (the tests serve the page with the CSP).
document.addEventListener('securitypolicyviolation', (e) => window.__pageErrors.push(`CSP: ${e.violatedDirective} blocked ${e.blockedURI}`));
window.addEventListener('unhandledrejection', (e) => { window.__pageErrors.push(String(e.reason?.message ?? e.reason)); showError(e.reason); });

// The wasm download and compile start now, beside the adapter request and the model download;
// createSampler awaits it (and reports a failure).
ready().catch(() => {});
start().catch(showError);
