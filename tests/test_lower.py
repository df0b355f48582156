"""lower_bound: certified values on fully connected and convolutional networks (``proofs/lower_bound.md``).

Oracles are independent of lipverify: Jacobians by hand for small nets, torch autograd (float64) on a torch model
built here from the layers' weights for CNNs, numpy products for activation patterns.
"""

import math
from pathlib import Path

import numpy as np
import pytest
import scipy.io
from hypothesis import assume, given, settings
from hypothesis import strategies as st

import lipverify as lv
import lipverify.lower as lower
from lipverify.strategies import conv_networks

torch = pytest.importorskip("torch")
F = torch.nn.functional

# the shared references sit next to the repository (../shared/refs); a git worktree sits one level deeper
REFS = next((base / "shared" / "refs" for base in Path(__file__).resolve().parents[2:4] if (base / "shared" / "refs").is_dir()),
            Path(__file__).resolve().parents[2] / "shared" / "refs")


def readme_net():
    return lv.Network([lv.Dense([[1, -2], [0, 1]], [0, 1]), lv.ReLU(), lv.Dense([[1, 1]])])


def induced(j: np.ndarray, p: str) -> float:
    """Induced matrix norms written out: max column sum (l1), spectral (l2), max row sum (l∞)."""
    if p == "1":
        return float(np.abs(j).sum(axis=0).max())
    if p == "inf":
        return float(np.abs(j).sum(axis=1).max())
    return float(np.linalg.svd(j, compute_uv=False)[0])


# --------------------------------------------------------------------------- the README's network (issue 11.7)

# f(x) = relu(x0 - 2 x1) + relu(x1 + 1): Jacobian W2 diag(s) W1 for the activation pattern s.
# s = (1, 1): [1, -1]   s = (1, 0): [1, -2]   s = (0, 1): [0, 1]   s = (0, 0): [0, 0]
# All four patterns have interior in R^2 (e.g. (1, 0) at x = (0, -2)), so the global constant is the largest
# norm: l∞ (row sum) 3, l1 (max column sum) 2, l2 sqrt(5).  In the box [-1, 1]^2, x1 + 1 >= 0 with equality only
# on the face x1 = -1, so only s = (1, 1) and (0, 1) have interior there: l∞ 2, l1 1, l2 sqrt(2).
README_GLOBAL = {"inf": 3.0, "1": 2.0, "2": math.sqrt(5)}
README_BOX = {"inf": 2.0, "1": 1.0, "2": math.sqrt(2)}
#: l1/l∞ lower ends lose a few ulps (sums rounded down); l2 also the SVD safety margin of 1e-10 relative
SLACK = {"1": 1e-12, "inf": 1e-12, "2": 1e-9}


@pytest.mark.parametrize("p", ["1", "2", "inf"])
def test_readme_network_global_constant_is_reached(p):
    b = lv.lower_bound(readme_net(), p)
    assert b.kind == "lower"
    assert README_GLOBAL[p] * (1 - SLACK[p]) <= float(b.value) <= README_GLOBAL[p], b.assumptions


@pytest.mark.parametrize("p", ["1", "2", "inf"])
def test_readme_network_on_the_box_certifies_the_interior_pattern(p):
    """Was 0.0 in l∞: the kink x1 = -1 lies on the box's face and clipped candidates all failed certification."""
    b = lv.lower_bound(readme_net(), p, domain=([-1, -1], [1, 1]))
    assert b.kind == "lower"
    assert README_BOX[p] * (1 - SLACK[p]) <= float(b.value) <= README_BOX[p], b.assumptions


def test_reflection_keeps_hill_climbing_moves_off_the_faces():
    """Clipping put the moves on the face x1 = -1 (a kink of the README net); reflection keeps them inside."""
    moves = 3 * np.random.default_rng(0).standard_normal((1000, 2))
    lo, hi = -np.ones(2), np.ones(2)
    assert np.sum(np.abs(np.clip(moves, lo, hi)) == 1) > 500
    pts = lower._reflect(moves, lo, hi)
    assert np.all(np.abs(pts) < 1)
    v = lower.certified_jacobian_norm(readme_net(), np.array([0.9, -0.5]), "inf")  # pattern (1, 1) inside the box
    assert v == pytest.approx(2.0, rel=1e-12) and v <= 2.0


# --------------------------------------------------------------------------- honesty of the result


