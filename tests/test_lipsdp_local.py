"""LipSDP with per-neuron slopes (issue 14 item 1): local bounds on an input box.

Oracles written here: dense Jacobians of the ReLU net at points of the box (lower bounds), a dense cvxpy
formulation of the per-neuron LipSDP (Clarabel), the closed-form norm of a linear map, exact rational arithmetic.
"""

from __future__ import annotations

from fractions import Fraction

import numpy as np
import pytest

import lipverify as lv
from lipverify.ir.views import linear_chain
from lipverify.local import LocalActivation, localize
from lipverify.sdp import Certificate, check_certificate, problem_from_chain


def relu_net(seed: int, sizes, bias: float = 0.3) -> lv.Network:
    rng = np.random.default_rng(seed)
    layers = []
    for i in range(len(sizes) - 1):
        layers.append(lv.Dense(rng.standard_normal((sizes[i + 1], sizes[i])) / np.sqrt(sizes[i]),
                               bias * rng.standard_normal(sizes[i + 1])))
        if i < len(sizes) - 2:
            layers.append(lv.ReLU())
    return lv.Network(layers)


def dense_parts(net: lv.Network):
    ws = [np.asarray(layer.weight, dtype=float) for layer in net.layers if isinstance(layer, lv.Dense)]
    bs = [np.asarray(layer.bias, dtype=float) for layer in net.layers if isinstance(layer, lv.Dense)]
    return ws, bs


def box_jacobian_lower(net: lv.Network, lo: np.ndarray, hi: np.ndarray, samples: int, seed: int) -> float:
    """max over random points of the box (and its corners' neighbourhood) of ||J(x)||_2, J written out densely."""
    ws, bs = dense_parts(net)
    rng = np.random.default_rng(seed)
    best = 0.0
    for _ in range(samples):
        x = lo + (hi - lo) * rng.random(lo.shape)
        jac = np.eye(lo.size)
        for w, b in zip(ws[:-1], bs[:-1]):
            pre = w @ x + b
            jac = (pre > 0)[:, None] * (w @ jac)
            x = np.maximum(pre, 0)
        best = max(best, float(np.linalg.norm(ws[-1] @ jac, 2)))
    return best


def dense_lipsdp(weights, alphas, betas) -> float:
    """sqrt of the optimum of the per-neuron LipSDP written densely: rho ||v0||^2 - ||W_L v_{L-1}||^2
    - sum_i lambda_i (v_i - alpha_i u_i)(beta_i u_i - v_i) >= 0 as one matrix in (v_0, ..., v_{L-1})."""
    import cvxpy as cp

    hidden = [w.shape[0] for w in weights[:-1]]
    n0 = weights[0].shape[1]
    sizes = [n0] + hidden
    offs = np.concatenate([[0], np.cumsum(sizes)])
    n = int(offs[-1])
    rho = cp.Variable()
    lams = [cp.Variable(h, nonneg=True) for h in hidden]
    h_mat = rho * np.diag(np.r_[np.ones(n0), np.zeros(n - n0)])
    last = np.zeros((n, n))
    last[offs[-2]:, offs[-2]:] = weights[-1].T @ weights[-1]
    h_mat = h_mat - last
    for k, (w, a, b) in enumerate(zip(weights[:-1], alphas, betas)):
        # u = E_u xi (= W_k v_{k-1}), v = E_v xi: q_i = -v_i^2 + (a_i + b_i) u_i v_i - a_i b_i u_i^2
        eu = np.zeros((w.shape[0], n))
        eu[:, offs[k]:offs[k + 1]] = w
        ev = np.zeros((w.shape[0], n))
        ev[:, offs[k + 1]:offs[k + 2]] = np.eye(w.shape[0])
        for i in range(w.shape[0]):
            qi = (-np.outer(ev[i], ev[i]) + (a[i] + b[i]) / 2 * (np.outer(eu[i], ev[i]) + np.outer(ev[i], eu[i]))
                  - a[i] * b[i] * np.outer(eu[i], eu[i]))
            h_mat = h_mat - lams[k][i] * qi
    prob = cp.Problem(cp.Minimize(rho), [(h_mat + h_mat.T) / 2 >> 0])
    prob.solve(solver="CLARABEL")
    assert prob.status == "optimal", prob.status
    return float(np.sqrt(rho.value))


