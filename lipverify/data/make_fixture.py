"""Write ``fashion_test100.npz``: the first test images of Fashion-MNIST and their labels (the fixture of Test 4's
local section, ``lipverify.data.fashion_test`` and ``benchmarks/bench_certify.py``).

Data: Debian's ``dataset-fashion-mnist`` package (``/usr/share/datasets/fashion-mnist``, file
``t10k-images-idx3-ubyte.gz`` and ``t10k-labels-idx1-ubyte.gz``), the images in file order.  Arrays:

- ``x``: float64, shape ``(n, 1, 28, 28)``, the grey levels scaled to [0, 1] as in ``train_fashion_cnn.py``:
  ``x = pixel / 255`` (each value the correctly rounded float64 of ``k / 255``, ``k`` in 0..255);
- ``y``: int64, shape ``(n,)``, the class labels 0..9.

The archive is also a ready ``--inputs`` file of ``lipverify certify`` (arrays ``x`` and ``y``).  Deterministic::

    python -m lipverify.data.make_fixture [--n 100] [--out lipverify/data/fashion_test100.npz]
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np

from .train_fashion_cnn import DATA, read_idx


def fixture_arrays(n: int = 100, data: Path = DATA) -> tuple[np.ndarray, np.ndarray]:
    """The first ``n`` test images (float64 in [0, 1], shape ``(n, 1, 28, 28)``) and labels (int64)."""
    images = read_idx(data / "t10k-images-idx3-ubyte.gz")
    labels = read_idx(data / "t10k-labels-idx1-ubyte.gz")
    if not 1 <= n <= len(images):
        raise ValueError(f"make_fixture: n must be in 1..{len(images)}, got {n}")
    x = images[:n, None].astype(np.float64) / 255.0
    return x, labels[:n].astype(np.int64)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--n", type=int, default=100, help="number of test images (default 100)")
    parser.add_argument("--out", default=str(Path(__file__).with_name("fashion_test100.npz")))
    parser.add_argument("--data", default=str(DATA), help=f"directory of the idx files (default {DATA})")
    args = parser.parse_args(argv)
    x, y = fixture_arrays(args.n, Path(args.data))
    np.savez_compressed(args.out, x=x, y=y)
    print(f"wrote {args.out} ({Path(args.out).stat().st_size} bytes): x {x.shape} {x.dtype}, y {y.shape} {y.dtype}")


if __name__ == "__main__":
    main()
