// www/widget/build/align_glue.mjs on glue text and wasm modules written here byte by byte: the
// relaxed wasm's closure-cast imports renamed to the simd128 glue's names, and everything it must
// refuse. Every module is also compiled by the engine's WebAssembly, so the bytes are real wasm.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { GlueMismatch, alignGlue, castRenames, renameImports } from '../../www/widget/build/align_glue.mjs';

const SCRIPT = fileURLToPath(new URL('../../www/widget/build/align_glue.mjs', import.meta.url));

// --- wasm, by hand -------------------------------------------------------------------------------
const leb = (n) => { // unsigned LEB128
  const out = [];
  do { let b = n & 0x7f; n >>>= 7; if (n) b |= 0x80; out.push(b); } while (n);
  return out;
};
const name = (s) => [...leb(Buffer.byteLength(s)), ...Buffer.from(s)];
const section = (id, bytes) => [id, ...leb(bytes.length), ...bytes];
const vec = (items) => [...leb(items.length), ...items.flat()];

const func = (field, type = 0) => [...name('wbg'), ...name(field), 0x00, ...leb(type)];
const table = (field) => [...name('wbg'), ...name(field), 0x01, 0x6f, 0x01, ...leb(4), ...leb(200)]; // externref, min 4 max 200
const memory = (field) => [...name('wbg'), ...name(field), 0x02, 0x00, ...leb(17)]; // min 17 pages
const global = (field) => [...name('wbg'), ...name(field), 0x03, 0x7f, 0x00]; // const i32
const tag = (field) => [...name('wbg'), ...name(field), 0x04, 0x00, ...leb(0)]; // exception tag of type 0

// A module: a custom section first (skipped over by its size), the types () -> () and
// (i32, i32) -> i32, then the imports.
function wasmModule(imports) {
  return Uint8Array.from([
    0x00, 0x61, 0x73, 0x6d, 0x01, 0x00, 0x00, 0x00,
    ...section(0, [...name('producers'), ...Array(300).fill(0xab)]), // size needs two LEB bytes
    ...section(1, vec([[0x60, 0x00, 0x00], [0x60, 0x02, 0x7f, 0x7f, 0x01, 0x7f]])),
    ...section(2, vec(imports)),
  ]);
}
const importNames = (bytes) => WebAssembly.Module.imports(new WebAssembly.Module(bytes)).map((i) => `${i.kind} ${i.name}`);

// --- glue, as wasm-bindgen writes it --------------------------------------------------------------
const G1 = '__wbindgen_generic_0000000000000001', G2 = '__wbindgen_generic_0000000000000002';
const G3 = '__wbindgen_generic_0000000000000003';
const cast = (nameOf, shim, sig) => `        ${nameOf}: function(arg0, arg1) {
            // Cast intrinsic for \`Closure(${sig})\`.
            // closure ${shim}
            const ret = makeMutClosure(arg0, arg1, wasm.__wbindgen_destroy_closure, ${sig});
            return ret;
        },
`;
const glue = (entries, { log = 'console.log(arg0)' } = {}) => `let wasm;
// A comment that differs: built ${entries.length} casts
function __wbg_get_imports() {
    const import0 = {
        __proto__: null,
        __wbg_log_0123: function(arg0) {
            ${log};
        },
${entries.join('')}        __wbindgen_init_externref_table: function() {
            const table = wasm.__wbindgen_externrefs;
        },
    };
    return {
        __proto__: null,
        "./ddim_webgpu_bg.js": import0,
    };
}
export default __wbg_get_imports;
`;
// The two builds meet the same two casts in the other order (and their comments name other shims).
const SIMD = glue([cast(G1, 7, 'MessageEvent'), cast(G2, 9, 'ErrorEvent')]);
const RELAXED = glue([cast(G1, 8, 'ErrorEvent'), cast(G2, 12, 'MessageEvent')]);

function files(simd, relaxed, wasm) {
  const dir = mkdtempSync(path.join(tmpdir(), 'align-glue-'));
  const at = (f) => path.join(dir, f);
  writeFileSync(at('simd.js'), simd);
  writeFileSync(at('relaxed.js'), relaxed);
  writeFileSync(at('relaxed.wasm'), wasm);
  return { dir, simd: at('simd.js'), relaxed: at('relaxed.js'), wasm: at('relaxed.wasm') };
}

test('casts numbered differently: the relaxed names map to the simd128 names of the same casts', () => {
  assert.deepEqual([...castRenames(SIMD, RELAXED)], [[G1, G2], [G2, G1]]);
});

