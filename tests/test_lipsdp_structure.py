"""LipSDP at scale (issue 15 item 1): input-block reduction, the structured interior-point solver (IPM), the
Layer variant at layer size, cvxpy only on the cvxpy path.  Small nets only; the oracles are written here
(dense matrices, dense cvxpy formulations, dense Jacobians), never the code under test."""

from __future__ import annotations

import subprocess
import sys

import numpy as np
import pytest

import lipverify as lv
from lipverify import sdp
from lipverify.ir.views import linear_chain
from lipverify.sdp import solvers


def relu_net(seed: int, sizes, w1=None) -> lv.Network:
    rng = np.random.default_rng(seed)
    layers = []
    for i in range(len(sizes) - 1):
        w = rng.standard_normal((sizes[i + 1], sizes[i])) / np.sqrt(sizes[i])
        if i == 0 and w1 is not None:
            w = w1
        layers.append(lv.Dense(w, rng.standard_normal(sizes[i + 1])))
        if i < len(sizes) - 2:
            layers.append(lv.ReLU())
    return lv.Network(layers)


def weights_of(net: lv.Network) -> list[np.ndarray]:
    return [np.asarray(layer.weight, dtype=float) for layer in net.layers if isinstance(layer, lv.Dense)]


def dense_lipsdp(weights: list[np.ndarray], variant: str = "neuron") -> float:
    """LipSDP for a ReLU chain (slopes [0, 1]) written out densely on the full input block, as in Fazlyab et al.:
    ``[A; B]^T [[0, T], [T, -2T]] [A; B] + diag(-rho I, 0, W_L^T W_L) ⪯ 0``; returns ``sqrt(rho*)`` (Clarabel)."""
    import cvxpy as cp
    import scipy.linalg

    hidden = [w.shape[0] for w in weights[:-1]]
    n0, nh = weights[0].shape[1], sum(hidden)
    a = np.hstack([scipy.linalg.block_diag(*weights[:-1]), np.zeros((nh, hidden[-1]))])
    b = np.hstack([np.zeros((nh, n0)), np.eye(nh)])
    rho = cp.Variable()
    if variant == "neuron":
        lam = cp.Variable(nh, nonneg=True)
        t = cp.diag(lam)
    else:
        lam = cp.Variable(len(hidden), nonneg=True)
        t = cp.diag(cp.hstack([lam[k] * np.ones(s) for k, s in enumerate(hidden)]))
    m = np.vstack([a, b]).T @ cp.bmat([[np.zeros((nh, nh)), t], [t, -2 * t]]) @ np.vstack([a, b])
    e0 = np.zeros((n0 + nh, n0 + nh))
    e0[:n0, :n0] = np.eye(n0)
    out = np.zeros((n0 + nh, n0 + nh))
    out[-hidden[-1]:, -hidden[-1]:] = weights[-1].T @ weights[-1]
    g = m + out - rho * e0
    prob = cp.Problem(cp.Minimize(rho), [(g + g.T) / 2 << 0])
    prob.solve(solver="CLARABEL")
    assert prob.status == "optimal", prob.status
    return float(np.sqrt(rho.value))


def sampled_jacobian_norm(weights: list[np.ndarray], biases: list[np.ndarray], samples: int, seed: int) -> float:
    """max over random points of ||W_L D_{L-1} ... D_1 W_1||_2 (dense Jacobians of the ReLU net): a lower bound."""
    rng = np.random.default_rng(seed)
    best = 0.0
    for _ in range(samples):
        x = rng.standard_normal(weights[0].shape[1]) * 3
        jac = np.eye(weights[0].shape[1])
        for w, bias in zip(weights[:-1], biases[:-1]):
            pre = w @ x + bias
            jac = (pre > 0)[:, None] * (w @ jac)
            x = np.maximum(pre, 0)
        best = max(best, float(np.linalg.norm(weights[-1] @ jac, 2)))
    return best


# nets whose first weight has a nontrivial null space: n_in > n_1, and a rank-2 W_1 with n_in <= n_1
RANK2 = np.outer([1.0, -0.5, 0.25, 2.0, 1.0], [1.0, 2.0, -1.0, 0.5]) + np.outer([0.5, 1.0, -1.0, 0.0, 1.5], [0.0, 1.0, 1.0, -2.0])
CASES = [("wide_input", 0, (9, 4, 5, 2), None), ("wide_input_deep", 1, (12, 3, 4, 3, 2), None),
         ("rank2_w1", 2, (4, 5, 3, 2), RANK2)]