def test_constant_network_gives_zero_and_says_why():
    """relu(x-1) - relu(1-x) - relu(x+9)/2 + relu(11-x)/2 is 0 on [-9, 11] (proofs/lower_bound.md, counterexample 1)."""
    net = lv.Network([lv.Dense([[1], [-1], [1], [-1]], [-1, 1, 9, 11]), lv.ReLU(),
                      lv.Dense([[1, -1, -0.5, 0.5]])])
    b = lv.lower_bound(net, "inf", domain=([-1.0], [1.0]))
    assert b.kind == "lower" and float(b.value) == 0.0
    assert "every Jacobian seen is 0" in b.assumptions[0]
    # globally the slope is 1/2 outside [-9, 11]: reached through a flipped pattern, never exceeded
    g = lv.lower_bound(net, "inf")
    assert g.kind == "lower" and 0.5 * (1 - 1e-12) <= float(g.value) <= 0.5


def test_nothing_certified_is_an_estimate_not_a_lower_bound():
    """A degenerate box at the kink of LeakyReLU(2): the float Jacobian (slope 2) cannot be certified."""
    net = lv.Network([lv.Dense([[1.0]]), lv.LeakyReLU(2), lv.Dense([[1.0]])])
    b = lv.lower_bound(net, "inf", domain=([0.0], [0.0]), samples=4, steps=2)
    assert b.kind == "estimate" and float(b.value) == 2.0
    assert "not certified" in b.assumptions[0]


def test_cancellation_is_not_reported():
    """proofs/lower_bound.md, counterexample 2: the exact slope is 2^-54, the float Jacobian 2^-53."""
    net = lv.Network([lv.Dense([[1 / 3], [1.0]]), lv.ReLU(), lv.Dense([[3.0, -0.9999999999999999]])])
    b = lv.lower_bound(net, "inf", domain=([0.5], [1.0]), samples=16, steps=4)
    assert b.kind == "lower" and 0.0 <= float(b.value) <= 2.0**-54
    assert "0 is the best certified value" in b.assumptions[0]


# --------------------------------------------------------------------------- LipSDP's MNIST network (issue 11.7)


def test_mnist_all_active_pattern_is_certified():
    """LipSDP's MNIST 784-50-10 net (no biases): the all-active pattern's Jacobian W2 W1 is realised (every
    region is a cone at 0), so ||W2 W1||_2 ~ 24.03 is a lower bound; the issue saw lower_bound give 22.5."""
    path = REFS / "lipsdp" / "mnist_weights.mat"
    if not path.exists():
        pytest.skip(f"reference weights not present: {path} (the shared refs folder is absent)")
    w1, w2 = (np.asarray(w, dtype=np.float64) for w in scipy.io.loadmat(path)["weights"].ravel())
    net = lv.Network([lv.Dense(w1), lv.ReLU(), lv.Dense(w2)])
    all_active = induced(w2 @ w1, "2")
    assert 24.0 < all_active < 24.1
    b = lv.lower_bound(net, 2)
    assert b.kind == "lower"
    assert float(b.value) >= all_active * (1 - 1e-9), (float(b.value), all_active, b.assumptions)
    assert float(b.value) <= 24.32  # LipSDP-Network's published upper bound (refs/README.md)
    # the all-active pattern's own certified value at its LP point: the 24.03
    x = next(x for x, label in lower._pattern_candidates(net, "2", -16 * np.ones(784), 16 * np.ones(784), np.zeros((1, 784)))
             if "max-slope" in label)
    v = lower.certified_jacobian_norm(net, x, "2")
    assert v is not None and all_active * (1 - 1e-9) <= v <= all_active * (1 + 1e-12)


def test_pattern_lp_realises_the_all_active_pattern():
    """The LP point of the all-active pattern lies strictly inside its region: every pre-activation positive."""
    rng = np.random.default_rng(3)
    w1, b1, w2 = rng.standard_normal((6, 4)), rng.standard_normal(6), rng.standard_normal((2, 6))
    net = lv.Network([lv.Dense(w1, b1), lv.ReLU(), lv.Dense(w2)])
    lo, hi = -np.ones(4), np.ones(4)
    cands = lower._pattern_candidates(net, "2", lo * 16, hi * 16, np.zeros((1, 4)))
    first = [x for x, label in cands if "max-slope" in label]
    if first:
        assert np.all(w1 @ first[0] + b1 > 0) and np.all(np.abs(first[0]) <= 16)
        v = lower.certified_jacobian_norm(net, first[0], "2")
        assert v is not None and v <= induced(w2 @ w1, "2") * (1 + 1e-12)
        assert v >= induced(w2 @ w1, "2") * (1 - 1e-9)


# --------------------------------------------------------------------------- CNNs (issue 11.4)


