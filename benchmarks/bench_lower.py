"""Benchmark of ``lower_bound``'s search (issue 14 item 4): time, peak traced memory and certified value, before/after
in one run.

"before" = the former search: one unchunked batch of float Jacobians (``JACOBIAN_CHUNK_BYTES`` set huge) and the
common geometric hill-climbing schedule, every coordinate moving (``ADAPTIVE_STEPS = MOVE_COORDINATES = None``);
"after" = the defaults (chunks of about ``JACOBIAN_CHUNK_BYTES``, per-point adaptive steps, sparse moves in high
dimension).  Networks: the shipped Fashion-MNIST CNN and a He-initialised
64-128-64-10 ReLU MLP (seed 0; a stand-in for the digits MLP of the issue, whose weights are not in the repository).
Peak memory is Python's ``tracemalloc`` peak during the call (numpy arrays included); for the process's peak RSS of
``compare`` use ``/usr/bin/time -v python -m lipverify compare lipverify/data/fashion_cnn.onnx``.

Run from the repository root: ``python benchmarks/bench_lower.py [--seeds 0 1] [--samples 256]``.  Not a test.

Measured 2026-12-02 (2 cores shared with other jobs: times are noisy), value ratio after/before per seed 0, 1:
Fashion CNN l1 1.003, 1.052; l2 0.991, 1.022; l∞ 0.998, 1.048 (tracemalloc peak 156 -> 138 MB, time ratio
0.73-1.08); MLP l1 1.074, 1.021; l2 1.024, 1.050; l∞ 1.098, 1.044 (time ratio 0.75-1.06).  Process peak RSS of
``compare`` on the CNN: 983 MB before and after (not from ``lower_bound``: it alone peaks at about 230 MB RSS).
"""

from __future__ import annotations

import argparse
import time
import tracemalloc
from pathlib import Path

import numpy as np

import lipverify as lv
from lipverify import lower

ROOT = Path(__file__).resolve().parent.parent


def _mlp(sizes=(64, 128, 64, 10), seed=0) -> lv.Network:
    rng = np.random.default_rng(seed)
    layers: list = []
    for i, (a, b) in enumerate(zip(sizes[:-1], sizes[1:])):
        if i:
            layers.append(lv.ReLU())
        layers.append(lv.Dense(rng.normal(0, np.sqrt(2 / a), (b, a)), rng.normal(0, 0.1, b)))
    return lv.Network(layers)


def _run(net, p, seed, samples, before: bool):
    saved = lower.JACOBIAN_CHUNK_BYTES, lower.ADAPTIVE_STEPS, lower.MOVE_COORDINATES
    if before:
        lower.JACOBIAN_CHUNK_BYTES, lower.ADAPTIVE_STEPS, lower.MOVE_COORDINATES = 1 << 62, None, None
    tracemalloc.start()
    try:
        t = time.perf_counter()
        b = lv.lower_bound(net, p, seed=seed, samples=samples)
        seconds = time.perf_counter() - t
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
        lower.JACOBIAN_CHUNK_BYTES, lower.ADAPTIVE_STEPS, lower.MOVE_COORDINATES = saved
    return b, seconds, peak


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--seeds", type=int, nargs="+", default=[0, 1])
    ap.add_argument("--samples", type=int, default=256)
    args = ap.parse_args()
    nets = [("fashion_cnn", lv.load(ROOT / "lipverify/data/fashion_cnn.onnx")), ("mlp_64_128_64_10", _mlp())]
    for _, net in nets:  # warm-up: lazy imports (scipy's LP solver, ...) are not charged to the first row
        lv.lower_bound(net, "inf", samples=8, steps=1)
    print("network           norm seed | before: kind value  s  peakMB | after: kind value  s  peakMB | value ratio  "
          "time ratio  mem ratio")
    for name, net in nets:
        for p in ("1", "2", "inf"):
            for seed in args.seeds:
                b0, s0, m0 = _run(net, p, seed, args.samples, True)
                b1, s1, m1 = _run(net, p, seed, args.samples, False)
                v0, v1 = float(b0.value), float(b1.value)
                print(f"{name:17s} {p:4s} {seed:4d} | {b0.kind:5s} {v0:9.4f} {s0:6.2f} {m0 / 2**20:7.1f} | "
                      f"{b1.kind:5s} {v1:9.4f} {s1:6.2f} {m1 / 2**20:7.1f} | {v1 / v0 if v0 else float('nan'):6.3f} "
                      f"{s1 / s0:10.2f} {m1 / m0:10.2f}", flush=True)


if __name__ == "__main__":
    main()
