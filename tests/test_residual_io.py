"""Residual networks in import and export: PyTorch modules with skip connections (torch.fx), ONNX DAGs (import
of series-parallel graphs, refusal of the others naming the node), ONNX export and the npz format.

Oracles: PyTorch's own forward and ``torch.autograd.functional.jacobian`` (float64 modules), the ONNX reference
evaluator, and exact array equality for the round trips."""

import io
import warnings

import numpy as np
import pytest
from onnx import TensorProto, helper, numpy_helper
from onnx.reference import ReferenceEvaluator

import lipverify as lv
from lipverify.io.onnx import from_onnx_model, to_onnx_model

torch = pytest.importorskip("torch")
nn = torch.nn
F = torch.nn.functional
DOUBLE = TensorProto.DOUBLE


# --------------------------------------------------------------------------- PyTorch models written here


def _bn(c):
    b = nn.BatchNorm2d(c)
    with torch.no_grad():  # non-trivial inference statistics
        b.running_mean.uniform_(-0.5, 0.5)
        b.running_var.uniform_(0.5, 2.0)
        b.weight.uniform_(0.5, 1.5)
        b.bias.uniform_(-0.3, 0.3)
    return b


class BasicBlock(nn.Module):
    """torchvision-style: conv-BN-ReLU-conv-BN, plus the identity or a 1x1-conv-BN projection, then ReLU."""

    def __init__(self, cin, cout, stride=1):
        super().__init__()
        self.conv1 = nn.Conv2d(cin, cout, 3, stride, 1, bias=False)
        self.bn1 = _bn(cout)
        self.conv2 = nn.Conv2d(cout, cout, 3, 1, 1, bias=False)
        self.bn2 = _bn(cout)
        self.relu = nn.ReLU(inplace=True)
        self.downsample = None
        if stride != 1 or cin != cout:
            self.downsample = nn.Sequential(nn.Conv2d(cin, cout, 1, stride, bias=False), _bn(cout))

    def forward(self, x):
        identity = x
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        if self.downsample is not None:
            identity = self.downsample(x)
        out += identity
        return self.relu(out)


class SmallResNet(nn.Module):
    def __init__(self, pool="avg"):
        super().__init__()
        self.stem = nn.Sequential(nn.Conv2d(2, 4, 3, padding=1), _bn(4), nn.ReLU())
        self.layer1 = BasicBlock(4, 4)
        self.layer2 = BasicBlock(4, 6, stride=2)
        self.pool = nn.AdaptiveAvgPool2d(1) if pool == "avg" else nn.MaxPool2d(2)
        self.fc = nn.Linear(6, 3)

    def forward(self, x):
        x = self.layer2(self.layer1(F.max_pool2d(self.stem(x), 2)))
        return self.fc(torch.flatten(self.pool(x), 1))


class ResMLP(nn.Module):
    """A fully connected residual MLP: an identity block, then a projection block that changes the width."""

    def __init__(self):
        super().__init__()
        self.inp = nn.Linear(3, 5)
        self.body1 = nn.Sequential(nn.Linear(5, 5), nn.ReLU(), nn.Linear(5, 5))
        self.body2 = nn.Sequential(nn.Linear(5, 4), nn.Tanh(), nn.Linear(4, 4))
        self.proj = nn.Linear(5, 4, bias=False)
        self.out = nn.Linear(4, 2)

    def forward(self, x):
        h = self.inp(x)
        h = torch.relu(h + self.body1(h))
        h = self.proj(h) + self.body2(h)
        return self.out(F.relu(h))


def _resnet(pool="avg"):
    torch.manual_seed(0)
    return SmallResNet(pool).double().eval()


def _resmlp():
    torch.manual_seed(1)
    return ResMLP().double().eval()


def _torch_forward(module, x):
    with torch.no_grad():
        return module(torch.from_numpy(x)).numpy()


def _torch_jacobian(module, x):
    j = torch.autograd.functional.jacobian(lambda t: module(t[None])[0], torch.from_numpy(x))
    return j.reshape(j.shape[0], -1).numpy()


