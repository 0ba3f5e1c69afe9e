#!/usr/bin/env bash
# ddim-webgpu's one build entry point. Idempotent; installs what is missing (pinned versions).
#   ./build.sh            release wasm build + wasm-bindgen into www/pkg/, default model into www/model/
#   ./build.sh serve [P]  build if needed, then serve www/ on 127.0.0.1:P (default 8080)
#   ./build.sh test       native cargo test (lavapipe), wasm-bindgen-test in headless Chromium, page tests
set -euo pipefail
cd "$(dirname "$0")"
ROOT=$PWD
export XDG_RUNTIME_DIR="${XDG_RUNTIME_DIR:-$(mktemp -d)}"
export CARGO_TERM_COLOR="${CARGO_TERM_COLOR:-never}"

log() { echo "==> $*" >&2; }

as_root() { if [ "$(id -u)" = 0 ]; then "$@"; elif command -v sudo >/dev/null; then sudo "$@"; else log "need root for: $*"; return 1; fi; }

apt_install() {
    local missing=()
    for p in "$@"; do dpkg -s "$p" >/dev/null 2>&1 || missing+=("$p"); done
    [ ${#missing[@]} -eq 0 ] && return 0
    log "apt-get install ${missing[*]}"
    as_root apt-get update -qq
    DEBIAN_FRONTEND=noninteractive as_root apt-get install -y -qq "${missing[@]}" >/dev/null
}

native_deps() { apt_install mesa-vulkan-drivers libvulkan1; }

cmd_test_native() {
    native_deps
    log "native tests (wgpu on $(ls /usr/share/vulkan/icd.d 2>/dev/null | tr '\n' ' '))"
    cargo test 2>&1
}

case "${1:-build}" in
    test)
        cmd_test_native
        ;;
    *)
        echo "usage: $0 [build|serve [PORT]|test]" >&2
        exit 2
        ;;
esac
