"""Convolutional layers on ``(C, H, W)`` tensors: ``Conv2d``, ``MaxPool2d``, ``AvgPool2d``, ``BatchNorm2d``.

They follow PyTorch's conventions (cross-correlation, zero padding, floor-mode output sizes, average
pooling counting the padding cells, max pooling padding with ``-inf``) and declare the facts the
bounds read: output shapes, numpy forward pass and Jacobian (hook ``jvp`` of
:class:`~lipverify.Network`), sympy form (hook ``sympy_apply_vector``) and, for the linear layers,
their operator (:mod:`lipverify.ir.operators`).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from fractions import Fraction
from typing import TYPE_CHECKING, Any, ClassVar

import numpy as np

from .._lazy import LazyModule
from ..errors import ShapeError
from ..layers import Layer, ParamMatrix, Shape, _numeric, as_param
from ..rigorous import UNIT_ROUNDOFF, quotient_radius, up
from . import ops

if TYPE_CHECKING:
    import sympy
else:
    sympy = LazyModule("sympy")

#: a layer's sympy form is built only up to this many (output entry, tap) pairs
SYMPY_LIMIT = 20_000


def _chw(input_shape: Shape, kind: str) -> tuple[int, int, int]:
    if len(input_shape) != 3:
        raise ValueError(f"{kind} expects a (C, H, W) input but receives shape {input_shape}; give "
                         "input_shape=(C, H, W) to the Network (and no Flatten before it)")
    return input_shape  # type: ignore[return-value]


def _move_batch(jac: np.ndarray, shape: Shape) -> tuple[np.ndarray, int, int]:
    """``(n, *shape, n_in)`` to ``(n * n_in, *shape)``."""
    n, n_in = jac.shape[0], jac.shape[-1]
    return np.moveaxis(jac.reshape(n, *shape, n_in), -1, 1).reshape(n * n_in, *shape), n, n_in


def _back(out: np.ndarray, n: int, n_in: int) -> np.ndarray:
    return np.moveaxis(out.reshape(n, n_in, *out.shape[1:]), 1, -1)


@dataclass(frozen=True, eq=False)
class Conv2d(Layer):
    """2-D convolution ``y = kernel ⋆ x + bias`` (PyTorch ``Conv2d``); kernel ``(C_out, C_in/groups, kh, kw)``.

    Kernel and bias are numpy arrays (floats) or nested lists of exact numbers (ints, Fractions, sympy
    Rationals or symbols), kept exactly like :class:`~lipverify.Dense` weights.

    >>> import numpy as np
    >>> Conv2d(np.ones((4, 3, 3, 3)), padding=1, stride=2).output_shape((3, 8, 8))
    (4, 4, 4)
    """

    kernel_data: Any
    bias_data: Any = None
    stride: Any = 1
    padding: Any = 0
    dilation: Any = 1
    groups: int = 1
    kind: ClassVar[str] = "Conv2d"
    step_kind: ClassVar[str] = "conv"
    _kernel: ParamMatrix = field(init=False, repr=False)
    _bias: ParamMatrix | None = field(init=False, repr=False)
    kernel_shape: tuple[int, int, int, int] = field(init=False, repr=False)

    def __post_init__(self) -> None:
        data = self.kernel_data
        if isinstance(data, np.ndarray) and data.dtype != object:
            arr = data
        else:
            try:
                arr = np.array(data, dtype=object)
            except ValueError as exc:
                raise ShapeError(f"Conv2d kernel: not a rectangular array ({exc})") from None
        if arr.ndim != 4 or 0 in arr.shape:
            raise ShapeError(f"Conv2d kernel must have shape (C_out, C_in/groups, kh, kw), got shape {arr.shape}")
        shape4 = tuple(int(d) for d in arr.shape)
        k = as_param(arr.reshape(shape4[0], -1), ndim=2, where="Conv2d kernel")
        object.__setattr__(self, "_kernel", k)
        object.__setattr__(self, "kernel_shape", shape4)
        try:
            for name in ("stride", "dilation"):
                object.__setattr__(self, name, ops.pair(getattr(self, name), f"Conv2d {name}", minimum=1))
            object.__setattr__(self, "padding", ops.pair(self.padding, "Conv2d padding", minimum=0))
        except ValueError as exc:
            raise ValueError(str(exc)) from None
        g = self.groups
        if isinstance(g, bool) or not isinstance(g, (int, np.integer)) or g < 1 or shape4[0] % g:
            raise ValueError(f"Conv2d: groups={g!r} must be a positive int dividing C_out={shape4[0]}")
        object.__setattr__(self, "groups", int(g))
        if self.bias_data is None:
            b = None
        else:
            b = as_param(self.bias_data, ndim=1, where="Conv2d bias")
            if b.shape != (shape4[0],):
                raise ShapeError(f"Conv2d: bias has shape {b.shape} but the kernel has C_out={shape4[0]} "
                                 f"(kernel shape {shape4}); give a bias of shape ({shape4[0]},)")
        object.__setattr__(self, "_bias", b)

    # facts --------------------------------------------------------------------------------
    @property
    def weight(self) -> np.ndarray:
        """The float kernel ``(C_out, C_in/groups, kh, kw)``."""
        return _numeric(self._kernel, "Conv2d kernel").reshape(self.kernel_shape)

    @property
    def weight_radius(self) -> np.ndarray | None:
        """Entrywise bound of ``|exact kernel - float kernel|`` (``None`` when the floats are exact)."""
        r = self._kernel.radius
        return None if r is None else r.reshape(self.kernel_shape)

    @property
    def weight_exact(self) -> sympy.ImmutableMatrix | None:
        """The exact kernel as a sympy matrix ``(C_out, C_in/groups * kh * kw)`` or ``None``."""
        return self._kernel.exact

    @property
    def bias(self) -> np.ndarray:
        if self._bias is None:
            return np.zeros(self.kernel_shape[0])
        return _numeric(self._bias, "Conv2d bias")

    def affine_shift(self, input_shape: Shape) -> tuple[np.ndarray, np.ndarray | None]:
        """The bias as a vector over the output (C order) and a bound of its conversion error (or ``None``)."""
        hw = int(np.prod(self.output_shape(input_shape)[1:]))
        radius = None if self._bias is None or self._bias.radius is None else np.repeat(self._bias.radius, hw)
        return np.repeat(self.bias, hw), radius

    @property
    def is_exact(self) -> bool:
        return self._kernel.exact is not None and (self._bias is None or self._bias.exact is not None)

    @property
    def free_symbols(self) -> set[sympy.Symbol]:
        syms = self._kernel.free_symbols
        return syms | self._bias.free_symbols if self._bias is not None else syms

    def describe(self) -> str:
        co, cg, kh, kw = self.kernel_shape
        return f"Conv2d({cg * self.groups}->{co}, {kh}x{kw}, stride={self.stride}, padding={self.padding})"

    def output_shape(self, input_shape: Shape) -> Shape:
        c, h, w = _chw(input_shape, "Conv2d")
        co, cg, kh, kw = self.kernel_shape
        if c != cg * self.groups:
            raise ValueError(f"Conv2d kernel of shape {self.kernel_shape} with groups={self.groups} needs "
                             f"{cg * self.groups} input channels, but receives {c} (shape {input_shape})")
        ho = ops.out_size(h, kh, self.stride[0], self.padding[0], self.dilation[0])
        wo = ops.out_size(w, kw, self.stride[1], self.padding[1], self.dilation[1])
        if ho < 1 or wo < 1:
            raise ValueError(f"Conv2d kernel {kh}x{kw} (dilation {self.dilation}, padding {self.padding}) "
                             f"does not fit the {h}x{w} input")
        return (co, ho, wo)

    # numeric ------------------------------------------------------------------------------
    def apply_linear(self, x: np.ndarray, kernel: np.ndarray | None = None) -> np.ndarray:
        """The bias-free convolution of a batch ``(B, C, H, W)`` (with ``kernel`` in place of the weight)."""
        k = self.weight if kernel is None else kernel
        return ops.conv2d(x, k, self.stride, self.padding, self.dilation, self.groups)

    def apply_transpose(self, y: np.ndarray, in_hw: tuple[int, int], kernel: np.ndarray | None = None) -> np.ndarray:
        k = self.weight if kernel is None else kernel
        return ops.conv2d_transpose(y, k, in_hw, self.stride, self.padding, self.dilation, self.groups)

    def forward(self, x: np.ndarray) -> np.ndarray:
        return self.apply_linear(x) + self.bias[None, :, None, None]

    def jvp(self, h, jac, shape_in, shape_out):
        x, n, n_in = _move_batch(jac, shape_in)
        return _back(self.apply_linear(x), n, n_in)

    def taps(self, input_shape: Shape, out_channels: range | None = None) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """The sparse structure ``(rows, cols, kernel_flat_index)`` of the layer's matrix on ``input_shape``
        (only the rows of ``out_channels`` if given), rows in increasing order."""
        c, h, w = input_shape
        co, cg, kh, kw = self.kernel_shape
        _, ho, wo = self.output_shape(input_shape)
        chans = np.arange(co) if out_channels is None else np.asarray(out_channels)
        o, y, x, ci, i, j = np.meshgrid(chans, np.arange(ho), np.arange(wo), np.arange(cg), np.arange(kh),
                                        np.arange(kw), indexing="ij")
        r = y * self.stride[0] + i * self.dilation[0] - self.padding[0]
        s = x * self.stride[1] + j * self.dilation[1] - self.padding[1]
        ok = (r >= 0) & (r < h) & (s >= 0) & (s < w)
        o, y, x, ci, i, j, r, s = (a[ok] for a in (o, y, x, ci, i, j, r, s))
        cin = (o // (co // self.groups)) * cg + ci
        rows = (o * ho + y) * wo + x
        cols = (cin * h + r) * w + s
        kidx = ((o * cg + ci) * kh + i) * kw + j
        return rows, cols, kidx

    def sympy_apply_vector(self, hvec, shape_in, shape_out):
        rows, cols, kidx = self.taps(shape_in)
        if rows.size > SYMPY_LIMIT:
            raise ValueError(f"Conv2d: the sympy form has {rows.size} terms (limit {SYMPY_LIMIT}); use a smaller network")
        kern = self._kernel.exact
        flat = list(kern) if kern is not None else [sympy.Rational(v) for v in self.weight.flat]
        if self._bias is None:
            bias = [sympy.Integer(0)] * self.kernel_shape[0]
        elif self._bias.exact is not None:
            bias = list(self._bias.exact)
        else:
            bias = [sympy.Rational(v) for v in self.bias]
        n_out = int(np.prod(shape_out))
        per_channel = n_out // self.kernel_shape[0]
        out = [bias[r // per_channel] for r in range(n_out)]
        for r, c, k in zip(rows.tolist(), cols.tolist(), kidx.tolist()):
            out[r] = out[r] + flat[k] * hvec[c]
        return sympy.Matrix(out)

    def subs(self, mapping: dict) -> Conv2d:
        if not self.free_symbols:
            return self
        k = self._kernel.exact.subs(mapping) if self._kernel.exact is not None else self.weight.reshape(self.kernel_shape[0], -1)
        k = np.array(k.tolist() if hasattr(k, "tolist") else k, dtype=object).reshape(self.kernel_shape)
        b = None
        if self._bias is not None:
            b = list(self._bias.exact.subs(mapping)) if self._bias.exact is not None else self.bias
        return Conv2d(k, b, self.stride, self.padding, self.dilation, self.groups)


class _Pool(Layer):
    kernel_size: Any
    stride: Any
    padding: Any

    def _init_geometry(self) -> None:
        name = self.kind
        k = ops.pair(self.kernel_size, f"{name} kernel", minimum=1)
        s = k if self.stride is None else ops.pair(self.stride, f"{name} stride", minimum=1)
        p = ops.pair(self.padding, f"{name} padding", minimum=0)
        if p[0] > k[0] // 2 or p[1] > k[1] // 2:
            raise ValueError(f"{name}: padding {p} must be at most half the kernel {k} (as in PyTorch), "
                             "so that every window holds an input cell")
        object.__setattr__(self, "kernel_size", k)
        object.__setattr__(self, "stride", s)
        object.__setattr__(self, "padding", p)

    def output_shape(self, input_shape: Shape) -> Shape:
        c, h, w = _chw(input_shape, self.kind)
        ho = ops.out_size(h, self.kernel_size[0], self.stride[0], self.padding[0], 1)
        wo = ops.out_size(w, self.kernel_size[1], self.stride[1], self.padding[1], 1)
        if ho < 1 or wo < 1:
            raise ValueError(f"{self.kind} window {self.kernel_size} (padding {self.padding}) does not fit the {h}x{w} input")
        return (c, ho, wo)

    def describe(self) -> str:
        return f"{self.kind}({self.kernel_size}, stride={self.stride}, padding={self.padding})"

    def window_index(self, input_shape: Shape) -> np.ndarray:
        """Flat input indices ``(n_out, kh*kw)`` of every window, ``-1`` for padding cells."""
        return ops.window_index(input_shape, self.kernel_size, self.stride, self.padding)

    def max_overlap(self, input_shape: Shape) -> int:
        """The largest number of windows containing one input cell."""
        return ops.max_overlap(input_shape, self.kernel_size, self.stride, self.padding)


@dataclass(frozen=True, eq=False)
class MaxPool2d(_Pool):
    """Max pooling (PyTorch ``MaxPool2d``, floor mode); padding cells are ``-inf``, windows may overlap.

    Not linear: ``MP(x) - MP(y) = M (x - y)`` with ``M >= 0`` and every row in the simplex of its
    window (``proofs/maxpool.md``).

    >>> MaxPool2d(2).output_shape((3, 5, 5))
    (3, 2, 2)
    """

    kernel_size: Any
    stride: Any = None
    padding: Any = 0
    kind: ClassVar[str] = "MaxPool2d"
    step_kind: ClassVar[str] = "maxpool"

    def __post_init__(self) -> None:
        self._init_geometry()

    def forward(self, x: np.ndarray) -> np.ndarray:
        win = ops.pool_windows(x, self.kernel_size, self.stride, self.padding, -np.inf)
        return win.max(axis=(4, 5))

    def jvp(self, h, jac, shape_in, shape_out):
        """Jacobian rule: each output copies the row of the first maximal cell of its window."""
        n, n_in = h.shape[0], jac.shape[-1]
        idx = self.window_index(shape_in)  # (n_out, k)
        flat = h.reshape(n, -1)
        vals = np.where(idx >= 0, flat[:, np.maximum(idx, 0)], -np.inf)  # (n, n_out, k)
        arg = np.take_along_axis(idx[None], vals.argmax(axis=2)[..., None], axis=2)[..., 0]  # (n, n_out)
        j = jac.reshape(n, -1, n_in)
        return np.take_along_axis(j, arg[..., None], axis=1).reshape(n, *shape_out, n_in)

    def sympy_apply_vector(self, hvec, shape_in, shape_out):
        idx = self.window_index(shape_in)
        return sympy.Matrix([sympy.Max(*[hvec[int(k)] for k in row if k >= 0]) for row in idx])


@dataclass(frozen=True, eq=False)
class AvgPool2d(_Pool):
    """Average pooling (PyTorch ``AvgPool2d`` with ``count_include_pad=True``): linear, each output is
    ``1/(kh kw)`` times the sum of its window, padding cells being zeros.

    >>> AvgPool2d(2).output_shape((3, 5, 5))
    (3, 2, 2)
    """

    kernel_size: Any
    stride: Any = None
    padding: Any = 0
    kind: ClassVar[str] = "AvgPool2d"
    step_kind: ClassVar[str] = "avgpool"

    def __post_init__(self) -> None:
        self._init_geometry()

    def affine_shift(self, input_shape: Shape) -> tuple[np.ndarray, None]:
        return np.zeros(int(np.prod(self.output_shape(input_shape)))), None

    @property
    def coefficient(self) -> tuple[float, float]:
        """``(c, r)``: the float ``c`` nearest ``1/(kh kw)`` and a bound ``r`` of ``|c - 1/(kh kw)|``."""
        k = self.kernel_size[0] * self.kernel_size[1]
        c = 1.0 / k
        return c, 0.0 if Fraction(c) == Fraction(1, k) else float(up(UNIT_ROUNDOFF * c))

    def as_conv(self, channels: int) -> Conv2d:
        """The same map as a depthwise :class:`Conv2d` with float kernel ``c`` (see :attr:`coefficient`)."""
        c, _ = self.coefficient
        return Conv2d(np.full((channels, 1, *self.kernel_size), c), None, self.stride, self.padding, 1, channels)

    def forward(self, x: np.ndarray) -> np.ndarray:
        win = ops.pool_windows(x, self.kernel_size, self.stride, self.padding, 0.0)
        return win.sum(axis=(4, 5)) / (self.kernel_size[0] * self.kernel_size[1])

    def jvp(self, h, jac, shape_in, shape_out):
        x, n, n_in = _move_batch(jac, shape_in)
        return _back(self.forward(x), n, n_in)

    def sympy_apply_vector(self, hvec, shape_in, shape_out):
        idx = self.window_index(shape_in)
        c = sympy.Rational(1, self.kernel_size[0] * self.kernel_size[1])
        return sympy.Matrix([c * sympy.Add(*[hvec[int(k)] for k in row if k >= 0]) for row in idx])


@dataclass(frozen=True, eq=False)
class _BatchNorm(Layer):
    """Eval-mode batch normalisation ``y = gamma (x - mean) / sqrt(var + eps) + beta`` per channel (axis 0 of the
    per-sample shape): the affine map ``x -> s x + t`` with ``s = gamma / sqrt(var + eps)``.

    The parameters are floats; ``s`` is computed in float with a bound :attr:`scale_radius` of its
    rounding error (three correctly rounded operations: ``|fl(s) - s| <= 4 u |fl(s)|``).  The subclasses
    :class:`BatchNorm2d` and :class:`BatchNorm1d` only fix the input shapes.
    """

    gamma: Any
    beta: Any
    mean: Any
    var: Any
    eps: float = 1e-5
    step_kind: ClassVar[str] = "batchnorm"

    def __post_init__(self) -> None:
        vals = {}
        for name in ("gamma", "beta", "mean", "var"):
            a = np.array(getattr(self, name), dtype=np.float64)
            if a.ndim != 1 or a.size == 0:
                raise ShapeError(f"{self.kind} {name} must be a non-empty vector, got shape {a.shape}")
            if not np.all(np.isfinite(a)):
                raise ValueError(f"{self.kind} {name} has a NaN or infinite entry; refused")
            a.setflags(write=False)
            vals[name] = a
        sizes = {k: v.size for k, v in vals.items()}
        if len(set(sizes.values())) != 1:
            raise ShapeError(f"{self.kind} parameters must have one length (channels), got {sizes}")
        eps = float(self.eps)
        if not (np.isfinite(eps) and eps >= 0):
            raise ValueError(f"{self.kind} eps must be a finite number >= 0, got {self.eps!r}")
        if np.any(vals["var"] + eps <= 0):
            raise ValueError(f"{self.kind}: var + eps must be positive in every channel")
        for k, v in vals.items():
            object.__setattr__(self, k, v)
        object.__setattr__(self, "eps", eps)

    @property
    def channels(self) -> int:
        return self.gamma.size

    @property
    def scale(self) -> np.ndarray:
        return self.gamma / np.sqrt(self.var + self.eps)

    @property
    def scale_radius(self) -> np.ndarray:
        """Entrywise bound of ``|scale - gamma / sqrt(var + eps)|`` (exact reals of the float parameters)."""
        return quotient_radius(self.scale)

    def affine_shift(self, input_shape: Shape) -> tuple[np.ndarray, np.ndarray]:
        """The shift per element and a bound of ``|fl(beta - fl(mean * s)) - (beta - mean * s_exact)|`` with
        ``|s - s_exact| <= scale_radius``: ``u |t| + u |p| + |mean| r_s + 2 eta`` (``p = fl(mean * s)``, ``t`` the float
        shift), rounded up (``proofs/lower_bound.md``)."""
        from ..rigorous import ETA, UNIT_ROUNDOFF, add_up, scale_up, up

        hw = int(np.prod(input_shape[1:]))
        p = np.abs(self.mean * self.scale)
        t = np.abs(self.shift)
        radius = add_up(scale_up(t, UNIT_ROUNDOFF), scale_up(p, UNIT_ROUNDOFF), up(np.abs(self.mean) * self.scale_radius),
                        np.full(t.shape, 2 * ETA))
        return np.repeat(self.shift, hw), np.repeat(radius, hw)

    @property
    def shift(self) -> np.ndarray:
        return self.beta - self.mean * self.scale

    def describe(self) -> str:
        return f"{self.kind}({self.channels})"

    def _check_channels(self, input_shape: Shape) -> Shape:
        if input_shape[0] != self.channels:
            raise ValueError(f"{self.kind} has {self.channels} channels but receives shape {input_shape}")
        return input_shape

    @staticmethod
    def _per_channel(v: np.ndarray, ndim: int) -> np.ndarray:
        """``v`` along axis 1 of an array with ``ndim`` axes (batch first)."""
        return v.reshape(1, -1, *([1] * (ndim - 2)))

    def forward(self, x: np.ndarray) -> np.ndarray:
        return x * self._per_channel(self.scale, x.ndim) + self._per_channel(self.shift, x.ndim)

    def jvp(self, h, jac, shape_in, shape_out):
        return jac * self._per_channel(self.scale, jac.ndim)

    def sympy_apply_vector(self, hvec, shape_in, shape_out):
        c = shape_in[0]
        hw = int(np.prod(shape_in[1:]))
        out = []
        for ch in range(c):
            g, b, m, v = (sympy.Rational(float(a[ch])) for a in (self.gamma, self.beta, self.mean, self.var))
            s = g / sympy.sqrt(v + sympy.Rational(self.eps))
            out.extend(s * (hvec[ch * hw + k] - m) + b for k in range(hw))
        return sympy.Matrix(out)


@dataclass(frozen=True, eq=False)
class BatchNorm2d(_BatchNorm):
    """Eval-mode batch normalisation on ``(C, H, W)`` (PyTorch ``BatchNorm2d``): ``x -> s x + t`` per channel with
    ``s = gamma / sqrt(var + eps)`` (foldable into a preceding convolution); see :class:`_BatchNorm`.

    >>> BatchNorm2d([1.0, 2.0], [0.0, 0.0], [0.0, 0.0], [1.0, 1.0], eps=0.0).scale.tolist()
    [1.0, 2.0]
    """

    kind: ClassVar[str] = "BatchNorm2d"

    def output_shape(self, input_shape: Shape) -> Shape:
        _chw(input_shape, "BatchNorm2d")
        return self._check_channels(input_shape)


@dataclass(frozen=True, eq=False)
class BatchNorm1d(_BatchNorm):
    """Eval-mode batch normalisation on ``(C,)`` (a diagonal linear map plus a shift) or ``(C, L)`` (a channel
    scale plus a shift), as PyTorch ``BatchNorm1d``; the same facts as :class:`BatchNorm2d` (proofs in
    ``proofs/cnn_explicit.md``, "1-D layers").

    >>> BatchNorm1d([1.0, 2.0], [0.0, 1.0], [0.0, 0.0], [1.0, 1.0], eps=0.0).output_shape((2, 7))
    (2, 7)
    """

    kind: ClassVar[str] = "BatchNorm1d"

    def output_shape(self, input_shape: Shape) -> Shape:
        if len(input_shape) not in (1, 2):
            raise ValueError(f"BatchNorm1d expects a (C,) or (C, L) input but receives shape {input_shape}; "
                             "use BatchNorm2d on (C, H, W)")
        return self._check_channels(input_shape)


# --------------------------------------------------------------------------- 1-D layers: the 2-D layer on (C, 1, L)


def _cl(input_shape: Shape, kind: str) -> tuple[int, int]:
    if len(input_shape) != 2:
        raise ValueError(f"{kind} expects a (C, L) input but receives shape {input_shape}; give input_shape=(C, L) "
                         "to the Network (and no Flatten before it)")
    return input_shape  # type: ignore[return-value]


def _single(v: Any, name: str, *, minimum: int) -> int:
    """``v`` (an int or a 1-tuple, as PyTorch's 1-D modules store it) as an int ``>= minimum``."""
    if isinstance(v, (tuple, list)) and len(v) == 1:
        v = v[0]
    if isinstance(v, bool) or not isinstance(v, (int, np.integer)):
        raise ValueError(f"{name} must be an int (or a 1-tuple of one), got {v!r}")
    if v < minimum:
        raise ValueError(f"{name} must be >= {minimum}, got {v!r}")
    return int(v)


class _Lifted(Layer):
    """A 1-D layer on ``(C, L)``: the 2-D layer :attr:`as_2d` (kernel ``(1, k)``, stride ``(1, s)``, padding
    ``(0, p)``, dilation ``(1, d)``) on ``(C, 1, L)``.  The reshape ``(C, L) <-> (C, 1, L)`` keeps the C-order
    flat vector unchanged, so it is an isometry in every l_p and the 2-D layer's operator, Jacobian and sympy form
    are this layer's (``proofs/cnn_explicit.md``, "1-D layers").  The graph lowers the layer to :attr:`as_2d`."""

    as_2d: Any

    @staticmethod
    def shape_2d(shape: Shape) -> Shape:
        """``(C, L) -> (C, 1, L)``."""
        return (shape[0], 1, shape[1])

    def _out_1d(self, input_shape: Shape) -> Shape:
        c, n = _cl(input_shape, self.kind)
        co, _, no = self.as_2d.output_shape((c, 1, n))
        return (co, no)

    def forward(self, x: np.ndarray) -> np.ndarray:
        return self.as_2d.forward(x[:, :, None, :])[:, :, 0, :]

    def jvp(self, h, jac, shape_in, shape_out):
        out = self.as_2d.jvp(h[:, :, None, :], jac[:, :, None], self.shape_2d(shape_in), self.shape_2d(shape_out))
        return out[:, :, 0]

    def sympy_apply_vector(self, hvec, shape_in, shape_out):
        return self.as_2d.sympy_apply_vector(hvec, self.shape_2d(shape_in), self.shape_2d(shape_out))

    def window_index(self, input_shape: Shape) -> np.ndarray:
        """Flat input indices of every window (pools), as the 2-D layer on ``(C, 1, L)``."""
        return self.as_2d.window_index(self.shape_2d(input_shape))


@dataclass(frozen=True, eq=False)
class Conv1d(_Lifted):
    """1-D convolution ``y = kernel ⋆ x + bias`` on ``(C, L)`` (PyTorch ``Conv1d``, zero padding); kernel
    ``(C_out, C_in/groups, k)``; ``stride``, ``padding``, ``dilation`` are ints (or 1-tuples).  It is the
    :class:`Conv2d` with kernel ``(C_out, C_in/groups, 1, k)`` on ``(C, 1, L)`` (:attr:`as_2d`).

    >>> import numpy as np
    >>> Conv1d(np.ones((4, 3, 3)), padding=1, stride=2).output_shape((3, 8))
    (4, 4)
    """

    kernel_data: Any
    bias_data: Any = None
    stride: Any = 1
    padding: Any = 0
    dilation: Any = 1
    groups: int = 1
    kind: ClassVar[str] = "Conv1d"
    step_kind: ClassVar[str] = "conv"
    as_2d: Conv2d = field(init=False, repr=False)
    kernel_shape: tuple[int, int, int] = field(init=False, repr=False)

    def __post_init__(self) -> None:
        data = self.kernel_data
        if not (isinstance(data, np.ndarray) and data.dtype != object):
            try:
                data = np.array(data, dtype=object)
            except ValueError as exc:
                raise ShapeError(f"Conv1d kernel: not a rectangular array ({exc})") from None
        if data.ndim != 3 or 0 in data.shape:
            raise ShapeError(f"Conv1d kernel must have shape (C_out, C_in/groups, k), got shape {data.shape}")
        co, cg, k = (int(d) for d in data.shape)
        for name, minimum in (("stride", 1), ("padding", 0), ("dilation", 1)):
            object.__setattr__(self, name, _single(getattr(self, name), f"Conv1d {name}", minimum=minimum))
        try:
            conv = Conv2d(data.reshape(co, cg, 1, k), self.bias_data, (1, self.stride), (0, self.padding),
                          (1, self.dilation), self.groups)
        except (ValueError, ShapeError) as exc:
            raise type(exc)(str(exc).replace("Conv2d", "Conv1d")) from None
        object.__setattr__(self, "groups", conv.groups)
        object.__setattr__(self, "as_2d", conv)
        object.__setattr__(self, "kernel_shape", (co, cg, k))

    @property
    def weight(self) -> np.ndarray:
        """The float kernel ``(C_out, C_in/groups, k)``."""
        return self.as_2d.weight.reshape(self.kernel_shape)

    @property
    def weight_radius(self) -> np.ndarray | None:
        r = self.as_2d.weight_radius
        return None if r is None else r.reshape(self.kernel_shape)

    @property
    def weight_exact(self) -> sympy.ImmutableMatrix | None:
        """The exact kernel as a sympy matrix ``(C_out, C_in/groups * k)`` or ``None``."""
        return self.as_2d.weight_exact

    @property
    def bias(self) -> np.ndarray:
        return self.as_2d.bias

    @property
    def is_exact(self) -> bool:
        return self.as_2d.is_exact

    @property
    def free_symbols(self) -> set[sympy.Symbol]:
        return self.as_2d.free_symbols

    def affine_shift(self, input_shape: Shape) -> tuple[np.ndarray, np.ndarray | None]:
        return self.as_2d.affine_shift(self.shape_2d(input_shape))

    def describe(self) -> str:
        co, cg, k = self.kernel_shape
        return f"Conv1d({cg * self.groups}->{co}, {k}, stride={self.stride}, padding={self.padding})"

    def output_shape(self, input_shape: Shape) -> Shape:
        c, n = _cl(input_shape, "Conv1d")
        co, cg, k = self.kernel_shape
        if c != cg * self.groups:
            raise ValueError(f"Conv1d kernel of shape {self.kernel_shape} with groups={self.groups} needs "
                             f"{cg * self.groups} input channels, but receives {c} (shape {input_shape})")
        if ops.out_size(n, k, self.stride, self.padding, self.dilation) < 1:
            raise ValueError(f"Conv1d kernel {k} (dilation {self.dilation}, padding {self.padding}) does not fit the "
                             f"length-{n} input")
        return self._out_1d(input_shape)

    def subs(self, mapping: dict) -> Conv1d:
        if not self.free_symbols:
            return self
        new = self.as_2d.subs(mapping)
        kernel = np.asarray(new.kernel_data, dtype=object).reshape(self.kernel_shape)
        return Conv1d(kernel, new.bias_data, self.stride, self.padding, self.dilation, self.groups)


class _Pool1d(_Lifted):
    kernel_size: Any
    stride: Any
    padding: Any

    def _init_1d(self, cls: type) -> None:
        k = _single(self.kernel_size, f"{self.kind} kernel", minimum=1)
        s = k if self.stride is None or self.stride == () else _single(self.stride, f"{self.kind} stride", minimum=1)
        p = _single(self.padding, f"{self.kind} padding", minimum=0)
        if p > k // 2:
            raise ValueError(f"{self.kind}: padding {p} must be at most half the kernel {k} (as in PyTorch), so that "
                             "every window holds an input cell")
        object.__setattr__(self, "kernel_size", k)
        object.__setattr__(self, "stride", s)
        object.__setattr__(self, "padding", p)
        object.__setattr__(self, "as_2d", cls((1, k), stride=(1, s), padding=(0, p)))

    def output_shape(self, input_shape: Shape) -> Shape:
        _, n = _cl(input_shape, self.kind)
        if ops.out_size(n, self.kernel_size, self.stride, self.padding, 1) < 1:
            raise ValueError(f"{self.kind} window {self.kernel_size} (padding {self.padding}) does not fit the "
                             f"length-{n} input")
        return self._out_1d(input_shape)

    def describe(self) -> str:
        return f"{self.kind}({self.kernel_size}, stride={self.stride}, padding={self.padding})"

    def max_overlap(self, input_shape: Shape) -> int:
        return self.as_2d.max_overlap(self.shape_2d(input_shape))


@dataclass(frozen=True, eq=False)
class MaxPool1d(_Pool1d):
    """Max pooling on ``(C, L)`` (PyTorch ``MaxPool1d``, floor mode, padding with ``-inf``): the
    :class:`MaxPool2d` with window ``(1, k)`` on ``(C, 1, L)``.

    >>> MaxPool1d(2).output_shape((3, 5))
    (3, 2)
    """

    kernel_size: Any
    stride: Any = None
    padding: Any = 0
    kind: ClassVar[str] = "MaxPool1d"
    step_kind: ClassVar[str] = "maxpool"
    as_2d: MaxPool2d = field(init=False, repr=False)

    def __post_init__(self) -> None:
        self._init_1d(MaxPool2d)


@dataclass(frozen=True, eq=False)
class AvgPool1d(_Pool1d):
    """Average pooling on ``(C, L)`` (PyTorch ``AvgPool1d`` with ``count_include_pad=True``): the
    :class:`AvgPool2d` with window ``(1, k)`` on ``(C, 1, L)``.

    >>> AvgPool1d(3, stride=1, padding=1).output_shape((2, 5))
    (2, 5)
    """

    kernel_size: Any
    stride: Any = None
    padding: Any = 0
    kind: ClassVar[str] = "AvgPool1d"
    step_kind: ClassVar[str] = "avgpool"
    as_2d: AvgPool2d = field(init=False, repr=False)

    def __post_init__(self) -> None:
        self._init_1d(AvgPool2d)

    def affine_shift(self, input_shape: Shape) -> tuple[np.ndarray, None]:
        return np.zeros(int(np.prod(self.output_shape(input_shape)))), None


#: the 1-D layers, lowered to their 2-D layer on (C, 1, L)
LAYERS_1D = (Conv1d, MaxPool1d, AvgPool1d)
#: the batch normalisations (one channel scale operator)
BATCHNORM_LAYERS = (BatchNorm1d, BatchNorm2d)


# --------------------------------------------------------------------------- nearest-neighbour upsampling


@dataclass(frozen=True, eq=False)
class Upsample(Layer):
    """Nearest-neighbour upsampling by integer factors (PyTorch ``Upsample(scale_factor=k, mode="nearest")``, ONNX
    ``Resize`` with ``mode="nearest"``) on ``(C, L)``, ``(C, H, W)`` or more spatial axes: every input cell is
    repeated ``k_i`` times along spatial axis ``i``.  ``scale_factor`` is an int (every spatial axis) or a tuple
    with one int per spatial axis.

    Linear, no bias: a 0/1 matrix with one 1 per row and ``k_1 ⋯ k_d`` ones per column, so
    ``||U||_∞ = 1``, ``||U||_1 = k_1 ⋯ k_d`` and ``||U||_2 = sqrt(k_1 ⋯ k_d)`` (``proofs/cnn_explicit.md``, "Nearest
    upsampling").

    >>> Upsample(2).output_shape((3, 4, 5))
    (3, 8, 10)
    >>> Upsample((3,)).forward(np.array([[[1.0, 2.0]]])).tolist()
    [[[1.0, 1.0, 1.0, 2.0, 2.0, 2.0]]]
    """

    scale_factor: Any
    kind: ClassVar[str] = "Upsample"
    step_kind: ClassVar[str] = "upsample"

    def __post_init__(self) -> None:
        v = self.scale_factor
        items = tuple(v) if isinstance(v, (tuple, list)) else (v,)
        if not items or any(isinstance(k, bool) or not isinstance(k, (int, np.integer)) or k < 1 for k in items):
            raise ValueError(f"Upsample: scale_factor must be a positive int or a tuple of positive ints (nearest "
                             f"upsampling by integer factors), got {v!r}")
        object.__setattr__(self, "scale_factor", int(items[0]) if not isinstance(v, (tuple, list)) else
                           tuple(int(k) for k in items))

    def scales(self, input_shape: Shape) -> tuple[int, ...]:
        """The factor of every spatial axis of ``input_shape`` (``(C, *spatial)``)."""
        d = len(input_shape) - 1
        if d < 1:
            raise ValueError(f"Upsample expects a (C, L) or (C, H, W) input but receives shape {input_shape}")
        if isinstance(self.scale_factor, int):
            return (self.scale_factor,) * d
        if len(self.scale_factor) != d:
            raise ValueError(f"Upsample scale_factor {self.scale_factor} has {len(self.scale_factor)} entries but the "
                             f"input {input_shape} has {d} spatial axes")
        return self.scale_factor

    def describe(self) -> str:
        return f"Upsample(scale_factor={self.scale_factor}, nearest)"

    def output_shape(self, input_shape: Shape) -> Shape:
        k = self.scales(input_shape)
        return (input_shape[0], *(n * s for n, s in zip(input_shape[1:], k)))

    def affine_shift(self, input_shape: Shape) -> tuple[np.ndarray, None]:
        return np.zeros(int(np.prod(self.output_shape(input_shape)))), None

    def _repeat(self, x: np.ndarray, scales: tuple[int, ...]) -> np.ndarray:
        for axis, k in enumerate(scales, start=2):
            if k != 1:
                x = np.repeat(x, k, axis=axis)
        return x

    def forward(self, x: np.ndarray) -> np.ndarray:
        return self._repeat(x, self.scales(x.shape[1:]))

    def jvp(self, h, jac, shape_in, shape_out):
        return self._repeat(jac, self.scales(shape_in))

    def source_index(self, input_shape: Shape) -> np.ndarray:
        """The flat input index copied by every flat output entry (C order)."""
        n = int(np.prod(input_shape))
        idx = np.arange(n, dtype=np.int64).reshape(1, *input_shape)
        return self._repeat(idx, self.scales(input_shape)).ravel()

    def sympy_apply_vector(self, hvec, shape_in, shape_out):
        return sympy.Matrix([hvec[int(j)] for j in self.source_index(shape_in)])
