"""Measure the bundled model's quality: train a small digit classifier on the same 10k MNIST digits,
then sample 50 digits per class with DDIM (50 steps, eta 0) at guidance w in {0, 1, 3} and report the
fraction the classifier reads as the requested class. Writes weights/quality.json and sample grids.

    python weights/evaluate.py --data weights/data/mnist.npz --model weights/mnist-cond

Guidance follows Ho & Salimans, as the engine does: eps = (1 + w) * eps(c) - w * eps(null); w = 0 is
plain conditional sampling. The classifier is trained on 9,000 digits and its accuracy on the other
1,000 is reported beside the numbers, so the reader can judge the judge.
"""
import argparse
import json
import time
from pathlib import Path

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F
from diffusers import DDIMScheduler, UNet2DModel
from PIL import Image


class Classifier(nn.Module):
    def __init__(self):
        super().__init__()
        self.c1 = nn.Conv2d(1, 32, 3, padding=1)
        self.c2 = nn.Conv2d(32, 64, 3, padding=1)
        self.c3 = nn.Conv2d(64, 64, 3, padding=1)
        self.fc = nn.Linear(64 * 3 * 3, 10)
        self.drop = nn.Dropout(0.3)

    def forward(self, x):  # x in [-1, 1], [N,1,28,28]
        x = F.max_pool2d(F.relu(self.c1(x)), 2)
        x = F.max_pool2d(F.relu(self.c2(x)), 2)
        x = F.max_pool2d(F.relu(self.c3(x)), 2)
        return self.fc(self.drop(x.flatten(1)))


def train_classifier(x, y, seed=0, epochs=8):
    g = torch.Generator().manual_seed(seed)
    perm = torch.randperm(len(x), generator=g)
    tr, te = perm[:9000], perm[9000:]
    clf = Classifier()
    opt = torch.optim.Adam(clf.parameters(), lr=2e-3)
    for epoch in range(epochs):
        clf.train()
        order = tr[torch.randperm(len(tr), generator=g)]
        for i in range(0, len(order), 128):
            b = order[i:i + 128]
            xb = x[b]
            # Small random shifts make the judge robust to off-centre generated digits.
            dx, dy = torch.randint(-2, 3, (2,), generator=g).tolist()
            xb = torch.roll(xb, shifts=(dy, dx), dims=(2, 3))
            loss = F.cross_entropy(clf(xb), y[b])
            opt.zero_grad()
            loss.backward()
            opt.step()
    clf.eval()
    with torch.no_grad():
        acc = (clf(x[te]).argmax(1) == y[te]).float().mean().item()
    return clf, acc


@torch.no_grad()
def sample(unet, sched, labels, w, steps, seed):
    g = torch.Generator().manual_seed(seed)
    x = torch.randn((len(labels), 1, 28, 28), generator=g)
    sched.set_timesteps(steps)
    null = torch.full_like(labels, unet.config.num_class_embeds - 1)
    for t in sched.timesteps:
        if w == 0:
            eps = unet(x, t, class_labels=labels).sample
        else:
            both = unet(torch.cat([x, x]), t, class_labels=torch.cat([labels, null])).sample
            cond, uncond = both.chunk(2)
            eps = (1 + w) * cond - w * uncond
        x = sched.step(eps, t, x, eta=0.0).prev_sample
    return x


def grid_png(x, path, cols=10):
    x = ((x.clamp(-1, 1) + 1) * 127.5).round().byte().squeeze(1).numpy()
    rows = (len(x) + cols - 1) // cols
    canvas = np.zeros((rows * 28, cols * 28), dtype=np.uint8)
    for i, im in enumerate(x):
        r, c = divmod(i, cols)
        canvas[r * 28:(r + 1) * 28, c * 28:(c + 1) * 28] = im
    Image.fromarray(canvas).resize((cols * 56, rows * 56), Image.NEAREST).save(path)


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--data", default="weights/data/mnist.npz")
    p.add_argument("--model", default="weights/mnist-cond")
    p.add_argument("--per-class", type=int, default=50)
    p.add_argument("--steps", type=int, default=50)
    p.add_argument("--guidance", type=float, nargs="+", default=[0.0, 1.0, 3.0])
    p.add_argument("--threads", type=int, default=2)
    args = p.parse_args()
    torch.manual_seed(0)
    torch.set_num_threads(args.threads)
    d = np.load(args.data)
    x = torch.from_numpy(d["images"]).float().unsqueeze(1) * 2 - 1
    y = torch.from_numpy(d["labels"]).long()
    t0 = time.time()
    clf, acc = train_classifier(x, y)
    print(f"classifier held-out accuracy {acc:.4f} ({time.time() - t0:.0f} s)", flush=True)
    unet = UNet2DModel.from_pretrained(args.model).float().eval()
    sched = DDIMScheduler.from_pretrained(args.model)
    labels = torch.arange(10).repeat_interleave(args.per_class)
    results = {"classifier_heldout_accuracy": round(acc, 4), "samples_per_class": args.per_class,
               "ddim_steps": args.steps, "eta": 0.0, "guidance_convention": "(1+w)*eps(c) - w*eps(null)", "accuracy": {}}
    for w in args.guidance:
        t0 = time.time()
        xs = sample(unet, sched, labels, w, args.steps, seed=1234)
        with torch.no_grad():
            pred = clf(xs.clamp(-1, 1)).argmax(1)
        frac = (pred == labels).float().mean().item()
        per_class = [(pred[labels == c] == c).float().mean().item() for c in range(10)]
        results["accuracy"][f"w={w:g}"] = {"overall": round(frac, 4), "per_class": [round(v, 3) for v in per_class],
                                           "seconds": round(time.time() - t0, 1)}
        print(f"w={w:g}: {frac:.4f} classified as the requested digit; per class {np.round(per_class, 2).tolist()} "
              f"({time.time() - t0:.0f} s)", flush=True)
        # 10 per class for the picture: rows are digits 0..9.
        k = min(10, args.per_class)
        pick = torch.cat([torch.arange(c * args.per_class, c * args.per_class + k) for c in range(10)])
        grid_png(xs[pick], Path(args.model).parent / f"samples_w{w:g}.png", cols=k)
    (Path(args.model).parent / "quality.json").write_text(json.dumps(results, indent=2))
    print(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()
