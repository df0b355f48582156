"""1-D layers (Conv1d, MaxPool1d, AvgPool1d), BatchNorm1d and nearest Upsample: forward against PyTorch and ONNX's
reference evaluator, round trips, both representations, norms of the upsampling matrix, soundness against Jacobians
computed by torch autograd (an independent oracle)."""

import itertools
import math
import warnings

import numpy as np
import pytest
from hypothesis import given, settings

import lipverify as lv
from lipverify.io.onnx import from_onnx_model, to_onnx_model
from lipverify.ir.graph import linear_op, lower
from lipverify.ir.operators import UpsampleOp
from lipverify.strategies import conv1d_networks

torch = pytest.importorskip("torch")
onnx = pytest.importorskip("onnx")
nn = torch.nn
from onnx import TensorProto, helper  # noqa: E402
from onnx.reference import ReferenceEvaluator  # noqa: E402


def _randomise_bn(bn, seed):
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        c = bn.running_mean.shape[0]
        bn.running_mean.copy_(torch.randn(c, generator=g))
        bn.running_var.copy_(torch.rand(c, generator=g) * 1.5 + 0.5)
        bn.weight.copy_(torch.randn(c, generator=g))
        bn.bias.copy_(torch.randn(c, generator=g))


def _module_1d():
    torch.manual_seed(0)
    m = nn.Sequential(
        nn.Conv1d(2, 4, 3, stride=2, padding=1, dilation=2, groups=2), nn.BatchNorm1d(4), nn.ReLU(),
        nn.MaxPool1d(3, stride=2, padding=1), nn.Upsample(scale_factor=3), nn.AvgPool1d(2, padding=1),
        nn.Conv1d(4, 3, 3, padding="same"), nn.Tanh(), nn.Upsample(size=20, mode="nearest-exact"), nn.Flatten(),
        nn.Linear(60, 5), nn.BatchNorm1d(5), nn.LeakyReLU(0.1), nn.Linear(5, 3),
    )
    _randomise_bn(m[1], 1)
    _randomise_bn(m[11], 2)
    return m.double().eval()


def _torch_out(module, x):
    with torch.no_grad():
        return module(torch.from_numpy(np.asarray(x, dtype=np.float64))).numpy()


def _rel_close(a, b, rel=1e-6):
    np.testing.assert_allclose(a, b, rtol=rel, atol=rel * max(1.0, float(np.max(np.abs(b)))))


# --------------------------------------------------------------------------- forward: PyTorch, ONNX reference


def test_forward_equals_pytorch_and_layers_are_the_expected_ones():
    module = _module_1d()
    net = lv.from_torch(module, input_shape=(2, 13))
    assert [type(layer).__name__ for layer in net.layers] == [
        "Conv1d", "BatchNorm1d", "ReLU", "MaxPool1d", "Upsample", "AvgPool1d", "Conv1d", "Tanh", "Upsample", "Flatten",
        "Dense", "BatchNorm1d", "LeakyReLU", "Dense"]
    assert net.layers[8].scale_factor == 4  # size=20 from length 5
    x = np.random.default_rng(3).standard_normal((6, 2, 13))
    _rel_close(net(x), _torch_out(module, x), 1e-12)


@pytest.mark.parametrize("shape,factor", [((3, 5), 2), ((2, 4), (3,)), ((2, 3, 4), 2), ((1, 2, 3), (3, 2))])
def test_upsample_forward_equals_pytorch_nearest(shape, factor):
    x = np.random.default_rng(0).standard_normal((2, *shape))
    sf = factor if isinstance(factor, int) else tuple(float(f) for f in factor)
    want = torch.nn.functional.interpolate(torch.from_numpy(x), scale_factor=sf, mode="nearest").numpy()
    np.testing.assert_array_equal(lv.Upsample(factor).forward(x), want)


def test_torch_fx_path_reads_the_1d_layers():
    class Block(nn.Module):
        def __init__(self):
            super().__init__()
            self.conv = nn.Conv1d(3, 3, 3, padding=1)
            self.bn = nn.BatchNorm1d(3)
            self.up = nn.Upsample(scale_factor=2)
            self.pool = nn.MaxPool1d(2)

        def forward(self, x):
            return self.pool(self.up(x + self.bn(self.conv(x))))

    torch.manual_seed(5)
    module = Block()
    _randomise_bn(module.bn, 7)
    module = module.double().eval()
    net = lv.from_torch(module, input_shape=(3, 6))
    assert type(net.layers[0]).__name__ == "Residual" and type(net.layers[1]) is lv.Upsample
    x = np.random.default_rng(1).standard_normal((4, 3, 6))
    _rel_close(net(x), _torch_out(module, x), 1e-12)


