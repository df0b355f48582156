"""Hypothesis strategies that build valid networks (fully connected and convolutional) by construction.

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
from hypothesis.extra.numpy import arrays

from .conv.layers import AvgPool1d, AvgPool2d, BatchNorm1d, BatchNorm2d, Conv1d, Conv2d, MaxPool1d, MaxPool2d, Upsample
from .layers import (
    ELU,
    GELU,
    Activation,
    Dense,
    Flatten,
    Hardsigmoid,
    Hardswish,
    Hardtanh,
    Identity,
    LeakyReLU,
    LogSigmoid,
    Mish,
    ReLU,
    ReLU6,
    Sigmoid,
    SiLU,
    Softplus,
    Tanh,
)
from .network import Network
from .residual import Residual

#: activation factories the strategies draw from, simplest first (shrinking goes to the first)
ACTIVATION_FACTORIES = {
    "relu": ReLU, "leakyrelu": lambda: LeakyReLU(Fraction(1, 10)), "identity": Identity, "tanh": Tanh,
    "sigmoid": Sigmoid, "gelu": GELU, "silu": SiLU, "elu": lambda: ELU(Fraction(1, 2)), "softplus": Softplus,
    "hardtanh": Hardtanh, "relu6": ReLU6, "hardswish": Hardswish, "mish": Mish, "logsigmoid": LogSigmoid,
    "hardsigmoid": Hardsigmoid,
}
#: the activations of issue 13 (drawn by the soundness property next to the defaults of :func:`networks`)
MORE_ACTIVATIONS = ("elu", "softplus", "hardtanh", "relu6", "hardswish", "mish", "logsigmoid", "hardsigmoid")


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
    return list(net.activations)


# --------------------------------------------------------------------------- residual networks


def residual_networks(*, conv: bool = False, min_blocks: int = 1, max_blocks: int = 2, max_width: int = 4,
                      max_channels: int = 2, max_size: int = 4, max_outputs: int = 3,
                      activations: tuple[str, ...] = ("relu", "leakyrelu", "identity", "tanh", "sigmoid"),
                      weight_bound: float = 2.0) -> st.SearchStrategy[Network]:
    """Residual networks: fully connected ``Dense act [Residual(Dense act Dense, shortcut) act]* Dense``, or with
    ``conv=True`` ``Conv act [Residual(Conv [BN] act Conv, shortcut) act [pool]]* Flatten Dense``.  Each shortcut is
    the identity or a projection (a Dense layer; a 1×1 convolution, optionally with stride 2 when the body strides
    too); blocks may nest one level (a block inside a body).

    >>> from hypothesis import given
    >>> @given(residual_networks(conv=True, max_blocks=1))
    ... def check(net):
    ...     assert net.has_residual and net(np.zeros(net.input_shape)).shape == net.output_shape
    >>> check()
    """
    _check_range("blocks", min_blocks, max_blocks, 1)
    _check_range("width", 1, max_width, 1)
    _check_range("channels", 1, max_channels, 1)
    _check_range("size", 2, max_size, 2)
    _check_range("outputs", 1, max_outputs, 1)
    unknown = [a for a in activations if a not in ACTIVATION_FACTORIES]
    if unknown or not activations:
        raise ValueError(f"residual_networks(): unknown activations {unknown}; choose from {list(ACTIVATION_FACTORIES)}")
    if not (isinstance(weight_bound, (int, float)) and 0 < weight_bound < 1e6):
        raise ValueError(f"weight_bound must be a positive number below 1e6, got {weight_bound!r}")
    return _residual_networks(conv, min_blocks, max_blocks, max_width, max_channels, max_size, max_outputs,
                              tuple(activations), float(weight_bound))


@st.composite
def _residual_networks(draw, conv, min_blocks, max_blocks, max_width, max_channels, max_size, max_outputs,
                       activations, bound):
    def act():
        return ACTIVATION_FACTORIES[draw(st.sampled_from(activations))]()

    if not conv:
        n_in, width = draw(st.integers(1, max_width)), draw(st.integers(1, max_width))

        def dense(o, i):
            return Dense(_weights(draw, (o, i), bound), _weights(draw, (o,), bound))

        def fc_block(w, depth):
            mid = draw(st.integers(1, max_width))
            body = [dense(mid, w), act()]
            if depth == 0 and draw(st.booleans()):
                body.append(fc_block(mid, 1))
            body.append(dense(w, mid))
            return Residual(body, [dense(w, w)] if draw(st.booleans()) else None)

        layers = [dense(width, n_in), act()]
        for _ in range(draw(st.integers(min_blocks, max_blocks))):
            layers += [fc_block(width, 0), act()]
        layers.append(dense(draw(st.integers(1, max_outputs)), width))
        return Network(layers, input_shape=(n_in,))

    c = draw(st.integers(1, max_channels))
    size = h = w = draw(st.integers(2, max_size))
    c0 = draw(st.integers(1, max_channels))

    def conv3(co, ci, stride=1):
        bias = _weights(draw, (co,), bound) if draw(st.booleans()) else None
        return Conv2d(_weights(draw, (co, ci, 3, 3), bound), bias, stride=stride, padding=1)

    layers = [conv3(c, c0), act()]
    for _ in range(draw(st.integers(min_blocks, max_blocks))):
        c_out = draw(st.integers(1, max_channels))
        stride = 2 if h >= 4 and draw(st.booleans()) else 1
        body = [conv3(c_out, c, stride)]
        if draw(st.booleans()):
            var = draw(arrays(np.float64, (c_out,), elements=st.floats(0.25, 4.0)))
            body.append(BatchNorm2d(_weights(draw, (c_out,), bound), _weights(draw, (c_out,), bound),
                                    _weights(draw, (c_out,), bound), var))
        body += [act(), conv3(c_out, c_out)]
        projection = c_out != c or stride != 1 or draw(st.booleans())
        short = [Conv2d(_weights(draw, (c_out, c, 1, 1), bound), stride=stride)] if projection else None
        layers += [Residual(body, short), act()]
        c, h, w = body[0].output_shape((c, h, w))
        if h >= 2 and draw(st.booleans()):
            pool = draw(st.sampled_from([MaxPool2d, AvgPool2d]))(2)
            layers.append(pool)
            c, h, w = pool.output_shape((c, h, w))
    n_out = draw(st.integers(1, max_outputs))
    layers += [Flatten(), Dense(_weights(draw, (n_out, c * h * w), bound), _weights(draw, (n_out,), bound))]
    return Network(layers, input_shape=(c0, size, size))


# --------------------------------------------------------------------------- convolutional networks

_CONV_ACTIVATIONS = (ReLU, lambda: LeakyReLU(0.25), Tanh, Identity, GELU, Sigmoid)


def conv_networks(*, min_channels: int = 1, max_channels: int = 3, min_size: int = 2, max_size: int = 6,
                  min_blocks: int = 1, max_blocks: int = 2, min_outputs: int = 1, max_outputs: int = 3,
                  max_kernel: int = 3, max_stride: int = 2, maxpool: bool = True, avgpool: bool = True,
                  batchnorm: bool = True, weight_bound: float = 2.0) -> st.SearchStrategy[Network]:
    """Small CNNs: ``min_blocks..max_blocks`` blocks of ``Conv2d`` (kernel up to ``max_kernel``, stride up to
    ``max_stride``, padding, dilation 1-2, groups) -> optional ``BatchNorm2d`` -> activation -> optional
    ``MaxPool2d``/``AvgPool2d`` (overlapping windows, padding), then ``Flatten`` and a ``Dense`` layer with
    ``min_outputs..max_outputs`` outputs.  Weights are floats in ``[-weight_bound, weight_bound]``.

    >>> from hypothesis import given
    >>> @given(conv_networks(max_blocks=1))
    ... def check(net):
    ...     assert net(np.zeros(net.input_shape)).shape == net.output_shape
    >>> check()
    """
    _check_range("channels", min_channels, max_channels, 1)
    _check_range("size", min_size, max_size, 1)
    _check_range("blocks", min_blocks, max_blocks, 0)
    _check_range("outputs", min_outputs, max_outputs, 1)
    _check_range("kernel", 1, max_kernel, 1)
    _check_range("stride", 1, max_stride, 1)
    if not (isinstance(weight_bound, (int, float)) and 0 < weight_bound < 1e6):
        raise ValueError(f"weight_bound must be a positive number below 1e6, got {weight_bound!r}")
    return _conv_networks(min_channels, max_channels, min_size, max_size, min_blocks, max_blocks, min_outputs,
                          max_outputs, max_kernel, max_stride, maxpool, avgpool, batchnorm, float(weight_bound))


def _weights(draw, shape, bound):
    return draw(arrays(np.float64, shape, elements=st.floats(-bound, bound, allow_nan=False, allow_infinity=False,
                                                              allow_subnormal=False)))


@st.composite
def _conv_networks(draw, min_channels, max_channels, min_size, max_size, min_blocks, max_blocks, min_outputs,
                   max_outputs, max_kernel, max_stride, maxpool, avgpool, batchnorm, bound):
    c = draw(st.integers(min_channels, max_channels))
    h = draw(st.integers(min_size, max_size))
    w = draw(st.integers(min_size, max_size))
    input_shape = (c, h, w)
    layers = []
    for _ in range(draw(st.integers(min_blocks, max_blocks))):
        c_out = draw(st.integers(min_channels, max_channels))
        dilation = draw(st.integers(1, 2))
        k_max = min(max_kernel, h, w)
        kh = draw(st.integers(1, k_max))
        kw = draw(st.integers(1, k_max))
        if dilation * (max(kh, kw) - 1) + 1 > min(h, w):
            dilation = 1
        padding = draw(st.integers(0, max(kh, kw) // 2))
        stride = draw(st.integers(1, max_stride))
        groups = draw(st.sampled_from([g for g in range(1, min(c, c_out) + 1) if c % g == 0 and c_out % g == 0]))
        kernel = _weights(draw, (c_out, c // groups, kh, kw), bound)
        bias = _weights(draw, (c_out,), bound) if draw(st.booleans()) else None
        conv = Conv2d(kernel, bias, stride=stride, padding=padding, dilation=dilation, groups=groups)
        layers.append(conv)
        c, h, w = conv.output_shape((c, h, w))
        if batchnorm and draw(st.booleans()):
            gamma = _weights(draw, (c,), bound)
            var = draw(arrays(np.float64, (c,), elements=st.floats(0.25, 4.0)))
            layers.append(BatchNorm2d(gamma, _weights(draw, (c,), bound), _weights(draw, (c,), bound), var))
        layers.append(draw(st.sampled_from(_CONV_ACTIVATIONS))())
        kinds = ["none"] + (["max"] if maxpool else []) + (["avg"] if avgpool else [])
        kind = draw(st.sampled_from(kinds))
        if kind != "none":
            k = draw(st.integers(1, min(3, h, w)))
            s = draw(st.integers(1, k))
            p = draw(st.integers(0, k // 2))
            pool = (MaxPool2d if kind == "max" else AvgPool2d)(k, stride=s, padding=p)
            layers.append(pool)
            c, h, w = pool.output_shape((c, h, w))
    n_out = draw(st.integers(min_outputs, max_outputs))
    layers += [Flatten(), Dense(_weights(draw, (n_out, c * h * w), bound), _weights(draw, (n_out,), bound))]
    return Network(layers, input_shape=input_shape)


# --------------------------------------------------------------------------- sorting activations (issue 13)

#: the sorting layers :func:`groupsort_networks` draws from, simplest first
SORT_KINDS = ("groupsort2", "maxmin", "fullsort", "groupsort")


def groupsort_networks(*, min_depth: int = 2, max_depth: int = 3, max_groups: int = 3, min_inputs: int = 1,
                       max_inputs: int = 3, max_outputs: int = 2, exact: bool = False,
                       kinds: tuple[str, ...] = SORT_KINDS) -> st.SearchStrategy[Network]:
    """Networks ``Dense (Sort Dense)*`` with between ``min_depth`` and ``max_depth`` Dense layers, each sorting layer
    drawn from ``kinds``: ``GroupSort(2)``, ``MaxMin()``, ``FullSort()``, ``GroupSort(g)`` (g in 2..3); hidden widths
    are multiples of the group size (at most ``max_groups`` groups).  ``exact=True`` gives Fraction weights.

    >>> from hypothesis import given
    >>> @given(groupsort_networks(max_depth=2))
    ... def check(net):
    ...     assert net(np.zeros(net.input_shape)).shape == net.output_shape
    >>> check()
    """
    _check_range("depth", min_depth, max_depth, 2)
    _check_range("groups", 1, max_groups, 1)
    _check_range("inputs", min_inputs, max_inputs, 1)
    _check_range("outputs", 1, max_outputs, 1)
    unknown = [k for k in kinds if k not in SORT_KINDS]
    if unknown or not kinds:
        raise ValueError(f"groupsort_networks(): unknown kinds {unknown}; choose from {list(SORT_KINDS)}")
    return _groupsort_networks(min_depth, max_depth, max_groups, min_inputs, max_inputs, max_outputs, exact, tuple(kinds))


@st.composite
def _groupsort_networks(draw, min_depth, max_depth, max_groups, min_inputs, max_inputs, max_outputs, exact,
                        kinds) -> Network:
    from .sort import FullSort, GroupSort, MaxMin

    depth = draw(st.integers(min_depth, max_depth))
    width = draw(st.integers(min_inputs, max_inputs))
    layers: list = []
    for l in range(depth):
        if l == depth - 1:
            out = draw(st.integers(1, max_outputs))
            sort = None
        else:
            kind = draw(st.sampled_from(kinds))
            g = {"groupsort2": 2, "maxmin": 2, "fullsort": None, "groupsort": draw(st.integers(2, 3))}[kind]
            out = (g or 1) * draw(st.integers(1, max_groups)) if g else draw(st.integers(2, 2 * max_groups))
            sort = MaxMin() if kind == "maxmin" else FullSort() if kind == "fullsort" else GroupSort(g)
        w = draw(weight_matrices(out, width, exact=exact))
        b = draw(weight_matrices(1, out, exact=exact))[0]
        layers.append(Dense(w, b))
        if sort is not None:
            layers.append(sort)
        width = out
    return Network(layers)


def conv1d_networks(*, min_channels: int = 1, max_channels: int = 3, min_length: int = 2, max_length: int = 12,
                    min_blocks: int = 1, max_blocks: int = 2, min_outputs: int = 1, max_outputs: int = 3,
                    max_kernel: int = 4, max_stride: int = 2, max_upsample: int = 3,
                    weight_bound: float = 2.0) -> st.SearchStrategy[Network]:
    """Small 1-D CNNs on ``(C, L)``: ``min_blocks..max_blocks`` blocks of ``Conv1d`` (kernel up to ``max_kernel``,
    stride up to ``max_stride``, padding, dilation 1-2, groups) -> optional ``BatchNorm1d`` -> activation -> optional
    ``MaxPool1d``/``AvgPool1d`` (overlapping windows, padding) or ``Upsample`` (factor up to ``max_upsample``), then
    ``Flatten``, a ``Dense`` layer with ``min_outputs..max_outputs`` outputs and optionally a ``BatchNorm1d`` on it.

    >>> from hypothesis import given
    >>> @given(conv1d_networks(max_blocks=1))
    ... def check(net):
    ...     assert net(np.zeros(net.input_shape)).shape == net.output_shape
    >>> check()
    """
    _check_range("channels", min_channels, max_channels, 1)
    _check_range("length", min_length, max_length, 1)
    _check_range("blocks", min_blocks, max_blocks, 0)
    _check_range("outputs", min_outputs, max_outputs, 1)
    _check_range("kernel", 1, max_kernel, 1)
    _check_range("stride", 1, max_stride, 1)
    _check_range("upsample", 1, max_upsample, 1)
    if not (isinstance(weight_bound, (int, float)) and 0 < weight_bound < 1e6):
        raise ValueError(f"weight_bound must be a positive number below 1e6, got {weight_bound!r}")
    return _conv1d_networks(min_channels, max_channels, min_length, max_length, min_blocks, max_blocks, min_outputs,
                            max_outputs, max_kernel, max_stride, max_upsample, float(weight_bound))


def _batchnorm1d(draw, c, bound):
    var = draw(arrays(np.float64, (c,), elements=st.floats(0.25, 4.0)))
    return BatchNorm1d(_weights(draw, (c,), bound), _weights(draw, (c,), bound), _weights(draw, (c,), bound), var)


@st.composite
def _conv1d_networks(draw, min_channels, max_channels, min_length, max_length, min_blocks, max_blocks, min_outputs,
                     max_outputs, max_kernel, max_stride, max_upsample, bound):
    c = draw(st.integers(min_channels, max_channels))
    n = draw(st.integers(min_length, max_length))
    input_shape = (c, n)
    layers: list = []
    for _ in range(draw(st.integers(min_blocks, max_blocks))):
        c_out = draw(st.integers(min_channels, max_channels))
        k = draw(st.integers(1, min(max_kernel, n)))
        dilation = draw(st.integers(1, 2)) if 2 * (k - 1) + 1 <= n else 1
        padding = draw(st.integers(0, k // 2))
        stride = draw(st.integers(1, max_stride))
        groups = draw(st.sampled_from([g for g in range(1, min(c, c_out) + 1) if c % g == 0 and c_out % g == 0]))
        bias = _weights(draw, (c_out,), bound) if draw(st.booleans()) else None
        conv = Conv1d(_weights(draw, (c_out, c // groups, k), bound), bias, stride=stride, padding=padding,
                      dilation=dilation, groups=groups)
        layers.append(conv)
        c, n = conv.output_shape((c, n))
        if draw(st.booleans()):
            layers.append(_batchnorm1d(draw, c, bound))
        layers.append(draw(st.sampled_from(_CONV_ACTIVATIONS))())
        kind = draw(st.sampled_from(["none", "max", "avg", "up"]))
        if kind == "up":
            layer = Upsample(draw(st.integers(1, max_upsample)))
        elif kind != "none":
            w = draw(st.integers(1, min(3, n)))
            layer = (MaxPool1d if kind == "max" else AvgPool1d)(w, stride=draw(st.integers(1, w)),
                                                               padding=draw(st.integers(0, w // 2)))
        if kind != "none":
            layers.append(layer)
            c, n = layer.output_shape((c, n))
    n_out = draw(st.integers(min_outputs, max_outputs))
    layers += [Flatten(), Dense(_weights(draw, (n_out, c * n), bound), _weights(draw, (n_out,), bound))]
    if draw(st.booleans()):
        layers.append(_batchnorm1d(draw, n_out, bound))
    return Network(layers, input_shape=input_shape)
