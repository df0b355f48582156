"""Networks: a composition of layers that is at once numeric (numpy) and symbolic (sympy)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

import numpy as np

from ._lazy import LazyModule
from .errors import ShapeError, UnsupportedLayerError
from .layers import Activation, Layer, Shape

if TYPE_CHECKING:
    import sympy
else:
    sympy = LazyModule("sympy")


class Network:
    """A feed-forward composition ``layers[-1] ∘ … ∘ layers[0]``.

    The shape chain is checked when the network is built: a layer that does not fit the shape that
    reaches it raises :class:`~lipverify.ShapeError` naming its index, type and both shapes.
    ``input_shape`` is inferred from the first ``Dense`` layer when omitted.

    >>> import lipverify as lv
    >>> net = lv.Network([lv.Dense([[1, -1]]), lv.ReLU(), lv.Dense([[2]])])
    >>> net.input_shape, net.output_shape
    ((2,), (1,))
    >>> float(net([3.0, 1.0])[0])
    4.0
    """

    #: ``"Softmax"``/``"LogSoftmax"`` when a loader removed that final op (``strip_output_softmax=True``): the network is
    #: the model's logits, and every bound from :func:`lipverify.bound`/:func:`lipverify.compare` says so
    stripped_output: str | None = None

    def __init__(self, layers: Sequence[Layer], input_shape: Sequence[int] | int | None = None):
        layers = tuple(layers)
        if not layers:
            raise ShapeError("Network: needs at least one layer")
        for i, layer in enumerate(layers):
            if not isinstance(layer, Layer):
                raise TypeError(
                    f"Network: layer {i} is a {type(layer).__name__}, not a lipverify layer "
                    "(use lv.Dense, lv.ReLU, ...; for PyTorch models use lv.from_torch)"
                )
        if input_shape is None:
            input_shape = _infer_input_shape(layers)
        elif isinstance(input_shape, (int, np.integer)):
            input_shape = (int(input_shape),)
        input_shape = tuple(int(d) for d in input_shape)
        if any(d <= 0 for d in input_shape):
            raise ShapeError(f"Network: input_shape {input_shape} must have positive dimensions")
        shapes = [input_shape]
        for i, layer in enumerate(layers):
            try:
                out = layer.output_shape(shapes[-1])
            except ValueError as exc:
                raise ShapeError(
                    f"layer {i} ({layer.describe()}): input shape {shapes[-1]} does not fit: {exc}"
                ) from None
            shapes.append(tuple(out))
        self._layers = layers
        self._shapes = tuple(shapes)

    # ------------------------------------------------------------------ facts
    @property
    def layers(self) -> tuple[Layer, ...]:
        return self._layers

    @property
    def shapes(self) -> tuple[Shape, ...]:
        """``shapes[i]`` is the input shape of layer ``i``; ``shapes[-1]`` the output shape."""
        return self._shapes

    @property
    def input_shape(self) -> Shape:
        return self._shapes[0]

    @property
    def output_shape(self) -> Shape:
        return self._shapes[-1]

    @property
    def n_in(self) -> int:
        return int(np.prod(self.input_shape))

    @property
    def n_out(self) -> int:
        return int(np.prod(self.output_shape))

    @property
    def free_symbols(self) -> set[sympy.Symbol]:
        syms: set[sympy.Symbol] = set()
        for layer in self._layers:
            syms |= layer.free_symbols
        return syms

    @property
    def has_residual(self) -> bool:
        """True when the network holds a residual block (:class:`~lipverify.Residual`)."""
        return any(hasattr(layer, "branches") for layer in self._layers)

    @property
    def is_exact(self) -> bool:
        """True when every parameter was given exactly (integers, Fractions, sympy Rationals)."""
        return all(getattr(layer, "is_exact", True) for layer in self._layers) and not self.free_symbols

    @property
    def activations(self) -> tuple[Activation, ...]:
        """Every activation layer, those inside residual blocks included (in order, body before shortcut)."""
        return tuple(layer for layer in _walk(self._layers) if isinstance(layer, Activation))

    def __len__(self) -> int:
        return len(self._layers)

    def __repr__(self) -> str:
        inner = ", ".join(layer.describe() for layer in self._layers)
        return f"Network([{inner}], input_shape={self.input_shape})"

    def subs(self, mapping: dict) -> Network:
        """The network with the symbols in ``mapping`` replaced by values."""
        return Network([layer.subs(mapping) if hasattr(layer, "subs") else layer for layer in self._layers],
                       input_shape=self.input_shape)

    # ------------------------------------------------------------------ numeric
    def _batch(self, x: Any) -> tuple[np.ndarray, bool]:
        x = np.asarray(x, dtype=np.float64)
        if x.shape == self.input_shape:
            return x[None], True
        if x.shape[1:] == self.input_shape:
            return x, False
        raise ShapeError(
            f"input of shape {x.shape} does not fit the network input shape {self.input_shape} "
            f"(give one input of shape {self.input_shape} or a batch of shape (N, {', '.join(map(str, self.input_shape))}))"
        )

    def __call__(self, x: Any) -> np.ndarray:
        """Forward pass of one input or of a batch (first axis)."""
        h, single = self._batch(x)
        h = self.forward_batch(h)
        return h[0] if single else h

    def forward_batch(self, h: np.ndarray) -> np.ndarray:
        """Forward pass of a batch ``(N, *input_shape)`` (no shape guessing)."""
        for layer in self._layers:
            h = layer.forward(h)
        return h

    def jacobian(self, x: Any) -> np.ndarray:
        """The Jacobian ``(n_out, n_in)`` at one input ``x`` (batch: ``(N, n_out, n_in)``).

        At kinks of piecewise-linear activations the one-sided derivative of each layer is used,
        which is an element of the Clarke Jacobian; its norm never exceeds the Lipschitz constant.
        """
        h, single = self._batch(x)
        n = h.shape[0]
        jac = np.broadcast_to(np.eye(self.n_in).reshape(*self.input_shape, self.n_in), (n, *self.input_shape, self.n_in)).copy()
        jac = self.push_jacobian(h, jac).reshape(n, -1, self.n_in)
        return jac[0] if single else jac

    def push_jacobian(self, h: np.ndarray, jac: np.ndarray) -> np.ndarray:
        """``J(h) jac`` for a batch ``h`` and tangents ``jac`` of shape ``(N, *input_shape, n_cols)``."""
        for i, layer in enumerate(self._layers):
            jac = self._layer_jvp(i, layer, h, jac)
            h = layer.forward(h)
        return jac

    def _layer_jvp(self, i: int, layer: Layer, h: np.ndarray, jac: np.ndarray) -> np.ndarray:
        """Push the Jacobian ``jac`` (batch, *shape_i, n_cols) through layer ``i`` at inputs ``h`` (its ``jvp``)."""
        rule = getattr(layer, "jvp", None)
        if rule is None:
            raise UnsupportedLayerError(f"layer {i} ({layer.describe()}): no Jacobian rule")
        return rule(h, jac, self._shapes[i], self._shapes[i + 1])

    # ------------------------------------------------------------------ symbolic
    def input_symbols(self) -> list[sympy.Symbol]:
        """The real input symbols ``x0, x1, …`` (C order over the input shape)."""
        return list(sympy.symbols(f"x0:{self.n_in}", real=True))

    def sympy(self, inputs: Sequence[sympy.Expr] | None = None) -> sympy.Matrix:
        """The network as a column of sympy expressions in the inputs (default :meth:`input_symbols`).

        Float weights enter as the exact Rationals of the floats, so evaluating the expressions equals
        the numpy forward pass up to its rounding.
        """
        xs = list(inputs) if inputs is not None else self.input_symbols()
        if len(xs) != self.n_in:
            raise ShapeError(f"sympy(): got {len(xs)} input expressions for {self.n_in} inputs")
        h = sympy.Matrix(xs)
        for i, layer in enumerate(self._layers):
            rule = getattr(layer, "sympy_apply_vector", None)
            if rule is None:
                raise UnsupportedLayerError(f"layer {i} ({layer.describe()}): no sympy form")
            h = rule(h, self._shapes[i], self._shapes[i + 1])
        return h


def _walk(layers):
    for layer in layers:
        yield layer
        yield from _walk(getattr(layer, "layers", ()))


def _infer_input_shape(layers: Sequence[Layer]) -> Shape:
    for layer in layers:
        size = layer.input_size()
        if size is not None:
            return (size,)
        if not layer.elementwise:
            break
    raise ShapeError(
        "Network: cannot infer the input shape (the first weighted layer is not Dense); "
        "pass input_shape=(C, L), (C, H, W) or (n,)"
    )
