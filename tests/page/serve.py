"""Static file server for www/ on 127.0.0.1 (./build.sh serve, the page tests and the benchmarks).
Serves .wasm as application/wasm and sends no-cache headers so a rebuilt page is always fresh.
    serve.py PORT ROOT [--isolated] [--mount /PREFIX=DIR ...] [--hub /PREFIX=DIR] [-v]
--isolated adds COOP/COEP headers (crossOriginIsolated: multi-threaded wasm, e.g. onnxruntime-web);
--mount serves DIR under /PREFIX/ (the benchmarks mount onnxruntime-web and the ONNX model).
--hub serves DIR/OWNER/NAME/ in the Hugging Face Hub's layout, /PREFIX/OWNER/NAME/resolve/main/PATH,
answering .safetensors with a 302 to /PREFIX-cdn/… as the Hub sends weights to its CDN (the page
tests load hf: models from it, same-origin under the page's CSP).
--csp sends the page's Content-Security-Policy (./build.sh serve and the page tests): scripts,
workers and styles from this origin only, fetches from it and from the Hugging Face Hub's file
hosts (hf: models), wasm compilation allowed, nothing inline, no eval, no plugins, no framing;
model data can never become code."""
import http.server
import os
import sys
from functools import partial


HUB_HOSTS = [
    "https://huggingface.co",
    "https://cdn-lfs.hf.co", "https://cdn-lfs-us-1.hf.co", "https://cdn-lfs-eu-1.hf.co",
    "https://cdn-lfs.huggingface.co", "https://cdn-lfs-us-1.huggingface.co", "https://cdn-lfs-eu-1.huggingface.co",
    "https://cas-bridge.xethub.hf.co",
    "https://*.cdn.hf.co",
]
CSP = "; ".join([
    "default-src 'none'",
    "script-src 'self' 'wasm-unsafe-eval'",
    "worker-src 'self'",
    "style-src 'self'",
    "img-src 'self' data: blob:",
    # `hf:` models: the Hub, and the hosts its resolve URLs redirect the files to (LFS and Xet,
    # the regional CDN), from https://huggingface.co/.well-known/meta.json; not its upload hosts.
    "connect-src 'self' " + " ".join(HUB_HOSTS),
    "base-uri 'none'",
    "form-action 'none'",
    "frame-ancestors 'none'",
])


class Handler(http.server.SimpleHTTPRequestHandler):
    extensions_map = {**http.server.SimpleHTTPRequestHandler.extensions_map,
                      ".wasm": "application/wasm", ".js": "text/javascript", ".mjs": "text/javascript"}
    mounts = {}
    hub = None  # (prefix, folder) of --hub
    isolated = False
    csp = False

    def translate_path(self, path):
        for prefix, directory in self.mounts.items():
            if path.startswith(prefix + "/"):
                rel = path[len(prefix) + 1:].split("?", 1)[0].split("#", 1)[0]
                return os.path.join(directory, *[p for p in rel.split("/") if p not in ("", ".", "..")])
        return super().translate_path(path)

    def hub_answer(self):
        """The Hub double's answer to this request (True), or False where the path is not its."""
        prefix, folder = self.hub or ("", "")
        path = self.path.split("?", 1)[0]
        parts = path[len(prefix) + 1:].split("/") if prefix and path.startswith(prefix + "/") else []
        cdn = path.startswith(prefix + "-cdn/") and prefix
        if cdn:
            parts = path[len(prefix) + 5:].split("/")
        elif len(parts) >= 5 and parts[2:4] == ["resolve", "main"]:
            parts = parts[:2] + parts[4:]
        elif not parts:
            return False
        else:
            parts = []
        file = os.path.join(folder, *parts) if parts and all(p not in ("", ".", "..") for p in parts) else None
        if not file or not os.path.isfile(file):
            self.send_response(404)
            self.send_header("Content-Length", "0")
            self.end_headers()
        elif not cdn and file.endswith(".safetensors"):
            self.send_response(302)
            self.send_header("Location", f"{prefix}-cdn/" + "/".join(parts))
            self.send_header("Content-Length", "0")
            self.end_headers()
        else:
            with open(file, "rb") as f:
                body = f.read()
            self.send_response(200)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            if self.command == "GET":
                try:
                    self.wfile.write(body)
                except (BrokenPipeError, ConnectionResetError):
                    pass  # the page went away mid-download (a test closing it)
        return True

    def do_GET(self):
        if not self.hub_answer():
            super().do_GET()

    def do_HEAD(self):
        if not self.hub_answer():
            super().do_HEAD()

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
    hub = [sys.argv[i + 1] for i, v in enumerate(sys.argv) if v == "--hub"]
    Handler.hub = tuple(hub[0].split("=", 1)) if hub else None
    Handler.mounts = dict(a.split("=", 1) for a in (sys.argv[i + 1] for i, v in enumerate(sys.argv) if v == "--mount"))
    server = http.server.ThreadingHTTPServer(("127.0.0.1", port), partial(Handler, directory=root))
    print(f"http://127.0.0.1:{port}/", flush=True)
    server.serve_forever()
