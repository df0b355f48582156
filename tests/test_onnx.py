"""ONNX import/export: round trips, independently built graphs, error cases (lipverify.io.onnx)."""

import importlib.util
import math
from fractions import Fraction

import numpy as np
import onnx
import pytest
import sympy
from hypothesis import given
from onnx import TensorProto, helper, numpy_helper
from onnx.reference import ReferenceEvaluator

import lipverify as lv
from lipverify.cli import main
from lipverify.io.onnx import from_onnx_model, to_onnx_model
from lipverify.strategies import networks

HAS_CONV = importlib.util.find_spec("lipverify.conv") is not None
needs_conv = pytest.mark.skipif(not HAS_CONV, reason="lipverify.conv (CNN layers) is not on this branch yet")
FLOAT, DOUBLE = TensorProto.FLOAT, TensorProto.DOUBLE


def _fc_net():
    rng = np.random.default_rng(0)
    return lv.Network([
        lv.Flatten(), lv.Dense(rng.standard_normal((5, 4)), rng.standard_normal(5)), lv.GELU(),
        lv.Dense(rng.standard_normal((4, 5))), lv.SiLU(),
        lv.Dense(rng.standard_normal((4, 4)), rng.standard_normal(4)), lv.LeakyReLU(0.01),
        lv.Dense(rng.standard_normal((3, 4))), lv.LeakyReLU(0.25), lv.Tanh(),
        lv.Dense(rng.standard_normal((3, 3))), lv.Sigmoid(), lv.Dense(rng.standard_normal((2, 3))), lv.ReLU(),
    ], input_shape=(1, 2, 2))


def _save_model(model, path, full_check=True):
    onnx.checker.check_model(model, full_check=full_check)
    onnx.save(model, path)
    return str(path)


def _model(nodes, inputs, outputs, inits, opset=17):
    graph = helper.make_graph(nodes, "g", inputs, outputs, initializer=[numpy_helper.from_array(v, k) for k, v in inits.items()])
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", opset)], ir_version=8)


# --------------------------------------------------------------------------- round trips


def test_fc_round_trip_gives_identical_forward_and_bounds(tmp_path):
    net = _fc_net()
    path = tmp_path / "net.onnx"
    lv.save(net, path)
    onnx.checker.check_model(onnx.load(path), full_check=True)
    back = lv.load(path)
    assert back.input_shape == (1, 2, 2) and back.output_shape == (2,)
    assert [type(layer) for layer in back.layers] == [type(layer) for layer in net.layers]
    for a, b in zip(net.layers, back.layers):
        if isinstance(a, lv.Dense):
            np.testing.assert_array_equal(a.weight, b.weight)
            np.testing.assert_array_equal(a.bias, b.bias)
            assert a.has_bias == b.has_bias
        if isinstance(a, lv.LeakyReLU):
            assert a.slopes == b.slopes
    x = np.random.default_rng(1).standard_normal((6, 1, 2, 2))
    np.testing.assert_array_equal(back(x), net(x))
    for norm in ("1", "2", "inf"):
        for method in ("kstar", "k1") + (("k3", "k4") if norm != "2" else ()):
            assert lv.bound(back, method, norm=norm).value == lv.bound(net, method, norm=norm).value
    # the exported file computes the same function in an independent evaluator
    ref = ReferenceEvaluator(onnx.load(path)).run(None, {"input": x})[0]
    np.testing.assert_allclose(ref, net(x), rtol=1e-7, atol=1e-9)


@given(networks(max_depth=3))
def test_round_trip_property(net):
    model = to_onnx_model(net)
    onnx.checker.check_model(model, full_check=True)
    back = from_onnx_model(model)
    x = np.random.default_rng(0).uniform(-3, 3, (4, *net.input_shape))
    np.testing.assert_array_equal(back(x), net(x))
    # a LeakyReLU slope such as 1/10 is stored as its nearest float, like every exact weight
    float_slopes = all(sympy.Rational(float(lo)) == lo and sympy.Rational(float(hi)) == hi
                       for lo, hi in (a.slopes for a in net.activations))
    if float_slopes:
        for method, norm in (("kstar", "2"), ("k1", "inf"), ("k4", "1")):
            assert lv.bound(back, method, norm=norm).value == lv.bound(net, method, norm=norm).value


