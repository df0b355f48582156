"""First-order LipSDP (``lipsdp_fo``, issue 15 item 3).

Oracles written here: a dense cvxpy LipSDP-Neuron (Clarabel) for the optimum, dense Jacobians at random points
for lower bounds, exact rational re-checks of the returned certificate (``lv.sdp.verify`` with python-flint).
"""

from __future__ import annotations

from fractions import Fraction

import numpy as np
import pytest

import lipverify as lv
from lipverify.sdp import Certificate, verify


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
