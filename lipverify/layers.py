"""Layers: small immutable objects that declare facts about themselves.

A layer knows its output shape for a given input shape, its numpy forward pass and Jacobian, its
sympy form and, for activations, the interval ``[alpha, beta]`` that contains every value of its
derivative (the *slope interval*), a proven bound of its own float evaluation error, its range on an
interval and its slopes narrowed to an interval (``proofs/activations.md``).  The bound families in
:mod:`lipverify.bounds`, :mod:`lipverify.local` and :mod:`lipverify.lower` read these facts; they never guess.
An activation whose forward contradicts its declared slopes is refused when it is built.

Weights may be numpy arrays, nested lists, or sympy matrices whose entries are Rationals or
symbols.  No weight is rounded silently: exact input (integers and integer arrays beyond 2^53, Fractions,
Decimals, long doubles, sympy Rationals) is kept exactly in ``weight_exact``; ``weight`` is the nearest float
matrix and ``weight_radius`` bounds the conversion error entrywise.  NaN or infinite weights, and bool, string,
complex or date/time data, are refused when the layer is built.
"""

from __future__ import annotations

import dataclasses
import functools
import math
from dataclasses import dataclass, field
from decimal import Decimal
from fractions import Fraction
from typing import TYPE_CHECKING, Any, ClassVar

import numpy as np

from ._lazy import LazyModule, is_instance
from .errors import ShapeError
from .rigorous import _fraction_up, down, float_down, float_up, up
from .rigorous.evaluation import (  # noqa: F401  (the floating-point error model of the activations)
    _ETA,
    _U,
    LIBM_ABS,
    LIBM_REL,
    _add_up,
    _distance_from_zero,
    _erfc,
    _erfc_cap,
    _erfc_dsup,
    _exp_neg_dsup,
    _exp_upper,
    _expit,
    _lemma_r_error,
    _mul_up,
    _neg_exp,
    _Tracked,
)

if TYPE_CHECKING:
    import sympy
else:
    sympy = LazyModule("sympy")

Shape = tuple[int, ...]


# --------------------------------------------------------------------------- weight conversion
#
# No weight is rounded silently (proof: ``proofs/activations.md`` §5).  binary64, binary32 and binary16 floats are
# taken as the exact values they denote; integers, Fractions, Decimals, long doubles and sympy numbers are kept
# exactly (``ParamMatrix.exact``) with a proven entrywise radius ``|exact - float|``, unless every entry is exactly a
# float64 (then the float array is the exact value); ml_dtypes' narrow real formats (bfloat16, float8, int4, ...) are
# exact in float64; bools, strings, complex, date/time and void data are refused.

_REFUSED_KINDS = {"b": "bool", "U": "str", "S": "bytes", "V": "void or a non-real extension type", "M": "datetime64",
                  "m": "timedelta64", "c": "complex", "T": "string"}


def _refuse_scalar(v: Any, where: str) -> None:
    if isinstance(v, (bool, np.bool_)):
        raise TypeError(f"{where}: entry {v!r} is a bool; give numbers (1 or 0 if that is what is meant)")
    if isinstance(v, (str, bytes, np.str_, np.bytes_)):
        raise TypeError(f"{where}: entry {v!r} is a {type(v).__name__}, not a number; convert it explicitly")
    if isinstance(v, (complex, np.complexfloating)):
        raise TypeError(f"{where}: entry {v!r} is complex; weights must be real numbers")


def _is_float64_scalar(v: Any) -> bool:
    """A binary64/32/16 float: its value is exactly a float64."""
    return isinstance(v, (float, np.float16, np.float32, np.float64))


def _is_exact_scalar(v: Any) -> bool:
    return not isinstance(v, (bool, np.bool_)) and (
        isinstance(v, (int, np.integer, Fraction, Decimal)) or is_instance(v, "sympy", "Basic")
        or (isinstance(v, np.floating) and not _is_float64_scalar(v)))


def _is_float64_value(v: Any, where: str) -> bool:
    """Whether the exact number ``v`` equals a finite float64 (then ``float(v)`` is that float)."""
    r = _to_sympy_scalar(v, where)
    if not r.is_Rational:
        return False
    fr = Fraction(int(r.p), int(r.q))
    try:
        return Fraction(float(fr)) == fr
    except OverflowError:
        return False


def _exact_rational(v: Any, where: str) -> sympy.Rational:
    """The exact rational value of a finite float of any width or of a Decimal."""
    try:
        if isinstance(v, Decimal):
            fr = Fraction(v)
            return sympy.Rational(fr.numerator, fr.denominator)
        p, q = v.as_integer_ratio()
    except (ValueError, OverflowError):
        raise ValueError(f"{where}: entry {v} is not finite; NaN and inf weights are refused") from None
    return sympy.Rational(int(p), int(q))


def _to_sympy_scalar(v: Any, where: str) -> sympy.Expr:
    _refuse_scalar(v, where)
    if isinstance(v, Fraction):
        return sympy.Rational(v.numerator, v.denominator)
    if isinstance(v, (int, np.integer)):
        return sympy.Integer(int(v))
    if isinstance(v, (float, np.floating, Decimal)):
        return _exact_rational(v, where)
    if is_instance(v, "sympy", "Basic"):
        expr = sympy.sympify(v)
        if expr.has(sympy.nan, sympy.zoo, sympy.oo, -sympy.oo):
            raise ValueError(f"{where}: entry {v} is not finite")
        if isinstance(expr, sympy.Float):
            return sympy.Rational(expr)
        return expr
    raise TypeError(f"{where}: entry {v!r} of type {type(v).__name__} is not a number")


def _fraction_nearest(fr: Fraction) -> float:
    """The float nearest ``fr`` (Python's ``Fraction -> float`` is correctly rounded); ``±inf`` beyond the range."""
    try:
        return float(fr)
    except OverflowError:
        return math.inf if fr > 0 else -math.inf


@dataclass(frozen=True)
class ParamMatrix:
    """A parameter array kept as floats and, when given exactly, as a sympy matrix as well.

    ``exact`` is a sympy ``ImmutableMatrix`` (or ``None`` when the float array is the exact value); ``value`` is the
    nearest float array (``None`` when ``exact`` has free symbols); ``radius`` bounds ``|exact - value|``
    entrywise (``None`` when the floats are exact).
    """

    value: np.ndarray | None
    exact: sympy.ImmutableMatrix | None
    radius: np.ndarray | None
    shape: Shape

    @property
    def free_symbols(self) -> set[sympy.Symbol]:
        return set() if self.exact is None else set(self.exact.free_symbols)


def _integer_array_is_float(arr: np.ndarray) -> bool:
    """Whether every entry of an integer array is exactly a float64."""
    if arr.dtype.itemsize <= 4:
        return True
    small = arr <= 2**53 if arr.dtype.kind == "u" else (arr >= -(2**53)) & (arr <= 2**53)
    if np.all(small):
        return True
    big = arr[~small]
    return all(int(float(v)) == int(v) for v in big.tolist())


def _is_narrow_extension_type(dt: np.dtype) -> bool:
    """Whether ``dt`` is one of ml_dtypes' real formats (bfloat16, float8/6/4 variants, int4/int2/...; kind ``"V"``,
    registered by onnx) whose every value is a binary64 value: at most 52 mantissa bits and exponents within binary64's,
    or at most 53-bit integers, so ``astype(float64)`` is exact."""
    if dt.type is np.void or dt.names is not None or "complex" in dt.name:
        return False
    try:
        import ml_dtypes
    except ImportError:  # pragma: no cover - onnx brings it
        return False
    try:
        info = ml_dtypes.finfo(dt)
        return info.nmant <= 52 and info.maxexp <= 1024 and info.minexp >= -1022
    except (TypeError, ValueError):
        pass
    try:
        return ml_dtypes.iinfo(dt).bits <= 53
    except (TypeError, ValueError):
        return False


def _numeric_array(arr: np.ndarray, where: str) -> np.ndarray | None:
    """A non-object numpy array as the float64 array of its exact values, or ``None`` when some entry is not a
    float64 (then it is converted exactly, entry by entry); refuses non-real dtypes."""
    kind = arr.dtype.kind
    if kind == "V" and _is_narrow_extension_type(arr.dtype):
        return arr.astype(np.float64)
    if kind in _REFUSED_KINDS:
        raise TypeError(f"{where}: weights of dtype {arr.dtype} ({_REFUSED_KINDS[kind]}) are refused; give real numbers")
    if kind in "iu":
        return arr.astype(np.float64) if _integer_array_is_float(arr) else None
    if kind == "f":
        if arr.dtype.itemsize <= 8:
            return arr.astype(np.float64)
        with np.errstate(over="ignore", invalid="ignore"):
            f = arr.astype(np.float64)
        if np.all(np.isfinite(f)) and np.all(f.astype(arr.dtype) == arr):
            return f
        return None
    raise TypeError(f"{where}: weights of dtype {arr.dtype} are not supported; give real numbers")


def as_param(data: Any, *, ndim: int, where: str) -> ParamMatrix:
    """Convert weights or biases to a :class:`ParamMatrix` of rank ``ndim`` (1 or 2), never rounding silently.

    Raises ``ValueError``/``TypeError`` naming ``where`` for NaN/inf, non-numeric (bool, str, complex, ...) or
    wrong-rank input.
    """
    if is_instance(data, "sympy", "MatrixBase"):
        mat = sympy.ImmutableMatrix(data)
        if ndim == 1:
            if mat.cols != 1 and mat.rows != 1:
                raise ShapeError(f"{where}: expected a vector, got a sympy matrix of shape {mat.shape}")
            mat = sympy.ImmutableMatrix(list(mat))
        return _from_sympy(mat, ndim, where)
    if isinstance(data, np.ndarray) and data.dtype != object:
        floats = _numeric_array(data, where)
        if floats is None:
            return _exact_from_objects(data.astype(object), ndim, where)
        arr = floats
    else:
        try:
            arr = np.array(data, dtype=object)
        except ValueError as exc:  # ragged nested lists
            raise ShapeError(f"{where}: not a rectangular array ({exc})") from None
        if any(isinstance(v, (list, tuple, np.ndarray)) for v in arr.flat):
            raise ShapeError(f"{where}: not a rectangular array (rows of different lengths)")
        for v in arr.flat:
            _refuse_scalar(v, where)
        for v in arr.flat:
            if not (_is_exact_scalar(v) or _is_float64_scalar(v)):
                raise TypeError(
                    f"{where}: weights must be numeric (numpy array, nested lists of numbers or a sympy Matrix); "
                    f"entry {v!r} of type {type(v).__name__} is not a number"
                )
        exact_kind = [_is_exact_scalar(v) for v in arr.flat]
        if arr.size and (all(exact_kind) or not all(
                _is_float64_value(v, where) for v, e in zip(arr.flat, exact_kind) if e)):
            # all exact numbers (kept exact, as given), or floats mixed with numbers that no float64 equals
            return _exact_from_objects(arr, ndim, where)
        arr = np.array([float(v) for v in arr.flat], dtype=np.float64).reshape(arr.shape)
    if arr.ndim != ndim:
        raise ShapeError(f"{where}: expected a rank-{ndim} array, got shape {arr.shape}")
    if not np.all(np.isfinite(arr)):
        bad = tuple(int(i) for i in np.argwhere(~np.isfinite(arr))[0])
        raise ValueError(f"{where}: entry {bad} is {arr[bad]}; NaN and inf weights are refused")
    arr = np.array(arr, dtype=np.float64)
    arr.setflags(write=False)
    return ParamMatrix(arr, None, None, arr.shape)


