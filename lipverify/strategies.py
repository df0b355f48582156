"""Hypothesis strategies that build valid networks by construction (no ``.filter``).

Every strategy takes keyword-only ``min_*``/``max_*`` arguments, rejects bad arguments when it is built,
and shrinks toward shallow, narrow networks with zero weights.

>>> from hypothesis import given
>>> from lipverify.strategies import networks
>>> @given(networks(max_depth=2))
... def test(net):
...     assert net.n_in >= 1
"""

from __future__ import annotations

from fractions import Fraction

import numpy as np
from hypothesis import strategies as st

from .layers import GELU, Activation, Dense, Identity, LeakyReLU, ReLU, Sigmoid, SiLU, Tanh
from .network import Network

#: activation factories the strategies draw from, simplest first (shrinking goes to the first)
ACTIVATION_FACTORIES = {
    "relu": ReLU, "leakyrelu": lambda: LeakyReLU(Fraction(1, 10)), "identity": Identity, "tanh": Tanh,
    "sigmoid": Sigmoid, "gelu": GELU, "silu": SiLU,
}


def _check_range(name: str, lo: int, hi: int, floor: int) -> None:
    if not (isinstance(lo, int) and isinstance(hi, int)) or lo < floor or hi < lo:
        raise ValueError(f"networks(): need {floor} <= min_{name} <= max_{name}, got {lo}, {hi}")


def weight_matrices(rows: int, cols: int, *, exact: bool = False, max_abs: float = 3.0) -> st.SearchStrategy:
    """Float matrices with entries in ``[-max_abs, max_abs]`` (shrinking to 0), or Fraction matrices
    ``p / q`` with small ``p`` and ``q`` when ``exact``."""
    if exact:
        entry = st.builds(Fraction, st.integers(-int(max_abs) * 4, int(max_abs) * 4), st.integers(1, 4))
        return st.lists(st.lists(entry, min_size=cols, max_size=cols), min_size=rows, max_size=rows)
    entry = st.floats(-max_abs, max_abs, allow_nan=False, allow_infinity=False, width=64)
    return st.lists(entry, min_size=rows * cols, max_size=rows * cols).map(
        lambda v: np.array(v, dtype=np.float64).reshape(rows, cols))


def networks(*, min_depth: int = 1, max_depth: int = 4, min_width: int = 1, max_width: int = 5,
             min_inputs: int = 1, max_inputs: int = 4, min_outputs: int = 1, max_outputs: int = 3,
             activations: tuple[str, ...] = ("relu", "leakyrelu", "identity", "tanh", "sigmoid", "gelu", "silu"),
             exact: bool = False, biases: bool = True) -> st.SearchStrategy[Network]:
    """Fully connected networks ``Dense (act Dense)*`` with between ``min_depth`` and ``max_depth`` Dense layers.

    ``exact=True`` gives Fraction weights (kept exactly by the layers).  Bad arguments raise ``ValueError`` here.
    """
    _check_range("depth", min_depth, max_depth, 1)
    _check_range("width", min_width, max_width, 1)
    _check_range("inputs", min_inputs, max_inputs, 1)
    _check_range("outputs", min_outputs, max_outputs, 1)
    unknown = [a for a in activations if a not in ACTIVATION_FACTORIES]
    if unknown or not activations:
        raise ValueError(f"networks(): unknown activations {unknown}; choose from {list(ACTIVATION_FACTORIES)}")
    return _networks(min_depth, max_depth, min_width, max_width, min_inputs, max_inputs, min_outputs, max_outputs,
                     tuple(activations), exact, biases)


@st.composite
def _networks(draw, min_depth, max_depth, min_width, max_width, min_inputs, max_inputs, min_outputs, max_outputs,
              activations, exact, biases) -> Network:
    depth = draw(st.integers(min_depth, max_depth))
    widths = [draw(st.integers(min_inputs, max_inputs))]
    widths += [draw(st.integers(min_width, max_width)) for _ in range(depth - 1)]
    widths.append(draw(st.integers(min_outputs, max_outputs)))
    layers = []
    for l in range(depth):
        if l > 0:
            layers.append(ACTIVATION_FACTORIES[draw(st.sampled_from(activations))]())
        w = draw(weight_matrices(widths[l + 1], widths[l], exact=exact))
        b = draw(weight_matrices(1, widths[l + 1], exact=exact))[0] if biases else None
        layers.append(Dense(w, b))
    return Network(layers)


def activations_of(net: Network) -> list[Activation]:
    return [layer for layer in net.layers if isinstance(layer, Activation)]
