"""The backward linear relaxation of the local bounds (lipverify.relax, ``proofs/local.md`` §3).

Oracles: the activation inputs evaluated here by a float forward pass written in this file (at random points and at
the vertices of the box), numbers worked by hand, the global bounds, and the projected-gradient attack of
``test_certify.py`` (torch autograd on an equivalent torch model).
"""

from __future__ import annotations

import itertools
from fractions import Fraction

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import lipverify as lv
from lipverify.local import activation_bounds, output_enclosure
from lipverify.relax import Backward, _back, activation_lines, dot_up
from lipverify.strategies import conv_networks, networks, residual_networks

TOL = 1e-12


def _act_inputs(net: lv.Network, h: np.ndarray) -> list[np.ndarray]:
    """The input of every activation layer (flat, per point) for the batch ``h``, in the order of the layers (a residual
    block: its body's, then its shortcut's), by a forward pass written here."""
    out = []
    for i, layer in enumerate(net.layers):
        if isinstance(layer, lv.Activation):
            out.append(h.reshape(len(h), -1))
        if isinstance(layer, lv.Residual):
            body, short = layer.branches(net.shapes[i])
            out += _act_inputs(body, h)
            if short is not None:
                out += _act_inputs(short, h)
        h = layer.forward(h)
    return out


def _points(box, n, rng):
    """``n`` uniform points of the box and (up to 64 of) its vertices."""
    lo, hi = (np.asarray(v, dtype=np.float64) for v in box)
    pts = rng.uniform(lo, hi, size=(n, *lo.shape))
    k = lo.size
    corners = [np.array(c) for c in itertools.islice(itertools.product((0.0, 1.0), repeat=k), 64)]
    if k > 6:  # random vertices instead of the first ones
        corners = list(rng.integers(0, 2, size=(64, k)).astype(float))
    verts = np.stack([np.where(c.reshape(lo.shape) > 0, hi, lo) for c in corners])
    return np.concatenate([pts, verts])


def _assert_sound_and_inside_interval(net, box, n=400, seed=0):
    crown = activation_bounds(net, box, "crown")
    ibp = activation_bounds(net, box, "interval")
    values = _act_inputs(net, _points(box, n, np.random.default_rng(seed)))
    assert len(crown) == len(ibp) == len(values)
    tighter = 0.0
    for (lo, hi), (ilo, ihi), v in zip(crown, ibp, values):
        slack = TOL * (1 + np.abs(v))  # the float forward pass here rounds too
        assert np.all(v >= lo - slack) and np.all(v <= hi + slack)
        # never looser than interval propagation (up to the rounding of its midpoint-radius steps, which start from
        # different boxes in the two runs)
        assert np.all(lo >= ilo - TOL * (1 + np.abs(ilo))) and np.all(hi <= ihi + TOL * (1 + np.abs(ihi)))
        tighter = max(tighter, float(np.max((ihi - ilo) - (hi - lo), initial=0.0)))
    return tighter


def _mlp(seed, widths=(3, 8, 8, 8, 2), act=lv.ReLU):
    rng = np.random.default_rng(seed)
    layers = []
    for i in range(len(widths) - 1):
        if i:
            layers.append(act())
        w = rng.normal(0, 1 / np.sqrt(widths[i]), (widths[i + 1], widths[i]))
        layers.append(lv.Dense(w, rng.normal(0, 0.3, widths[i + 1])))
    return lv.Network(layers)


def _cnn(seed, residual=False):
    rng = np.random.default_rng(seed)
    layers = [lv.Conv2d(rng.normal(0, 0.6, (3, 1, 3, 3)), rng.normal(0, 0.3, 3), padding=1), lv.ReLU()]
    if residual:
        layers += [lv.Residual([lv.Conv2d(rng.normal(0, 0.4, (3, 3, 3, 3)), padding=1), lv.ReLU(),
                                lv.Conv2d(rng.normal(0, 0.4, (3, 3, 3, 3)), padding=1)]), lv.LeakyReLU(0.1)]
    layers += [lv.MaxPool2d(2, stride=1), lv.Conv2d(rng.normal(0, 0.5, (4, 3, 2, 2)), rng.normal(0, 0.2, 4)), lv.ReLU(),
               lv.MaxPool2d(2), lv.Flatten(), lv.Dense(rng.normal(0, 0.7, (6, 4)), rng.normal(0, 0.2, 6)), lv.Tanh(),
               lv.Dense(rng.normal(0, 1.0, (3, 6)))]
    return lv.Network(layers, input_shape=(1, 5, 5))