def _exact_from_objects(arr: np.ndarray, ndim: int, where: str) -> ParamMatrix:
    if arr.ndim != ndim:
        raise ShapeError(f"{where}: expected a rank-{ndim} array, got shape {arr.shape}")
    flat = [_to_sympy_scalar(v, where) for v in arr.flat]
    rows = arr.shape[0]
    cols = arr.shape[1] if ndim == 2 else 1
    return _from_sympy(sympy.ImmutableMatrix(rows, cols, flat), ndim, where)


def _from_sympy(mat: sympy.ImmutableMatrix, ndim: int, where: str) -> ParamMatrix:
    entries = [_to_sympy_scalar(v, where) for v in mat]
    mat = sympy.ImmutableMatrix(mat.rows, mat.cols, entries)
    shape = (mat.rows,) if ndim == 1 else (mat.rows, mat.cols)
    if mat.free_symbols:
        return ParamMatrix(None, mat, None, shape)
    if not all(e.is_real for e in entries):
        raise TypeError(f"{where}: entries must be real numbers")
    values = np.zeros(len(entries))
    radius = np.zeros(len(entries))
    for i, e in enumerate(entries):
        if e.is_Rational:
            fr = Fraction(int(e.p), int(e.q))
            try:
                values[i] = float(fr)  # correctly rounded
            except OverflowError:
                values[i] = math.inf
            if math.isfinite(values[i]):
                radius[i] = _fraction_up(abs(Fraction(values[i]) - fr))
        else:
            values[i] = float(sympy.N(e, 30))
            if math.isfinite(values[i]):
                radius[i] = float_up(abs(sympy.Rational(values[i]) - e))
    if not np.all(np.isfinite(values)):
        raise ValueError(f"{where}: an entry overflows the float range")
    values = values.reshape(shape)
    radius = radius.reshape(shape)
    values.setflags(write=False)
    radius.setflags(write=False)
    return ParamMatrix(values, mat, radius if np.any(radius) else None, shape)


# --------------------------------------------------------------------------- base classes


class Layer:
    """Abstract base of every layer. Subclasses are frozen dataclasses."""

    #: short name used in messages
    kind: ClassVar[str] = "Layer"
    #: the step kind the method records speak of (``lipverify.bounds.records.STEP_KINDS``); ``None``: none of them
    step_kind: ClassVar[str | None] = None
    #: the layer maps each coordinate on its own and keeps the shape (activations): input-shape inference skips it
    elementwise: ClassVar[bool] = False

    def input_size(self) -> int | None:
        """The input size the layer fixes (a Dense layer's ``n_in``), else ``None``: :class:`~lipverify.Network`
        infers its input shape from the first layer that fixes one."""
        return None

    def map_activations(self, fn) -> Layer:
        """This layer with every activation inside it replaced by ``fn(activation)`` (itself when it has none)."""
        return self

    def output_shape(self, input_shape: Shape) -> Shape:
        """The shape produced from ``input_shape``; raises ``ValueError`` with the reason when it does not fit."""
        raise NotImplementedError

    def forward(self, x: np.ndarray) -> np.ndarray:
        """Forward pass on a batch ``x`` of shape ``(batch, *input_shape)``."""
        raise NotImplementedError

    @property
    def free_symbols(self) -> set[sympy.Symbol]:
        return set()

    def describe(self) -> str:
        return self.kind

    # Hooks of :class:`~lipverify.Network` (a layer without them has no Jacobian or no sympy form):
    # ``jvp(h, jac, shape_in, shape_out)`` pushes tangents ``jac`` (batch, *shape_in, n_cols) through the layer at
    # inputs ``h``; ``sympy_apply_vector(hvec, shape_in, shape_out)`` maps a sympy column (C order) to the output.




@functools.cache
def _const(value: sympy.Expr) -> tuple[float, float]:
    """The float nearest ``value`` and a proven bound of its distance from ``value``."""
    f = float(sympy.N(value, 40))
    return f, float_up(abs(sympy.Rational(f) - value))


# --------------------------------------------------------------------------- the slope check on construction

_SLOPES_CHECKED: dict = {}


def _check_key(act: Activation):
    try:
        if dataclasses.is_dataclass(act):
            params = tuple((f.name, repr(getattr(act, f.name, None))) for f in dataclasses.fields(act))
        else:
            params = tuple(sorted((k, repr(v)) for k, v in vars(act).items()))
        key = (type(act), params)
        hash(key)
        return key
    except TypeError:
        return None


def _check_points() -> tuple[np.ndarray, np.ndarray]:
    """Pairs ``x < y``: neighbours of a grid (dense near 0, log-spaced to ±1e4) and seeded random pairs."""
    logs = np.logspace(-8, 4, 97)
    grid = np.unique(np.concatenate([np.linspace(-8.0, 8.0, 641), logs, -logs, [0.0]]))
    rng = np.random.default_rng(20261202)
    a = np.concatenate([rng.uniform(-10, 10, 256), rng.choice(grid, 256)])
    b = np.concatenate([rng.uniform(-10, 10, 256), rng.choice(grid, 256)])
    x = np.concatenate([grid[:-1], np.minimum(a, b)])
    y = np.concatenate([grid[1:], np.maximum(a, b)])
    keep = x < y
    return x[keep], y[keep]


def check_slopes(act: Activation) -> None:
    """Refuse ``act`` when its ``forward`` contradicts its declared slope interval.

    For pairs ``x < y`` on a grid and at seeded random points, the exact secant ``(σ(y) - σ(x)) / (y - x)`` must lie in
    ``[α, β]`` (mean value theorem).  The float values of ``σ`` are only known within the declared
    ``forward_error`` plus one library error (``2 LIBM_REL |σ| + 2 LIBM_ABS``, for a subclass that overrides
    ``forward`` but inherits its parent's error bound); a pair is refused only when the whole interval of possible
    exact secants lies outside ``[α, β]``, so a truthful activation is never refused.  Results are cached per class
    and parameters.  Raises ``ValueError`` naming the class, the pair and the quotient.

    >>> class AbsReLU(ReLU):  # forward |x| while declaring slopes [0, 1]
    ...     def forward(self, x):
    ...         return np.abs(x)
    >>> try:
    ...     AbsReLU()
    ... except ValueError as exc:
    ...     print(str(exc)[:72])
    AbsReLU: forward contradicts the declared slope interval [0.0, 1.0]: at
    """
    key = _check_key(act)
    if key is not None and key in _SLOPES_CHECKED:
        return
    alpha, beta = act.slope_interval
    x, y = _check_points()
    pts = np.concatenate([x, y])
    with np.errstate(all="ignore"):
        f = np.asarray(act.forward(pts[:, None]), dtype=np.float64).reshape(pts.shape)
        err = _add_up(np.asarray(act.forward_error(pts[:, None]), dtype=np.float64).reshape(pts.shape),
                      _lemma_r_error(f))
        n = len(x)
        fx, fy, ex, ey = f[:n], f[n:], err[:n], err[n:]
        ok = np.isfinite(fx) & np.isfinite(fy) & np.isfinite(ex) & np.isfinite(ey)
        d = fy - fx
        e = _add_up(ex, ey)
        d_lo = down(down(d) - e)
        d_hi = up(up(d) + e)
        h = y - x
        h_lo, h_hi = down(h), up(h)
        most = up(np.maximum(beta * h_lo, beta * h_hi))
        least = down(np.minimum(alpha * h_lo, alpha * h_hi))
    bad = ok & ((d_lo > most) | (d_hi < least))
    if np.any(bad):
        i = int(np.argmax(bad))
        q = float(d[i] / h[i])
        raise ValueError(
            f"{type(act).__name__}: forward contradicts the declared slope interval [{alpha + 0.0!r}, {beta + 0.0!r}]: "
            f"at x = {float(x[i])!r}, y = {float(y[i])!r} the difference quotient (f(y) - f(x)) / (y - x) = {q!r} lies "
            "outside it "
            "(beyond the float error of the quotient); declare slopes that contain every derivative value of forward"
        )
    if key is not None:
        _SLOPES_CHECKED[key] = True


class _Slopes:
    """The attribute ``slopes`` of a built-in activation: on an instance, the exact pair as sympy Rationals, built on
    first access (sympy is imported then); :func:`slope_pair` reads the same pair as Fractions without sympy."""

    def __init__(self, lo: Fraction, hi: Fraction) -> None:
        self.fractions = (Fraction(lo), Fraction(hi))
        self._sympy = None

    def __get__(self, obj, owner=None):
        if obj is None:  # class access (the dataclass machinery): the declaration, as for a property
            return self
        if self._sympy is None:
            self._sympy = tuple(sympy.Rational(v.numerator, v.denominator) for v in self.fractions)
        return self._sympy


def slope_pair(act: Activation) -> tuple:
    """The exact interval ``act.slopes`` with every rational end as a ``Fraction`` (irrational sympy ends unchanged).

    Built-in activations declare their slopes with :class:`_Slopes`, read here without importing sympy; the same
    numbers as ``act.slopes``, so every bound built from them is unchanged.  A class may also give them as Fractions
    through a method ``_slope_fractions()`` defined next to its ``slopes`` (``LeakyReLU``, ``local.LocalActivation``);
    a subclass that overrides ``slopes`` alone is read through its ``slopes``."""
    for klass in type(act).__mro__:
        if "_slope_fractions" in vars(klass):
            return act._slope_fractions()
        if "slopes" in vars(klass):
            declared = vars(klass)["slopes"]
            if isinstance(declared, _Slopes):
                return declared.fractions
            break
    return tuple(_as_fraction(v) for v in act.slopes)


def _as_fraction(v: Any) -> Any:
    if isinstance(v, Fraction):
        return v
    if isinstance(v, (int, np.integer)) and not isinstance(v, (bool, np.bool_)):
        return Fraction(int(v))
    if is_instance(v, "sympy", "Rational"):
        return Fraction(int(v.p), int(v.q))
    return v


class _ActivationMeta(type):
    """Runs :func:`check_slopes` on every activation built (including user subclasses).  A subclass that redefines
    ``forward`` without declaring its own ``pieces`` loses the inherited ones (the exact methods must not trust
    the two-piece form of a parent whose forward pass was changed)."""

    def __init__(cls, name, bases, namespace, **kwargs):
        super().__init__(name, bases, namespace, **kwargs)
        if "forward" in namespace and "pieces" not in namespace:
            cls.pieces = None

    def __call__(cls, *args, **kwargs):
        obj = super().__call__(*args, **kwargs)
        if getattr(cls, "check_on_construction", True):
            check_slopes(obj)
        return obj


