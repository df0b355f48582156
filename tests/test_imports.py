"""Lazy imports (issue 16 item 8): ``import lipverify`` and float bounds load no heavy optional package; the lazily
built exact values are the ones declared.  Fresh interpreters (subprocesses) report their ``sys.modules``."""

from __future__ import annotations

import json
import math
import os
import subprocess
import sys
from fractions import Fraction
from pathlib import Path

import pytest
import sympy

import lipverify as lv
from lipverify._lazy import LazyModule, is_instance
from lipverify.layers import slope_pair
from lipverify.result import float_down, float_up

ROOT = Path(__file__).resolve().parent.parent

#: never loaded by ``import lipverify``
HEAVY = ("sympy", "cvxpy", "cvxopt", "highspy", "flint", "onnx", "torch", "matplotlib", "tqdm", "hypothesis",
         "scipy.optimize", "scipy.linalg", "scipy.sparse.linalg")
#: never loaded by a float network's k4/k3/k1/kcp/kstar bounds (scipy.linalg is: the l2 norms use LAPACK)
SYMBOLIC_AND_SOLVERS = ("sympy", "cvxpy", "cvxopt", "highspy", "flint", "onnx", "torch", "matplotlib")


def _loaded_after(code: str, names: tuple[str, ...]) -> list[str]:
    """Run ``code`` in a fresh interpreter (this checkout first on the path) and list which of ``names`` it loaded."""
    probe = f"{code}\nimport json, sys\nprint(json.dumps([m for m in {names!r} if m in sys.modules]))\n"
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")]))
    out = subprocess.run([sys.executable, "-c", probe], cwd=ROOT, env=env, capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr
    return json.loads(out.stdout.strip().splitlines()[-1])


def test_import_lipverify_loads_no_heavy_package():
    assert _loaded_after("import lipverify", HEAVY) == []


def test_public_names_resolve_without_heavy_packages():
    code = ("import lipverify as lv\n"
            "names = [getattr(lv, n) for n in lv.__all__]\n"
            "assert all(n is not None for n in names)")
    assert _loaded_after(code, HEAVY) == []


def test_float_network_and_bounds_load_no_symbolic_package_or_solver():
    code = (
        "import numpy as np\n"
        "import lipverify as lv\n"
        "rng = np.random.default_rng(0)\n"
        "net = lv.Network([lv.Dense(rng.normal(size=(6, 3)), rng.normal(size=6)), lv.ReLU(),\n"
        "                  lv.Dense(rng.normal(size=(5, 6)).tolist()), lv.Tanh(), lv.Dense(rng.normal(size=(4, 5))),\n"
        "                  lv.Sigmoid(), lv.Dense(rng.normal(size=(3, 4))), lv.SiLU(), lv.Identity(), lv.GELU(),\n"
        "                  lv.LeakyReLU(0.01), lv.LeakyReLU(-0.5), lv.LeakyReLU(2),\n"
        "                  lv.Dense(rng.normal(size=(2, 3)))])\n"
        "for m in ('k4', 'k3', 'k1', 'kcp', 'kstar'):\n"
        "    for p in ('1', 'inf'):\n"
        "        assert lv.bound(net, m, norm=p).kind == 'upper'\n"
        "assert lv.bound(net, 'kstar', norm=2).kind == 'upper'\n"
        "assert lv.METHODS['k4'](net, 'inf').value > 0\n"
    )
    assert _loaded_after(code, SYMBOLIC_AND_SOLVERS) == []


def test_cnn_float_bound_loads_no_symbolic_package_or_solver():
    code = (
        "import numpy as np\n"
        "import lipverify as lv\n"
        "rng = np.random.default_rng(1)\n"
        "net = lv.Network([lv.Conv2d(rng.normal(size=(2, 1, 3, 3)), np.zeros(2), padding=1), lv.ReLU(),\n"
        "                  lv.MaxPool2d(2), lv.Flatten(), lv.Dense(rng.normal(size=(3, 8)))], input_shape=(1, 4, 4))\n"
        "assert lv.bound(net, 'k4', norm='inf').kind == 'upper'\n"
    )
    assert _loaded_after(code, SYMBOLIC_AND_SOLVERS) == []


def test_float_bound_on_a_domain_loads_no_symbolic_package_or_solver():
    code = (
        "import numpy as np\n"
        "import lipverify as lv\n"
        "rng = np.random.default_rng(2)\n"
        "net = lv.Network([lv.Dense(rng.normal(size=(6, 3))), lv.ReLU(), lv.Dense(rng.normal(size=(2, 6)))])\n"
        "b = lv.bound(net, 'k4', norm='inf', domain=(-np.ones(3), np.ones(3)))\n"
        "assert b.kind == 'upper'\n"
    )
    assert _loaded_after(code, SYMBOLIC_AND_SOLVERS) == []


def test_local_activation_slopes_as_fractions_and_sympy_agree():
    import numpy as np

    from lipverify.local import LocalActivation

    act = LocalActivation(lv.Tanh(), np.array([0.25, 0.1]), np.array([0.5, 0.75]))
    assert act.slopes == (sympy.Rational(0.1), sympy.Rational(0.75))  # the exact binary values of the floats
    assert slope_pair(act) == (Fraction(0.1), Fraction(0.75))


def test_exact_weights_still_load_sympy_and_stay_exact():
    code = ("import fractions, lipverify as lv\n"
            "net = lv.Network([lv.Dense([[fractions.Fraction(1, 3), 2]]), lv.ReLU(), lv.Dense([[3]])])\n"
            "b = lv.bound(net, 'k4', norm='inf')\n"
            "assert b.exact_value == 7, b.exact_value\n")
    assert _loaded_after(code, ("sympy",)) == ["sympy"]


def test_sdp_methods_are_imported_on_first_call():
    # the registry holds wrappers; the SDP modules (scipy.linalg, solvers) load when a method runs
    code = ("import lipverify as lv\n"
            "assert 'lipverify.bounds.ksdp' not in __import__('sys').modules\n"
            "assert lv.METHODS['lipsdp'].function.__name__ == 'lipsdp'\n")
    assert _loaded_after(code, ("lipverify.sdp", "lipverify.bounds.ksdp", "scipy.linalg")) == []


# --------------------------------------------------------------------------- the lazily built values


@pytest.mark.parametrize(("act", "lo", "hi"), [
    (lv.ReLU(), 0, 1), (lv.Identity(), 1, 1), (lv.Tanh(), 0, 1), (lv.Sigmoid(), 0, sympy.Rational(1, 4)),
    (lv.GELU(), sympy.Rational(-129, 1000), sympy.Rational(1129, 1000)),
    (lv.SiLU(), sympy.Rational(-999, 10000), sympy.Rational(10999, 10000)),
    (lv.LeakyReLU(), sympy.Rational(1, 100), 1), (lv.LeakyReLU(-3), -3, 1), (lv.LeakyReLU(Fraction(5, 2)), 1, Fraction(5, 2)),
])
def test_slopes_are_sympy_rationals_and_slope_pair_the_same_fractions(act, lo, hi):
    s_lo, s_hi = act.slopes
    assert isinstance(s_lo, sympy.Rational) and isinstance(s_hi, sympy.Rational)
    assert (s_lo, s_hi) == (sympy.Rational(lo), sympy.Rational(hi))
    f_lo, f_hi = slope_pair(act)
    assert isinstance(f_lo, Fraction) and isinstance(f_hi, Fraction)
    assert (f_lo, f_hi) == (Fraction(int(s_lo.p), int(s_lo.q)), Fraction(int(s_hi.p), int(s_hi.q)))
    # slope_interval: the outward float rounding of the exact ends
    a, b = act.slope_interval
    assert Fraction(a) <= f_lo and Fraction(math.nextafter(a, math.inf)) > f_lo
    assert Fraction(b) >= f_hi and Fraction(math.nextafter(b, -math.inf)) < f_hi


def test_gelu_constants_are_the_rigorous_ones():
    import mpmath

    from lipverify.layers import _GELU_C, _GELU_K, _const

    assert _GELU_C == _const(-1 / sympy.sqrt(2))
    assert _GELU_K == _const(1 / sympy.sqrt(2 * sympy.pi))
    with mpmath.workprec(300):
        for (f, rad), exact in ((_GELU_C, -1 / mpmath.sqrt(2)), (_GELU_K, 1 / mpmath.sqrt(2 * mpmath.pi))):
            err = abs(mpmath.mpf(f) - exact)
            assert err <= mpmath.mpf(rad) <= err * (1 + mpmath.mpf(2) ** -50)  # sound and tight
            assert abs(f - float(exact)) == 0.0  # the nearest float


def test_leaky_relu_default_slope_is_the_sympy_rational():
    assert lv.LeakyReLU().negative_slope == sympy.Rational(1, 100)
    assert isinstance(lv.LeakyReLU().negative_slope, sympy.Rational)


@pytest.mark.parametrize("a", [0.01, -0.5, 3, Fraction(1, 3), sympy.Rational(-2, 7), 1e-300, -2.5e300])
def test_leaky_relu_slope_kept_exactly_with_a_proven_float(a):
    exact = Fraction(*a.as_integer_ratio()) if isinstance(a, float) else Fraction(str(a))
    act = lv.LeakyReLU(a)
    assert act._a == sympy.Rational(exact.numerator, exact.denominator) and isinstance(act._a, sympy.Rational)
    assert act.slopes == (sympy.Min(act._a, 1), sympy.Max(act._a, 1))
    assert slope_pair(act) == (min(exact, 1), max(exact, 1))
    assert act.describe() == f"LeakyReLU({sympy.Rational(exact.numerator, exact.denominator)})"
    # the float is the nearest one, the radius the smallest float >= its exact error
    f = act._a_float
    for g in (math.nextafter(f, math.inf), math.nextafter(f, -math.inf)):
        assert abs(Fraction(g) - exact) >= abs(Fraction(f) - exact)
    err = abs(Fraction(f) - exact)
    assert act._a_radius == _smallest_float_at_least(err)


def test_user_activation_with_sympy_slopes_goes_through_slope_pair():
    class Half(lv.Activation):
        @property
        def slopes(self):
            return (sympy.Rational(1, 2), sympy.Rational(1, 2))

        def forward(self, x):
            return 0.5 * x.reshape(x.shape[0], -1)

        def derivative(self, x):
            return 0.5 + 0 * x

    assert slope_pair(Half()) == (Fraction(1, 2), Fraction(1, 2))
    net = lv.Network([lv.Dense([[1.0, 1.0]]), Half(), lv.Dense([[3.0]])])
    assert 3.0 <= lv.bound(net, "k4", norm="inf").value <= 3.0 * (1 + 1e-12)  # the constant is 2 * 1/2 * 3


def test_subclass_overriding_slopes_is_read_through_its_slopes():
    class WideLeaky(lv.LeakyReLU):
        @property
        def slopes(self):
            return (sympy.Rational(-1), sympy.Rational(2))

    class WideReLU(lv.ReLU):
        @property
        def slopes(self):
            return (sympy.Rational(-1, 2), sympy.Integer(3))

    assert slope_pair(WideLeaky(0.5)) == (Fraction(-1), Fraction(2))
    assert WideLeaky(0.5).slope_interval == (-1.0, 2.0)
    assert slope_pair(WideReLU()) == (Fraction(-1, 2), Fraction(3))
    assert WideReLU().slope_interval == (-0.5, 3.0)


def _smallest_float_at_least(fr: Fraction) -> float:
    """Oracle: bisection over the ordered floats (as integers), decided in exact arithmetic."""
    import struct

    def as_float(i: int) -> float:
        return struct.unpack("<d", struct.pack("<q", i))[0] if i >= 0 else -struct.unpack("<d", struct.pack("<q", -i))[0]

    lo, hi = -0x7FEFFFFFFFFFFFFF, 0x7FEFFFFFFFFFFFFF  # -max, max as ordered integers
    if Fraction(as_float(hi)) < fr:
        return math.inf
    while lo < hi:  # smallest i with float(i) >= fr
        mid = (lo + hi) // 2
        if Fraction(as_float(mid)) >= fr:
            hi = mid
        else:
            lo = mid + 1
    return as_float(lo) + 0.0


@pytest.mark.parametrize("fr", [
    Fraction(1, 3), Fraction(-1, 3), Fraction(0), Fraction(1), Fraction(-129, 1000), Fraction(1, 10**400),
    Fraction(-1, 10**400), Fraction(10**400), Fraction(-(10**400)), Fraction(2**1024 - 2**970, 1),
    Fraction(2**1024 - 2**970 + 1, 1), Fraction(3, 2**1076), Fraction(-3, 2**1076),
])
def test_float_up_and_down_of_fractions_without_sympy(fr):
    up, down = float_up(fr), float_down(fr)
    assert up == _smallest_float_at_least(fr)
    assert down == -_smallest_float_at_least(-fr)
    if math.isfinite(up) and math.isfinite(down) and abs(fr) < 10**300:
        # the same numbers as the sympy path
        assert up == float_up(sympy.Rational(fr.numerator, fr.denominator))
        assert down == float_down(sympy.Rational(fr.numerator, fr.denominator))
    assert float_up(int(fr)) == _smallest_float_at_least(Fraction(int(fr)))


def test_float_up_of_a_float_is_itself():
    assert float_up(0.1) == 0.1 and float_down(0.1) == 0.1
    assert str(float_up(-0.0)) == "0.0"
    assert math.isnan(float_up(math.nan)) and float_up(math.inf) == math.inf


def test_lazy_module_and_is_instance():
    lazy = LazyModule("fractions")
    assert lazy.Fraction is Fraction
    assert is_instance(Fraction(1, 2), "fractions", "Fraction")
    assert not is_instance(0.5, "fractions", "Fraction")
    assert not is_instance(0.5, "a_module_never_imported_xyz", "Anything")
    assert is_instance(sympy.Integer(3), "sympy", "Basic")
