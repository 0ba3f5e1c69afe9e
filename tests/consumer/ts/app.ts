// A strict TypeScript consumer: the element and the API, typed by the package's index.d.ts.
import 'ddim-webgpu';
import { createSampler, chooseEngine, liveStats, DEFAULT_MODEL, type FrameInfo, type Sampler } from 'ddim-webgpu';

const el = document.createElement('ddim-sampler'); // HTMLElementTagNameMap gives DdimSamplerElement
el.setAttribute('steps', '20');
el.addEventListener('frame', (e) => {
  const f: FrameInfo = e.detail;
  console.log(f.step, f.total, f.timestep, f.ms.toFixed(1));
});
el.addEventListener('load', (e) => console.log(e.detail.engine, e.detail.reason, e.detail.modelInfo.parameters));
el.addEventListener('error', (e) => console.error(e.detail.message));
document.body.append(el);
await el.start();
await el.stop();

const choice = await chooseEngine('auto');
const canvas = document.createElement('canvas');
const s: Sampler = await createSampler({ canvas, engine: 'cpu', model: DEFAULT_MODEL, onProgress: (p) => console.log(p.loaded / p.total) });
const ac = new AbortController();
for await (const f of s.run({ steps: 20, seed: 1, batch: 4, label: [1, 2, 3, 4], guidance: 3, view: 'x0', signal: ac.signal })) {
  if (f.step > 3) ac.abort();
}
const img = s.lastImage();
if (img) console.log(img.width, img.height, img.data.length);
const st = s.stats();
console.log(choice.reason, st.gpuBuffers + st.gpuBytes, liveStats().samplers, s.engine === 'webgpu');
s.destroy();
