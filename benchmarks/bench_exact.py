"""How large a random ReLU network can ``lv.exact`` handle within a time budget, by input dimension?

For each input dimension, seeded random nets with two hidden layers of width w (w increasing) are solved
with ``lv.exact`` (l∞ by default) until one exceeds the budget (``time_limit``: the enumeration stops and
raises).  The reference in the same run is the K4 bound on the same net (``ratio = exact / k4`` seconds).

    PYTHONPATH=. python benchmarks/bench_exact.py --budget 60 --dims 1 2 3 4

Measured on the 2-core development machine (l∞, seed 0, two hidden layers of width w; largest w within 60 s):
n_in = 1: w = 128 (10.5 s, breakpoints; every width tried), n_in = 2: w = 48 (32 s; 64 stopped at 60 s),
n_in = 3: w = 24 (36 s; 32 stopped), n_in = 4: w = 16 (35 s; 20 stopped).
"""

from __future__ import annotations

import argparse
import time

import numpy as np

import lipverify as lv
from lipverify.errors import SolverError

WIDTHS = (4, 6, 8, 10, 12, 14, 16, 20, 24, 32, 48, 64, 96, 128)


def random_net(n: int, width: int, depth: int, seed: int) -> lv.Network:
    rng = np.random.default_rng(seed)
    layers, d = [], n
    for _ in range(depth):
        layers += [lv.Dense(rng.standard_normal((width, d)), rng.standard_normal(width)), lv.ReLU()]
        d = width
    layers.append(lv.Dense(rng.standard_normal((1, d)), rng.standard_normal(1)))
    return lv.Network(layers)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--budget", type=float, default=60.0, help="seconds per network")
    ap.add_argument("--dims", type=int, nargs="+", default=[1, 2, 3, 4])
    ap.add_argument("--depth", type=int, default=2)
    ap.add_argument("--norm", default="inf")
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args()
    print(f"{'n_in':>4} {'hidden':>10} {'exact':>12} {'seconds':>9} {'k4':>12} {'k4 s':>8} {'ratio':>8}  technique / details")
    for n in args.dims:
        for w in WIDTHS:
            net = random_net(n, w, args.depth, args.seed)
            t0 = time.perf_counter()
            k4 = lv.bound(net, "k4", args.norm) if args.norm != "2" else lv.bound(net, "kstar", args.norm)
            t_ref = time.perf_counter() - t0
            t0 = time.perf_counter()
            try:
                b = lv.exact(net, args.norm, time_limit=args.budget, progress=False) if n > 1 else lv.exact(net, args.norm)
            except SolverError as exc:
                print(f"{n:>4} {f'{args.depth}x{w}':>10} {'-':>12} {time.perf_counter() - t0:>9.1f} {float(k4.value):>12.6g} "
                      f"{t_ref:>8.4f} {'-':>8}  stopped: {exc}")
                break
            secs = time.perf_counter() - t0
            d = b.details
            info = d.get("technique", "")
            if "nodes" in d:
                info += f" nodes={d['nodes']} lps={d['lps']} regions={d['verified_regions']} pruned={d['pruned_by_bound']}"
            elif "pieces" in d:
                info += f" pieces={d['pieces']}"
            print(f"{n:>4} {f'{args.depth}x{w}':>10} {float(b.value):>12.6g} {secs:>9.2f} {float(k4.value):>12.6g} "
                  f"{t_ref:>8.4f} {secs / max(t_ref, 1e-9):>8.0f}  {b.kind}: {info}", flush=True)
            if secs > args.budget:
                break


if __name__ == "__main__":
    main()