@pytest.mark.parametrize("act", [lv.ReLU, lambda: lv.LeakyReLU(Fraction(1, 10)), lambda: lv.LeakyReLU(3),
                                 lambda: lv.LeakyReLU(-0.5), lv.Tanh, lv.Sigmoid, lv.GELU, lv.Hardtanh])
def test_crown_bounds_contain_the_activation_inputs_of_random_mlps_and_tighten_interval(act):
    net = _mlp(1, act=act)
    x0 = np.random.default_rng(2).uniform(-1, 1, 3)
    tighter = _assert_sound_and_inside_interval(net, (x0 - 0.4, x0 + 0.4))
    assert tighter > 1e-3  # the relaxation does something on these nets


@pytest.mark.parametrize("residual", [False, True])
def test_crown_bounds_contain_the_activation_inputs_of_cnns_and_residual_nets(residual):
    """Conv2d, overlapping and plain max pools, a residual block (restart), LeakyReLU and Tanh."""
    net = _cnn(4, residual)
    x0 = np.random.default_rng(5).uniform(0, 1, net.input_shape)
    box = (x0 - 0.03, x0 + 0.03)
    assert _assert_sound_and_inside_interval(net, box, n=300) > 1e-3
    lo, hi = output_enclosure(net, box)
    ilo, ihi = output_enclosure(net, box, "interval")
    out = net(_points(box, 300, np.random.default_rng(6)))
    assert np.all(out >= lo - TOL) and np.all(out <= hi + TOL)
    assert np.all(lo >= ilo - TOL) and np.all(hi <= ihi + TOL)


def test_two_two_one_relu_net_worked_by_hand():
    """x in [-1, 1]^2, z = (x1 + x2, x1 - x2) in [-2, 2]^2 (interval propagation is exact here), y = relu(z1) + relu(z2).
    Each ReLU: upper chord 0.5 z + 1, lower line z (u = -l: the adaptive choice takes slope 1).  Upper:
    y <= 0.5 (z1 + z2) + 2 = x1 + 2 <= 3; lower: y >= z1 + z2 = 2 x1 >= -2, intersected with interval's [0, 4]: [0, 3].
    (The true range is [0, 2].)"""
    net = lv.Network([lv.Dense([[1.0, 1.0], [1.0, -1.0]]), lv.ReLU(), lv.Dense([[1.0, 1.0]])])
    box = ([-1.0, -1.0], [1.0, 1.0])
    lo, hi = output_enclosure(net, box)
    assert -1e-12 <= lo[0] <= 0 and 3.0 <= hi[0] <= 3.0 + 1e-12
    ilo, ihi = output_enclosure(net, box, "interval")
    assert 4.0 <= ihi[0] <= 4.0 + 1e-12
    # one more layer: relu(y - 3.5) is inactive on the box (y <= 3), which only the relaxation sees
    deep = lv.Network([*net.layers, lv.Dense([[1.0]], [-3.5]), lv.ReLU(), lv.Dense([[1.0]])])
    (_, b), (_, d) = activation_bounds(deep, box)[1], activation_bounds(deep, box, "interval")[1]
    assert 3.0 - 3.5 <= b[0] <= 3.0 - 3.5 + 1e-12 and 4.0 - 3.5 <= d[0] <= 4.0 - 3.5 + 1e-12
    assert lv.bound(deep, "k4", norm="inf", domain=box).value <= 1e-300  # the true local constant is 0
    assert lv.bound(deep, "k4", norm="inf", domain=box, relaxation="interval").value == pytest.approx(3.0)  # [0, 2] + [-1, 1]
    assert lv.bound(deep, "k4", norm="inf", domain=box).details["relaxation"] == "crown"


