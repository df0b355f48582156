"""Known answers for the FC bound family, the registry and the error messages."""

from fractions import Fraction

import numpy as np
import pytest
import sympy
from hypothesis import given
from hypothesis import strategies as st

import lipverify as lv
from lipverify.strategies import networks, weight_matrices

L1_LINF = ("1", "inf")


def _product(weights):
    m = np.eye(weights[0].shape[1])
    for w in weights:
        m = w @ m
    return m


def _norm(m, p):
    return np.linalg.norm(m, {"1": 1, "2": 2, "inf": np.inf}[p])


def _relu_net(weights, biases=None):
    layers = []
    for i, w in enumerate(weights):
        if i:
            layers.append(lv.ReLU())
        layers.append(lv.Dense(w, None if biases is None else biases[i]))
    return lv.Network(layers)


def test_docstring_example_values():
    net = lv.Network([lv.Dense([[1, -2], [0, 1]]), lv.ReLU(), lv.Dense([[1, 1]])])
    assert lv.bound(net, "kstar", norm="inf").exact_value == 6
    assert lv.bound(net, "k3", norm="inf").exact_value == 4
    assert lv.bound(net, "k4", norm="inf").exact_value == 3
    assert lv.bound(net, "k1", norm="inf").exact_value == 4
    k2 = lv.bound(net, "k2", norm="inf")
    assert k2.kind == "upper" and k2.quantity_exact and k2.value == pytest.approx(3, rel=1e-12) and k2.value >= 3


@given(st.lists(st.tuples(st.integers(1, 4), st.integers(1, 4)), min_size=1, max_size=3), st.data())
def test_nonnegative_weights_k2_k3_k4_equal_the_product_norm(dims, data):
    widths = [dims[0][0]] + [d[1] for d in dims]
    weights = [np.abs(data.draw(weight_matrices(widths[i + 1], widths[i]))) for i in range(len(dims))]
    net = _relu_net(weights)
    for p in L1_LINF:
        exact = _norm(_product(weights), p)
        for m in ("k2", "k3", "k4"):
            v = float(lv.bound(net, m, norm=p).value)
            assert exact * (1 - 1e-12) <= v <= exact * (1 + 1e-9) + 1e-300, (m, p)


def _exact_scalar_lipschitz(w, b, a, c=0):
    """max |f'| of f(x) = sum_i a_i relu(w_i x + b_i) + c over R, in exact rationals (slopes between breakpoints)."""
    w = [Fraction(v) for v in w]
    b = [Fraction(v) for v in b]
    a = [Fraction(v) for v in a]
    points = sorted({-bi / wi for wi, bi in zip(w, b) if wi != 0})
    probes = [points[0] - 1] + [(x + y) / 2 for x, y in zip(points, points[1:])] + [points[-1] + 1] if points else [Fraction(0)]
    return max(abs(sum(ai * wi for wi, bi, ai in zip(w, b, a) if wi * x + bi > 0)) for x in probes)


@given(st.integers(1, 6), st.data())
def test_k4_is_exact_for_scalar_one_hidden_layer_nets_with_nonnegative_output_weights(n, data):
    ints = st.integers(-5, 5)
    w = data.draw(st.lists(ints, min_size=n, max_size=n))
    b = data.draw(st.lists(ints, min_size=n, max_size=n))
    a = data.draw(st.lists(st.integers(0, 5), min_size=n, max_size=n))
    net = lv.Network([lv.Dense([[v] for v in w], b), lv.ReLU(), lv.Dense([a])])
    true = _exact_scalar_lipschitz(w, b, a)
    for p in ("1", "inf"):
        k4 = lv.bound(net, "k4", norm=p)
        assert k4.exact_value == sympy.Rational(true.numerator, true.denominator)


@given(networks(activations=("identity",), max_depth=4))
def test_linear_network_every_bound_is_at_least_the_product_norm(net):
    weights = [layer.weight for layer in net.layers if isinstance(layer, lv.Dense)]
    for p in ("1", "2", "inf"):
        exact = _norm(_product(weights), p)
        for row in lv.compare(net, norms=[p]):
            if row.value is not None:
                assert float(row.value) >= exact * (1 - 1e-12), (row.method, p)
        k1 = lv.bound(net, "k1", norm=p).value
        assert k1 == pytest.approx(exact, rel=1e-9, abs=1e-12)  # identity slopes: K1 collapses to the product


@given(networks(exact=True, max_depth=3, max_width=4,
                activations=("relu", "leakyrelu", "identity", "tanh", "sigmoid", "gelu", "silu")))
