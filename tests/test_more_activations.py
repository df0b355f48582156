"""ELU, Softplus, Hardtanh/ReLU6, Hardswish, Mish, LogSigmoid, Hardsigmoid (issue 13 item 3) and the final softmax
(item 6).

Oracles: mpmath at 40 digits (formulas written here), PyTorch's modules, ONNX's reference evaluator, dense sampled
Jacobians written here, python-flint ``arb`` for Mish's slope interval.  Proof: proofs/activations.md §6.
"""

import io
import json
import warnings
from fractions import Fraction

import mpmath as mp
import numpy as np
import onnx
import pytest
import sympy
from onnx import TensorProto, helper
from onnx.reference import ReferenceEvaluator

import lipverify as lv
from lipverify.errors import ModelFormatError, NotApplicableError
from lipverify.io.onnx import from_onnx_model

torch = pytest.importorskip("torch")
nn = torch.nn

mp.mp.dps = 40

# --------------------------------------------------------------------------- oracles (mpmath, written here)


def _hardsig(a, b):
    a, b = mp.mpf(Fraction(a).numerator) / Fraction(a).denominator, mp.mpf(Fraction(b).numerator) / Fraction(b).denominator
    return (lambda x: min(max(a * x + b, 0), 1), lambda x: a if 0 < a * x + b < 1 else mp.mpf(0))


def _mish_d(x):
    t = mp.tanh(mp.log1p(mp.exp(x)))
    return t + x * (1 - t * t) / (1 + mp.exp(-x))


def _oracle(act):
    """``(σ, σ')`` in mpmath for the activation ``act`` (its parameters read from its describe-independent fields)."""
    k = act.kind
    if k == "ELU":
        a = mp.mpf(float(act.alpha))
        return (lambda x: x if x > 0 else a * mp.expm1(x)), (lambda x: mp.mpf(1) if x > 0 else a * mp.exp(x))
    if k == "Softplus":
        b = mp.mpf(float(act.beta))
        return (lambda x: mp.log1p(mp.exp(b * x)) / b), (lambda x: 1 / (1 + mp.exp(-b * x)))
    if k in ("Hardtanh", "ReLU6"):
        lo, hi = float(act.min_val), float(act.max_val)
        return (lambda x: min(max(x, lo), hi)), (lambda x: mp.mpf(1 if lo < x < hi else 0))
    if k == "Hardswish":
        return ((lambda x: x * min(max(x + 3, 0), 6) / 6),
                (lambda x: mp.mpf(0) if x < -3 else (mp.mpf(1) if x > 3 else (2 * x + 3) / 6)))
    if k == "Mish":
        return (lambda x: x * mp.tanh(mp.log1p(mp.exp(x)))), _mish_d
    if k == "LogSigmoid":
        return (lambda x: -mp.log1p(mp.exp(-x))), (lambda x: 1 / (1 + mp.exp(x)))
    if k == "Hardsigmoid":
        return _hardsig(act.alpha, act.beta)
    raise AssertionError(k)


ACTS = [lv.ELU(), lv.ELU(0.5), lv.ELU(2.0), lv.Softplus(), lv.Softplus(2.0), lv.Hardtanh(), lv.Hardtanh(-2.0, 3.0),
        lv.ReLU6(), lv.Hardswish(), lv.Mish(), lv.LogSigmoid(), lv.Hardsigmoid(), lv.Hardsigmoid(0.2, 0.5)]
IDS = [a.describe() for a in ACTS]
TORCH = [nn.ELU(), nn.ELU(0.5), nn.ELU(2.0), nn.Softplus(), nn.Softplus(2.0), nn.Hardtanh(), nn.Hardtanh(-2.0, 3.0),
         nn.ReLU6(), nn.Hardswish(), nn.Mish(), nn.LogSigmoid(), nn.Hardsigmoid(), None]
KINKS = [-6.0, -3.0, -2.0, -1.0, 0.0, 1.0, 2.5, 3.0, 6.0]


def _grid() -> np.ndarray:
    logs = np.logspace(-8, np.log10(700.0), 60)
    near = [k + d for k in KINKS for d in (-1e-9, 1e-9, -1e-3, 1e-3)]
    return np.unique(np.concatenate([np.linspace(-12.0, 12.0, 481), logs, -logs, near, [0.0]]))


