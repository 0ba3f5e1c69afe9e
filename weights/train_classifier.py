"""Train the bundled noise-aware digit classifier p(y | x_t, t) for classifier guidance
(Dhariwal & Nichol 2021): the same 10k MNIST digits as the U-Net, noised by the U-Net's own forward
process (DDPM linear betas 1e-4..0.02, 1000 steps) at a uniformly random t, and export it in the
engine's classifier format (docs/classifier.md): config.json + fp16 model.safetensors + train_info.json.

    python weights/train_classifier.py --data weights/data/mnist.npz --out weights/digit-classifier --minutes 12

The network (`NoisyClassifier` below, the engine's `classifier` module runs the same):
    temb = silu(Linear(sinusoidal(t)))                       # diffusers' Timesteps, flip_sin_to_cos
    per level l, per layer: z = conv3x3(a) + Linear_l(temb)[:, :, None, None]
                            a = silu(GroupNorm(z))
      after a level: 2x2 average pool (the last level: the mean over the image)
    logits = Linear(a)
Every op has a stride-1 input gradient the engine computes in WGSL (docs/classifier.md).
"""
import argparse
import json
import math
import time
from pathlib import Path

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F
from diffusers.models.embeddings import Timesteps
from safetensors.torch import save_file

CONFIG = {
    "_class_name": "NoisyClassifier",
    "in_channels": 1,
    "sample_size": 28,
    "num_classes": 10,
    "block_out_channels": [32, 64, 128],
    "layers_per_block": 2,
    "norm_num_groups": 8,
    "norm_eps": 1e-5,
    "time_embedding_dim": 128,
    "flip_sin_to_cos": True,
    "freq_shift": 0,
    "num_train_timesteps": 1000,
    "beta_schedule": "linear",
    "beta_start": 0.0001,
    "beta_end": 0.02,
}


class NoisyClassifier(nn.Module):
    def __init__(self, cfg):
        super().__init__()
        self.cfg = cfg
        ch = cfg["block_out_channels"]
        d = cfg["time_embedding_dim"]
        self.time_proj = Timesteps(ch[0], cfg["flip_sin_to_cos"], cfg["freq_shift"])
        self.time_embedding = nn.ModuleDict({"linear": nn.Linear(ch[0], d)})
        blocks, c_in = [], cfg["in_channels"]
        for c in ch:
            layers = []
            for _ in range(cfg["layers_per_block"]):
                layers.append(nn.ModuleDict({
                    "conv": nn.Conv2d(c_in, c, 3, padding=1),
                    "time_proj": nn.Linear(d, c),
                    "norm": nn.GroupNorm(cfg["norm_num_groups"], c, eps=cfg["norm_eps"]),
                }))
                c_in = c
            blocks.append(nn.ModuleList(layers))
        self.blocks = nn.ModuleList(blocks)
        self.out = nn.Linear(ch[-1], cfg["num_classes"])

    def forward(self, x, t):
        temb = F.silu(self.time_embedding["linear"](self.time_proj(t).to(x.dtype)))
        for level, layers in enumerate(self.blocks):
            for layer in layers:
                z = layer["conv"](x) + layer["time_proj"](temb)[:, :, None, None]
                x = F.silu(layer["norm"](z))
            last = level == len(self.blocks) - 1
            x = x.mean(dim=(2, 3)) if last else F.avg_pool2d(x, 2)
        return self.out(x)


def alphas_cumprod(cfg):
    betas = torch.linspace(cfg["beta_start"], cfg["beta_end"], cfg["num_train_timesteps"], dtype=torch.float64)
    return torch.cumprod(1 - betas, 0).float()


def noised(x0, t, acp, gen):
    a = acp[t][:, None, None, None]
    return a.sqrt() * x0 + (1 - a).sqrt() * torch.randn(x0.shape, generator=gen)


@torch.no_grad()
def accuracy_by_t(model, x, y, acp, ts, seed=1):
    gen = torch.Generator().manual_seed(seed)
    model.eval()
    out = {}
    for t in ts:
        tt = torch.full((len(x),), t, dtype=torch.long)
        pred = model(noised(x, tt, acp, gen), tt.float()).argmax(1)
        out[int(t)] = round(float((pred == y).float().mean()) * 100, 1)
    model.train()
    return out


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--data", required=True)
    p.add_argument("--out", required=True)
    p.add_argument("--minutes", type=float, default=12)
    p.add_argument("--batch", type=int, default=128)
    p.add_argument("--lr", type=float, default=2e-3)
    p.add_argument("--seed", type=int, default=0)
    args = p.parse_args()
    torch.manual_seed(args.seed)
    torch.set_num_threads(2)
    data = np.load(args.data)
    x = torch.from_numpy(data["images"]).float()[:, None] * 2 - 1
    y = torch.from_numpy(data["labels"]).long()
    gen = torch.Generator().manual_seed(args.seed)
    perm = torch.randperm(len(x), generator=gen)
    tr, te = perm[:9000], perm[9000:]
    acp = alphas_cumprod(CONFIG)
    model = NoisyClassifier(CONFIG)
    opt = torch.optim.AdamW(model.parameters(), lr=args.lr, weight_decay=1e-4)
    start, step, losses = time.time(), 0, []
    budget = args.minutes * 60
    while time.time() - start < budget:
        order = tr[torch.randperm(len(tr), generator=gen)]
        for i in range(0, len(order) - args.batch + 1, args.batch):
            frac = min(1.0, (time.time() - start) / budget)
            for g in opt.param_groups:  # warm-up, then cosine decay over the time budget
                g["lr"] = args.lr * min(1.0, (step + 1) / 100) * 0.5 * (1 + math.cos(math.pi * frac))
            b = order[i:i + args.batch]
            dx, dy = torch.randint(-2, 3, (2,), generator=gen).tolist()
            x0 = torch.roll(x[b], shifts=(dy, dx), dims=(2, 3))
            t = torch.randint(0, CONFIG["num_train_timesteps"], (len(b),), generator=gen)
            loss = F.cross_entropy(model(noised(x0, t, acp, gen), t.float()), y[b])
            opt.zero_grad()
            loss.backward()
            opt.step()
            losses.append(float(loss))
            step += 1
            if step % 100 == 0:
                print(f"step {step} loss {np.mean(losses[-100:]):.4f} {time.time() - start:.0f} s", flush=True)
            if time.time() - start >= budget:
                break
    minutes = (time.time() - start) / 60
    ts = [0, 100, 200, 300, 400, 500, 600, 700, 800, 900, 999]
    acc = accuracy_by_t(model, x[te], y[te], acp, ts)
    print("held-out accuracy by t:", acc)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    (out / "config.json").write_text(json.dumps(CONFIG, indent=2) + "\n")
    state = {k: v.detach().to(torch.float16).contiguous() for k, v in model.state_dict().items()}
    save_file(state, str(out / "model.safetensors"))
    info = {
        "steps": step,
        "minutes": round(minutes, 1),
        "batch": args.batch,
        "lr": args.lr,
        "seed": args.seed,
        "parameters": sum(p.numel() for p in model.parameters()),
        "final_loss": round(float(np.mean(losses[-100:])), 4),
        "held_out_accuracy_percent_by_t": acc,
        "torch": torch.__version__,
    }
    (out / "train_info.json").write_text(json.dumps(info, indent=2) + "\n")
    print(json.dumps(info, indent=2))


if __name__ == "__main__":
    main()
