"""Hypothesis strategy for small convolutional networks (to be merged into :mod:`lipverify.strategies`).

Networks are built by construction (no filtering): every drawn size fits by design, and shrinking goes
towards one narrow block of a 1x1 convolution on a small input, ReLU, no pooling and zero weights.
"""

from __future__ import annotations

import numpy as np
from hypothesis import strategies as st
from hypothesis.errors import InvalidArgument
from hypothesis.extra.numpy import arrays

from .conv.layers import AvgPool2d, BatchNorm2d, Conv2d, MaxPool2d
from .layers import GELU, Dense, Flatten, Identity, LeakyReLU, ReLU, Sigmoid, Tanh
from .network import Network

_ACTIVATIONS = (ReLU, lambda: LeakyReLU(0.25), Tanh, Identity, GELU, Sigmoid)


def _check_range(name: str, lo: int, hi: int, floor: int) -> None:
    for v, which in ((lo, "min"), (hi, "max")):
        if isinstance(v, bool) or not isinstance(v, int):
            raise InvalidArgument(f"{which}_{name} must be an int, got {v!r}")
    if lo < floor:
        raise InvalidArgument(f"min_{name}={lo} must be >= {floor}")
    if hi < lo:
        raise InvalidArgument(f"max_{name}={hi} must be >= min_{name}={lo}")


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
        raise InvalidArgument(f"weight_bound must be a positive number below 1e6, got {weight_bound!r}")
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
        layers.append(draw(st.sampled_from(_ACTIVATIONS))())
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
