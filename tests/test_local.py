"""Local bounds on an input box and certified radii (lipverify.local)."""

import numpy as np
import pytest
from _user_activations import Sine
from hypothesis import given, settings
from hypothesis import strategies as st

import lipverify as lv
from lipverify.local import output_enclosure
from lipverify.strategies import networks

TOL = 1e-9


def _box(net, center, radius):
    c = np.full(net.input_shape, center)
    return c - radius, c + radius


@settings(max_examples=60)
@given(networks(max_depth=3, max_width=5, max_inputs=3, max_outputs=2), st.floats(-1, 1), st.floats(0.001, 2.0))
def test_local_bounds_are_sound_and_below_global(net, center, radius):
    box = _box(net, center, radius)
    for p in lv.NORMS:
        lo = lv.lower_bound(net, p, domain=box, samples=64, steps=8).value
        for row in lv.compare(net, norms=[p], domain=box, k2={"time_limit": 1.0}):
            if row.value is None:
                continue
            assert row.details.get("domain") is True
            assert float(row.value) >= lo, (row.method, p)
            if row.method in ("kstar", "k3", "k4", "k2"):  # monotone in the slope intervals
                glob = float(lv.bound(net, row.method, norm=p).value)
                assert float(row.value) <= glob * (1 + TOL) + 1e-150, (row.method, p)


def test_relu_that_is_always_active_or_inactive_gets_a_point_slope():
    net = lv.Network([lv.Dense([[1.0], [-1.0]], [5.0, -5.0]), lv.ReLU(), lv.Dense([[2.0, 3.0]])])
    local = lv.localize(net, ([-1.0], [1.0]))
    act = local.layers[1]
    np.testing.assert_array_equal(act.lo, [1.0, 0.0])
    np.testing.assert_array_equal(act.hi, [1.0, 0.0])
    assert lv.bound(net, "k4", norm="inf", domain=([-1.0], [1.0])).value == pytest.approx(2.0)
    assert lv.bound(net, "k4", norm="inf").value == pytest.approx(3.0)  # max(2, 3) globally


def test_tanh_slopes_narrow_away_from_zero():
    net = lv.Network([lv.Dense([[1.0]]), lv.Tanh(), lv.Dense([[1.0]])])
    act = lv.localize(net, ([2.0], [3.0])).layers[1]
    assert act.lo[0] <= 1 - np.tanh(3.0) ** 2 and act.hi[0] >= 1 - np.tanh(2.0) ** 2
    assert act.hi[0] < 0.08
    assert lv.bound(net, "kstar", norm=2, domain=([2.0], [3.0])).value < 0.08


def test_certified_radius_keeps_the_class_on_samples():
    rng = np.random.default_rng(0)
    net = lv.Network([lv.Dense(rng.standard_normal((10, 4)), rng.standard_normal(10)), lv.ReLU(),
                      lv.Dense(rng.standard_normal((3, 10)))])
    x = rng.standard_normal(4)
    label = int(np.argmax(net(x)))
    for p, r0 in (("inf", None), ("inf", 0.2), ("2", None), ("1", 0.5)):
        r = lv.certified_radius(net, x, p, radius=r0)
        assert r.kind == "lower" and r.value > 0
        d = rng.standard_normal((2000, 4))
        norms = np.linalg.norm(d, {"1": 1, "2": 2, "inf": np.inf}[p], axis=1)
        pts = x + d / norms[:, None] * r.value * rng.uniform(0, 1, (2000, 1))
        assert np.all(np.argmax(net(pts), axis=1) == label)


def test_bad_domains_and_cnns_are_refused():
    net = lv.Network([lv.Dense([[1.0, 2.0]])])
    with pytest.raises(lv.ShapeError, match="exceeds"):
        lv.bound(net, "k4", norm="inf", domain=([1.0, 0.0], [0.0, 0.0]))
    with pytest.raises(ValueError, match="pair"):
        lv.bound(net, "k4", norm="inf", domain=3.0)
    cnn = lv.Network([lv.Conv2d(np.ones((1, 1, 2, 2))), lv.Flatten()], input_shape=(1, 3, 3))
    with pytest.raises(lv.NotApplicableError, match="fully connected"):
        lv.bound(cnn, "k4", norm="inf", domain=(np.zeros((1, 3, 3)), np.ones((1, 3, 3))))


@settings(max_examples=25)
@given(networks(max_depth=3, max_width=4, max_inputs=2, max_outputs=1, activations=("relu", "leakyrelu", "identity")),
       st.floats(-1, 1), st.floats(0.01, 1.0))
def test_exact_local_constant_is_below_every_local_bound(net, center, radius):
    box = _box(net, center, radius)
    for p in ("1", "inf"):
        exact = lv.exact(net, p, domain=box)
        ref = float(exact.lower) if exact.lower is not None else float(exact.value)
        for row in lv.compare(net, norms=[p], domain=box, k2={"time_limit": 1.0}):
            if row.value is not None:
                assert float(row.value) >= ref * (1 - TOL) - 1e-150, (row.method, p)
        glob = lv.exact(net, p)
        assert ref <= float(glob.value) * (1 + TOL) + 1e-150



@pytest.mark.parametrize("act", [Sine(), lv.GELU(), lv.SiLU(), lv.LeakyReLU(-2)], ids=lambda a: a.describe())
def test_output_enclosure_and_local_bound_follow_the_activation_shape(act):
    # one hidden layer, so f(x) = w2 . σ(W1 x + b1) is evaluated independently in mpmath below
    import mpmath as mp

    w1, b1, w2 = np.array([[1.5], [-2.0]]), np.array([0.3, -0.8]), np.array([[1.0, 0.5]])
    net = lv.Network([lv.Dense(w1, b1), act, lv.Dense(w2)], input_shape=(1,))
    sig = {"Sine": mp.sin, "GELU": lambda t: t / 2 * mp.erfc(-t / mp.sqrt(2)), "SiLU": lambda t: t / (1 + mp.exp(-t)),
           "LeakyReLU": lambda t: t if t >= 0 else -2 * t}[act.kind]
    dom = ([-2.0], [1.0])
    lo, hi = output_enclosure(net, dom)
    mp.mp.dps = 30
    xs = np.linspace(-2.0, 1.0, 3001)
    for x in xs:
        f = sum(mp.mpf(w2[0, i]) * sig(mp.mpf(w1[i, 0]) * mp.mpf(x) + mp.mpf(b1[i])) for i in range(2))
        assert mp.mpf(lo[0]) <= f <= mp.mpf(hi[0]), x
    jac = np.abs(net.jacobian(xs[:, None])).max()
    for method in ("k4", "kstar", "k1"):
        assert lv.bound(net, method, norm="inf", domain=dom).value >= jac * (1 - 1e-12)
