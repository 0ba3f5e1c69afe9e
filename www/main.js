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
window.__sampler = () => sampler; // test hook (not public API): the page tests run the sampler directly
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
// ?views=xt,eps,x0: the view, then the others beside it.
if (params.has('views')) {
  const [first, ...rest] = params.get('views').split(',').map((v) => v.trim());
  if ([...form.elements.view.options].some((o) => o.value === first)) form.elements.view.value = first;
  for (const box of form.querySelectorAll('[name=also]')) box.checked = rest.includes(box.value);
  if (rest.length) $('instruments').open = true;
}
const BRANCH_BUDGET_MB = Number(params.get('branchBudgetMB')) || 64;
// The image controls open where the mode needs an image.
const NEEDS_IMAGE = ['edit', 'inpaint', 'invert', 'forward'];
const imageFollowsMode = () => { if (NEEDS_IMAGE.includes(form.elements.mode.value)) $('image-details').open = true; };
form.elements.mode.addEventListener('change', imageFollowsMode);
imageFollowsMode();
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
    mode: f.mode.value, views: chosenViews(),
  };
}

/** The view and the ones checked to show beside it (those the run can give: enabled). */
function chosenViews() {
  const f = form.elements;
  const also = [...form.querySelectorAll('[name=also]')].filter((b) => b.checked && !b.disabled && b.value !== f.view.value).map((b) => b.value);
  return [f.view.value, ...also];
}

let latent = null; // x_T of the last inversion (an end of an interpolation)

