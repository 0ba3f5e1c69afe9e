// www/widget/hub.js: `hf:owner/name[@revision]` ids parsed as huggingface_hub parses repo ids,
// resolved to the Hub's resolve URLs (what modelUrls and loadModel use), and a pipeline repo found
// by its model_index.json, against a local server in the Hub's URL layout that sends the weights
// to another port with a 302, as the Hub sends them to its CDN. No request leaves the machine.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import http from 'node:http';
import { readFileSync } from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { explainMissingWeights, hubModelUrls, parseHubId, resolveHubModel, HUB_ENDPOINT } from '../../www/widget/hub.js';

const BUNDLED = fileURLToPath(new URL('../../weights/mnist-cond/', import.meta.url));
const bundled = (f) => readFileSync(path.join(BUNDLED, f));

test('ids parse as huggingface_hub validates repo ids; bad ones name the id and the problem', () => {
  assert.deepEqual(parseHubId('hf:google/ddpm-cifar10-32'), { owner: 'google', name: 'ddpm-cifar10-32', revision: 'main' });
  assert.deepEqual(parseHubId('hf:a_b/c.d@refs/pr/1'), { owner: 'a_b', name: 'c.d', revision: 'refs/pr/1' });
  const bad = {
    'hf:': 'no repo id',
    'hf:owner': 'no owner',
    'hf:a/b/c': 'more than one `/`',
    'hf:a b/c': 'character " "',
    'hf:a/b!': 'character "!"',
    'hf:-a/b': "starts or ends with '-' or '.'",
    'hf:a/b.': "starts or ends with '-' or '.'",
    'hf:a--b/c': "'--' or '..'",
    'hf:a/b..c': "'--' or '..'",
    'hf:a/b.git': '.git',
    [`hf:a/${'n'.repeat(97)}`]: 'longer than 96',
    'hf:a/b@': 'revision is empty',
    'hf:a/b@x/../y': '`..` segment',
    'owner/name': 'does not start with hf:',
  };
  for (const [id, why] of Object.entries(bad)) {
    assert.throws(() => parseHubId(id), (e) => e.message.includes(`\`${id}\``) && e.message.includes(why), id);
  }
});

test('the resolve URLs of a plain repo and of a pipeline, the revision one path segment, the endpoint replaceable', () => {
  const base = `${HUB_ENDPOINT}/google/ddpm-cifar10-32/resolve/main`;
  assert.deepEqual(hubModelUrls('hf:google/ddpm-cifar10-32'), {
    config: `${base}/config.json`, weights: `${base}/diffusion_pytorch_model.safetensors`, scheduler: `${base}/scheduler_config.json`,
  });
  assert.deepEqual(hubModelUrls('hf:o/n@v1', { pipeline: true, hubEndpoint: 'https://mirror.example/hf/' }), {
    config: 'https://mirror.example/hf/o/n/resolve/v1/unet/config.json',
    weights: 'https://mirror.example/hf/o/n/resolve/v1/unet/diffusion_pytorch_model.safetensors',
    scheduler: 'https://mirror.example/hf/o/n/resolve/v1/scheduler/scheduler_config.json',
  });
  assert.equal(hubModelUrls('hf:o/n@refs/pr/1').config, `${HUB_ENDPOINT}/o/n/resolve/refs%2Fpr%2F1/config.json`);
});

// The Hub double: repos by "owner/name", files by path; revision main only.
const index = JSON.stringify({ _class_name: 'DDPMPipeline', unet: ['diffusers', 'UNet2DModel'], scheduler: ['diffusers', 'DDPMScheduler'] });
const REPOS = {
  'test/plain': { 'config.json': bundled('config.json'), 'diffusion_pytorch_model.safetensors': bundled('diffusion_pytorch_model.safetensors') },
  'test/pipeline': {
    'model_index.json': index, 'unet/config.json': bundled('config.json'),
    'unet/diffusion_pytorch_model.safetensors': bundled('diffusion_pytorch_model.safetensors'),
    'scheduler/scheduler_config.json': bundled('scheduler_config.json'),
  },
  'test/no-unet': { 'model_index.json': JSON.stringify({ _class_name: 'X', vae: ['diffusers', 'AutoencoderKL'] }) },
  'test/html': { 'model_index.json': '<!DOCTYPE html><html><body>Sign in</body></html>' },
  'test/pickle': { 'config.json': bundled('config.json'), 'diffusion_pytorch_model.bin': 'pickle' },
};
let hub, cdn, endpoint;
const listen = (server) => new Promise((resolve) => server.listen(0, '127.0.0.1', () => resolve(`http://127.0.0.1:${server.address().port}`)));