def test_global_and_adaptive_average_pooling_on_1d_inputs():
    torch.manual_seed(8)
    module = nn.Sequential(nn.Conv1d(2, 3, 3), nn.ReLU(), nn.AdaptiveAvgPool1d(2), nn.Flatten(), nn.Linear(6, 2))
    module = module.double().eval()
    net = lv.from_torch(module, input_shape=(2, 10))
    assert isinstance(net.layers[2], lv.AvgPool1d) and net.layers[2].kernel_size == 4
    x = np.random.default_rng(3).standard_normal((3, 2, 10))
    _rel_close(net(x), _torch_out(module, x), 1e-12)
    with pytest.raises(lv.ModelFormatError, match="AdaptiveAvgPool1d.*divides"):
        lv.from_torch(nn.Sequential(nn.AdaptiveAvgPool1d(3)), input_shape=(2, 10))
    model = _onnx_model([helper.make_node("GlobalAveragePool", ["x"], ["y"])], [], [2, 3, 5], None)
    y = np.random.default_rng(4).standard_normal((2, 3, 5))
    got = from_onnx_model(model)
    assert isinstance(got.layers[0], lv.AvgPool1d)
    _rel_close(got(y), _ref(model, y))


def test_torch_fx_path_reads_the_functional_forms():
    F = torch.nn.functional

    class Functional(nn.Module):
        def __init__(self):
            super().__init__()
            self.conv = nn.Conv1d(2, 3, 3, padding=1)

        def forward(self, x):
            x = F.max_pool1d(torch.relu(self.conv(x)), 3, 2, 1)
            x = F.interpolate(x, scale_factor=3, mode="nearest")
            return F.avg_pool1d(x, 3, stride=1, padding=1)

    torch.manual_seed(6)
    module = Functional().double().eval()
    net = lv.from_torch(module, input_shape=(2, 8))
    assert [type(layer) for layer in net.layers] == [lv.Conv1d, lv.ReLU, lv.MaxPool1d, lv.Upsample, lv.AvgPool1d]
    x = np.random.default_rng(2).standard_normal((3, 2, 8))
    _rel_close(net(x), _torch_out(module, x), 1e-12)

    class Bilinear1d(nn.Module):
        def forward(self, x):
            return F.interpolate(x, scale_factor=2, mode="linear")

    with pytest.raises(lv.ModelFormatError, match=r"node 1 'interpolate'.*mode='linear' is not supported"):
        lv.from_torch(Bilinear1d(), input_shape=(2, 8))


def test_export_runs_in_the_onnx_reference_evaluator_and_round_trips():
    module = _module_1d()
    net = lv.from_torch(module, input_shape=(2, 13))
    model = to_onnx_model(net)
    onnx.checker.check_model(model, full_check=True)
    x = np.random.default_rng(4).standard_normal((5, 2, 13))
    ref = ReferenceEvaluator(model).run(None, {"input": x})[0]
    _rel_close(net(x), ref)
    back = from_onnx_model(model)
    assert [type(a) for a in back.layers] == [type(b) for b in net.layers]
    for a, b in zip(back.layers, net.layers):
        if isinstance(a, lv.Conv1d):
            np.testing.assert_array_equal(a.weight, b.weight)
            assert (a.stride, a.padding, a.dilation, a.groups) == (b.stride, b.padding, b.dilation, b.groups)
        if isinstance(a, (lv.MaxPool1d, lv.AvgPool1d)):
            assert (a.kernel_size, a.stride, a.padding) == (b.kernel_size, b.stride, b.padding)
        if isinstance(a, lv.Upsample):
            assert a.scale_factor == b.scale_factor
    _rel_close(back(x), net(x), 1e-9)  # BatchNormalization's epsilon is a float32 attribute


