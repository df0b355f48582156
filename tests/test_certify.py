"""Certified robustness of batches (lipverify.certify) and ``lipverify certify``.

The oracle is an equivalent torch model written here (weights copied into the lipverify layers): projected gradient
steps on its margin (torch autograd) attack every certified radius, and its Jacobians (autograd) at points of the
ε-ball bound the local Lipschitz constant from below.
"""

from __future__ import annotations

import json

import numpy as np
import pytest

import lipverify as lv
from lipverify.cli import main

torch = pytest.importorskip("torch")
nn = torch.nn


@pytest.fixture(autouse=True, scope="module")
def _one_torch_thread():
    """The oracle's tensors are tiny: one thread is faster than sharing a busy machine's cores."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


class _Block(nn.Module):
    def __init__(self, body):
        super().__init__()
        self.body = body

    def forward(self, x):
        return x + self.body(x)


def _conv(torch_conv):
    return lv.Conv2d(torch_conv.weight.detach().numpy().copy(), torch_conv.bias.detach().numpy().copy(),
                     padding=torch_conv.padding[0])


def _dense(torch_linear):
    return lv.Dense(torch_linear.weight.detach().numpy().copy(), torch_linear.bias.detach().numpy().copy())


def _pair(residual: bool, seed: int = 0):
    """``(torch model, the same network in lipverify)``: a small CNN (conv, ReLU, max pool, dense) on 1x6x6 inputs,
    or a residual CNN (conv, ReLU, x + conv(ReLU(conv x)), ReLU, dense) on 1x5x5; three classes."""
    torch.manual_seed(seed)
    if residual:
        c1, c2, c3, fc = nn.Conv2d(1, 2, 3, padding=1), nn.Conv2d(2, 2, 3, padding=1), nn.Conv2d(2, 2, 3, padding=1), \
            nn.Linear(50, 3)
        model = nn.Sequential(c1, nn.ReLU(), _Block(nn.Sequential(c2, nn.ReLU(), c3)), nn.ReLU(), nn.Flatten(), fc)
        for prm in model.parameters():  # livelier than the default initialisation (a nearly constant network)
            nn.init.normal_(prm, std=0.4)
        net = lv.Network([_conv(c1), lv.ReLU(), lv.Residual([_conv(c2), lv.ReLU(), _conv(c3)]), lv.ReLU(), lv.Flatten(),
                          _dense(fc)], input_shape=(1, 5, 5))
    else:
        c1, fc = nn.Conv2d(1, 3, 3, padding=1), nn.Linear(27, 3)
        model = nn.Sequential(c1, nn.ReLU(), nn.MaxPool2d(2), nn.Flatten(), fc)
        net = lv.Network([_conv(c1), lv.ReLU(), lv.MaxPool2d(2), lv.Flatten(), _dense(fc)], input_shape=(1, 6, 6))
    model = model.double()
    return model, net


def _inputs(net, n, seed=1):
    return np.random.default_rng(seed).uniform(0, 1, (n, *net.input_shape))  # Fashion-MNIST-like pixel values


def _project(d, r, p):
    """The point of the p-ball of radius ``r`` nearest to ``d`` (l1: Duchi et al. 2008), shrunk by 1e-9 so that
    rounding never leaves the ball."""
    shape, v = d.shape, d.reshape(-1)
    if p == "inf":
        v = v.clamp(-r, r)
    elif p == "2":
        v = v * min(1.0, r / max(float(v.norm()), 1e-300))
    elif float(v.abs().sum()) > r:
        u = v.abs().sort(descending=True).values
        css = u.cumsum(0)
        k = torch.arange(1, len(u) + 1, dtype=u.dtype)
        rho = int(torch.nonzero(u > (css - r) / k).max())
        theta = (css[rho] - r) / (rho + 1)
        v = v.sign() * (v.abs() - theta).clamp(min=0)
    return (v * (1 - 1e-9)).reshape(shape)


def _attack(model, x, y, r, p, steps=40, seed=0):
    """Projected gradient descent on the margin ``f_y - max_{j != y} f_j`` inside the p-ball of radius ``r``; returns
    every iterate (all must keep class ``y`` when ``r`` is certified)."""
    gen = torch.Generator().manual_seed(seed)
    x0 = torch.tensor(x)
    d = _project((torch.rand(x0.shape, generator=gen, dtype=torch.float64) * 2 - 1) * r, r, p)
    points = []
    for _ in range(steps):
        d.requires_grad_(True)
        out = model((x0 + d)[None])[0]
        others = torch.cat([out[:y], out[y + 1:]])
        margin = out[y] - others.max()
        (g,) = torch.autograd.grad(margin, d)
        with torch.no_grad():
            if p == "inf":
                step = -g.sign() * (2.5 * r / steps)
            elif p == "2":
                step = -g / max(float(g.norm()), 1e-300) * (2.5 * r / steps)
            else:  # steepest l1 descent: the coordinate of largest |gradient|
                step = torch.zeros_like(g).reshape(-1)
                i = int(g.abs().reshape(-1).argmax())
                step[i] = -torch.sign(g.reshape(-1)[i]) * (r / 4)
                step = step.reshape(g.shape)
            d = _project(d + step, r, p)
        points.append((x0 + d).detach())
    return torch.stack(points)


def _op_norm(jac, p):
    """``||J||_{p -> p}`` of a Jacobian (outputs x inputs): max column sum (l1), spectral norm, max row sum (l∞)."""
    a = np.abs(jac)
    return {"1": a.sum(axis=0).max(), "2": np.linalg.norm(jac, 2), "inf": a.sum(axis=1).max()}[p]


@pytest.mark.parametrize("residual", [False, True])
@pytest.mark.parametrize("p", ["1", "2", "inf"])
def test_attacks_never_break_a_certified_radius(residual, p):
    model, net = _pair(residual)
    xs = _inputs(net, 3)
    with torch.no_grad():
        ref = model(torch.tensor(xs)).numpy()
    np.testing.assert_allclose(net(xs), ref, rtol=1e-12, atol=1e-12)  # the oracle is the same function
    eps = {"1": 2.0, "2": 0.6, "inf": 0.1}[p]  # most radii below eps: set by the margins, not by the cap
    result = lv.certify(net, xs, eps, p)
    assert [r.predicted for r in result.results] == list(np.argmax(ref, axis=1))
    assert any(r.radius.value > 0 for r in result.results)  # not vacuous
    for r, x in zip(result.results, xs):
        assert r.radius.kind == "lower" and r.local_upper.kind == "upper"
        assert 0 <= r.radius.value <= eps and r.certified == (r.radius.value >= eps)
        if r.radius.value > 0:
            points = _attack(model, x, r.predicted, r.radius.value, p, steps=20)
            with torch.no_grad():
                assert torch.all(model(points).argmax(dim=1) == r.predicted), (p, r.index, r.radius.value)
        # the local constant on the ε-ball: autograd Jacobians at points of the ball (and its PGD iterates)
        ball = _attack(model, x, r.predicted, eps, p, steps=4, seed=1)
        for point in ball:
            jac = torch.autograd.functional.jacobian(lambda z: model(z[None])[0], point).reshape(3, -1).numpy()
            assert _op_norm(jac, p) <= r.local_upper.value * (1 + 1e-12), (p, r.index)
    assert result.certified_accuracy == sum(r.certified for r in result.results) / 3


def test_the_attack_finds_flips_beyond_the_certified_radius():
    """The attack has teeth: well outside the certified radii it does change the class of some input."""
    model, net = _pair(False)
    xs = _inputs(net, 4)
    result = lv.certify(net, xs, 0.02, "inf")
    flipped = 0
    for r, x in zip(result.results, xs):
        points = _attack(model, x, r.predicted, 0.5, "inf")
        with torch.no_grad():
            flipped += bool(torch.any(model(points).argmax(dim=1) != r.predicted))
    assert flipped > 0


def test_certified_radius_of_local_py_survives_the_attack_on_cnns():
    model, net = _pair(True, seed=3)
    for x in _inputs(net, 2, seed=5):
        for p in ("1", "inf"):
            r = lv.certified_radius(net, x, p, radius=0.3)
            if r.value > 0:
                points = _attack(model, x, r.details["label"], r.value, p)
                with torch.no_grad():
                    assert torch.all(model(points).argmax(dim=1) == r.details["label"])


@pytest.mark.parametrize("p", ["1", "2", "inf"])
def test_radius_is_tight_where_the_cnn_is_affine_and_the_attack_breaks_just_beyond(p):
    """Positive conv weights, bias 10 and inputs in [0, 1]: every ReLU is active on the ε-ball, the network is affine
    there, and its robustness radius is ``min_j m_j / ||a_y - a_j||_q`` (``q`` the dual norm; ``a`` rows of the
    autograd Jacobian).  The certified radius lies just below it and PGD flips the class at 1.02 times it."""
    torch.manual_seed(0)
    c1, fc = nn.Conv2d(1, 2, 3), nn.Linear(32, 3)
    x = np.random.default_rng(1).uniform(0, 1, (1, 6, 6))
    with torch.no_grad():
        c1.weight.uniform_(0, 1)
        c1.bias.fill_(10.0)
        fc.weight.normal_(0, 0.3)
        model = nn.Sequential(c1, nn.ReLU(), nn.Flatten(), fc).double()
        model[3].bias += torch.tensor([0.3, 0.0, -0.2], dtype=torch.float64) - model(torch.tensor(x)[None])[0]
        f = model(torch.tensor(x)[None])[0].numpy()
    net = lv.Network([_conv(model[0]), lv.ReLU(), lv.Flatten(), _dense(model[3])], input_shape=(1, 6, 6))
    r = lv.certify(net, [x], 1.0, p).results[0]
    a = torch.autograd.functional.jacobian(lambda z: model(z[None])[0], torch.tensor(x)).reshape(3, -1).numpy()
    q = {"1": np.inf, "2": 2, "inf": 1}[p]
    true = min((f[0] - f[j]) / np.linalg.norm(a[0] - a[j], ord=q) for j in (1, 2))
    assert r.predicted == 0 and true * (1 - 1e-6) <= r.radius.value <= true
    inside, beyond = _attack(model, x, 0, r.radius.value, p), _attack(model, x, 0, 1.02 * r.radius.value, p)
    with torch.no_grad():
        assert torch.all(model(inside).argmax(dim=1) == 0)
        assert torch.any(model(beyond).argmax(dim=1) != 0)


@pytest.mark.parametrize("p", ["1", "2", "inf"])
def test_radius_and_local_upper_hold_in_exact_arithmetic_on_rational_weights(p):
    """A linear classifier with weights 1/3, 2/7, ... (not floats): the robustness radius is ``min_j m_j / ||w_y -
    w_j||_q`` exactly (Fractions; in l2 compared squared), and the certified radius never exceeds it, nor does the
    exact operator norm exceed ``local_upper``."""
    from fractions import Fraction as F

    w = [[F(1, 3), F(2, 7)], [F(1, 10), F(-1, 3)], [F(0), F(1, 5)]]
    x = [0.7, 0.1]
    r = lv.certify(lv.Network([lv.Dense(w)]), [x], 10.0, p).results[0]
    f = [sum(a * F(v) for a, v in zip(row, x)) for row in w]
    assert r.predicted == 0
    radius, upper = F(r.radius.value), F(r.local_upper.value)
    for j in (1, 2):
        d, m = [a - b for a, b in zip(w[0], w[j])], f[0] - f[j]
        if p == "2":
            assert radius ** 2 * sum(t * t for t in d) <= m ** 2
        else:
            assert radius * (max(abs(t) for t in d) if p == "1" else sum(abs(t) for t in d)) <= m
    assert radius > 0.99 * {"1": F(3638461538461538, 10 ** 16), "2": F(34, 100), "inf": F(2642458100558659, 10 ** 16)}[p]
    if p == "1":
        assert upper >= max(sum(abs(row[k]) for row in w) for k in range(2))  # max column sum
    elif p == "inf":
        assert upper >= max(sum(abs(a) for a in row) for row in w)  # max row sum


def test_labels_decide_the_certified_flag_and_the_accuracy():
    net = lv.Network([lv.Dense([[1.0, 0.0], [0.0, 1.0]])])
    xs = [[1.0, 0.0], [0.0, 1.0], [0.52, 0.5]]
    result = lv.certify(net, xs, 0.1, "inf", labels=[0, 0, 0])
    # margins 1, 1, 0.02 and margin constant 2 in l∞: radii 0.1 (capped), 0.1, 0.01
    assert [r.predicted for r in result.results] == [0, 1, 0]
    assert [r.certified for r in result.results] == [True, False, False]
    assert result.results[2].radius.value == pytest.approx(0.01, rel=1e-9)
    assert result.results[2].radius.value <= 0.01  # m / L = 0.02 / 2, rounded down
    assert result.certified_accuracy == pytest.approx(1 / 3)
    assert result.to_dict("m")["results"][1] == {"index": 1, "predicted": 1, "label": 0, "radius": 0.1,
                                                 "local_upper": result.results[1].local_upper.value, "certified": False}


def test_bad_batches_are_refused_with_the_index_and_shapes():
    _, net = _pair(False)
    xs = list(_inputs(net, 3))
    xs[2] = xs[2][0]
    with pytest.raises(lv.ShapeError, match=r"input 2 has shape \(6, 6\), the network expects \(1, 6, 6\)"):
        lv.certify(net, xs, 0.01)
    with pytest.raises(lv.ShapeError, match="labels"):
        lv.certify(net, _inputs(net, 3), 0.01, labels=[0, 1])
    with pytest.raises(ValueError, match="label 1 is 7"):
        lv.certify(net, _inputs(net, 2), 0.01, labels=[0, 7])
    with pytest.raises(ValueError, match="eps"):
        lv.certify(net, _inputs(net, 2), 0.0)


def _cli(argv, capsys):
    code = main(argv)
    out, err = capsys.readouterr()
    return code, out, err


@pytest.fixture()
def files(tmp_path):
    _, net = _pair(False)
    model = tmp_path / "cnn.onnx"
    lv.save(net, model)
    xs = _inputs(net, 3)
    np.save(tmp_path / "x.npy", xs)
    np.save(tmp_path / "y.npy", np.array([0, 1, 2]))
    np.savez(tmp_path / "xy.npz", x=xs, y=np.array([0, 1, 2]))
    return tmp_path, net, xs


def test_cli_json_table_and_npz(files, capsys):
    path, net, xs = files
    code, out, _ = _cli(["certify", str(path / "cnn.onnx"), "--inputs", str(path / "x.npy"), "--labels",
                         str(path / "y.npy"), "--eps", "0.02", "--norm", "inf", "--json"], capsys)
    assert code == 0
    obj = json.loads(out)
    assert list(obj) == ["model", "norm", "eps", "results", "certified_accuracy"]
    assert obj["norm"] == "inf" and obj["eps"] == 0.02
    assert [list(r) for r in obj["results"]] == [["index", "predicted", "label", "radius", "local_upper", "certified"]] * 3
    expected = lv.certify(net, xs, 0.02, "inf", labels=[0, 1, 2])
    assert obj["results"] == expected.to_dict()["results"]
    assert obj["certified_accuracy"] == expected.certified_accuracy
    code, out2, _ = _cli(["certify", str(path / "cnn.onnx"), "--inputs", str(path / "xy.npz"), "--eps", "0.02",
                          "--json"], capsys)
    assert code == 0 and json.loads(out2)["results"] == obj["results"]
    code, table, _ = _cli(["certify", str(path / "cnn.onnx"), "--inputs", str(path / "xy.npz"), "--eps", "0.02"], capsys)
    assert code == 0
    assert "index predicted label" in table and "certified accuracy:" in table
    assert len([line for line in table.splitlines() if line.split()[:1] in (["0"], ["1"], ["2"])]) == 3


def test_cli_bad_input_exits_2(files, capsys, tmp_path):
    path, net, xs = files
    np.save(tmp_path / "bad.npy", xs[:, 0])
    code, _, err = _cli(["certify", str(path / "cnn.onnx"), "--inputs", str(tmp_path / "bad.npy"), "--eps", "0.1"], capsys)
    assert code == 2 and "input 0 has shape (6, 6)" in err and "(1, 6, 6)" in err
    np.savez(tmp_path / "noxy.npz", a=xs)
    code, _, err = _cli(["certify", str(path / "cnn.onnx"), "--inputs", str(tmp_path / "noxy.npz"), "--eps", "0.1"], capsys)
    assert code == 2 and "expected x" in err
    code, _, err = _cli(["certify", str(path / "cnn.onnx"), "--inputs", str(path / "x.npy"), "--eps", "0.1",
                         "--norm", "3"], capsys)
    assert code == 2
    with pytest.raises(SystemExit) as exc:
        main(["certify", str(path / "cnn.onnx"), "--inputs", str(path / "x.npy"), "--eps", "-1"])
    assert exc.value.code == 2


def test_cli_workers_give_the_same_json_as_serial(files, capsys):
    path, _, _ = files
    argv = ["certify", str(path / "cnn.onnx"), "--inputs", str(path / "xy.npz"), "--eps", "0.05", "--norm", "2", "--json"]
    _, serial, _ = _cli(argv, capsys)
    code, parallel, _ = _cli([*argv, "--workers", "2"], capsys)
    assert code == 0 and json.loads(parallel) == json.loads(serial)


@pytest.mark.slow
def test_cli_dask_cluster_gives_the_same_json_as_serial(files, capsys):
    distributed = pytest.importorskip("distributed")
    path, _, _ = files
    argv = ["certify", str(path / "cnn.onnx"), "--inputs", str(path / "xy.npz"), "--eps", "0.05", "--norm", "1", "--json"]
    _, serial, _ = _cli(argv, capsys)
    with distributed.LocalCluster(n_workers=2, threads_per_worker=1, processes=True, dashboard_address=None) as cluster:
        code, remote, _ = _cli([*argv, "--dask", cluster.scheduler_address], capsys)
    assert code == 0 and json.loads(remote) == json.loads(serial)