@pytest.mark.parametrize("seed, eps", [(2, 0.05), (2, 0.3), (3, 0.3), (3, 1.0)])
def test_local_lipsdp_is_below_global_and_above_the_box_jacobians(seed, eps):
    net = relu_net(seed, [4, 10, 10, 3])
    x0 = np.random.default_rng(100 + seed).standard_normal(4)
    lo, hi = x0 - eps, x0 + eps
    local = lv.bound(net, "lipsdp", norm=2, domain=(lo, hi))
    glob = lv.bound(net, "lipsdp", norm=2)
    lower = box_jacobian_lower(net, lo, hi, 400, seed)
    assert local.kind == "upper"
    # proofs/lipsdp.md §2: the per-neuron optimum is at most the global one (up to the solvers' tolerances)
    assert lower <= local.value <= glob.value * (1 + 1e-6)
    # always-active neurons (slopes [1, 1]) beside unstable ones: the solver sees them widened (widen_linear),
    # converges, and the certificate of the unwidened problem loses little against the solver's value
    assert local.solver == "IPM"
    assert local.details["relative_loss"] < 1e-4
    layer = lv.bound(net, "lipsdp", norm=2, domain=(lo, hi), variant="layer")
    assert local.value * (1 - 1e-7) <= layer.value
    fast = lv.bound(net, "lipsdp_fast", norm=2, domain=(lo, hi))
    assert lower <= fast.value <= lv.bound(net, "lipsdp_fast", norm=2).value


def test_local_lipsdp_is_strictly_tighter_than_the_layer_envelope_on_a_small_box():
    # seed 2, eps 0.05: two unstable neurons per layer, the rest always active or dead
    net = relu_net(2, [4, 10, 10, 3])
    x0 = np.random.default_rng(102).standard_normal(4)
    local_net = localize(net, (x0 - 0.05, x0 + 0.05))
    envelope = lv.Network([
        LocalActivation(layer.base, np.full(layer.lo.shape, np.min(layer.lo)), np.full(layer.hi.shape, np.max(layer.hi)))
        if isinstance(layer, LocalActivation) else layer for layer in local_net.layers])
    per_neuron = lv.bound(local_net, "lipsdp", norm=2).value
    layer_env = lv.bound(envelope, "lipsdp", norm=2).value
    assert per_neuron < 0.9 * layer_env
    assert box_jacobian_lower(net, x0 - 0.05, x0 + 0.05, 200, 0) <= per_neuron


def test_per_neuron_slopes_match_a_dense_lipsdp_with_per_neuron_constraints():
    rng = np.random.default_rng(7)
    w1, w2, w3 = rng.standard_normal((5, 3)), rng.standard_normal((4, 5)) / 2, rng.standard_normal((2, 4))
    a1, b1 = np.array([0.0, 0.5, 0.0, 0.25, -0.5]), np.array([1.0, 1.0, 0.5, 1.0, 1.0])
    a2, b2 = np.array([0.0, 0.0, 0.75, 0.5]), np.array([1.0, 0.25, 1.0, 2.0])
    net = lv.Network([lv.Dense(w1), LocalActivation(lv.LeakyReLU(-0.5), a1, b1), lv.Dense(w2),
                      LocalActivation(lv.LeakyReLU(-0.5), a2, b2), lv.Dense(w3)])
    got = lv.bound(net, "lipsdp", norm=2)
    want = dense_lipsdp([w1, w2, w3], [a1, a2], [b1, b2])
    assert want * (1 - 1e-6) <= got.value <= want * (1 + 1e-5)
    # the layer envelope [min alpha, max beta] is strictly looser
    env = dense_lipsdp([w1, w2, w3], [np.full(5, -0.5), np.full(4, 0.0)], [np.full(5, 1.0), np.full(4, 2.0)])
    assert got.value < env * 0.99