def test_torch_onnx_export_of_a_1d_model_loads_and_agrees(tmp_path):
    torch.manual_seed(2)
    module = nn.Sequential(nn.Conv1d(1, 3, 5, stride=2, padding=2), nn.BatchNorm1d(3), nn.ReLU(), nn.MaxPool1d(2),
                           nn.Upsample(scale_factor=2), nn.AvgPool1d(3, stride=1, padding=1), nn.Flatten(),
                           nn.Linear(36, 4), nn.BatchNorm1d(4))
    _randomise_bn(module[1], 3)
    _randomise_bn(module[8], 4)
    module.eval()
    path = tmp_path / "m1d.onnx"
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(module, torch.zeros(1, 1, 24), str(path), dynamo=False, opset_version=17)
    net = lv.load(path)
    assert any(isinstance(layer, lv.Upsample) for layer in net.layers)
    x = np.random.default_rng(5).standard_normal((3, 1, 24))
    with torch.no_grad():
        want = module(torch.from_numpy(x).float()).double().numpy()
    _rel_close(net(x), want, 1e-5)  # float32 weights and runtime


def _onnx_model(nodes, inits, in_shape, out_shape, opset=17):
    graph = helper.make_graph(nodes, "g", [helper.make_tensor_value_info("x", TensorProto.DOUBLE, in_shape)],
                              [helper.make_tensor_value_info("y", TensorProto.DOUBLE, out_shape)], initializer=inits)
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", opset)], ir_version=9)


def _ref(model, x):
    return ReferenceEvaluator(model).run(None, {"x": x})[0]


def test_hand_built_onnx_1d_ops_and_batchnorm_on_2d_and_3d_inputs_match_the_reference_evaluator():
    rng = np.random.default_rng(6)
    t = onnx.numpy_helper.from_array
    k = rng.normal(size=(4, 1, 3))
    bn = [rng.normal(size=4), rng.normal(size=4), rng.normal(size=4), rng.uniform(0.5, 2, 4)]
    nodes = [
        helper.make_node("Conv", ["x", "k", "b"], ["c"], kernel_shape=[3], strides=[2], pads=[2, 2], dilations=[2],
                         group=2),
        helper.make_node("BatchNormalization", ["c", "g", "be", "m", "v"], ["n"], epsilon=0.25),
        helper.make_node("MaxPool", ["n"], ["p"], kernel_shape=[3], strides=[2], pads=[1, 1]),
        helper.make_node("AveragePool", ["p"], ["a"], kernel_shape=[3], strides=[2], pads=[1, 1], count_include_pad=1),
        helper.make_node("Flatten", ["a"], ["f"], axis=1),
        helper.make_node("BatchNormalization", ["f", "g2", "be2", "m2", "v2"], ["y"]),
    ]
    inits = [t(k, "k"), t(rng.normal(size=4), "b")] + [t(v, n) for v, n in zip(bn, ["g", "be", "m", "v"])]
    x = rng.normal(size=(3, 2, 9))
    n_flat = 4 * 2  # lengths 9 -> 5 (Conv) -> 3 (MaxPool) -> 2 (AveragePool), 4 channels
    inits += [t(v, n) for v, n in zip([rng.normal(size=n_flat), rng.normal(size=n_flat), rng.normal(size=n_flat),
                                       rng.uniform(0.5, 2, n_flat)], ["g2", "be2", "m2", "v2"])]
    model = _onnx_model(nodes, inits, [3, 2, 9], None)
    net = from_onnx_model(model)
    assert [type(layer).__name__ for layer in net.layers] == ["Conv1d", "BatchNorm1d", "MaxPool1d", "AvgPool1d",
                                                              "Flatten", "BatchNorm1d"]
    _rel_close(net(x), _ref(model, x))


_ALL_CTM = ("half_pixel", "half_pixel_symmetric", "pytorch_half_pixel", "align_corners", "asymmetric")
_ALL_NEAREST = ("round_prefer_floor", "round_prefer_ceil", "floor", "ceil")


def _resize_model(shape, scales, ctm, nearest, sizes=None):
    t = onnx.numpy_helper.from_array
    inits = [t(np.asarray(scales, dtype=np.float32), "s")] if sizes is None else [t(np.asarray(sizes, np.int64), "z")]
    inputs = ["x", "", "s"] if sizes is None else ["x", "", "", "z"]
    node = helper.make_node("Resize", inputs, ["y"], mode="nearest", coordinate_transformation_mode=ctm,
                            nearest_mode=nearest)
    return _onnx_model([node], inits, list(shape), None, opset=19)


