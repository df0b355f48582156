"""Conv layers: forward passes against direct loops, shapes and errors, Jacobians, sympy forms."""

from fractions import Fraction

import numpy as np
import pytest
import sympy

import lipverify as lv
from lipverify.conv import ops


def direct_conv(x, k, b, stride, padding, dilation, groups):
    """The textbook definition, one output entry at a time."""
    n, c_in, h, w = x.shape
    c_out, cg, kh, kw = k.shape
    ho = (h + 2 * padding - dilation * (kh - 1) - 1) // stride + 1
    wo = (w + 2 * padding - dilation * (kw - 1) - 1) // stride + 1
    og = c_out // groups
    out = np.zeros((n, c_out, ho, wo))
    for s in range(n):
        for o in range(c_out):
            g = o // og
            for y in range(ho):
                for z in range(wo):
                    acc = 0.0 if b is None else b[o]
                    for c in range(cg):
                        for i in range(kh):
                            for j in range(kw):
                                r = y * stride + i * dilation - padding
                                q = z * stride + j * dilation - padding
                                if 0 <= r < h and 0 <= q < w:
                                    acc += k[o, c, i, j] * x[s, g * cg + c, r, q]
                    out[s, o, y, z] = acc
    return out


def direct_pool(x, k, stride, padding, op):
    n, c, h, w = x.shape
    ho = (h + 2 * padding - k) // stride + 1
    wo = (w + 2 * padding - k) // stride + 1
    out = np.zeros((n, c, ho, wo))
    for s in range(n):
        for ch in range(c):
            for y in range(ho):
                for z in range(wo):
                    vals = []
                    for i in range(k):
                        for j in range(k):
                            r, q = y * stride + i - padding, z * stride + j - padding
                            inside = 0 <= r < h and 0 <= q < w
                            vals.append(x[s, ch, r, q] if inside else None)
                    if op == "max":
                        out[s, ch, y, z] = max(v for v in vals if v is not None)
                    else:
                        out[s, ch, y, z] = sum(v for v in vals if v is not None) / (k * k)
    return out


CONV_CASES = [
    # (c_in, c_out, kernel, stride, padding, dilation, groups, h, w)
    (1, 1, 3, 1, 0, 1, 1, 5, 5),
    (2, 3, 3, 2, 1, 1, 1, 6, 7),
    (4, 2, 2, 1, 2, 2, 2, 5, 4),
    (3, 3, 1, 3, 0, 1, 3, 7, 7),
    (2, 4, 3, 2, 1, 2, 1, 8, 6),
]


