"""No weight is rounded silently (lipverify.layers.as_param, used by Dense and Conv2d): every numpy dtype, Decimal,
long double, bool and string input.  Oracle: exact Fractions of the given values.  Proof: proofs/activations.md §5."""

from decimal import Decimal
from fractions import Fraction

import numpy as np
import pytest
import sympy

import lipverify as lv
from lipverify.errors import NotApplicableError, UnsupportedLayerError

try:  # onnx registers ml_dtypes' formats (bfloat16, float8, int4, ...) with numpy: test them too
    import ml_dtypes
except ImportError:  # pragma: no cover
    ml_dtypes = None

REFUSED_KINDS = set("bcMmOSUVT")  # bool, complex, datetime, timedelta, (object: separate), bytes, str, void, StringDType


def _extension(dt) -> str | None:
    """'float' / 'int' for ml_dtypes' real formats, None otherwise."""
    if ml_dtypes is None or dt.type is np.void or "complex" in dt.name:
        return None
    if dt.type in ml_dtypes.__dict__.values():
        return "int" if "int" in dt.name else "float"
    return None


def _all_dtypes():
    seen = {}
    for t in list(np.sctypeDict.values()) + list(np.typecodes["All"]):
        try:
            dt = np.dtype(t)
        except TypeError:
            continue
        seen[(dt.str, dt.name)] = dt
    return [seen[k] for k in sorted(seen)]


def _exact_value(v) -> Fraction:
    if isinstance(v, (int, np.integer)):
        return Fraction(int(v))
    if not hasattr(v, "as_integer_ratio") or _extension(np.asarray(v).dtype):
        return Fraction(float(np.asarray(v).astype(np.float32)))  # ml_dtypes formats widen exactly to float32
    p, q = v.as_integer_ratio()
    return Fraction(int(p), int(q))


def _assert_kept_exactly(layer, given):
    """Every entry's exact value equals the given one: either the float itself, or ``weight_exact`` with the
    float within the declared radius of it."""
    w = layer.weight
    rad = layer.weight_radius
    for idx in np.ndindex(given.shape):
        truth = _exact_value(given[idx])
        if layer.weight_exact is None:
            assert Fraction(float(w[idx])) == truth, (given.dtype, idx)
            assert rad is None
        else:
            e = layer.weight_exact[idx]
            assert sympy.Rational(truth.numerator, truth.denominator) == e, (given.dtype, idx)
            r = Fraction(0) if rad is None else Fraction(float(rad[idx]))
            assert abs(Fraction(float(w[idx])) - truth) <= r, (given.dtype, idx)


def _samples(dt):
    """A 3x1 array of awkward values of the dtype."""
    if _extension(dt) == "int":
        return np.array([[1], [0], [1]]).astype(dt)
    if _extension(dt) == "float":
        return np.array([[1 / 3], [3.0], [0.5]]).astype(dt)
    if dt.kind in "iu":
        info = np.iinfo(dt)
        return np.array([[info.max], [info.min], [info.max - 1]], dtype=dt)
    if dt.kind == "f":
        one = dt.type(1)
        third = one / dt.type(3)
        big = dt.type(2) ** (dt.type(60) if dt.itemsize > 2 else dt.type(15)) + one
        return np.array([[third], [big], [np.finfo(dt).tiny]], dtype=dt)
    if dt.kind == "b":
        return np.array([[True], [False], [True]], dtype=dt)
    if dt.kind == "V":
        return np.zeros((3, 1), dtype="V8")
    if dt.kind in "Mm":
        return np.array([[1], [2], [3]]).astype(dt if dt.str[-1] == "]" else np.dtype(dt.str + "[s]"))
    return np.array([[1], [2], [3]]).astype(dt)


@pytest.mark.parametrize("dt", [d for d in _all_dtypes() if d.kind != "O"], ids=lambda d: f"{d.name}:{d.str}")
def test_every_numpy_dtype_is_kept_exactly_or_refused(dt):
    arr = _samples(dt)
    if _extension(dt):
        _assert_kept_exactly(lv.Dense(arr), arr)
        return
    if dt.kind in REFUSED_KINDS:
        with pytest.raises(TypeError, match="Dense weight"):
            lv.Dense(arr)
        return
    assert dt.kind in "iuf", dt
    if dt.kind == "f" and dt.itemsize > 8:  # long double: tiny (below the float64 range) becomes a radius
        layer = lv.Dense(arr)
        _assert_kept_exactly(layer, arr)
        assert layer.weight_exact is not None
        return
    _assert_kept_exactly(lv.Dense(arr), arr)


def test_float32_and_small_integers_are_exact_floats_without_radius():
    for arr in (np.array([[0.1], [3.0]], dtype=np.float32), np.array([[-128], [127]], dtype=np.int8),
                np.array([[2**53], [-(2**53)]], dtype=np.int64), np.array([[2**63]], dtype=np.uint64)):
        layer = lv.Dense(arr)
        assert layer.weight_exact is None and layer.weight_radius is None
        _assert_kept_exactly(layer, arr)


def test_large_int64_array_is_kept_exact():
    w1 = np.array([[2**53 + 1], [2**53]], dtype=np.int64)
    layer = lv.Dense(w1)
    assert layer.weight_exact == sympy.Matrix([[2**53 + 1], [2**53]])
    assert layer.weight_radius is not None and layer.weight_radius[0, 0] >= 1


