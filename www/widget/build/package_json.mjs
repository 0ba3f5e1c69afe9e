// www/pkg/package.json, the npm package ddim-webgpu's manifest: the checked-in template
// www/widget/package.json (every static field) with the version from Cargo.toml after the name and,
// where the clone has a git remote 'origin', the repository at the end. Then checks the package
// ships what it needs: every entry of "files" is in the package folder, and every module the
// wasm-bindgen glue imports is under one of them.
//
//   node www/widget/build/package_json.mjs OUT_DIR      (build.sh: www/pkg, after copying into it)
import { execFileSync } from 'node:child_process';
import { existsSync, readFileSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { fileURLToPath, pathToFileURL } from 'node:url';

const ROOT = fileURLToPath(new URL('../../..', import.meta.url));
const TEMPLATE = path.join(ROOT, 'www/widget/package.json');

// The crate's version: the first line of Cargo.toml that starts with `version`, between its quotes
// (the [package] table comes first).
export function cargoVersion(cargoToml) {
  const line = cargoToml.split('\n').find((l) => l.startsWith('version'));
  const version = line?.split('"')[1];
  if (!version) throw new Error('Cargo.toml: no version line');
  return version;
}

// The clone's remote 'origin', or '' where it has none (or is no git clone).
export function originUrl(cwd = ROOT) {
  try {
    return execFileSync('git', ['remote', 'get-url', 'origin'], { cwd, encoding: 'utf8', stdio: ['ignore', 'pipe', 'ignore'] }).trim();
  } catch {
    return '';
  }
}

// The manifest's text: the template with version and repository filled in, 2-space JSON.
export function packageJson(template, version, repo) {
  const { name, ...rest } = template;
  const pkg = { name, version, ...rest };
  if (repo) pkg.repository = { type: 'git', url: repo };
  return JSON.stringify(pkg, null, 2) + '\n';
}

// What the package would not ship: files named in "files" missing from the package folder (`exists`
// asked of each; a folder entry such as snippets/ may be absent: wasm-bindgen writes snippets/
// only for a crate with JS snippets), and modules the glue imports (`from './x'`) no entry covers.
export function unshipped(pkg, glue, exists) {
  const covers = (f, module) => (f.endsWith('/') ? module.startsWith(f) : module === f);
  const missing = pkg.files.filter((f) => !f.endsWith('/') && !exists(f));
  const imports = [...glue.matchAll(/from '\.\/([^']*)'/g)].map((m) => m[1]);
  const uncovered = imports.filter((m) => !pkg.files.some((f) => covers(f, m)));
  return [...missing.map((f) => `${f} (in "files", not in the package)`), ...uncovered.map((m) => `${m} (imported by ddim_webgpu.js, not in "files")`)];
}

if (import.meta.url === pathToFileURL(process.argv[1]).href) {
  const out = process.argv[2];
  if (!out || process.argv.length > 3) {
    console.error('usage: node package_json.mjs OUT_DIR');
    process.exit(2);
  }
  const template = JSON.parse(readFileSync(TEMPLATE, 'utf8'));
  const repo = originUrl();
  if (!repo) console.error("==> no git remote 'origin': the package's repository field is left out");
  const text = packageJson(template, cargoVersion(readFileSync(path.join(ROOT, 'Cargo.toml'), 'utf8')), repo);
  writeFileSync(path.join(out, 'package.json'), text);
  const glue = path.join(out, 'ddim_webgpu.js');
  const problems = unshipped(template, existsSync(glue) ? readFileSync(glue, 'utf8') : '', (f) => existsSync(path.join(out, f)));
  if (problems.length) {
    console.error(`error: the npm package in ${out} misses:\n  ${problems.join('\n  ')}`);
    process.exit(1);
  }
}