def test_float32_export_rounds_weights_and_loads_as_float32_values(tmp_path):
    net = lv.Network([lv.Dense([[0.1, -0.2], [0.3, 0.4]], [0.5, 0.6]), lv.ReLU(), lv.Dense([[1.0, 1 / 3]])])
    path = tmp_path / "f32.onnx"
    lv.io.save_onnx(net, str(path), dtype="float32")
    back = lv.load(path)
    np.testing.assert_array_equal(back.layers[0].weight, net.layers[0].weight.astype(np.float32).astype(np.float64))
    assert back.layers[2].weight[0, 1] == float(np.float32(1 / 3))


def test_symbolic_weights_cannot_be_exported(tmp_path):
    import sympy

    net = lv.Network([lv.Dense(sympy.Matrix([[sympy.Symbol("a"), 1]]))])
    with pytest.raises(lv.ModelFormatError, match=r"layer 0 \(Dense\(2->1\)\) cannot be exported"):
        lv.save(net, tmp_path / "s.onnx")


# --------------------------------------------------------------------------- independently built graphs


def test_helper_built_gemm_relu_flatten_matmul_add(tmp_path):
    rng = np.random.default_rng(2)
    b1 = rng.standard_normal((6, 5)).astype(np.float32)  # transB = 0: the weight is B^T
    c1 = rng.standard_normal(5).astype(np.float32)
    b2 = rng.standard_normal((5, 3)).astype(np.float32)
    c2 = rng.standard_normal((1, 3)).astype(np.float32)
    nodes = [
        helper.make_node("Flatten", ["x"], ["f"], axis=1, name="flat"),
        helper.make_node("Gemm", ["f", "B1", "C1"], ["g"], alpha=0.5, beta=2.0, name="fc1"),
        helper.make_node("Relu", ["g"], ["r"], name="relu"),
        helper.make_node("Dropout", ["r"], ["d"], name="drop"),
        helper.make_node("Constant", [], ["B2"], value=numpy_helper.from_array(b2)),
        helper.make_node("MatMul", ["d", "B2"], ["m"], name="fc2"),
        helper.make_node("Add", ["m", "C2"], ["y"], name="bias2"),
    ]
    model = _model(nodes, [helper.make_tensor_value_info("x", FLOAT, ["N", 2, 3])],
                   [helper.make_tensor_value_info("y", FLOAT, ["N", 3])], {"B1": b1, "C1": c1, "C2": c2})
    net = lv.load(_save_model(model, tmp_path / "h.onnx"))
    assert net.input_shape == (2, 3)
    assert [type(layer).__name__ for layer in net.layers] == ["Flatten", "Dense", "ReLU", "Dense"]
    # alpha, beta are powers of two times float32 values: the float64 products are exact
    np.testing.assert_array_equal(net.layers[1].weight, 0.5 * b1.T.astype(np.float64))
    np.testing.assert_array_equal(net.layers[1].bias, 2.0 * c1.astype(np.float64))
    x = rng.standard_normal((4, 2, 3))
    h = np.maximum(x.reshape(4, -1) @ (0.5 * b1.astype(np.float64)) + 2.0 * c1.astype(np.float64), 0)
    want = h @ b2.astype(np.float64) + c2.astype(np.float64)
    np.testing.assert_allclose(net(x), want, rtol=1e-13, atol=1e-13)
    ref = ReferenceEvaluator(model).run(None, {"x": x.astype(np.float32)})[0]
    np.testing.assert_allclose(net(x), ref, rtol=1e-5, atol=1e-5)


