"""Analytic networks with closed-form Lipschitz constants (derivations: ``proofs/zoo.md``).

``ZOO`` maps a name to a :class:`ZooEntry`: how to build the network and its true Lipschitz constant per
norm (``"1"``, ``"2"``, ``"inf"``) as a sympy number.  Every entry is small, so every bound runs on the
whole zoo in a few seconds (``lipverify compare --zoo``).

>>> import lipverify as lv
>>> from lipverify.zoo import ZOO
>>> e = ZOO["sawtooth3"]
>>> e.constants["inf"], lv.exact(e.build(), "inf").value
(8, 8)
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

import sympy

from .layers import GELU, Dense, ReLU, Sigmoid, Tanh
from .network import Network

R = sympy.Rational
ONE = sympy.Integer(1)


@dataclass(frozen=True)
class ZooEntry:
    name: str
    description: str
    build: Callable[[], Network]
    constants: dict = field(default_factory=dict)  # norm name -> sympy value of the true constant


def _same(v) -> dict:
    """The same constant in every norm (scalar input and output)."""
    v = sympy.sympify(v)
    return {"1": v, "2": v, "inf": v}


# --------------------------------------------------------------------------- one input, piecewise linear


def _abs() -> Network:
    return Network([Dense([[1], [-1]]), ReLU(), Dense([[1, 1]])])


def _identity_two_relus() -> Network:
    return Network([Dense([[1], [-1]]), ReLU(), Dense([[1, -1]])])


_HAT_IN = ([[1], [1], [1]], [0, -R(1, 2), -1])  # relu(x), relu(x - 1/2), relu(x - 1)
_HAT_OUT = [2, -4, 2]                              # hat = 2 r1 - 4 r2 + 2 r3


def _hat() -> Network:
    return Network([Dense(*_HAT_IN), ReLU(), Dense([_HAT_OUT])])


def sawtooth(k: int) -> Network:
    """Yarotsky's sawtooth ``g_k = hat ∘ ⋯ ∘ hat`` (k times): ``2^(k-1)`` teeth on [0, 1], slopes ``±2^k``."""
    layers = [Dense(*_HAT_IN), ReLU()]
    for _ in range(k - 1):
        layers += [Dense([_HAT_OUT] * 3, [0, -R(1, 2), -1]), ReLU()]
    layers.append(Dense([_HAT_OUT]))
    return Network(layers)


def yarotsky_square(m: int) -> Network:
    """``f_m(x) = x - Σ_{s=1}^m g_s(x) / 4^s``: the piecewise-linear interpolant of ``x^2`` at ``k/2^m`` on [0, 1]
    (and ``x`` outside [0, 1]).  Hidden layer ``s`` holds ``acc±`` (the running sum as two ReLUs) and the three
    hat neurons of ``g_s``."""
    # layer 1: pre-activations x, -x, x, x - 1/2, x - 1
    layers = [Dense([[1], [-1], [1], [1], [1]], [0, 0, 0, -R(1, 2), -1]), ReLU()]
    for s in range(1, m):
        c = R(1, 4**s)
        # acc_s = (P - N) - g_s / 4^s with g_s = 2 r1 - 4 r2 + 2 r3; next hat neurons read g_s
        acc = [1, -1, -2 * c, 4 * c, -2 * c]
        g = [0, 0, 2, -4, 2]
        layers += [Dense([acc, [-v for v in acc], g, g, g], [0, 0, 0, -R(1, 2), -1]), ReLU()]
    c = R(1, 4**m)
    layers.append(Dense([[1, -1, -2 * c, 4 * c, -2 * c]]))
    return Network(layers)


def _paper_test1() -> Network:
    # f(x) = relu(x) + 1/2 relu(2x - 1) + 2 relu(-x + 1) + relu(-3x + 2): nonnegative output weights
    return Network([Dense([[1], [2], [-1], [-3]], [0, -1, 1, 2]), ReLU(), Dense([[1, R(1, 2), 2, 1]])])


def _paper_test2() -> Network:
    # alternating staircase relu(x) - relu(x - 1) + relu(x - 2) - relu(x - 3): slopes 0, 1, 0, 1, 0
    return Network([Dense([[1], [1], [1], [1]], [0, -1, -2, -3]), ReLU(), Dense([[1, -1, 1, -1]])])


def _x_and_2abs() -> Network:
    # x -> (x, 2|x|): Jacobian column (1, ±2)
    return Network([Dense([[1], [-1]]), ReLU(), Dense([[1, -1], [2, 2]])])


# --------------------------------------------------------------------------- several inputs, piecewise linear


def _max2() -> Network:
    # max(x1, x2) = relu(x1 - x2) + relu(x2) - relu(-x2)
    return Network([Dense([[1, -1], [0, 1], [0, -1]]), ReLU(), Dense([[1, 1, -1]])])


def _l1norm2d() -> Network:
    # |x1| + |x2|
    return Network([Dense([[1, 0], [-1, 0], [0, 1], [0, -1]]), ReLU(), Dense([[1, 1, 1, 1]])])


def _linear_plane() -> Network:
    # relu(x1 + x2) - relu(-x1 - x2) = x1 + x2; "both active" is not realizable
    return Network([Dense([[1, 1], [-1, -1]]), ReLU(), Dense([[1, -1]])])