before(async () => {
  cdn = http.createServer((req, res) => {
    const [, owner, name, ...file] = req.url.split('/').slice(1);
    const body = REPOS[`${owner}/${name}`]?.[file.join('/')];
    res.writeHead(body === undefined ? 404 : 200).end(req.method === 'HEAD' ? undefined : body);
  });
  const cdnBase = await listen(cdn);
  hub = http.createServer((req, res) => {
    const m = req.url.match(/^\/([^/]+)\/([^/]+)\/resolve\/([^/]+)\/(.+)$/);
    const body = m && m[3] === 'main' ? REPOS[`${m[1]}/${m[2]}`]?.[m[4]] : undefined;
    if (body === undefined) return res.writeHead(404).end('Entry not found');
    if (/\.(safetensors|bin)$/.test(m[4])) return res.writeHead(302, { location: `${cdnBase}/cdn/${m[1]}/${m[2]}/${m[4]}` }).end();
    res.writeHead(200).end(body);
  });
  endpoint = await listen(hub);
});
after(() => { hub?.close(); cdn?.close(); });

test('model_index.json decides the layout: a pipeline reads unet/ and scheduler/, a plain repo its root', async () => {
  const pipeline = await resolveHubModel('hf:test/pipeline', { hubEndpoint: endpoint });
  assert.equal(pipeline.weights, `${endpoint}/test/pipeline/resolve/main/unet/diffusion_pytorch_model.safetensors`);
  assert.equal(pipeline.scheduler, `${endpoint}/test/pipeline/resolve/main/scheduler/scheduler_config.json`);
  // The weights come through the 302 to the other port, byte for byte.
  const weights = new Uint8Array(await (await fetch(pipeline.weights)).arrayBuffer());
  assert.deepEqual(weights, new Uint8Array(bundled('diffusion_pytorch_model.safetensors')));
  const plain = await resolveHubModel('hf:test/plain', { hubEndpoint: endpoint });
  assert.deepEqual(plain, hubModelUrls('hf:test/plain', { hubEndpoint: endpoint }));
  assert.equal((await fetch(plain.config)).status, 200);
});

test('bad repos are errors naming the URL and the problem', async () => {
  const err = async (id) => resolveHubModel(id, { hubEndpoint: endpoint }).then(() => 'no error', (e) => e.message);
  assert.match(await err('hf:test/html'), /\/test\/html\/resolve\/main\/model_index\.json: expected JSON, got an HTML page/);
  assert.match(await err('hf:test/no-unet'), /model_index\.json: a pipeline without a "unet" entry/);
  assert.match(await err('hf:owner'), /`hf:owner`: not a Hub model id \(no owner\)/);
  assert.match(await err('hf:test/x'), /no error/, 'a missing repo is found out at config.json (loadModel says the repo may not exist)');
  const unreachable = await resolveHubModel('hf:a/b', { hubEndpoint: 'http://127.0.0.1:1' }).catch((e) => e.message);
  assert.match(unreachable, /^http:\/\/127\.0\.0\.1:1\/a\/b\/resolve\/main\/model_index\.json: fetch failed/);
  // A repo with only pickle weights: the error says to convert them; other 404s stay as they were.
  const pickle = hubModelUrls('hf:test/pickle', { hubEndpoint: endpoint });
  const notFound = new Error('404');
  assert.match((await explainMissingWeights(pickle.weights, notFound)).message, /diffusion_pytorch_model\.bin: only PyTorch pickle weights.*convert them to safetensors/);
  assert.equal(await explainMissingWeights(hubModelUrls('hf:test/missing', { hubEndpoint: endpoint }).weights, notFound), notFound);
});
