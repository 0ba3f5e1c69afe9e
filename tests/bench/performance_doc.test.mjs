// tests/bench/performance_doc.mjs on a temporary doc: a section's table replaced (nothing else
// touched), the same input twice gives the same file, --table / --code, and a missing section is
// an error naming it that leaves the doc as it was. Also: docs/performance.md has every section
// ./build.sh bench writes.   node --test tests/bench/
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { mkdtempSync, readFileSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { BENCH_SECTIONS, DEFAULT_DOC, codeBlock, extractTable, machine, markers, replaceSection } from './performance_doc.mjs';

const SCRIPT = path.join(import.meta.dirname, 'performance_doc.mjs');
const DOC = `# Performance

Prose before.

<!-- bench:native:start -->
| old | table |
|---|---|
| 1 | 2 |

Measured 2000-01-01 on Old CPU, 1 core at 0000000
<!-- bench:native:end -->

Prose between, kept.

<!-- bench:browser:start -->
untouched
<!-- bench:browser:end -->
`;
const TABLE = '| threads | ours |\n|---|---|\n| 1 | 2.59 |\n';
const STAMP = /^Measured \d{4}-\d{2}-\d{2} on .+, \d+ cores?(, GPU: .+)? at ([0-9a-f]{7,}( \(with uncommitted changes\))?|an unknown commit .*)$/m;

function scratch() {
  const dir = mkdtempSync(path.join(tmpdir(), 'performance-doc-'));
  const doc = path.join(dir, 'performance.md');
  writeFileSync(doc, DOC);
  return { dir, doc };
}

function run(doc, args, input, env = {}) {
  return spawnSync(process.execPath, [SCRIPT, ...args], { input, encoding: 'utf8', env: { ...process.env, PERFORMANCE_DOC: doc, ...env } });
}

test('a section is replaced by the given markdown and a Measured line; the rest of the doc is kept', () => {
  const { dir, doc } = scratch();
  const md = path.join(dir, 'native.md');
  writeFileSync(md, TABLE);
  const r = run(doc, ['native', md], undefined, { BENCH_GPU: 'llvmpipe (LLVM 15.0.6, 256 bits)' });
  assert.equal(r.status, 0, r.stderr);
  const out = readFileSync(doc, 'utf8');
  const [start, end] = markers('native');
  const inside = out.slice(out.indexOf(start) + start.length, out.indexOf(end));
  assert.ok(inside.includes(TABLE.trim()), inside);
  assert.ok(!inside.includes('old'), 'the old table is gone');
  assert.equal(inside.match(/^Measured /gm).length, 1, 'one Measured line');
  assert.match(inside, STAMP);
  assert.match(inside, /, GPU: llvmpipe \(LLVM 15\.0\.6, 256 bits\) at /);
  // Everything outside the markers as it was.
  assert.equal(out.slice(0, out.indexOf(start)), DOC.slice(0, DOC.indexOf(start)));
  assert.equal(out.slice(out.indexOf(end)), DOC.slice(DOC.indexOf(end)));
});

test('writing the same output twice gives the same file (and never a second Measured line)', () => {
  const { doc } = scratch();
  assert.equal(run(doc, ['native', '-'], TABLE).status, 0);
  const once = readFileSync(doc, 'utf8');
  assert.equal(run(doc, ['native', '-'], TABLE).status, 0);
  assert.equal(readFileSync(doc, 'utf8'), once);
  assert.equal(replaceSection(once, 'native', `${TABLE}\n\nMeasured x`), replaceSection(replaceSection(once, 'native', 'y'), 'native', `${TABLE}\n\nMeasured x`));
});

test('a missing section is an error naming it and its markers; the doc is left as it was', () => {
  const { doc } = scratch();
  const r = run(doc, ['scale', '-'], TABLE);
  assert.notEqual(r.status, 0);
  assert.match(r.stderr, /no section "scale"/);
  assert.ok(r.stderr.includes('<!-- bench:scale:start -->') && r.stderr.includes('<!-- bench:scale:end -->'), r.stderr);
  assert.equal(readFileSync(doc, 'utf8'), DOC);
  // A marker without its partner, or the two swapped, is no section either.
  assert.throws(() => replaceSection('<!-- bench:x:start -->\n', 'x', 'b'), /no section "x"/);
  assert.throws(() => replaceSection('<!-- bench:x:end -->\n<!-- bench:x:start -->\n', 'x', 'b'), /no section "x"/);
});

test('an empty input is refused and leaves the doc as it was (a failed benchmark wipes nothing)', () => {
  const { doc } = scratch();
  const r = run(doc, ['--table', 'native', '-'], 'error: no adapter\n');
  assert.notEqual(r.status, 0);
  assert.match(r.stderr, /section "native".*no markdown table/);
  assert.equal(readFileSync(doc, 'utf8'), DOC);
});

test('--table keeps the first table and its caption line; --code fences the whole output', () => {
  const printed = 'chromium webgpu: 697 ms/step\n\nbundled model, batch 4, guidance 3\n\n' + TABLE + '  CPU engine, 1 worker: adapter\n| second | table |\n';
  assert.equal(extractTable(printed), `bundled model, batch 4, guidance 3\n\n${TABLE.trim()}`);
  assert.equal(extractTable('no table here'), '');
  assert.equal(codeBlock('adapter: x\ngpu forward: 35.1 ms\n'), '```text\nadapter: x\ngpu forward: 35.1 ms\n```');
  assert.equal(codeBlock('a ``` b'), '````text\na ``` b\n````');
  const { doc } = scratch();
  assert.equal(run(doc, ['--table', 'native', '-'], printed).status, 0);
  assert.ok(readFileSync(doc, 'utf8').includes(`bundled model, batch 4, guidance 3\n\n${TABLE.trim()}\n\nMeasured `));
});

test('the machine line reads the CPU model and cores from /proc/cpuinfo', () => {
  const cpuinfo = 'processor\t: 0\nmodel name\t: AMD EPYC\n\nprocessor\t: 1\nmodel name\t: AMD EPYC\n';
  assert.equal(machine({}, cpuinfo), 'AMD EPYC, 2 cores');
  assert.equal(machine({ BENCH_GPU: 'NVIDIA H100 80GB HBM3' }, cpuinfo), 'AMD EPYC, 2 cores, GPU: NVIDIA H100 80GB HBM3');
});

test('docs/performance.md has the markers of every section ./build.sh bench writes', () => {
  const text = readFileSync(DEFAULT_DOC, 'utf8');
  for (const s of BENCH_SECTIONS) assert.doesNotThrow(() => replaceSection(text, s, 'x'), s);
});