GRID = _grid()


# --------------------------------------------------------------------------- facts against the oracles


@pytest.mark.parametrize("act", ACTS, ids=IDS)
def test_forward_and_derivative_errors_bound_the_distance_to_the_exact_values(act):
    f, df = _oracle(act)
    kinks = {x for pair in act.kinks for x in pair}
    val, err = act.forward(GRID), act.forward_error(GRID)
    dval, derr = act.derivative(GRID), act.derivative_error(GRID)
    for x, v, e, d, de in zip(GRID, val, err, dval, derr):
        exact = f(mp.mpf(float(x)))
        assert abs(mp.mpf(float(v)) - exact) <= mp.mpf(float(e)), (x, v, exact, e)
        if float(x) not in kinks:
            exact_d = df(mp.mpf(float(x)))
            assert abs(mp.mpf(float(d)) - exact_d) <= mp.mpf(float(de)), (x, d, exact_d, de)


@pytest.mark.parametrize("act", ACTS, ids=IDS)
def test_slope_interval_contains_the_derivative_sampled_densely(act):
    _, df = _oracle(act)
    lo, hi = act.slope_interval
    xs = np.concatenate([np.linspace(-30.0, 30.0, 1201), np.linspace(-3, 3, 601), GRID])
    with mp.workdps(20):
        values = [df(mp.mpf(float(x))) for x in xs]
    assert all(lo <= v <= hi for v in values)
    assert min(values) < lo + 0.01 and max(values) > hi - 0.01  # and it is tight (within 0.01)


@pytest.mark.parametrize("act", ACTS, ids=IDS)
@mp.workdps(20)
def test_range_on_and_narrow_slopes_contain_sampled_values(act):
    f, df = _oracle(act)
    rng = np.random.default_rng(13)
    centres = np.concatenate([rng.uniform(-8, 8, 24), [-2.25, -1.5, -1.19, 0.0, 1.49, 3.0, -3.0, 6.0]])
    widths = np.concatenate([rng.uniform(0, 4, 24), [0.5, 1.0, 0.1, 2.0, 0.3, 0.2, 7.0, 0.5]])
    lo, hi = centres - widths / 2, centres + widths / 2
    a, b = act.range_on(lo, hi)
    s_lo, s_hi = act.narrow_slopes(lo, hi)
    for i in range(len(lo)):
        xs = [mp.mpf(float(x)) for x in np.linspace(lo[i], hi[i], 25)]
        ys = [f(x) for x in xs]
        assert all(a[i] <= y <= b[i] for y in ys), (lo[i], hi[i], a[i], b[i], min(ys), max(ys))
        secants = [(ys[j + 1] - ys[j]) / (xs[j + 1] - xs[j]) for j in range(len(xs) - 1) if xs[j + 1] > xs[j]]
        ds = [df(x) for x in xs[1:-1]]
        slack = mp.mpf(10) ** -15  # the rounding of the 20-digit secants
        assert all(s_lo[i] - slack <= v <= s_hi[i] + slack for v in secants + ds), (lo[i], hi[i], s_lo[i], s_hi[i])


def test_hardswish_and_mish_ranges_reach_below_the_ends():
    """Non-monotone: the minimum inside the interval (-3/8 at -3/2; -0.30884... at -1.19243...) is enclosed."""
    a, b = lv.Hardswish().range_on(np.array([-2.0]), np.array([-1.0]))
    assert a[0] <= -0.375 < -1 / 3 <= b[0]  # the ends give -1/3 only
    a, _ = lv.Mish().range_on(np.array([-2.0]), np.array([-0.5]))
    assert a[0] <= -0.3088434130172504 and a[0] > -0.30885


@pytest.mark.parametrize("act", ACTS, ids=IDS)
def test_sympy_form_equals_forward(act):
    x = sympy.Symbol("x", real=True)
    g = sympy.lambdify(x, act.sympy_apply(x), "mpmath")
    pts = np.array([-7.5, -3.0, -2.2, -1.5, -0.3, 0.0, 0.4, 1.7, 3.0, 5.5, 9.0])
    got = act.forward(pts)
    for p, v in zip(pts, got):
        assert abs(float(g(mp.mpf(float(p)))) - v) <= 1e-12 * (1 + abs(v))


