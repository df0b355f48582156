"""Exact Lipschitz constants (``kind="exact"``), one module per technique; proofs in ``proofs/exact.md``.

* :mod:`.pwl1d` — one input, piecewise-linear activations: sorted breakpoints, exact rationals (also with
  symbolic weights, as a ``Piecewise`` formula);
* :mod:`.regions` — several inputs, piecewise-linear activations: realizable activation regions (HiGHS
  LPs, every decision that matters checked in exact arithmetic);
* :mod:`.smooth1d` — one input, smooth activations: critical points of ``f'`` with sympy, otherwise a
  rigorous ``arb`` branch-and-bound enclosure (reported as ``kind="upper"`` with ``lower``);
* :mod:`.milp` — a LipMIP-style mixed-integer program (HiGHS) used as an independent cross-check.
"""

from __future__ import annotations

import math
import time
from typing import TYPE_CHECKING, Any

from .._lazy import LazyModule
from ..errors import NotApplicableError, SolverError
from ..network import Network
from ..norms import NormLike, parse_norm
from ..result import EXACT_ROUNDED_UP, Bound
from ..rigorous import up
from .common import float_enclosure, is_pwl, parse_domain, sequential_equivalent, stages

if TYPE_CHECKING:
    import sympy
else:
    sympy = LazyModule("sympy")

METHODS = ("auto", "breakpoints", "regions", "smooth")


def exact(net: Network, norm: NormLike = 2, domain: Any = None, *, method: str = "auto", input_shape=None,
          **options) -> Bound:
    """The true Lipschitz constant of ``f`` (biases included) on ``R^n`` or on the box ``domain=(lower, upper)``.

    Claim: for ``kind="exact"``, ``value`` (a sympy number, or a formula in the weights' symbols) equals
    ``sup_{x != y} ||f(x) - f(y)||_p / ||x - y||_p``.  Assumptions: Dense/Flatten/activation layers (residual blocks
    of Dense and ReLU layers are first rewritten into a chain computing the same function); weights
    exact or floats (a float enters as its exact dyadic rational).  Techniques (``method``):

    * ``"breakpoints"`` (one input, ReLU/LeakyReLU/Identity; symbolic weights allowed),
    * ``"regions"`` (piecewise-linear, any input dimension within the size limits; options ``max_nodes``,
      ``time_limit``, ``progress`` (a bool for a bar, or ``progress(nodes, max_nodes)``), ``max_input_dim``,
      ``max_neurons``; when ``max_nodes`` or ``time_limit``
      stops it early the result is the anytime sandwich ``kind="upper"``, ``lower <= constant <= value``,
      with ``status`` naming the limit and ``details["gap"]``),
    * ``"smooth"`` (one input, Tanh/Sigmoid/GELU/SiLU: sympy critical points, else a rigorous enclosure
      reported as ``kind="upper"`` with ``lower``; options ``tol``, ``time_limit``),
    * ``"auto"`` picks one of them.

    Proof: ``proofs/exact.md``.

    >>> import lipverify as lv
    >>> net = lv.Network([lv.Dense([[1], [-1]]), lv.ReLU(), lv.Dense([[1, 1]])])   # |x|
    >>> lv.exact(net, norm="inf").value
    1
    """
    from ..io import as_network

    started = time.perf_counter()
    net = as_network(net, input_shape)  # a live torch.nn.Module is converted as lv.from_torch does
    p = parse_norm(norm)
    if method not in METHODS:
        raise ValueError(f"exact: unknown method {method!r}; valid methods are {', '.join(METHODS)}")
    net = sequential_equivalent(net)  # residual blocks of Dense and ReLU layers: the same function as a chain
    st = stages(net)
    n = net.n_in
    dom = parse_domain(domain, n)
    acts = [s.act for s in st if s.act is not None]
    pwl = all(is_pwl(a) for a in acts)
    symbolic = bool(net.free_symbols)
    if method == "auto":
        if pwl:
            method = "breakpoints" if n == 1 else "regions"
        else:
            method = "smooth"
    if method == "breakpoints":
        if n != 1 or not pwl:
            raise NotApplicableError(
                "exact (breakpoints): needs one input and piecewise-linear activations (ReLU, LeakyReLU, Identity); "
                f"this network has {n} inputs and activations {sorted({a.kind for a in acts})}"
            )
        from .pwl1d import breakpoints_constant

        value, details = breakpoints_constant(st, p, dom)
        return _exact_bound(value, p, started, details, symbolic)
    if symbolic:
        raise NotApplicableError(
            f"exact ({method}): the network has symbolic weights {sorted(map(str, net.free_symbols))}; formulas are "
            "computed for one-input piecewise-linear networks (method='breakpoints'); substitute values with net.subs"
        )
    if method == "regions":
        if not pwl:
            bad = next(a for a in acts if not is_pwl(a))
            raise NotApplicableError(
                f"exact (regions): layer {_index(st, bad)} ({bad.describe()}) is not piecewise linear; region "
                "enumeration needs ReLU, LeakyReLU or Identity activations"
            )
        from .regions import regions_constant

        value, upper, details = regions_constant(st, p, dom, **options)
        if value is not None:
            return _exact_bound(value, p, started, details, False, solver="HiGHS")
        return _regions_upper(upper, p, started, details)
    from .smooth1d import smooth_constant

    if n != 1:
        raise NotApplicableError(
            f"exact (smooth): smooth activations are handled for one input only; this network has {n} inputs"
        )
    return smooth_constant(net, st, p, dom, started, **options)


def _regions_upper(upper: sympy.Expr, norm: str, started: float, details: dict) -> Bound:
    """The anytime sandwich of an unfinished enumeration: ``lower <= Lip <= value`` (``kind="upper"``)."""
    stopped = details.get("stopped")
    value = float_enclosure(upper)[1]
    if not math.isfinite(value):
        raise SolverError(
            f"exact (regions): {stopped or 'unverified regions'} and the rigorous bound of the unexplored branches "
            f"is {value}; no finite upper bound: raise max_nodes/time_limit or use lv.bound(net, 'k4')"
        )
    lower_exact = details.get("lower_exact")
    lower = None if lower_exact is None else float_enclosure(lower_exact)[0]
    gap = None if lower is None else float(up(value - lower))  # >= value - lower >= the true gap
    if stopped:
        status = stopped
        why = (f"the enumeration stopped early ({stopped}); value bounds the {details['open_branches']} unexplored "
               "branches rigorously and lower is the best verified region")
    else:
        status = "unverified regions"
        why = "some regions could be neither verified nor certified empty; value is an upper bound"
    return Bound.upper_bound(value, norm, "exact", rounding=EXACT_ROUNDED_UP, seconds=time.perf_counter() - started,
                             lower=lower, solver="HiGHS", status=status, assumptions=(why,), details={**details, "gap": gap})


def _index(st, act) -> int:
    for s in st:
        if s.act is act:
            return s.index
    return -1


def _exact_bound(value: sympy.Expr, norm: str, started: float, details: dict, symbolic: bool, solver=None) -> Bound:
    lower = None if symbolic else float_enclosure(value)[0]
    return Bound.exact_constant(value, norm, "exact", seconds=time.perf_counter() - started, exact_value=value, lower=lower,
                                solver=solver, status="optimal", assumptions=("exact rational arithmetic",), details=details)


__all__ = ["exact"]
