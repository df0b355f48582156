"""Analytic networks with closed-form Lipschitz constants (derivations: ``proofs/zoo.md``).

``ZOO`` maps a name to a :class:`ZooEntry`: how to build the network and its true Lipschitz
constant per norm as a sympy number (``None`` where no closed form is known).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

import sympy

from .layers import Dense, ReLU, Tanh
from .network import Network


@dataclass(frozen=True)
class ZooEntry:
    name: str
    description: str
    build: Callable[[], Network]
    constants: dict = field(default_factory=dict)  # norm name -> sympy value of the true constant


def _abs() -> Network:
    return Network([Dense([[1], [-1]]), ReLU(), Dense([[1, 1]])])


def _identity_two_relus() -> Network:
    return Network([Dense([[1], [-1]]), ReLU(), Dense([[1, -1]])])


def _hat() -> Network:
    # hat(x) = 2 relu(x) - 4 relu(x - 1/2) + 2 relu(x - 1): slopes 2, -2, 0
    half = sympy.Rational(1, 2)
    return Network([Dense([[1], [1], [1]], [0, -half, -1]), ReLU(), Dense([[2, -4, 2]])])


def _max2() -> Network:
    # max(x1, x2) = relu(x1 - x2) + relu(x2) - relu(-x2)
    return Network([Dense([[1, -1], [0, 1], [0, -1]]), ReLU(), Dense([[1, 1, -1]])])


def _tanh_unit() -> Network:
    return Network([Dense([[2]]), Tanh(), Dense([[3]])])


ZOO: dict[str, ZooEntry] = {
    e.name: e
    for e in [
        ZooEntry("abs", "|x| = relu(x) + relu(-x)", _abs,
                 {"1": sympy.Integer(1), "2": sympy.Integer(1), "inf": sympy.Integer(1)}),
        ZooEntry("identity_relu", "x = relu(x) - relu(-x)", _identity_two_relus,
                 {"1": sympy.Integer(1), "2": sympy.Integer(1), "inf": sympy.Integer(1)}),
        ZooEntry("hat", "Yarotsky's hat function on [0, 1] (slopes 2, -2, 0)", _hat,
                 {"1": sympy.Integer(2), "2": sympy.Integer(2), "inf": sympy.Integer(2)}),
        ZooEntry("max2", "max(x1, x2) with three ReLUs", _max2,
                 {"1": sympy.Integer(1), "2": sympy.Integer(1), "inf": sympy.Integer(1)}),
        ZooEntry("tanh_unit", "3 tanh(2x)", _tanh_unit, {"1": sympy.Integer(6), "2": sympy.Integer(6), "inf": sympy.Integer(6)}),
    ]
}