def test_mish_slopes_curvature_and_monotonicity_are_proven_by_arb():
    """The claims of proofs/activations.md §6 on [-20, 20], by bisection in ball arithmetic (tails: analytic)."""
    from flint import arb, ctx

    old = ctx.prec
    ctx.prec = 64
    try:
        def parts(x):
            w = x.exp()
            return w, w * w + 2 * w + 2

        def d1(x):
            w, d = parts(x)
            return w * (w + 2) / d + x * 4 * w * (w + 1) / (d * d)

        def d2(x):
            w, d = parts(x)
            return 2 * (4 * w * (w + 1) / (d * d)) + x * (4 * w * ((2 * w + 1) * d - 4 * w * (w + 1) ** 2) / d ** 3)

        def prove(f, a, b, ok):
            stack = [(arb(a), arb(b), 0)]
            while stack:
                lo, hi, k = stack.pop()
                if ok(f(lo.union(hi))):
                    continue
                assert k < 60, (lo, hi)
                mid = arb(((lo + hi) / 2).mid())
                stack += [(lo, mid, k + 1), (mid, hi, k + 1)]

        s_lo, s_hi = (arb(v.numerator) / v.denominator for v in lv.Mish.slopes.fractions)
        prove(d1, -20, 20, lambda v: bool(v > s_lo) and bool(v < s_hi))
        prove(d1, -20, "-1.19243122", lambda v: bool(v < 0))
        prove(d1, "-1.19243121", 0, lambda v: bool(v > 0))
        prove(d2, -20, 20, lambda v: bool(abs(v) < arb(lv.Mish.curvature)))
        prove(d2, -20, "-2.2564", lambda v: bool(v < 0))  # Mish' decreases, increases, decreases (narrow_slopes)
        prove(d2, "-2.2563", "1.4905", lambda v: bool(v > 0))
        prove(d2, "1.4906", 20, lambda v: bool(v < 0))
    finally:
        ctx.prec = old


def test_slope_check_refuses_a_wrong_declaration():
    class NarrowMish(lv.Mish):
        slopes = lv.Mish.slopes.__class__(Fraction(0), Fraction(1))  # the negative slopes left out

    with pytest.raises(ValueError, match="NarrowMish: forward contradicts the declared slope interval"):
        NarrowMish()


def test_parameters_are_checked():
    with pytest.raises(ValueError, match="Softplus: beta must be positive"):
        lv.Softplus(0.0)
    with pytest.raises(ValueError, match="min_val = 2.0 must be below max_val = 1.0"):
        lv.Hardtanh(2.0, 1.0)
    with pytest.raises(ValueError, match="ReLU6: the ends are 0 and 6"):
        lv.ReLU6(0.0, 5.0)
    with pytest.raises(ValueError, match="Hardsigmoid: alpha must not be 0"):
        lv.Hardsigmoid(0, 0.5)
    assert lv.Hardsigmoid().slope_interval[1] >= 1 / 6 and lv.Hardsigmoid().slopes[1] == sympy.Rational(1, 6)


def test_lower_bound_certifies_no_derivative_near_a_kink_away_from_zero():
    """Regression: the kink test of lower.py was ``|z| <= ez`` (a kink at 0 only)."""
    from lipverify.lower import _derivative_interval

    assert _derivative_interval(lv.Hardtanh(), np.array([1.0]), np.array([0.0])) is None
    assert _derivative_interval(lv.Hardswish(), np.array([-3.0]), np.array([1e-300])) is None
    assert _derivative_interval(lv.ReLU6(), np.array([6.0]), np.array([0.0])) is None
    lo, hi = _derivative_interval(lv.Hardtanh(), np.array([0.5]), np.array([1e-16]))
    assert lo[0] <= 1.0 <= hi[0]


# --------------------------------------------------------------------------- bounds on a small network