def test_resize_is_accepted_exactly_when_the_reference_evaluator_repeats():
    """For every (coordinate_transformation_mode, nearest_mode): lipverify accepts the Resize iff ONNX's reference
    evaluator computes the repeat (PyTorch's nearest) for integer factors, and then its forward is that output."""
    rng = np.random.default_rng(7)
    cases = [((2, 3, 5), (1, 1, 2)), ((1, 2, 4), (1, 1, 3)), ((1, 2, 3, 4), (1, 1, 2, 3)), ((1, 1, 2, 3), (1, 1, 4, 1))]
    for ctm, nearest in itertools.product(_ALL_CTM, _ALL_NEAREST):
        repeats = True
        models = []
        for shape, scales in cases:
            model = _resize_model(shape, scales, ctm, nearest)
            x = rng.normal(size=shape)
            ref = _ref(model, x)
            want = lv.Upsample(tuple(int(s) for s in scales[2:])).forward(x)
            repeats &= ref.shape == want.shape and np.array_equal(ref, want)
            models.append((model, x, ref))
        for model, x, ref in models:
            if repeats:
                np.testing.assert_array_equal(from_onnx_model(model)(x), ref)
            else:
                with pytest.raises(lv.ModelFormatError, match="coordinate_transformation_mode"):
                    from_onnx_model(model)
    tf = _resize_model((1, 2, 4), [1, 1, 2], "asymmetric", "floor")
    tf.graph.node[0].attribute[1].s = b"tf_half_pixel_for_nn"  # not in the reference evaluator: refused, unverified
    with pytest.raises(lv.ModelFormatError, match="tf_half_pixel_for_nn"):
        from_onnx_model(tf)


def test_resize_with_sizes_and_refusals_name_the_attribute():
    x = np.random.default_rng(8).normal(size=(1, 2, 3, 2))
    model = _resize_model((1, 2, 3, 2), None, "asymmetric", "floor", sizes=[1, 2, 6, 6])
    net = from_onnx_model(model)
    assert net.layers[0].scale_factor == (2, 3)
    np.testing.assert_array_equal(net(x), _ref(model, x))
    with pytest.raises(lv.ModelFormatError, match="not a positive integer"):
        from_onnx_model(_resize_model((1, 2, 4), [1, 1, 1.5], "asymmetric", "floor"))
    with pytest.raises(lv.ModelFormatError, match="integer multiple"):
        from_onnx_model(_resize_model((1, 2, 4), None, "asymmetric", "floor", sizes=[1, 2, 6]))
    linear = _resize_model((1, 2, 4), [1, 1, 2], "asymmetric", "floor")
    linear.graph.node[0].attribute[0].s = b"linear"  # mode
    with pytest.raises(lv.ModelFormatError, match="mode='linear'"):
        from_onnx_model(linear)


def test_resize_with_axes_and_float32_export():
    t = onnx.numpy_helper.from_array
    node = helper.make_node("Resize", ["x", "", "s"], ["y"], mode="nearest", axes=[3],
                            coordinate_transformation_mode="asymmetric", nearest_mode="floor")
    model = _onnx_model([node], [t(np.array([3], dtype=np.float32), "s")], [2, 2, 3, 2], None, opset=19)
    x = np.random.default_rng(9).standard_normal((2, 2, 3, 2))
    net = from_onnx_model(model)
    assert net.layers[0].scale_factor == (1, 3)
    np.testing.assert_array_equal(net(x), _ref(model, x))
    m32 = to_onnx_model(net, dtype="float32")
    onnx.checker.check_model(m32, full_check=True)
    x32 = x.astype(np.float32)
    np.testing.assert_array_equal(ReferenceEvaluator(m32).run(None, {"input": x32})[0], net(x32))


def test_resize_of_opset_10_is_refused_with_the_reason():
    t = onnx.numpy_helper.from_array
    node = helper.make_node("Resize", ["x", "s"], ["y"], mode="nearest")
    model = _onnx_model([node], [t(np.array([1, 1, 2], dtype=np.float32), "s")], [1, 2, 4], None, opset=10)
    with pytest.raises(lv.ModelFormatError, match="opset 10.*opset >= 11"):
        from_onnx_model(model)