def test_float_arithmetic_is_at_least_the_exact_rational_value(net):
    for method in ("kstar", "k1", "k3", "k4"):
        for p in L1_LINF:
            exact = lv.bound(net, method, norm=p, arithmetic="exact")
            flt = lv.bound(net, method, norm=p, arithmetic="float")
            assert sympy.Rational(flt.value) >= exact.exact_value, (method, p)
            assert sympy.Rational(exact.value) >= exact.exact_value
            assert flt.value <= float(exact.exact_value) * (1 + 1e-9) + 1e-12


def test_exact_rational_weights_that_floats_cannot_represent():
    third = Fraction(1, 3)
    net = lv.Network([lv.Dense([[third, -third], [third, third]]), lv.ReLU(), lv.Dense([[3, 3]])])
    b = lv.bound(net, "k3", norm="inf")
    assert b.exact_value == 4 and b.value == 4.0
    flt = lv.bound(net, "k3", norm="inf", arithmetic="float")
    assert flt.value >= 4.0


def test_unknown_method_and_norm_list_the_valid_ones():
    net = _relu_net([np.eye(2)])
    with pytest.raises(ValueError, match="valid methods are kstar, k1, k2, k3, k4"):
        lv.bound(net, "k9")
    with pytest.raises(ValueError, match="valid norms"):
        lv.bound(net, "k4", norm=3)


@pytest.mark.parametrize("method", ["k3", "k4"])
def test_l2_not_applicable_raises_in_bound_and_is_a_row_in_compare(method):
    net = _relu_net([np.eye(2)])
    with pytest.raises(lv.NotApplicableError, match="l1, linf norm"):
        lv.bound(net, method, norm=2)
    rows = lv.compare(net, norms=[2])
    (row,) = [r for r in rows if r.method == method]
    assert isinstance(row, lv.Skipped) and "l1, linf" in row.error


def test_every_registered_method_is_in_compare():
    rows = lv.compare(_relu_net([np.eye(2), np.ones((1, 2))]))
    assert {r.method for r in rows} == set(lv.METHODS)
    assert len(rows) == 3 * len(lv.METHODS)


def test_k2_budget_gives_a_certified_upper_bound_with_gap():
    rng = np.random.default_rng(0)
    ws = [rng.standard_normal((8, 5)), rng.standard_normal((8, 8)), rng.standard_normal((2, 8))]
    net = _relu_net(ws)
    partial = lv.bound(net, "k2", norm="inf", max_nodes=5)
    full = lv.bound(net, "k2", norm="inf", max_nodes=10**6, time_limit=60)
    assert partial.kind == "upper" and not partial.quantity_exact and partial.lower is None
    assert partial.details["best_vertex"] <= full.value <= partial.value
    assert partial.details["k2_gap"] >= partial.value - partial.details["best_vertex"] > 0
    assert full.kind == "upper" and full.quantity_exact and full.lower is None
    assert full.details["k2_gap"] <= 1e-8 * full.value
    assert full.value <= lv.bound(net, "k4", norm="inf").value * (1 + 1e-12)


def test_k2_brute_force_agrees_on_small_nets():
    rng = np.random.default_rng(1)
    ws = [rng.standard_normal((4, 3)), rng.standard_normal((3, 4)), rng.standard_normal((2, 3))]
    net = _relu_net(ws)
    import itertools

    for p in ("1", "2", "inf"):
        best = 0.0
        for d1 in itertools.product([0, 1], repeat=4):
            for d2 in itertools.product([0, 1], repeat=3):
                best = max(best, _norm(ws[2] @ np.diag(d2) @ ws[1] @ np.diag(d1) @ ws[0], p))
        k2 = lv.bound(net, "k2", norm=p, max_nodes=10**6, time_limit=60)
        assert k2.value >= best * (1 - 1e-12) and k2.value == pytest.approx(best, rel=1e-6)


def test_general_slope_interval_bounds():
    w1 = np.array([[1.0, -2.0], [0.5, 1.0]])
    w2 = np.array([[1.0, -1.0]])
    net = lv.Network([lv.Dense(w1), lv.LeakyReLU(Fraction(1, 10)), lv.Dense(w2)])
    k2 = lv.bound(net, "k2", norm="inf", max_nodes=10**5)
    import itertools

    brute = max(_norm(w2 @ np.diag(d) @ w1, "inf") for d in itertools.product([0.1, 1.0], repeat=2))
    assert k2.value == pytest.approx(brute, rel=1e-9)
    assert lv.bound(net, "k4", norm="inf").value >= brute


def test_network_starting_or_ending_with_an_activation():
    net = lv.Network([lv.ReLU(), lv.Dense([[1, -1]]), lv.Tanh()], input_shape=(2,))
    assert lv.bound(net, "kstar", norm="inf").exact_value == 2
    assert lv.bound(net, "k4", norm="inf").exact_value == 2  # D_1 = I, D_2 = I attain ||W||


