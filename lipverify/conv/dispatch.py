"""Entry points used by :mod:`lipverify.bounds` to hand convolutional networks to :mod:`lipverify.conv`."""

from __future__ import annotations

import numpy as np

from ..network import Network
from ..result import Bound


def cnn(net: Network, conv: str | None) -> bool:
    """True when ``net`` has a convolutional or pooling layer; validates ``conv`` for every network."""
    from .program import check_variant, is_cnn

    check_variant(conv)
    return is_cnn(net)


def cnn_bound(method: str, net: Network, p: str, conv: str | None) -> Bound:
    """The CNN version of ``method`` (``"kstar"``, ``"k1"``, ``"k3"``, ``"k4"``) with ``conv`` in
    ``None`` (default: implicit; explicit for K1), ``"implicit"``, ``"explicit"``."""
    from . import bounds

    fn = {"kstar": bounds.cnn_kstar, "k1": bounds.cnn_k1, "k3": bounds.cnn_k3, "k4": bounds.cnn_k4}[method]
    # overflow and NaN are detected on the results (NumericalError), never turned into numbers
    with np.errstate(over="ignore", invalid="ignore"):
        return fn(net, p, conv)
