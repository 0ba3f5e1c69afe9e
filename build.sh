#!/usr/bin/env bash
# ddim-webgpu's one build entry point. Idempotent; installs what is missing (pinned versions).
#   ./build.sh            release wasm build + wasm-bindgen (+ wasm-opt) into www/pkg/ (also an npm
#                         package), the bundled default model copied to www/model/
#   ./build.sh serve [P]  build if needed, then serve www/ on http://127.0.0.1:P/ (default 8080), cross-origin
#                         isolated (COOP/COEP): the CPU engine runs wasm threads
#   ./build.sh test       installs the test tools, then lint, native cargo test (wgpu on lavapipe),
#                         wasm-bindgen-test and the page tests in headless Chromium (WebGPU on
#                         SwiftShader) and headless Firefox (WebGPU on its fallback adapter, which
#                         presents canvases), the build scripts' and the npm package's tests; a table of
#                         each suite's wall time at the end
#   ./build.sh install    only installs what build and test need (apt packages, the wasm target,
#                         wasm-bindgen-cli, geckodriver, node_modules)
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
DEFAULT_CLASSIFIER=weights/digit-classifier

log() { echo "==> $*" >&2; }
die() { echo "error: $*" >&2; exit 1; }

# Prerequisites this script does not install itself: Rust (rustup) and Node.js >= 20.
need_rust() {
    { command -v cargo && command -v rustup; } >/dev/null ||
        die "Rust is not installed: get it with  curl https://sh.rustup.rs -sSf | sh  (then open a new shell)"
}
need_node() {
    local major; major=$(node -p 'process.versions.node.split(".")[0]' 2>/dev/null || echo 0)
    [ "$major" -ge 20 ] ||
        die "Node.js >= 20 is needed (found ${major/#0/none}; Debian 12 ships 18): install it from https://nodejs.org or NodeSource"
}

# Where cargo puts its output (honours CARGO_TARGET_DIR and .cargo/config).
target_dir() { cargo metadata --format-version 1 --no-deps | node -p 'JSON.parse(require("fs").readFileSync(0, "utf8")).target_directory'; }

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
    # The threaded build rebuilds std with atomics (-Z build-std): std's source.
    rustup component list --installed 2>/dev/null | grep -q "^rust-src" || { log "rustup component add rust-src"; rustup component add rust-src; }
    local want; want=$(wasm_bindgen_version)
    if [ "$(wasm-bindgen --version 2>/dev/null | awk '{print $2}')" != "$want" ]; then
        # Not --locked: its published Cargo.lock pins a webpki-roots the index lacks (0.2.130).
        log "cargo install wasm-bindgen-cli --version =$want (a few minutes, once)"
        cargo install -q wasm-bindgen-cli --version "=$want"
    fi
}

