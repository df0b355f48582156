"""Published numbers of networks other projects ship (``/work/shared/refs``; its README names the sources).

Results nobody here produced: LipBaB's exact local constants (Bhowmick et al. 2021) in l1, l2, l∞, LipSDP's
random 2-10-30-20-2 network (Fazlyab et al. 2019) and an ECLipsE demo network.  Tests that take more than
about 10 s are marked ``slow`` (they run in the slow job of ``.ci/run``).
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest
import scipy.io
import scipy.optimize

import lipverify as lv

#: ``../shared/refs`` next to the checkout (``/work/main`` -> ``/work/shared/refs``; one level up more for a
#: worktree under ``/work/wt/``), or the folder named by ``LIPVERIFY_REFS``
_HERE = Path(__file__).resolve()
REFS = next((p for p in ([Path(os.environ["LIPVERIFY_REFS"])] if "LIPVERIFY_REFS" in os.environ else [])
             + [_HERE.parents[2] / "shared" / "refs", _HERE.parents[3] / "shared" / "refs"] if p.is_dir()),
            _HERE.parents[2] / "shared" / "refs")
pytestmark = pytest.mark.skipif(not REFS.is_dir(), reason=f"the reference networks folder {REFS} is absent")

#: LipBaB's exact local constants on the box: (box upper end, {norm: value}); the box is [0, upper]^n
LIPBAB = {
    "SDnet_(10,15,10,3)": (0.1, {"2": 9.530716922306004, "1": 10.41286850374477, "inf": 16.274810805318676}),
    "SDnet_(10,20,15,10,3)": (0.1, {"2": 40.05651016370293, "1": 48.04897158493324, "inf": 72.28569774866806}),
    "SDnet_(10,30,30,30,3)": (0.1, {"2": 19.462799793264388, "1": 19.369311332018757, "inf": 39.11036425646691}),
    "iris_net_(4,5,5,3)": (1.0, {"2": 6.771454513402937, "1": 5.958048912394726, "inf": 12.605085581416922}),
}
#: the networks whose three exact constants (and local bounds) take more than ~10 s here
SLOW_LIPBAB = {"SDnet_(10,15,10,3)", "SDnet_(10,20,15,10,3)", "SDnet_(10,30,30,30,3)"}


def _relu_net(weights, biases=None) -> lv.Network:
    layers = []
    for i, w in enumerate(weights):
        if i:
            layers.append(lv.ReLU())
        layers.append(lv.Dense(np.asarray(w, dtype=np.float64), None if biases is None else np.asarray(biases[i])))
    return lv.Network(layers)


def _lipbab(name: str) -> tuple[lv.Network, tuple]:
    data = np.load(REFS / "lipbab" / f"{name}.npz")
    k = len([f for f in data.files if f.startswith("W")])
    net = _relu_net([data[f"W{i}"] for i in range(k)], [data[f"b{i}"] for i in range(k)])
    upper, _ = LIPBAB[name]
    return net, ([0.0] * net.n_in, [upper] * net.n_in)


@pytest.mark.parametrize("name", [pytest.param(n, marks=pytest.mark.slow) if n in SLOW_LIPBAB else n for n in LIPBAB])
def test_lipbab_exact_local_constants(name):
    net, box = _lipbab(name)
    _, published = LIPBAB[name]
    for p, value in published.items():
        b = lv.exact(net, p, domain=box)
        assert b.kind == "exact", (name, p, b.status)
        assert float(b.value) == pytest.approx(value, rel=1e-9), (name, p)
        for row in lv.compare(net, norms=[p], domain=box):
            if row.value is not None:
                assert row.kind == "upper", (name, row)
                assert float(row.value) >= value * (1 - 1e-9), (name, row)


def _lipsdp_random() -> list[np.ndarray]:
    mat = scipy.io.loadmat(REFS / "lipsdp" / "random_weights.mat")
    return [np.asarray(w, dtype=np.float64) for w in mat["weights"].ravel()]


def test_lipsdp_random_net_published_bounds():
    weights = _lipsdp_random()
    assert [w.shape for w in weights] == [(10, 2), (30, 10), (20, 30), (2, 20)]
    assert all(np.all(w >= 0) for w in weights)  # so the constant is ||W4 W3 W2 W1||_2 (every unit active)
    net = _relu_net(weights)
    product = np.linalg.norm(weights[3] @ weights[2] @ weights[1] @ weights[0], 2)
    assert product == pytest.approx(36.4822, abs=5e-5)
    neuron = float(lv.bound(net, "lipsdp", 2, variant="neuron").value)
    layer = float(lv.bound(net, "lipsdp", 2, variant="layer").value)
    # LipSDP's README prints two decimals; lipverify's values are rigorous, so at most a little above the SDP optimum
    assert product * (1 - 1e-9) <= neuron <= 36.485 + 0.01
    assert 39.835 <= layer <= 39.845 + 0.01
    assert neuron <= layer * (1 + 1e-9)


@pytest.mark.slow
def test_eclipse_demo_network():
    data = np.load(REFS / "eclipse" / "lyr2n80test1.npz")
    w1, w2 = data["w1"], data["w2"]
    net = _relu_net([w1, w2])
    assert net.n_in == 4 and net.n_out == 1
    # K2 = max over D in {0,1}^80 of ||w2 D w1||_2, the notebook's vertex search
    assert float(lv.bound(net, "k2", 2).value) == pytest.approx(0.737257, abs=1e-6)
    # the notebook's "trivial" bound 0.96764 is ||W1||_F ||W2||_2; lipverify's K* is the spectral product, smaller
    assert np.linalg.norm(w1, "fro") * np.linalg.norm(w2, 2) == pytest.approx(0.96764, abs=1e-5)
    kstar = float(lv.bound(net, "kstar", 2).value)
    assert kstar == pytest.approx(np.linalg.norm(w1, 2) * np.linalg.norm(w2, 2), rel=1e-12) and kstar < 0.96764
    # the all-active pattern is realizable (an x with W1 x >= 1 exists), so the constant is ||W2 W1||_2 = K2
    res = scipy.optimize.linprog(np.zeros(4), A_ub=-w1, b_ub=-np.ones(80), bounds=[(None, None)] * 4, method="highs")
    assert res.status == 0 and np.all(w1 @ res.x > 0)
    true = np.linalg.norm(w2 @ w1)
    assert true == pytest.approx(0.737257, abs=1e-6)
    for row in lv.compare(net, norms=[2]):
        if row.value is not None:
            assert float(row.value) >= true * (1 - 1e-9), row
