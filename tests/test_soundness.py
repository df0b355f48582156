"""The soundness property over every registered method (DESIGN §1, §2).

On every generated network and in every norm: each ``upper``/``exact`` value of every method in
``lv.METHODS`` is at least the sampled-Jacobian lower bound, and the known orderings hold
(``||W_L⋯W_1|| <= K2 <= K4 <= K3 <= K*`` for l1/l∞, ``K2 <= K1 <= K*`` in every norm).  Each value is
rounded outward on its own, so orderings between two different computations are checked up to 1e-9
relative (and 1e-150 absolute: near the underflow range outward rounding is coarse).
Under the ``ci`` profile this runs 500 examples.
"""

import os

import numpy as np
from hypothesis import given, settings

import lipverify as lv
from lipverify.bounds.chain import linear_chain
from lipverify.strategies import networks

EXAMPLES = 500 if os.environ.get("HYPOTHESIS_PROFILE") == "ci" else 40
TOL = 1e-9
#: options that keep the anytime methods quick on generated nets
OPTIONS = {"k2": {"time_limit": 2.0, "max_nodes": 5000}}


def _leq(a, b):
    return a <= b * (1 + TOL) + 1e-150


def _check(net):
    lows = {p: lv.lower_bound(net, p, samples=64, steps=8) for p in lv.NORMS}
    rows = lv.compare(net, **OPTIONS)
    values = {}
    for row in rows:
        if row.value is None:
            continue
        assert row.kind in ("upper", "exact"), row
        v = float(row.value)
        assert np.isfinite(v)
        assert v >= lows[row.norm].value, f"{row.method} l{row.norm} = {v} < sampled {lows[row.norm].value}"
        if row.lower is not None:
            assert row.lower <= v
        values[(row.method, row.norm)] = v
    for p in lv.NORMS:
        get = {m: values.get((m, p)) for m in ("kstar", "k1", "k2", "k3", "k4")}
        assert _leq(get["k2"], get["k1"]) and _leq(get["k1"], get["kstar"]), (p, get)
        if p != "2":
            assert _leq(get["k2"], get["k4"]) and _leq(get["k4"], get["k3"]) and _leq(get["k3"], get["kstar"]), (p, get)
    chain = linear_chain(net)
    if all(s.lo <= 1 <= s.hi for s in chain.slopes):  # D = I lies in the slope box
        m = np.eye(net.n_in)
        for w in chain.weights:
            m = w @ m
        for p in lv.NORMS:
            norm = np.linalg.norm(m, {"1": 1, "2": 2, "inf": np.inf}[p])
            assert norm * (1 - TOL) - 1e-150 <= values[("k2", p)]


@settings(max_examples=EXAMPLES)
@given(networks(max_depth=4, max_width=5, max_inputs=4, max_outputs=3))
def test_every_method_is_sound_on_float_networks(net):
    _check(net)


@settings(max_examples=max(EXAMPLES // 5, 20))
@given(networks(exact=True, max_depth=3, max_width=4, max_inputs=3, max_outputs=2))
def test_every_method_is_sound_on_rational_networks(net):
    _check(net)
