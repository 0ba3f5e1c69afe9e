"""Measure classifier guidance and the adaptive ODE solver on the bundled model, through the engine
itself (the `ddim` CLI, fast CPU engine), and write weights/guidance_quality.json:

* classifier guidance (Dhariwal & Nichol): for each scale s, `--per-class` samples of each digit
  (DDIM, `--steps` steps, eta 0, w = 0), steered by the bundled noise-aware classifier
  (weights/digit-classifier) towards the digit, with the U-Net given the null class (an
  unconditional model made conditional) and given the digit itself; the share the digit judge of
  weights/evaluate.py (a separate CNN trained on the clean digits, its held-out accuracy reported)
  reads as the requested digit;
* the probability-flow ODE solved by adaptive RK45 (`vp-ode-rk45`): U-Net evaluations (NFE) at
  each tolerance, as the CLI counts them.

    cargo build --release --features cli --bin ddim
    python weights/guidance_quality.py --data weights/data/mnist.npz
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
from safetensors.numpy import load_file

sys.path.insert(0, str(Path(__file__).resolve().parent))
from evaluate import train_classifier  # noqa: E402  (the digit judge)

ROOT = Path(__file__).resolve().parent.parent


def ddim(args, *cli):
    env = {"XDG_RUNTIME_DIR": "/tmp", "PATH": "/usr/bin:/bin"}
    out = subprocess.run([args.ddim, *cli], capture_output=True, text=True, env=env, cwd=ROOT)
    if out.returncode != 0:
        raise SystemExit(f"ddim {' '.join(cli)} failed:\n{out.stderr}")
    return out.stderr


def samples(args, digit, unet_class, scale, tmp):
    path = Path(tmp) / f"s{digit}.safetensors"
    cli = ["sample", "--engine", "cpu", "--sampler", "ddim", "--steps", str(args.steps), "--num", str(args.per_class),
           "--seed", str(1000 + digit), "--class", str(unet_class), "--guidance", "0",
           "--out", str(Path(tmp) / "s.png"), "--out-tensor", str(path)]
    if scale > 0:
        cli += ["--classifier-scale", str(scale), "--classifier-class", str(digit)]
    ddim(args, *cli)
    return torch.from_numpy(load_file(str(path))["sample"])


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--data", default="weights/data/mnist.npz")
    p.add_argument("--ddim", default=str(ROOT / "target" / "release" / "ddim"))
    p.add_argument("--per-class", type=int, default=20)
    p.add_argument("--steps", type=int, default=25)
    p.add_argument("--scales", type=float, nargs="+", default=[0, 1, 2, 5, 10])
    p.add_argument("--tolerances", type=float, nargs="+", default=[1e-3, 1e-5])
    args = p.parse_args()
    torch.manual_seed(0)
    torch.set_num_threads(2)
    d = np.load(args.data)
    x = torch.from_numpy(d["images"]).float().unsqueeze(1) * 2 - 1
    y = torch.from_numpy(d["labels"]).long()
    judge, acc = train_classifier(x, y)
    print(f"judge held-out accuracy {acc:.4f}", flush=True)
    result = {"judge_heldout_accuracy": round(acc, 4), "samples_per_class": args.per_class, "ddim_steps": args.steps,
              "eta": 0, "cfg_w": 0, "classifier": "weights/digit-classifier", "engine": "ddim CLI, fast CPU engine",
              "classifier_guidance": {}, "rk45_nfe": {}}
    with tempfile.TemporaryDirectory() as tmp:
        for unet in ["null", "digit"]:
            rows = {}
            for s in args.scales:
                t0 = time.time()
                hits = []
                for digit in range(10):
                    xs = samples(args, digit, 10 if unet == "null" else digit, s, tmp)
                    with torch.no_grad():
                        hits.append((judge(xs.clamp(-1, 1)).argmax(1) == digit).float().mean().item())
                rows[f"s={s:g}"] = {"overall": round(float(np.mean(hits)), 4), "per_class": [round(h, 2) for h in hits],
                                    "seconds": round(time.time() - t0, 1)}
                print(f"U-Net class {unet}, s={s:g}: {np.mean(hits):.3f} per class {np.round(hits, 2).tolist()} "
                      f"({time.time() - t0:.0f} s)", flush=True)
            result["classifier_guidance"][f"unet_class={unet}"] = rows
        for tol in args.tolerances:
            err = ddim(args, "sample", "--engine", "cpu", "--sampler", "vp-ode-rk45", "--tolerance", str(tol), "--num", "4",
                       "--seed", "0", "--guidance", "0", "--out", str(Path(tmp) / "rk.png"))
            nfe = int(re.search(r"(\d+) U-Net evaluations", err).group(1))
            result["rk45_nfe"][f"{tol:g}"] = nfe
            print(f"RK45 tolerance {tol:g}: {nfe} U-Net evaluations", flush=True)
    out = Path(__file__).resolve().parent / "guidance_quality.json"
    out.write_text(json.dumps(result, indent=2) + "\n")
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
