#!/usr/bin/env bash
# ddim-webgpu's one build entry point. Idempotent; installs what is missing (pinned versions).
#   ./build.sh            release wasm build + wasm-bindgen (+ wasm-opt) into www/pkg/ (also an npm
#                         package), the bundled default model copied to www/model/
#   ./build.sh serve [P]  build if needed, then serve www/ on http://127.0.0.1:P/ (default 8080)
#   ./build.sh test       native cargo test (wgpu on lavapipe), then wasm-bindgen-test and the page
#                         tests in headless Chromium (WebGPU on SwiftShader) and headless Firefox
#                         (WebGPU on its fallback adapter, which presents canvases)
#   ./build.sh bench      ms per U-Net item, side by side: native (ours vs onnxruntime and PyTorch when
#                         .venv-ref exists) and in headless Chromium (ours vs onnxruntime-web); the
#                         demo page in every browser; larger random-weight models in Chromium
set -euo pipefail
cd "$(dirname "$0")"
ROOT=$PWD
export XDG_RUNTIME_DIR="${XDG_RUNTIME_DIR:-$(mktemp -d)}"
export CARGO_TERM_COLOR="${CARGO_TERM_COLOR:-never}"
WASM_TARGET=wasm32-unknown-unknown
DEFAULT_MODEL=weights/mnist-cond
FALLBACK_MODEL=tests/fixtures/models/class_f16

log() { echo "==> $*" >&2; }
die() { echo "error: $*" >&2; exit 1; }

# Prerequisites this script does not install itself: Rust (rustup) and Node.js >= 20.
need_rust() {
    command -v cargo >/dev/null && command -v rustup >/dev/null ||
        die "Rust is not installed: get it with  curl https://sh.rustup.rs -sSf | sh  (then open a new shell)"
}
need_node() {
    local major; major=$(node -p 'process.versions.node.split(".")[0]' 2>/dev/null || echo 0)
    [ "$major" -ge 20 ] ||
        die "Node.js >= 20 is needed (found ${major/#0/none}; Debian 12 ships 18): install it from https://nodejs.org or NodeSource"
}

# Where cargo puts its output (honours CARGO_TARGET_DIR and .cargo/config).
target_dir() { cargo metadata --format-version 1 --no-deps | python3 -c 'import json,sys; print(json.load(sys.stdin)["target_directory"])'; }

as_root() {
    if [ "$(id -u)" = 0 ]; then "$@"
    elif command -v sudo >/dev/null; then sudo "$@"
    else log "not root: please install the packages named above"; return 1; fi
}

