"""Networks shared by several test modules."""

from __future__ import annotations

import numpy as np

import lipverify as lv


def gaussian_mlp(sizes, seed: int = 0, act=lv.ReLU) -> lv.Network:
    """Dense layers with N(0, 1/fan_in) weights and N(0, 1) biases, ``act()`` between them."""
    rng = np.random.default_rng(seed)
    layers = []
    for i in range(len(sizes) - 1):
        layers.append(lv.Dense(rng.standard_normal((sizes[i + 1], sizes[i])) / np.sqrt(sizes[i]),
                               rng.standard_normal(sizes[i + 1])))
        if i < len(sizes) - 2:
            layers.append(act())
    return lv.Network(layers)
