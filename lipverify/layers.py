"""Layers: small immutable objects that declare facts about themselves.

A layer knows its output shape for a given input shape, its numpy forward pass and Jacobian, its
sympy form and, for activations, the interval ``[alpha, beta]`` that contains every value of its
derivative (the *slope interval*).  The bound families in :mod:`lipverify.bounds` read these facts;
they never guess.

Weights may be numpy arrays, nested lists, or sympy matrices whose entries are Rationals or
symbols.  Exact input (integers, Fractions, sympy Rationals) is kept exactly in ``weight_exact``;
``weight`` is the nearest float matrix and ``weight_radius`` bounds the conversion error entrywise.
NaN or infinite weights are refused when the layer is built.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from fractions import Fraction
from typing import Any, ClassVar

import numpy as np
import sympy

from .errors import ShapeError
from .result import float_down, float_up

Shape = tuple[int, ...]


# --------------------------------------------------------------------------- weight conversion


def _is_exact_scalar(v: Any) -> bool:
    return isinstance(v, (int, np.integer, Fraction, sympy.Basic)) and not isinstance(v, bool)


def _to_sympy_scalar(v: Any, where: str) -> sympy.Expr:
    if isinstance(v, Fraction):
        return sympy.Rational(v.numerator, v.denominator)
    if isinstance(v, (int, np.integer)) and not isinstance(v, bool):
        return sympy.Integer(int(v))
    if isinstance(v, sympy.Basic):
        expr = sympy.sympify(v)
        if expr.has(sympy.nan, sympy.zoo, sympy.oo, -sympy.oo):
            raise ValueError(f"{where}: entry {v} is not finite")
        if isinstance(expr, sympy.Float):
            return sympy.Rational(expr)
        return expr
    raise TypeError(f"{where}: entry {v!r} of type {type(v).__name__} is not a number")


@dataclass(frozen=True)
class ParamMatrix:
    """A parameter array kept as floats and, when given exactly, as a sympy matrix as well.

    ``exact`` is a sympy ``ImmutableMatrix`` (or ``None`` for float input); ``value`` is the nearest
    float array (``None`` when ``exact`` has free symbols); ``radius`` bounds ``|exact - value|``
    entrywise (``None`` when the floats are exact).
    """

    value: np.ndarray | None
    exact: sympy.ImmutableMatrix | None
    radius: np.ndarray | None
    shape: Shape

    @property
    def free_symbols(self) -> set[sympy.Symbol]:
        return set() if self.exact is None else set(self.exact.free_symbols)


def as_param(data: Any, *, ndim: int, where: str) -> ParamMatrix:
    """Convert weights or biases to a :class:`ParamMatrix` of rank ``ndim`` (1 or 2).

    Raises ``ValueError``/``TypeError`` naming ``where`` for NaN/inf, non-numeric or wrong-rank input.
    """
    if isinstance(data, sympy.MatrixBase):
        mat = sympy.ImmutableMatrix(data)
        if ndim == 1:
            if mat.cols != 1 and mat.rows != 1:
                raise ShapeError(f"{where}: expected a vector, got a sympy matrix of shape {mat.shape}")
            mat = sympy.ImmutableMatrix(list(mat))
        return _from_sympy(mat, ndim, where)
    if isinstance(data, np.ndarray) and data.dtype != object:
        arr = data
    else:
        try:
            arr = np.array(data, dtype=object)
        except ValueError as exc:  # ragged nested lists
            raise ShapeError(f"{where}: not a rectangular array ({exc})") from None
        if any(isinstance(v, (list, tuple, np.ndarray)) for v in arr.flat):
            raise ShapeError(f"{where}: not a rectangular array (rows of different lengths)")
        if arr.size and all(_is_exact_scalar(v) for v in arr.flat):
            if arr.ndim != ndim:
                raise ShapeError(f"{where}: expected a rank-{ndim} array, got shape {arr.shape}")
            flat = [_to_sympy_scalar(v, where) for v in arr.flat]
            rows = arr.shape[0]
            cols = arr.shape[1] if ndim == 2 else 1
            return _from_sympy(sympy.ImmutableMatrix(rows, cols, flat), ndim, where)
        try:
            arr = np.array(data, dtype=np.float64)
        except (TypeError, ValueError):
            raise TypeError(
                f"{where}: weights must be numeric (numpy array, nested lists of numbers or a sympy "
                f"Matrix), got {type(data).__name__}"
            ) from None
    if not np.issubdtype(arr.dtype, np.number) or np.issubdtype(arr.dtype, np.complexfloating):
        raise TypeError(f"{where}: weights must be real numbers, got dtype {arr.dtype}")
    arr = np.array(arr, dtype=np.float64)
    if arr.ndim != ndim:
        raise ShapeError(f"{where}: expected a rank-{ndim} array, got shape {arr.shape}")
    if not np.all(np.isfinite(arr)):
        bad = tuple(int(i) for i in np.argwhere(~np.isfinite(arr))[0])
        raise ValueError(f"{where}: entry {bad} is {arr[bad]}; NaN and inf weights are refused")
    arr.setflags(write=False)
    return ParamMatrix(arr, None, None, arr.shape)


def _from_sympy(mat: sympy.ImmutableMatrix, ndim: int, where: str) -> ParamMatrix:
    entries = [_to_sympy_scalar(v, where) for v in mat]
    mat = sympy.ImmutableMatrix(mat.rows, mat.cols, entries)
    shape = (mat.rows,) if ndim == 1 else (mat.rows, mat.cols)
    if mat.free_symbols:
        return ParamMatrix(None, mat, None, shape)
    if not all(e.is_real for e in entries):
        raise TypeError(f"{where}: entries must be real numbers")
    values = np.array([float(e) for e in entries], dtype=np.float64)
    if not np.all(np.isfinite(values)):
        raise ValueError(f"{where}: an entry overflows the float range")
    radius = np.zeros_like(values)
    for i, (e, v) in enumerate(zip(entries, values)):
        if not (e.is_Rational and sympy.Rational(v) == e):
            # float(e) is correctly rounded for Rationals, and within a few ulps for other reals
            radius[i] = 4 * np.spacing(abs(v)) if e.is_Rational else 16 * np.spacing(abs(v)) + 1e-300
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


class Activation(Layer):
    """An elementwise activation with derivative values in ``[slope_lower, slope_upper]``.

    ``slopes`` are exact sympy Rationals; ``slope_interval`` the same interval rounded outward to floats.
    """

    kind: ClassVar[str] = "Activation"
    #: an upper bound of sup |σ''| away from kinks (0 for piecewise-linear activations)
    curvature: ClassVar[float] = 0.0

    @property
    def slopes(self) -> tuple[sympy.Rational, sympy.Rational]:
        raise NotImplementedError

    @property
    def slope_interval(self) -> tuple[float, float]:
        lo, hi = self.slopes
        return float_down(lo), float_up(hi)

    @property
    def is_piecewise_linear(self) -> bool:
        return False

    def output_shape(self, input_shape: Shape) -> Shape:
        return input_shape

    def derivative(self, x: np.ndarray) -> np.ndarray:
        """Elementwise derivative (a one-sided one at kinks: an element of the Clarke derivative)."""
        raise NotImplementedError

    def sympy_apply(self, expr: sympy.Expr) -> sympy.Expr:
        raise NotImplementedError


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

    def output_shape(self, input_shape: Shape) -> Shape:
        return (int(np.prod(input_shape, dtype=np.int64)),)

    def forward(self, x: np.ndarray) -> np.ndarray:
        return x.reshape(x.shape[0], -1)


# --------------------------------------------------------------------------- activations


@dataclass(frozen=True, eq=False)
class ReLU(Activation):
    """``max(0, x)``; slopes ``[0, 1]``."""

    kind: ClassVar[str] = "ReLU"
    slopes: ClassVar = (sympy.Integer(0), sympy.Integer(1))

    @property
    def is_piecewise_linear(self) -> bool:
        return True

    def forward(self, x):
        return np.maximum(x, 0.0)

    def derivative(self, x):
        return (x > 0).astype(np.float64)

    def sympy_apply(self, expr):
        return sympy.Max(0, expr)


@dataclass(frozen=True, eq=False)
class LeakyReLU(Activation):
    """``x`` for ``x >= 0`` and ``a x`` otherwise; slopes ``[min(a, 1), max(a, 1)]``."""

    negative_slope: Any = sympy.Rational(1, 100)
    kind: ClassVar[str] = "LeakyReLU"

    def __post_init__(self) -> None:
        a = self.negative_slope
        if isinstance(a, bool) or not isinstance(a, (int, float, Fraction, np.integer, np.floating, sympy.Basic)):
            raise TypeError(f"LeakyReLU: negative_slope must be a real number, got {a!r}")
        if isinstance(a, (float, np.floating)):
            if not math.isfinite(a):
                raise ValueError(f"LeakyReLU: negative_slope must be finite, got {a}")
            exact = sympy.Rational(float(a))
        else:
            exact = _to_sympy_scalar(a, "LeakyReLU negative_slope")
            if not exact.is_Rational:
                raise TypeError(f"LeakyReLU: negative_slope must be a rational number, got {a}")
        object.__setattr__(self, "_a", exact)

    @property
    def slopes(self):
        return (sympy.Min(self._a, 1), sympy.Max(self._a, 1))

    @property
    def is_piecewise_linear(self) -> bool:
        return True

    def forward(self, x):
        a = float(self._a)
        return np.where(x >= 0, x, a * x)

    def derivative(self, x):
        return np.where(x > 0, 1.0, float(self._a))

    def sympy_apply(self, expr):
        return sympy.Piecewise((expr, expr >= 0), (self._a * expr, True))

    def describe(self) -> str:
        return f"LeakyReLU({self._a})"


@dataclass(frozen=True, eq=False)
class Identity(Activation):
    """The identity; slopes ``[1, 1]``."""

    kind: ClassVar[str] = "Identity"
    slopes: ClassVar = (sympy.Integer(1), sympy.Integer(1))

    @property
    def is_piecewise_linear(self) -> bool:
        return True

    def forward(self, x):
        return x

    def derivative(self, x):
        return np.ones_like(x, dtype=np.float64)

    def sympy_apply(self, expr):
        return expr


@dataclass(frozen=True, eq=False)
class Tanh(Activation):
    """``tanh``; slopes ``[0, 1]``."""

    kind: ClassVar[str] = "Tanh"
    curvature: ClassVar[float] = 0.77  # 4 / (3 sqrt 3) = 0.7698...
    slopes: ClassVar = (sympy.Integer(0), sympy.Integer(1))

    def forward(self, x):
        return np.tanh(x)

    def derivative(self, x):
        return 1.0 - np.tanh(x) ** 2

    def sympy_apply(self, expr):
        return sympy.tanh(expr)


@dataclass(frozen=True, eq=False)
class Sigmoid(Activation):
    """The logistic function ``1 / (1 + exp(-x))``; slopes ``[0, 1/4]``."""

    kind: ClassVar[str] = "Sigmoid"
    curvature: ClassVar[float] = 0.0963  # 1 / (6 sqrt 3) = 0.09623...
    slopes: ClassVar = (sympy.Integer(0), sympy.Rational(1, 4))

    def forward(self, x):
        return 0.5 * (1.0 + np.tanh(0.5 * x))

    def derivative(self, x):
        s = self.forward(x)
        return s * (1.0 - s)

    def sympy_apply(self, expr):
        return 1 / (1 + sympy.exp(-expr))


@dataclass(frozen=True, eq=False)
class GELU(Activation):
    """``x Phi(x)`` (exact erf form); slopes enclosed by ``[-0.1290, 1.1290]``.

    The extreme slopes are ``1/2 ± (erf(1)/2 + 1/(e sqrt(pi)))``, numerically ``-0.128904`` and
    ``1.128904`` at ``x = ∓sqrt(2)``; see ``proofs/activations.md``.
    """

    kind: ClassVar[str] = "GELU"
    curvature: ClassVar[float] = 0.8  # |phi(x) (2 - x^2)| <= 2 phi(0) = 0.7979...
    slopes: ClassVar = (sympy.Rational(-1290, 10000), sympy.Rational(11290, 10000))

    def forward(self, x):
        from scipy.special import erf

        return 0.5 * x * (1.0 + erf(x / math.sqrt(2.0)))

    def derivative(self, x):
        from scipy.special import erf

        return 0.5 * (1.0 + erf(x / math.sqrt(2.0))) + x * np.exp(-0.5 * x * x) / math.sqrt(2 * math.pi)

    def sympy_apply(self, expr):
        return expr / 2 * (1 + sympy.erf(expr / sympy.sqrt(2)))


@dataclass(frozen=True, eq=False)
class SiLU(Activation):
    """``x sigmoid(x)`` (swish); slopes enclosed by ``[-0.0999, 1.0999]`` (extremes ±1.099839…, see proofs)."""

    kind: ClassVar[str] = "SiLU"
    curvature: ClassVar[float] = 0.51  # |s(1-s)(2 + x(1-2s))| <= 1/2, attained at 0
    slopes: ClassVar = (sympy.Rational(-999, 10000), sympy.Rational(10999, 10000))

    def forward(self, x):
        return x * 0.5 * (1.0 + np.tanh(0.5 * x))

    def derivative(self, x):
        s = 0.5 * (1.0 + np.tanh(0.5 * x))
        return s * (1.0 + x * (1.0 - s))

    def sympy_apply(self, expr):
        return expr / (1 + sympy.exp(-expr))


#: the activations a user can name in a model file
ACTIVATIONS: dict[str, type[Activation]] = {
    cls.kind.lower(): cls for cls in (ReLU, LeakyReLU, Identity, Tanh, Sigmoid, GELU, SiLU)
}
