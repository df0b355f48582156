"""LipSDP at scale (issue 15 item 1): lipverify's ``lv.bound(net, "lipsdp")`` against a straightforward dense
cvxpy + CVXOPT port, measured in one run, every case in a fresh subprocess (its own peak RSS), BLAS on one thread
(``OPENBLAS_NUM_THREADS=1`` etc. for every case, baseline and lipverify alike).

Nets (Gaussian weights N(0, 1/fan_in), seed 0, ReLU): 10-100-100-100-10, 784-100-100-10 and, with ``--big``,
784-500-200-50-10.  Goals of the issue: >= 20x faster than the dense port at 10-100-100-100-10 with the same value;
784-100-100-10 certified in <= 10 s; 784-500-200-50-10 in <= 120 s and <= 4 GB peak RSS.

Per case the script prints: the LMI side (full and after the input-block reduction to range(W_1^T)), the
certified value, the solver's value, the solve and certification seconds, wall and CPU time, peak RSS, the
solver used, and (where the baseline runs) the dense port's value and time with the ratio.  The 1-minute load
average before and after each case says whether the machine was busy.

The dense port follows the original LipSDP code (Fazlyab et al. 2019):
``M = [A; B]^T [[-2 alpha beta T, (alpha+beta) T], [(alpha+beta) T, -2 T]] [A; B] + diag(-rho I, 0, W_L^T W_L)``
with ``A = [blkdiag(W_1..W_{L-1}), 0]``, ``B = [0, I]``, ``T = diag(lambda)``, all dense numpy constants, on the
same power-of-two scaled weights; its value is ``2^E sqrt(rho)`` (not certified).

    PYTHONPATH=. python benchmarks/bench_lipsdp.py                 # 10-100-100-100-10 (with baseline), 784-100-100-10
    PYTHONPATH=. python benchmarks/bench_lipsdp.py --big           # also 784-500-200-50-10 (run it once: minutes)
    PYTHONPATH=. python benchmarks/bench_lipsdp.py --sizes 10-50-50-10 --baseline   # any net, with the baseline
    PYTHONPATH=. python benchmarks/bench_lipsdp.py --variant layer # LipSDP-Layer
    PYTHONPATH=. python benchmarks/bench_lipsdp.py --table         # issue 17: deep ill-conditioned zoo nets
    PYTHONPATH=. python benchmarks/bench_lipsdp.py --big --methods lipsdp_fast,lipsdp_fo --cnn   # issue 15 item 3

Every net also gets a row for ``lipsdp_fast`` (closed form) and ``lipsdp_fo`` (first-order LipSDP from lipsdp_fast's
warm start, certified), each in its own process (``--methods`` picks them); ``--cnn`` adds the Fashion CNN.

``--table`` prints, for the zoo's sawtooth(3..8, 10, 12) and yarotsky_square(3), (5), the certified value, the solver's
value, their relative gap, the known LipSDP optimum (4^k and 2^(m+1) - 1, confirmed by an independent dense
cvxpy solve in ``tests/test_sdp.py`` up to sawtooth(6); beyond, the plain solvers fail and 4^k is the pattern)
and the time of ``lv.bound``; it only reads ``b.value`` and ``b.details["solver_value"]`` so that it runs on
older versions of lipverify too.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import resource
import subprocess
import sys
import time

import numpy as np

import lipverify as lv
from lipverify import sdp

THREADS = {k: "1" for k in ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS")}


def random_relu_net(sizes, seed=0) -> lv.Network:
    rng = np.random.default_rng(seed)
    layers = []
    for i in range(len(sizes) - 1):
        layers.append(lv.Dense(rng.standard_normal((sizes[i + 1], sizes[i])) / np.sqrt(sizes[i])))
        if i < len(sizes) - 2:
            layers.append(lv.ReLU())
    return lv.Network(layers)


def dense_port(problem: sdp.LipSDPProblem):
    """The straightforward formulation on the same (scaled) weights."""
    import cvxpy as cp
    import scipy.linalg

    ws = problem.weights
    hidden = problem.hidden
    n0, nh = problem.sizes[0], sum(hidden)
    alpha = np.concatenate([np.full(s, float(a)) for s, (a, _) in zip(hidden, problem.slopes)])
    beta = np.concatenate([np.full(s, float(b)) for s, (_, b) in zip(hidden, problem.slopes)])
    a_mat = np.hstack([scipy.linalg.block_diag(*ws[:-1]), np.zeros((nh, hidden[-1]))])
    b_mat = np.hstack([np.zeros((nh, n0)), np.eye(nh)])
    ab = np.vstack([a_mat, b_mat])
    rho = cp.Variable()
    lam = cp.Variable(nh, nonneg=True)
    t_ab = cp.diag(cp.multiply(-2 * alpha * beta, lam))
    t_mix = cp.diag(cp.multiply(alpha + beta, lam))
    t_bb = cp.diag(-2 * lam)
    q = cp.bmat([[t_ab, t_mix], [t_mix, t_bb]])
    m_in = cp.bmat([[-rho * np.eye(n0), np.zeros((n0, nh))], [np.zeros((nh, n0)), np.zeros((nh, nh))]])
    last = ws[-1].T @ ws[-1]
    m_out = np.zeros((n0 + nh, n0 + nh))
    m_out[-hidden[-1]:, -hidden[-1]:] = last
    m = ab.T @ q @ ab + m_in + m_out
    return cp.Problem(cp.Minimize(rho), [m << 0]), rho


def peak_rss_gb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20  # kB on Linux


def case_lipverify(sizes, variant: str) -> dict:
    net = random_relu_net(sizes)
    t0, c0 = time.perf_counter(), time.process_time()
    b = lv.bound(net, "lipsdp", norm=2, variant=variant, max_neurons=10**9)
    d = b.details
    return {"value": b.value, "solver_value": d["solver_value"], "solver": b.solver, "lmi": d["lmi_size"],
            "reduced": d["solver_lmi_size"], "solve_s": d["solve_seconds"], "certify_s": d["certify_seconds"],
            "wall_s": time.perf_counter() - t0, "cpu_s": time.process_time() - c0, "check": d["check"],
            "rebalanced": d["rebalanced"], "rss_gb": peak_rss_gb()}


def case_method(sizes, method: str) -> dict:
    """``lipsdp_fast`` or ``lipsdp_fo`` (issue 15 item 3) on the same net, in its own process; ``sizes == ("cnn",)``
    is the shipped Fashion-MNIST CNN."""
    if tuple(sizes) == ("cnn",):
        from pathlib import Path

        net = lv.load(Path(lv.__file__).parent / "data" / "fashion_cnn.onnx")
        options = {}
    else:
        net = random_relu_net(sizes)
        options = {"max_size": 10**9}
    t0, c0 = time.perf_counter(), time.process_time()
    b = lv.bound(net, method, norm=2, **options)
    d = b.details
    out = {"value": b.value, "wall_s": time.perf_counter() - t0, "cpu_s": time.process_time() - c0, "rss_gb": peak_rss_gb()}
    if method == "lipsdp_fo":
        out.update({"warm_start": d.get("warm_start_value"), "steps": d.get("steps"),
                    "optimise_s": d.get("optimise_seconds"), "certify_s": d.get("certify_seconds")})
    return out


def case_dense(sizes) -> dict:
    from lipverify import sdp
    from lipverify.ir.views import linear_chain

    net = random_relu_net(sizes)
    problem = sdp.problem_from_chain(linear_chain(net, "lipsdp"), want_exact=False)
    t0, c0 = time.perf_counter(), time.process_time()
    prob, rho = dense_port(problem)
    prob.solve(solver="CVXOPT")
    value = math.ldexp(math.sqrt(max(float(rho.value), 0.0)), sum(problem.shifts))
    return {"value": value, "status": prob.status, "wall_s": time.perf_counter() - t0,
            "cpu_s": time.process_time() - c0, "rss_gb": peak_rss_gb()}


def in_subprocess(kind: str, sizes, variant: str) -> dict:
    env = dict(os.environ, **THREADS)
    code = (f"import json, sys; sys.path.insert(0, {os.path.dirname(os.path.abspath(__file__))!r}); "
            f"import bench_lipsdp as b; print('RESULT' + json.dumps(b.case_{kind}({tuple(sizes)!r}"
            + (f", {variant!r}" if kind in ("lipverify", "method") else "") + ")))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env)
    lines = [x for x in out.stdout.splitlines() if x.startswith("RESULT")]
    if out.returncode or not lines:
        return {"error": (out.stderr.strip().splitlines() or ["?"])[-1]}
    return json.loads(lines[-1][6:])


def run_methods(sizes, methods) -> None:
    """One line per method of ``methods`` (``lipsdp_fast``, ``lipsdp_fo``), each in a fresh process."""
    name = "-".join(map(str, sizes))
    for method in methods:
        load0 = os.getloadavg()[0]
        got = in_subprocess("method", sizes, method)
        if "error" in got:
            print(f"{method:12s} {name}: {got['error']}", flush=True)
            continue
        extra = ""
        if method == "lipsdp_fo":
            extra = (f" (warm start {got['warm_start']:.9g}, {got['steps']} steps, optimise {got['optimise_s']:.2f} s, "
                     f"certificate {got['certify_s']:.2f} s)")
        print(f"{method:12s} {name}: certified {got['value']:.9g} in {got['wall_s']:.2f} s wall, {got['cpu_s']:.2f} s CPU, "
              f"peak RSS {got['rss_gb']:.2f} GB{extra} (load average {load0:.2f} before)", flush=True)


def run(sizes, variant: str, baseline: bool, lipsdp: bool = True, repeat: int = 1) -> None:
    name = "-".join(map(str, sizes))
    if not lipsdp:
        print(f"\n== {name}", flush=True)
        return
    load0 = os.getloadavg()[0]
    runs = [in_subprocess("lipverify", sizes, variant) for _ in range(max(1, repeat))]
    load1 = os.getloadavg()[0]
    print(f"\n== {name}  LipSDP-{variant}  (load average {load0:.2f} before, {load1:.2f} after)", flush=True)
    failed = [r for r in runs if "error" in r]
    if failed:
        print(f"lipverify: {failed[0]['error']}")
        return
    ours = sorted(runs, key=lambda r: r["wall_s"])[len(runs) // 2]  # the run of median wall time
    if len(runs) > 1:
        walls = ", ".join(f"{r['wall_s']:.2f}" for r in runs)
        print(f"lipverify  {len(runs)} runs, each in a fresh process; wall times {walls} s; the median run is shown",
              flush=True)
    print(f"lipverify  certified {ours['value']:.9g} (solver {ours['solver']} value {ours['solver_value']:.9g}, "
          f"check {ours['check']}, rebalanced {ours['rebalanced']})\n"
          f"           LMI side {ours['lmi']} -> {ours['reduced']} after the input-block reduction\n"
          f"           solve {ours['solve_s']:.2f} s + certification {ours['certify_s']:.2f} s; end to end "
          f"{ours['wall_s']:.2f} s wall, {ours['cpu_s']:.2f} s CPU; peak RSS {ours['rss_gb']:.2f} GB", flush=True)
    if baseline:
        load0 = os.getloadavg()[0]
        dense = in_subprocess("dense", sizes, variant)
        if "error" in dense:
            print(f"dense port: {dense['error']}")
            return
        print(f"dense port value {dense['value']:.9g} (status {dense['status']}, not certified): {dense['wall_s']:.2f} s "
              f"wall, {dense['cpu_s']:.2f} s CPU, peak RSS {dense['rss_gb']:.2f} GB (load average {load0:.2f} before)")
        rel = ours["solver_value"] / dense["value"] - 1
        print(f"RATIO dense port / lipverify: {dense['wall_s'] / ours['solve_s']:.1f}x (solve), "
              f"{dense['wall_s'] / ours['wall_s']:.1f}x (end to end, with the certificate), "
              f"{dense['cpu_s'] / ours['cpu_s']:.1f}x (CPU time, end to end); "
              f"values: solver {rel:+.1e} relative, certified {ours['value'] / dense['value'] - 1:+.1e} relative",
              flush=True)


def table() -> None:
    from lipverify import zoo

    rows = [(f"sawtooth({k})", zoo.sawtooth(k), 4.0**k) for k in (3, 4, 5, 6, 7, 8, 10, 12)]
    rows += [(f"yarotsky_square({m})", zoo.yarotsky_square(m), 2.0 ** (m + 1) - 1) for m in (3, 5)]
    print(f"lipverify from {lv.__file__}")
    print(f"{'network':22s} {'certified':>16s} {'solver value':>16s} {'cert/solver-1':>14s} {'LipSDP opt':>11s} "
          f"{'cert/opt-1':>11s} {'seconds':>8s}")
    for name, net, optimum in rows:
        t0 = time.perf_counter()
        try:
            b = lv.bound(net, "lipsdp", norm=2)
        except lv.LipVerifyError as exc:
            print(f"{name:22s} {type(exc).__name__}: {exc}")
            continue
        secs = time.perf_counter() - t0
        sv = b.details["solver_value"]
        print(f"{name:22s} {b.value:16.9f} {sv:16.9f} {b.value / sv - 1:14.2e} {optimum:11.0f} "
              f"{b.value / optimum - 1:11.2e} {secs:8.2f}", flush=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", action="append", help="layer widths, e.g. 50-50-50-10 (repeatable)")
    parser.add_argument("--big", action="store_true", help="also 784-500-200-50-10 (lipverify only)")
    parser.add_argument("--baseline", action="store_true", help="run the dense port on every --sizes net")
    parser.add_argument("--variant", default="neuron", choices=["neuron", "layer"])
    parser.add_argument("--table", action="store_true", help="only the issue-17 table of deep zoo networks")
    parser.add_argument("--methods", default="lipsdp,lipsdp_fast,lipsdp_fo",
                        help="comma list among lipsdp, lipsdp_fast, lipsdp_fo (default: all three)")
    parser.add_argument("--cnn", action="store_true", help="also the Fashion-MNIST CNN (lipsdp_fast, lipsdp_fo, k1)")
    parser.add_argument("--repeat", type=int, default=3,
                        help="lipverify's LipSDP runs per net, the median shown (the dense port runs once); default 3")
    args = parser.parse_args()
    if args.table:
        table()
        return
    print(f"lipverify from {lv.__file__}; {os.cpu_count()} CPUs; BLAS threads 1")
    if args.sizes:
        cases = [(tuple(int(x) for x in s.split("-")), args.baseline) for s in args.sizes]
    else:
        cases = [((10, 100, 100, 100, 10), True), ((784, 100, 100, 10), False)]
    if args.big:
        cases.append(((784, 500, 200, 50, 10), False))
    methods = [m for m in args.methods.split(",") if m]
    for sizes, baseline in cases:
        run(sizes, args.variant, baseline, "lipsdp" in methods, 1 if sizes == (784, 500, 200, 50, 10) else args.repeat)
        run_methods(sizes, [m for m in methods if m != "lipsdp"])
    if args.cnn:
        print("\n== Fashion-MNIST CNN (lipverify/data/fashion_cnn.onnx)", flush=True)
        run_methods(("cnn",), [m for m in methods if m != "lipsdp"] + ["k1"])


if __name__ == "__main__":
    main()