def test_torch_refusals_name_the_module_and_the_attribute():
    with pytest.raises(lv.ModelFormatError, match=r"'0' \(Upsample\): mode='linear'"):
        lv.from_torch(nn.Sequential(nn.Upsample(scale_factor=2, mode="linear")), input_shape=(1, 4))
    with pytest.raises(lv.ModelFormatError, match="scale_factor=1.5"):
        lv.from_torch(nn.Sequential(nn.Upsample(scale_factor=1.5)), input_shape=(1, 4))
    with pytest.raises(lv.ModelFormatError, match="integer multiple"):
        lv.from_torch(nn.Sequential(nn.Upsample(size=7)), input_shape=(1, 4))
    with pytest.raises(lv.ModelFormatError, match="ceil_mode"):
        lv.from_torch(nn.Sequential(nn.MaxPool1d(2, ceil_mode=True)), input_shape=(1, 5))
    with pytest.raises(lv.ModelFormatError, match="padding_mode"):
        lv.from_torch(nn.Sequential(nn.Conv1d(1, 1, 3, padding=1, padding_mode="circular")), input_shape=(1, 5))


def test_shape_errors_name_the_layer_and_the_expected_shape():
    with pytest.raises(lv.ShapeError, match=r"layer 0 \(Conv1d.*\(C, L\)"):
        lv.Network([lv.Conv1d(np.ones((1, 1, 3)))], input_shape=(1, 4, 4))
    with pytest.raises(lv.ShapeError, match="BatchNorm1d expects a \\(C,\\) or \\(C, L\\)"):
        lv.Network([lv.BatchNorm1d([1.0], [0.0], [0.0], [1.0])], input_shape=(1, 4, 4))
    with pytest.raises(lv.ShapeError, match="scale_factor"):
        lv.Network([lv.Upsample((2, 2))], input_shape=(1, 4))
    with pytest.raises(ValueError, match="positive int"):
        lv.Upsample(1.5)
    with pytest.raises(ValueError, match="at most half"):
        lv.MaxPool1d(2, padding=2)


# --------------------------------------------------------------------------- Jacobian, sympy form


def test_jacobian_and_sympy_form_match_pytorch():
    module = _module_1d()
    net = lv.from_torch(module, input_shape=(2, 13))
    x = np.random.default_rng(9).standard_normal((2, 13))
    np.testing.assert_allclose(net.jacobian(x).reshape(3, -1), _jacobians(module, (2, 13), x)[0], rtol=1e-10,
                               atol=1e-10)
    small = lv.Network([lv.Conv1d([[[1, -2]], [[3, 1]]], [1, 0], padding=1), lv.BatchNorm1d([2.0, 1.0], [0.5, 0.0],
                        [0.0, 1.0], [1.0, 4.0], eps=0.0), lv.MaxPool1d(2, stride=1), lv.Upsample(2), lv.AvgPool1d(2),
                        lv.Flatten()], input_shape=(1, 3))
    xs = small.input_symbols()
    point = [0.5, -1.25, 2.0]
    expr = small.sympy()
    import sympy

    values = {x: sympy.Rational(v) for x, v in zip(xs, point)}
    got = [float(e.xreplace(values)) for e in expr]
    np.testing.assert_allclose(got, small(np.array(point).reshape(1, 3)).ravel(), rtol=1e-14)


# --------------------------------------------------------------------------- operators


def _upsample_dense(shape, scales):
    """The upsampling matrix built independently: Kronecker products of identities and columns of ones."""
    m = np.eye(shape[0])
    for n, k in zip(shape[1:], scales):
        m = np.kron(m, np.kron(np.eye(n), np.ones((k, 1))))
    return m


@pytest.mark.parametrize("shape,scales", [((2, 3), (3,)), ((2, 3, 2), (2, 3)), ((1, 1, 4), (1, 2)), ((3, 2), (1,))])
def test_upsample_operator_matrix_norms_and_adjoint(shape, scales):
    u = _upsample_dense(shape, scales)
    layer = lv.Upsample(scales)
    implicit, explicit = linear_op(layer, shape, "implicit"), linear_op(layer, shape, "explicit")
    assert isinstance(implicit, UpsampleOp)
    eye = np.eye(u.shape[1])
    for op in (implicit, explicit):
        np.testing.assert_array_equal(op.matmat(eye), u)
        np.testing.assert_array_equal(op.rmatmat(np.eye(u.shape[0])), u.T)
        np.testing.assert_array_equal(op.abs_operator().matmat(eye), u)
    block = math.prod(scales)
    assert implicit.norm_up("inf") == 1.0 == np.abs(u).sum(axis=1).max()
    assert implicit.norm_up("1") == float(block) == np.abs(u).sum(axis=0).max()
    two = np.linalg.norm(u, 2)
    assert two == pytest.approx(math.sqrt(block), rel=1e-12)
    assert math.sqrt(block) <= implicit.norm_up("2") <= math.sqrt(block) * (1 + 1e-15)
    for p in ("1", "2", "inf"):
        assert explicit.norm_up(p) >= implicit.norm_up(p) * (1 - 1e-12)
    x = np.abs(np.random.default_rng(0).normal(size=(2, u.shape[1])))
    assert np.all(implicit.abs_forward_up(x) >= x @ u.T) and np.all(implicit.abs_backward_up(x @ u.T) >= x @ u.T @ u)