apt_install() {
    local missing=()
    for p in "$@"; do dpkg -s "$p" >/dev/null 2>&1 || missing+=("$p"); done
    [ ${#missing[@]} -eq 0 ] && return 0
    log "apt-get install ${missing[*]}"
    as_root apt-get update -qq
    DEBIAN_FRONTEND=noninteractive as_root apt-get install -y -qq "${missing[@]}" >/dev/null
}

# The wasm-bindgen CLI must be exactly the version of the wasm-bindgen crate in Cargo.lock.
wasm_bindgen_version() { awk '/^name = "wasm-bindgen"$/ { getline; gsub(/version = |"/, ""); print; exit }' Cargo.lock; }

wasm_tools() {
    need_rust
    rustup target list --installed 2>/dev/null | grep -qx "$WASM_TARGET" || { log "rustup target add $WASM_TARGET"; rustup target add "$WASM_TARGET"; }
    local want; want=$(wasm_bindgen_version)
    if [ "$(wasm-bindgen --version 2>/dev/null | awk '{print $2}')" != "$want" ]; then
        log "cargo install wasm-bindgen-cli --version =$want (a few minutes, once)"
        cargo install -q wasm-bindgen-cli --version "=$want"
    fi
}

npm_tools() {
    need_node
    local m missing=0
    for m in binaryen playwright-core selenium-webdriver typescript; do [ -d "node_modules/$m" ] || missing=1; done
    if [ "$missing" = 1 ]; then
        log "npm ci (binaryen, playwright-core, selenium-webdriver, typescript)"
        npm ci --no-audit --no-fund --loglevel=error
    fi
}

# Firefox for the browser suites: Debian's firefox-esr, new enough for WebGPU (140 ESR rejects
# requestAdapter in release builds; 153 ESR works), and geckodriver built once from crates.io.
GECKODRIVER_VERSION=0.37.1
FIREFOX_MIN=153
firefox_major() { local v; v=$(firefox-esr --version 2>/dev/null | grep -o '[0-9]*\.' | head -1 | tr -d .); echo "${v:-0}"; }
firefox_tools() {
    apt_install firefox-esr
    if [ "$(firefox_major)" -lt "$FIREFOX_MIN" ]; then
        log "firefox-esr $(firefox_major) has no WebGPU: apt-get install --only-upgrade firefox-esr"
        as_root apt-get update -qq
        DEBIAN_FRONTEND=noninteractive as_root apt-get install -y -qq --only-upgrade firefox-esr >/dev/null
        [ "$(firefox_major)" -ge "$FIREFOX_MIN" ] || die "firefox-esr >= $FIREFOX_MIN is needed for WebGPU (found $(firefox_major))"
    fi
    if [ "$(geckodriver --version 2>/dev/null | awk 'NR == 1 {print $2}')" != "$GECKODRIVER_VERSION" ]; then
        log "cargo install geckodriver --version =$GECKODRIVER_VERSION (a few minutes, once)"
        cargo install -q --locked geckodriver --version "=$GECKODRIVER_VERSION"
    fi
}

copy_model() {
    rm -rf www/model && mkdir -p www/model
    local src=$DEFAULT_MODEL
    if [ ! -f "$src/config.json" ]; then
        src=$FALLBACK_MODEL
        echo "The bundled model is not trained yet: this is the random-weight test fixture $src." > www/model/NOTE.txt
    fi
    cp "$src"/config.json "$src"/*.safetensors www/model/
    [ -f "$src/scheduler_config.json" ] && cp "$src/scheduler_config.json" www/model/
    log "model for the page: $src"
}

# www/pkg as the npm package ddim-webgpu: the hand-written API and element (www/widget/), the
# wasm-bindgen glue underneath, the bundled model under model/. `npm pack www/pkg` packs it.
package() {
    cp www/widget/index.js www/widget/index.d.ts www/widget/sampler.js www/widget/element.js www/widget/cpu-worker.js www/widget/engine-worker.js \
        www/widget/wasm.js \
        www/widget/README.md www/widget/LICENSE www/pkg/
    cp -r www/model www/pkg/model
    rm -f www/pkg/model/NOTE.txt www/pkg/.gitignore
    local version repo
    version=$(awk -F'"' '/^version/ {print $2; exit}' Cargo.toml)
    repo=$(git remote get-url origin 2>/dev/null || true)
    [ -n "$repo" ] || log "no git remote 'origin': the package's repository field is left out"
    VERSION=$version REPO=$repo python3 - <<'PY'
import json, os
pkg = {
    "name": "ddim-webgpu",
    "version": os.environ["VERSION"],
    "description": "Watch a diffusers UNet2DModel denoise live in a canvas: a <ddim-sampler> element and a JS API; WGSL kernels on WebGPU, a SIMD CPU engine in wasm",
    "license": "MIT",
    "type": "module",
    "main": "./index.js",
    "types": "./index.d.ts",
    "exports": {
        ".": {"types": "./index.d.ts", "default": "./index.js"},
        "./raw": {"types": "./ddim_webgpu.d.ts", "default": "./ddim_webgpu.js"},
        "./model/*": "./model/*",
        "./package.json": "./package.json",
    },
    "files": ["index.js", "index.d.ts", "sampler.js", "element.js", "cpu-worker.js", "engine-worker.js", "wasm.js", "ddim_webgpu.js",
              "ddim_webgpu.d.ts", "ddim_webgpu_bg.wasm", "ddim_webgpu_relaxed_bg.wasm", "ddim_webgpu_bg.wasm.d.ts", "snippets/", "model/", "README.md", "LICENSE"],
    "sideEffects": ["./index.js", "./element.js", "./cpu-worker.js", "./engine-worker.js"],
    "keywords": ["diffusion", "ddim", "webgpu", "wgsl", "wasm", "unet", "diffusers", "web-component", "canvas"],
}
if os.environ.get("REPO"):
    pkg["repository"] = {"type": "git", "url": os.environ["REPO"]}
with open("www/pkg/package.json", "w") as f:
    json.dump(pkg, f, indent=2)
    f.write("\n")
PY
}

# Lets the relaxed-SIMD wasm run under the simd128 build's JS glue (the page loads one glue for
# either). wasm-bindgen numbers its closure-cast imports (`__wbindgen_generic_N`) in the order it
# meets them, which the two builds' code generation can change: where the only difference is that
# numbering, the relaxed wasm's imports are renamed to the simd128 glue's names for the same cast
# (same-length names, rewritten in the import section). Fails if anything else differs. Comments
# are ignored: they name closure shim indices, which differ between the builds.
align_glue() {
    python3 - "$@" <<'PY'
import re, sys
simd_js, relaxed_js, relaxed_wasm = sys.argv[1:4]
code = lambda t: "\n".join(l for l in t.splitlines() if not l.lstrip().startswith("//"))
simd, relaxed = code(open(simd_js).read()), code(open(relaxed_js).read())
entry = re.compile(r"^        (__wbindgen_generic_[0-9a-f]{16}): (.*?)(?=^        \S|^    \S)", re.M | re.S)
def casts(text):
    return {m.group(1): m.group(2) for m in entry.finditer(text)}
s_casts, r_casts = casts(simd), casts(relaxed)
by_body = {}
for name, body in sorted(s_casts.items()):
    by_body.setdefault(body, []).append(name)
rename = {}
for name, body in sorted(r_casts.items()):
    if not by_body.get(body):
        sys.exit(f"{name}: no cast with this body in the simd128 glue")
    rename[name] = by_body[body].pop(0)
# Everything but the casts identical, and each cast the simd128 one of its new name.
if entry.sub("", relaxed) != entry.sub("", simd) or {rename[n]: b for n, b in r_casts.items()} != s_casts:
    sys.exit("the glue differs beyond the numbering of its closure casts")
moved = {a.encode(): b.encode() for a, b in rename.items() if a != b}
if not moved:
    sys.exit(0)
wasm = bytearray(open(relaxed_wasm, "rb").read())
def leb(at):
    v = shift = 0
    while True:
        b = wasm[at]; at += 1; v |= (b & 0x7F) << shift; shift += 7
        if b < 0x80:
            return v, at
at, done = 8, 0
while at < len(wasm):
    sid, size_at = wasm[at], at + 1
    size, body = leb(size_at)
    if sid == 2:  # the import section: (module, field, kind, desc)*
        count, p = leb(body)
        for _ in range(count):
            n, p = leb(p); p += n                   # module
            n, p = leb(p); field = bytes(wasm[p:p + n])
            if field in moved:
                wasm[p:p + n] = moved[field]; done += 1
            p += n
            kind = wasm[p]; p += 1
            if kind == 0:   # function: type index
                _, p = leb(p)
            elif kind == 1:  # table: reftype, limits
                p += 1; flags = wasm[p]; _, p = leb(p + 1); p = leb(p)[1] if flags & 1 else p
            elif kind == 2:  # memory: limits
                flags = wasm[p]; _, p = leb(p + 1); p = leb(p)[1] if flags & 1 else p
            elif kind == 3:  # global: valtype, mutability
                p += 2
            else:
                sys.exit(f"import kind {kind}: not handled")
        break
    at = body + size
if done != len(moved):
    sys.exit(f"renamed {done} of {len(moved)} closure-cast imports")
open(relaxed_wasm, "wb").write(wasm)
print(f"relaxed-SIMD wasm: {done} closure-cast imports renamed to the simd128 glue's", file=sys.stderr)
PY
}

cmd_build() {
    wasm_tools
    npm_tools
    log "cargo build (wasm, release)"
    cargo build --release --lib --target "$WASM_TARGET" --no-default-features
    rm -rf www/pkg
    wasm-bindgen --target web --out-dir www/pkg "$(target_dir)/$WASM_TARGET/release/ddim_webgpu.wasm"
    # The same crate with relaxed SIMD (f32x4.relaxed_madd in the CPU GEMM): its own target dir, since
    # other RUSTFLAGS would rebuild the first; only its .wasm is kept, under the same JS glue.
    log "cargo build (wasm with relaxed SIMD, release)"
    RUSTFLAGS="-C target-feature=+simd128,+relaxed-simd" \
        cargo build --release --lib --target "$WASM_TARGET" --no-default-features --target-dir "$(target_dir)/relaxed"
    local relaxed; relaxed=$(mktemp -d)
    wasm-bindgen --target web --out-dir "$relaxed" "$(target_dir)/relaxed/$WASM_TARGET/release/ddim_webgpu.wasm"
    align_glue www/pkg/ddim_webgpu.js "$relaxed/ddim_webgpu.js" "$relaxed/ddim_webgpu_bg.wasm" ||
        die "the relaxed-SIMD build's JS glue differs from the simd128 build's"
    mv "$relaxed/ddim_webgpu_bg.wasm" www/pkg/ddim_webgpu_relaxed_bg.wasm
    rm -rf "$relaxed"
    # -ocimfs 100: binaryen inlines every function that has one caller by default, which made
    # Model::from_bytes 32 KB and FastOps::conv 17 KB of wasm; V8 then spent ~590 ms of a cold
    # page's two cores compiling optimised code (186 ms for from_bytes alone, which runs once)
    # before the first frame. With the bound it is ~300 ms; warm speed is the same, and the file
    # as small (-O3 alone: 358 KB gzipped; with the bound: 349 KB).
    if [ -x node_modules/.bin/wasm-opt ]; then
        local f
        for f in www/pkg/ddim_webgpu_bg.wasm www/pkg/ddim_webgpu_relaxed_bg.wasm; do
            node_modules/.bin/wasm-opt -O3 -ocimfs 100 --enable-bulk-memory --enable-nontrapping-float-to-int --enable-sign-ext \
                --enable-mutable-globals --enable-reference-types --enable-simd --enable-relaxed-simd "$f" -o "$f"
        done
    fi
    copy_model
    package
    # Every module the JS glue imports must ship in the npm package ("files" above).
    local dep
    for dep in $(grep -o "from '\./[^']*'" www/pkg/ddim_webgpu.js | sed "s/^from '\.\///; s/'\$//"); do
        case "$dep" in snippets/*|ddim_webgpu*) ;; *) die "the npm package's files miss $dep (imported by ddim_webgpu.js)";; esac
    done
    local raw gz; raw=$(stat -c %s www/pkg/ddim_webgpu_bg.wasm); gz=$(gzip -9c www/pkg/ddim_webgpu_bg.wasm | wc -c)
    log "www/pkg/ddim_webgpu_bg.wasm: $raw bytes ($gz gzipped)"
}

cmd_serve() {
    local port=${1:-8080}
    [ -f www/pkg/ddim_webgpu_bg.wasm ] && [ -f www/model/config.json ] || cmd_build
    log "serving www/ on http://127.0.0.1:$port/"
    exec python3 tests/page/serve.py "$port" www --csp
}

lint() {
    for c in clippy rustfmt; do rustup component list --installed 2>/dev/null | grep -q "^$c" || rustup component add "$c"; done
    log "cargo fmt --check; cargo clippy -D warnings (native and wasm)"
    cargo fmt --check
    cargo clippy -q --all-targets -- -D warnings
    cargo clippy -q --target "$WASM_TARGET" --no-default-features --lib --tests -- -D warnings
}

cmd_test() {
    apt_install mesa-vulkan-drivers libvulkan1 chromium chromium-driver webkit2gtk-driver xvfb
    wasm_tools
    firefox_tools
    lint
    log "native tests (wgpu on lavapipe)"
    cargo test
    cmd_build
    log "wasm tests in headless Chromium (WebGPU on SwiftShader)"
    local tmp; tmp=$(mktemp -d)
    TMPDIR=$tmp CHROMEDRIVER=/usr/bin/chromedriver \
    WASM_BINDGEN_TEST_WEBDRIVER_JSON=$ROOT/tests/webdriver.json \
    WASM_BINDGEN_TEST_TIMEOUT=600 \
    CARGO_TARGET_WASM32_UNKNOWN_UNKNOWN_RUNNER=wasm-bindgen-test-runner \
        cargo test --target "$WASM_TARGET" --no-default-features --test web
    log "wasm tests of the relaxed-SIMD build in headless Chromium (its fused GEMM against diffusers)"
    TMPDIR=$tmp CHROMEDRIVER=/usr/bin/chromedriver \
    WASM_BINDGEN_TEST_WEBDRIVER_JSON=$ROOT/tests/webdriver.json \
    WASM_BINDGEN_TEST_TIMEOUT=600 \
    CARGO_TARGET_WASM32_UNKNOWN_UNKNOWN_RUNNER=wasm-bindgen-test-runner \
    RUSTFLAGS="-C target-feature=+simd128,+relaxed-simd" \
        cargo test --target "$WASM_TARGET" --no-default-features --target-dir "$(target_dir)/relaxed" --test web -- runs_match_diffusers
    log "wasm tests in headless Firefox (WebGPU on its fallback adapter)"
    TMPDIR=$tmp GECKODRIVER=$(command -v geckodriver) \
    WASM_BINDGEN_TEST_WEBDRIVER_JSON=$ROOT/tests/webdriver-firefox.json \
    WASM_BINDGEN_TEST_TIMEOUT=600 \
    CARGO_TARGET_WASM32_UNKNOWN_UNKNOWN_RUNNER=wasm-bindgen-test-runner \
        cargo test --target "$WASM_TARGET" --no-default-features --test web
    log "page tests in headless Chromium (Playwright), Firefox and WebKitGTK on Xvfb (WebDriver)"
    TMPDIR=$tmp GECKODRIVER=$(command -v geckodriver) node --test tests/page/
    log "the npm package as a consumer installs it (npm pack; plain page + import map; tsc)"
    TMPDIR=$tmp node --test tests/consumer/
    rm -rf "$tmp"
}

cmd_bench() {
    apt_install mesa-vulkan-drivers libvulkan1 chromium
    cmd_build
    log "native: our engines (GPU on the local adapter, fast CPU, reference)"
    cargo run -q --release --bin ddim -- bench --steps 20 --guidance 3
    if [ -x .venv-ref/bin/python ] && .venv-ref/bin/python -c 'import onnxruntime, torch, diffusers' 2>/dev/null; then
        log "native side by side: onnxruntime and PyTorch (also writes target/bench/mnist-cond.onnx)"
        .venv-ref/bin/python tests/bench/side_by_side.py
    else
        log "no .venv-ref with torch, diffusers, onnxruntime: skipping the native side-by-side (see tests/bench/side_by_side.py)"
    fi
    [ -d node_modules/onnxruntime-web ] || npm install --no-save --no-audit --no-fund --loglevel=error onnxruntime-web@1.30.0
    log "browser side by side (headless Chromium): our engines and onnxruntime-web"
    node tests/page/bench.mjs 10 10
    firefox_tools
    apt_install webkit2gtk-driver xvfb
    log "the demo page in every browser here (README's browser table)"
    GECKODRIVER=$(command -v geckodriver) node tests/page/browsers_bench.mjs 10
    log "larger models in the browser (random weights in the shapes of ddpm-cifar10-32 and ddpm-celebahq-256)"
    node tests/page/scale_bench.mjs 1500
}

case "${1:-build}" in
    build) cmd_build ;;
    bench) cmd_bench ;;
    serve) shift; cmd_serve "$@" ;;
    test) cmd_test ;;
    *) echo "usage: $0 [build|serve [PORT]|test|bench]" >&2; exit 2 ;;
esac