@pytest.mark.parametrize("name, seed, sizes, w1", CASES, ids=[c[0] for c in CASES])
def test_reduced_and_full_formulations_certify_the_same_value(name, seed, sizes, w1):
    net = relu_net(seed, sizes, w1)
    problem = sdp.problem_from_chain(linear_chain(net, "lipsdp"))
    reduced = solvers.reduce_input(problem)
    rank = np.linalg.matrix_rank(weights_of(net)[0])
    assert reduced.sizes[0] == rank < problem.sizes[0]
    assert reduced.sizes[1:] == problem.sizes[1:]
    for variant in ("neuron", "layer"):
        rho_full, lam_full = solvers.solve_ipm(problem, variant, {})      # the full LMI, no reduction
        rho_red, lam_red = solvers.solve_ipm(reduced, variant, {})        # the reduced one
        assert abs(rho_red - rho_full) <= 1e-7 * rho_full, variant
        # both sets of multipliers are certified on the full LMI, with the same value
        full = sdp.certify(problem, lam_full)
        red = sdp.certify(problem, lam_red)
        assert abs(float(red.certificate.rho) / float(full.certificate.rho) - 1) <= 1e-6, variant
    # end to end (the default path reduces), against a dense formulation on the full input block
    ref = dense_lipsdp(weights_of(net))
    b = lv.bound(net, "lipsdp", norm=2)
    assert b.solver == "IPM" and b.details["solver_lmi_size"] == rank + sum(sizes[1:-1])
    assert b.details["lmi_size"] == sum(sizes[:-1])
    assert ref * (1 - 1e-6) <= b.value <= ref * (1 + 1e-5)
    assert sdp.verify(net, b.details["certificate"], method="exact")  # the certificate is one of the full LMI


def test_null_space_block_is_rho_times_identity():
    # the lemma of proofs/lipsdp.md §6 on explicit matrices: T^T H T = H~ (+) rho I with T = diag(V, I, ...)
    net = relu_net(3, (6, 3, 4, 2))
    problem = sdp.problem_from_chain(linear_chain(net, "lipsdp"), want_exact=False)
    w1 = problem.weights[0]
    _, _, vt = np.linalg.svd(w1)
    v = vt.T  # first 3 columns span range(W1^T), the last 3 the null space
    rng = np.random.default_rng(0)
    lam = [rng.random(3) + 0.5, rng.random(4) + 0.5]
    h = sdp.assemble(*sdp.lmi_blocks(problem, lam, 0.7))
    t = np.eye(h.shape[0])
    t[:6, :6] = v
    th = t.T @ h @ t
    null = slice(3, 6)
    assert np.allclose(th[null, null], 0.7 * np.eye(3), atol=1e-12)
    assert np.allclose(np.delete(th[null], np.s_[3:6], axis=1), 0, atol=1e-12)
    reduced = sdp.LipSDPProblem((w1 @ v[:, :3],) + problem.weights[1:], (None,) * 3, None, problem.slopes, problem.shifts)
    keep = np.r_[0:3, 6:h.shape[0]]
    assert np.allclose(th[np.ix_(keep, keep)], sdp.assemble(*sdp.lmi_blocks(reduced, lam, 0.7)), atol=1e-12)


@pytest.mark.parametrize("seed", range(3))
def test_certified_value_is_above_a_dense_jacobian_lower_bound(seed):
    net = relu_net(10 + seed, (7, 6, 5, 3))
    b = lv.bound(net, "lipsdp", norm=2)
    biases = [np.asarray(layer.bias, dtype=float) for layer in net.layers if isinstance(layer, lv.Dense)]
    lower = sampled_jacobian_norm(weights_of(net), biases, samples=300, seed=seed)
    assert 0 < lower <= b.value
    assert b.value <= dense_lipsdp(weights_of(net)) * (1 + 1e-5)


@pytest.mark.parametrize("sizes", [(9, 4, 5, 2), (3, 6, 5, 4, 2)])
def test_layer_variant_is_at_least_neuron_and_matches_a_dense_layer_formulation(sizes):
    net = relu_net(4, sizes)
    neuron = lv.bound(net, "lipsdp", norm=2, variant="neuron")
    layer = lv.bound(net, "lipsdp", norm=2, variant="layer")
    assert neuron.value <= layer.value * (1 + 1e-7)
    ref = dense_lipsdp(weights_of(net), "layer")
    assert ref * (1 - 1e-6) <= layer.value <= ref * (1 + 1e-5)
    assert all(len(set(lam)) == 1 for lam in layer.details["certificate"].lambdas)