def _export(module, shape, path=None):
    """``torch.onnx.export`` (the TorchScript-based exporter: offline, no onnxscript) to ``path`` or to memory."""
    target = io.BytesIO() if path is None else str(path)
    with warnings.catch_warnings():  # the TorchScript-based exporter is deprecated; it still works offline
        warnings.simplefilter("ignore")
        torch.onnx.export(module, torch.zeros(1, *shape, dtype=torch.float64), target, dynamo=False, opset_version=17,
                          input_names=["x"], dynamic_axes={"x": {0: "N"}})
    return target


def _assert_matches_torch(net, module, shape, seed):
    rng = np.random.default_rng(seed)
    x = rng.standard_normal((4, *shape))
    want = _torch_forward(module, x)
    np.testing.assert_allclose(net(x), want, rtol=1e-6, atol=1e-6 * np.max(np.abs(want)))
    for xi in x[:2]:
        jt = _torch_jacobian(module, xi)
        np.testing.assert_allclose(net.jacobian(xi), jt, rtol=1e-6, atol=1e-6 * np.max(np.abs(jt)))


def _residuals(net):
    return [layer for layer in net.layers if isinstance(layer, lv.Residual)]


# --------------------------------------------------------------------------- PyTorch and ONNX import


@pytest.mark.parametrize("pool", ["avg", "max"])
def test_resnet_from_torch_and_through_onnx_export(tmp_path, pool):
    module = _resnet(pool)
    direct = lv.from_torch(module, input_shape=(2, 8, 8))
    blocks = _residuals(direct)
    assert len(blocks) == 2 and blocks[0].shortcut == ()  # identity shortcut, then a projection
    assert [type(layer).__name__ for layer in blocks[1].shortcut] == ["Conv2d", "BatchNorm2d"]
    assert blocks[1].shortcut[0].stride == (2, 2)
    _assert_matches_torch(direct, module, (2, 8, 8), 0)
    if pool == "max":  # one export is enough (the first torch.onnx.export of a session is slow)
        return
    path = _export(module, (2, 8, 8), tmp_path / "resnet.onnx")
    loaded = lv.load(path)  # the exporter folds each BatchNorm into its convolution
    assert loaded.input_shape == (2, 8, 8) and len(_residuals(loaded)) == 2
    assert len(_residuals(loaded)[1].shortcut) == 1
    _assert_matches_torch(loaded, module, (2, 8, 8), 1)
    _assert_sound_bounds(direct, module, (2, 8, 8))
    _assert_sound_bounds(loaded, module, (2, 8, 8))


def _assert_sound_bounds(net, module, shape):
    """The loaded ResNet gets K3/K4 in l1/l∞ (implicit) and K*/K1 in l2, each above the norms of torch's own
    Jacobians at random points (an oracle that shares no code with lipverify)."""
    rng = np.random.default_rng(7)
    jacs = [_torch_jacobian(module, rng.normal(size=shape)).reshape(net.n_out, -1) for _ in range(8)]
    lower = {"1": max(np.abs(j).sum(axis=0).max() for j in jacs), "inf": max(np.abs(j).sum(axis=1).max() for j in jacs),
             "2": max(np.linalg.norm(j, 2) for j in jacs)}
    for method, p, conv in (("k3", "1", "implicit"), ("k3", "inf", "implicit"), ("k4", "1", "implicit"),
                            ("k4", "inf", "implicit"), ("kstar", "2", "implicit"), ("k1", "2", "explicit")):
        b = lv.bound(net, method, norm=p, conv=conv)
        assert b.kind == "upper" and b.details["residual"] is True
        assert lower[p] <= b.value * (1 + 1e-9), (method, p, lower[p], b.value)


def test_residual_mlp_from_torch_and_through_onnx():
    module = _resmlp()
    direct = lv.from_torch(module)  # the input shape comes from the first Linear
    assert direct.input_shape == (3,)
    blocks = _residuals(direct)
    assert [len(b.body) for b in blocks] == [3, 3] and blocks[0].shortcut == () and len(blocks[1].shortcut) == 1
    np.testing.assert_array_equal(blocks[1].shortcut[0].weight, module.proj.weight.detach().numpy())
    _assert_matches_torch(direct, module, (3,), 2)
    loaded = from_onnx_model(__import__("onnx").load_from_string(_export(module, (3,)).getvalue()))
    _assert_matches_torch(loaded, module, (3,), 3)


