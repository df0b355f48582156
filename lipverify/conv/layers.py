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
class BatchNorm2d(Layer):
    """Eval-mode batch normalisation ``y = gamma (x - mean) / sqrt(var + eps) + beta`` per channel: the affine
    map ``x -> s x + t`` with ``s = gamma / sqrt(var + eps)`` (foldable into a preceding convolution).

    The parameters are floats; ``s`` is computed in float with a bound :attr:`scale_radius` of its
    rounding error (three correctly rounded operations: ``|fl(s) - s| <= 4 u |fl(s)|``).

    >>> BatchNorm2d([1.0, 2.0], [0.0, 0.0], [0.0, 0.0], [1.0, 1.0], eps=0.0).scale.tolist()
    [1.0, 2.0]
    """

    gamma: Any
    beta: Any
    mean: Any
    var: Any
    eps: float = 1e-5
    kind: ClassVar[str] = "BatchNorm2d"
    step_kind: ClassVar[str] = "batchnorm"

    def __post_init__(self) -> None:
        vals = {}
        for name in ("gamma", "beta", "mean", "var"):
            a = np.array(getattr(self, name), dtype=np.float64)
            if a.ndim != 1 or a.size == 0:
                raise ShapeError(f"BatchNorm2d {name} must be a non-empty vector, got shape {a.shape}")
            if not np.all(np.isfinite(a)):
                raise ValueError(f"BatchNorm2d {name} has a NaN or infinite entry; refused")
            a.setflags(write=False)
            vals[name] = a
        sizes = {k: v.size for k, v in vals.items()}
        if len(set(sizes.values())) != 1:
            raise ShapeError(f"BatchNorm2d parameters must have one length (channels), got {sizes}")
        eps = float(self.eps)
        if not (np.isfinite(eps) and eps >= 0):
            raise ValueError(f"BatchNorm2d eps must be a finite number >= 0, got {self.eps!r}")
        if np.any(vals["var"] + eps <= 0):
            raise ValueError("BatchNorm2d: var + eps must be positive in every channel")
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
        return f"BatchNorm2d({self.channels})"

    def output_shape(self, input_shape: Shape) -> Shape:
        c, _, _ = _chw(input_shape, "BatchNorm2d")
        if c != self.channels:
            raise ValueError(f"BatchNorm2d has {self.channels} channels but receives shape {input_shape}")
        return input_shape

    def forward(self, x: np.ndarray) -> np.ndarray:
        return x * self.scale[None, :, None, None] + self.shift[None, :, None, None]

    def jvp(self, h, jac, shape_in, shape_out):
        return jac * self.scale.reshape(1, -1, 1, 1, 1)

    def sympy_apply_vector(self, hvec, shape_in, shape_out):
        c, h, w = shape_in
        out = []
        for ch in range(c):
            g, b, m, v = (sympy.Rational(float(a[ch])) for a in (self.gamma, self.beta, self.mean, self.var))
            s = g / sympy.sqrt(v + sympy.Rational(self.eps))
            out.extend(s * (hvec[ch * h * w + k] - m) + b for k in range(h * w))
        return sympy.Matrix(out)
