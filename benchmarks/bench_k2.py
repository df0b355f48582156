"""K2 closed-search speed: the batched search (``_FastSearch``) against the former per-node search (``_Search``, kept in
``lipverify/bounds/k2.py`` and still used for the sparse CNN chain), side by side in one process.

Nets: Gaussian weights N(0, 1/fan_in), ReLU, ``n_in``-h-...-h-``n_out`` (issue 15 item 4).  For each size the two
searches run on the same chain with the same ``time_limit``; printed: whether each closed, its seconds and nodes,
the values (they agree to ``rel_tol`` when both closed) and the time ratio.

    OPENBLAS_NUM_THREADS=1 /work/venv/bin/python benchmarks/bench_k2.py [--norm inf] [--limit 60] [--sizes 3x8,3x12]

Measured 2026-12-02 (``--limit 60``, l∞, seed 0, one BLAS thread, 2 cores at load ~5: the test suite ran alongside):

    net            hidden | former _Search          | _FastSearch               | ratio
    3-8-8-8-2          24 | not closed, 60 s         | closed   0.42 s,    79652 n |  > 140
    3-13-13-2          26 | closed  45.0 s,  49666 n | closed   1.47 s,    91126 n |   30.6
    3-9-9-9-2          27 | not closed, 60 s         | closed   1.74 s,   115936 n |  > 34
    3-14-14-2          28 | not closed, 60 s         | closed  13.7 s,   946842 n |  > 4.4
    3-11-11-11-2       33 | (not run)                | closed   3.33 s,   405624 n |
    3-17-17-2          34 | (not run)                | closed  34.0 s,  3183600 n |
    3-12-12-12-2       36 | (not run)                | closed  43.9 s,  3741316 n |
    3-18-18-2          36 | (not run)                | not closed, 60 s           |
    3-13-13-13-2       39 | (not run)                | not closed, 60 s           |

Closed values agree (3-13-13-2: 2.19097702 both).  The 60-s frontier of closed K2 on these nets: the former search
24-26 hidden neurons under this load, the batched one 34 (two hidden layers) and 36 (three).  Per node: ~5 µs
against ~550-900 µs.
"""

from __future__ import annotations

import argparse
import math
import time

import numpy as np

import lipverify as lv
from lipverify.bounds.k2 import _FastSearch, _Search
from lipverify.ir.views import linear_chain


def gaussian_net(seed: int, widths: list[int]) -> lv.Network:
    rng = np.random.default_rng(seed)
    layers: list = []
    for i in range(len(widths) - 1):
        w = rng.standard_normal((widths[i + 1], widths[i])) / math.sqrt(widths[i])
        layers += [lv.Dense(w), lv.ReLU()]
    return lv.Network(layers[:-1])


def run(cls, net, norm: str, limit: float, max_nodes: int = 10**9):
    chain = linear_chain(net, "k2")
    if norm == "inf":
        chain = chain.transpose()
    t0 = time.perf_counter()
    s = cls(chain, "2" if norm == "2" else "1", max_nodes, t0 + limit, 1e-9, 0)
    upper, lower, closed, nodes = s.run()
    return closed, time.perf_counter() - t0, nodes, upper, lower


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--norm", default="inf")
    ap.add_argument("--limit", type=float, default=60.0)
    ap.add_argument("--n-in", type=int, default=3)
    ap.add_argument("--n-out", type=int, default=2)
    ap.add_argument("--sizes", default="3x8,2x13,3x9,2x14,3x11,2x17,3x12,2x18,3x13,2x20")
    ap.add_argument("--seeds", type=int, default=1)
    ap.add_argument("--old-max-hidden", type=int, default=28,
                    help="run the former search only up to this many hidden neurons (its frontier is 26-28)")
    args = ap.parse_args()
    print(f"norm l{args.norm}, time limit {args.limit:g} s, n_in {args.n_in}, n_out {args.n_out}")
    print(f"{'net':>16} {'seed':>4} {'hidden':>6} | {'old closed':>10} {'s':>7} {'nodes':>8} | "
          f"{'new closed':>10} {'s':>7} {'nodes':>8} | {'ratio':>6}  values")
    for size in args.sizes.split(","):
        layers, width = (int(x) for x in size.split("x"))
        widths = [args.n_in] + [width] * layers + [args.n_out]
        for seed in range(args.seeds):
            net = gaussian_net(seed, widths)
            new = run(_FastSearch, net, args.norm, args.limit)
            skip = layers * width > args.old_max_hidden
            old = (False, math.nan, 0, math.nan, math.nan) if skip else run(_Search, net, args.norm, args.limit)
            ratio = old[1] / new[1] if old[0] and new[0] else math.nan
            print(f"{'-'.join(map(str, widths)):>16} {seed:>4} {layers * width:>6} | {str(old[0]):>10} {old[1]:7.2f} "
                  f"{old[2]:8d} | {str(new[0]):>10} {new[1]:7.2f} {new[2]:8d} | {ratio:6.1f}  "
                  f"old {old[3]:.9g} new {new[3]:.9g}", flush=True)


if __name__ == "__main__":
    main()