def _float_derivative(act, z):
    """σ' in float numpy, written here (closed forms)."""
    k = act.kind
    if k == "ELU":
        return np.where(z > 0, 1.0, float(act.alpha) * np.exp(np.minimum(z, 0)))
    if k == "Softplus":
        return 1 / (1 + np.exp(-float(act.beta) * z))
    if k in ("Hardtanh", "ReLU6"):
        return ((z > float(act.min_val)) & (z < float(act.max_val))).astype(float)
    if k == "Hardswish":
        return np.where(z < -3, 0.0, np.where(z > 3, 1.0, (2 * z + 3) / 6))
    if k == "Mish":
        t = np.tanh(np.log1p(np.exp(z)))
        return t + z * (1 - t * t) / (1 + np.exp(-z))
    if k == "LogSigmoid":
        return 1 / (1 + np.exp(z))
    if k == "Hardsigmoid":
        a, b = float(Fraction(act.alpha)), float(Fraction(act.beta))
        return np.where((a * z + b > 0) & (a * z + b < 1), a, 0.0)
    raise AssertionError(k)


def _dense_jacobian_lower(w1, b1, w2, act, n: int = 4000) -> dict:
    """Per norm, the max over sampled x of ||W2 diag(σ'(W1 x + b1)) W1||_p (dense Jacobians, float)."""
    xs = np.random.default_rng(7).uniform(-5, 5, (n, w1.shape[1]))
    d = _float_derivative(act, xs @ w1.T + b1)
    jac = np.einsum("ij,nj,jk->nik", w2, d, w1)
    return {"inf": np.abs(jac).sum(axis=2).max(), "1": np.abs(jac).sum(axis=1).max(),
            "2": np.linalg.norm(jac, 2, axis=(1, 2)).max()}


@pytest.mark.parametrize("act", [lv.ELU(2.0), lv.Softplus(2.0), lv.Hardtanh(-2.0, 3.0), lv.ReLU6(), lv.Hardswish(),
                                 lv.Mish(), lv.LogSigmoid(), lv.Hardsigmoid()], ids=lambda a: a.describe())
def test_bounds_are_sound_against_a_sampled_dense_jacobian(act):
    rng = np.random.default_rng(3)
    w1, b1 = rng.normal(size=(5, 3)) * 1.5, rng.normal(size=5)
    w2, b2 = rng.normal(size=(2, 5)), rng.normal(size=2)
    net = lv.Network([lv.Dense(w1, b1), act, lv.Dense(w2, b2)])
    sampled = _dense_jacobian_lower(w1, b1, w2, act)
    for norm in ("inf", "1", "2"):
        for method in ("kstar", "k3", "k4"):
            try:
                b = lv.bound(net, method, norm)
            except NotApplicableError:
                continue
            assert b.kind == "upper" and float(b.value) >= sampled[norm] * (1 - 1e-9), (method, norm)


# --------------------------------------------------------------------------- PyTorch, ONNX, npz


@pytest.mark.parametrize("act,module", [(a, m) for a, m in zip(ACTS, TORCH) if m is not None],
                         ids=[i for i, m in zip(IDS, TORCH) if m is not None])
def test_forward_equals_pytorch_and_from_torch_imports_the_module(act, module):
    x = np.concatenate([np.linspace(-25, 25, 1001), GRID])
    want = module.double()(torch.from_numpy(x)).numpy()
    got = act.forward(x)
    assert np.allclose(got, want, rtol=1e-6, atol=1e-12)
    model = nn.Sequential(nn.Linear(2, 3), module, nn.Linear(3, 1)).double()
    net = lv.from_torch(model)
    assert net.layers[1].describe() == act.describe()
    xs = np.random.default_rng(0).normal(size=(64, 2)) * 4
    with torch.no_grad():
        assert np.allclose(net(xs), model(torch.from_numpy(xs)).numpy(), rtol=1e-6, atol=1e-12)


def test_torch_softplus_with_a_small_threshold_is_refused():
    with pytest.raises(ModelFormatError, match=r"'1' \(Softplus\): threshold=5 is not supported.*jump"):
        lv.from_torch(nn.Sequential(nn.Linear(2, 2), nn.Softplus(threshold=5.0)))


