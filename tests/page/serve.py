"""Static file server for www/ on 127.0.0.1 (./build.sh serve, the page tests and the benchmarks).
Serves .wasm as application/wasm and sends no-cache headers so a rebuilt page is always fresh.
    serve.py PORT ROOT [--isolated] [--mount /PREFIX=DIR ...] [-v]
--isolated adds COOP/COEP headers (crossOriginIsolated: multi-threaded wasm, e.g. onnxruntime-web);
--mount serves DIR under /PREFIX/ (the benchmarks mount onnxruntime-web and the ONNX model).
--csp sends the page's Content-Security-Policy (./build.sh serve and the page tests): scripts,
workers, styles and fetches from this origin only, wasm compilation allowed, nothing inline, no
eval, no plugins, no framing; model data can never become code."""
import http.server
import os
import sys
from functools import partial


CSP = "; ".join([
    "default-src 'none'",
    "script-src 'self' 'wasm-unsafe-eval'",
    "worker-src 'self'",
    "style-src 'self'",
    "img-src 'self' data: blob:",
    "connect-src 'self'",
    "base-uri 'none'",
    "form-action 'none'",
    "frame-ancestors 'none'",
])


class Handler(http.server.SimpleHTTPRequestHandler):
    extensions_map = {**http.server.SimpleHTTPRequestHandler.extensions_map,
                      ".wasm": "application/wasm", ".js": "text/javascript", ".mjs": "text/javascript"}
    mounts = {}
    isolated = False
    csp = False

    def translate_path(self, path):
        for prefix, directory in self.mounts.items():
            if path.startswith(prefix + "/"):
                rel = path[len(prefix) + 1:].split("?", 1)[0].split("#", 1)[0]
                return os.path.join(directory, *[p for p in rel.split("/") if p not in ("", ".", "..")])
        return super().translate_path(path)

    def end_headers(self):
        self.send_header("Cache-Control", "no-store")
        if self.csp:
            self.send_header("Content-Security-Policy", CSP)
            self.send_header("X-Content-Type-Options", "nosniff")
        if self.isolated:
            self.send_header("Cross-Origin-Opener-Policy", "same-origin")
            self.send_header("Cross-Origin-Embedder-Policy", "require-corp")
        super().end_headers()

    def log_message(self, fmt, *args):
        if "-v" in sys.argv:
            super().log_message(fmt, *args)


if __name__ == "__main__":
    port, root = int(sys.argv[1]), sys.argv[2]
    Handler.isolated = "--isolated" in sys.argv
    Handler.csp = "--csp" in sys.argv
    Handler.mounts = dict(a.split("=", 1) for a in (sys.argv[i + 1] for i, v in enumerate(sys.argv) if v == "--mount"))
    server = http.server.ThreadingHTTPServer(("127.0.0.1", port), partial(Handler, directory=root))
    print(f"http://127.0.0.1:{port}/", flush=True)
    server.serve_forever()