@settings(max_examples=12)
@given(conv1d_networks(max_blocks=2, max_length=10))
def test_every_linear_step_of_1d_networks_is_adjoint_and_both_representations_agree(net):
    rng = np.random.default_rng(0)
    implicit = [s for s in lower(net, "implicit").walk() if s.kind == "linear"]
    explicit = [s for s in lower(net, "explicit").walk() if s.kind == "linear"]
    assert len(implicit) == len(explicit) > 0
    for si, se in zip(implicit, explicit):
        n_out, n_in = si.op.shape
        assert se.op.shape == (n_out, n_in)
        eye = np.eye(n_in)
        np.testing.assert_allclose(si.op.matmat(eye), se.op.matmat(eye), rtol=1e-13, atol=1e-13)
        np.testing.assert_allclose(si.op.abs_operator().matmat(eye), se.op.abs_operator().matmat(eye), rtol=1e-13,
                                   atol=1e-300)
        x, y = rng.normal(size=n_in), rng.normal(size=n_out)
        for op in (si.op, se.op):
            assert np.dot(op.matvec(x), y) == pytest.approx(np.dot(x, op.rmatvec(y)), rel=1e-11, abs=1e-11)


def test_a_1d_layer_is_its_2d_layer_on_c_1_l():
    """The lowering's claim, checked against PyTorch's Conv2d/MaxPool2d on (C, 1, L) tensors."""
    rng = np.random.default_rng(10)
    conv = lv.Conv1d(rng.normal(size=(4, 1, 3)), rng.normal(size=4), stride=2, padding=1, dilation=2, groups=2)
    x = rng.normal(size=(3, 2, 9))
    t2 = torch.nn.functional.conv2d(torch.from_numpy(x[:, :, None]), torch.from_numpy(np.array(conv.weight[:, :, None])),
                                    torch.from_numpy(np.array(conv.bias)), stride=(1, 2), padding=(0, 1), dilation=(1, 2),
                                    groups=2).numpy()[:, :, 0]
    _rel_close(conv.forward(x), t2, 1e-12)
    pool = torch.nn.functional.max_pool2d(torch.from_numpy(x[:, :, None]), (1, 3), (1, 2), (0, 1)).numpy()[:, :, 0]
    np.testing.assert_array_equal(lv.MaxPool1d(3, stride=2, padding=1).forward(x), pool)


# --------------------------------------------------------------------------- soundness against torch autograd


def _soundness_modules():
    torch.manual_seed(11)
    a = nn.Sequential(nn.Conv1d(2, 3, 3, padding=1), nn.ReLU(), nn.MaxPool1d(2), nn.Flatten(), nn.Linear(12, 3))
    b = nn.Sequential(nn.Conv1d(1, 2, 3, stride=2, dilation=2, padding=2), nn.BatchNorm1d(2), nn.Tanh(),
                      nn.Upsample(scale_factor=2), nn.Conv1d(2, 2, 2, groups=2), nn.AvgPool1d(3, stride=2, padding=1),
                      nn.Flatten(), nn.Linear(16, 4), nn.BatchNorm1d(4), nn.ReLU(), nn.Linear(4, 2))
    _randomise_bn(b[1], 12)
    _randomise_bn(b[8], 13)
    c = nn.Sequential(nn.Linear(5, 6), nn.BatchNorm1d(6), nn.GELU(), nn.Linear(6, 3))
    _randomise_bn(c[1], 14)
    d = nn.Sequential(nn.Conv2d(1, 2, 2), nn.ReLU(), nn.Upsample(scale_factor=(2, 3)), nn.MaxPool2d(2, stride=1),
                      nn.Flatten(), nn.Linear(2 * 5 * 8, 2))
    return [(a.double().eval(), (2, 8)), (b.double().eval(), (1, 15)), (c.double().eval(), (5,)),
            (d.double().eval(), (1, 4, 4))]