def torch_model(net: lv.Network):
    """The network as a torch function of one flat float64 input, built from the layers' parameters."""
    ops = []
    for layer in net.layers:
        name = type(layer).__name__
        if name == "Conv2d":
            w, b = torch.tensor(layer.weight), torch.tensor(layer.bias)
            ops.append(lambda h, w=w, b=b, lay=layer: F.conv2d(h, w, b, lay.stride, lay.padding, lay.dilation, lay.groups))
        elif name == "BatchNorm2d":
            args = [torch.tensor(a) for a in (layer.mean, layer.var, layer.gamma, layer.beta)]
            ops.append(lambda h, a=args, eps=layer.eps: F.batch_norm(h, a[0], a[1], a[2], a[3], False, 0.0, eps))
        elif name == "MaxPool2d":
            ops.append(lambda h, lay=layer: F.max_pool2d(h, lay.kernel_size, lay.stride, lay.padding))
        elif name == "AvgPool2d":
            ops.append(lambda h, lay=layer: F.avg_pool2d(h, lay.kernel_size, lay.stride, lay.padding, count_include_pad=True))
        elif name == "Flatten":
            ops.append(lambda h: h.reshape(h.shape[0], -1))
        elif name == "Dense":
            w, b = torch.tensor(layer.weight), torch.tensor(layer.bias)
            ops.append(lambda h, w=w, b=b: h @ w.T + b)
        elif name == "ReLU":
            ops.append(F.relu)
        elif name == "LeakyReLU":
            ops.append(lambda h, a=float(layer.negative_slope): F.leaky_relu(h, a))
        elif name == "Tanh":
            ops.append(torch.tanh)
        elif name == "Sigmoid":
            ops.append(torch.sigmoid)
        elif name == "GELU":
            ops.append(lambda h: F.gelu(h, approximate="none"))
        elif name == "Identity":
            ops.append(lambda h: h)
        else:
            raise AssertionError(f"no torch form for {name}")

    def f(flat):
        h = flat.reshape(1, *net.input_shape)
        for op in ops:
            h = op(h)
        return h.reshape(-1)

    return f


def torch_jacobian(net: lv.Network, x: np.ndarray) -> np.ndarray:
    j = torch.autograd.functional.jacobian(torch_model(net), torch.tensor(x.ravel(), dtype=torch.float64))
    return j.numpy()


@settings(max_examples=40, deadline=None)
@given(conv_networks(max_blocks=2, max_size=6, max_channels=3), st.sampled_from(["1", "2", "inf"]),
       st.integers(0, 2**31 - 1))
def test_certified_cnn_jacobian_norm_matches_autograd(net, p, seed):
    """Where certified, the value is <= the float Jacobian norm from torch autograd (up to torch's rounding) and
    tight (the enclosure is narrow at a differentiable point)."""
    x = np.random.default_rng(seed).uniform(-1, 1, net.input_shape)
    v = lower.certified_jacobian_norm(net, x, p)
    assume(v is not None)  # a kink or a max-pool tie (often: zero weights); about half of the draws certify
    oracle = induced(torch_jacobian(net, x), p)
    assert v <= oracle * (1 + 1e-9) + 1e-12, (v, oracle)
    assert v >= oracle * (1 - 1e-6) - 1e-9, (v, oracle)


@settings(max_examples=25, deadline=None)
@given(conv_networks(max_blocks=2, max_size=6, max_channels=3), st.sampled_from(["1", "2", "inf"]))
def test_cnn_lower_bound_is_certified_and_below_every_upper_bound(net, p):
    b = lv.lower_bound(net, p, samples=16, steps=3)
    assert b.kind in ("lower", "estimate")
    if b.kind == "estimate":
        assert "not certified" in b.assumptions[0]
        return
    for method in ("kstar", "k1", "k3", "k4"):
        for conv in ("implicit", "explicit"):
            try:
                up = lv.bound(net, method, p, conv=conv)
            except lv.LipVerifyError:
                continue  # not applicable (norm, variant)
            assert float(b.value) <= float(up.value) * (1 + 1e-12), (method, conv, b.value, up.value)


def random_cnn(seed: int) -> lv.Network:
    rng = np.random.default_rng(seed)
    return lv.Network([
        lv.Conv2d(rng.standard_normal((3, 2, 3, 3)), rng.standard_normal(3), padding=1), lv.ReLU(), lv.MaxPool2d(2),
        lv.BatchNorm2d(rng.uniform(0.5, 2, 3), rng.standard_normal(3), rng.standard_normal(3), rng.uniform(0.5, 2, 3)),
        lv.Conv2d(rng.standard_normal((2, 3, 2, 2)), rng.standard_normal(2)), lv.Tanh(), lv.AvgPool2d(2, stride=1),
        lv.Flatten(), lv.Dense(rng.standard_normal((3, 2)), rng.standard_normal(3)),
    ], input_shape=(2, 6, 6))


