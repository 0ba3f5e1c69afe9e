"""Side-by-side CPU benchmark on the bundled model (or, with --config, seeded random weights in a
config's shape, e.g. tests/bench/configs/ddpm-cifar10-32.json), one run, one machine: our engines
(the `ddim bench` CLI) against onnxruntime (CPU EP) and PyTorch eager, at 1 and 2 threads, in ms per
U-Net item.

Needs the reference venv (see ../../tests/fixtures/requirements.txt) plus onnx and onnxruntime:
    python3 -m venv .venv-ref && .venv-ref/bin/pip install torch diffusers safetensors onnx onnxruntime onnxscript
    .venv-ref/bin/python tests/bench/side_by_side.py [--batch 2] [--seconds 2] [--rounds 5] [--threads 1,2] [--ddim PATH] [--config FILE]
(--ddim: a `ddim` built elsewhere, e.g. carried to a machine without cargo; else it builds target/release/ddim.)
Ours and onnxruntime are timed in alternation, `rounds` times each (this VM's speed drifts 10–40 %
within minutes: one timing of each, a minute apart, gave ratios from 0.9 to 1.3 for the same code);
the ratio is the median of the rounds' ratios, each from timings seconds apart.
It also writes target/bench/mnist-cond.onnx (dynamic batch), which the browser side-by-side
(tests/page/bench_ort.mjs) loads. Never run by CI.
"""
import argparse
import os
import platform
import re
import statistics
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import onnxruntime as ort
import torch
from diffusers import UNet2DModel

ROOT = Path(__file__).resolve().parents[2]
MODEL = ROOT / "weights" / "mnist-cond"
ONNX = ROOT / "target" / "bench" / "mnist-cond.onnx"


class Wrapper(torch.nn.Module):
    def __init__(self, unet):
        super().__init__()
        self.unet = unet

    def forward(self, sample, timestep, class_labels):
        return self.unet(sample, timestep, class_labels=class_labels).sample


class Unconditional(torch.nn.Module):
    def __init__(self, unet):
        super().__init__()
        self.unet = unet

    def forward(self, sample, timestep):
        return self.unet(sample, timestep).sample


def sample_shape(unet):
    size = unet.config.sample_size
    h, w = (size, size) if isinstance(size, int) else tuple(size)
    return unet.config.in_channels, h, w


def export(unet, path):
    path.parent.mkdir(parents=True, exist_ok=True)
    x = torch.randn(2, *sample_shape(unet))
    t = torch.tensor([500, 500], dtype=torch.int64)
    axes = {"sample": {0: "batch"}, "timestep": {0: "batch"}, "out": {0: "batch"}}
    if unet.config.num_class_embeds:
        c = torch.tensor([3, 10], dtype=torch.int64)
        torch.onnx.export(Wrapper(unet), (x, t, c), str(path), dynamo=False, opset_version=17,
                          input_names=["sample", "timestep", "class_labels"], output_names=["out"],
                          dynamic_axes={**axes, "class_labels": {0: "batch"}})
    else:
        torch.onnx.export(Unconditional(unet), (x, t), str(path), dynamo=False, opset_version=17,
                          input_names=["sample", "timestep"], output_names=["out"], dynamic_axes=axes)


def timed(fn, seconds):
    """Median, min, max ms of fn() after `seconds` of warm-up, over at least 20 runs or `seconds`."""
    end = time.perf_counter() + seconds
    while time.perf_counter() < end:
        fn()
    ms, end = [], time.perf_counter() + seconds
    while time.perf_counter() < end or len(ms) < 20:
        start = time.perf_counter()
        fn()
        ms.append((time.perf_counter() - start) * 1e3)
    return statistics.median(ms), min(ms), max(ms)


DDIM = ROOT / "target" / "release" / "ddim"