def test_relaxation_lines_hold_between_the_ends_by_exact_arithmetic():
    """Every line of :func:`activation_lines` against the activation at 200 points of ``[l, u]`` (ReLU and LeakyReLU
    in Fractions, exact; tanh in mpmath at 40 digits), ends included."""
    import mpmath as mp

    rng = np.random.default_rng(7)
    l = np.concatenate([rng.uniform(-3, 1, 40), [-2.0, 0.0, -1e-300]])
    u = l + np.concatenate([rng.uniform(0, 4, 40), [4.0, 1.0, 2e-300]])
    for act, f in ((lv.ReLU(), lambda z: max(z, 0)), (lv.LeakyReLU(Fraction(1, 10)), lambda z: z if z >= 0 else z / 10),
                   (lv.LeakyReLU(3), lambda z: z if z >= 0 else 3 * z), (lv.LeakyReLU(-0.5), lambda z: z if z >= 0 else -z / 2)):
        a_lo, b_lo, a_hi, b_hi = activation_lines(act, l, u, *act.narrow_slopes(l, u))
        for i in range(len(l)):
            for t in np.linspace(0, 1, 60):
                z = Fraction(float(l[i] + t * (u[i] - l[i])))
                z = min(max(z, Fraction(l[i])), Fraction(u[i]))
                assert Fraction(a_lo[i]) * z + Fraction(b_lo[i]) <= f(z) <= Fraction(a_hi[i]) * z + Fraction(b_hi[i])
    mp.mp.dps = 40
    act = lv.Tanh()
    a_lo, b_lo, a_hi, b_hi = activation_lines(act, l, u, *act.narrow_slopes(l, u))
    for i in range(len(l)):
        for t in np.linspace(0, 1, 50):
            z = mp.mpf(float(l[i])) + mp.mpf(t) * (mp.mpf(float(u[i])) - mp.mpf(float(l[i])))
            assert mp.mpf(a_lo[i]) * z + mp.mpf(b_lo[i]) <= mp.tanh(z) <= mp.mpf(a_hi[i]) * z + mp.mpf(b_hi[i])


def test_dot_up_is_above_the_exact_dot_product():
    rng = np.random.default_rng(8)
    x = rng.standard_normal((20, 50)) * 10.0 ** rng.integers(-5, 5, (20, 50))
    y = rng.standard_normal(50)
    got = dot_up(x, y)
    for r in range(20):
        exact = sum(Fraction(a) * Fraction(b) for a, b in zip(x[r], y))
        assert Fraction(got[r]) >= exact
        assert float(got[r] - float(exact)) <= 1e-12 * float(np.abs(x[r]) @ np.abs(y))


def _max_linear_exact(c, lo, hi):
    """max over the box of the exact linear form ``c . v`` (Fractions)."""
    return sum(max(cj * Fraction(a), cj * Fraction(b)) for cj, a, b in zip(c, lo, hi))


def test_backward_steps_keep_their_invariant_in_exact_arithmetic():
    """``lam . v_out <= lam' . v_in + beta`` for every ``v_in`` of the box, checked in Fractions for one linear step
    (``fl(lam W)`` differs from ``lam W``: only the rounding terms cover it) and one ReLU step."""
    from lipverify.ir.operators import DenseOp

    rng = np.random.default_rng(11)
    w = rng.normal(0, 0.3, (12, 30)) * 10.0 ** rng.integers(-3, 3, (12, 30))
    lo = rng.uniform(-2, 0, 30)
    hi = lo + rng.uniform(0, 3, 30)
    lam = rng.normal(0, 1, (25, 12)) * 10.0 ** rng.integers(-2, 2, (25, 12))
    bw = Backward(lo, hi)
    bw.linear(DenseOp(w), np.zeros(12), None, lo, hi)
    new, beta = _back(bw.entries, lam)
    wf = [[Fraction(v) for v in row] for row in w]
    for r in range(25):
        exact_row = [sum(Fraction(lam[r, i]) * wf[i][j] for i in range(12)) - Fraction(new[r, j]) for j in range(30)]
        assert _max_linear_exact(exact_row, lo, hi) <= Fraction(beta[r])
    # a LeakyReLU(1/10) step on [l, u]: lam_j σ(z_j) - lam'_j z_j is piecewise linear, its maximum at l_j, 0 or u_j
    z_lo, z_hi = rng.uniform(-2, 0.5, 30), rng.uniform(0.5, 3, 30)
    lam = -np.abs(rng.normal(0, 1, (25, 30)))  # lines below: slope float_up(1/10) or 1 through 0, intercept 0
    act = lv.LeakyReLU(Fraction(1, 10))
    bw = Backward(z_lo, z_hi)
    bw.activation(act, z_lo, z_hi, *act.narrow_slopes(z_lo, z_hi))
    new, beta = _back(bw.entries, lam)
    for r in range(25):
        total = Fraction(0)
        for j in range(30):
            cands = [Fraction(z_lo[j]), Fraction(z_hi[j])] + ([Fraction(0)] if z_lo[j] < 0 < z_hi[j] else [])
            total += max(Fraction(lam[r, j]) * (z if z >= 0 else z / 10) - Fraction(new[r, j]) * z for z in cands)
        assert total <= Fraction(beta[r])