class Activation(Layer, metaclass=_ActivationMeta):
    """An elementwise activation with derivative values in ``[slope_lower, slope_upper]``.

    ``slopes`` are exact sympy Rationals; ``slope_interval`` the same interval rounded outward to floats.  Every
    activation declares, besides its slopes (``proofs/activations.md``):

    * ``forward_error(x)`` / ``derivative_error(x)``: elementwise bounds of ``|forward(x) - σ(x)|`` and
      ``|derivative(x) - σ'(x)|`` for float ``x`` (proven for the built-ins under assumption (A-libm); the defaults,
      for user activations, *assume* one library error ``2 LIBM_REL |value| + 2 LIBM_ABS``);
    * ``range_on(lo, hi)``: an outward-rounded enclosure of ``σ([lo, hi])`` elementwise (default: the mean-value
      enclosure ``σ(c) ± (r max(|α|, |β|) + forward_error(c))``, sound for any activation whose slopes are right);
    * ``narrow_slopes(lo, hi)``: per-element slope intervals of ``σ`` on ``[lo, hi]`` (default: the global one).

    Constructing an activation checks its slopes against its forward (:func:`check_slopes`).
    """

    kind: ClassVar[str] = "Activation"
    step_kind: ClassVar[str] = "activation"
    elementwise: ClassVar[bool] = True
    #: an upper bound of sup |σ''| away from kinks (0 for piecewise-linear activations)
    curvature: ClassVar[float] = 0.0
    #: run :func:`check_slopes` when an instance is built
    check_on_construction: ClassVar[bool] = True

    @property
    def slopes(self) -> tuple[sympy.Rational, sympy.Rational]:
        raise NotImplementedError

    @property
    def slope_interval(self) -> tuple[float, float]:
        lo, hi = slope_pair(self)
        return float_down(lo), float_up(hi)

    @property
    def is_piecewise_linear(self) -> bool:
        return False

    #: ``(left, right)``: the exact slopes (sympy) on ``z < 0`` and ``z > 0`` of an activation that is linear on each
    #: side of a single kink at 0 (ReLU, LeakyReLU, Identity); ``None`` otherwise.  Read by the exact methods.
    pieces: ClassVar[tuple | None] = None

    @property
    def kinks(self) -> tuple[tuple[float, float], ...]:
        """Float enclosures ``(lo, hi)`` of the points where σ may not be differentiable (default: 0 for a
        piecewise-linear activation, none otherwise); :mod:`lipverify.lower` certifies no derivative near them."""
        base = getattr(self, "base", None)
        if isinstance(base, Activation):  # local.LocalActivation: the kinks of its base
            return base.kinks
        return ((0.0, 0.0),) if self.is_piecewise_linear else ()

    def output_shape(self, input_shape: Shape) -> Shape:
        return input_shape

    def derivative(self, x: np.ndarray) -> np.ndarray:
        """Elementwise derivative (a one-sided one at kinks: an element of the Clarke derivative)."""
        raise NotImplementedError

    def sympy_apply(self, expr: sympy.Expr) -> sympy.Expr:
        raise NotImplementedError

    # rigorous (arb) facts, read by the exact smooth method (``proofs/exact.md``) ----------------------------------
    #: ``(σ(-∞), σ'(-∞), σ(+∞), σ'(+∞))`` (``None`` for an unbounded end); ``None``: not declared
    limits: ClassVar[tuple | None] = None

    def arb_forms(self, z):
        """``(σ(z), σ'(z), σ''(z))`` on a python-flint ``arb`` ball ``z``, rigorous; ``σ''`` is ``None`` where a kink lies
        in the ball.  Declared by the built-in activations (two-piece linear ones through :attr:`pieces`); others
        raise ``NotImplementedError`` and the exact smooth method refuses them."""
        if self.pieces is None:
            raise NotImplementedError(f"{self.describe()} declares no arb form")
        from flint import arb, fmpq

        left, right = (arb(fmpq(int(v.p), int(v.q))) for v in self.pieces)
        if z > 0:
            return right * z, right, arb(0)
        if z < 0:
            return left * z, left, arb(0)
        return (left * z).union(right * z), left.union(right), None

    def extended_enclosure(self, iv: tuple[float, float], slopes: tuple[float, float]) -> tuple[tuple, tuple]:
        """Float enclosures ``(σ(I), σ'(I))`` on an extended interval ``I = iv`` (ends may be infinite), from the
        activation's monotonicity pieces; ``slopes`` is its outward-rounded slope interval."""
        raise NotImplementedError(f"{self.describe()} declares no enclosure on unbounded intervals")

    def _ends(self, iv: tuple[float, float]) -> tuple[list, list]:
        """Value and derivative enclosures at the two ends of ``iv`` (limits at infinite ends)."""
        from flint import arb

        from .rigorous import arb_lower, arb_upper

        vals, ders = [], []
        for z, side in ((iv[0], 0), (iv[1], 2)):
            if np.isinf(z):
                v, d = self.limits[side], self.limits[side + 1]
                vals.append((np.inf, np.inf) if v is None else (v, v))
                ders.append((d, d))
            else:
                s0, s1, _ = self.arb_forms(arb(z))
                vals.append((arb_lower(s0), arb_upper(s0)))
                ders.append((arb_lower(s1), arb_upper(s1)))
        return vals, ders

    def map_activations(self, fn) -> Layer:
        return fn(self)

    def jvp(self, h: np.ndarray, jac: np.ndarray, shape_in: Shape, shape_out: Shape) -> np.ndarray:
        n, cols = h.shape[0], jac.shape[-1]
        d = self.derivative(h).reshape(n, -1, 1)
        return (jac.reshape(n, -1, cols) * d).reshape(n, *shape_out, cols)

    def sympy_apply_vector(self, hvec, shape_in: Shape, shape_out: Shape):
        return hvec.applyfunc(self.sympy_apply)

    # declared facts about the float evaluation ---------------------------------------------------
    def forward_error(self, x: np.ndarray) -> np.ndarray:
        """A bound of ``|forward(x) - σ(x)|`` elementwise.  Default (user activations): an *assumption*, one library
        error ``2 LIBM_REL |forward(x)| + 2 LIBM_ABS``; override it with a proven bound."""
        return _lemma_r_error(self.forward(x))

    def derivative_error(self, x: np.ndarray) -> np.ndarray:
        """A bound of ``|derivative(x) - σ'(x)|`` where ``σ`` is differentiable (default: an assumption, as
        :meth:`forward_error`)."""
        return _lemma_r_error(self.derivative(x))

    def range_on(self, lo: np.ndarray, hi: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Floats ``(a, b)`` with ``σ([lo, hi]) ⊆ [a, b]`` elementwise.

        Default: the mean-value enclosure ``σ(c) ± (r K + forward_error(c))`` with ``c`` the midpoint, ``r >= hi - c,
        c - lo`` and ``K = max(|α|, |β|)`` (``proofs/activations.md`` §3).
        """
        lo, hi = np.asarray(lo, dtype=np.float64), np.asarray(hi, dtype=np.float64)
        with np.errstate(over="ignore", invalid="ignore"):
            c = 0.5 * lo + 0.5 * hi
            c = np.minimum(np.maximum(c, lo), hi)
            r = np.maximum(up(c - lo), up(hi - c))
        a, b = self.slope_interval
        k = max(abs(a), abs(b))
        fc = np.asarray(self.forward(c), dtype=np.float64)
        spread = _add_up(_mul_up(k, r), self.forward_error(c))
        return _outward(fc, spread, fc, spread)

    def narrow_slopes(self, lo: np.ndarray, hi: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Per-element floats ``(α_i, β_i)`` containing ``σ'`` on ``[lo_i, hi_i]`` (default: the global interval)."""
        a, b = self.slope_interval
        shape = np.shape(lo)
        return np.full(shape, a), np.full(shape, b)


def _outward(f_lo, e_lo, f_hi, e_hi) -> tuple[np.ndarray, np.ndarray]:
    """``(down(f_lo - e_lo), up(f_hi + e_hi))``; NaN becomes an infinite end (never a number)."""
    with np.errstate(invalid="ignore", over="ignore"):
        a = down(down(f_lo) - e_lo)
        b = up(up(f_hi) + e_hi)
    return np.where(np.isnan(a), -np.inf, a), np.where(np.isnan(b), np.inf, b)


def _monotone_range(act: Activation, lo, hi) -> tuple[np.ndarray, np.ndarray]:
    """``σ([lo, hi]) ⊆ [σ(lo), σ(hi)]`` for a nondecreasing ``σ``, widened by the forward errors."""
    lo, hi = np.asarray(lo, dtype=np.float64), np.asarray(hi, dtype=np.float64)
    return _outward(act.forward(lo), act.forward_error(lo), act.forward(hi), act.forward_error(hi))


def _unimodal_range(act: Activation, lo, hi, x_star: tuple[float, float], f_min: float):
    """Range of a function decreasing on ``(-inf, x*]`` and increasing on ``[x*, inf)``, with
    ``x* ∈ [x_star[0], x_star[1]]`` and ``f_min <= σ(x*)`` (``proofs/activations.md`` §3)."""
    lo, hi = np.asarray(lo, dtype=np.float64), np.asarray(hi, dtype=np.float64)
    f_lo, f_hi = act.forward(lo), act.forward(hi)
    e_lo, e_hi = act.forward_error(lo), act.forward_error(hi)
    a_lo, b_lo = _outward(f_lo, e_lo, f_lo, e_lo)
    a_hi, b_hi = _outward(f_hi, e_hi, f_hi, e_hi)
    may_contain = (lo <= x_star[1]) & (hi >= x_star[0])
    return np.where(may_contain, np.minimum(f_min, np.minimum(a_lo, a_hi)), np.minimum(a_lo, a_hi)), np.maximum(b_lo, b_hi)


def _two_bump_slopes(act: Activation, lo, hi, c_lo: float, c_hi: float) -> tuple[np.ndarray, np.ndarray]:
    """Slopes on ``[lo, hi]`` of an activation whose ``σ'`` decreases on ``(-inf, -c]``, increases on ``[-c, c]`` and
    decreases on ``[c, inf)`` with ``c ∈ [c_lo, c_hi]`` and extremes ``σ'(-c) >= α``, ``σ'(c) <= β`` (GELU, SiLU): the
    extremes on ``[lo, hi]`` are at its ends or at ``∓c`` when it may contain them (``proofs/activations.md`` §3)."""
    lo, hi = np.asarray(lo, dtype=np.float64), np.asarray(hi, dtype=np.float64)
    s_lo, s_hi = act.slope_interval
    d_lo, d_hi = act.derivative(lo), act.derivative(hi)
    e_lo, e_hi = act.derivative_error(lo), act.derivative_error(hi)
    a1, b1 = _outward(d_lo, e_lo, d_lo, e_lo)
    a2, b2 = _outward(d_hi, e_hi, d_hi, e_hi)
    alpha = np.where((lo <= -c_lo) & (hi >= -c_hi), s_lo, np.minimum(a1, a2))
    beta = np.where((lo <= c_hi) & (hi >= c_lo), s_hi, np.maximum(b1, b2))
    alpha = np.clip(alpha, s_lo, s_hi)
    beta = np.clip(beta, s_lo, s_hi)
    return alpha, np.maximum(alpha, beta)


def _even_decreasing_slopes(act: Activation, lo, hi) -> tuple[np.ndarray, np.ndarray]:
    """Slopes on ``[lo, hi]`` of an activation whose ``σ'`` is even and nonincreasing in ``|z|``: between ``σ'`` at
    the farthest point and at the point nearest to 0, widened by the derivative errors."""
    lo, hi = np.asarray(lo, dtype=np.float64), np.asarray(hi, dtype=np.float64)
    s_lo, s_hi = act.slope_interval
    near = np.where((lo <= 0) & (hi >= 0), 0.0, np.minimum(np.abs(lo), np.abs(hi)))
    far = np.maximum(np.abs(lo), np.abs(hi))
    alpha, _ = _outward(act.derivative(far), act.derivative_error(far), 0.0, 0.0)
    _, beta = _outward(0.0, 0.0, act.derivative(near), act.derivative_error(near))
    alpha = np.clip(alpha, s_lo, s_hi)
    beta = np.clip(beta, s_lo, s_hi)
    return alpha, np.maximum(alpha, beta)


# --------------------------------------------------------------------------- affine layers


@dataclass(frozen=True, eq=False)
class Dense(Layer):
    """Affine layer ``x -> W x + b`` on vectors; ``W`` has shape ``(n_out, n_in)``.

    >>> Dense([[1, -2]], [3]).output_shape((2,))
    (1,)
    """

    weight_data: Any
    bias_data: Any = None
    kind: ClassVar[str] = "Dense"
    step_kind: ClassVar[str] = "dense"
    _weight: ParamMatrix = field(init=False, repr=False)
    _bias: ParamMatrix | None = field(init=False, repr=False)

    def __post_init__(self) -> None:
        w = as_param(self.weight_data, ndim=2, where="Dense weight")
        object.__setattr__(self, "_weight", w)
        n_out = w.shape[0]
        if self.bias_data is None:
            b = None
        else:
            b = as_param(self.bias_data, ndim=1, where="Dense bias")
            if b.shape != (n_out,):
                raise ShapeError(
                    f"Dense: bias has shape {b.shape} but the weight has {n_out} rows (shape {w.shape}); "
                    f"give a bias of shape ({n_out},)"
                )
        object.__setattr__(self, "_bias", b)

    # facts ---------------------------------------------------------------------------------
    @property
    def weight(self) -> np.ndarray:
        """The float weight matrix (raises for symbolic weights)."""
        return _numeric(self._weight, "Dense weight")

    @property
    def bias(self) -> np.ndarray:
        if self._bias is None:
            return np.zeros(self.n_out)
        return _numeric(self._bias, "Dense bias")

    @property
    def weight_exact(self) -> sympy.ImmutableMatrix | None:
        return self._weight.exact

    @property
    def bias_exact(self) -> sympy.ImmutableMatrix | None:
        if self._bias is None:
            return sympy.zeros(self.n_out, 1).as_immutable() if self._weight.exact is not None else None
        return self._bias.exact

    @property
    def weight_radius(self) -> np.ndarray | None:
        return self._weight.radius

    @property
    def bias_radius(self) -> np.ndarray | None:
        """Entrywise bound of ``|bias_exact - bias|`` (``None`` when the float bias is exact)."""
        return None if self._bias is None else self._bias.radius

    @property
    def has_bias(self) -> bool:
        return self._bias is not None

    @property
    def n_out(self) -> int:
        return self._weight.shape[0]

    @property
    def n_in(self) -> int:
        return self._weight.shape[1]

    @property
    def is_exact(self) -> bool:
        return self._weight.exact is not None and (self._bias is None or self._bias.exact is not None)

    @property
    def free_symbols(self) -> set[sympy.Symbol]:
        syms = self._weight.free_symbols
        if self._bias is not None:
            syms = syms | self._bias.free_symbols
        return syms

    def describe(self) -> str:
        return f"Dense({self.n_in}->{self.n_out})"

    def output_shape(self, input_shape: Shape) -> Shape:
        if len(input_shape) != 1:
            raise ValueError(f"Dense expects a vector input but receives shape {input_shape}; insert Flatten() before it")
        if input_shape[0] != self.n_in:
            raise ValueError(
                f"Dense weight has shape {(self.n_out, self.n_in)} and needs {self.n_in} inputs, "
                f"but receives shape {input_shape}"
            )
        return (self.n_out,)

    def forward(self, x: np.ndarray) -> np.ndarray:
        return x @ self.weight.T + self.bias

    def input_size(self) -> int:
        return self.n_in

    def affine_shift(self, input_shape: Shape) -> tuple[np.ndarray, np.ndarray | None]:
        """The bias and a bound of its conversion error (or ``None``)."""
        return self.bias, self.bias_radius

    def jvp(self, h: np.ndarray, jac: np.ndarray, shape_in: Shape, shape_out: Shape) -> np.ndarray:
        return np.einsum("oi,nij->noj", self.weight, jac.reshape(h.shape[0], -1, jac.shape[-1]))

    def sympy_apply_vector(self, hvec, shape_in: Shape, shape_out: Shape):
        w, b = self.sympy_matrices()
        return w * hvec + b

    def sympy_matrices(self) -> tuple[sympy.Matrix, sympy.Matrix]:
        """``(W, b)`` as sympy matrices: exact input as given, float input as exact Rationals of the floats."""
        w = self._weight.exact
        if w is None:
            w = sympy.Matrix(self.weight.shape[0], self.weight.shape[1], [sympy.Rational(v) for v in self.weight.flat])
        if self._bias is None:
            b = sympy.zeros(self.n_out, 1)
        elif self._bias.exact is not None:
            b = sympy.Matrix(self._bias.exact)
        else:
            b = sympy.Matrix([sympy.Rational(v) for v in self.bias])
        return sympy.Matrix(w), b

    def subs(self, mapping: dict) -> Dense:
        if not self.free_symbols:
            return self
        w = self._weight.exact.subs(mapping) if self._weight.exact is not None else self.weight
        b = None
        if self._bias is not None:
            b = self._bias.exact.subs(mapping) if self._bias.exact is not None else self.bias
        return Dense(w, b)


def _numeric(p: ParamMatrix, where: str) -> np.ndarray:
    if p.value is None:
        raise ValueError(
            f"{where} contains the symbols {sorted(map(str, p.free_symbols))}; numeric methods need numbers: "
            "substitute values first with net.subs({symbol: value, ...})"
        )
    return p.value


@dataclass(frozen=True, eq=False)
class Flatten(Layer):
    """Reshape ``(C, H, W)`` (or any shape) to a vector in C order; a linear isometry in every norm."""

    kind: ClassVar[str] = "Flatten"
    step_kind: ClassVar[str] = "flatten"

    def output_shape(self, input_shape: Shape) -> Shape:
        return (int(np.prod(input_shape, dtype=np.int64)),)

    def forward(self, x: np.ndarray) -> np.ndarray:
        return x.reshape(x.shape[0], -1)

    def jvp(self, h: np.ndarray, jac: np.ndarray, shape_in: Shape, shape_out: Shape) -> np.ndarray:
        return jac.reshape(h.shape[0], *shape_out, jac.shape[-1])

    def sympy_apply_vector(self, hvec, shape_in: Shape, shape_out: Shape):
        return hvec


# --------------------------------------------------------------------------- activations


class _ExactlyEvaluated:
    """Mixin of activations whose float ``forward`` and ``derivative`` involve no rounding (``max(x, 0)``, ``x``, the
    constants 0 and 1): both declared error bounds are 0 (``proofs/activations.md`` §2)."""

    def forward_error(self, x):
        return np.zeros(np.shape(x))

    def derivative_error(self, x):
        return np.zeros(np.shape(x))


@dataclass(frozen=True, eq=False)
class ReLU(_ExactlyEvaluated, Activation):
    """``max(0, x)``; slopes ``[0, 1]``; evaluated exactly."""

    kind: ClassVar[str] = "ReLU"
    slopes: ClassVar = _Slopes(Fraction(0), Fraction(1))

    @property
    def is_piecewise_linear(self) -> bool:
        return True

    @property
    def pieces(self) -> tuple:
        return sympy.Integer(0), sympy.Integer(1)

    def forward(self, x):
        return np.maximum(x, 0.0)

    def derivative(self, x):
        return (x > 0).astype(np.float64)

    def range_on(self, lo, hi):
        return _monotone_range(self, lo, hi)

    def narrow_slopes(self, lo, hi):
        return _piecewise_linear_slopes(self, lo, hi, 0.0, 0.0)

    def sympy_apply(self, expr):
        return sympy.Max(0, expr)


def _piecewise_linear_slopes(act: Activation, lo, hi, neg_lo: float, neg_hi: float):
    """Slopes on ``[lo, hi]`` of a function linear with slope 1 on ``[0, inf)`` and slope in ``[neg_lo, neg_hi]`` on
    ``(-inf, 0]``: ``[1, 1]`` when ``lo >= 0``, the negative side's when ``hi <= 0``, else the global interval."""
    lo, hi = np.asarray(lo, dtype=np.float64), np.asarray(hi, dtype=np.float64)
    s_lo, s_hi = act.slope_interval
    alpha = np.where(lo >= 0, 1.0, np.where(hi <= 0, neg_lo, s_lo))
    beta = np.where(lo >= 0, 1.0, np.where(hi <= 0, neg_hi, s_hi))
    return np.maximum(alpha, s_lo), np.minimum(beta, s_hi)


@dataclass(frozen=True, eq=False)
class LeakyReLU(Activation):
    """``x`` for ``x >= 0`` and ``a x`` otherwise; slopes ``[min(a, 1), max(a, 1)]``.

    ``a`` may be negative (then the function decreases on ``x < 0`` and has its minimum 0 at 0) or exceed 1.

    >>> lo, hi = LeakyReLU(-0.5).range_on(np.array([-1.0]), np.array([3.0]))  # σ([-1, 3]) = [0, 3]
    >>> float(lo[0]), bool(3.0 <= hi[0] < 3.0 + 1e-12)
    (0.0, True)
    """

    negative_slope: Any = field(default_factory=lambda: sympy.Rational(1, 100))  # sympy imported on use
    kind: ClassVar[str] = "LeakyReLU"

    def __post_init__(self) -> None:
        a = self.negative_slope
        if isinstance(a, (bool, np.bool_)) or not (isinstance(a, (int, float, Fraction, np.integer, np.floating))
                                                   or is_instance(a, "sympy", "Basic")):
            raise TypeError(f"LeakyReLU: negative_slope must be a real number, got {a!r}")
        if isinstance(a, (float, np.floating)):
            if not math.isfinite(a):
                raise ValueError(f"LeakyReLU: negative_slope must be finite, got {a}")
            p, q = a.as_integer_ratio()  # its exact value
            exact = Fraction(int(p), int(q))
        elif isinstance(a, (int, np.integer, Fraction)):
            exact = Fraction(a) if isinstance(a, Fraction) else Fraction(int(a))
        else:
            expr = _to_sympy_scalar(a, "LeakyReLU negative_slope")
            if not expr.is_Rational:
                raise TypeError(f"LeakyReLU: negative_slope must be a rational number, got {a}")
            exact = Fraction(int(expr.p), int(expr.q))
        # the nearest float (Fraction -> float is correctly rounded) and a proven bound of its error
        a_float = _fraction_nearest(exact)
        a_rad = _fraction_up(abs(Fraction(a_float) - exact)) if math.isfinite(a_float) else math.inf
        object.__setattr__(self, "_a_fraction", exact)  # Fractions keep float paths free of sympy
        object.__setattr__(self, "_a_float", a_float)
        object.__setattr__(self, "_a_radius", a_rad)

    @property
    def _a(self) -> sympy.Rational:
        """The slope ``a`` as a sympy Rational (for the exact paths)."""
        return sympy.Rational(self._a_fraction.numerator, self._a_fraction.denominator)

    def _slope_fractions(self) -> tuple[Fraction, Fraction]:
        return min(self._a_fraction, Fraction(1)), max(self._a_fraction, Fraction(1))

    @property
    def slopes(self):
        return (sympy.Min(self._a, 1), sympy.Max(self._a, 1))

    @property
    def is_piecewise_linear(self) -> bool:
        return True

    @property
    def pieces(self) -> tuple:
        return self._a, sympy.Integer(1)

    def forward(self, x):
        with np.errstate(over="ignore"):  # |a x| beyond the float range is inf, as it should be
            return np.where(x >= 0, x, self._a_float * x)

    def derivative(self, x):
        return np.where(x > 0, 1.0, self._a_float)

    def forward_error(self, x):
        # x >= 0: exact.  x < 0: |fl(â x) - a x| <= |x| |â - a| + 2u |fl(â x)| + eta (Lemma R)
        x = np.asarray(x, dtype=np.float64)
        with np.errstate(over="ignore"):
            e = _add_up(_mul_up(np.abs(x), self._a_radius), _mul_up(2 * _U, np.abs(self._a_float * x)), _ETA)
        return np.where(x >= 0, 0.0, e)

    def derivative_error(self, x):
        return np.where(np.asarray(x) > 0, 0.0, self._a_radius)

    def range_on(self, lo, hi):
        if self._a_fraction >= 0:
            return _monotone_range(self, lo, hi)
        return _unimodal_range(self, lo, hi, (0.0, 0.0), 0.0)  # decreasing on x <= 0, minimum σ(0) = 0

    def narrow_slopes(self, lo, hi):
        a_lo, a_hi = float_down(self._a_fraction), float_up(self._a_fraction)
        return _piecewise_linear_slopes(self, lo, hi, a_lo, a_hi)

    def sympy_apply(self, expr):
        return sympy.Piecewise((expr, expr >= 0), (self._a * expr, True))

    def describe(self) -> str:
        return f"LeakyReLU({self._a_fraction})"


@dataclass(frozen=True, eq=False)
class Identity(_ExactlyEvaluated, Activation):
    """The identity; slopes ``[1, 1]``."""

    kind: ClassVar[str] = "Identity"
    slopes: ClassVar = _Slopes(Fraction(1), Fraction(1))

    @property
    def is_piecewise_linear(self) -> bool:
        return True

    @property
    def pieces(self) -> tuple:
        return sympy.Integer(1), sympy.Integer(1)

    def forward(self, x):
        return x

    def derivative(self, x):
        return np.ones_like(x, dtype=np.float64)

    def range_on(self, lo, hi):
        return _monotone_range(self, lo, hi)

    def narrow_slopes(self, lo, hi):
        return np.ones(np.shape(lo)), np.ones(np.shape(lo))

    def sympy_apply(self, expr):
        return expr


def _sech2(x, track: bool) -> _Tracked:
    """``tanh'(x) = 4 expit(2x) expit(-2x)`` (no cancellation in the tails); ``|x|`` is clipped at 1000, where
    ``sech^2 < 4 e^{-2000}`` is below the smallest subnormal (the clipping adds ``eta`` to the error)."""
    x = np.clip(np.asarray(x, dtype=np.float64), -1000.0, 1000.0)
    p = _Tracked.exact(2.0 * x, track).apply(_expit, None) * _Tracked.exact(-2.0 * x, track).apply(_expit, None)
    return p * _Tracked.const(4.0, 0.0, track)


class _IncreasingUnimodal:
    """Facts of an increasing activation whose derivative is unimodal with its maximum at 0 (tanh, sigmoid)."""

    def extended_enclosure(self, iv, slopes):
        vals, ders = self._ends(iv)
        dmax = max(ders[0][1], ders[1][1])
        if iv[0] <= 0 <= iv[1]:
            dmax = slopes[1]
        return (vals[0][0], vals[1][1]), (min(ders[0][0], ders[1][0]), dmax)


class _QuasiConvex:
    """Facts of GELU-like activations: decreasing then increasing, global minimum above ``minimum_below``, the
    derivative monotone between its two critical points (bracketed by ``critical_brackets``, proofs/exact.md)."""

    def extended_enclosure(self, iv, slopes):
        lo, hi = iv
        vals, ders = self._ends(iv)
        vmin = min(vals[0][0], vals[1][0])
        if lo <= 0 <= hi or (lo < 0 and hi > -3):
            vmin = min(vmin, self.minimum_below)
        dlo, dhi = min(ders[0][0], ders[1][0]), max(ders[0][1], ders[1][1])
        (a1, b1), (a2, b2) = self.critical_brackets
        if lo <= b1 and hi >= a1:
            dlo = slopes[0]
        if lo <= b2 and hi >= a2:
            dhi = slopes[1]
        return (vmin, max(vals[0][1], vals[1][1])), (dlo, dhi)


@dataclass(frozen=True, eq=False)
class Tanh(_IncreasingUnimodal, Activation):
    """``tanh``; slopes ``[0, 1]``; derivative evaluated as ``4 expit(2x) expit(-2x)``."""

    kind: ClassVar[str] = "Tanh"
    curvature: ClassVar[float] = 0.77  # 4 / (3 sqrt 3) = 0.7698...
    slopes: ClassVar = _Slopes(Fraction(0), Fraction(1))
    limits: ClassVar = (-1.0, 0.0, 1.0, 0.0)

    def arb_forms(self, z):
        t = z.tanh()
        s1 = 1 - t * t
        return t, s1, -2 * t * s1

    def forward(self, x):
        return np.tanh(x)

    def derivative(self, x):
        return _sech2(x, False).v

    def forward_error(self, x):
        return _lemma_r_error(np.tanh(x))

    def derivative_error(self, x):
        clipped = np.abs(np.asarray(x, dtype=np.float64)) > 1000.0
        e = _sech2(x, True).e
        return np.where(clipped, _add_up(e, _ETA), e)

    def range_on(self, lo, hi):
        return _monotone_range(self, lo, hi)

    def narrow_slopes(self, lo, hi):
        return _even_decreasing_slopes(self, lo, hi)

    def sympy_apply(self, expr):
        return sympy.tanh(expr)


def _sigmoid_derivative(x, track: bool) -> _Tracked:
    """``expit(x) expit(-x)``: accurate in both tails."""
    return _Tracked.exact(x, track).apply(_expit, None) * _Tracked.exact(-np.asarray(x, dtype=np.float64),
                                                                          track).apply(_expit, None)


@dataclass(frozen=True, eq=False)
class Sigmoid(_IncreasingUnimodal, Activation):
    """The logistic function ``1 / (1 + exp(-x))`` (scipy's ``expit``); slopes ``[0, 1/4]``."""

    kind: ClassVar[str] = "Sigmoid"
    curvature: ClassVar[float] = 0.0963  # 1 / (6 sqrt 3) = 0.09623...
    slopes: ClassVar = _Slopes(Fraction(0), Fraction(1, 4))
    limits: ClassVar = (0.0, 0.0, 1.0, 0.0)

    def arb_forms(self, z):
        s = 1 / (1 + (-z).exp())
        s1 = s * (1 - s)
        return s, s1, s1 * (1 - 2 * s)

    def forward(self, x):
        return _expit(np.asarray(x, dtype=np.float64))

    def derivative(self, x):
        return _sigmoid_derivative(x, False).v

    def forward_error(self, x):
        return _lemma_r_error(self.forward(x))

    def derivative_error(self, x):
        return _sigmoid_derivative(x, True).e

    def range_on(self, lo, hi):
        return _monotone_range(self, lo, hi)

    def narrow_slopes(self, lo, hi):
        return _even_decreasing_slopes(self, lo, hi)

    def sympy_apply(self, expr):
        return 1 / (1 + sympy.exp(-expr))


@functools.cache
def _unimodal_minimum(name: str) -> tuple[tuple[float, float], float]:
    """A proven float bracket ``[a, b]`` of the minimiser ``x*`` and a float ``m <= σ(x*)`` for GELU / SiLU, by
    python-flint ``arb`` ball arithmetic (``proofs/activations.md`` §3): the sign of ``σ'`` at the bracket's ends is
    decided rigorously, and ``m`` is a float below ``σ`` evaluated on the ball covering the bracket."""
    from flint import arb, ctx

    old = ctx.prec
    ctx.prec = 128
    try:
        if name == "GELU":
            def f(t):
                return t * (1 + (t / arb(2).sqrt()).erf()) / 2

            def df(t):
                return (1 + (t / arb(2).sqrt()).erf()) / 2 + t * (-t * t / 2).exp() / (2 * arb.pi()).sqrt()

            a, b = "-0.75179153", "-0.75179152"
        else:
            def f(t):
                return t / (1 + (-t).exp())

            def df(t):
                s = 1 / (1 + (-t).exp())
                return s * (1 + t * (1 - s))

            a, b = "-1.27846455", "-1.27846454"
        lo_ball, hi_ball = arb(a), arb(b)
        if not (bool(df(lo_ball) < 0) and bool(df(hi_ball) > 0)):
            raise RuntimeError(f"{name}: the bracket of the minimiser could not be verified")
        value = f(lo_ball.union(hi_ball)).lower()
        m = float(value)
        while not bool(arb(m) <= value):
            m = float(down(m))
        x_lo = float(down(float(a)))
        x_hi = float(up(float(b)))
        if not (bool(arb(x_lo) < lo_ball) and bool(arb(x_hi) > hi_ball)):
            raise RuntimeError(f"{name}: the float bracket of the minimiser could not be verified")
        return (x_lo, x_hi), m
    finally:
        ctx.prec = old


#: ``_const(-1 / sqrt(2))`` and ``_const(1 / sqrt(2 pi))``: the nearest floats and proven bounds of their errors, written
#: out so that GELU needs no sympy (``tests/test_imports.py`` recomputes both with ``_const`` and checks them with mpmath)
_GELU_C = (-0.7071067811865476, 4.833646656726457e-17)
_GELU_K = (0.3989422804014327, 2.4923272022777304e-17)


def _gelu(x, track: bool) -> tuple[_Tracked, _Tracked]:
    """``(0.5 x) erfc(x * fl(-1/sqrt 2))`` and its erfc factor: no cancellation for ``x -> -inf``."""
    x = np.asarray(x, dtype=np.float64)
    c, c_rad = _GELU_C
    xt = _Tracked.exact(x, track)
    erfc_t = (xt * _Tracked.const(c, c_rad, track)).apply(_erfc, _erfc_dsup, _erfc_cap)
    return (_Tracked.const(0.5, 0.0, track) * xt) * erfc_t, erfc_t


def _gelu_derivative(x, track: bool) -> _Tracked:
    """``0.5 erfc(-x/sqrt 2) + x exp(-x^2/2) / sqrt(2 pi)``; the second term is dropped for ``|x| > 40``, where it is
    below ``40 e^{-800} < eta`` (added to the error)."""
    x = np.asarray(x, dtype=np.float64)
    _, erfc_t = _gelu(x, track)
    k, k_rad = _GELU_K
    xs = _Tracked.exact(np.where(np.abs(x) <= 40.0, x, 0.0), track)
    half = _Tracked.const(0.5, 0.0, track)
    gauss = ((xs * xs) * half).apply(_neg_exp, _exp_neg_dsup)
    return half * erfc_t + (xs * gauss) * _Tracked.const(k, k_rad, track)


@dataclass(frozen=True, eq=False)
class GELU(_QuasiConvex, Activation):
    """``x Phi(x)`` (exact erf form, evaluated as ``0.5 x erfc(-x/sqrt 2)``); slopes enclosed by ``[-0.1290, 1.1290]``.

    The extreme slopes are ``1/2 ± (erf(1)/2 + 1/(e sqrt(pi)))``, numerically ``-0.128904`` and
    ``1.128904`` at ``x = ∓sqrt(2)``; the minimum ``-0.16997...`` is at ``x* = -0.75179...``;
    see ``proofs/activations.md``.
    """

    kind: ClassVar[str] = "GELU"
    curvature: ClassVar[float] = 0.8  # |phi(x) (2 - x^2)| <= 2 phi(0) = 0.7979...
    slopes: ClassVar = _Slopes(Fraction(-1290, 10000), Fraction(11290, 10000))
    limits: ClassVar = (0.0, 0.0, None, 1.0)
    #: brackets of the critical points of GELU' (±sqrt 2) and a float below its minimum (proofs/exact.md)
    critical_brackets: ClassVar = ((-1.4143, -1.4142), (1.4142, 1.4143))
    minimum_below: ClassVar[float] = -0.2786

    def arb_forms(self, z):
        from flint import arb

        phi_c = (1 + (z / arb(2).sqrt()).erf()) / 2
        phi = (-(z * z) / 2).exp() / (2 * arb.pi()).sqrt()
        return z * phi_c, phi_c + z * phi, phi * (2 - z * z)

    def forward(self, x):
        return _gelu(x, False)[0].v

    def derivative(self, x):
        return _gelu_derivative(x, False).v

    def forward_error(self, x):
        return _gelu(x, True)[0].e

    def derivative_error(self, x):
        dropped = np.abs(np.asarray(x, dtype=np.float64)) > 40.0
        e = _gelu_derivative(x, True).e
        return np.where(dropped, _add_up(e, _ETA), e)

    def range_on(self, lo, hi):
        x_star, f_min = _unimodal_minimum("GELU")
        return _unimodal_range(self, lo, hi, x_star, f_min)

    def narrow_slopes(self, lo, hi):
        return _two_bump_slopes(self, lo, hi, 1.4142135, 1.4142137)  # GELU'' = φ(x)(2 - x²): c = √2

    def sympy_apply(self, expr):
        return expr / 2 * (1 + sympy.erf(expr / sympy.sqrt(2)))


def _silu(x, track: bool) -> _Tracked:
    xt = _Tracked.exact(x, track)
    return xt * xt.apply(_expit, None)


def _silu_derivative(x, track: bool) -> _Tracked:
    """``expit(x) (1 + x expit(-x))``: no cancellation in the tails (``1 - expit(x)`` is never formed)."""
    x = np.asarray(x, dtype=np.float64)
    xt = _Tracked.exact(x, track)
    q = _Tracked.exact(-x, track).apply(_expit, None)
    return xt.apply(_expit, None) * (_Tracked.const(1.0, 0.0, track) + xt * q)


@dataclass(frozen=True, eq=False)
class SiLU(_QuasiConvex, Activation):
    """``x sigmoid(x)`` (swish, evaluated as ``x expit(x)``); slopes enclosed by ``[-0.0999, 1.0999]`` (extremes
    ±1.099839…), minimum ``-0.27846...`` at ``x* = -1.27846...``; see ``proofs/activations.md``."""

    kind: ClassVar[str] = "SiLU"
    curvature: ClassVar[float] = 0.51  # |s(1-s)(2 + x(1-2s))| <= 1/2, attained at 0
    slopes: ClassVar = _Slopes(Fraction(-999, 10000), Fraction(10999, 10000))
    limits: ClassVar = (0.0, 0.0, None, 1.0)
    #: brackets of the critical points of SiLU' (±2.3994) and a float below its minimum (proofs/exact.md)
    critical_brackets: ClassVar = ((-2.4, -2.39), (2.39, 2.4))
    minimum_below: ClassVar[float] = -0.2786

    def arb_forms(self, z):
        s = 1 / (1 + (-z).exp())
        return z * s, s * (1 + z * (1 - s)), s * (1 - s) * (2 + z * (1 - 2 * s))

    def forward(self, x):
        return _silu(x, False).v

    def derivative(self, x):
        return _silu_derivative(x, False).v

    def forward_error(self, x):
        return _silu(x, True).e

    def derivative_error(self, x):
        return _silu_derivative(x, True).e

    def range_on(self, lo, hi):
        x_star, f_min = _unimodal_minimum("SiLU")
        return _unimodal_range(self, lo, hi, x_star, f_min)

    def narrow_slopes(self, lo, hi):
        return _two_bump_slopes(self, lo, hi, 2.3992, 2.3995)  # c = x0 ∈ (2.3993, 2.3994), proofs/activations.md §1

    def sympy_apply(self, expr):
        return expr / (1 + sympy.exp(-expr))


# --------------------------------------------------------------------------- more activations (issue 13 item 3)
#
# ELU, Softplus, Hardtanh / ReLU6, Hardswish, Mish, LogSigmoid, Hardsigmoid: each declares its slopes, evaluation
# errors, range, narrowed slopes, kinks and sympy form; proofs in ``proofs/activations.md`` §6.


def _exact_param(value: Any, where: str, *, allow_inf: bool = False) -> Fraction | float:
    """The exact rational value of a real parameter (a float is taken as the number it denotes); ``±inf`` is kept as
    a float when ``allow_inf``.  Raises ``TypeError``/``ValueError`` naming ``where``."""
    if isinstance(value, (bool, np.bool_)) or not (isinstance(value, (int, float, Fraction, np.integer, np.floating))
                                                   or is_instance(value, "sympy", "Basic")):
        raise TypeError(f"{where} must be a real number, got {value!r}")
    if isinstance(value, (float, np.floating)):
        if math.isinf(value) and allow_inf:
            return float(value)
        if not math.isfinite(value):
            raise ValueError(f"{where} must be finite, got {value}")
        p, q = float(value).as_integer_ratio()  # float16/32/64 embed exactly in float64
        return Fraction(int(p), int(q))
    if isinstance(value, (int, np.integer)):
        return Fraction(int(value))
    if isinstance(value, Fraction):
        return value
    expr = _to_sympy_scalar(value, where)
    if not expr.is_Rational:
        raise TypeError(f"{where} must be a rational number, got {value}")
    return Fraction(int(expr.p), int(expr.q))


def _frac_const(fr: Fraction) -> tuple[float, float]:
    """The float nearest ``fr`` and a proven bound of ``|float - fr|`` (``proofs/activations.md`` §5)."""
    f = _fraction_nearest(fr)
    return f, (_fraction_up(abs(Fraction(f) - fr)) if math.isfinite(f) else math.inf)


def _sympy_rational(fr: Fraction) -> sympy.Rational:
    return sympy.Rational(fr.numerator, fr.denominator)


def _tracked_map(t: _Tracked, func) -> _Tracked:
    """``func`` applied to ``t.v`` for a 1-Lipschitz ``func`` evaluated without rounding (``max``, ``min``, ``abs``,
    negation, clipping): the error bound is unchanged."""
    with np.errstate(invalid="ignore"):
        return _Tracked(np.asarray(func(t.v), dtype=np.float64), t.e)


def _exp_dsup(v, e):
    """``sup exp`` over ``[v - e, v + e]``."""
    with np.errstate(over="ignore"):
        return _exp_upper(up(v + e))


def _one(v, e):
    return np.ones(np.shape(v))


def _quarter(v, e):
    return np.full(np.shape(v), 0.25)


def _log1p_dsup(v, e):
    """``sup 1/(1+s)`` over the segment from ``v`` to the exact argument, both ``>= 0`` (``exp`` of a number ``<= 0``)."""
    return np.ones(np.shape(v))


def _tanh_dsup(v, e):
    """``sup sech^2 <= min(1, 4 exp(-2m))`` with ``m`` the distance of ``[v - e, v + e]`` from 0."""
    m = _distance_from_zero(v, e)
    with np.errstate(over="ignore", under="ignore"):
        m2 = np.fmax(down(2.0 * m), 0.0)
    return np.minimum(1.0, _mul_up(4.0, _exp_upper(-m2)))


def _softplus_t(t: _Tracked, track: bool) -> _Tracked:
    """``log(1 + e^t) = max(t, 0) + log1p(exp(-|t|))`` (no overflow, no cancellation)."""
    pos = _tracked_map(t, lambda v: np.maximum(v, 0.0))
    negabs = _tracked_map(t, lambda v: -np.abs(v))
    return pos + negabs.apply(np.exp, _exp_dsup).apply(np.log1p, _log1p_dsup)


def _kink_pairs(points) -> tuple[tuple[float, float], ...]:
    """Float enclosures ``(down(p), up(p))`` of the finite rational kink points ``p``."""
    return tuple((float_down(p), float_up(p)) for p in points if not isinstance(p, float))


def _monotone_derivative_slopes(act: Activation, lo, hi, increasing: bool) -> tuple[np.ndarray, np.ndarray]:
    """Slopes on ``[lo, hi]`` of a smooth activation whose ``σ'`` is monotone: ``σ'`` at the ends, widened by the
    derivative errors and intersected with the global interval (``proofs/activations.md`` §6)."""
    lo, hi = np.asarray(lo, dtype=np.float64), np.asarray(hi, dtype=np.float64)
    s_lo, s_hi = act.slope_interval
    d_lo, d_hi = act.derivative(lo), act.derivative(hi)
    e_lo, e_hi = act.derivative_error(lo), act.derivative_error(hi)
    if not increasing:
        d_lo, d_hi, e_lo, e_hi = d_hi, d_lo, e_hi, e_lo
    alpha, _ = _outward(d_lo, e_lo, 0.0, 0.0)
    _, beta = _outward(0.0, 0.0, d_hi, e_hi)
    alpha = np.clip(alpha, s_lo, s_hi)
    beta = np.clip(beta, s_lo, s_hi)
    return alpha, np.maximum(alpha, beta)


@dataclass(frozen=True, eq=False)
class ELU(Activation):
    """``x`` for ``x > 0`` and ``alpha (e^x - 1)`` otherwise (PyTorch's ``nn.ELU``); slopes ``[min(0, alpha),
    max(1, alpha)]``; a kink at 0 unless ``alpha = 1``.  ``alpha`` is taken exactly (a float as the number it
    denotes).  Proof: ``proofs/activations.md`` §6.

    >>> lo, hi = ELU(1.0).range_on(np.array([-1.0]), np.array([2.0]))
    >>> bool(lo[0] <= np.expm1(-1.0) and 2.0 <= hi[0])
    True
    """

    alpha: Any = 1.0
    kind: ClassVar[str] = "ELU"

    def __post_init__(self) -> None:
        a = _exact_param(self.alpha, "ELU: alpha")
        object.__setattr__(self, "_a_fraction", a)
        object.__setattr__(self, "_a_const", _frac_const(a))

    def _slope_fractions(self) -> tuple[Fraction, Fraction]:
        return min(Fraction(0), self._a_fraction), max(Fraction(1), self._a_fraction)

    @property
    def slopes(self):
        return tuple(_sympy_rational(v) for v in self._slope_fractions())

    @property
    def curvature(self) -> float:  # type: ignore[override]
        return float_up(abs(self._a_fraction))  # |σ''| = |alpha| e^x <= |alpha| on x < 0, 0 on x > 0

    @property
    def kinks(self) -> tuple[tuple[float, float], ...]:
        return () if self._a_fraction == 1 else ((0.0, 0.0),)

    def _neg(self, x, track: bool) -> _Tracked:
        a, r = self._a_const
        xt = _Tracked.exact(np.minimum(np.asarray(x, dtype=np.float64), 0.0), track)
        return _Tracked.const(a, r, track) * xt.apply(np.expm1, None)

    def _dneg(self, x, track: bool) -> _Tracked:
        a, r = self._a_const
        xt = _Tracked.exact(np.minimum(np.asarray(x, dtype=np.float64), 0.0), track)
        return _Tracked.const(a, r, track) * xt.apply(np.exp, None)

    def forward(self, x):
        x = np.asarray(x, dtype=np.float64)
        return np.where(x > 0, x, self._neg(x, False).v)

    def derivative(self, x):
        x = np.asarray(x, dtype=np.float64)
        return np.where(x > 0, 1.0, self._dneg(x, False).v)

    def forward_error(self, x):
        x = np.asarray(x, dtype=np.float64)
        return np.where(x > 0, 0.0, self._neg(x, True).e)

    def derivative_error(self, x):
        x = np.asarray(x, dtype=np.float64)
        return np.where(x > 0, 0.0, self._dneg(x, True).e)

    def range_on(self, lo, hi):
        if self._a_fraction >= 0:
            return _monotone_range(self, lo, hi)
        return _unimodal_range(self, lo, hi, (0.0, 0.0), 0.0)  # alpha < 0: decreasing on x <= 0, minimum σ(0) = 0

    def narrow_slopes(self, lo, hi):
        # σ' = alpha e^x is monotone on x < 0 and 1 on x > 0: the extremes are at lo, at min(hi, 0) and 1 if hi > 0
        lo, hi = np.asarray(lo, dtype=np.float64), np.asarray(hi, dtype=np.float64)
        s_lo, s_hi = self.slope_interval
        m = np.minimum(hi, 0.0)
        d1, d2 = self.derivative(np.minimum(lo, 0.0)), self.derivative(m)
        e1, e2 = self.derivative_error(np.minimum(lo, 0.0)), self.derivative_error(m)
        a1, b1 = _outward(d1, e1, d1, e1)
        a2, b2 = _outward(d2, e2, d2, e2)
        alpha, beta = np.minimum(a1, a2), np.maximum(b1, b2)
        alpha = np.where(hi > 0, np.minimum(alpha, 1.0), alpha)
        beta = np.where(hi > 0, np.maximum(beta, 1.0), beta)
        alpha = np.where(lo >= 0, 1.0, alpha)
        beta = np.where(lo >= 0, 1.0, beta)
        alpha, beta = np.clip(alpha, s_lo, s_hi), np.clip(beta, s_lo, s_hi)
        return alpha, np.maximum(alpha, beta)

    def sympy_apply(self, expr):
        return sympy.Piecewise((expr, expr > 0), (_sympy_rational(self._a_fraction) * (sympy.exp(expr) - 1), True))

    def describe(self) -> str:
        return f"ELU({self._a_fraction})"


@dataclass(frozen=True, eq=False)
class Softplus(Activation):
    """``log(1 + e^{beta x}) / beta`` (``beta > 0``, PyTorch's ``nn.Softplus``); slopes ``[0, 1]`` (``σ' =
    sigmoid(beta x)``).  This is the smooth function: PyTorch's ``threshold`` (``x`` returned where ``beta x >
    threshold``) changes the value by at most ``log1p(e^{-threshold}) / beta``, below float32 resolution for the
    accepted thresholds (``lipverify.io.torch``).  Proof: ``proofs/activations.md`` §6."""

    beta: Any = 1.0
    kind: ClassVar[str] = "Softplus"
    slopes: ClassVar = _Slopes(Fraction(0), Fraction(1))

    def __post_init__(self) -> None:
        b = _exact_param(self.beta, "Softplus: beta")
        if b <= 0:
            raise ValueError(f"Softplus: beta must be positive, got {self.beta}")
        object.__setattr__(self, "_b_fraction", b)
        object.__setattr__(self, "_b_const", _frac_const(b))
        object.__setattr__(self, "_inv_const", _frac_const(1 / b))

    @property
    def curvature(self) -> float:  # type: ignore[override]
        return float_up(self._b_fraction / 4)  # σ'' = beta sigmoid'(beta x) <= beta / 4

    def _t(self, x, track: bool) -> _Tracked:
        b, r = self._b_const
        return _Tracked.const(b, r, track) * _Tracked.exact(x, track)

    def _f(self, x, track: bool) -> _Tracked:
        inv, r = self._inv_const
        return _softplus_t(self._t(x, track), track) * _Tracked.const(inv, r, track)

    def _d(self, x, track: bool) -> _Tracked:
        return self._t(x, track).apply(_expit, _quarter)

    def forward(self, x):
        return self._f(x, False).v

    def derivative(self, x):
        return self._d(x, False).v

    def forward_error(self, x):
        return self._f(x, True).e

    def derivative_error(self, x):
        return self._d(x, True).e

    def range_on(self, lo, hi):
        return _monotone_range(self, lo, hi)

    def narrow_slopes(self, lo, hi):
        return _monotone_derivative_slopes(self, lo, hi, increasing=True)

    def sympy_apply(self, expr):
        b = _sympy_rational(self._b_fraction)
        return sympy.log(1 + sympy.exp(b * expr)) / b

    def describe(self) -> str:
        return "Softplus" if self._b_fraction == 1 else f"Softplus(beta={self._b_fraction})"


@dataclass(frozen=True, eq=False)
class Hardtanh(_ExactlyEvaluated, Activation):
    """``min(max(x, min_val), max_val)`` (PyTorch's ``nn.Hardtanh``, ONNX ``Clip``); slopes ``[0, 1]``; evaluated
    exactly; kinks at the finite ends.  ``min_val < max_val`` are floats (``±inf`` allowed: ONNX ``Clip`` without a
    bound).  Proof: ``proofs/activations.md`` §6."""

    min_val: Any = -1.0
    max_val: Any = 1.0
    kind: ClassVar[str] = "Hardtanh"
    slopes: ClassVar = _Slopes(Fraction(0), Fraction(1))

    def __post_init__(self) -> None:
        lo = _exact_param(self.min_val, f"{self.kind}: min_val", allow_inf=True)
        hi = _exact_param(self.max_val, f"{self.kind}: max_val", allow_inf=True)
        for v, name in ((lo, "min_val"), (hi, "max_val")):
            if isinstance(v, Fraction) and Fraction(float(v)) != v:
                raise ValueError(f"{self.kind}: {name} = {v} is not a float64 number; give a float")
        if not lo < hi:
            raise ValueError(f"{self.kind}: min_val = {self.min_val} must be below max_val = {self.max_val}")
        object.__setattr__(self, "_lo", lo)
        object.__setattr__(self, "_hi", hi)

    @property
    def is_piecewise_linear(self) -> bool:
        return True

    @property
    def kinks(self) -> tuple[tuple[float, float], ...]:
        return _kink_pairs((self._lo, self._hi))

    def forward(self, x):
        return np.clip(np.asarray(x, dtype=np.float64), float(self._lo), float(self._hi))

    def derivative(self, x):
        x = np.asarray(x, dtype=np.float64)
        return ((x >= float(self._lo)) & (x < float(self._hi))).astype(np.float64)  # the right derivative

    def range_on(self, lo, hi):
        return _monotone_range(self, lo, hi)

    def narrow_slopes(self, lo, hi):
        lo, hi = np.asarray(lo, dtype=np.float64), np.asarray(hi, dtype=np.float64)
        a, b = float(self._lo), float(self._hi)
        inside = (lo >= a) & (hi <= b)
        outside = (hi <= a) | (lo >= b)
        return np.where(inside, 1.0, 0.0), np.where(outside, 0.0, 1.0)

    def sympy_apply(self, expr):
        out = expr
        if not isinstance(self._lo, float):
            out = sympy.Max(out, _sympy_rational(self._lo))
        if not isinstance(self._hi, float):
            out = sympy.Min(out, _sympy_rational(self._hi))
        return out

    def describe(self) -> str:
        return f"{self.kind}({float(self._lo)}, {float(self._hi)})"


@dataclass(frozen=True, eq=False)
class ReLU6(Hardtanh):
    """``min(max(x, 0), 6)`` (PyTorch's ``nn.ReLU6``): :class:`Hardtanh` with the ends 0 and 6."""

    min_val: Any = 0.0
    max_val: Any = 6.0
    kind: ClassVar[str] = "ReLU6"

    def __post_init__(self) -> None:
        super().__post_init__()
        if (self._lo, self._hi) != (0, 6):
            raise ValueError(f"ReLU6: the ends are 0 and 6, got {self.min_val}, {self.max_val}; use Hardtanh")

    def describe(self) -> str:
        return "ReLU6"


_SIXTH = _frac_const(Fraction(1, 6))


@dataclass(frozen=True, eq=False)
class Hardswish(Activation):
    """``x relu6(x + 3) / 6`` (PyTorch's ``nn.Hardswish``, ONNX ``HardSwish``): 0 for ``x <= -3``, ``x`` for ``x >= 3``,
    ``x (x + 3) / 6`` between; slopes ``[-1/2, 3/2]``; minimum ``-3/8`` at ``x = -3/2``; kinks at ``±3``.  Proof:
    ``proofs/activations.md`` §6."""

    kind: ClassVar[str] = "Hardswish"
    curvature: ClassVar[float] = 0.3334  # σ'' = 1/3 on (-3, 3), 0 outside
    slopes: ClassVar = _Slopes(Fraction(-1, 2), Fraction(3, 2))
    kinks: ClassVar = ((-3.0, -3.0), (3.0, 3.0))

    def _f(self, x, track: bool) -> _Tracked:
        xt = _Tracked.exact(x, track)
        s = _tracked_map(xt + _Tracked.const(3.0, 0.0, track), lambda v: np.clip(v, 0.0, 6.0))
        return (xt * s) * _Tracked.const(*_SIXTH, track)

    def _d(self, x, track: bool) -> _Tracked:
        x = np.asarray(x, dtype=np.float64)
        xt = _Tracked.exact(2.0 * np.clip(x, -3.0, 3.0), track)  # 2x is exact for |x| <= 3
        return (xt + _Tracked.const(3.0, 0.0, track)) * _Tracked.const(*_SIXTH, track)

    def forward(self, x):
        return self._f(x, False).v

    def derivative(self, x):
        x = np.asarray(x, dtype=np.float64)
        return np.where(x < -3.0, 0.0, np.where(x > 3.0, 1.0, self._d(x, False).v))

    def forward_error(self, x):
        return self._f(x, True).e

    def derivative_error(self, x):
        x = np.asarray(x, dtype=np.float64)
        return np.where((x < -3.0) | (x > 3.0), 0.0, self._d(x, True).e)

    def range_on(self, lo, hi):
        return _unimodal_range(self, lo, hi, (-1.5, -1.5), -0.375)

    def narrow_slopes(self, lo, hi):
        # σ' is constant or increasing on each of (-inf, -3), [-3, 3], (3, inf): its extremes on [lo, hi] are at the
        # ends or at the one-sided values at a kink inside (0 and -1/2 at -3, 3/2 and 1 at 3)
        lo, hi = np.asarray(lo, dtype=np.float64), np.asarray(hi, dtype=np.float64)
        d1, d2 = self.derivative(lo), self.derivative(hi)
        e1, e2 = self.derivative_error(lo), self.derivative_error(hi)
        a1, b1 = _outward(d1, e1, d1, e1)
        a2, b2 = _outward(d2, e2, d2, e2)
        alpha, beta = np.minimum(a1, a2), np.maximum(b1, b2)
        left = (lo <= -3.0) & (hi >= -3.0)
        right = (lo <= 3.0) & (hi >= 3.0)
        alpha = np.where(left, np.minimum(alpha, -0.5), alpha)
        beta = np.where(left, np.maximum(beta, 0.0), beta)
        alpha = np.where(right, np.minimum(alpha, 1.0), alpha)
        beta = np.where(right, np.maximum(beta, 1.5), beta)
        alpha, beta = np.clip(alpha, -0.5, 1.5), np.clip(beta, -0.5, 1.5)
        return alpha, np.maximum(alpha, beta)

    def sympy_apply(self, expr):
        return sympy.Piecewise((0, expr <= -3), (expr, expr >= 3), (expr * (expr + 3) / 6, True))


@dataclass(frozen=True, eq=False)
class Hardsigmoid(Activation):
    """``min(max(alpha x + beta, 0), 1)`` (ONNX ``HardSigmoid``; PyTorch's ``nn.Hardsigmoid`` is ``alpha = 1/6, beta =
    1/2``, the default); slopes ``[min(0, alpha), max(0, alpha)]``; kinks where ``alpha x + beta`` is 0 or 1.
    ``alpha != 0`` and ``beta`` are taken exactly.  Proof: ``proofs/activations.md`` §6."""

    alpha: Any = Fraction(1, 6)
    beta: Any = Fraction(1, 2)
    kind: ClassVar[str] = "Hardsigmoid"

    def __post_init__(self) -> None:
        a = _exact_param(self.alpha, "Hardsigmoid: alpha")
        b = _exact_param(self.beta, "Hardsigmoid: beta")
        if a == 0:
            raise ValueError("Hardsigmoid: alpha must not be 0 (a constant function)")
        object.__setattr__(self, "_a_fraction", a)
        object.__setattr__(self, "_b_fraction", b)
        object.__setattr__(self, "_a_const", _frac_const(a))
        object.__setattr__(self, "_b_const", _frac_const(b))

    def _slope_fractions(self) -> tuple[Fraction, Fraction]:
        return min(Fraction(0), self._a_fraction), max(Fraction(0), self._a_fraction)

    @property
    def slopes(self):
        return tuple(_sympy_rational(v) for v in self._slope_fractions())

    @property
    def is_piecewise_linear(self) -> bool:
        return True

    @property
    def kinks(self) -> tuple[tuple[float, float], ...]:
        a, b = self._a_fraction, self._b_fraction
        return tuple(sorted(_kink_pairs((-b / a, (1 - b) / a))))

    def _t(self, x, track: bool) -> _Tracked:
        return _Tracked.const(*self._a_const, track) * _Tracked.exact(x, track) + _Tracked.const(*self._b_const, track)

    def forward(self, x):
        return np.clip(self._t(x, False).v, 0.0, 1.0)

    def forward_error(self, x):
        t = self._t(x, True)
        return np.where((t.v - t.e > 1.0) | (t.v + t.e < 0.0), 0.0, t.e)  # provably clipped: exact

    def derivative(self, x):
        t = self._t(x, False).v
        return np.where((t >= 0.0) & (t < 1.0), self._a_const[0], 0.0)

    def derivative_error(self, x):
        t = self._t(x, True)
        inside = (t.v - t.e > 0.0) & (t.v + t.e < 1.0)
        outside = (t.v - t.e > 1.0) | (t.v + t.e < 0.0)
        a, r = self._a_const
        return np.where(inside, r, np.where(outside, 0.0, _add_up(abs(a), r)))

    def range_on(self, lo, hi):
        lo, hi = np.asarray(lo, dtype=np.float64), np.asarray(hi, dtype=np.float64)
        if self._a_fraction > 0:
            return _monotone_range(self, lo, hi)
        a, b = _outward(self.forward(hi), self.forward_error(hi), self.forward(lo), self.forward_error(lo))
        return np.maximum(a, 0.0), np.minimum(b, 1.0)

    def narrow_slopes(self, lo, hi):
        # slope alpha strictly between the kinks k1 < k2, 0 outside them
        lo, hi = np.asarray(lo, dtype=np.float64), np.asarray(hi, dtype=np.float64)
        (k1_lo, k1_hi), (k2_lo, k2_hi) = self.kinks
        s_lo, s_hi = self.slope_interval
        flat = (hi <= k1_lo) | (lo >= k2_hi)
        mid = (lo >= k1_hi) & (hi <= k2_lo)
        alpha = np.where(flat, 0.0, np.where(mid, float_down(self._a_fraction), s_lo))
        beta = np.where(flat, 0.0, np.where(mid, float_up(self._a_fraction), s_hi))
        return np.maximum(alpha, s_lo), np.minimum(beta, s_hi)

    def sympy_apply(self, expr):
        t = _sympy_rational(self._a_fraction) * expr + _sympy_rational(self._b_fraction)
        return sympy.Min(sympy.Max(t, 0), 1)

    def describe(self) -> str:
        if (self._a_fraction, self._b_fraction) == (Fraction(1, 6), Fraction(1, 2)):
            return "Hardsigmoid"
        return f"Hardsigmoid(alpha={self._a_fraction}, beta={self._b_fraction})"


def _log_sigmoid(x, track: bool) -> _Tracked:
    """``-log(1 + e^{-x})``, as ``-(max(-x, 0) + log1p(exp(-|x|)))``."""
    neg = _Tracked.exact(-np.asarray(x, dtype=np.float64), track)
    return _tracked_map(_softplus_t(neg, track), np.negative)


@dataclass(frozen=True, eq=False)
class LogSigmoid(Activation):
    """``log(sigmoid(x)) = -log(1 + e^{-x})`` (PyTorch's ``nn.LogSigmoid``); slopes ``[0, 1]`` (``σ' = sigmoid(-x)``).
    Proof: ``proofs/activations.md`` §6."""

    kind: ClassVar[str] = "LogSigmoid"
    curvature: ClassVar[float] = 0.25  # |σ''| = sigmoid'(x) <= 1/4
    slopes: ClassVar = _Slopes(Fraction(0), Fraction(1))

    def forward(self, x):
        return _log_sigmoid(x, False).v

    def derivative(self, x):
        return _expit(-np.asarray(x, dtype=np.float64))

    def forward_error(self, x):
        return _log_sigmoid(x, True).e

    def derivative_error(self, x):
        return _lemma_r_error(self.derivative(x))

    def range_on(self, lo, hi):
        return _monotone_range(self, lo, hi)

    def narrow_slopes(self, lo, hi):
        return _monotone_derivative_slopes(self, lo, hi, increasing=False)

    def sympy_apply(self, expr):
        return -sympy.log(1 + sympy.exp(-expr))


def _mish(x, track: bool) -> tuple[_Tracked, _Tracked]:
    """``x tanh(softplus(x))`` and its softplus factor."""
    xt = _Tracked.exact(x, track)
    sp = _softplus_t(xt, track)
    return xt * sp.apply(np.tanh, _tanh_dsup), sp


def _mish_derivative(x, track: bool) -> _Tracked:
    """``tanh(sp) + x sech^2(sp) sigmoid(x)``, ``sp = softplus(x)``, with ``sech^2(s) = 4 expit(2s) expit(-2s)``."""
    x = np.asarray(x, dtype=np.float64)
    xt = _Tracked.exact(x, track)
    _, sp = _mish(x, track)
    two = _Tracked.const(2.0, 0.0, track)
    sech2 = ((two * sp).apply(_expit, _quarter) * (_Tracked.const(-2.0, 0.0, track) * sp).apply(_expit, _quarter)
             * _Tracked.const(4.0, 0.0, track))
    return sp.apply(np.tanh, _tanh_dsup) + (xt * sech2) * xt.apply(_expit, None)


@functools.cache
def _mish_minimum() -> tuple[tuple[float, float], float]:
    """A proven float bracket of Mish's minimiser and a float below the minimum (``arb``, as :func:`_unimodal_minimum`;
    that Mish decreases before and increases after it: ``proofs/activations.md`` §6)."""
    from flint import arb, ctx

    old = ctx.prec
    ctx.prec = 128
    try:
        def f(t):
            return t * (1 + t.exp()).log().tanh()

        def df(t):
            w = t.exp()
            d = w * w + 2 * w + 2
            return w * (w + 2) / d + t * 4 * w * (w + 1) / (d * d)

        a, b = "-1.19243122", "-1.19243121"
        lo_ball, hi_ball = arb(a), arb(b)
        if not (bool(df(lo_ball) < 0) and bool(df(hi_ball) > 0)):
            raise RuntimeError("Mish: the bracket of the minimiser could not be verified")
        value = f(lo_ball.union(hi_ball)).lower()
        m = float(value)
        while not bool(arb(m) <= value):
            m = float(down(m))
        x_lo, x_hi = float(down(float(a))), float(up(float(b)))
        if not (bool(arb(x_lo) < lo_ball) and bool(arb(x_hi) > hi_ball)):
            raise RuntimeError("Mish: the float bracket of the minimiser could not be verified")
        return (x_lo, x_hi), m
    finally:
        ctx.prec = old


@dataclass(frozen=True, eq=False)
class Mish(Activation):
    """``x tanh(softplus(x))`` (PyTorch's ``nn.Mish``, ONNX ``Mish``); slopes enclosed by ``[-0.1126, 1.0885]``
    (extremes ``-0.112526…`` at ``x = -2.25638…`` and ``1.088498…`` at ``x = 1.49057…``, verified with ``arb``); minimum
    ``-0.308843…`` at ``x* = -1.192431…``.  Proof: ``proofs/activations.md`` §6."""

    kind: ClassVar[str] = "Mish"
    curvature: ClassVar[float] = 0.65  # sup |Mish''| = |Mish''(-0.08793…)| = 0.64420…, arb-verified below 0.65 (§6)
    slopes: ClassVar = _Slopes(Fraction(-1126, 10000), Fraction(10885, 10000))

    def forward(self, x):
        return _mish(x, False)[0].v

    def derivative(self, x):
        return _mish_derivative(x, False).v

    def forward_error(self, x):
        return _mish(x, True)[0].e

    def derivative_error(self, x):
        return _mish_derivative(x, True).e

    def range_on(self, lo, hi):
        x_star, f_min = _mish_minimum()
        return _unimodal_range(self, lo, hi, x_star, f_min)

    def narrow_slopes(self, lo, hi):
        # Mish' decreases on (-inf, c1], increases on [c1, c2], decreases on [c2, inf) with c1 in [-2.2564, -2.2563],
        # c2 in [1.4905, 1.4906] (arb-verified signs of Mish'', proofs/activations.md §6)
        lo, hi = np.asarray(lo, dtype=np.float64), np.asarray(hi, dtype=np.float64)
        s_lo, s_hi = self.slope_interval
        d_lo, d_hi = self.derivative(lo), self.derivative(hi)
        e_lo, e_hi = self.derivative_error(lo), self.derivative_error(hi)
        a1, b1 = _outward(d_lo, e_lo, d_lo, e_lo)
        a2, b2 = _outward(d_hi, e_hi, d_hi, e_hi)
        alpha = np.where((lo <= -2.2563) & (hi >= -2.2564), s_lo, np.minimum(a1, a2))
        beta = np.where((lo <= 1.4906) & (hi >= 1.4905), s_hi, np.maximum(b1, b2))
        alpha, beta = np.clip(alpha, s_lo, s_hi), np.clip(beta, s_lo, s_hi)
        return alpha, np.maximum(alpha, beta)

    def sympy_apply(self, expr):
        return expr * sympy.tanh(sympy.log(1 + sympy.exp(expr)))


#: the activations a user can name in a model file
ACTIVATIONS: dict[str, type[Activation]] = {
    cls.kind.lower(): cls for cls in (ReLU, LeakyReLU, Identity, Tanh, Sigmoid, GELU, SiLU, ELU, Softplus, Hardtanh,
                                     ReLU6, Hardswish, Mish, LogSigmoid, Hardsigmoid)
}