def test_lower_bound_is_labelled_and_below_the_bounds():
    rng = np.random.default_rng(2)
    net = _relu_net([rng.standard_normal((5, 3)), rng.standard_normal((2, 5))], [rng.standard_normal(5), None])
    for p in ("1", "2", "inf"):
        lo = lv.lower_bound(net, p)
        assert lo.kind == "lower" and 0 < lo.value <= lv.bound(net, "k2", norm=p).value


def test_compare_on_a_cnn_gives_a_row_for_every_method():
    rng = np.random.default_rng(0)
    cnn = lv.Network([lv.Conv2d(rng.standard_normal((2, 1, 3, 3)), padding=1), lv.ReLU(), lv.MaxPool2d(2), lv.Flatten(),
                      lv.Dense(rng.standard_normal((3, 8)))], input_shape=(1, 4, 4))
    rows = lv.compare(cnn, norms=["inf"])
    assert {r.method for r in rows} == set(lv.METHODS)
    fc_only = [r for r in rows if r.method in ("kcp", "ksdp")]
    assert all(isinstance(r, lv.Skipped) and "layer 0 (Conv2d" in r.error for r in fc_only)
    with pytest.raises(ValueError, match="no conv option"):
        lv.bound(cnn, "kcp", norm="inf", conv="explicit")


# --------------------------------------------------------------------------- budgets, streaming (issue 16)


def _random_relu_net(seed, sizes):
    rng = np.random.default_rng(seed)
    ws = [rng.standard_normal((b, a)) for a, b in zip(sizes[:-1], sizes[1:])]
    return _relu_net(ws, [rng.standard_normal(w.shape[0]) for w in ws])


def test_k2_budget_is_a_node_count_so_repeated_runs_agree():
    net = _random_relu_net(3, (6, 12, 12, 3))
    runs = [lv.bound(net, "k2", norm="2", max_nodes=60) for _ in range(2)]
    assert runs[0].value == runs[1].value and runs[0].details == runs[1].details
    assert runs[0].details["stopped_by"] == "max_nodes" and not runs[0].details["closed"]
    assert any("max_nodes=600" in a for a in runs[0].assumptions)  # the advice names the Python keyword
    # the value is still an upper bound of the dense Jacobian norm at sampled points
    assert runs[0].value >= lv.lower_bound(net, "2").value


def test_k2_reports_progress_in_nodes():
    calls = []
    lv.bound(_random_relu_net(3, (6, 12, 12, 3)), "k2", norm="2", max_nodes=400,
             progress=lambda done, total: calls.append((done, total)))
    assert len(calls) >= 3 and all(total == 400 for _, total in calls)
    done = [d for d, _ in calls]
    assert done == sorted(done) and done[-1] <= 402


def test_compare_time_budget_skips_the_rows_not_started():
    net = _random_relu_net(0, (3, 5, 2))
    rows = lv.compare(net, norms=["1", "2"], methods=["k4", "kstar", "lipsdp"], time_limit=1e-9)
    assert len(rows) == 6
    for row in rows:
        assert isinstance(row, lv.Skipped)
        refusal = lv.METHODS[row.method].norm_refusal(row.norm)
        assert row.error == refusal if refusal else row.error.startswith("time budget exhausted (time_limit=1e-09")
    with pytest.raises(ValueError, match="time_limit must be >= 0"):
        lv.compare(net, time_limit=-1)


def test_compare_streams_every_row_as_it_completes():
    net = _random_relu_net(0, (3, 5, 2))
    seen, started = [], []
    rows = lv.compare(net, norms=["inf", "2"], on_row=seen.append, progress=lambda m, n: started.append((m, n)))
    assert seen == list(rows) and [(r.method, r.norm) for r in rows] == started


def test_ksdp_sdp_count_budget_and_time_cap():
    net = _random_relu_net(5, (2, 4, 3))
    with pytest.raises(lv.NotApplicableError, match=r"3 SDPs .*\(one per output row for l∞\) > max_sdps=2"):
        lv.bound(net, "ksdp", "inf", max_sdps=2)
    full = lv.bound(net, "ksdp", "inf")
    capped = lv.bound(net, "ksdp", "inf", time_limit=1e-9)  # no row starts: every row keeps min(K4, KCP)
    assert capped.details["time_capped_rows"] == [0, 1, 2] and capped.details["certified_rows"] == 0
    assert full.value <= capped.value <= min(lv.bound(net, "k4", "inf").value, lv.bound(net, "kcp", "inf").value)
    w1, w2 = (np.asarray(layer.weight, dtype=float) for layer in net.layers if isinstance(layer, lv.Dense))
    assert capped.value >= np.max(np.abs(w2 @ w1).sum(axis=1)) - 1e-12  # all slopes 1 is a vertex of K2


