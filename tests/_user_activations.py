"""A user activation for the tests: it declares only ``slopes``, ``forward`` and ``derivative``, so every other fact
(range on an interval, narrowed slopes, error bounds) comes from the base-class defaults."""

import numpy as np
import sympy

import lipverify as lv


class Sine(lv.Activation):
    """``sin``: slopes ``[-1, 1]``, not monotone."""

    kind = "Sine"
    slopes = (sympy.Integer(-1), sympy.Integer(1))

    def forward(self, x):
        return np.sin(x)

    def derivative(self, x):
        return np.cos(x)
