"""PyTorch on a CUDA GPU, the yardstick for `ddim bench` on that GPU's Vulkan adapter: ms per
U-Net forward of diffusers' UNet2DModel, same shapes as the bench runs (the bundled model, and the
configs in tests/bench/configs with random weights; only the shapes matter for speed).

    python3 tests/bench/torch_gpu.py [--seconds 2]

fp32 is timed twice: with TF32 off (the arithmetic our fp32 WGSL kernels do) and with PyTorch's
default for convolutions (cuDNN may use TF32 tensor cores). Never run by CI (it needs a CUDA GPU).
"""
import argparse
import json
import statistics
import time
from pathlib import Path

import torch
from diffusers import UNet2DModel

ROOT = Path(__file__).resolve().parents[2]
CASES = [  # (label, model folder or config, batch)
    ("mnist-cond (bundled)", ROOT / "weights" / "mnist-cond", 2),
    ("mnist-cond (bundled)", ROOT / "weights" / "mnist-cond", 8),
    ("ddpm-cifar10-32 shape", ROOT / "tests" / "bench" / "configs" / "ddpm-cifar10-32.json", 1),
    ("ddpm-celebahq-256 shape", ROOT / "tests" / "bench" / "configs" / "ddpm-celebahq-256.json", 1),
]


def load(path):
    if path.is_dir():
        return UNet2DModel.from_pretrained(str(path))
    config = {k: v for k, v in json.loads(path.read_text()).items() if not k.startswith("_")}
    torch.manual_seed(0)
    return UNet2DModel.from_config(config)


def timed(fn, seconds):
    """Median, min, max ms of fn() (synchronised) after `seconds` of warm-up, over ≥ 20 runs."""
    end = time.perf_counter() + seconds
    while time.perf_counter() < end:
        fn()
    torch.cuda.synchronize()
    ms, end = [], time.perf_counter() + seconds
    while time.perf_counter() < end or len(ms) < 20:
        start = time.perf_counter()
        fn()
        torch.cuda.synchronize()
        ms.append((time.perf_counter() - start) * 1e3)
    return statistics.median(ms), min(ms), max(ms)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--seconds", type=float, default=2)
    args = ap.parse_args()
    print(f"torch {torch.__version__}, {torch.cuda.get_device_name()}; ms per U-Net forward, median (min–max)")
    print("| model | batch | fp32, TF32 off | fp32, PyTorch default (TF32 convs) | fp16 |")
    print("|---|---|---|---|---|")
    for label, path, batch in CASES:
        unet = load(path).cuda().eval()
        size = unet.config.sample_size
        h, w = (size, size) if isinstance(size, int) else size
        x = torch.randn(batch, unet.config.in_channels, h, w, device="cuda")
        t = torch.full((batch,), 500, device="cuda", dtype=torch.int64)
        labels = torch.zeros(batch, device="cuda", dtype=torch.int64) if unet.config.num_class_embeds else None
        cells = []
        for tf32, dtype in ((False, torch.float32), (True, torch.float32), (True, torch.float16)):
            torch.backends.cudnn.allow_tf32 = tf32
            torch.backends.cuda.matmul.allow_tf32 = False
            u = unet.to(dtype)
            with torch.no_grad():
                r = timed(lambda: u(x.to(dtype), t, class_labels=labels), args.seconds)
            cells.append(f"{r[0]:.2f} ({r[1]:.2f}–{r[2]:.2f})")
        print(f"| {label} | {batch} | " + " | ".join(cells) + " |", flush=True)


if __name__ == "__main__":
    main()