def _relu_plane() -> Network:
    # relu(x1 + x2) - relu(x1 - x2): gradients (0, 2), (1, 1), (-1, 1), (0, 0)
    return Network([Dense([[1, 1], [1, -1]]), ReLU(), Dense([[1, -1]])])


def _nonneg_deep() -> Network:
    # nonnegative weights: the all-active region exists and dominates, L = ||W3 W2 W1|| = ||(7, 9)||
    return Network([Dense([[1, 2], [2, 1], [0, 1]], [-1, 0, 2]), ReLU(), Dense([[1, 1, 0], [0, 1, 2]], [-3, 1]), ReLU(),
                    Dense([[1, 2]])])


# --------------------------------------------------------------------------- smooth, one input


def _tanh_unit() -> Network:
    return Network([Dense([[2]]), Tanh(), Dense([[3]])])


def _sigmoid_unit() -> Network:
    # 4 sigmoid(x - 1) + 1: slope 4 * 1/4 at x = 1
    return Network([Dense([[1]], [-1]), Sigmoid(), Dense([[4]], [1])])


def _gelu_unit() -> Network:
    return Network([Dense([[1]]), GELU(), Dense([[1]])])


def _tanh_chain() -> Network:
    # 2 tanh(tanh(x)): derivative 2 (1 - tanh(tanh x)^2)(1 - tanh(x)^2), both factors maximal at x = 0
    return Network([Dense([[1]]), Tanh(), Dense([[1]]), Tanh(), Dense([[2]])])


def _entries() -> list[ZooEntry]:
    sqrt = sympy.sqrt
    gelu_max = (1 + sympy.erf(1)) / 2 + 1 / (sympy.E * sqrt(sympy.pi))
    return [
        ZooEntry("abs", "|x| = relu(x) + relu(-x)", _abs, _same(1)),
        ZooEntry("identity_relu", "x = relu(x) - relu(-x)", _identity_two_relus, _same(1)),
        ZooEntry("hat", "Yarotsky's hat function on [0, 1] (slopes 2, -2, 0)", _hat, _same(2)),
        ZooEntry("sawtooth2", "hat ∘ hat: sawtooth with 2 teeth, slopes ±4", lambda: sawtooth(2), _same(4)),
        ZooEntry("sawtooth3", "hat∘hat∘hat: sawtooth with 4 teeth, slopes ±8", lambda: sawtooth(3), _same(8)),
        ZooEntry("sawtooth5", "5-fold hat: sawtooth with 16 teeth, slopes ±32", lambda: sawtooth(5), _same(32)),
        ZooEntry("square_approx2", "Yarotsky's x^2 approximant f_2 = x - g_1/4 - g_2/16 (L = 2 - 1/4)",
                 lambda: yarotsky_square(2), _same(R(7, 4))),
        ZooEntry("square_approx3", "Yarotsky's x^2 approximant f_3 (L = 2 - 1/8)", lambda: yarotsky_square(3), _same(R(15, 8))),
        ZooEntry("paper_test1", "analytic test 1 (reconstruction): scalar one-hidden-layer ReLU net with nonnegative "
                 "output weights, where K4 is exact", _paper_test1, _same(5)),
        ZooEntry("paper_test2", "analytic test 2 (reconstruction): alternating staircase relu(x) - relu(x-1) + relu(x-2) "
                 "- relu(x-3), L = 1 while K4 = 2", _paper_test2, _same(1)),
        ZooEntry("x_and_2abs", "x -> (x, 2|x|), Jacobian column (1, ±2)", _x_and_2abs,
                 {"1": sympy.Integer(3), "2": sqrt(5), "inf": sympy.Integer(2)}),
        ZooEntry("max2", "max(x1, x2) with three ReLUs", _max2, _same(1)),
        ZooEntry("l1norm2d", "|x1| + |x2| with four ReLUs", _l1norm2d, {"1": ONE, "2": sqrt(2), "inf": sympy.Integer(2)}),
        ZooEntry("linear_plane", "relu(x1 + x2) - relu(-x1 - x2) = x1 + x2 (an unrealizable pattern fools K2)",
                 _linear_plane, {"1": ONE, "2": sqrt(2), "inf": sympy.Integer(2)}),
        ZooEntry("relu_plane", "relu(x1 + x2) - relu(x1 - x2) on R^2", _relu_plane, _same(2)),
        ZooEntry("nonneg_deep", "two hidden ReLU layers with nonnegative weights on R^2: L = ||W3 W2 W1||",
                 _nonneg_deep, {"1": sympy.Integer(9), "2": sqrt(130), "inf": sympy.Integer(16)}),
        ZooEntry("tanh_unit", "3 tanh(2x)", _tanh_unit, _same(6)),
        ZooEntry("sigmoid_unit", "4 sigmoid(x - 1) + 1", _sigmoid_unit, _same(1)),
        ZooEntry("gelu_unit", "GELU(x) = x Φ(x): max slope (1 + erf(1))/2 + 1/(e sqrt(pi)) at x = sqrt(2)", _gelu_unit,
                 _same(gelu_max)),
        ZooEntry("tanh_chain", "2 tanh(tanh(x))", _tanh_chain, _same(2)),
    ]


ZOO: dict[str, ZooEntry] = {e.name: e for e in _entries()}
