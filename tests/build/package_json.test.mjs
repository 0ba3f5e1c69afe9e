// www/widget/build/package_json.mjs: the npm package's manifest from the checked-in template, the
// version from Cargo.toml and the git remote; and its check that the package holds what it lists.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { execFileSync, spawnSync } from 'node:child_process';
import { mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { cargoVersion, originUrl, packageJson, unshipped } from '../../www/widget/build/package_json.mjs';

const ROOT = fileURLToPath(new URL('../..', import.meta.url));
const SCRIPT = path.join(ROOT, 'www/widget/build/package_json.mjs');
const TEMPLATE = JSON.parse(readFileSync(path.join(ROOT, 'www/widget/package.json'), 'utf8'));

test("the version is Cargo.toml's [package] version, not a dependency's", () => {
  const toml = '[package]\nname = "ddim-webgpu"\nversion = "1.2.3"\nedition = "2021"\n\n[dependencies]\nwgpu = { version = "30" }\n';
  assert.equal(cargoVersion(toml), '1.2.3');
  assert.throws(() => cargoVersion('[package]\nname = "x"\n'), /no version/);
  assert.match(cargoVersion(readFileSync(path.join(ROOT, 'Cargo.toml'), 'utf8')), /^\d+\.\d+\.\d+/);
});

test('the manifest: version after the name, the repository last, 2-space JSON ending in a newline', () => {
  const text = packageJson({ name: 'p', description: 'd', files: ['a.js', 'model/'], exports: { '.': './a.js' } }, '0.3.0', 'https://example.org/p.git');
  assert.equal(text, `{
  "name": "p",
  "version": "0.3.0",
  "description": "d",
  "files": [
    "a.js",
    "model/"
  ],
  "exports": {
    ".": "./a.js"
  },
  "repository": {
    "type": "git",
    "url": "https://example.org/p.git"
  }
}
`);
  assert.deepEqual(Object.keys(JSON.parse(packageJson({ name: 'p', license: 'MIT' }, '1.0.0', ''))), ['name', 'version', 'license']);
});

test('the template holds every static field and no version', () => {
  assert.equal(TEMPLATE.name, 'ddim-webgpu');
  assert.equal(TEMPLATE.version, undefined);
  for (const key of ['description', 'license', 'type', 'main', 'types', 'exports', 'files', 'sideEffects', 'keywords']) assert.ok(key in TEMPLATE, key);
  // What exports, main, types and sideEffects name is shipped.
  const targets = [TEMPLATE.main, TEMPLATE.types, ...TEMPLATE.sideEffects, ...Object.values(TEMPLATE.exports).flatMap((e) => (typeof e === 'string' ? [] : Object.values(e)))];
  for (const t of targets) assert.ok(TEMPLATE.files.includes(t.replace(/^\.\//, '')), t);
});

test('what the package would not ship: listed files it lacks, glue imports no entry covers', () => {
  const pkg = { files: ['index.js', 'ddim_webgpu.js', 'snippets/', 'model/'] };
  const glue = "import { a } from './snippets/ddim-webgpu-1234/inline0.js';\nimport * as b from './ddim_webgpu_bg.js';\nimport c from 'https://cdn/x.js';\n";
  const has = new Set(['index.js', 'ddim_webgpu.js', 'snippets/', 'model/']);
  assert.deepEqual(unshipped(pkg, glue, (f) => has.has(f)), ['ddim_webgpu_bg.js (imported by ddim_webgpu.js, not in "files")']);
  has.delete('index.js');
  has.delete('snippets/'); // a folder may be absent
  assert.deepEqual(unshipped({ files: [...pkg.files, 'ddim_webgpu_bg.js'] }, glue, (f) => has.has(f) || f === 'ddim_webgpu_bg.js'), ['index.js (in "files", not in the package)']);
  assert.deepEqual(unshipped(pkg, "import x from './snippetsx.js';", (f) => has.has(f) || f === 'index.js'), ['snippetsx.js (imported by ddim_webgpu.js, not in "files")']);
});

test("the repository is the clone's origin, or nothing outside a clone", (t) => {
  const dir = mkdtempSync(path.join(tmpdir(), 'package-json-'));
  t.after(() => rmSync(dir, { recursive: true }));
  assert.equal(originUrl(dir), '');
  execFileSync('git', ['init', '-q', dir]);
  assert.equal(originUrl(dir), '');
  execFileSync('git', ['-C', dir, 'remote', 'add', 'origin', 'https://example.org/ddim-webgpu.git']);
  assert.equal(originUrl(dir), 'https://example.org/ddim-webgpu.git');
});

test('the command line writes OUT_DIR/package.json, then refuses a package that lacks a listed file', (t) => {
  const out = mkdtempSync(path.join(tmpdir(), 'package-json-'));
  t.after(() => rmSync(out, { recursive: true }));
  for (const f of TEMPLATE.files) {
    if (f.endsWith('/')) mkdirSync(path.join(out, f));
    else writeFileSync(path.join(out, f), '');
  }
  writeFileSync(path.join(out, 'ddim_webgpu.js'), "import * as snippet from './snippets/x/inline0.js';\n");
  execFileSync(process.execPath, [SCRIPT, out], { stdio: ['ignore', 'pipe', 'pipe'] });
  const pkg = JSON.parse(readFileSync(path.join(out, 'package.json'), 'utf8'));
  assert.deepEqual(Object.keys(pkg).slice(0, 2), ['name', 'version']);
  assert.equal(pkg.version, cargoVersion(readFileSync(path.join(ROOT, 'Cargo.toml'), 'utf8')));
  assert.deepEqual({ ...pkg, version: undefined, repository: undefined }, { ...TEMPLATE, version: undefined, repository: undefined });

  rmSync(path.join(out, 'LICENSE'));
  const run = spawnSync(process.execPath, [SCRIPT, out], { encoding: 'utf8' });
  assert.equal(run.status, 1);
  assert.match(run.stderr, /LICENSE \(in "files", not in the package\)/);
});