def test_issue_18_int64_network_has_constant_one():
    w1 = np.array([[2**53 + 1], [2**53]], dtype=np.int64)
    net = lv.Network([lv.Dense(w1), lv.ReLU(), lv.Dense([[1, -1]])])  # relu((2^53+1)x) - relu(2^53 x)
    assert lv.exact(net).value == 1
    checked = 0
    for method in lv.METHODS:
        for p in lv.NORMS:
            try:
                b = lv.bound(net, method, norm=p)
            except (NotApplicableError, UnsupportedLayerError):
                continue
            if b.value is not None and b.kind in ("upper", "exact"):
                assert float(b.value) >= 1, (method, p, b.value)
                checked += 1
    assert checked >= 10
    linear = lv.Network([lv.Dense(w1), lv.Dense([[1, -1]])])
    assert lv.bound(linear, "lipsdp", norm=2).value >= 1


def test_uint64_beyond_2_53_is_kept_exact():
    arr = np.array([[2**64 - 1], [2**53 + 1]], dtype=np.uint64)
    layer = lv.Dense(arr)
    assert layer.weight_exact == sympy.Matrix([[2**64 - 1], [2**53 + 1]])
    _assert_kept_exactly(layer, arr)


def test_decimal_weight_is_kept_exact():
    d = Decimal("0.30000000000000000001")
    layer = lv.Dense([[d]])
    assert layer.weight_exact[0, 0] == sympy.Rational(30000000000000000001, 10**20)
    assert abs(Fraction(float(layer.weight[0, 0])) - Fraction(d)) <= Fraction(float(layer.weight_radius[0, 0]))
    b = lv.exact(lv.Network([layer]))
    assert b.kind == "exact" and b.value == sympy.Rational(30000000000000000001, 10**20)
    assert b.value != sympy.Rational(0.3)


def test_long_double_scalars_and_arrays_are_kept_exact():
    third = np.longdouble(1) / 3
    if Fraction(*third.as_integer_ratio()) == Fraction(float(third)):
        pytest.skip("np.longdouble is binary64 on this platform")
    for data in ([[third, 0.5]], np.array([[third, 0.5]], dtype=np.longdouble)):
        layer = lv.Dense(data)
        assert layer.weight_exact[0, 0] == sympy.Rational(*map(int, third.as_integer_ratio()))
        assert layer.weight_exact[0, 1] == sympy.Rational(1, 2)
        assert layer.weight_radius[0, 0] > 0
    exact_floats = np.array([[0.25, -3.0]], dtype=np.longdouble)
    assert lv.Dense(exact_floats).weight_exact is None


def test_mixed_list_of_floats_and_large_integers_is_kept_exact():
    layer = lv.Dense([[0.5, 2**53 + 1]])
    assert layer.weight_exact == sympy.Matrix([[sympy.Rational(1, 2), 2**53 + 1]])
    small = lv.Dense([[0.5, 3]])  # every entry is a float64: the floats are exact
    assert small.weight_radius is None


@pytest.mark.parametrize("bad", [[[True]], [[np.bool_(False)]], [["1"]], [[b"1"]], [[1.0, "2"]], np.array([[True]]),
                                 np.array([["1"]]), [[1 + 2j]], [[object()]]])
def test_bool_and_string_weights_raise(bad):
    with pytest.raises(TypeError, match="Dense weight"):
        lv.Dense(bad)


def test_bool_and_string_biases_and_conv_kernels_raise():
    with pytest.raises(TypeError, match="Dense bias"):
        lv.Dense([[1.0]], ["1"])
    with pytest.raises(TypeError, match="Dense bias"):
        lv.Dense([[1.0]], [True])
    with pytest.raises(TypeError, match="Conv2d kernel"):
        lv.Conv2d(np.ones((1, 1, 1, 1), dtype=bool))
    with pytest.raises(TypeError, match="Conv2d kernel"):
        lv.Conv2d([[[["1"]]]])


def test_conv_kernel_of_large_integers_is_kept_exact():
    k = np.array([[[[2**53 + 1]]]], dtype=np.int64)
    conv = lv.Conv2d(k)
    assert conv.weight_radius is not None and conv.weight_radius.max() >= 1


@pytest.mark.parametrize("bad", [Decimal("NaN"), Decimal("Infinity"), np.longdouble("inf")])
def test_non_finite_decimal_and_long_double_are_refused(bad):
    with pytest.raises(ValueError, match="Dense weight"):
        lv.Dense([[bad, 1]])


def test_long_double_beyond_the_float_range_is_refused():
    big = np.longdouble(2) ** 1100
    if not np.isfinite(big):
        pytest.skip("np.longdouble is binary64 on this platform")
    with pytest.raises(ValueError, match="overflows"):
        lv.Dense(np.array([[big]], dtype=np.longdouble))


def test_object_arrays_take_the_scalar_path():
    arr = np.array([[Decimal("0.1"), 2**60 + 1]], dtype=object)
    layer = lv.Dense(arr)
    assert layer.weight_exact == sympy.Matrix([[sympy.Rational(1, 10), 2**60 + 1]])
    with pytest.raises(TypeError, match="Dense weight"):
        lv.Dense(np.array([[1.0, True]], dtype=object))