test('the relaxed wasm imports the simd128 glue names, every other import untouched', (t) => {
  const before = wasmModule([func('__wbg_log_0123'), memory('memory'), func(G1, 1), table('__wbindgen_externrefs'), global('__stack'), func(G2)]);
  assert.deepEqual(importNames(before), ['function __wbg_log_0123', 'memory memory', `function ${G1}`, 'table __wbindgen_externrefs', 'global __stack', `function ${G2}`]);
  const f = files(SIMD, RELAXED, before);
  t.after(() => rmSync(f.dir, { recursive: true }));
  assert.equal(alignGlue(f.simd, f.relaxed, f.wasm), 2);
  const after = readFileSync(f.wasm);
  assert.equal(after.length, before.length);
  assert.deepEqual(importNames(after), ['function __wbg_log_0123', 'memory memory', `function ${G2}`, 'table __wbindgen_externrefs', 'global __stack', `function ${G1}`]);
  assert.equal([...after].filter((b, i) => before[i] !== b).length, 2); // the last hex digit of each name
});

test('the command line: renames, says so, exits 0', (t) => {
  const f = files(SIMD, RELAXED, wasmModule([func(G1), func(G2)]));
  t.after(() => rmSync(f.dir, { recursive: true }));
  const run = spawnSync(process.execPath, [SCRIPT, f.simd, f.relaxed, f.wasm], { encoding: 'utf8' });
  assert.equal(run.status, 0);
  assert.equal(run.stderr, "relaxed-SIMD wasm: 2 closure-cast imports renamed to the simd128 glue's\n");
  assert.deepEqual(importNames(readFileSync(f.wasm)), [`function ${G2}`, `function ${G1}`]);
});

test('nothing to rename: the wasm is not read or written', (t) => {
  const same = glue([cast(G1, 3, 'MessageEvent'), cast(G2, 4, 'ErrorEvent')]);
  const f = files(SIMD, same, 'not wasm at all');
  t.after(() => rmSync(f.dir, { recursive: true }));
  assert.deepEqual([...castRenames(SIMD, same)], [[G1, G1], [G2, G2]]);
  assert.equal(alignGlue(f.simd, f.relaxed, f.wasm), 0);
  assert.equal(readFileSync(f.wasm, 'utf8'), 'not wasm at all');
  assert.equal(alignGlue(f.simd, f.simd, f.wasm), 0);
});

test('a glue that differs beyond the numbering is refused, the wasm untouched', (t) => {
  const wasm = wasmModule([func(G1), func(G2)]);
  const cases = {
    'other code outside the casts': [glue([cast(G1, 8, 'ErrorEvent'), cast(G2, 12, 'MessageEvent')], { log: 'console.warn(arg0)' }), /differs beyond the numbering/],
    'a cast the simd128 glue lacks': [glue([cast(G1, 8, 'ErrorEvent'), cast(G2, 12, 'CloseEvent')]), /no cast with this body in the simd128 glue/],
    'a cast more': [glue([cast(G1, 8, 'ErrorEvent'), cast(G2, 12, 'MessageEvent'), cast(G3, 13, 'MessageEvent')]), /no cast with this body/],
    'a cast fewer': [glue([cast(G1, 8, 'ErrorEvent')]), /differs beyond the numbering/],
  };
  for (const [what, [relaxed, message]] of Object.entries(cases)) {
    assert.throws(() => castRenames(SIMD, relaxed), (e) => e instanceof GlueMismatch && message.test(e.message), what);
    const f = files(SIMD, relaxed, wasm);
    t.after(() => rmSync(f.dir, { recursive: true }));
    const run = spawnSync(process.execPath, [SCRIPT, f.simd, f.relaxed, f.wasm], { encoding: 'utf8' });
    assert.equal(run.status, 1, what);
    assert.match(run.stderr, message, what);
    assert.deepEqual(readFileSync(f.wasm), Buffer.from(wasm), what);
  }
});

test('an import kind it cannot step over is refused', () => {
  const bytes = wasmModule([tag('__cpp_exception'), func(G1), func(G2)]);
  assert.deepEqual(importNames(bytes), ['tag __cpp_exception', `function ${G1}`, `function ${G2}`]);
  assert.throws(() => renameImports(bytes, new Map([[G1, G2], [G2, G1]])), (e) => e instanceof GlueMismatch && e.message === 'import kind 4: not handled');
});

test('a cast the glue renames but the wasm does not import is refused', (t) => {
  const f = files(SIMD, RELAXED, wasmModule([func(G1)]));
  t.after(() => rmSync(f.dir, { recursive: true }));
  assert.throws(() => alignGlue(f.simd, f.relaxed, f.wasm), /renamed 1 of 2 closure-cast imports/);
});

test('a truncated wasm is refused, not read past its end', () => {
  const bytes = wasmModule([func(G1), func(G2)]);
  assert.throws(() => renameImports(bytes.subarray(0, bytes.length - 3), new Map([[G1, G2], [G2, G1]])), GlueMismatch);
});

test('line endings do not matter: a CRLF glue aligns with an LF one', () => {
  assert.deepEqual([...castRenames(SIMD, RELAXED.replaceAll('\n', '\r\n'))], [[G1, G2], [G2, G1]]);
});
