"""Time of every FC bound on a 10 x 512 ReLU MLP next to the time of one forward pass, in the same run.

Prints ratios (bound time / forward time); nothing here is a timed assertion.  Usage::

    python benchmarks/bench_fc.py [--width 512] [--depth 10] [--repeat 3]
"""

from __future__ import annotations

import argparse
import platform
import time

import numpy as np

import lipverify as lv


def mlp(depth: int, width: int, seed: int = 0) -> lv.Network:
    rng = np.random.default_rng(seed)
    layers = []
    for l in range(depth):
        if l:
            layers.append(lv.ReLU())
        layers.append(lv.Dense(rng.standard_normal((width, width)) / np.sqrt(width), rng.standard_normal(width) * 0.1))
    return lv.Network(layers)


def best_time(fn, repeat: int) -> float:
    times = []
    for _ in range(repeat):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return min(times)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--width", type=int, default=512)
    parser.add_argument("--depth", type=int, default=10)
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args()
    net = mlp(args.depth, args.width)
    x = np.random.default_rng(1).standard_normal(net.n_in)
    forward = best_time(lambda: net(x), max(args.repeat, 20))
    print(f"lipverify {lv.__version__}, numpy {np.__version__}, {platform.processor() or platform.machine()}")
    print(f"network: {args.depth} x {args.width} ReLU MLP; one forward pass (one input): {forward * 1e3:.3f} ms")
    print(f"{'method':<8} {'norm':<5} {'value':>12} {'seconds':>9} {'x forward':>11}")
    for method in lv.METHODS:
        for norm in lv.NORMS:
            options = {"time_limit": 5.0} if method == "k2" else {}
            try:
                result = None

                def run(method=method, norm=norm, options=options):
                    nonlocal result
                    result = lv.bound(net, method, norm=norm, **options)

                t = best_time(run, 1 if method in ("k1", "k2") else args.repeat)
            except lv.NotApplicableError:
                continue
            print(f"{method:<8} {'l' + norm:<5} {float(result.value):>12.5g} {t:>9.3f} {t / forward:>11.0f}")


if __name__ == "__main__":
    main()
