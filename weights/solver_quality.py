"""Quality and speed of the samplers on the bundled model, run by this project's engine.

Samples are made by the `ddim` CLI (the fast CPU engine, all cores) for DDIM, DDPM,
DPM-Solver++(2M), Euler and Heun at 5, 10, 20 and 50 steps from the same seeded noise, with mixed
labels (sample i asks for digit i mod 10); evaluate.py's digit classifier (trained on 9,000 of
the same MNIST digits, its held-out accuracy printed beside) counts the samples it reads as the
requested digit. Writes weights/solver_quality.json and prints the README's Markdown table.

    cargo build --release --bin ddim
    python weights/solver_quality.py --data weights/data/mnist.npz [--num 200] [--guidance 0]
"""
import argparse
import json
import re
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
from safetensors.torch import load_file

sys.path.insert(0, str(Path(__file__).resolve().parent))
from evaluate import train_classifier  # noqa: E402

ROOT = Path(__file__).resolve().parent.parent
SAMPLERS = ["ddim", "ddpm", "dpm++2m", "euler", "heun"]
STEPS = [5, 10, 20, 50]


def run(sampler, steps, num, guidance, out_dir):
    tensor = out_dir / f"{sampler}-{steps}.safetensors"
    cmd = [str(ROOT / "target/release/ddim"), "sample", "--cpu", "--sampler", sampler, "--steps", str(steps),
           "--num", str(num), "--seed", "1234", "--guidance", str(guidance),
           "--out", str(out_dir / f"{sampler}-{steps}.png"), "--out-tensor", str(tensor)]
    done = subprocess.run(cmd, capture_output=True, text=True, check=True)
    m = re.search(r"(\d+) U-Net evaluations in ([\d.]+) s", done.stderr)
    return load_file(tensor)["sample"], int(m.group(1)), float(m.group(2))


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--data", default="weights/data/mnist.npz")
    p.add_argument("--num", type=int, default=200)
    p.add_argument("--guidance", type=float, default=0.0)
    args = p.parse_args()
    torch.manual_seed(0)
    d = np.load(args.data)
    x = torch.from_numpy(d["images"]).float().unsqueeze(1) * 2 - 1
    y = torch.from_numpy(d["labels"]).long()
    clf, judge = train_classifier(x, y)
    print(f"classifier held-out accuracy {judge:.4f}", flush=True)
    labels = torch.arange(args.num) % 10
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for sampler in SAMPLERS:
            for steps in STEPS:
                t0 = time.time()
                xs, evals, seconds = run(sampler, steps, args.num, args.guidance, Path(tmp))
                with torch.no_grad():
                    acc = (clf(xs.clamp(-1, 1)).argmax(1) == labels).float().mean().item()
                rows.append({"sampler": sampler, "steps": steps, "evaluations": evals, "accuracy": round(acc, 4),
                             "seconds": seconds})
                print(f"{sampler:8} {steps:3} steps {evals:3} evaluations: {acc:.3f} in {seconds:.2f} s "
                      f"({time.time() - t0:.0f} s with start-up)", flush=True)
    result = {"classifier_heldout_accuracy": round(judge, 4), "samples": args.num, "guidance": args.guidance,
              "seed": 1234, "engine": "ddim CLI, fast CPU engine", "rows": rows}
    (ROOT / "weights/solver_quality.json").write_text(json.dumps(result, indent=2) + "\n")
    print(f"\n| sampler | " + " | ".join(f"{s} steps" for s in STEPS) + " |")
    print("|---|" + "---|" * len(STEPS))
    for sampler in SAMPLERS:
        cells = [r for r in rows if r["sampler"] == sampler]
        print(f"| {sampler} | " + " | ".join(
            f"{100 * r['accuracy']:.1f} % ({r['evaluations']} eval., {r['seconds']:.1f} s)" for r in cells) + " |")


if __name__ == "__main__":
    main()
