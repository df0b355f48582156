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


@settings(max_examples=40)
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


def test_bad_domains_are_refused():
    net = lv.Network([lv.Dense([[1.0, 2.0]])])
    with pytest.raises(lv.ShapeError, match="exceeds"):
        lv.bound(net, "k4", norm="inf", domain=([1.0, 0.0], [0.0, 0.0]))
    with pytest.raises(ValueError, match="pair"):
        lv.bound(net, "k4", norm="inf", domain=3.0)


def _small_cnn(seed: int = 0, residual: bool = False) -> lv.Network:
    rng = np.random.default_rng(seed)
    layers = [lv.Conv2d(rng.normal(0, 0.6, (3, 1, 3, 3)), rng.normal(0, 0.3, 3), padding=1), lv.ReLU()]
    if residual:
        layers += [lv.Residual([lv.Conv2d(rng.normal(0, 0.4, (3, 3, 3, 3)), padding=1),
                                lv.BatchNorm2d(rng.uniform(0.5, 1.5, 3), rng.normal(0, 0.1, 3), rng.normal(0, 0.1, 3),
                                               rng.uniform(0.5, 2, 3)), lv.Tanh()]), lv.ReLU()]
    layers += [lv.MaxPool2d(2), lv.Conv2d(rng.normal(0, 0.6, (2, 3, 2, 2))), lv.Sigmoid(), lv.AvgPool2d(1),
               lv.Flatten(), lv.Dense(rng.normal(0, 1.0, (3, 2)), rng.normal(0, 0.2, 3))]
    return lv.Network(layers, input_shape=(1, 4, 4))


@pytest.mark.parametrize("residual", [False, True])
def test_local_bounds_of_cnns_hold_on_the_box_and_never_exceed_the_global_ones(residual):
    """Interval propagation through Conv2d, BatchNorm2d, MaxPool2d, AvgPool2d and residual sums: the output
    enclosure contains the sampled outputs, the local bounds lie above the difference quotients of sampled pairs in
    the box and below the global bounds, and certified radii are never fooled by sampled points."""
    net = _small_cnn(1, residual)
    rng = np.random.default_rng(3)
    x0 = rng.uniform(-1, 1, net.input_shape)
    box = (x0 - 0.05, x0 + 0.05)
    pts = rng.uniform(*box, size=(3000, *net.input_shape))
    out = net(pts)
    lo, hi = lv.local.output_enclosure(net, box)
    assert np.all(out >= lo) and np.all(out <= hi)
    for p in ("1", "2", "inf"):
        ordp = {"1": 1, "2": 2, "inf": np.inf}[p]
        a, b = pts[:1500], pts[1500:]
        quot = np.max(np.linalg.norm(net(a) - net(b), ord=ordp, axis=1)
                      / np.linalg.norm((a - b).reshape(1500, -1), ord=ordp, axis=1))
        for method in (("kstar", "k1") if p == "2" else ("kstar", "k3", "k4")):
            local = lv.bound(net, method, norm=p, domain=box).value
            assert quot <= local * (1 + 1e-12), (method, p, quot, local)
            assert local <= lv.bound(net, method, norm=p).value * (1 + 1e-12)
    # the narrowing is real: K4 l∞ on the box is well below the global value (5.64 vs 7.36; 23.8 vs 45.3 here)
    assert lv.bound(net, "k4", norm="inf", domain=box).value < 0.9 * lv.bound(net, "k4", norm="inf").value
    label = int(np.argmax(net(x0)))
    r = lv.certified_radius(net, x0, "inf", radius=0.05)
    assert r.kind == "lower" and 0.01 < r.value <= 0.05
    d = rng.uniform(-1, 1, (3000, *net.input_shape)) * r.value
    d[:8] = np.sign(rng.standard_normal((8, *net.input_shape))) * r.value  # corners of the l∞ ball
    assert np.all(np.argmax(net(x0 + d), axis=1) == label)


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