@pytest.mark.parametrize("variant", ["neuron", "layer"])
def test_structured_normal_matrix_equals_its_definition(variant):
    """M_ij = tr(A_i X A_j S^-1) with the dense A_i written here from the weights (LeakyReLU and tanh: alpha beta != 0)."""
    rng = np.random.default_rng(5)
    acts = [lambda: lv.LeakyReLU(0.2), lv.Tanh, lv.ReLU]
    sizes = (4, 5, 3, 4, 2)
    layers = []
    for i in range(len(sizes) - 1):
        layers.append(lv.Dense(rng.standard_normal((sizes[i + 1], sizes[i]))))
        if i < len(sizes) - 2:
            layers.append(acts[i]())
    problem = sdp.problem_from_chain(linear_chain(lv.Network(layers), "lipsdp"), want_exact=False)
    ipm = solvers.StructuredIPM(problem, variant)
    n, offs = problem.size, np.concatenate([[0], np.cumsum(problem.sizes)])
    mats = [np.diag((np.arange(n) < offs[1]).astype(float))]  # rho: E_0
    per_layer = []
    for k, w in enumerate(problem.weights[:-1]):
        a, b = (float(x) for x in problem.slopes[k])
        group = []
        for i in range(w.shape[0]):
            e = np.zeros(n)
            e[offs[k + 1] + i] = 1
            u = np.zeros(n)
            u[offs[k]:offs[k + 1]] = w[i]
            # lambda_i multiplies -q_i = v^2 - (a + b) u v + a b u^2 in the form xi^T H xi
            group.append(np.outer(e, e) - (a + b) / 2 * (np.outer(e, u) + np.outer(u, e)) + a * b * np.outer(u, u))
        per_layer.append(group)
    mats += [f for g in per_layer for f in g] if variant == "neuron" else [sum(g) for g in per_layer]
    assert len(mats) == ipm.nv + 1
    x = rng.standard_normal((n, n))
    x = x @ x.T + np.eye(n)
    s = rng.standard_normal((n, n))
    si = np.linalg.inv(s @ s.T + np.eye(n))
    x_lp, s_lp = rng.random(ipm.nv) + 0.5, rng.random(ipm.nv) + 0.5
    ref = np.array([[np.trace(ai @ x @ aj @ si) for aj in mats] for ai in mats])
    ref[np.arange(1, ipm.nv + 1), np.arange(1, ipm.nv + 1)] += x_lp / s_lp
    got = ipm.normal_matrix(x, si, x_lp, s_lp)
    assert np.allclose(got, ref, rtol=1e-10, atol=1e-10 * np.max(np.abs(ref)))


@pytest.mark.parametrize("variant", ["neuron", "layer"])
def test_ipm_agrees_with_cvxopt_with_and_without_the_anchor_margin(variant):
    net = lv.Network([lv.Dense(np.random.default_rng(6).standard_normal((5, 3))), lv.Sigmoid(),
                      lv.Dense(np.random.default_rng(7).standard_normal((4, 5))), lv.LeakyReLU(0.1),
                      lv.Dense(np.random.default_rng(8).standard_normal((2, 4)))])
    problem = sdp.problem_from_chain(linear_chain(net, "lipsdp"))
    for margin in (0.0, 1e-2):
        rho_ipm, _ = solvers.solve_ipm(problem, variant, {}, margin)
        rho_cvx, _ = solvers.solve_cvxopt(problem, variant, {}, margin)
        # CVXOPT's defaults: absolute gap 1e-7, relative 1e-6 (the IPM's: relative 1e-9)
        assert abs(rho_ipm - rho_cvx) <= 1e-6 * rho_cvx + 1e-8, (variant, margin)


def test_ipm_iteration_limit_is_a_solver_error_and_the_default_falls_back():
    net = relu_net(5, (3, 5, 4, 2))
    with pytest.raises(lv.SolverError, match="IPM stopped after 2 of 2 iterations"):
        lv.bound(net, "lipsdp", norm=2, solver="IPM", solver_options={"max_iters": 2})
    with pytest.raises(ValueError, match="unknown IPM option 'eps'"):
        lv.bound(net, "lipsdp", norm=2, solver="IPM", solver_options={"eps": 1e-3})
    ref = lv.bound(net, "lipsdp", norm=2, solver="CVXOPT")
    assert ref.solver == "CVXOPT"
    assert abs(lv.bound(net, "lipsdp", norm=2).value / ref.value - 1) <= 1e-6


def test_lipsdp_on_the_default_path_imports_neither_cvxpy_nor_cvxopt():
    code = ("import sys, numpy as np, lipverify as lv\n"
            "net = lv.Network([lv.Dense(np.arange(12.0).reshape(4, 3) / 10 - 0.5), lv.ReLU(), lv.Dense(np.ones((2, 4)))])\n"
            "b = lv.bound(net, 'lipsdp', norm=2)\n"
            "print(b.solver, sorted({m.split('.')[0] for m in sys.modules} & {'cvxpy', 'cvxopt'}))\n")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "IPM []", out.stdout + out.stderr