def _one_node(op, attrs=None, consts=(), opset=17, pre=()):
    """An ONNX model ``y = op(x, *consts)`` on float64 vectors of length 7 (``pre`` nodes before it)."""
    inits = [helper.make_tensor(f"c{i}", TensorProto.DOUBLE, [], [float(c)]) for i, c in enumerate(consts)]
    nodes = list(pre) + [helper.make_node(op, ["x" if not pre else "p", *[f"c{i}" for i in range(len(consts))]],
                                          ["y"], **(attrs or {}))]
    graph = helper.make_graph(nodes, "g", [helper.make_tensor_value_info("x", TensorProto.DOUBLE, [1, 7])],
                              [helper.make_tensor_value_info("y", TensorProto.DOUBLE, [1, 7])], initializer=inits)
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", opset)], ir_version=8)


ONNX_CASES = {
    "Elu": (_one_node("Elu", {"alpha": 0.7}), "ELU"),
    "Softplus": (_one_node("Softplus"), "Softplus"),
    "Clip": (_one_node("Clip", consts=(-2.0, 3.0)), "Hardtanh(-2.0, 3.0)"),
    "Clip06": (_one_node("Clip", consts=(0.0, 6.0)), "ReLU6"),
    "HardSwish": (_one_node("HardSwish"), "Hardswish"),
    "Mish": (_one_node("Mish", opset=18), "Mish"),
    "HardSigmoid": (_one_node("HardSigmoid", {"alpha": 1 / 6, "beta": 0.5}), "Hardsigmoid"),
    "LogSigmoid": (_one_node("Log", pre=[helper.make_node("Sigmoid", ["x"], ["p"])]), "LogSigmoid"),
}


@pytest.mark.parametrize("case", list(ONNX_CASES))
def test_onnx_import_equals_the_reference_evaluator(case):
    model, name = ONNX_CASES[case]
    onnx.checker.check_model(model)
    net = from_onnx_model(model)
    assert len(net.layers) == 1 and net.layers[0].describe().startswith(name)
    x = np.concatenate([np.linspace(-12, 12, 7 * 40), [-3.0, 3.0, -1.5, 0.0, 6.0, -2.0, 1e-8]]).reshape(-1, 7)
    ref = np.concatenate([ReferenceEvaluator(model).run(None, {"x": row[None]})[0] for row in x])
    # HardSwish: the reference evaluator uses alpha = 1/6 rounded to float32 (the spec says 1/6), which moves x alpha + 1/2
    # by ~1e-8 |x| and its value near x = -3 by more than 1e-6 relative; tolerance relative to |x| there
    atol = 1e-6 * np.abs(x) if case == "HardSwish" else 1e-12
    assert np.allclose(net(x), ref, rtol=1e-6, atol=atol)


def test_onnx_hardsigmoid_keeps_the_float32_alpha_exactly():
    net = from_onnx_model(ONNX_CASES["HardSigmoid"][0])
    alpha = Fraction(float(np.float32(1 / 6)))  # the file's slope, slightly above 1/6
    assert net.layers[0].slopes[1] == sympy.Rational(alpha.numerator, alpha.denominator)


@pytest.mark.parametrize("act", ACTS, ids=IDS)
def test_onnx_and_npz_round_trips_and_the_export_runs_in_the_reference_evaluator(act, tmp_path):
    net = lv.Network([lv.Dense(np.array([[1.0, -2.0], [0.5, 3.0], [-1.0, 0.25]]), [0.5, -1.0, 2.0]), act,
                      lv.Dense(np.ones((1, 3)))])
    x = np.random.default_rng(1).normal(size=(40, 2)) * 4
    for ext in ("onnx", "npz"):
        path = tmp_path / f"net.{ext}"
        lv.save(net, path)
        back = lv.load(path)
        assert [layer.describe() for layer in back.layers] == [layer.describe() for layer in net.layers]
        assert np.array_equal(back(x), net(x))
    ref = ReferenceEvaluator(onnx.load(tmp_path / "net.onnx")).run(None, {"input": x})[0]
    assert np.allclose(ref, net(x), rtol=1e-6, atol=1e-12)