/** The run options of the form's mode: the pad's image and mask where the mode needs them. */
function modeOptions(o) {
  const f = form.elements;
  const num = (k) => Number(f[k].value);
  const run = { ...o, record: true };
  // Several views side by side (the canvas widens), else the one view.
  if (o.views?.length > 1) { run.views = o.views; run.view = undefined; } else run.views = undefined;
  // A sampling run keeps its nodes (the branch tree) and its x_t per frame (the thumbnails).
  if (o.mode === 'sample' && FUSED.includes(o.sampler)) Object.assign(run, { branch: true, branchBudgetMB: BRANCH_BUDGET_MB, arrays: ['xt'] });
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
  // ?threads=N: the CPU engine on N threads: wasm threads where the page is cross-origin isolated, else N
  // Web Workers splitting the batch (default: one per core, up to 8 threads or 4 workers).
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
  for (const box of form.querySelectorAll('[name=also]')) {
    box.disabled = [...f.view.options].find((o) => o.value === box.value)?.disabled ?? false;
  }
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
  raceChoices(info);
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
  let recorder = null;
  try {
    // The class and sampler lists and guidance's state exist once the model is known (showModel).
    const { classLabel, guidance, sampler: samplerName, eta, tolerance, classifierScale, classifierClass, views } = readForm();
    // Classifier guidance: the bundled digit classifier, loaded on first use.
    if (classifierScale && !sampler.modelInfo.classifier) await sampler.loadClassifier();
    const run = modeOptions({ ...opts, classLabel, guidance, sampler: samplerName, eta, tolerance, classifierScale, classifierClass, views, numbers: true, ...overrides });
    if (form.elements.video.checked && !videoUnsupported()) recorder = Recorder.start();
    beginBranch(run);
    running = (async () => {
      for await (const s of sampler.run(run)) {
        recorder?.frame(canvas);
        onBranchFrame(s);
        frameHook?.(s);
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
    if (currentBranch) currentBranch.final = sampler.lastSample();
    afterRun(run);
    setState('done');
    $('download').disabled = false;
  } catch (e) {
    if ((e && e.message) !== 'cancelled') throw e;
    setState('stopped');
  } finally {
    running = null;
    $('start').disabled = false; $('stop').disabled = true; $('compare-run').disabled = false;
    if (recorder) await showVideo(await recorder.stop(), recorder.frames);
    renderTree();
  }
}

// ---- Branches: every evaluation of a sampling run is a node (the engine keeps its state); a run
// started from a node forks the tree there.
const FUSED = ['ddim', 'ddpm', 'dpm++2m', 'euler', 'heun'];
let branches = [];       // {id, from (node id or null), run (its options), label, nodes: [{id, step, timestep, thumb, dropped}], final}
let currentBranch = null;
let selected = null;     // the selected node id
const nodeHome = new Map(); // node id → its branch
let nodeBytes = 0;       // what one node holds (x_t, x̂₀, h)
let frameHook = null;    // the race's per-frame hook

function branchLabel(run) {
  const parts = [run.sampler, `${run.steps} steps`, `seed ${run.seed}`];
  if (run.classLabel !== undefined) parts.push(`class ${run.classLabel}`);
  if (run.guidance) parts.push(`w ${run.guidance}`);
  if (run.eta) parts.push(`η ${run.eta}`);
  if (run.classifierScale) parts.push(`classifier s ${run.classifierScale}`);
  return parts.join(', ') + (run.resume != null ? ` ← node ${run.resume}` : '');
}

function beginBranch(run) {
  currentBranch = null;
  if (!run.branch) return;
  currentBranch = { id: branches.length, from: run.resume ?? null, form: formSettings(), label: branchLabel(run), nodes: [], final: null };
  branches.push(currentBranch);
  renderTree();
}

/** A thumbnail of item 0 of x_t (values in −1 … 1). */
function thumb(xt, info) {
  const size = info.sampleSize, c = document.createElement('canvas');
  c.width = size; c.height = size;
  c.getContext('2d').putImageData(pixels(xt, 0, info.inChannels, size), 0, 0);
  return c;
}

function onBranchFrame(f) {
  if (!currentBranch || f.node == null) return;
  const node = { id: f.node, step: f.step, total: f.total, timestep: f.timestep, thumb: f.xt ? thumb(f.xt, sampler.modelInfo) : null, dropped: false };
  nodeBytes = f.xt ? 3 * 4 * f.xt.length : nodeBytes;
  currentBranch.nodes.push(node);
  nodeHome.set(node.id, currentBranch);
  for (const id of f.dropped ?? []) {
    const b = nodeHome.get(id);
    const n = b?.nodes.find((m) => m.id === id);
    if (n) n.dropped = true;
    if (selected === id) selected = null;
  }
  const droppedCount = branches.reduce((a, b) => a + b.nodes.filter((n) => n.dropped).length, 0);
  $('branch-note').textContent = droppedCount ? `${droppedCount} oldest node(s) dropped: the nodes would hold more than the budget.` : '';
  $('branch-budget').textContent = `Each node holds x_t, x̂₀ and the solver's history: ${(nodeBytes / 1024).toFixed(1)} kB; the tree keeps up to ${BRANCH_BUDGET_MB} MB (the oldest nodes are dropped past it).`;
  if (f.step === f.total || f.step % 5 === 0) renderTree();
}

function depth(b) { let d = 0; for (let x = b; x?.from != null; x = nodeHome.get(x.from)) d++; return d; }

/** The tree: a row per branch (indented under the branch it grew from), a thumbnail per node. */
function renderTree() {
  const tree = $('tree');
  tree.replaceChildren(...branches.map((b) => {
    const row = document.createElement('div');
    row.className = 'branch';
    row.setAttribute('role', 'listitem');
    row.style.marginLeft = `${depth(b) * 12}px`;
    const label = document.createElement('div');
    label.className = 'note';
    label.textContent = `#${b.id}: ${b.label}${b.final ? '' : ' (paused)'}`;
    const strip = document.createElement('div');
    strip.className = 'nodes';
    for (const n of b.nodes) {
      const btn = document.createElement('button');
      btn.type = 'button';
      btn.className = 'node' + (n.id === selected ? ' selected' : '');
      btn.disabled = n.dropped;
      btn.title = `node ${n.id}: evaluation ${n.step} / ${n.total}, t = ${n.timestep}${n.dropped ? ' (dropped)' : ''}`;
      btn.dataset.node = String(n.id);
      if (n.thumb) btn.append(n.thumb);
      btn.addEventListener('click', () => selectNode(n.id));
      strip.append(btn);
    }
    row.append(label, strip);
    return row;
  }));
  const node = selected == null ? null : nodeHome.get(selected);
  $('branch-continue').disabled = $('branch-replay').disabled = node == null || running != null;
  $('branch-pad').disabled = !node?.final;
}

function selectNode(id) { selected = id; renderTree(); }

/** Continues from the selected node: with the form's settings, or (replay) with its branch's own, put back into the form. */
function continueFrom(replay) {
  const b = nodeHome.get(selected);
  if (!b) return Promise.resolve();
  if (replay) applySettings(b.form);
  return start({ mode: 'sample', resume: selected });
}

/** A link's `forks`: [{at, s}], checked (an error names what is wrong; values only ever go into form fields). */
function parseForks(text) {
  let forks;
  try { forks = JSON.parse(text); } catch { throw new Error('forks: not JSON (a copied link holds [{"at": step, "s": {setting: value}}])'); }
  if (!Array.isArray(forks)) throw new Error('forks: expected an array');
  for (const f of forks) {
    if (!f || !Number.isInteger(f.at) || f.at < 1) throw new Error(`forks: "at" must be a step number ≥ 1, got ${JSON.stringify(f?.at)}`);
    if (!f.s || typeof f.s !== 'object') throw new Error('forks: each fork needs its settings "s"');
    for (const [k, v] of Object.entries(f.s)) {
      if (!LINK_KEYS.includes(k)) throw new Error(`forks: unknown setting ${JSON.stringify(k)}`);
      if (typeof v !== 'string') throw new Error(`forks: setting ${k} must be a string`);
    }
  }
  return forks;
}

/** Replays a link's forks after its root run: each from its node of the branch before, with its settings. */
async function replayForks(forks) {
  for (const f of forks) {
    if (document.body.dataset.state !== 'done') return;
    const b = currentBranch;
    const node = b?.nodes[f.at - 1];
    if (!node || node.dropped) throw new Error(`forks: step ${f.at} is not a kept node of branch #${b?.id ?? '–'} (${b?.nodes.length ?? 0} nodes)`);
    applySettings(f.s);
    selectNode(node.id);
    await continueFrom(false);
  }
  window.__forksDone = true;
}

window.__branches = () => branches.map((b) => ({ id: b.id, from: b.from, nodes: b.nodes.map((n) => n.id), dropped: b.nodes.filter((n) => n.dropped).map((n) => n.id), final: b.final && Array.from(b.final) }));
window.__selectNode = selectNode;
window.__continueFrom = (replay) => continueFrom(replay).catch(showError);

// ---- Video: the run's frames, one per evaluation, recorded from the canvas as WebM.
function videoUnsupported() {
  if (typeof MediaRecorder !== 'function') return 'this browser has no MediaRecorder';
  if (!['video/webm;codecs=vp8', 'video/webm;codecs=vp9', 'video/webm'].some((t) => MediaRecorder.isTypeSupported(t))) return 'this browser cannot record WebM';
  if (typeof HTMLCanvasElement.prototype.captureStream !== 'function') return 'this browser cannot capture a canvas (no captureStream)';
  return null;
}

class Recorder {
  static start() {
    const r = new Recorder();
    r.canvas = document.createElement('canvas');
    r.stream = r.canvas.captureStream(0); // frames only when requested: one per evaluation
    r.track = r.stream.getVideoTracks()[0];
    r.mime = ['video/webm;codecs=vp8', 'video/webm;codecs=vp9', 'video/webm'].find((t) => MediaRecorder.isTypeSupported(t));
    r.chunks = [];
    r.frames = 0;
    r.media = new MediaRecorder(r.stream, { mimeType: r.mime });
    r.media.ondataavailable = (e) => { if (e.data.size) r.chunks.push(e.data); };
    // Recording from here (state "recording" at once; Chromium fires "start" only with the first frame).
    r.media.start();
    return r;
  }

  /** The canvas now, scaled up by a whole factor (pixels stay crisp) to at least 256 px. */
  frame(src) {
    const k = Math.max(1, Math.ceil(256 / Math.max(1, Math.min(src.width, src.height))));
    if (this.canvas.width !== src.width * k || this.canvas.height !== src.height * k) {
      this.canvas.width = src.width * k; this.canvas.height = src.height * k;
    }
    const g = this.canvas.getContext('2d');
    g.imageSmoothingEnabled = false;
    g.drawImage(src, 0, 0, this.canvas.width, this.canvas.height);
    // The track's requestFrame (Chromium), or the stream's (Firefox's CanvasCaptureMediaStream).
    if (typeof this.track.requestFrame === 'function') this.track.requestFrame(); else this.stream.requestFrame();
    this.frames++;
  }

  async stop() {
    // Chromium: the last requested frame reaches the encoder a task or two later, so let it arrive
    // first. Firefox (the stream's requestFrame) has it at once, and a wait would add a repeated
    // frame: its encoder repeats the last frame when about a second passes without one.
    if (typeof this.track.requestFrame === 'function') await new Promise((r) => setTimeout(r, 250));
    return new Promise((resolve) => {
      this.media.onstop = () => resolve(new Blob(this.chunks, { type: this.mime }));
      this.media.stop();
      this.track.stop();
    });
  }
}

async function showVideo(blob, frames) {
  const a = $('video-link');
  if (a.href) URL.revokeObjectURL(a.href);
  a.href = URL.createObjectURL(blob);
  a.download = `ddim-seed${form.elements.seed.value}.webm`;
  a.textContent = `WebM (${frames} frames, ${(blob.size / 1024).toFixed(0)} kB)`;
  a.hidden = false;
  window.__video = { frames, bytes: blob.size, blob };
}

// ---- The race: the same x_T through N samplers, one after another, each drawn live in its cell.
function raceChoices(info) {
  const box = $('race-samplers');
  const want = new Set([...box.querySelectorAll('input:checked')].map((b) => b.value));
  if (!want.size) ['ddim', 'dpm++2m', 'euler', 'heun'].forEach((n) => want.add(n));
  box.replaceChildren(...info.samplers.map((n) => {
    const l = document.createElement('label');
    const b = Object.assign(document.createElement('input'), { type: 'checkbox', value: n, checked: want.has(n) });
    l.append(b, ` ${SAMPLER_LABELS[n] ?? n}`);
    return l;
  }));
}

const RACE_COLOURS = ['#f93', '#6cf', '#9e6', '#e6c', '#fd5', '#aaa'];
async function race(names = [...$('race-samplers').querySelectorAll('input:checked')].map((b) => b.value)) {
  if (names.length < 2 || names.length > 6) throw new Error(`the race takes 2 to 6 samplers (${names.length} chosen)`);
  const info = sampler.modelInfo, size = info.sampleSize, gap = 4;
  const cells = $('race');
  cells.width = names.length * (size + gap) - gap; cells.height = size;
  const g = cells.getContext('2d');
  g.fillStyle = '#333'; g.fillRect(0, 0, cells.width, cells.height);
  const results = [];
  for (const [k, name] of names.entries()) {
    const trajectory = [];
    frameHook = (f) => {
      if (!f.xt) return;
      trajectory.push(f.xt.slice());
      g.putImageData(pixels(f.xt, 0, info.inChannels, size), k * (size + gap), 0);
    };
    const t0 = performance.now();
    try {
      await start({ sampler: name, mode: 'sample', arrays: ['xt'] });
    } finally { frameHook = null; }
    if (document.body.dataset.state !== 'done') return;
    const final = sampler.lastSample();
    const rms = (a) => Math.sqrt(a.reduce((s, v, i) => s + (v - final[i]) ** 2, 0) / a.length);
    results.push({ sampler: name, evaluations: trajectory.length, ms: performance.now() - t0, final, distances: trajectory.map(rms) });
  }
  drawRacePlot(results);
  $('race-label').textContent = results.map((r, k) => `${k + 1}. ${SAMPLER_LABELS[r.sampler] ?? r.sampler}: ${r.evaluations} evaluations, ${(r.ms / 1000).toFixed(2)} s`).join(' · ');
  window.__race = results.map((r) => ({ sampler: r.sampler, evaluations: r.evaluations, ms: r.ms, final: Array.from(r.final), distances: r.distances }));
}

/** Each trajectory's RMS distance to its own final image against U-Net evaluations. */
function drawRacePlot(results) {
  const c = $('race-plot'), g = c.getContext('2d');
  const maxE = Math.max(...results.map((r) => r.evaluations)), maxD = Math.max(...results.flatMap((r) => r.distances), 1e-6);
  g.fillStyle = '#111'; g.fillRect(0, 0, c.width, c.height);
  const x = (e) => 6 + (e / Math.max(1, maxE)) * (c.width - 12), y = (d) => c.height - 6 - (d / maxD) * (c.height - 12);
  results.forEach((r, k) => {
    g.strokeStyle = RACE_COLOURS[k % RACE_COLOURS.length]; g.lineWidth = 1.5;
    g.beginPath();
    r.distances.forEach((d, i) => (i ? g.lineTo(x(i + 1), y(d)) : g.moveTo(x(i + 1), y(d))));
    g.stroke();
    g.fillStyle = g.strokeStyle;
    g.fillText(r.sampler, c.width - 70, 14 + 12 * k);
  });
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
/** The form's settings a link carries (enabled, set, the model only where it is not the bundled one). */
function formSettings() {
  const o = {};
  for (const k of LINK_KEYS) {
    const el = form.elements[k];
    if (!el || el.disabled || el.value === '') continue;
    if (k === 'model' && el.value.trim() === DEFAULT_MODEL) continue;
    o[k] = el.value;
  }
  return o;
}

/** Sets the form to `o` (a link's or a branch's settings), firing change so dependent controls follow. */
function applySettings(o) {
  for (const [k, v] of Object.entries(o)) {
    const el = LINK_KEYS.includes(k) ? form.elements[k] : null;
    if (!el) continue;
    el.value = String(v);
    el.dispatchEvent(new Event('change'));
    el.dispatchEvent(new Event('input'));
  }
}

/** The forks from the root run to branch `b`: [{at: the node's place (1-based) in its branch, s: the settings}]. */
function forkChain(b) {
  const chain = [];
  for (let x = b; x?.from != null; x = nodeHome.get(x.from)) {
    const parent = nodeHome.get(x.from);
    if (!parent) break;
    chain.unshift({ at: parent.nodes.findIndex((n) => n.id === x.from) + 1, s: x.form });
  }
  return chain;
}

function linkToThisRun() {
  const q = new URLSearchParams();
  // The last run's branch: its root's settings, then each fork (`forks`), replayed at load.
  const chain = currentBranch ? forkChain(currentBranch) : [];
  let root = currentBranch;
  while (root?.from != null && nodeHome.get(root.from)) root = nodeHome.get(root.from);
  for (const [k, v] of Object.entries(chain.length ? root.form : formSettings())) q.set(k, v);
  if (chain.length) q.set('forks', JSON.stringify(chain));
  const views = chosenViews();
  if (views.length > 1) { q.delete('view'); q.set('views', views.join(',')); }
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
$('branch-continue').addEventListener('click', () => continueFrom(false).catch(showError));
$('branch-replay').addEventListener('click', () => continueFrom(true).catch(showError));
$('branch-pad').addEventListener('click', () => { const b = nodeHome.get(selected); if (b?.final) { pad.setValues(b.final); pad.touched = true; $('image-details').open = true; } });
$('race-run').addEventListener('click', () => race().catch(showError));
window.__race = null;
window.__runRace = (names) => race(names).catch(showError);
{
  const why = videoUnsupported();
  if (why) { $('video-label').hidden = true; $('link').textContent = `video export: ${why}`; }
}
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
// A copied link of a branch: the root run, then its forks.
(async () => {
  const forks = params.has('forks') ? parseForks(params.get('forks')) : [];
  await start();
  await replayForks(forks);
})().catch(showError);
