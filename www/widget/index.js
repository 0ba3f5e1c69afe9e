// ddim-webgpu: `import 'ddim-webgpu'` defines <ddim-sampler>; the named exports are the JS API.
export { createSampler, chooseEngine, loadModel, modelUrls, liveStats, ready, DEFAULT_MODEL, DEFAULT_CLASSIFIER } from './sampler.js';
export { HUB_ENDPOINT, parseHubId } from './hub.js';
export { DdimSamplerElement } from './element.js';