def test_torch_onnx_export_of_each_module_is_imported():
    """The legacy exporter's forms: Mul-Softplus-Div (beta), Clip, Softplus-Tanh-Mul (Mish), Sigmoid-Log."""
    for act, module in zip(ACTS, TORCH):
        if module is None:
            continue
        model = nn.Sequential(nn.Linear(2, 3), module, nn.Linear(3, 1))
        buf = io.BytesIO()
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            torch.onnx.export(model, torch.zeros(1, 2), buf, dynamo=False, opset_version=17)
        net = from_onnx_model(onnx.load_from_string(buf.getvalue()))
        assert type(net.layers[1]) is type(act), (act, net.layers)
        xs = np.random.default_rng(2).normal(size=(32, 2)) * 4
        with torch.no_grad():
            want = model(torch.from_numpy(xs).float()).double().numpy()
        assert np.allclose(net(xs), want, rtol=1e-5, atol=1e-5)  # float32 model


# --------------------------------------------------------------------------- the final softmax (item 6)


def _softmax_model(last):
    torch.manual_seed(0)
    return nn.Sequential(nn.Linear(3, 4), nn.Tanh(), nn.Linear(4, 3), last).double()


@pytest.mark.parametrize("last", [nn.Softmax(dim=1), nn.LogSoftmax(dim=-1)], ids=["Softmax", "LogSoftmax"])
def test_from_torch_strips_a_final_softmax_only_when_told(last):
    model = _softmax_model(last)
    kind = type(last).__name__
    with pytest.raises(ModelFormatError, match=f"ends in {kind}.*strip_output_softmax=True.*--logits"):
        lv.from_torch(model)
    net = lv.from_torch(model, strip_output_softmax=True)
    assert net.stripped_output == kind and len(net.layers) == 3
    xs = np.random.default_rng(0).normal(size=(8, 3))
    with torch.no_grad():
        assert np.allclose(net(xs), model[:3](torch.from_numpy(xs)).numpy())
    note = f"bound of the logits: the model's final {kind} was removed"
    assert any(note in a for a in lv.bound(net, "kstar", "inf").assumptions)
    rows = lv.compare(net, norms=["inf"], methods=["kstar", "k1"])
    assert all(any(note in a for a in r.assumptions) for r in rows if isinstance(r, lv.Bound))
    assert any(note in a for a in lv.bound(net, "kstar", "inf", domain=(-np.ones(3), np.ones(3))).assumptions)
    assert not any("logits" in a for a in lv.bound(lv.from_torch(model[:3]), "kstar", "inf").assumptions)


def test_softmax_inside_the_network_stays_refused():
    model = nn.Sequential(nn.Linear(3, 3), nn.Softmax(dim=1), nn.Linear(3, 2))
    with pytest.raises(ModelFormatError, match=r"'1' \(Softmax\) is not the last module"):
        lv.from_torch(model, strip_output_softmax=True)


def test_onnx_final_softmax(tmp_path):
    w = helper.make_tensor("w", TensorProto.DOUBLE, [7, 7], np.eye(7).ravel().tolist())
    nodes = [helper.make_node("Gemm", ["x", "w"], ["h"], transB=1), helper.make_node("Softmax", ["h"], ["y"], axis=1)]
    graph = helper.make_graph(nodes, "g", [helper.make_tensor_value_info("x", TensorProto.DOUBLE, [1, 7])],
                              [helper.make_tensor_value_info("y", TensorProto.DOUBLE, [1, 7])], initializer=[w])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)], ir_version=8)
    path = tmp_path / "sm.onnx"
    onnx.save(model, path)
    with pytest.raises(ModelFormatError, match="ends in Softmax.*strip_output_softmax=True"):
        lv.load(path)
    net = lv.load(path, strip_output_softmax=True)
    assert net.stripped_output == "Softmax" and [layer.describe() for layer in net.layers] == ["Dense(7->7)"]


@pytest.mark.parametrize("command", ["bound", "compare"])
def test_cli_refuses_a_softmax_model_with_exit_code_2_and_accepts_logits(command, tmp_path, capsys):
    from lipverify.cli import main

    path = tmp_path / "m.pt"
    torch.save(_softmax_model(nn.Softmax(dim=1)), path)
    argv = [command, str(path), "--method", "kstar", "--no-lower", "--norm", "inf"]
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert "ends in Softmax" in err and "--logits" in err
    assert main(argv + ["--logits", "--json"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert out["stripped_output"] == "Softmax" and "bound of the logits" in out["note"]
    assert out["results"][0]["kind"] == "upper"
    assert main(argv + ["--logits"]) == 0
    assert "--logits: the final Softmax was removed" in capsys.readouterr().out