# node_modules as package-lock.json pins it: `npm ci` where it is missing or older than the lock file.
npm_tools() {
    need_node
    if [ ! node_modules/.package-lock.json -nt package-lock.json ]; then
        log "npm ci (package-lock.json: binaryen, playwright-core, selenium-webdriver, typescript)"
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

# What the build needs: the wasm target, wasm-bindgen-cli, node_modules (wasm-opt from binaryen).
build_tools() {
    wasm_tools
    npm_tools
}

# What ./build.sh test needs besides, on a bare Debian: Vulkan on the CPU (lavapipe) for the native
# tests; Chromium and chromedriver, Firefox ESR and geckodriver, WebKitGTK's driver and Xvfb for the
# browser suites; rustfmt and clippy.
install_test_tools() {
    apt_install mesa-vulkan-drivers libvulkan1 chromium chromium-driver webkit2gtk-driver xvfb firefox-esr
    firefox_tools
    local c
    for c in clippy rustfmt; do rustup component list --installed 2>/dev/null | grep -q "^$c" || rustup component add "$c"; done
    build_tools
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
    # The bundled noise-aware classifier (classifier guidance), beside the model.
    rm -rf www/classifier && mkdir -p www/classifier
    cp "$DEFAULT_CLASSIFIER"/config.json "$DEFAULT_CLASSIFIER"/model.safetensors www/classifier/
}

# www/pkg as the npm package ddim-webgpu: the hand-written API and element (www/widget/), the
# wasm-bindgen glue underneath, the bundled model under model/. `npm pack www/pkg` packs it. Its
# package.json is www/widget/package.json with the version from Cargo.toml and the repository from
# `git remote get-url origin`; the script checks that the package holds every file it lists.
package() {
    cp www/widget/index.js www/widget/index.d.ts www/widget/sampler.js www/widget/hub.js www/widget/element.js www/widget/cpu-worker.js www/widget/engine-worker.js \
        www/widget/cpu-worker-threads.js www/widget/fork-worker.js www/widget/wasm.js \
        www/widget/README.md www/widget/LICENSE www/pkg/
    cp -r www/model www/pkg/model
    cp -r www/classifier www/pkg/classifier
    rm -f www/pkg/model/NOTE.txt www/pkg/.gitignore
    node www/widget/build/package_json.mjs www/pkg
}

cmd_build() {
    build_tools
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
    # Both wasm files under the simd128 build's glue (www/widget/build/align_glue.mjs says how).
    node www/widget/build/align_glue.mjs www/pkg/ddim_webgpu.js "$relaxed/ddim_webgpu.js" "$relaxed/ddim_webgpu_bg.wasm" ||
        die "the relaxed-SIMD build's JS glue differs from the simd128 build's"
    mv "$relaxed/ddim_webgpu_bg.wasm" www/pkg/ddim_webgpu_relaxed_bg.wasm
    rm -rf "$relaxed"
    # The threaded build (cross-origin isolated pages: cpu-worker-threads.js and its fork workers):
    # wasm atomics over one shared memory (at most 4 GiB, as the unthreaded heap), with relaxed SIMD
    # (it runs only where the browser has both; a simd128 one measured 1.26× slower per thread on the
    # bundled model than the relaxed batch workers, so it would slow isolated pages down). std itself is
    # rebuilt with atomics (-Z build-std, which RUSTC_BOOTSTRAP=1 allows on the stable toolchain;
    # std's source is the rust-src component). Its own target dir, and its own glue in threads/.
    log "cargo build (wasm with threads, release)"
    local tls=""
    for e in __wasm_init_tls __tls_size __tls_align __tls_base; do tls+=" -C link-arg=--export=$e"; done
    # The linker gets shared, imported memory and the TLS exports wasm-bindgen's thread start needs.
    RUSTC_BOOTSTRAP=1 RUSTFLAGS="-C target-feature=+atomics,+bulk-memory,+mutable-globals,+simd128,+relaxed-simd -C link-arg=--shared-memory -C link-arg=--import-memory -C link-arg=--max-memory=4294967296$tls" \
        cargo build --release --lib --target "$WASM_TARGET" --no-default-features -Z build-std=std,panic_abort --target-dir "$(target_dir)/threads"
    wasm-bindgen --target web --out-dir www/pkg/threads "$(target_dir)/threads/$WASM_TARGET/release/ddim_webgpu.wasm"
    # -ocimfs 100: binaryen inlines every function that has one caller by default, which made
    # Model::from_bytes 32 KB and FastOps::conv 17 KB of wasm; V8 then spent ~590 ms of a cold
    # page's two cores compiling optimised code (186 ms for from_bytes alone, which runs once)
    # before the first frame. With the bound it is ~300 ms; warm speed is the same, and the file
    # as small (-O3 alone: 358 KB gzipped; with the bound: 349 KB).
    if [ -x node_modules/.bin/wasm-opt ]; then
        local f
        for f in www/pkg/ddim_webgpu_bg.wasm www/pkg/ddim_webgpu_relaxed_bg.wasm www/pkg/threads/ddim_webgpu_bg.wasm; do
            node_modules/.bin/wasm-opt -O3 -ocimfs 100 --enable-bulk-memory --enable-nontrapping-float-to-int --enable-sign-ext \
                --enable-mutable-globals --enable-reference-types --enable-simd --enable-relaxed-simd --enable-threads "$f" -o "$f"
        done
    fi
    copy_model
    package
    local raw gz; raw=$(stat -c %s www/pkg/ddim_webgpu_bg.wasm); gz=$(gzip -9c www/pkg/ddim_webgpu_bg.wasm | wc -c)
    log "www/pkg/ddim_webgpu_bg.wasm: $raw bytes ($gz gzipped)"
}

cmd_serve() {
    local port=${1:-8080}
    { [ -f www/pkg/ddim_webgpu_bg.wasm ] && [ -f www/model/config.json ]; } || cmd_build
    log "serving www/ on http://127.0.0.1:$port/"
    # Cross-origin isolated (COOP/COEP): the CPU engine runs wasm threads (docs: README, "Hosting").
    exec python3 tests/page/serve.py "$port" www --csp --isolated
}

lint() {
    cargo fmt --check
    cargo clippy -q --all-targets -- -D warnings
    cargo clippy -q --target "$WASM_TARGET" --no-default-features --lib --tests -- -D warnings
}

# The wasm tests (tests/web.rs, wasm-bindgen-test) in a headless browser: wasm_test chrome|firefox
# [cargo test arguments]. Release builds, as shipped: they reuse the crates cmd_build compiled (a
# debug build of the wasm compiled everything again, ~9 minutes on 2 cores, for each RUSTFLAGS).
wasm_test() {
    local browser=$1; shift
    local driver config
    case "$browser" in
        chrome) driver=CHROMEDRIVER=/usr/bin/chromedriver config=tests/webdriver.json ;;
        firefox) driver=GECKODRIVER=$(command -v geckodriver) config=tests/webdriver-firefox.json ;;
        *) die "wasm_test: no browser $browser" ;;
    esac
    env TMPDIR="$TEST_TMP" "$driver" \
        WASM_BINDGEN_TEST_WEBDRIVER_JSON="$ROOT/$config" \
        WASM_BINDGEN_TEST_TIMEOUT=600 \
        CARGO_TARGET_WASM32_UNKNOWN_UNKNOWN_RUNNER=wasm-bindgen-test-runner \
        cargo test --release --target "$WASM_TARGET" --no-default-features "$@"
}