def test_gemm_scaling_that_is_not_exact_in_float64_keeps_exact_rational_weights():
    b = np.array([[1 / 3, 0.1]])
    model = _model([helper.make_node("Gemm", ["x", "B"], ["y"], alpha=0.1, transB=1, name="g")],
                   [helper.make_tensor_value_info("x", DOUBLE, ["N", 2])],
                   [helper.make_tensor_value_info("y", DOUBLE, ["N", 1])], {"B": b})
    net = lv.io.onnx.from_onnx_model(model)
    dense = net.layers[0]
    alpha = Fraction(float(np.float32(0.1)))
    assert dense.weight_exact is not None
    assert [Fraction(int(e.p), int(e.q)) for e in dense.weight_exact] == [alpha * Fraction(v) for v in b.flat]
    assert dense.weight_radius is not None and np.all(dense.weight_radius > 0)


def _gelu_nodes(x, y, variant):
    """The erf GELU pattern as exporters write it (``variant`` moves the factor 0.5)."""
    common = [helper.make_node("Div", [x, "sqrt2"], ["gd"]), helper.make_node("Erf", ["gd"], ["ge"]),
              helper.make_node("Add", ["one", "ge"], ["ga"])]
    if variant == "torch":
        return common + [helper.make_node("Mul", [x, "ga"], ["gm"]), helper.make_node("Mul", ["gm", "half"], [y])]
    return common + [helper.make_node("Mul", [x, "half"], ["gh"]), helper.make_node("Mul", ["ga", "gh"], [y])]


@pytest.mark.parametrize("variant", ["torch", "half-first"])
def test_gelu_and_silu_patterns_in_float32(tmp_path, variant):
    w = np.random.default_rng(3).standard_normal((3, 3)).astype(np.float32)
    nodes = [helper.make_node("Gemm", ["x", "W"], ["h"], transB=1), *_gelu_nodes("h", "g", variant),
             helper.make_node("Sigmoid", ["g"], ["s"]), helper.make_node("Mul", ["s", "g"], ["y"])]
    consts = {"W": w, "sqrt2": np.array(math.sqrt(2), np.float32), "one": np.array(1, np.float32),
              "half": np.array(0.5, np.float32)}
    model = _model(nodes, [helper.make_tensor_value_info("x", FLOAT, ["N", 3])],
                   [helper.make_tensor_value_info("y", FLOAT, ["N", 3])], consts)
    net = lv.load(_save_model(model, tmp_path / "p.onnx"))
    assert [type(layer) for layer in net.layers] == [lv.Dense, lv.GELU, lv.SiLU]
    x = np.random.default_rng(4).standard_normal((5, 3))
    ref = ReferenceEvaluator(model).run(None, {"x": x.astype(np.float32)})[0]
    np.testing.assert_allclose(net(x), ref, rtol=1e-5, atol=1e-6)


def test_gelu_op_of_opset_20():
    model = _model([helper.make_node("Gelu", ["x"], ["y"], name="act")],
                   [helper.make_tensor_value_info("x", FLOAT, ["N", 2])],
                   [helper.make_tensor_value_info("y", FLOAT, ["N", 2])], {}, opset=20)
    net = lv.io.onnx.from_onnx_model(model)
    assert [type(layer) for layer in net.layers] == [lv.GELU]
    model.graph.node[0].attribute.append(helper.make_attribute("approximate", "tanh"))
    with pytest.raises(lv.ModelFormatError, match=r"node 0 'act' \(Gelu\): Gelu with approximate='tanh'"):
        lv.io.onnx.from_onnx_model(model)


