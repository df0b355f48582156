"""Residual blocks ``y = S(x) + F(x)``: a body ``F`` and a shortcut ``S`` (the identity, or a projection).

A :class:`Residual` is one layer of a :class:`~lipverify.Network` whose two branches are themselves layer
sequences, so ResNet-style networks (``conv–BN–ReLU–conv–BN + x``, then ReLU) stay a sequence at the top
level.  Bounds see the block through the network's one representation (:mod:`lipverify.ir`), where it
becomes a sum of two branch graphs; the proofs that sum steps keep each bound sound are in
``proofs/residual.md``.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, ClassVar

import numpy as np

from .errors import ShapeError
from .layers import Layer, Shape

if TYPE_CHECKING:
    import sympy

    from .network import Network


class Residual(Layer):
    """``y = shortcut(x) + body(x)``; ``shortcut=None`` (or ``[]``) is the identity.

    Both branches get the block's input shape and must produce the same output shape.

    >>> import lipverify as lv
    >>> block = lv.Residual([lv.Dense([[1, 0], [0, 1]]), lv.ReLU(), lv.Dense([[0, 2], [1, 0]])])
    >>> net = lv.Network([block], input_shape=(2,))
    >>> net([1.0, -1.0]).tolist()    # x + W2 relu(W1 x) = (1, -1) + (0, 1)
    [1.0, 0.0]
    """

    kind: ClassVar[str] = "Residual"
    step_kind: ClassVar[str] = "residual"

    def __init__(self, body: Sequence[Layer], shortcut: Sequence[Layer] | None = None):
        body = tuple(body)
        shortcut = tuple(shortcut) if shortcut is not None else ()
        if not body:
            raise ShapeError("Residual: the body needs at least one layer")
        for where, layers in (("body", body), ("shortcut", shortcut)):
            for i, layer in enumerate(layers):
                if not isinstance(layer, Layer):
                    raise TypeError(f"Residual: {where} layer {i} is a {type(layer).__name__}, not a lipverify layer")
        self._body = body
        self._shortcut = shortcut
        self._nets: dict[Shape, tuple[Network, Network | None]] = {}

    @property
    def body(self) -> tuple[Layer, ...]:
        return self._body

    @property
    def shortcut(self) -> tuple[Layer, ...]:
        """The shortcut's layers; empty for the identity."""
        return self._shortcut

    def branches(self, input_shape: Shape) -> tuple[Network, Network | None]:
        """The body and the shortcut as networks on ``input_shape`` (shortcut ``None``: the identity)."""
        input_shape = tuple(input_shape)
        if input_shape not in self._nets:
            from .network import Network

            body = _sub_network(self._body, input_shape, "body")
            short = _sub_network(self._shortcut, input_shape, "shortcut") if self._shortcut else None
            out_short = short.output_shape if short is not None else input_shape
            if body.output_shape != out_short:
                raise ValueError(f"the body produces shape {body.output_shape} but the shortcut "
                                 f"{'(identity) ' if short is None else ''}produces {out_short}; both branches of a "
                                 "residual block must produce the same shape (use a projection shortcut)")
            assert isinstance(body, Network)
            self._nets[input_shape] = (body, short)
        return self._nets[input_shape]

    def output_shape(self, input_shape: Shape) -> Shape:
        return self.branches(input_shape)[0].output_shape

    def forward(self, x: np.ndarray) -> np.ndarray:
        body, short = self.branches(x.shape[1:])
        y = body.forward_batch(x)
        return y + (short.forward_batch(x) if short is not None else x)

    def jvp(self, h: np.ndarray, jac: np.ndarray, shape_in: Shape, shape_out: Shape) -> np.ndarray:
        """Push the Jacobian ``jac`` (batch, *shape_in, n_cols) through the block at inputs ``h``."""
        body, short = self.branches(shape_in)
        out = body.push_jacobian(h, jac)
        return out + (short.push_jacobian(h, jac) if short is not None else jac)

    def sympy_apply_vector(self, hvec, shape_in: Shape, shape_out: Shape):
        body, short = self.branches(shape_in)
        xs = list(hvec)
        return body.sympy(xs) + (short.sympy(xs) if short is not None else hvec)

    @property
    def free_symbols(self) -> set[sympy.Symbol]:
        syms: set = set()
        for layer in self._body + self._shortcut:
            syms |= layer.free_symbols
        return syms

    @property
    def is_exact(self) -> bool:
        return all(getattr(layer, "is_exact", True) for layer in self._body + self._shortcut)

    @property
    def layers(self) -> tuple[Layer, ...]:
        """Every layer of both branches (body first), for walks that look inside blocks."""
        return self._body + self._shortcut

    def map_activations(self, fn) -> Residual:
        body = [layer.map_activations(fn) for layer in self._body]
        return Residual(body, [layer.map_activations(fn) for layer in self._shortcut] if self._shortcut else None)

    def subs(self, mapping: dict) -> Residual:
        def sub(layers):
            return [layer.subs(mapping) if hasattr(layer, "subs") else layer for layer in layers]

        return Residual(sub(self._body), sub(self._shortcut) if self._shortcut else None)

    def describe(self) -> str:
        body = ", ".join(layer.describe() for layer in self._body)
        short = "identity" if not self._shortcut else "[" + ", ".join(layer.describe() for layer in self._shortcut) + "]"
        return f"Residual(body=[{body}], shortcut={short})"


def _sub_network(layers: tuple[Layer, ...], input_shape: Shape, where: str) -> Network:
    from .network import Network

    try:
        return Network(layers, input_shape=input_shape)
    except ShapeError as exc:
        raise ValueError(f"in the {where}: {exc}") from None
