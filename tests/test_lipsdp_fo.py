"""First-order LipSDP (``lipsdp_fo``, issue 15 item 3).

Oracles written here: a dense cvxpy LipSDP-Neuron (Clarabel) for the optimum, dense Jacobians at random points
for lower bounds, exact rational re-checks of the returned certificate (``lv.sdp.verify`` with python-flint).
"""

from __future__ import annotations

from fractions import Fraction

import numpy as np
import pytest

import lipverify as lv
from lipverify.sdp import Certificate, check_certificate, verify


def relu_net(seed: int, sizes) -> lv.Network:
    rng = np.random.default_rng(seed)
    layers = []
    for i in range(len(sizes) - 1):
        layers.append(lv.Dense(rng.standard_normal((sizes[i + 1], sizes[i])) / np.sqrt(sizes[i]),
                               0.2 * rng.standard_normal(sizes[i + 1])))
        if i < len(sizes) - 2:
            layers.append(lv.ReLU())
    return lv.Network(layers)


def dense_lipsdp_relu(weights) -> float:
    """sqrt(rho*) of LipSDP-Neuron for a ReLU chain written densely (Fazlyab et al.'s form, slopes [0, 1])."""
    import cvxpy as cp
    import scipy.linalg

    hidden = [w.shape[0] for w in weights[:-1]]
    n0, nh = weights[0].shape[1], sum(hidden)
    a = np.hstack([scipy.linalg.block_diag(*weights[:-1]), np.zeros((nh, hidden[-1]))])
    b = np.hstack([np.zeros((nh, n0)), np.eye(nh)])
    rho = cp.Variable()
    lam = cp.Variable(nh, nonneg=True)
    t = cp.diag(lam)
    m = np.vstack([a, b]).T @ cp.bmat([[np.zeros((nh, nh)), t], [t, -2 * t]]) @ np.vstack([a, b])
    e0 = np.zeros((n0 + nh, n0 + nh))
    e0[:n0, :n0] = np.eye(n0)
    out = np.zeros((n0 + nh, n0 + nh))
    out[-hidden[-1]:, -hidden[-1]:] = weights[-1].T @ weights[-1]
    g = m + out - rho * e0
    prob = cp.Problem(cp.Minimize(rho), [(g + g.T) / 2 << 0])
    prob.solve(solver="CLARABEL")
    assert prob.status == "optimal"
    return float(np.sqrt(rho.value))


def jacobian_lower(net: lv.Network, samples: int, seed: int) -> float:
    ws = [np.asarray(x.weight, dtype=float) for x in net.layers if isinstance(x, lv.Dense)]
    bs = [np.asarray(x.bias, dtype=float) for x in net.layers if isinstance(x, lv.Dense)]
    rng = np.random.default_rng(seed)
    best = 0.0
    for _ in range(samples):
        x = 2 * rng.standard_normal(ws[0].shape[1])
        jac = np.eye(x.size)
        for w, b in zip(ws[:-1], bs[:-1]):
            pre = w @ x + b
            jac = (pre > 0)[:, None] * (w @ jac)
            x = np.maximum(pre, 0)
        best = max(best, float(np.linalg.norm(ws[-1] @ jac, 2)))
    return best


@pytest.mark.parametrize("seed, sizes", [(0, [3, 8, 8, 2]), (1, [5, 12, 6, 3]), (2, [4, 10, 4])])
def test_first_order_value_lies_between_the_lipsdp_optimum_and_the_warm_start(seed, sizes):
    net = relu_net(seed, sizes)
    ws = [np.asarray(x.weight, dtype=float) for x in net.layers if isinstance(x, lv.Dense)]
    opt = dense_lipsdp_relu(ws)
    fo = lv.bound(net, "lipsdp_fo", norm=2)
    fast = lv.bound(net, "lipsdp_fast", norm=2)
    assert fo.kind == "upper" and fo.method == "lipsdp_fo"
    assert jacobian_lower(net, 300, seed) <= opt * (1 + 1e-7)
    assert opt * (1 - 1e-6) <= fo.value
    # it starts at lipsdp_fast's best closed-form member and only keeps better points
    assert fo.value <= fast.details["certified_value"] * (1 + 1e-6)
    assert fo.value <= fo.details["warm_start_value"] * (1 + 1e-6)
    # and gets close to the optimum on these small nets
    assert fo.value <= opt * 1.01


def test_the_returned_certificate_is_rechecked_exactly_and_a_perturbed_one_is_refused():
    net = relu_net(3, [3, 6, 5, 2])
    fo = lv.bound(net, "lipsdp_fo", norm=2)
    cert = fo.details["certificate"]
    assert verify(net, cert, method="exact")
    assert float(cert.rho) <= fo.value**2
    # a smaller rho (below the LipSDP optimum) or a negative multiplier is refused
    opt = dense_lipsdp_relu([np.asarray(x.weight, dtype=float) for x in net.layers if isinstance(x, lv.Dense)])
    low = Certificate(Fraction(opt**2) * Fraction(99, 100), cert.lambdas)
    assert not verify(net, low, method="exact")
    assert not verify(net, low, method="float")
    bad = list(cert.lambdas[0])
    bad[0] = -bad[0] if bad[0] else Fraction(-1)
    assert not verify(net, Certificate(cert.rho, (tuple(bad),) + cert.lambdas[1:]), method="exact")


