"""Benchmark of ``lipverify certify`` (``lv.certify``) on the 100 shipped Fashion-MNIST test images and the shipped CNN
(issue 14 item 6): time per image, CPU seconds, peak RSS, certified accuracy, and the ``--workers 2`` / ``--workers 1``
ratio.

Each configuration runs ``python -m lipverify certify MODEL --inputs lipverify/data/fashion_test100.npz --eps E --norm P
--method M --json --workers N`` in a child process (this tree on ``PYTHONPATH``, one BLAS thread per process); CPU
seconds (user + sys, the child and the worker processes it reaped) and peak RSS (the largest ``ru_maxrss`` among them)
come from ``os.wait4`` on that child alone.  Serial and ``--workers 2`` must print the same results (checked).
Methods: K4 in l∞; in l2 K* by default, because certify's l2 default K1 costs seconds per margin on this CNN (nine
margins per image: about an hour for 100 images on a busy machine), ``--l2-method k1`` measures it anyway.

Run from the repository root::

    python benchmarks/bench_certify.py [--eps 0.01] [--norms inf 2] [--l2-method kstar] [--images 100]

Not a test; the ``--workers`` ratio only means something on a machine with two idle cores (it prints the load).
With ``--workers 2`` the loky worker processes count only as far as the command reaped them before it exited.

Measured 2026-12-02, ``python benchmarks/bench_certify.py`` (2 cores shared with four other jobs, load average 7.0 at
the start, 8.5 at the end), 100 images, eps 0.01::

    | norm | method | workers | s per image (wall) | CPU s per image | peak RSS MB | certified accuracy |
    | linf | k4     | 1       | 0.355              | 0.051           | 84          | 0.05               |
    | linf | k4     | 2       | 0.470              | 0.077           | 80          | 0.05               |
    | l2   | kstar  | 1       | 1.411              | 0.220           | 86          | 0.37               |
    | l2   | kstar  | 2       | 1.142              | 0.251           | 80          | 0.37               |

    --workers 2 vs 1 (wall): 0.76x (l∞), 1.24x (l2), same results; on a machine this loaded the ratio says little.
    certify's l2 default (K1) took 26-57 s per image (two images, busy machine): 9 margins × a K1 of 3-6 s.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
from pathlib import Path

import numpy as np
from _child import run_child  # benchmarks/_child.py (the script's directory is on sys.path)

ROOT = Path(__file__).resolve().parent.parent
MODEL = ROOT / "lipverify" / "data" / "fashion_cnn.onnx"
FIXTURE = ROOT / "lipverify" / "data" / "fashion_test100.npz"


def run_certify(inputs: Path, eps: float, norm: str, method: str, workers: int) -> dict:
    """One ``lipverify certify`` in a child process: its JSON, wall time, CPU seconds and peak RSS (MB)."""
    cmd = [sys.executable, "-m", "lipverify", "certify", str(MODEL), "--inputs", str(inputs), "--eps", str(eps),
           "--norm", norm, "--method", method, "--json", "--workers", str(workers)]
    run = run_child(cmd, ROOT, ROOT)
    return {"json": json.loads(run.pop("stdout")), **run}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--eps", type=float, default=0.01)
    parser.add_argument("--norms", nargs="+", default=["inf", "2"])
    parser.add_argument("--l2-method", default="kstar", help="the method of l2 (default kstar; certify's default is k1)")
    parser.add_argument("--images", type=int, default=100, help="the first N shipped images (default 100)")
    parser.add_argument("--workers", type=int, nargs="+", default=[1, 2])
    args = parser.parse_args()
    with np.load(FIXTURE) as data:
        x, y = data["x"][:args.images], data["y"][:args.images]
    n = len(x)
    print(f"machine: {os.cpu_count()} cores, load average {os.getloadavg()} at start; {n} images, eps {args.eps}")
    with tempfile.TemporaryDirectory() as tmp:
        inputs = Path(tmp) / "inputs.npz"
        np.savez(inputs, x=x, y=y)
        print("| norm | method | workers | s per image (wall) | CPU s per image | peak RSS MB | certified accuracy |")
        print("|---|---|---|---|---|---|---|")
        ratios: list[str] = []
        for norm in args.norms:
            method = args.l2_method if norm in ("2", "l2") else "k4"
            runs = {}
            for w in args.workers:
                r = runs[w] = run_certify(inputs, args.eps, norm, method, w)
                print(f"| l{norm} | {method} | {w} | {r['wall'] / n:.3f} | {r['cpu'] / n:.3f} | {r['rss_mb']:.0f} | "
                      f"{r['json']['certified_accuracy']:.2f} |", flush=True)
            results = [runs[w]["json"]["results"] for w in args.workers]
            if any(res != results[0] for res in results[1:]):
                raise RuntimeError(f"l{norm}: the results differ between --workers {args.workers}")
            if 1 in runs:
                ratios += [f"l{norm}: --workers {w} is {runs[1]['wall'] / runs[w]['wall']:.2f}x faster than --workers 1 "
                           "(wall), same results" for w in runs if w != 1]
    print("\n".join(["", *ratios]))
    print(f"load average at the end {os.getloadavg()}")


if __name__ == "__main__":
    main()
