"""Local K4 l∞ on the shipped Fashion-MNIST CNN: interval propagation against the backward linear relaxation (CROWN).

Inputs: ``np.random.default_rng(0).uniform(0, 1, (5, 1, 28, 28))`` (pixel-like values); boxes ``x ± eps`` for
eps in 0.001, 0.01, 0.03.  For each relaxation: the local K4 l∞ value per input, its mean, and the CPU seconds of
``lv.bound(net, "k4", norm="inf", domain=box, relaxation=...)`` (best of 3, ``time.process_time``, BLAS limited to
one thread).  Also the global K4 l∞ for reference.

Run: ``PYTHONPATH=. python benchmarks/bench_crown.py``.
"""

from __future__ import annotations

import os

for _var in ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ.setdefault(_var, "1")

import time  # noqa: E402
from pathlib import Path  # noqa: E402

import numpy as np  # noqa: E402

import lipverify as lv  # noqa: E402

MODEL = Path(lv.__file__).parent / "data" / "fashion_cnn.onnx"


def timed(fn, repeats: int = 3):
    best, out = float("inf"), None
    for _ in range(repeats):
        t = time.process_time()
        out = fn()
        best = min(best, time.process_time() - t)
    return out, best


def main() -> None:
    net = lv.load(str(MODEL))
    xs = np.random.default_rng(0).uniform(0, 1, (5, 1, 28, 28))
    print(f"global K4 l∞: {lv.bound(net, 'k4', norm='inf').value:.2f}")
    print(f"{'eps':>6} {'relaxation':>10} {'mean K4':>9} {'mean s':>8}  per input")
    for eps in (0.001, 0.01, 0.03):
        for relaxation in ("interval", "crown"):
            values, secs = [], []
            for x in xs:
                box = (x - eps, x + eps)
                b, s = timed(lambda box=box, rel=relaxation: lv.bound(net, "k4", norm="inf", domain=box, relaxation=rel))
                values.append(float(b.value))
                secs.append(s)
            print(f"{eps:>6} {relaxation:>10} {np.mean(values):>9.2f} {np.mean(secs):>8.4f}  "
                  + " ".join(f"{v:.2f}" for v in values))


if __name__ == "__main__":
    main()