# Each suite of ./build.sh test through `suite NAME COMMAND...`: its wall time goes into the table
# printed when the run ends, failed or not.
SUITE_TIMES=()
SUITE_NOW=
suite() {
    local name=$1 t0=$SECONDS; shift
    log "$name"
    SUITE_NOW=$name SUITE_T0=$t0
    "$@"
    SUITE_TIMES+=("$(printf '%-50s %5d' "$name" $((SECONDS - t0)))")
    SUITE_NOW=
}
suite_table() {
    {
        printf '\n%-50s %5s\n' suite seconds
        [ ${#SUITE_TIMES[@]} -eq 0 ] || printf '%s\n' "${SUITE_TIMES[@]}"
        [ -z "$SUITE_NOW" ] || printf '%-50s %5d  FAILED\n' "$SUITE_NOW" $((SECONDS - SUITE_T0))
        printf '%-50s %5d\n' total "$SECONDS"
    } >&2
}

cmd_test() {
    TEST_TMP=$(mktemp -d)
    trap 'suite_table; rm -rf "$TEST_TMP"' EXIT
    suite "install: apt, cargo install, npm ci" install_test_tools
    suite "lint: cargo fmt --check, clippy (native, wasm)" lint
    suite "build scripts (node --test tests/build/)" node --test tests/build/
    suite "bench scripts (node --test tests/bench/)" node --test tests/bench/
    suite "native (cargo test, wgpu on lavapipe)" cargo test
    suite "build (./build.sh)" cmd_build
    # After the build: the widget's JS is then also checked against the glue's real declarations.
    suite "typecheck: www/widget (tsc --checkJs)" npm run -s typecheck
    suite "wasm in headless Chromium (SwiftShader)" wasm_test chrome --test web
    # The relaxed-SIMD build's fused GEMM against diffusers, in its own target dir as in cmd_build.
    RUSTFLAGS="-C target-feature=+simd128,+relaxed-simd" \
        suite "wasm relaxed-SIMD in Chromium (diffusers)" wasm_test chrome --target-dir "$(target_dir)/relaxed" --test web -- runs_match_diffusers
    suite "wasm in headless Firefox (fallback adapter)" wasm_test firefox --test web
    suite "page: Chromium, Firefox, WebKitGTK on Xvfb" env TMPDIR="$TEST_TMP" GECKODRIVER="$(command -v geckodriver)" node --test tests/page/
    suite "npm package consumers (npm pack, Vite, tsc)" env TMPDIR="$TEST_TMP" node --test tests/consumer/
}

cmd_bench() {
    apt_install mesa-vulkan-drivers libvulkan1 chromium
    cmd_build
    # Each benchmark's output is kept and its table written between its markers in
    # docs/performance.md (tests/bench/performance_doc.mjs, with date, machine and commit).
    local out; out=$(mktemp -d)
    log "native: our engines (GPU on the local adapter, fast CPU, reference)"
    cargo run -q --release --bin ddim -- bench --steps 20 --guidance 3 | tee "$out/ddim.txt"
    BENCH_GPU=$(sed -n 's/^adapter: //p' "$out/ddim.txt" | head -n 1) \
        node tests/bench/performance_doc.mjs --code ddim "$out/ddim.txt"
    if [ -x .venv-ref/bin/python ] && .venv-ref/bin/python -c 'import onnxruntime, torch, diffusers' 2>/dev/null; then
        log "native side by side: onnxruntime and PyTorch (also writes target/bench/mnist-cond.onnx)"
        .venv-ref/bin/python tests/bench/side_by_side.py | tee "$out/native.txt"
        node tests/bench/performance_doc.mjs --table native "$out/native.txt"
        log "native side by side on the ddpm-cifar10-32 shape, batch 1 (also writes target/bench/ddpm-cifar10-32.onnx)"
        .venv-ref/bin/python tests/bench/side_by_side.py --config tests/bench/configs/ddpm-cifar10-32.json --batch 1 | tee "$out/native-cifar.txt"
        node tests/bench/performance_doc.mjs --table native-cifar "$out/native-cifar.txt"
    else
        log "no .venv-ref with torch, diffusers, onnxruntime: skipping the native side-by-side (docs/performance.md keeps the last one)"
    fi
    [ -d node_modules/onnxruntime-web ] || npm install --no-save --no-audit --no-fund --loglevel=error onnxruntime-web@1.30.0
    log "browser side by side (headless Chromium): our engines and onnxruntime-web"
    node tests/page/bench.mjs 10 10 | tee "$out/browser.txt"
    node tests/bench/performance_doc.mjs --table browser "$out/browser.txt"
    grep '^default page' "$out/browser.txt" | sed 's/^/- /' | node tests/bench/performance_doc.mjs first-frame -
    firefox_tools
    apt_install webkit2gtk-driver xvfb
    log "the demo page in every browser here"
    GECKODRIVER=$(command -v geckodriver) node tests/page/browsers_bench.mjs 10 | tee "$out/browsers.txt"
    node tests/bench/performance_doc.mjs --table browsers "$out/browsers.txt"
    log "larger models in the browser (random weights in the shapes of ddpm-cifar10-32 and ddpm-celebahq-256)"
    node tests/page/scale_bench.mjs 1500 | tee "$out/scale.txt"
    node tests/bench/performance_doc.mjs --table scale "$out/scale.txt"
    rm -rf "$out"
}

case "${1:-build}" in
    build) cmd_build ;;
    bench) cmd_bench ;;
    serve) shift; cmd_serve "$@" ;;
    test) cmd_test ;;
    install) install_test_tools ;;
    *) echo "usage: $0 [build|serve [PORT]|test|install|bench]" >&2; exit 2 ;;
esac