def test_most_random_points_of_random_cnns_certify():
    """The kink and max-pool tests reject only points near kinks or ties: most random points certify, and each
    certified value matches autograd."""
    rng = np.random.default_rng(0)
    tried = certified = 0
    for seed in range(3):
        net = random_cnn(seed)
        for _ in range(10):
            x = rng.uniform(-1, 1, net.input_shape)
            tried += 1
            v = lower.certified_jacobian_norm(net, x, "2")
            if v is not None:
                certified += 1
                oracle = induced(torch_jacobian(net, x), "2")
                # tanh's derivative is enclosed to ~1e-13 absolute: relative and absolute slack
                assert oracle * (1 - 1e-6) - 1e-9 <= v <= oracle * (1 + 1e-9) + 1e-12
    assert certified >= tried // 2, (certified, tried)


def relu_pool_net(bias: float) -> lv.Network:
    # channel 0 copies the input, channel 1 is input + bias: with bias -10 every ReLU of channel 1 is off, so each
    # of its pooling windows is a tie of locally constant zeros
    kernel = np.ones((2, 1, 1, 1))
    return lv.Network([lv.Conv2d(kernel, np.array([0.0, bias])), lv.ReLU(), lv.MaxPool2d(2), lv.Flatten(),
                       lv.Dense(np.arange(1, 9, dtype=np.float64).reshape(1, 8))], input_shape=(1, 4, 4))


def test_maxpool_ties_of_locally_constant_cells_are_certified():
    net = relu_pool_net(-10.0)
    x = np.random.default_rng(1).uniform(0.1, 1.0, (1, 4, 4))  # channel 0 all active, distinct values
    v = lower.certified_jacobian_norm(net, x, "inf")
    oracle = induced(torch_jacobian(net, x), "inf")
    assert v is not None and oracle * (1 - 1e-12) <= v <= oracle
    assert oracle == 1 + 2 + 3 + 4  # channel 0's four windows each select one cell; channel 1 contributes 0


def test_maxpool_tie_of_varying_cells_is_refused():
    net = lv.Network([lv.MaxPool2d(2), lv.Flatten()], input_shape=(1, 2, 2))
    assert lower.certified_jacobian_norm(net, np.array([[[1.0, 1.0], [0.0, 0.0]]]), "inf") is None
    v = lower.certified_jacobian_norm(net, np.array([[[1.0, 0.5], [0.0, 0.0]]]), "inf")
    assert 1.0 * (1 - 1e-12) <= v <= 1.0  # one cell selected: J = [1, 0, 0, 0]


def test_kink_inside_a_cnn_is_refused():
    net = relu_pool_net(0.0)
    x = np.full((1, 4, 4), 0.5)
    x[0, 0, 0] = 0.0  # a ReLU input exactly at its kink
    assert lower.certified_jacobian_norm(net, x, "1") is None


def test_fashion_cnn_gets_a_certified_lower_bound_or_an_estimate_with_the_reason():
    net = lv.load(Path(lv.__file__).parent / "data" / "fashion_cnn.onnx")
    for p in ("1", "2", "inf"):
        b = lv.lower_bound(net, p, samples=32, steps=5)
        if b.kind == "estimate":
            assert "not certified" in b.assumptions[0]
        else:
            assert b.kind == "lower" and float(b.value) > 0
            assert "certified" in b.assumptions[0]
        if p != "2":
            assert float(b.value) <= float(lv.bound(net, "k4", p).value)
    # a certified value at one point equals the autograd Jacobian norm there up to rounding
    x = np.random.default_rng(5).uniform(-1, 1, net.input_shape)
    v = lower.certified_jacobian_norm(net, x, "inf")
    oracle = induced(torch_jacobian(net, x), "inf")
    assert v is not None and oracle * (1 - 1e-9) <= v <= oracle * (1 + 1e-12)


def test_too_large_cnn_is_an_estimate_with_the_reason(monkeypatch):
    monkeypatch.setattr(lower, "CNN_CERTIFY_WORK", 10)
    net = relu_pool_net(0.5)
    b = lv.lower_bound(net, "inf", samples=8, steps=2)
    assert b.kind == "estimate" and "CNN_CERTIFY_WORK" in b.assumptions[0]


@pytest.mark.parametrize("overlapping", [False, True])
def test_cnn_float_jacobians_agree_with_autograd(overlapping):
    """The search's reverse-mode Jacobians, with disjoint and with overlapping max-pool windows."""
    if overlapping:
        kernel = np.random.default_rng(4).standard_normal((2, 1, 2, 2))
        net = lv.Network([lv.Conv2d(kernel), lv.ReLU(), lv.MaxPool2d(2, stride=1), lv.Flatten(),
                          lv.Dense(np.arange(1.0, 17.0).reshape(2, 8))], input_shape=(1, 4, 4))
    else:
        net = relu_pool_net(-0.3)
    x = np.random.default_rng(2).uniform(-1, 1, (5, 1, 4, 4))
    rev = lower._reverse_jacobians(net)(x)
    fwd = np.stack([torch_jacobian(net, xi) for xi in x])
    assert np.allclose(rev, fwd, rtol=1e-12, atol=1e-12)