@pytest.mark.parametrize("case", CONV_CASES)
def test_conv_forward_matches_direct_loop(case):
    c_in, c_out, k, stride, padding, dilation, groups, h, w = case
    rng = np.random.default_rng(sum(case))
    kernel = rng.normal(size=(c_out, c_in // groups, k, k))
    bias = rng.normal(size=c_out)
    x = rng.normal(size=(2, c_in, h, w))
    layer = lv.Conv2d(kernel, bias, stride=stride, padding=padding, dilation=dilation, groups=groups)
    expected = direct_conv(x, kernel, bias, stride, padding, dilation, groups)
    got = layer.forward(x)
    assert got.shape == expected.shape == (2, *layer.output_shape((c_in, h, w)))
    np.testing.assert_allclose(got, expected, rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("case", CONV_CASES)
def test_conv_transpose_is_the_adjoint(case):
    c_in, c_out, k, stride, padding, dilation, groups, h, w = case
    rng = np.random.default_rng(sum(case) + 1)
    kernel = rng.normal(size=(c_out, c_in // groups, k, k))
    layer = lv.Conv2d(kernel, stride=stride, padding=padding, dilation=dilation, groups=groups)
    x = rng.normal(size=(3, c_in, h, w))
    y = rng.normal(size=(3, *layer.output_shape((c_in, h, w))))
    lhs = np.sum(layer.apply_linear(x) * y, axis=(1, 2, 3))
    rhs = np.sum(x * layer.apply_transpose(y, (h, w)), axis=(1, 2, 3))
    np.testing.assert_allclose(lhs, rhs, rtol=1e-10, atol=1e-10)


@pytest.mark.parametrize("k,stride,padding", [(2, 2, 0), (3, 1, 1), (3, 2, 1), (2, 1, 1), (1, 1, 0)])
def test_pools_match_direct_loop(k, stride, padding):
    x = np.random.default_rng(k * 10 + stride).normal(size=(2, 2, 5, 6))
    np.testing.assert_array_equal(lv.MaxPool2d(k, stride, padding).forward(x), direct_pool(x, k, stride, padding, "max"))
    np.testing.assert_allclose(lv.AvgPool2d(k, stride, padding).forward(x), direct_pool(x, k, stride, padding, "avg"),
                               rtol=1e-14)


def test_pool_default_stride_is_kernel_and_max_overlap():
    assert lv.MaxPool2d(3).stride == (3, 3)
    assert ops.max_overlap((1, 6, 6), (3, 3), (1, 1), (0, 0)) == 9
    assert ops.max_overlap((1, 6, 6), (2, 2), (2, 2), (0, 0)) == 1
    assert ops.max_overlap((1, 7, 7), (3, 3), (2, 2), (1, 1)) == 4


def test_batchnorm_is_the_affine_map():
    rng = np.random.default_rng(3)
    g, b, m, v = rng.normal(size=3), rng.normal(size=3), rng.normal(size=3), rng.uniform(0.5, 2, 3)
    bn = lv.BatchNorm2d(g, b, m, v, eps=1e-3)
    x = rng.normal(size=(2, 3, 4, 4))
    expected = g[None, :, None, None] * (x - m[None, :, None, None]) / np.sqrt(v + 1e-3)[None, :, None, None] \
        + b[None, :, None, None]
    np.testing.assert_allclose(bn.forward(x), expected, rtol=1e-13, atol=1e-13)
    assert np.all(bn.scale_radius >= 4 * 2.0**-53 * np.abs(bn.scale))


def test_shape_errors_name_layer_index_type_and_shapes():
    k = np.ones((4, 3, 3, 3))
    with pytest.raises(lv.ShapeError, match=r"layer 2 \(Conv2d\(3->4.*\(4, 6, 6\).*3 input channels"):
        lv.Network([lv.Conv2d(k, padding=1), lv.ReLU(), lv.Conv2d(k)], input_shape=(3, 6, 6))
    with pytest.raises(lv.ShapeError, match=r"layer 0 \(Conv2d.*\(12,\).*\(C, H, W\)"):
        lv.Network([lv.Conv2d(k)], input_shape=(12,))
    with pytest.raises(lv.ShapeError, match=r"layer 1 \(MaxPool2d.*does not fit the 1x1 input"):
        lv.Network([lv.Conv2d(k), lv.MaxPool2d(2)], input_shape=(3, 3, 3))
    with pytest.raises(lv.ShapeError, match=r"layer 1 \(Dense.*insert Flatten"):
        lv.Network([lv.Conv2d(k), lv.Dense(np.ones((2, 4)))], input_shape=(3, 3, 3))
    with pytest.raises(lv.ShapeError, match=r"cannot infer the input shape"):
        lv.Network([lv.Conv2d(k)])


def test_invalid_parameters_are_refused():
    with pytest.raises(ValueError, match="NaN and inf"):
        lv.Conv2d(np.full((1, 1, 2, 2), np.nan))
    with pytest.raises(lv.ShapeError, match=r"\(C_out, C_in/groups, kh, kw\)"):
        lv.Conv2d(np.ones((2, 2, 2)))
    with pytest.raises(lv.ShapeError, match="bias of shape"):
        lv.Conv2d(np.ones((2, 1, 2, 2)), np.ones(3))
    with pytest.raises(ValueError, match="groups"):
        lv.Conv2d(np.ones((3, 1, 2, 2)), groups=2)
    with pytest.raises(ValueError, match="stride must be >= 1"):
        lv.Conv2d(np.ones((1, 1, 2, 2)), stride=0)
    with pytest.raises(ValueError, match="padding .* at most half"):
        lv.MaxPool2d(2, padding=2)
    with pytest.raises(ValueError, match="var \\+ eps"):
        lv.BatchNorm2d([1.0], [0.0], [0.0], [0.0], eps=0.0)


def _fd_jacobian(net, x, eps=1e-6):
    cols = []
    for e in np.eye(x.size):
        d = e.reshape(x.shape) * eps
        cols.append((net(x + d) - net(x - d)) / (2 * eps))
    return np.stack(cols, axis=1)


def test_jacobian_matches_finite_differences_smooth():
    rng = np.random.default_rng(5)
    net = lv.Network([lv.Conv2d(rng.normal(size=(3, 2, 3, 3)), rng.normal(size=3), stride=2, padding=1, dilation=1),
                      lv.BatchNorm2d(rng.normal(size=3), rng.normal(size=3), rng.normal(size=3), rng.uniform(0.5, 2, 3)),
                      lv.Tanh(), lv.AvgPool2d(2, stride=1, padding=1),
                      lv.Conv2d(rng.normal(size=(3, 1, 2, 2)), groups=3), lv.Sigmoid(), lv.Flatten(),
                      lv.Dense(rng.normal(size=(2, 3 * 3 * 3)))], input_shape=(2, 6, 6))
    x = rng.normal(size=net.input_shape)
    np.testing.assert_allclose(net.jacobian(x), _fd_jacobian(net, x), rtol=1e-6, atol=1e-7)


def test_jacobian_matches_finite_differences_maxpool_relu():
    rng = np.random.default_rng(6)
    net = lv.Network([lv.Conv2d(rng.normal(size=(2, 1, 2, 2)), rng.normal(size=2), padding=1), lv.ReLU(),
                      lv.MaxPool2d(3, stride=2, padding=1), lv.Flatten(), lv.Dense(rng.normal(size=(2, 2 * 3 * 3)))],
                     input_shape=(1, 5, 5))
    x = rng.normal(size=net.input_shape)  # a generic point: no ties, no kinks within eps
    np.testing.assert_allclose(net.jacobian(x), _fd_jacobian(net, x), rtol=1e-6, atol=1e-7)
    batch = rng.normal(size=(3, *net.input_shape))
    np.testing.assert_allclose(net.jacobian(batch)[1], net.jacobian(batch[1]))


def test_sympy_form_evaluates_to_the_forward_pass():
    net = lv.Network([lv.Conv2d([[[[1, Fraction(-1, 3)], [2, 0]]], [[[0, 1], [Fraction(1, 2), 1]]]], [1, -1], padding=1),
                      lv.ReLU(), lv.MaxPool2d(2, stride=1), lv.AvgPool2d(2), lv.Flatten(), lv.Dense([[1, -2]])],
                     input_shape=(1, 2, 2))
    assert net.layers[0].is_exact and net.layers[0].weight_radius is not None  # -1/3 is not a float
    exprs = net.sympy()
    xs = net.input_symbols()
    point = [0.5, -1.25, 2.0, 0.75]
    value = exprs[0].subs(dict(zip(xs, [sympy.Rational(p) for p in point])))
    assert value.is_Rational
    assert float(value) == pytest.approx(float(net(np.array(point).reshape(1, 2, 2))[0]), rel=1e-14)


def test_sympy_batchnorm_and_symbolic_kernel():
    a = sympy.Symbol("a", real=True)
    net = lv.Network([lv.Conv2d([[[[a]]]]), lv.BatchNorm2d([2.0], [1.0], [0.5], [3.0], eps=1.0), lv.Flatten()],
                     input_shape=(1, 1, 1))
    x0 = net.input_symbols()[0]
    assert sympy.simplify(net.sympy()[0] - (a * x0 - sympy.Rational(1, 2)) - 1) == 0
    concrete = net.subs({a: 3})
    assert float(concrete(np.ones((1, 1, 1)))[0]) == pytest.approx(3.5)
    with pytest.raises(lv.LipVerifyError, match="symbolic parameters"):
        lv.bound(net, "k3", "inf")


def test_forward_matches_torch_if_installed():
    torch = pytest.importorskip("torch")
    rng = np.random.default_rng(7)
    k, b = rng.normal(size=(4, 2, 3, 3)), rng.normal(size=4)
    x = rng.normal(size=(2, 4, 7, 6))
    layer = lv.Conv2d(k, b, stride=2, padding=1, dilation=2, groups=2)
    ref = torch.nn.functional.conv2d(torch.tensor(x), torch.tensor(k), torch.tensor(b), stride=2, padding=1, dilation=2,
                                     groups=2).numpy()
    np.testing.assert_allclose(layer.forward(x), ref, rtol=1e-12, atol=1e-12)
    ref = torch.nn.functional.max_pool2d(torch.tensor(x), 3, 2, 1).numpy()
    np.testing.assert_array_equal(lv.MaxPool2d(3, 2, 1).forward(x), ref)
