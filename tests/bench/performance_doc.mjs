// Writes one benchmark's table into docs/performance.md, between its section's markers
//     <!-- bench:SECTION:start -->  …  <!-- bench:SECTION:end -->
// followed by a line saying when, where and at which commit it was measured:
//     Measured 2026-12-07 on AMD EPYC, 2 cores, GPU: llvmpipe (LLVM 15.0.6, 256 bits) at 1560f7e
//
//     node tests/bench/performance_doc.mjs [--table | --code] [--doc PATH] SECTION FILE
//
// FILE holds the markdown (`-`: standard input). --table keeps only the first markdown table of
// FILE and the non-empty line above it (the benchmark scripts print their settings there);
// --code puts all of FILE in a ```text block (for `ddim bench`, which prints lines, not a table).
// The GPU/adapter part comes from BENCH_GPU when set. PERFORMANCE_DOC or --doc names another file
// than docs/performance.md (the tests use a temporary one). Fails, naming the section, when the
// doc lacks its markers or FILE is empty, and then leaves the doc as it was. Only Node's own
// modules: it runs wherever ./build.sh bench runs.
import { execFileSync } from 'node:child_process';
import { readFileSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { pathToFileURL } from 'node:url';

const ROOT = path.resolve(import.meta.dirname, '../..');
export const DEFAULT_DOC = path.join(ROOT, 'docs/performance.md');
/** The sections ./build.sh bench writes (docs/performance.md has markers for each; a test checks). */
export const BENCH_SECTIONS = ['native', 'native-cifar', 'ddim', 'browser', 'first-frame', 'browsers', 'scale'];

export function markers(section) {
  return [`<!-- bench:${section}:start -->`, `<!-- bench:${section}:end -->`];
}

/** `doc` with the text between `section`'s markers replaced by `body` (markers kept). */
export function replaceSection(doc, section, body, docName = 'docs/performance.md') {
  if (!/^[a-z0-9][a-z0-9-]*$/.test(section)) throw new Error(`section name "${section}": use lower-case letters, digits and dashes`);
  const [start, end] = markers(section);
  const count = (m) => doc.split(m).length - 1;
  if (count(start) !== 1 || count(end) !== 1 || doc.indexOf(start) > doc.indexOf(end)) {
    const found = `${count(start)} start and ${count(end)} end marker(s)`;
    throw new Error(`${docName} has no section "${section}" (${found}): it needs the line ${start}, the table, then ${end}`);
  }
  const from = doc.indexOf(start) + start.length;
  return `${doc.slice(0, from)}\n${body.trim()}\n${doc.slice(doc.indexOf(end))}`;
}

/** The first markdown table of `text` (its `|` lines) with the non-empty line above it as caption. */
export function extractTable(text) {
  const lines = text.split('\n').map((l) => l.trimEnd());
  const first = lines.findIndex((l) => l.trimStart().startsWith('|'));
  if (first < 0) return '';
  let last = first;
  while (last + 1 < lines.length && lines[last + 1].trimStart().startsWith('|')) last++;
  const table = lines.slice(first, last + 1).map((l) => l.trimStart());
  const caption = lines.slice(0, first).reverse().find((l) => l.trim() !== '');
  return (caption ? [caption.trim(), '', ...table] : table).join('\n');
}

/** `text` as a fenced block (longer fences than any run of backticks inside). */
export function codeBlock(text) {
  const body = text.replace(/\s+$/, '');
  if (!body) return '';
  const longest = Math.max(2, ...(body.match(/`+/g) ?? []).map((r) => r.length));
  const fence = '`'.repeat(longest + 1);
  return `${fence}text\n${body}\n${fence}`;
}

/** "CPU model, N cores[, GPU: …]": the CPU from /proc/cpuinfo (else Node's view), the GPU from env. */
export function machine(env = process.env, cpuinfo = readCpuinfo()) {
  const field = (name) => cpuinfo.match(new RegExp(`^${name}\\s*:\\s*(.+)$`, 'm'))?.[1].trim();
  const model = field('model name') ?? field('Hardware') ?? field('cpu model') ?? os.cpus()[0]?.model ?? 'unknown CPU';
  const cores = (cpuinfo.match(/^processor\s*:/gm) ?? []).length || os.availableParallelism();
  const gpu = env.BENCH_GPU?.trim();
  return `${model}, ${cores} core${cores === 1 ? '' : 's'}${gpu ? `, GPU: ${gpu}` : ''}`;
}

function readCpuinfo() {
  try { return readFileSync('/proc/cpuinfo', 'utf8'); } catch { return ''; }
}

/** The short commit of the tree that was measured, and whether tracked files differ from it
 * (this doc aside: the bench run writes it section by section). */
export function commit(root = ROOT) {
  const git = (...args) => execFileSync('git', ['-C', root, ...args], { encoding: 'utf8', stdio: ['ignore', 'pipe', 'ignore'] }).trim();
  try {
    const head = git('rev-parse', '--short', 'HEAD');
    const dirty = git('status', '--porcelain', '--untracked-files=no', '--', '.', ':(exclude)docs/performance.md');
    return dirty ? `${head} (with uncommitted changes)` : head;
  } catch {
    return 'an unknown commit (not a git checkout)';
  }
}

export function stamp({ date = new Date(), where = machine(), at = commit() } = {}) {
  return `Measured ${date.toISOString().slice(0, 10)} on ${where} at ${at}`;
}

function main(argv) {
  let mode = 'markdown', doc = process.env.PERFORMANCE_DOC || DEFAULT_DOC;
  const rest = [];
  for (let i = 0; i < argv.length; i++) {
    if (argv[i] === '--table') mode = 'table';
    else if (argv[i] === '--code') mode = 'code';
    else if (argv[i] === '--doc') doc = argv[++i];
    else rest.push(argv[i]);
  }
  const [section, file] = rest;
  if (rest.length !== 2 || !doc) {
    throw new Error('usage: node tests/bench/performance_doc.mjs [--table | --code] [--doc PATH] SECTION FILE (- for stdin)');
  }
  const input = readFileSync(file === '-' ? 0 : file, 'utf8');
  const body = mode === 'table' ? extractTable(input) : mode === 'code' ? codeBlock(input) : input.trim();
  if (!body) throw new Error(`section "${section}": ${file === '-' ? 'standard input' : file} holds no ${mode === 'table' ? 'markdown table' : 'text'}; ${doc} left as it was`);
  const text = readFileSync(doc, 'utf8');
  const relative = path.relative(process.cwd(), doc);
  const docName = relative && !relative.startsWith('..') ? relative : path.resolve(doc);
  writeFileSync(doc, replaceSection(text, section, `${body}\n\n${stamp()}`, docName));
  console.error(`performance_doc: section "${section}" of ${docName} written`);
}

if (process.argv[1] && import.meta.url === pathToFileURL(path.resolve(process.argv[1])).href) {
  try {
    main(process.argv.slice(2));
  } catch (e) {
    console.error(`performance_doc: ${e.message}`);
    process.exit(1);
  }
}