def _jacobians(module, shape, points):
    """Per-sample Jacobians ``(B, n_out, n_in)`` by torch autograd: the module is in eval mode (samples independent),
    so the Jacobian of the batch sum of the outputs holds every sample's Jacobian."""
    x = torch.from_numpy(np.asarray(points, dtype=np.float64).reshape(-1, *shape))
    j = torch.autograd.functional.jacobian(lambda t: module(t).sum(0), x).numpy()  # (n_out, B, *shape)
    return np.moveaxis(j.reshape(j.shape[0], j.shape[1], -1), 1, 0)


def _jacobian_norm_max(module, shape, p, points):
    order = {"1": 1, "2": 2, "inf": np.inf}[p]
    return max(float(np.linalg.norm(j, order)) for j in _jacobians(module, shape, points))


@pytest.mark.parametrize("case", [0, 1, 2, 3])
def test_every_applicable_method_is_above_sampled_jacobian_norms(case):
    module, shape = _soundness_modules()[case]
    net = lv.from_torch(module, input_shape=shape)
    points = np.random.default_rng(case).standard_normal((40, *shape)) * 2
    methods = [m for m in lv.METHODS if not (case == 1 and m == "k2")]  # K2's vertex search: seconds, even capped
    rows = lv.compare(net, norms=("1", "2", "inf"), methods=methods, options={"lipsdp": {"max_neurons": 40}})
    bounds = [r for r in rows if isinstance(r, lv.Bound)]
    seen = {r.method for r in bounds}
    assert {"kstar", "k1", "k3", "k4", "lipsdp_fast"} <= seen and (case not in (0, 3) or "k2" not in seen)
    if case == 2:  # BatchNorm1d on vectors: the fully connected-only methods refuse it and say why
        why = [r.error for r in rows if not isinstance(r, lv.Bound) and r.method == "kcp"]
        assert why and "BatchNorm1d" in why[0]
    jacobians = _jacobians(module, shape, points)
    for p in ("1", "2", "inf"):
        oracle = max(float(np.linalg.norm(j, {"1": 1, "2": 2, "inf": np.inf}[p])) for j in jacobians)
        for r in bounds:
            if r.norm == p:
                assert r.kind == "upper" and float(r.value) >= oracle * (1 - 1e-9), (r.method, p, r.value, oracle)
    lo = lv.lower_bound(net, "inf", samples=8, steps=2)
    assert float(lo.value) <= min(float(r.value) for r in bounds if r.norm == "inf")


def test_local_bounds_and_refusals_of_exact_methods():
    module, shape = _soundness_modules()[1]
    net = lv.from_torch(module, input_shape=shape)
    box = (-0.1 * np.ones(shape), 0.1 * np.ones(shape))
    local = lv.bound(net, "k3", "inf", domain=box)
    assert float(local.value) <= float(lv.bound(net, "k3", "inf").value) * (1 + 1e-12)
    x = np.zeros(shape)
    assert _jacobian_norm_max(module, shape, "inf", [x]) <= float(local.value)
    with pytest.raises(lv.UnsupportedLayerError, match=r"layer 0 \(Conv1d"):
        lv.exact(net, "inf")


def test_exact_and_symbolic_conv1d_kernels():
    """An exact rational kernel keeps a radius and the bounds cover the exact norm (13/21 for l1 and l∞: every
    output reads both taps of the interior); a symbolic kernel substitutes like Conv2d."""
    from fractions import Fraction

    import sympy

    net = lv.Network([lv.Conv1d([[[Fraction(1, 3), Fraction(-2, 7)]]], [Fraction(1, 5)], padding=1), lv.Flatten()],
                     input_shape=(1, 4))
    assert net.layers[0].is_exact and net.layers[0].weight_radius is not None
    for p in ("1", "inf"):
        for conv in ("implicit", "explicit"):
            assert Fraction(lv.bound(net, "kstar", p, conv=conv).value) >= Fraction(13, 21)
    a = sympy.Symbol("a")
    sym = lv.Network([lv.Conv1d(np.array([[[a, 1]]], dtype=object)), lv.Flatten()], input_shape=(1, 3))
    assert sym.free_symbols == {a}
    np.testing.assert_array_equal(sym.subs({a: 2}).layers[0].weight, [[[2.0, 1.0]]])
    with pytest.raises(lv.ShapeError, match=r"cannot infer the input shape.*\(C, L\)"):
        lv.Network([lv.Conv1d(np.ones((1, 1, 2)))])