def test_dead_neurons_are_dropped_and_a_layer_of_linear_neurons_is_merged():
    rng = np.random.default_rng(3)
    w1, w2, w3 = rng.standard_normal((4, 3)), rng.standard_normal((4, 4)), rng.standard_normal((2, 4))
    # layer 1: neurons 0 and 2 dead ([0, 0]), the others [0, 1]; layer 2: every neuron linear (slopes 1 or 0)
    a1, b1 = np.array([0.0, 0.0, 0.0, 0.0]), np.array([0.0, 1.0, 0.0, 1.0])
    d2 = np.array([1.0, 0.0, 1.0, 1.0])
    net = lv.Network([lv.Dense(w1), LocalActivation(lv.ReLU(), a1, b1), lv.Dense(w2),
                      LocalActivation(lv.ReLU(), d2, d2), lv.Dense(w3)])
    got = lv.bound(net, "lipsdp", norm=2)
    # the same LipSDP on the net without the dead neurons and with the linear layer multiplied out
    keep = np.array([1, 3])
    want = dense_lipsdp([w1[keep], (w3 * d2) @ w2[:, keep]], [np.zeros(2)], [np.ones(2)])
    assert want * (1 - 1e-6) <= got.value <= want * (1 + 1e-5)
    assert got.details["lmi_size"] == 3 + 2
    # every neuron dead or linear: the network is linear on the box, the bound is the norm of its matrix
    lin = lv.Network([lv.Dense(w1), LocalActivation(lv.ReLU(), d2, d2), lv.Dense(w3)])
    norm = float(np.linalg.norm((w3 * d2) @ w1, 2))
    assert norm <= lv.bound(lin, "lipsdp", norm=2).value <= norm * (1 + 1e-6)
    assert norm <= lv.bound(lin, "lipsdp_fast", norm=2).value <= norm * (1 + 1e-6)


def test_the_certificate_kernel_uses_the_per_neuron_slopes_exactly():
    # one hidden neuron per slope interval: H = [[rho + a b w^2 l, -(a+b)/2 l w], [-(a+b)/2 l w, l - v^2]] (n0 = 1)
    w1 = np.array([[1.0], [1.0]])
    w2 = np.array([[1.0, 1.0]])
    net = lv.Network([lv.Dense(w1), LocalActivation(lv.ReLU(), np.array([0.0, 0.5]), np.array([1.0, 1.0])),
                      lv.Dense(w2)])
    problem = problem_from_chain(linear_chain(net, "lipsdp"))
    assert problem.neuron_slopes is not None
    lam = (Fraction(4), Fraction(4))

    def h_matrix(rho, a, b):  # written out in rationals: (v0, v1, v2)
        h = [[rho + sum(ai * bi * li for ai, bi, li in zip(a, b, lam)), -(a[0] + b[0]) / 2 * lam[0],
              -(a[1] + b[1]) / 2 * lam[1]],
             [-(a[0] + b[0]) / 2 * lam[0], lam[0] - 1, -1],
             [-(a[1] + b[1]) / 2 * lam[1], -1, lam[1] - 1]]
        return h

    def pd(h):  # leading principal minors (Sylvester), exactly
        m1 = h[0][0]
        m2 = h[0][0] * h[1][1] - h[0][1] * h[1][0]
        m3 = (h[0][0] * (h[1][1] * h[2][2] - h[1][2] * h[2][1]) - h[0][1] * (h[1][0] * h[2][2] - h[1][2] * h[2][0])
              + h[0][2] * (h[1][0] * h[2][1] - h[1][1] * h[2][0]))
        return m1 > 0 and m2 > 0 and m3 > 0

    a, b = (Fraction(0), Fraction(1, 2)), (Fraction(1), Fraction(1))
    env = (Fraction(0), Fraction(0))  # the layer envelope [0, 1] for both neurons

    def least_rho(a):  # the least rho for these multipliers, by bisection on the oracle
        lo_r, hi_r = Fraction(0), Fraction(100)
        for _ in range(60):
            mid = (lo_r + hi_r) / 2
            lo_r, hi_r = (lo_r, mid) if pd(h_matrix(mid, a, b)) else (mid, hi_r)
        return lo_r, hi_r

    lo_r, hi_r = least_rho(a)
    env_r = least_rho(env)[1]
    between = (hi_r + env_r) / 2
    assert abs(env_r - hi_r) > Fraction(1, 100)  # the two LMIs differ
    for method in ("exact", "float"):
        assert check_certificate(problem, Certificate(hi_r * (1 + Fraction(1, 10**6)), (lam,)).scaled(problem.shifts),
                                 method=method)
        assert not check_certificate(problem, Certificate(lo_r * (1 - Fraction(1, 10**3)), (lam,)).scaled(problem.shifts),
                                     method=method)
        # between the two least rhos the kernel answers as the per-neuron oracle, not as the envelope's
        got = check_certificate(problem, Certificate(between, (lam,)).scaled(problem.shifts), method=method)
        assert got == pd(h_matrix(between, a, b)) != pd(h_matrix(between, env, b))
