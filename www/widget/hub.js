// Hugging Face Hub model sources: `hf:owner/name[@revision]` → the Hub's resolve URLs
// ({endpoint}/{owner}/{name}/resolve/{revision}/{path}), a pipeline repo (model_index.json) read
// from its unet/ and scheduler/. The same rules as the CLI's (src/hub.rs). No imports, so node
// tests load it without the wasm glue.

/** @typedef {import('./index.js').ModelUrls} ModelUrls */
/** @typedef {import('./index.js').HubId} HubId */

/** Where `hf:` ids resolve unless a `hubEndpoint` is given. */
export const HUB_ENDPOINT = 'https://huggingface.co';
const PREFIX = 'hf:';
const PIPELINE_INDEX = 'model_index.json';

/** Whether a model source is a Hub id (`hf:…`) rather than a URL. @param {unknown} model */
export const isHubId = (model) => typeof model === 'string' && model.startsWith(PREFIX);

/**
 * What is wrong with one part of a repo id (owner or name), as huggingface_hub's validate_repo_id
 * sees it, or ''.
 * @param {string} part
 * @param {string} what
 */
function partProblem(part, what) {
  if (!part) return `the ${what} is empty`;
  const bad = part.match(/[^A-Za-z0-9_.-]/);
  if (bad) return `the ${what} has the character ${JSON.stringify(bad[0])}: only letters, digits, '-', '_' and '.' are allowed`;
  if (!/^\w/.test(part) || !/\w$/.test(part)) return `the ${what} starts or ends with '-' or '.'`;
  if (part.includes('--') || part.includes('..')) return `the ${what} contains '--' or '..'`;
  return '';
}

/**
 * A revision becomes one URL segment: branch, tag and commit characters only, no empty or `..` segment.
 * @param {string} revision
 */
function revisionProblem(revision) {
  const bad = revision.match(/[^A-Za-z0-9._/-]/);
  if (bad) return `the revision has the character ${JSON.stringify(bad[0])}`;
  if (revision.split('/').some((s) => s === '' || s === '.' || s === '..')) return 'the revision is empty or has an empty, `.` or `..` segment';
  return '';
}

/**
 * Parses `hf:owner/name[@revision]` (revision `main` by default); throws an Error naming the id
 * and what is wrong with it.
 * @param {string} source
 * @returns {HubId}
 */
export function parseHubId(source) {
  const fail = (/** @type {string} */ why) => new Error(`\`${source}\`: not a Hub model id (${why}); expected hf:owner/name or hf:owner/name@revision`);
  if (!isHubId(source)) throw fail('it does not start with hf:');
  const rest = source.slice(PREFIX.length);
  const at = rest.indexOf('@');
  const repo = at < 0 ? rest : rest.slice(0, at);
  const revision = at < 0 ? 'main' : rest.slice(at + 1);
  const parts = repo.split('/');
  if (parts.length !== 2) throw fail(!repo ? 'no repo id' : parts.length === 1 ? 'no owner' : 'more than one `/`');
  const [owner, name] = parts;
  const problem = partProblem(owner, 'owner') || partProblem(name, 'name') ||
    (name.length > 96 ? 'the name is longer than 96 characters' : '') ||
    (repo.endsWith('.git') ? 'a repo id cannot end in .git' : '') || revisionProblem(revision);
  if (problem) throw fail(problem);
  return { owner, name, revision };
}

/**
 * The resolve URL of `path` in a repo (the revision percent-encoded as huggingface_hub does).
 * @param {HubId} id
 * @param {string} path
 * @param {string} [endpoint]
 */
export function hubFileUrl({ owner, name, revision }, path, endpoint = HUB_ENDPOINT) {
  return `${endpoint.replace(/\/+$/, '')}/${owner}/${name}/resolve/${encodeURIComponent(revision)}/${path}`;
}

/**
 * The file URLs of a Hub model: a UNet2DModel repo's, or with `pipeline` a pipeline's unet/ and scheduler/.
 * @param {string} source `hf:owner/name[@revision]`
 * @param {{ hubEndpoint?: string, pipeline?: boolean }} [options]
 * @returns {ModelUrls}
 */
export function hubModelUrls(source, { hubEndpoint = HUB_ENDPOINT, pipeline = false } = {}) {
  const id = parseHubId(source);
  const [unet, scheduler] = pipeline ? ['unet/', 'scheduler/'] : ['', ''];
  const url = (/** @type {string} */ path) => hubFileUrl(id, path, hubEndpoint);
  return { config: url(`${unet}config.json`), weights: url(`${unet}diffusion_pytorch_model.safetensors`), scheduler: url(`${scheduler}scheduler_config.json`) };
}

/**
 * What an HTTP error status from the Hub usually means, after the URL.
 * @param {string} url
 * @param {number} status
 */
export function hubStatusMessage(url, status) {
  const why = status === 404 ? 'the repo or the revision may not exist, or the repo has no such file'
    : status === 401 || status === 403 ? 'the repo may not exist, or it is private or gated (no token is sent)'
      : 'the server refused the request';
  return `${url}: HTTP ${status}: ${why}`;
}

/**
 * The file URLs of a Hub model, its layout probed: model_index.json present → a pipeline (its
 * unet/ and scheduler/), 404 → a UNet2DModel repo. Throws naming the URL where the probe fails
 * (the network, a status other than 404, HTML or a pipeline without a UNet).
 * @param {string} source `hf:owner/name[@revision]`
 * @param {{ hubEndpoint?: string, fetch?: typeof globalThis.fetch }} [options]
 * @returns {Promise<ModelUrls>}
 */
export async function resolveHubModel(source, { hubEndpoint = HUB_ENDPOINT, fetch = globalThis.fetch } = {}) {
  const url = hubFileUrl(parseHubId(source), PIPELINE_INDEX, hubEndpoint);
  let resp;
  try { resp = await fetch(url, { cache: 'no-store' }); } catch (e) { throw new Error(`${url}: fetch failed (${/** @type {any} */ (e)?.message || e})`); }
  if (resp.status === 404) return hubModelUrls(source, { hubEndpoint });
  if (!resp.ok) throw new Error(hubStatusMessage(url, resp.status));
  const text = await resp.text();
  let index;
  try { index = JSON.parse(text); } catch {
    throw new Error(`${url}: expected JSON, ${text.trimStart().startsWith('<') ? 'got an HTML page (is the endpoint a Hub?)' : 'and it does not parse'}`);
  }
  if (!index || typeof index !== 'object' || !('unet' in index)) throw new Error(`${url}: a pipeline without a "unet" entry: this engine runs a pipeline's UNet2DModel`);
  return hubModelUrls(source, { hubEndpoint, pipeline: true });
}

/**
 * The error for weights that were not found: where the repo has only PyTorch pickle weights
 * (diffusion_pytorch_model.bin, one HEAD request), one that says to convert them; else `error`.
 * @param {string} weightsUrl
 * @param {Error} error
 * @param {typeof globalThis.fetch} [fetch]
 */
export async function explainMissingWeights(weightsUrl, error, fetch = globalThis.fetch) {
  const pickle = weightsUrl.replace(/\.safetensors$/, '.bin');
  const head = await fetch(pickle, { method: 'HEAD', cache: 'no-store' }).catch(() => null);
  if (!head?.ok) return error;
  return new Error(`${pickle}: only PyTorch pickle weights (diffusion_pytorch_model.bin), which this loader does not read (a pickle ` +
    'can run code): convert them to safetensors, e.g. UNet2DModel.from_pretrained(folder).save_pretrained(out, safe_serialization=True)');
}