def test_nested_blocks_from_torch():
    class Nested(nn.Module):
        def __init__(self):
            super().__init__()
            self.a = nn.Linear(3, 3)
            self.b = nn.Linear(3, 3)

        def forward(self, x):
            inner = x + self.b(torch.tanh(self.a(x)))  # a block inside the body of the outer block
            return x + F.silu(inner)

    torch.manual_seed(2)
    module = Nested().double()
    net = lv.from_torch(module)
    (outer,) = net.layers
    assert isinstance(outer.body[0], lv.Residual) and isinstance(outer.body[1], lv.SiLU) and outer.shortcut == ()
    _assert_matches_torch(net, module, (3,), 4)


def test_wrapper_module_with_view_flatten_is_traced():
    """A model class around a Sequential, flattening with x.view(x.size(0), -1): traced, same as the chain."""

    class Wrapper(nn.Module):
        def __init__(self):
            super().__init__()
            self.features = nn.Sequential(nn.Conv2d(1, 2, 3), nn.ReLU(), nn.AvgPool2d(2))
            self.head = nn.Linear(2 * 2 * 2, 2)

        def forward(self, x):
            h = self.features(x)
            return self.head(F.gelu(h.view(h.size(0), -1)))

    torch.manual_seed(3)
    module = Wrapper().double()
    net = lv.from_torch(module, input_shape=(1, 6, 6))
    chain = lv.from_torch(nn.Sequential(module.features, nn.Flatten(), nn.GELU(), module.head), input_shape=(1, 6, 6))
    assert repr(net) == repr(chain)
    _assert_matches_torch(net, module, (1, 6, 6), 5)


def test_torch_refusals_say_what_to_do():
    class Gate(nn.Module):
        def __init__(self):
            super().__init__()
            self.a = nn.Linear(2, 2)

        def forward(self, x):
            return x * self.a(x)

    with pytest.raises(lv.ModelFormatError, match=r"the tensor 'x' branches into node 1 'a' \(module 'a' \(Linear\)\), node 2 "
                                                  r"'mul' \(function mul\).* node 2 'mul' \(function mul\) joins the branches, "
                                                  r"but only a plain x \+ y \(a residual block\)"):
        lv.from_torch(Gate())

    class Scaled(nn.Module):
        def __init__(self):
            super().__init__()
            self.a = nn.Linear(2, 2)

        def forward(self, x):
            return torch.add(x, self.a(x), alpha=2.0)

    with pytest.raises(lv.ModelFormatError, match=r"node 2 'add' \(function add\) joins the branches with the arguments "
                                                  r"\{'alpha': 2\.0\}, but only a plain x \+ y"):
        lv.from_torch(Scaled())

    class Branchy(nn.Module):
        def __init__(self):
            super().__init__()
            self.a = nn.Linear(2, 2)

        def forward(self, x):
            if x.sum() > 0:  # data-dependent control flow: torch.fx cannot trace it
                return self.a(x)
            return x

    with pytest.raises(lv.ModelFormatError, match=r"Branchy is not a chain of supported modules.*torch\.fx cannot trace"
                                                  r".*export it to ONNX"):
        lv.from_torch(Branchy())

    class Softmaxed(nn.Module):
        def __init__(self):
            super().__init__()
            self.a = nn.Linear(2, 2)

        def forward(self, x):
            return torch.softmax(self.a(x) + x, dim=1)

    with pytest.raises(lv.ModelFormatError, match=r"node 3 'softmax' \(function softmax\): is not supported in a traced "
                                                  r"forward"):
        lv.from_torch(Softmaxed())


