// Lets the relaxed-SIMD wasm run under the simd128 build's JS glue (the page loads one glue for
// either build). wasm-bindgen numbers its closure-cast imports (`__wbindgen_generic_<16 hex>`) in
// the order it meets them, which the two builds' code generation can change. Where that numbering
// is the only difference between the two glues, the relaxed wasm's imports are renamed to the
// simd128 glue's names for the same cast: the names have the same length, so they are rewritten in
// place in the wasm's import section. Anything else that differs is refused. Comments are ignored:
// they name closure shim indices, which differ between the builds.
//
//   node www/widget/build/align_glue.mjs SIMD_GLUE.js RELAXED_GLUE.js RELAXED.wasm
//
// rewrites RELAXED.wasm (only when a name moves); exits 1 with a reason when the glues differ.
import { readFileSync, writeFileSync } from 'node:fs';
import { pathToFileURL } from 'node:url';

export class GlueMismatch extends Error {}

// The glue's code without its comment lines, as lines joined by '\n' (the line breaks Python's
// str.splitlines knows, so either glue reads the same whatever its line endings).
const LINE_BREAK = /\r\n|[\n\r\v\f\x1c\x1d\x1e\x85\u2028\u2029]/;
function code(text) {
  const lines = text.split(LINE_BREAK);
  if (lines.length > 1 && lines.at(-1) === '') lines.pop();
  return lines.filter((l) => !l.trimStart().startsWith('//')).join('\n');
}

// One closure cast in the glue's import object: its name, then its body up to the next entry
// (8 spaces) or the end of the object (4 spaces).
const entry = () => /^        (__wbindgen_generic_[0-9a-f]{16}): (.*?)(?=^        \S|^    \S)/gms;

const casts = (text) => new Map([...text.matchAll(entry())].map((m) => [m[1], m[2]]));
const byName = (a, b) => (a[0] < b[0] ? -1 : a[0] > b[0] ? 1 : 0);

// The renaming that makes the relaxed glue the simd128 one: relaxed name -> simd128 name, each
// relaxed cast given the first unused simd128 name (in name order) with the same body. Throws
// GlueMismatch where the glues differ in anything but those names.
export function castRenames(simdJs, relaxedJs) {
  const simd = code(simdJs), relaxed = code(relaxedJs);
  const sCasts = casts(simd), rCasts = casts(relaxed);
  const byBody = new Map();
  for (const [name, body] of [...sCasts].sort(byName)) {
    if (!byBody.has(body)) byBody.set(body, []);
    byBody.get(body).push(name);
  }
  const rename = new Map();
  for (const [name, body] of [...rCasts].sort(byName)) {
    const names = byBody.get(body);
    if (!names?.length) throw new GlueMismatch(`${name}: no cast with this body in the simd128 glue`);
    rename.set(name, names.shift());
  }
  // Everything but the casts identical, and each cast the simd128 one of its new name.
  const renamed = new Map([...rCasts].map(([name, body]) => [rename.get(name), body]));
  const same = renamed.size === sCasts.size && [...sCasts].every(([name, body]) => renamed.has(name) && renamed.get(name) === body);
  if (relaxed.replace(entry(), '') !== simd.replace(entry(), '') || !same) {
    throw new GlueMismatch('the glue differs beyond the numbering of its closure casts');
  }
  return rename;
}

// Renames imported fields of a wasm module in place: `moved` maps old -> new names of the same
// byte length. Returns how many imports it renamed. Reads only the import section (id 2):
// (module name, field name, kind, description)*.
export function renameImports(wasm, moved) {
  const byte = (at) => {
    if (at >= wasm.length) throw new GlueMismatch('the wasm ends inside a section');
    return wasm[at];
  };
  const leb = (at) => { // unsigned LEB128: [value, position after it]
    let v = 0, shift = 0, b;
    do { b = byte(at++); v += (b & 0x7f) * 2 ** shift; shift += 7; } while (b >= 0x80);
    return [v, at];
  };
  const limits = (p) => { // flags, min, max if flags & 1
    const flags = byte(p);
    [, p] = leb(p + 1);
    return flags & 1 ? leb(p)[1] : p;
  };
  const latin1 = (bytes) => Buffer.from(bytes).toString('latin1'); // byte-exact as a Map key
  const names = new Map([...moved].map(([a, b]) => [latin1(Buffer.from(a)), Buffer.from(b)]));
  let at = 8, done = 0;
  while (at < wasm.length) {
    const id = wasm[at];
    const [size, body] = leb(at + 1);
    if (id === 2) {
      let [count, p] = leb(body), n;
      for (let i = 0; i < count; i++) {
        [n, p] = leb(p); p += n; // module
        [n, p] = leb(p);
        const to = names.get(latin1(wasm.subarray(p, p + n)));
        if (to) {
          if (to.length !== n) throw new Error('a renamed import must keep its length');
          wasm.set(to, p); done++;
        }
        p += n;
        const kind = byte(p++);
        if (kind === 0) [, p] = leb(p); // function: type index
        else if (kind === 1) p = limits(p + 1); // table: reftype, limits
        else if (kind === 2) p = limits(p); // memory: limits
        else if (kind === 3) p += 2; // global: valtype, mutability
        else throw new GlueMismatch(`import kind ${kind}: not handled`);
      }
      break;
    }
    at = body + size;
  }
  return done;
}

// The whole step on files, as build.sh runs it. Returns how many imports it renamed.
export function alignGlue(simdJsPath, relaxedJsPath, relaxedWasmPath) {
  const rename = castRenames(readFileSync(simdJsPath, 'utf8'), readFileSync(relaxedJsPath, 'utf8'));
  const moved = new Map([...rename].filter(([a, b]) => a !== b));
  if (moved.size === 0) return 0;
  const wasm = readFileSync(relaxedWasmPath);
  const done = renameImports(wasm, moved);
  if (done !== moved.size) throw new GlueMismatch(`renamed ${done} of ${moved.size} closure-cast imports`);
  writeFileSync(relaxedWasmPath, wasm);
  return done;
}

if (import.meta.url === pathToFileURL(process.argv[1]).href) {
  const args = process.argv.slice(2);
  if (args.length !== 3) {
    console.error('usage: node align_glue.mjs SIMD_GLUE.js RELAXED_GLUE.js RELAXED.wasm');
    process.exit(2);
  }
  try {
    const done = alignGlue(...args);
    if (done) console.error(`relaxed-SIMD wasm: ${done} closure-cast imports renamed to the simd128 glue's`);
  } catch (e) {
    if (!(e instanceof GlueMismatch)) throw e;
    console.error(e.message);
    process.exit(1);
  }
}
