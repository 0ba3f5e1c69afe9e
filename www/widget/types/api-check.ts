// `npm run typecheck`: the implementation's exports (sampler.js, hub.js, element.js, index.js) match what
// index.d.ts declares for them. Each assignment fails where a declared export is missing or its
// type (a method, an option's name or type) differs from the implementation's JSDoc types.
import type * as Api from '../index.js';
import * as sampler from '../sampler.js';
import * as element from '../element.js';
import * as hub from '../hub.js';

export const api: {
  DEFAULT_MODEL: typeof Api.DEFAULT_MODEL;
  HUB_ENDPOINT: typeof Api.HUB_ENDPOINT;
  parseHubId: typeof Api.parseHubId;
  modelUrls: typeof Api.modelUrls;
  ready: typeof Api.ready;
  chooseEngine: typeof Api.chooseEngine;
  loadModel: typeof Api.loadModel;
  createSampler: typeof Api.createSampler;
  liveStats: typeof Api.liveStats;
  DdimSamplerElement: typeof Api.DdimSamplerElement;
} = {
  DEFAULT_MODEL: sampler.DEFAULT_MODEL,
  HUB_ENDPOINT: hub.HUB_ENDPOINT,
  parseHubId: hub.parseHubId,
  modelUrls: sampler.modelUrls,
  ready: sampler.ready,
  chooseEngine: sampler.chooseEngine,
  loadModel: sampler.loadModel,
  createSampler: sampler.createSampler,
  liveStats: sampler.liveStats,
  DdimSamplerElement: element.DdimSamplerElement,
};

// The one sampler surface: createSampler's class implements it (checked by its @implements too).
export const surface: Api.Sampler = null as unknown as sampler.Sampler;