def test_torchscript_residual_model_says_what_to_do():
    with warnings.catch_warnings():  # torch 2.13 deprecates TorchScript
        warnings.simplefilter("ignore", DeprecationWarning)
        scripted = torch.jit.script(_resmlp())
    with pytest.raises(lv.ModelFormatError, match=r"\(ResMLP\) is not supported.*a TorchScript module is read only as a "
                                                  r"chain of these: for a model with skip connections pass the Python "
                                                  r"module .* or export it to ONNX"):
        lv.from_torch(scripted)


def test_hooks_inside_a_traced_model_are_refused():
    module = _resmlp()
    module.body1.register_forward_hook(lambda m, inp, out: 2 * out)  # tracing would not see it
    with pytest.raises(lv.ModelFormatError, match=r"module 'body1' \(Sequential\) has forward hooks"):
        lv.from_torch(module)


def test_sequential_models_keep_the_chain_path():
    """A plain Sequential is not traced: its errors still name the module path (test_torch has the details)."""
    with pytest.raises(lv.ModelFormatError, match=r"module '1' \(Softsign\) is not supported"):
        lv.from_torch(nn.Sequential(nn.Linear(2, 2), nn.Softsign()))


# --------------------------------------------------------------------------- ONNX graphs that are not residual blocks


def _graph(nodes, inits=None, n=2):
    inits = [numpy_helper.from_array(np.asarray(v, np.float64), k) for k, v in (inits or {}).items()]
    graph = helper.make_graph(nodes, "g", [helper.make_tensor_value_info("x", DOUBLE, ["N", n])],
                              [helper.make_tensor_value_info("y", DOUBLE, ["N", n])], initializer=inits)
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)], ir_version=8)


def test_onnx_residual_graph_built_by_hand():
    """x -> Gemm -> h;  y = h + W2 relu(h) (identity shortcut, the Add's operands in either order)."""
    w1, w2 = np.array([[1.0, 2.0], [-1.0, 0.5]]), np.array([[0.5, -1.0], [2.0, 1.0]])
    for order in (["h", "b"], ["b", "h"]):
        model = _graph([helper.make_node("Gemm", ["x", "W1"], ["h"], transB=1, name="fc1"),
                        helper.make_node("Relu", ["h"], ["r"], name="relu"),
                        helper.make_node("Gemm", ["r", "W2"], ["b"], transB=1, name="fc2"),
                        helper.make_node("Add", order, ["y"], name="merge")], {"W1": w1, "W2": w2})
        net = from_onnx_model(model)
        assert [type(layer) for layer in net.layers] == [lv.Dense, lv.Residual]
        x = np.array([[1.0, -3.0], [0.25, 2.0]])
        h = x @ w1.T
        np.testing.assert_array_equal(net(x), h + np.maximum(h, 0) @ w2.T)