@pytest.mark.parametrize("net", [_mlp(3), _cnn(9)], ids=["mlp", "cnn"])
def test_local_below_global_and_crown_below_interval_for_every_monotone_method(net):
    x0 = np.random.default_rng(10).uniform(0, 1, net.input_shape)
    box = (x0 - 0.05, x0 + 0.05)
    for p, methods in (("inf", ("kstar", "k3", "k4")), ("1", ("kstar", "k3", "k4")), ("2", ("kstar", "k1"))):
        for m in methods:
            crown = lv.bound(net, m, norm=p, domain=box).value
            interval = lv.bound(net, m, norm=p, domain=box, relaxation="interval").value
            glob = lv.bound(net, m, norm=p).value
            assert crown <= interval * (1 + TOL) and interval <= glob * (1 + TOL), (m, p)


def test_certified_radii_with_crown_survive_the_attack_and_are_at_least_the_interval_ones():
    """The residual CNN of ``test_certify.py`` (conv, ReLU, x + conv(ReLU(conv x)), ReLU, dense), where the relaxation
    runs through the block (the CNN with a max pool there has no activation after its pool: nothing to tighten)."""
    from test_certify import _attack, _inputs, _pair

    torch = pytest.importorskip("torch")
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # tiny tensors: one thread is faster on a busy machine
    try:
        _attack_crown_radii(torch, _attack, _inputs, _pair)
    finally:
        torch.set_num_threads(threads)


def _attack_crown_radii(torch, _attack, _inputs, _pair):
    model, net = _pair(True, seed=3)
    positive = improved = 0
    for x in _inputs(net, 2, seed=5):
        for p in ("1", "2", "inf"):
            r0 = {"1": 1.0, "2": 0.4, "inf": 0.08}[p]
            r = lv.certified_radius(net, x, p, radius=r0)
            ri = lv.certified_radius(net, x, p, radius=r0, relaxation="interval")
            assert r.details["relaxation"] == "crown" and r.value >= ri.value
            improved += r.value > 1.5 * ri.value
            if r.value > 0:
                positive += 1
                points = _attack(model, x, r.details["label"], r.value, p, steps=20)
                with torch.no_grad():
                    assert torch.all(model(points).argmax(dim=1) == r.details["label"])
    assert positive >= 3  # not vacuous
    assert improved >= 2  # l∞ radii 2.7x and 2.1x the interval ones


def test_unknown_relaxation_is_refused():
    net = lv.Network([lv.Dense([[1.0]]), lv.ReLU(), lv.Dense([[1.0]])])
    with pytest.raises(ValueError, match="relaxation must be one of"):
        lv.bound(net, "k4", norm="inf", domain=([0.0], [1.0]), relaxation="deeppoly")


@settings(max_examples=30, deadline=None)
@given(networks(max_depth=4, max_width=5, max_inputs=3, max_outputs=2), st.floats(-1, 1), st.floats(0.001, 2.0),
       st.integers(0, 2**16))
def test_property_crown_bounds_are_sound_and_inside_the_interval_ones(net, center, radius, seed):
    box = (np.full(net.input_shape, center - radius), np.full(net.input_shape, center + radius))
    _assert_sound_and_inside_interval(net, box, n=100, seed=seed)


@settings(max_examples=20, deadline=None)
@given(st.one_of(residual_networks(conv=False, max_blocks=2), residual_networks(conv=True, max_blocks=2),
                 conv_networks(max_size=5)), st.floats(0.001, 0.5), st.integers(0, 2**16))
def test_property_crown_bounds_of_residual_and_conv_networks_are_sound(net, radius, seed):
    x0 = np.random.default_rng(seed).uniform(-1, 1, net.input_shape)
    _assert_sound_and_inside_interval(net, (x0 - radius, x0 + radius), n=60, seed=seed)


def test_work_limit_keeps_interval_bounds_and_says_so(monkeypatch):
    """With a tiny work limit the relaxation stops: the bound lies between the full relaxation's and the interval one,
    and the result says the limit was reached."""
    import lipverify.relax as relax

    net = _mlp(1)
    x0 = np.random.default_rng(2).uniform(-1, 1, 3)
    box = (x0 - 0.4, x0 + 0.4)
    full = lv.bound(net, "k4", norm="inf", domain=box)
    interval = lv.bound(net, "k4", norm="inf", domain=box, relaxation="interval").value
    assert "relaxation_cut" not in full.details and full.value < interval
    monkeypatch.setattr(relax, "CROWN_WORK", 300)
    cut = lv.bound(net, "k4", norm="inf", domain=box)
    assert cut.details["relaxation_cut"] is True and "work limit" in cut.assumptions[-1]
    assert full.value <= cut.value <= interval
    _assert_sound_and_inside_interval(net, box, n=200)