def _conv_model(pads=(1, 1, 1, 1), strides=(1, 1)):
    rng = np.random.default_rng(5)
    k = rng.standard_normal((4, 2, 3, 3)).astype(np.float32)
    kb = rng.standard_normal(4).astype(np.float32)
    gamma, beta = rng.uniform(0.5, 2, 4).astype(np.float32), rng.standard_normal(4).astype(np.float32)
    mean, var = rng.standard_normal(4).astype(np.float32), rng.uniform(0.5, 2, 4).astype(np.float32)
    conv_out = [(6 + pads[i] + pads[i + 2] - 3) // strides[i] + 1 for i in (0, 1)]
    n_flat = 4 * ((conv_out[0] - 2) // 2 + 1) * ((conv_out[1] - 2) // 2 + 1)
    w = rng.standard_normal((3, n_flat)).astype(np.float32)
    nodes = [
        helper.make_node("Conv", ["x", "K", "KB"], ["c"], kernel_shape=[3, 3], pads=list(pads), strides=list(strides),
                         name="conv"),
        helper.make_node("BatchNormalization", ["c", "gamma", "beta", "mean", "var"], ["b"], epsilon=1e-3, name="bn"),
        helper.make_node("Relu", ["b"], ["r"]),
        helper.make_node("MaxPool", ["r"], ["m"], kernel_shape=[2, 2], strides=[2, 2], name="pool"),
        helper.make_node("AveragePool", ["m"], ["a"], kernel_shape=[1, 1], name="avg"),
        helper.make_node("Flatten", ["a"], ["f"]),
        helper.make_node("Gemm", ["f", "W"], ["y"], transB=1, name="fc"),
    ]
    return _model(nodes, [helper.make_tensor_value_info("x", FLOAT, ["N", 2, 6, 6])],
                  [helper.make_tensor_value_info("y", FLOAT, ["N", 3])],
                  {"K": k, "KB": kb, "gamma": gamma, "beta": beta, "mean": mean, "var": var, "W": w})


@needs_conv
def test_helper_built_conv_bn_maxpool_matches_the_reference_evaluator(tmp_path):
    from lipverify import conv

    model = _conv_model()
    net = lv.load(_save_model(model, tmp_path / "c.onnx"))
    assert [type(layer) for layer in net.layers] == [conv.Conv2d, conv.BatchNorm2d, lv.ReLU, conv.MaxPool2d,
                                                      conv.AvgPool2d, lv.Flatten, lv.Dense]
    x = np.random.default_rng(6).standard_normal((3, 2, 6, 6))
    ref = ReferenceEvaluator(model).run(None, {"x": x.astype(np.float32)})[0]
    np.testing.assert_allclose(net(x), ref, rtol=1e-4, atol=1e-4)
    # and the conv net round-trips through the exporter
    path = tmp_path / "c2.onnx"
    lv.save(net, path)
    back = lv.load(path)
    np.testing.assert_array_equal(back(x), net(x))


@needs_conv
def test_conv_strides_and_asymmetric_padding(tmp_path):
    net = lv.io.onnx.from_onnx_model(_conv_model(pads=(0, 0, 0, 0), strides=(2, 2)))
    assert net.shapes[1] == (4, 2, 2)
    # different strides per axis: passed as a tuple; a layer that takes only ints gives an error naming the node
    try:
        net = lv.io.onnx.from_onnx_model(_conv_model(pads=(1, 0, 1, 0), strides=(2, 1)))
    except lv.ModelFormatError as exc:
        assert "node 0 'conv' (Conv): Conv2d(array(4, 2, 3, 3), array(4,), stride=(2, 1), padding=(1, 0)" in str(exc)
    else:
        assert net.shapes[1] == (4, 3, 4)
        x = np.random.default_rng(7).standard_normal((2, 2, 6, 6))
        model = _conv_model(pads=(1, 0, 1, 0), strides=(2, 1))
        ref = ReferenceEvaluator(model).run(None, {"x": x.astype(np.float32)})[0]
        np.testing.assert_allclose(net(x), ref, rtol=1e-4, atol=1e-4)
    with pytest.raises(lv.ModelFormatError, match=r"node 0 'conv' \(Conv\): asymmetric padding \(0, 1, 1, 0\)"):
        lv.io.onnx.from_onnx_model(_conv_model(pads=(0, 1, 1, 0)))


# --------------------------------------------------------------------------- errors


def test_unsupported_op_names_the_node_and_lists_what_is_supported(tmp_path, capsys):
    model = _model([helper.make_node("Relu", ["x"], ["r"], name="act"),
                    helper.make_node("Softsign", ["r"], ["y"], name="soft")],
                   [helper.make_tensor_value_info("x", FLOAT, ["N", 2])],
                   [helper.make_tensor_value_info("y", FLOAT, ["N", 2])], {})
    path = _save_model(model, tmp_path / "soft.onnx")
    with pytest.raises(lv.ModelFormatError, match=r"soft\.onnx: node 1 'soft' \(Softsign\): unsupported operator "
                                                  r"Softsign; supported: Gemm, MatMul"):
        lv.load(path)
    assert main(["compare", path]) == 2
    err = capsys.readouterr().err
    assert "node 1 'soft' (Softsign)" in err and "Traceback" not in err


def test_branching_graph_is_refused(tmp_path, capsys):
    """Branches that rejoin at a Mul (not an Add: no residual block) are refused; residual blocks: test_residual_io."""
    w = np.eye(2, dtype=np.float32)
    nodes = [helper.make_node("Gemm", ["x", "W"], ["h"], name="fc"),
             helper.make_node("Relu", ["h"], ["r"], name="relu"),
             helper.make_node("Mul", ["h", "r"], ["y"], name="gate")]
    model = _model(nodes, [helper.make_tensor_value_info("x", FLOAT, ["N", 2])],
                   [helper.make_tensor_value_info("y", FLOAT, ["N", 2])], {"W": w})
    path = _save_model(model, tmp_path / "res.onnx")
    with pytest.raises(lv.ModelFormatError, match=r"tensor 'h' branches into node 1 'relu' \(Relu\), node 2 "
                                                  r"'gate' \(Mul\); only a single chain, residual blocks"):
        lv.load(path)
    assert main(["bound", path]) == 2
    assert "'gate' (Mul)" in capsys.readouterr().err


def test_corrupt_and_truncated_files(tmp_path, capsys):
    good = tmp_path / "good.onnx"
    lv.save(_fc_net(), good)
    data = good.read_bytes()
    for name, content in (("garbage.onnx", b"\x00\xffnot a protobuf\x12\x99"), ("empty.onnx", b""),
                          ("cut.onnx", data[: len(data) // 2]), ("cut2.onnx", data[:-7])):
        path = tmp_path / name
        path.write_bytes(content)
        with pytest.raises(lv.ModelFormatError, match=rf"{name}: not a (readable|valid) ONNX model"):
            lv.load(path)
        assert main(["compare", str(path), "--json"]) == 2
        err = capsys.readouterr().err
        assert name in err and "Traceback" not in err


def test_input_shape_errors(tmp_path):
    w = np.ones((3, 4), np.float32)
    model = _model([helper.make_node("Gemm", ["x", "W"], ["y"], transB=1, name="fc")],
                   [helper.make_tensor_value_info("x", FLOAT, ["N", 5])],
                   [helper.make_tensor_value_info("y", FLOAT, ["N", 3])], {"W": w})
    path = _save_model(model, tmp_path / "shape.onnx", full_check=False)  # valid file, inconsistent shapes
    with pytest.raises(lv.ModelFormatError, match=r"node 0 'fc' \(Gemm\): layer 0 \(Dense\(4->3\)\) does not fit the "
                                                  r"input shape \(5,\)"):
        lv.load(path)
    # a dynamic input needs input_shape, which must agree with the static dimensions
    model.graph.input[0].type.tensor_type.shape.dim[1].dim_param = "F"
    path = _save_model(model, tmp_path / "dyn.onnx")
    with pytest.raises(lv.ModelFormatError, match=r"dynamic shape \('\?',\).*pass input_shape"):
        lv.load(path)
    assert lv.load(path, input_shape=(4,)).input_shape == (4,)
    assert main(["bound", path, "--input-shape", "4", "--json", "--method", "k4"]) == 0
    with pytest.raises(lv.ModelFormatError, match=r"given input_shape \(4, 1\) does not match"):
        lv.load(path, input_shape=(4, 1))


def test_view_flatten_of_a_static_batch_is_folded():
    """``x.view(x.size(0), -1)`` exported with a fixed batch size: Shape -> Gather -> Unsqueeze -> Concat -> Reshape."""
    w = np.arange(12, dtype=np.float32).reshape(2, 6)
    nodes = [helper.make_node("Shape", ["x"], ["s"]), helper.make_node("Gather", ["s", "zero"], ["n"], axis=0),
             helper.make_node("Unsqueeze", ["n", "axes"], ["n1"]), helper.make_node("Concat", ["n1", "minus1"], ["t"], axis=0),
             helper.make_node("Reshape", ["x", "t"], ["f"]), helper.make_node("Gemm", ["f", "W"], ["y"], transB=1)]
    consts = {"W": w, "zero": np.array(0, np.int64), "axes": np.array([0], np.int64), "minus1": np.array([-1], np.int64)}
    model = _model(nodes, [helper.make_tensor_value_info("x", FLOAT, [1, 2, 3])],
                   [helper.make_tensor_value_info("y", FLOAT, [1, 2])], consts)
    net = from_onnx_model(model)
    assert [type(layer) for layer in net.layers] == [lv.Flatten, lv.Dense] and net.input_shape == (2, 3)
    x = np.random.default_rng(8).standard_normal((1, 2, 3))
    np.testing.assert_allclose(net(x), ReferenceEvaluator(model).run(None, {"x": x.astype(np.float32)})[0], rtol=1e-5)
    model.graph.input[0].type.tensor_type.shape.dim[0].dim_param = "N"  # a dynamic batch: the shape is not constant
    with pytest.raises(lv.ModelFormatError, match=r"tensor 'x' branches into node 0 '\(unnamed\)' \(Shape\)"):
        from_onnx_model(model)


def test_nan_weights_and_unknown_domains_name_the_node():
    w = np.array([[1.0, np.nan]], np.float32)
    model = _model([helper.make_node("Gemm", ["x", "W"], ["y"], transB=1, name="fc")],
                   [helper.make_tensor_value_info("x", FLOAT, ["N", 2])],
                   [helper.make_tensor_value_info("y", FLOAT, ["N", 1])], {"W": w})
    with pytest.raises(lv.ModelFormatError, match=r"node 0 'fc' \(Gemm\): cannot convert: Dense weight: entry \(0, 1\) "
                                                  r"is nan"):
        lv.io.onnx.from_onnx_model(model)
    model.graph.node[0].domain = "com.example"
    with pytest.raises(lv.ModelFormatError, match=r"node 0 'fc' \(Gemm\): operator domain 'com.example'"):
        lv.io.onnx.from_onnx_model(model)


def test_reshape_that_does_not_flatten_and_unused_extra_outputs():
    model = _model([helper.make_node("Reshape", ["x", "s"], ["y"], name="rs")],
                   [helper.make_tensor_value_info("x", FLOAT, ["N", 4])],
                   [helper.make_tensor_value_info("y", FLOAT, ["N", 2, 2])], {"s": np.array([-1, 2, 2])})
    with pytest.raises(lv.ModelFormatError, match=r"node 0 'rs' \(Reshape\): Reshape to \[-1, 2, 2\]"):
        lv.io.onnx.from_onnx_model(model)
    flat = _model([helper.make_node("Reshape", ["x", "s"], ["y"], name="rs")],
                  [helper.make_tensor_value_info("x", FLOAT, ["N", 2, 2])],
                  [helper.make_tensor_value_info("y", FLOAT, ["N", 4])], {"s": np.array([0, -1])})
    assert [type(layer) for layer in lv.io.onnx.from_onnx_model(flat).layers] == [lv.Flatten]
    drop = _model([helper.make_node("Dropout", ["x"], ["y", "mask"], name="dr")],
                  [helper.make_tensor_value_info("x", FLOAT, ["N", 2])],
                  [helper.make_tensor_value_info("y", FLOAT, ["N", 2]),
                   helper.make_tensor_value_info("mask", TensorProto.BOOL, ["N", 2])], {})
    with pytest.raises(lv.ModelFormatError, match="the graph has 2 outputs"):
        lv.io.onnx.from_onnx_model(drop)