@pytest.mark.parametrize("case", ["concat", "mul", "shared", "foreign", "escape", "dangling"])
def test_onnx_non_series_parallel_graphs_are_refused(case):
    relu = helper.make_node("Relu", ["x"], ["a"], name="relu")
    if case == "concat":  # branches rejoined by a Concat
        nodes = [relu, helper.make_node("Tanh", ["x"], ["t"], name="tanh"),
                 helper.make_node("Concat", ["a", "t"], ["y"], axis=1, name="cat")]
        msg = (r"tensor 'x' branches into node 0 'relu' \(Relu\), node 1 'tanh' \(Tanh\); only a single chain, residual "
               r"blocks .* node 2 'cat' \(Concat\) joins the branches, but only an Add")
    elif case == "mul":  # a Mul of two tensors reached along the chain
        nodes = [relu, helper.make_node("Tanh", ["a"], ["t"], name="tanh"),
                 helper.make_node("Mul", ["a", "t"], ["y"], name="gate")]
        msg = r"tensor 'a' branches into .*node 2 'gate' \(Mul\) joins the branches"
    elif case == "shared":  # the tensor 'a' of the first block also feeds the second merge
        nodes = [relu, helper.make_node("Add", ["x", "a"], ["b"], name="merge1"),
                 helper.make_node("Tanh", ["a"], ["c"], name="tanh"),
                 helper.make_node("Add", ["b", "c"], ["y"], name="merge2")]
        msg = (r"node 3 'merge2' \(Add\): adds 'b' and 'c', which both depend on node 0 'relu' \(Relu\) after the "
               r"branch point 'x'.*a branch feeds two merges")
    elif case == "escape":  # a tensor inside the block is also read by a node outside it
        nodes = [relu, helper.make_node("Tanh", ["a"], ["t"], name="tanh"),
                 helper.make_node("Add", ["x", "a"], ["y"], name="merge")]
        msg = (r"node 0 'relu' \(Relu\): its output 'a' is used inside the residual block from 'x' to node 2 'merge' "
               r"\(Add\) and also by node 1 'tanh' \(Tanh\), outside the block")
    elif case == "dangling":  # the branch point feeds a third node
        nodes = [relu, helper.make_node("Tanh", ["x"], ["t"], name="tanh"),
                 helper.make_node("Add", ["x", "a"], ["y"], name="merge")]
        msg = (r"node 2 'merge' \(Add\): the tensor 'x' where the residual block ending at this node starts also "
               r"feeds node 1 'tanh' \(Tanh\), outside the block")
    else:  # an Add of the chain and a tensor that does not come from the input
        nodes = [relu, helper.make_node("RandomNormal", [], ["z"], name="noise", dtype=DOUBLE, shape=[1, 2]),
                 helper.make_node("Add", ["a", "z"], ["y"], name="merge")]
        msg = (r"node 2 'merge' \(Add\): adds 'a' and 'z', which do not form a residual block \(their branches do not "
               r"start at one tensor of the chain\)")
    with pytest.raises(lv.ModelFormatError, match=msg):
        from_onnx_model(_graph(nodes))


# --------------------------------------------------------------------------- export and the npz format


def _mlp_net():
    rng = np.random.default_rng(5)

    def dense(a, b):
        return lv.Dense(rng.standard_normal((b, a)), rng.standard_normal(b))

    inner = lv.Residual([dense(4, 4), lv.ReLU(), dense(4, 4)])
    return lv.Network([dense(3, 4), lv.Residual([inner, lv.Tanh(), dense(4, 4)]), lv.LeakyReLU(0.1),
                       lv.Residual([dense(4, 5), lv.SiLU(), dense(5, 2)], [dense(4, 2)]), lv.Residual([lv.GELU()])],
                      input_shape=(3,))


def _cnn_net():
    from lipverify import conv

    rng = np.random.default_rng(6)
    c1 = conv.Conv2d(rng.standard_normal((3, 2, 3, 3)), rng.standard_normal(3), padding=1)
    bn = conv.BatchNorm2d(rng.uniform(0.5, 1.5, 3), rng.standard_normal(3), rng.standard_normal(3), rng.uniform(0.5, 2, 3),
                          2.0**-16)  # ONNX stores epsilon as a float32 attribute: keep it exact
    c2 = conv.Conv2d(rng.standard_normal((3, 3, 3, 3)), None, padding=1)
    proj = conv.Conv2d(rng.standard_normal((4, 3, 1, 1)), None, stride=2)
    c3 = conv.Conv2d(rng.standard_normal((4, 3, 3, 3)), rng.standard_normal(4), stride=2, padding=1)
    return lv.Network([c1, lv.ReLU(), lv.Residual([c2, bn, lv.ReLU()]), lv.Residual([c3, lv.ReLU()], [proj]),
                       conv.AvgPool2d(2), lv.Flatten(), lv.Dense(rng.standard_normal((2, 16)))], input_shape=(2, 8, 8))


def _leaves(layers):
    for layer in layers:
        if isinstance(layer, lv.Residual):
            yield "residual", len(layer.body), len(layer.shortcut)
            yield from _leaves(layer.body + layer.shortcut)
        else:
            yield layer.describe(), *(np.asarray(getattr(layer, k)).tobytes() for k in ("weight", "bias")
                                      if getattr(layer, k, None) is not None)


