"""Tightness of the polynomial l1/l∞ bounds against the exact bias-free sup K2, on a fixed random suite.

Suite (documented, reproducible): for each seed in ``range(start, start + n)`` (default 0..299),
``rng = numpy.random.default_rng(seed)``, depth ``L = rng.integers(2, 5)`` (2 to 4 Dense layers), widths
``rng.integers(2, 6, size=L + 1)`` (input, hidden and output widths 2 to 5), weights
``rng.standard_normal((n_out, n_in))`` layer by layer, ReLU between layers, no biases (they cancel).
K2 is computed by ``lv.bound(net, "k2", norm, max_nodes=200000, time_limit=60)``; nets where it did not
close (``not quantity_exact``) are left out and counted.  For every method the ratio ``bound / K2`` is
summarised (median, mean, p90, max) per norm and overall, with the mean time per net.  Any ratio
below ``1 - 1e-9`` would be a soundness failure and is reported.  Usage::

    python benchmarks/bench_tight.py [--n 300] [--start 0] [--methods k4 k3 k1 kcp ksdp]
"""

from __future__ import annotations

import argparse
import time
from collections import defaultdict

import numpy as np

import lipverify as lv


def suite_net(seed: int) -> lv.Network:
    rng = np.random.default_rng(seed)
    depth = int(rng.integers(2, 5))
    widths = rng.integers(2, 6, size=depth + 1)
    layers = []
    for l in range(depth):
        if l:
            layers.append(lv.ReLU())
        layers.append(lv.Dense(rng.standard_normal((int(widths[l + 1]), int(widths[l])))))
    return lv.Network(layers)


def summary(values: list[float]) -> str:
    v = np.asarray(values)
    return (f"median {np.median(v):7.4f}  mean {np.mean(v):7.4f}  p90 {np.quantile(v, 0.9):7.4f}  "
            f"max {np.max(v):7.4f}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--n", type=int, default=300)
    parser.add_argument("--start", type=int, default=0)
    parser.add_argument("--methods", nargs="+", default=["k4", "k3", "k1", "kcp", "ksdp"])
    args = parser.parse_args()
    ratios: dict[tuple[str, str], list[float]] = defaultdict(list)
    seconds: dict[tuple[str, str], list[float]] = defaultdict(list)
    by_depth: dict[tuple[str, int], list[float]] = defaultdict(list)
    open_k2 = 0
    fallback_rows = 0
    failures = []
    for seed in range(args.start, args.start + args.n):
        net = suite_net(seed)
        depth = sum(isinstance(layer, lv.Dense) for layer in net.layers)
        for norm in ("1", "inf"):
            t0 = time.perf_counter()
            k2 = lv.bound(net, "k2", norm, max_nodes=200_000, time_limit=60)
            seconds[("k2", norm)].append(time.perf_counter() - t0)
            if not k2.quantity_exact:
                open_k2 += 1
                continue
            for method in args.methods:
                t0 = time.perf_counter()
                b = lv.bound(net, method, norm)
                seconds[(method, norm)].append(time.perf_counter() - t0)
                fallback_rows += len(b.details.get("fallback_rows", ()))
                r = float(b.value) / float(k2.value)
                if r < 1 - 1e-9:
                    failures.append((seed, norm, method, r))
                ratios[(method, norm)].append(r)
                ratios[(method, "all")].append(r)
                by_depth[(method, depth)].append(r)
    print(f"suite: seeds {args.start}..{args.start + args.n - 1}, Gaussian ReLU nets, depth 2-4, widths 2-5; "
          f"K2 not closed on {open_k2} (net, norm) pairs (left out)")
    print("ratio bound / K2 (exact):")
    for method in args.methods:
        for norm in ("1", "inf", "all"):
            vals = ratios[(method, norm)]
            if vals:
                label = "l" + norm if norm != "all" else "both"
                print(f"  {method:<5} {label:<5} n={len(vals):<4} {summary(vals)}")
    print("median ratio by depth:")
    for method in args.methods:
        print(f"  {method:<5} " + "  ".join(f"L={d}: {np.median(by_depth[(method, d)]):.4f}"
                                          for d in (2, 3, 4) if by_depth[(method, d)]))
    print("mean seconds per (net, norm):")
    for method in ["k2"] + list(args.methods):
        t = seconds[(method, "1")] + seconds[(method, "inf")]
        print(f"  {method:<5} {np.mean(t):.4f} s")
    print(f"rows that fell back to min(K4, KCP) (no SDP certificate): {fallback_rows}")
    print(f"soundness failures (ratio < 1 - 1e-9): {failures if failures else 'none'}")


if __name__ == "__main__":
    main()
