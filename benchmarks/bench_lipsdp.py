"""LipSDP-Neuron: lipverify's structured cvxpy formulation vs a straightforward dense cvxpy port.

All solve the same SDP with the same solver (CVXOPT by default) on the same random ReLU networks, in the
same run: a dense cvxpy port, lipverify's block-structured cvxpy formulation (``sdp.formulate``), and
lipverify's default path (CVXOPT ``conelp`` called directly with a KKT solver that uses the rank-2 structure
of every multiplier's matrix, ``sdp.solvers.solve_cvxopt``).  The script prints build (cvxpy compilation) and
solve times, the ratios against the dense port, the optimal values, and the time lipverify then spends
proving its certificate.

The dense port follows the original LipSDP code (Fazlyab et al. 2019):
``M = [A; B]^T [[-2 alpha beta T, (alpha+beta) T], [(alpha+beta) T, -2 T]] [A; B] + diag(-rho I, 0, W_L^T W_L)``
with ``A = [blkdiag(W_1..W_{L-1}), 0]``, ``B = [0, I]``, ``T = diag(lambda)``, all as dense numpy constants.

    PYTHONPATH=. python benchmarks/bench_lipsdp.py                 # 2x50 and 3x100
    PYTHONPATH=. python benchmarks/bench_lipsdp.py --big           # also 784-500-200-50-10 (structured only)
    PYTHONPATH=. python benchmarks/bench_lipsdp.py --sizes 10-50-50-10
    PYTHONPATH=. python benchmarks/bench_lipsdp.py --table         # issue 17: deep ill-conditioned zoo nets
    PYTHONPATH=/path/to/other/checkout python benchmarks/bench_lipsdp.py --table   # the same table, other code

``--table`` prints, for the zoo's sawtooth(3..8, 10, 12) and yarotsky_square(3), (5), the certified value, the solver's
value, their relative gap, the known LipSDP optimum (4^k and 2^(m+1) - 1, confirmed by an independent dense
cvxpy solve in ``tests/test_sdp.py`` up to sawtooth(6); beyond, the plain solvers fail and 4^k is the pattern)
and the time of ``lv.bound``; it only reads ``b.value`` and ``b.details["solver_value"]`` so that it runs on
older versions of lipverify too.
"""

from __future__ import annotations

import argparse
import time

import cvxpy as cp
import numpy as np
import scipy.linalg

import lipverify as lv
from lipverify import sdp
from lipverify.ir.views import linear_chain
from lipverify.sdp import solvers


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


def timed(build, solver):
    t0 = time.perf_counter()
    prob, rho = build()
    prob.get_problem_data(solver)
    compile_s = time.perf_counter() - t0
    t0 = time.perf_counter()
    prob, rho = build()
    prob.solve(solver=solver)
    total_s = time.perf_counter() - t0
    return compile_s, total_s, prob.status, float(rho.value)


def run(sizes, solver, with_dense=True, seed=0):
    net = random_relu_net(sizes, seed)
    problem = sdp.problem_from_chain(linear_chain(net), want_exact=False)
    print(f"\n== {'-'.join(map(str, sizes))} (LMI side {problem.size}, {sum(problem.hidden)} multipliers), "
          f"solver {solver}", flush=True)
    ref = None
    if with_dense:
        dense = timed(lambda: dense_port(problem), solver)
        ref = dense[1]
        print(f"dense cvxpy port          : build {dense[0]:8.2f} s   build+solve {dense[1]:8.2f} s   "
              f"status {dense[2]}   rho {dense[3]:.9g}", flush=True)
        block = timed(lambda: sdp.formulate(problem, "neuron")[:2], solver)
        print(f"block cvxpy (formulate)   : build {block[0]:8.2f} s   build+solve {block[1]:8.2f} s   "
              f"status {block[2]}   rho {block[3]:.9g}   (dense/block build {dense[0] / block[0]:.1f}x, "
              f"build+solve {dense[1] / block[1]:.2f}x)", flush=True)
    if solver == "CVXOPT":
        t0 = time.perf_counter()
        rho, _ = solvers.solve_cvxopt(problem, "neuron", {})
        ours = time.perf_counter() - t0
        ratio = f"   dense/structured {ref / ours:.2f}x" if ref else ""
        print(f"structured CVXOPT KKT     : build+solve {ours:8.2f} s   rho {rho:.9g}{ratio}", flush=True)
    t0 = time.perf_counter()
    b = lv.bound(net, "lipsdp", norm=2, solver=solver, max_neurons=problem.size)
    print(f"lv.bound end to end {time.perf_counter() - t0:8.2f} s: certified {b.value:.9g} "
          f"(solver value {b.details['solver_value']:.9g}, check {b.details['check']}, margin {b.details['margin']:g}, "
          f"solve {b.details['solve_seconds']:.2f} s, certification {b.details['certify_seconds']:.2f} s)", flush=True)


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
    parser.add_argument("--solver", default="CVXOPT", choices=["CVXOPT", "SCS"])
    parser.add_argument("--sizes", action="append", help="layer widths, e.g. 50-50-50-10 (repeatable)")
    parser.add_argument("--big", action="store_true", help="also 784-500-200-50-10, structured formulation only")
    parser.add_argument("--table", action="store_true", help="only the issue-17 table of deep zoo networks")
    args = parser.parse_args()
    if args.table:
        table()
        return
    cases = [tuple(int(x) for x in s.split("-")) for s in args.sizes] if args.sizes else [(50, 50, 50, 10),
                                                                                            (100, 100, 100, 100, 10)]
    for sizes in cases:
        run(sizes, args.solver)
    if args.big:
        run((784, 500, 200, 50, 10), args.solver, with_dense=False)


if __name__ == "__main__":
    main()
