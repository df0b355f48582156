"""lipsdp_fast (``lipverify/sdp/fast.py``, ``proofs/lipsdp_fast.md``): closed-form LipSDP-Neuron certificates.

Oracles written here, sharing no code with the method: a dense sampled Jacobian lower bound (forward passes and
Jacobian products in numpy), the LipSDP matrix assembled in exact ``Fraction`` arithmetic from the network's
weights and the returned certificate, with positive definiteness by exact Gaussian elimination (Sylvester), and
ECLipsE-Fast's published recursion written out (to show that ignoring ``αβ`` would be unsound).
"""

from __future__ import annotations

from fractions import Fraction

import numpy as np
import pytest
from _nets import gaussian_mlp
from _user_activations import Sine
from hypothesis import given, settings

import lipverify as lv
from lipverify.sdp.fast import lipsdp_fast
from lipverify.strategies import networks


def _jacobian_lower(net: lv.Network, points: int = 300, seed: int = 0) -> float:
    """max over random points of ||J(x)||_2, J multiplied out in the test (a lower bound of the constant)."""
    rng = np.random.default_rng(seed)
    best = 0.0
    for scale in (0.1, 1.0, 10.0):
        for _ in range(points // 3):
            x = rng.standard_normal(net.n_in) * scale
            j = np.eye(net.n_in)
            for layer in net.layers:
                if isinstance(layer, lv.Dense):
                    w = np.asarray(layer.weight, dtype=np.float64)
                    x = w @ x + np.asarray(layer.bias, dtype=np.float64)
                    j = w @ j
                elif isinstance(layer, lv.Activation):
                    j = np.asarray(layer.derivative(x), dtype=np.float64)[:, None] * j
                    x = layer.forward(x)
            best = max(best, float(np.linalg.norm(j, 2)))
    return best


def _net(sizes, act, seed=0):
    return gaussian_mlp(sizes, seed, act)


def _exact_pd(h: list[list[Fraction]]) -> bool:
    """Sylvester's criterion by Gaussian elimination without pivoting, in exact rationals."""
    a = [row[:] for row in h]
    n = len(a)
    for i in range(n):
        if a[i][i] <= 0:
            return False
        for r in range(i + 1, n):
            f = a[r][i] / a[i][i]
            if f:
                for c in range(i, n):
                    a[r][c] -= f * a[i][c]
    return True


def _lmi(weights, slopes, cert) -> list[list[Fraction]]:
    """H(rho, lambda) of LipSDP-Neuron (block tridiagonal), exactly, from the weights (Fractions)."""
    sizes = [len(weights[0][0])] + [len(w) for w in weights[:-1]]
    offs = np.concatenate([[0], np.cumsum(sizes)]).astype(int)
    n = int(offs[-1])
    h = [[Fraction(0)] * n for _ in range(n)]
    for i in range(sizes[0]):
        h[i][i] += cert.rho
    for k, (w, (a, b), lam) in enumerate(zip(weights[:-1], slopes, cert.lambdas)):
        o_in, o_out = offs[k], offs[k + 1]
        for i, row in enumerate(w):
            h[o_out + i][o_out + i] += lam[i]
            for j, wij in enumerate(row):
                v = -(a + b) / 2 * lam[i] * wij
                h[o_out + i][o_in + j] += v
                h[o_in + j][o_out + i] += v
                if a * b:
                    for j2, wij2 in enumerate(row):
                        h[o_in + j][o_in + j2] += a * b * lam[i] * wij * wij2
    wl = weights[-1]
    o = offs[-2]
    for j in range(len(wl[0])):
        for j2 in range(len(wl[0])):
            h[o + j][o + j2] -= sum((row[j] * row[j2] for row in wl), Fraction(0))
    return h


def _fractions(net):
    return [[[Fraction(float(v)) for v in row] for row in np.asarray(layer.weight, dtype=np.float64)]
            for layer in net.layers if isinstance(layer, lv.Dense)]


@pytest.mark.parametrize("act, slopes", [
    (lv.ReLU, (Fraction(0), Fraction(1))),
    (lambda: lv.LeakyReLU(-0.5), (Fraction(-1, 2), Fraction(1))),
    (lambda: lv.LeakyReLU(0.25), (Fraction(1, 4), Fraction(1))),
    (Sine, (Fraction(-1), Fraction(1))),
])
def test_the_certificate_is_positive_definite_in_exact_arithmetic(act, slopes):
    """The returned certificate (original weights) makes H(rho, lambda) ≻ 0, checked exactly here, and sqrt(rho)
    is the uncapped value; αβ < 0, > 0 and a symmetric interval (centre 0) included."""
    net = _net((3, 4, 3, 2), act, seed=3)
    b = lipsdp_fast(net)
    cert = b.details["certificate"]
    h = _lmi(_fractions(net), [slopes, slopes], cert)
    assert _exact_pd(h)
    assert float(b.details["certified_value"]) ** 2 >= float(cert.rho) * (1 - 1e-12)
    # the oracle discriminates: a rho below the squared sampled lower bound cannot be certified
    low = Fraction(_jacobian_lower(net, points=60)) ** 2 * Fraction(99, 100)
    assert not _exact_pd(_lmi(_fractions(net), [slopes, slopes], type(cert)(low, cert.lambdas)))


@settings(max_examples=15, deadline=None)
@given(networks(max_depth=4, max_width=5, max_inputs=4, max_outputs=3))
def test_sound_against_a_sampled_jacobian_and_at_most_k1(net):
    b = lipsdp_fast(net)
    assert b.kind == "upper" and b.norm == "2"
    assert float(b.value) >= _jacobian_lower(net, points=60) * (1 - 1e-9)
    assert float(b.value) <= float(lv.bound(net, "k1", norm=2).value)
    assert b.details["capped_by"] in ("k1", "lipsdp_fast")


def test_mixed_sign_slopes_are_sound_where_eclipse_fast_is_not():
    """|x|-like LeakyReLU(-0.5) on one neuron: the constant is 1; ECLipsE-Fast's recursion (which ignores αβ)
    gives 2|m| = 0.5, below it; lipsdp_fast keeps αβ and stays above."""
    net = lv.Network([lv.Dense([[1.0]]), lv.LeakyReLU(-0.5), lv.Dense([[1.0]])])
    m = (-0.5 + 1) / 2
    k = m * m
    li = 1 / (2 * k)
    eclipse = np.sqrt(1 / (li - li * li * k))
    assert eclipse == pytest.approx(0.5)
    assert _jacobian_lower(net) == pytest.approx(1.0)
    b = lipsdp_fast(net)
    assert 1.0 <= float(b.value) <= 1.0 + 1e-6


@pytest.mark.parametrize("act", [lv.ReLU, lv.Tanh, lambda: lv.LeakyReLU(-0.2)])
def test_never_below_the_lipsdp_optimum(act):
    """A feasible point of the LipSDP-Neuron LMI: its value is at least the SDP optimum (solver's value)."""
    net = _net((3, 6, 5, 2), act, seed=1)
    fast = lipsdp_fast(net, cap_k1=False)
    sdp = lv.bound(net, "lipsdp", norm=2)
    assert float(fast.value) >= sdp.details["solver_value"] * (1 - 1e-6)
    assert float(fast.value) >= _jacobian_lower(net) * (1 - 1e-9)


def test_at_least_as_tight_as_eclipse_fast_on_relu_nets():
    """The member (identity scaling, factor 1) is ECLipsE-Fast's recursion, written out here."""
    net = _net((8, 30, 30, 4), lv.ReLU, seed=2)
    ws = [np.asarray(layer.weight, dtype=np.float64) for layer in net.layers if isinstance(layer, lv.Dense)]
    x = np.eye(8)
    for w in ws[:-1]:
        k = 0.25 * w @ np.linalg.inv(x) @ w.T
        li = 1 / (2 * np.max(np.linalg.eigvalsh((k + k.T) / 2)))
        x = li * np.eye(w.shape[0]) - li * li * k
    g = ws[-1] @ np.linalg.inv(x) @ ws[-1].T
    eclipse = float(np.sqrt(np.max(np.linalg.eigvalsh((g + g.T) / 2))))
    b = lipsdp_fast(net)
    assert float(b.value) <= eclipse * (1 + 1e-6)


def _cnn(maxpool=False):
    rng = np.random.default_rng(4)
    layers = [lv.Conv2d(rng.standard_normal((2, 1, 3, 3)) / 3, padding=1), lv.ReLU()]
    layers += [lv.MaxPool2d(2), lv.Flatten(), lv.Dense(rng.standard_normal((3, 8)))] if maxpool else \
        [lv.Flatten(), lv.Dense(rng.standard_normal((3, 32)) / 6)]
    return lv.Network(layers, input_shape=(1, 4, 4))


def test_cnn_through_the_explicit_chain():
    net = _cnn()
    b = lv.bound(net, "lipsdp_fast", norm=2)
    assert b.details["conv"] == "explicit"
    rng = np.random.default_rng(0)
    lower = max(float(np.linalg.norm(net.jacobian(rng.standard_normal(16).reshape(1, 4, 4)).reshape(3, 16), 2))
                for _ in range(50))
    assert float(b.value) >= lower * (1 - 1e-9)
    assert float(b.value) <= float(lv.bound(net, "k1", norm=2, conv="explicit").value)
    pooled = _cnn(maxpool=True)
    b = lipsdp_fast(pooled)
    lower = max(float(np.linalg.norm(pooled.jacobian(rng.standard_normal(16).reshape(1, 4, 4)).reshape(3, 16), 2))
                for _ in range(50))
    assert lower * (1 - 1e-9) <= float(b.value) <= float(lv.bound(pooled, "k1", norm=2, conv="explicit").value)
    with pytest.raises(lv.NotApplicableError, match="conv='implicit'"):
        lipsdp_fast(net, conv="implicit")


def test_refusals_name_the_limit_and_the_norm():
    net = _net((3, 5, 2), lv.ReLU)
    with pytest.raises(lv.NotApplicableError, match="max_size=7"):
        lipsdp_fast(net, max_size=7)
    with pytest.raises(lv.NotApplicableError, match="l2"):
        lipsdp_fast(net, "inf")


def test_subnormal_diagonal_of_the_recursion_is_no_overflow():
    """Regression (found by the soundness property): a first-layer row of size 1e-155 gives K_ii ~ 1e-310, whose
    Jacobi scaling 1/K_ii overflowed (a RuntimeWarning, an error here).  The bound stays sound: here f(x) =
    relu(x) + 1e-155 relu(1e-155 x) has constant 1 + 1e-310."""
    net = lv.Network([lv.Dense(np.array([[1e-155], [1.0]])), lv.ReLU(), lv.Dense(np.array([[1e-155, 1.0]]))])
    b = lv.bound(net, "lipsdp_fast", norm=2)
    assert b.kind == "upper" and 1.0 <= b.value < 1.5


def test_the_float_check_with_the_input_block_eliminated_agrees_with_exact_arithmetic():
    """A wide input (8 > 3 neurons, ReLU: the input block is rho I) makes the float check eliminate the input block by
    its Schur complement (proofs/lipsdp.md §4).  Around the certificate's threshold rho*, every rho the float check
    accepts is accepted by the exact Sylvester test written here, and it accepts 1.001 rho*, refuses 0.999 rho*."""
    from lipverify.sdp.certificate import Certificate, LipSDPProblem, _input_block_is_rho_identity, check_certificate

    net = _net((8, 3, 3, 2), lv.ReLU, seed=5)
    lams = lipsdp_fast(net).details["certificate"].lambdas
    weights = [np.asarray(layer.weight, dtype=np.float64) for layer in net.layers if isinstance(layer, lv.Dense)]
    problem = LipSDPProblem(tuple(weights), (None,) * 3, None, ((Fraction(0), Fraction(1)),) * 2, (0, 0, 0))
    assert _input_block_is_rho_identity(problem) and problem.sizes[0] > problem.sizes[1]
    slopes = [(Fraction(0), Fraction(1))] * 2
    # rho* of these multipliers, in floats: the largest eigenvalue of K_0r K_rr^-1 K_r0 (the hidden block K_rr ≻ 0)
    h = np.array(_lmi(_fractions(net), slopes, Certificate(Fraction(0), lams)), dtype=np.float64)
    k_rr, k_r0 = h[8:, 8:], h[8:, :8]
    rho_star = float(np.max(np.linalg.eigvalsh(k_r0.T @ np.linalg.solve(k_rr, k_r0))))
    accepted = []
    for factor in (0.99, 0.999, 0.9999999, 1.0000001, 1.001, 1.01):
        rho = Fraction(rho_star * factor)
        ok = check_certificate(problem, Certificate(rho, lams), method="float")
        if ok:
            assert _exact_pd(_lmi(_fractions(net), slopes, Certificate(rho, lams)))
        accepted.append(ok)
    assert accepted[0] is False and accepted[1] is False and accepted[4] is True and accepted[5] is True