@pytest.mark.parametrize("make", [_mlp_net, _cnn_net])
def test_onnx_export_of_residual_networks(tmp_path, make):
    net = make()
    x = np.random.default_rng(7).standard_normal((5, *net.input_shape))
    want = net(x)
    got = ReferenceEvaluator(to_onnx_model(net)).run(None, {"input": x})[0]
    np.testing.assert_allclose(got, want, rtol=1e-6, atol=1e-6 * np.max(np.abs(want)))
    path = tmp_path / "res.onnx"
    lv.save(net, path)
    back = lv.load(path)
    assert list(_leaves(back.layers)) == list(_leaves(net.layers))
    np.testing.assert_array_equal(back(x), want)


def test_npz_round_trip_of_residual_networks(tmp_path):
    net = _mlp_net()
    path = tmp_path / "res.npz"
    lv.save(net, path)
    back = lv.load(path)
    assert list(_leaves(back.layers)) == list(_leaves(net.layers))  # nested blocks, weights bit for bit
    x = np.random.default_rng(8).standard_normal((5, 3))
    np.testing.assert_array_equal(back(x), net(x))
    with np.load(path) as archive:
        assert list(archive["1.body.layers"]) == ["residual", "tanh", "dense"]
        assert list(archive["3.shortcut.layers"]) == ["dense"] and "1.shortcut.layers" not in archive.files
        data = dict(archive)
    del data["1.body.0.body.layers"]
    np.savez(tmp_path / "bad.npz", **data)
    with pytest.raises(lv.ModelFormatError, match=r"bad\.npz: layer 1\.body\.0 \(residual\): missing array "
                                                  r"'1\.body\.0\.body\.layers'"):
        lv.load(tmp_path / "bad.npz")


def _random_layers(rng, width, depth):
    """A random chain on ``width`` features: dense layers, activations and (nested) residual blocks."""
    acts = [lv.ReLU, lv.Tanh, lv.Sigmoid, lv.GELU, lv.SiLU, lambda: lv.LeakyReLU(0.25), lv.Identity]
    layers = []
    for _ in range(rng.integers(1, 4)):
        kind = rng.integers(0, 3) if depth > 0 else rng.integers(0, 2)
        if kind == 0:
            bias = rng.standard_normal(width) if rng.random() < 0.5 else None
            layers.append(lv.Dense(rng.standard_normal((width, width)), bias))
        elif kind == 1:
            layers.append(acts[rng.integers(len(acts))]())
        else:
            body = _random_layers(rng, width, depth - 1)
            short = rng.integers(0, 3)
            shortcut = (None if short == 0 else [lv.Dense(rng.standard_normal((width, width)))] if short == 1
                        else _random_layers(rng, width, depth - 1))
            layers.append(lv.Residual(body, shortcut))
    return layers


def test_random_residual_networks_round_trip():
    """Generated nets (blocks first, last, in sequence, nested, sharing a branch point): ONNX export agrees with the
    reference evaluator, and ONNX and npz give back the same function (the import may swap body and shortcut, which
    commute exactly in floating point)."""
    rng = np.random.default_rng(9)
    for _ in range(25):
        width = int(rng.integers(1, 4))
        net = lv.Network(_random_layers(rng, width, 3), input_shape=(width,))
        x = rng.standard_normal((3, width))
        want = net(x)
        model = to_onnx_model(net)
        got = ReferenceEvaluator(model).run(None, {"input": x})[0]
        np.testing.assert_allclose(got, want, rtol=1e-6, atol=1e-9, err_msg=repr(net))
        np.testing.assert_array_equal(from_onnx_model(model)(x), want, err_msg=repr(net))
        buf = io.BytesIO()
        lv.io.npz.save_npz(net, buf)
        buf.seek(0)
        back = lv.io.npz.load_npz(buf)
        assert list(_leaves(back.layers)) == list(_leaves(net.layers))
        np.testing.assert_array_equal(back(x), want)


def test_pickled_residual_model_file(tmp_path):
    module = _resnet()
    path = tmp_path / "resnet.pt"
    torch.save(module, path)  # the classes are importable from this test module
    net = lv.load(path, input_shape=(2, 8, 8))
    assert len(_residuals(net)) == 2
    x = np.random.default_rng(10).standard_normal((2, 2, 8, 8))
    np.testing.assert_allclose(net(x), _torch_forward(module, x), rtol=1e-6)