def test_bound_and_compare_take_a_live_torch_module():
    torch = pytest.importorskip("torch")
    nn = torch.nn
    torch.manual_seed(0)
    module = nn.Sequential(nn.Linear(3, 4), nn.ReLU(), nn.Linear(4, 2)).double()
    w1, w2 = (m.weight.detach().numpy() for m in (module[0], module[2]))
    kstar = np.abs(w1).sum(axis=1).max() * np.abs(w2).sum(axis=1).max()  # product of the l∞ operator norms
    assert lv.bound(module, "kstar", norm="inf").value == pytest.approx(kstar, rel=1e-12)
    assert lv.bound(module, "kstar", norm="inf").value >= kstar
    rows = lv.compare(module, norms=["inf"], methods=["kstar", "k4"])
    assert rows.value("kstar", "inf") == pytest.approx(kstar, rel=1e-12)
    cnn = nn.Sequential(nn.Conv2d(1, 2, 3), nn.ReLU(), nn.Flatten(), nn.Linear(8, 2))
    rows = lv.compare(cnn, norms=["inf"], methods=["k4"], input_shape=(1, 4, 4))
    assert [lv.bounds._conv_of(r) for r in rows] == ["implicit", "explicit"]
    with pytest.raises(lv.ModelFormatError, match="input_shape"):
        lv.bound(cnn, "k4", norm="inf")
    with pytest.raises(TypeError, match="lv.load"):
        lv.bound([[1.0]], "k4", norm="inf")
    net = lv.from_torch(module)
    with pytest.raises(lv.ModelFormatError, match=r"input_shape=\(5,\) does not match"):
        lv.bound(net, "k4", norm="inf", input_shape=(5,))


def test_k2_starting_vertices_respect_the_node_budget():
    """l1 searches one problem per input column: past ``max_nodes`` only each problem's first vertex and root are
    evaluated (both needed for the certified upper end), not the five other starting vertices."""
    net = _random_relu_net(7, (40, 6, 2))
    b = lv.bound(net, "k2", norm="1", max_nodes=10)
    assert b.details["nodes"] <= 2 * 40 + 10 and b.details["stopped_by"] == "max_nodes"
    assert b.value >= lv.lower_bound(net, "1").value
    w1, w2 = (np.asarray(layer.weight, dtype=float) for layer in net.layers if isinstance(layer, lv.Dense))
    assert b.value >= np.abs(w2 @ w1).sum(axis=0).max() - 1e-12  # all slopes 1 is a vertex


def test_lower_bound_and_exact_take_a_live_torch_module():
    """``lv.lower_bound`` and ``lv.exact`` convert a ``torch.nn.Module`` as ``lv.bound`` does (issue 16 item 6)."""
    torch = pytest.importorskip("torch")
    nn = torch.nn
    module = nn.Sequential(nn.Linear(1, 2), nn.ReLU(), nn.Linear(2, 1)).double()
    with torch.no_grad():
        module[0].weight.copy_(torch.tensor([[1.0], [-1.0]]))
        module[0].bias.zero_()
        module[2].weight.copy_(torch.tensor([[1.0, 1.0]]))  # |x|: constant 1 in every norm
        module[2].bias.zero_()
    e = lv.exact(module, "inf")
    assert e.kind == "exact" and e.value == 1
    lo = lv.lower_bound(module, "inf", input_shape=(1,))
    assert lo.kind == "lower" and float(lo.value) == pytest.approx(1.0, rel=1e-12) and float(lo.value) <= 1.0


def test_k1_norm_cache_keys_on_content():
    """K1's verified norms of partial products are cached by a digest of the weights: the same net gives the same value
    from the cache; a net of the same shapes with other weights gets its own norms, equal to a cold computation."""
    import importlib

    k1_module = importlib.import_module("lipverify.bounds.k1")  # the package exports the function k1 under that name
    rng = np.random.default_rng(3)
    w1, w2, w3 = rng.standard_normal((6, 5)), rng.standard_normal((4, 6)), rng.standard_normal((2, 4))

    def net(scale):
        return lv.Network([lv.Dense(w1 * scale), lv.ReLU(), lv.Dense(w2), lv.ReLU(), lv.Dense(w3)])

    k1_module._NORMS.clear()
    first = lv.bound(net(1.0), "k1", norm=2, arithmetic="float").value
    filled = len(k1_module._NORMS)
    assert filled >= 3
    assert lv.bound(net(1.0), "k1", norm=2, arithmetic="float").value == first
    assert len(k1_module._NORMS) == filled  # every norm came from the cache
    warm = lv.bound(net(2.0), "k1", norm=2, arithmetic="float").value  # shares W2, W3 (and W3 W2) with the first net
    assert len(k1_module._NORMS) > filled
    k1_module._NORMS.clear()
    assert warm == lv.bound(net(2.0), "k1", norm=2, arithmetic="float").value
    assert warm > first