def ours(batch, threads, config=None, kernel=None):
    env = dict(os.environ, DDIM_THREADS=str(threads))
    model = ["--random-config", str(config)] if config else []
    model += ["--kernel", kernel] if kernel else []
    out = subprocess.run([str(DDIM), "bench", "--batch", str(batch), "--steps", "1", "--fast-only", *model],
                         capture_output=True, text=True, env=env, check=True).stdout
    m = re.search(r"cpu fast forward \(([^)]*)\): ([\d.]+) ms median \(([\d.]+)–([\d.]+)", out)
    return (float(m.group(2)), float(m.group(3)), float(m.group(4))), m.group(1)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--batch", type=int, default=2)
    ap.add_argument("--seconds", type=float, default=2, help="warm-up and timed seconds of each onnxruntime and PyTorch timing")
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--threads", default="1,2", help="comma-separated thread counts")
    ap.add_argument("--ddim", type=Path, help="a built `ddim` to time instead of building target/release/ddim")
    ap.add_argument("--config", type=Path, help="a config.json: seeded random weights in its shape instead of the bundled model")
    ap.add_argument("--kernel", help="our GEMM microkernel (ddim bench --kernel: avx512, avx2, portable): avx2 times an AVX2-only machine's path here")
    args = ap.parse_args()
    global DDIM
    if args.ddim:
        DDIM = args.ddim.resolve()
    else:
        subprocess.run(["cargo", "build", "--release", "--bin", "ddim"], cwd=ROOT, check=True, capture_output=True)
    counts = [int(n) for n in args.threads.split(",")]
    if args.config:
        torch.manual_seed(0)
        unet = UNet2DModel.from_config(UNet2DModel.load_config(str(args.config))).float().eval()
        onnx, name = ROOT / "target" / "bench" / f"{args.config.stem}.onnx", f"{args.config.stem} shape (random weights)"
    else:
        unet = UNet2DModel.from_pretrained(str(MODEL)).float().eval()
        onnx, name = ONNX, "bundled mnist-cond"
    if not onnx.exists():
        export(unet, onnx)
    b = args.batch
    x = np.random.default_rng(0).standard_normal((b, *sample_shape(unet))).astype(np.float32)
    t = np.full((b,), 500, dtype=np.int64)
    c = np.arange(b, dtype=np.int64) % 10 if unet.config.num_class_embeds else None
    sessions, rounds = {}, {n: [] for n in counts}
    for threads in counts:
        so = ort.SessionOptions()
        so.intra_op_num_threads, so.inter_op_num_threads = threads, 1
        sessions[threads] = ort.InferenceSession(str(onnx), so, providers=["CPUExecutionProvider"])
    feeds = {"sample": x, "timestep": t, **({"class_labels": c} if c is not None else {})}
    # Ours and onnxruntime alternate, round after round; PyTorch last: its OpenMP threads keep
    # spinning after its timings and would steal the cores.
    for _ in range(args.rounds):
        for threads in counts:
            r_us, kernel = ours(b, threads, args.config, args.kernel)
            r_ort = timed(lambda: sessions[threads].run(None, feeds), args.seconds)
            rounds[threads].append((r_us, r_ort, kernel))
    rows = []
    for threads in counts:
        torch.set_num_threads(threads)
        xt, tt = torch.from_numpy(x), torch.from_numpy(t)
        ct = torch.from_numpy(c) if c is not None else None
        with torch.no_grad():
            r_pt = timed(lambda: unet(xt, tt, class_labels=ct), args.seconds)
        rs = rounds[threads]
        # Each engine: the median of its rounds' medians, and the fastest and slowest run of all.
        summary = lambda k: (statistics.median(r[k][0] for r in rs), min(r[k][1] for r in rs), max(r[k][2] for r in rs))  # noqa: E731
        ratios = sorted(r[0][0] / r[1][0] for r in rs)
        rows.append((threads, summary(0), summary(1), r_pt, rs[0][2], ratios))
    print(f"machine: {platform.processor() or platform.machine()}, {os.cpu_count()} cores; onnxruntime {ort.__version__}, "
          f"torch {torch.__version__}; {name}, batch {b}; ms per U-Net item, median (min–max); "
          f"ours and onnxruntime alternated {args.rounds} times")
    print("| threads | ours, fast CPU engine | onnxruntime CPU | PyTorch eager | ours / onnxruntime: median of the rounds (range) |")
    print("|---|---|---|---|---|")
    per = lambda r: f"{r[0] / b:.2f} ({r[1] / b:.2f}–{r[2] / b:.2f})"  # noqa: E731
    for threads, us, o, p, kernel, ratios in rows:
        print(f"| {threads} | {per(us)} [{kernel}] | {per(o)} | {per(p)} | {statistics.median(ratios):.2f}× ({ratios[0]:.2f}–{ratios[-1]:.2f}) |")


if __name__ == "__main__":
    sys.exit(main())