def test_first_order_local_bound_uses_per_neuron_slopes():
    net = relu_net(2, [4, 10, 10, 3])
    x0 = np.random.default_rng(102).standard_normal(4)
    box = (x0 - 0.05, x0 + 0.05)
    local = lv.bound(net, "lipsdp_fo", norm=2, domain=box)
    glob = lv.bound(net, "lipsdp_fo", norm=2)
    assert local.value < 0.8 * glob.value
    # above the dense Jacobians at points of the box
    ws = [np.asarray(x.weight, dtype=float) for x in net.layers if isinstance(x, lv.Dense)]
    bs = [np.asarray(x.bias, dtype=float) for x in net.layers if isinstance(x, lv.Dense)]
    rng = np.random.default_rng(0)
    for _ in range(200):
        x = box[0] + (box[1] - box[0]) * rng.random(4)
        jac = np.eye(4)
        for w, b in zip(ws[:-1], bs[:-1]):
            pre = w @ x + b
            jac = (pre > 0)[:, None] * (w @ jac)
            x = np.maximum(pre, 0)
        assert np.linalg.norm(ws[-1] @ jac, 2) <= local.value


def test_bad_arguments_and_limits_are_refused():
    net = relu_net(0, [3, 4, 2])
    with pytest.raises(ValueError, match="steps"):
        lv.bound(net, "lipsdp_fo", norm=2, steps=-1)
    with pytest.raises(lv.NotApplicableError, match="lipsdp_fo"):
        lv.bound(net, "lipsdp_fo", norm="inf")
    with pytest.raises(lv.NotApplicableError, match="max_size=7"):
        lv.bound(net, "lipsdp_fo", norm=2, max_size=5)
    # zero steps: the warm start itself, proven
    b = lv.bound(net, "lipsdp_fo", norm=2, steps=0)
    assert b.value <= b.details["warm_start_value"] * (1 + 1e-6)


def small_cnn(seed: int = 0) -> lv.Network:
    rng = np.random.default_rng(seed)
    return lv.Network([lv.Conv2d(rng.standard_normal((2, 1, 3, 3)) / 3, 0.1 * rng.standard_normal(2), padding=1),
                       lv.ReLU(), lv.MaxPool2d(2), lv.Flatten(),
                       lv.Dense(rng.standard_normal((4, 18)) / 4, 0.1 * rng.standard_normal(4)), lv.ReLU(),
                       lv.Dense(rng.standard_normal((2, 4)) / 2)], input_shape=(1, 6, 6))


def test_cnn_with_max_pooling_is_certified_and_tighter_than_cutting_at_the_pools():
    net = small_cnn()
    fo = lv.bound(net, "lipsdp_fo", norm=2, steps=60)
    fast = lv.bound(net, "lipsdp_fast", norm=2)
    assert fo.kind == "upper" and fo.details["checks"] == ["schur", "float"]
    # the warm start (unit pool multipliers) is the product of the segments' bounds; the pools' quadratic
    # constraints with one multiplier per window do better here
    assert fo.value <= fo.details["warm_start_value"] * (1 + 1e-6)
    assert fo.value < 0.97 * fast.value
    # above difference quotients of close pairs (the network's own forward pass, nothing of the bound)
    rng = np.random.default_rng(1)
    x = rng.uniform(-2, 2, (4000, 1, 6, 6))
    y = x + 1e-4 * rng.standard_normal(x.shape)
    quot = np.linalg.norm(net(x) - net(y), axis=1) / np.linalg.norm((x - y).reshape(len(x), -1), axis=1)
    assert np.max(quot) <= fo.value


def test_the_schur_proof_of_a_diagonal_tail_agrees_with_the_dense_exact_proof():
    from dataclasses import replace

    from lipverify.sdp.certificate import LipSDPProblem, check_diagonal_schur, diagonal_tail

    rng = np.random.default_rng(5)
    w1 = np.round(rng.standard_normal((5, 3)) * 8) / 8
    w2 = np.diag([1.0, 0.5, 1.0, 2.0, 1.0])[[0, 1, 2, 3, 4, 4]]  # one nonzero per row (a cell in two windows)
    slopes = ((Fraction(0), Fraction(1)),)
    base = LipSDPProblem((w1, w2), (None, None), None, slopes, (0, 0), None,
                         ((np.array([0.0, 0.0, 0.5, 0.0, -0.25]), np.array([1.0, 1.0, 1.0, 0.5, 1.0])),))
    problem = replace(base, input_weight=np.array([1.0, 0.5, 2.0]), output_weight=np.array([1.0, 0.25, 1, 0.5, 1, 0.75]))
    problem = replace(problem, exact=tuple(np.vectorize(Fraction, otypes=[object])(w) for w in problem.weights))
    assert diagonal_tail(problem)
    lam = tuple(Fraction(v) for v in (3, 1, 4, 5, 2))
    # the least rho for these multipliers from a dense float eigenvalue computation (an estimate, for the bracket)
    d_in, d_out = problem.input_weight, problem.output_weight
    lo, hi = problem.neuron_slopes[0]
    lamf = np.array([float(v) for v in lam])
    k = np.diag(lamf) - w2.T @ (d_out[:, None] * w2)
    b = -((lo + hi) / 2 * lamf)[:, None] * w1
    a = w1.T @ ((lo * hi * lamf)[:, None] * w1)
    s = b.T @ np.linalg.solve(k, b) - a
    rho_star = float(np.max(np.linalg.eigvals(np.diag(d_in ** -0.5) @ s @ np.diag(d_in ** -0.5)).real))
    for factor, expected in ((Fraction(1001, 1000), True), (Fraction(999, 1000), False)):
        cert = Certificate(Fraction(rho_star) * factor, (lam,))
        assert check_diagonal_schur(problem, cert) is expected
        assert check_certificate(problem, cert, method="exact") is expected
        assert check_certificate(problem, cert, method="float") is expected
    # a multiplier below its output term makes the hidden block indefinite: refused
    assert not check_diagonal_schur(problem, Certificate(Fraction(10**6), ((Fraction(1, 8),) + lam[1:],)))
