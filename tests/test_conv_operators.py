"""The representations of one linear layer agree: sparse matrix, operator, |kernel| operator; adjointness."""

from fractions import Fraction

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import lipverify as lv
from lipverify.ir.graph import linear_op, lower
from lipverify.ir.operators import ChannelScaleOp, ConvOp, DenseOp, SparseOp
from lipverify.ir.pooling import SparsePool, TensorPool
from lipverify.ir.views import conv_matrix
from lipverify.rigorous import bound_nonneg
from lipverify.strategies import conv_networks, residual_networks

LAYERS = [
    (lv.Conv2d(np.random.default_rng(0).normal(size=(3, 2, 3, 3)), stride=2, padding=1), (2, 7, 6)),
    (lv.Conv2d(np.random.default_rng(1).normal(size=(4, 1, 2, 3)), padding=(1, 2), dilation=2, groups=2), (2, 6, 6)),
    (lv.Conv2d([[[[1, Fraction(1, 3)], [Fraction(-2, 7), 5]]]]), (1, 4, 4)),  # exact kernel with a radius
    (lv.AvgPool2d(3, stride=2, padding=1), (2, 5, 5)),
    (lv.AvgPool2d(2), (1, 4, 4)),
    (lv.BatchNorm2d([1.5, -2.0], [0.0, 1.0], [0.3, -0.2], [0.7, 2.0]), (2, 3, 3)),
    (lv.Dense(np.random.default_rng(2).normal(size=(5, 4))), (4,)),
]


def _representations(layer, shape):
    return linear_op(layer, shape, "explicit"), linear_op(layer, shape, "implicit")


@pytest.mark.parametrize("layer,shape", LAYERS)
def test_adjoint_identity_for_every_representation(layer, shape):
    rng = np.random.default_rng(11)
    for op in _representations(layer, shape):
        n_out, n_in = op.shape
        x, y = rng.normal(size=n_in), rng.normal(size=n_out)
        assert op.dtype == np.float64
        assert np.dot(op.matvec(x), y) == pytest.approx(np.dot(x, op.rmatvec(y)), rel=1e-12, abs=1e-12)
        assert np.dot(op.H.matvec(y), x) == pytest.approx(np.dot(y, op.matvec(x)), rel=1e-12, abs=1e-12)
        a = op.abs_operator()
        assert np.dot(a.matvec(x), y) == pytest.approx(np.dot(x, a.rmatvec(y)), rel=1e-12, abs=1e-12)
        xb = rng.normal(size=(n_in, 3))
        np.testing.assert_allclose(op.matmat(xb), np.stack([op.matvec(c) for c in xb.T], axis=1), rtol=1e-13, atol=1e-13)


@pytest.mark.parametrize("layer,shape", LAYERS)
def test_sparse_matrix_operator_and_forward_agree(layer, shape):
    explicit, implicit = _representations(layer, shape)
    n_in = explicit.shape[1]
    dense_from_op = implicit.matmat(np.eye(n_in))
    np.testing.assert_allclose(explicit.matmat(np.eye(n_in)), dense_from_op, rtol=1e-14, atol=1e-15)
    # the operator is the bias-free layer: forward(x) - forward(0)
    x = np.random.default_rng(3).normal(size=shape)
    zero = np.zeros((1, *shape))
    lin = (layer.forward(x[None]) - layer.forward(zero)).ravel()
    np.testing.assert_allclose(implicit.matvec(x.ravel()), lin, rtol=1e-12, atol=1e-12)
    # |W| + R: the same in both representations; R > 0 exactly where the floats are inexact
    np.testing.assert_allclose(explicit.abs_operator().matmat(np.eye(n_in)), implicit.abs_operator().matmat(np.eye(n_in)),
                               rtol=1e-14, atol=1e-300)
    assert explicit.has_radius == implicit.has_radius


def test_radius_of_an_exact_kernel_covers_the_exact_matrix():
    layer, shape = LAYERS[2]
    explicit, implicit = _representations(layer, shape)
    assert implicit.has_radius
    exact = np.array([[Fraction(1), Fraction(1, 3)], [Fraction(-2, 7), Fraction(5)]], dtype=object)
    m, r = conv_matrix(layer, shape, layer.weight_radius)
    w = np.asarray(layer.weight)[0, 0]
    assert all(abs(Fraction(float(w[i, j])) - exact[i, j]) <= Fraction(float(layer.weight_radius[0, 0, i, j]))
               for i in range(2) for j in range(2))
    assert r.nnz == m.nnz and np.all(r.data >= 0)


@pytest.mark.parametrize("layer,shape", LAYERS)
def test_rigorous_passes_dominate_exact_rational_products(layer, shape):
    """``abs_forward_up(x)`` >= (|W| + R) x computed exactly in rationals from the float matrices."""
    explicit, implicit = _representations(layer, shape)
    absm = explicit.abs_matrix.toarray() if isinstance(explicit, SparseOp) else explicit.abs_weight
    n_out, n_in = explicit.shape
    x = np.random.default_rng(4).uniform(0, 3, size=n_in)
    exact_fwd = [sum((Fraction(float(a)) * Fraction(float(v)) for a, v in zip(row, x)), Fraction(0)) for row in absm]
    exact_bwd = [sum((Fraction(float(a)) * Fraction(float(v)) for a, v in zip(col, np.ones(n_out))), Fraction(0))
                 for col in absm.T]
    for op in (explicit, implicit):
        fwd = op.abs_forward_up(x[None])[0]
        bwd = op.abs_backward_up(np.ones((1, n_out)))[0]
        assert all(Fraction(float(f)) >= e for f, e in zip(fwd, exact_fwd))
        assert all(Fraction(float(f)) >= e for f, e in zip(bwd, exact_bwd))


def test_bound_nonneg_covers_the_worst_rounding():
    # 1000 rounded products 0.1 * 0.1 summed in float: the bound must stay above their exact rational sum
    vals = np.full(1000, 0.1)
    c = np.array([np.sum(vals * vals)])
    exact = sum(Fraction(0.1) * Fraction(0.1) for _ in range(1000))
    assert Fraction(float(bound_nonneg(c, 1000)[0])) >= exact
    tiny = np.array([5e-324])  # underflow: the absolute term must cover it
    assert bound_nonneg(tiny, 4)[0] > 5e-324


@pytest.mark.parametrize("k,stride,padding,shape", [(2, 2, 0, (2, 4, 5)), (3, 1, 1, (1, 4, 4)), (3, 2, 1, (2, 5, 6))])
def test_pool_representations_agree(k, stride, padding, shape):
    layer = lv.MaxPool2d(k, stride, padding)
    sparse, tensor = SparsePool(layer, shape), TensorPool(layer, shape)
    v = np.random.default_rng(5).normal(size=(3, sparse.n_in))
    u = np.random.default_rng(6).uniform(size=(3, sparse.n_out))
    np.testing.assert_array_equal(sparse.window_max(v), tensor.window_max(v))
    np.testing.assert_array_equal(sparse.window_min(v), -tensor.window_max(-v))
    np.testing.assert_allclose(sparse.window_sum_t(u), tensor.window_sum_t(u), rtol=1e-15)
    np.testing.assert_array_equal(sparse.window_max(v), layer.forward(v.reshape(3, *shape)).reshape(3, -1))
    assert sparse.overlap == tensor.overlap == layer.max_overlap(shape)
    # adjointness of the window matrix S in its two forms
    x = np.random.default_rng(7).normal(size=sparse.n_in)
    y = np.random.default_rng(8).normal(size=sparse.n_out)
    assert np.dot(sparse.matrix @ x, y) == pytest.approx(np.dot(x, tensor.window_sum_t(y[None])[0]), rel=1e-12)


def test_channel_scale_and_dense_ops():
    op = ChannelScaleOp(np.array([2.0, -3.0]), np.array([0.0, 1e-16]), (2, 2, 1))
    assert op.norm_up("inf") >= 3.0 and op.norm_up("2") >= 3.0
    np.testing.assert_array_equal(op.sparse().matrix.diagonal(), [2, 2, -3, -3])
    d = DenseOp(np.array([[3.0, -4.0]]))
    assert d.norm_up("2") >= 5.0 and d.norm_up("2") <= 5.0 * (1 + 1e-8)
    assert d.norm_up("inf") >= 7.0 and d.norm_up("1") >= 4.0


def test_l2_bounds_of_an_operator():
    layer, shape = LAYERS[0]
    explicit, implicit = _representations(layer, shape)
    true = np.linalg.norm(explicit.matrix.toarray(), 2)
    absnorm = np.linalg.norm(np.abs(explicit.matrix.toarray()), 2)
    assert true <= explicit.norm_up("2") <= true * (1 + 1e-6)
    assert absnorm <= implicit.norm_up("2") <= float(np.sqrt(implicit.norm_up("1") * implicit.norm_up("inf"))) * (1 + 1e-12)
    assert isinstance(implicit, ConvOp)


@pytest.mark.parametrize("layer,shape", LAYERS[:5])
def test_implicit_l2_bound_of_a_convolution_is_sound_and_not_worse_than_the_majorant(layer, shape):
    from lipverify.ir.operators import BatchedOp

    explicit, implicit = _representations(layer, shape)
    true = np.linalg.norm(explicit.matrix.toarray(), 2)
    value = implicit.norm_up("2")
    assert true <= value <= BatchedOp.l2_up(implicit) * (1 + 1e-12)
    if isinstance(layer, lv.Conv2d) and layer.groups == 1:
        co, cg, kh, kw = layer.kernel_shape
        kmat = layer.weight.reshape(co, -1)
        assert value <= np.linalg.norm(kmat, 2) * np.sqrt(implicit.max_overlap()) * (1 + 1e-6)


def test_max_overlap_of_a_convolution():
    conv = lv.Conv2d(np.ones((1, 1, 3, 3)), padding=1)
    assert linear_op(conv, (1, 5, 5), "implicit").max_overlap() == 9
    conv = lv.Conv2d(np.ones((1, 1, 3, 3)), stride=2)
    assert linear_op(conv, (1, 7, 7), "implicit").max_overlap() == 4


# --------------------------------------------------------------------------- l2 bounds near the ends of the float range


def _exact_conv_matrix(kernel, shape, stride, padding):
    """The matrix of a (groups = 1, dilation = 1) convolution, written as a textbook loop over exact Fractions."""
    co, ci, kh, kw = kernel.shape
    _, h, w = shape
    ho, wo = (h + 2 * padding - kh) // stride + 1, (w + 2 * padding - kw) // stride + 1
    rows = []
    for o in range(co):
        for y in range(ho):
            for x in range(wo):
                row = [Fraction(0)] * (ci * h * w)
                for c in range(ci):
                    for i in range(kh):
                        for j in range(kw):
                            r, s = y * stride + i - padding, x * stride + j - padding
                            if 0 <= r < h and 0 <= s < w:
                                row[(c * h + r) * w + s] += Fraction(float(kernel[o, c, i, j]))
                rows.append(row)
    return rows


def _exact_spectral_norm(rows, exponent: int, prec: int):
    """``||M||_2`` of the rational matrix ``rows`` with mpmath at ``prec`` bits: ``2^exponent ||2^-exponent M||_2``."""
    import mpmath

    with mpmath.workprec(prec):
        scaled = [[v * Fraction(2) ** -exponent for v in row] for row in rows]  # dyadic: exact in mpf
        m = mpmath.matrix([[mpmath.mpf(v.numerator) / v.denominator for v in row] for row in scaled])
        gram = m.T * m
        top = max(mpmath.eigsy(gram, eigvals_only=True))
        return mpmath.ldexp(mpmath.sqrt(top), exponent)


NEAR_LIMITS = [
    # entries 2^1000 and 2^-1000 in one kernel: the squares of the first overflow, those of the second underflow
    (np.array([[[[2.0**1000, 2.0**-1000], [3 * 2.0**999, 2.0**1000]]], [[[2.0**-1000, 2.0**999], [0.0, 2.0**998]]]]),
     1000, 2300),
    # every entry near 2^-1000: products underflow to zero without scaling
    (np.array([[[[1.0, 3.0], [5.0, 7.0]]], [[[2.0, 0.0], [1.0, 4.0]]]]) * 2.0**-1000, -1000, 300),
]


@pytest.mark.parametrize("kernel,exponent,prec", NEAR_LIMITS)
@pytest.mark.parametrize("stride,padding", [(1, 1), (2, 0)])
def test_l2_bounds_of_a_convolution_with_entries_near_the_float_limits(kernel, exponent, prec, stride, padding):
    """Regression (issue 18 item 5): the Collatz–Wielandt bound of ``|W|`` overflowed to ``inf`` for entries near
    2^1000 and lost everything to underflow (a bound ~1e-162 for a norm ~1e-300) near 2^-1000."""
    import mpmath

    from lipverify.ir.operators import BatchedOp

    shape = (1, 4, 4)
    layer = lv.Conv2d(kernel, stride=stride, padding=padding)
    exact = _exact_spectral_norm(_exact_conv_matrix(kernel, shape, stride, padding), exponent, prec)
    implicit, explicit = linear_op(layer, shape, "implicit"), linear_op(layer, shape, "explicit")
    majorant = BatchedOp.l2_up(implicit)  # the kernel is >= 0: |W| = W, so this bound is also nearly tight
    for value in (majorant, implicit.l2_up(), explicit.l2_up()):
        assert np.isfinite(value)
        with mpmath.workprec(prec):
            assert mpmath.mpf(value) >= exact
            assert mpmath.mpf(value) <= exact * (1 + mpmath.mpf("1e-6"))
    # the unscaled Collatz–Wielandt argument on the explicit majorant matrix agrees
    assert majorant == pytest.approx(explicit.l2_up(), rel=1e-6)


def test_l2_majorant_of_a_convolution_beyond_the_float_range_raises():
    """A bound above the largest float is refused (``NumericalError``), never returned as ``inf``."""
    from lipverify.errors import NumericalError
    from lipverify.ir.operators import BatchedOp

    # ||W||_2 = (2 cos(pi/10))^2 2^1023 ~ 1.8 * 2^1024 (the 1-D factor [1, 1] on 4 cells, padding 1): above max float
    layer = lv.Conv2d(np.full((1, 1, 2, 2), 2.0**1023), padding=1)
    implicit = linear_op(layer, (1, 4, 4), "implicit")
    with pytest.raises(NumericalError, match="l2_up"):
        BatchedOp.l2_up(implicit)
    with pytest.raises(NumericalError):
        implicit.l2_up()


def test_batchnorm_l2_bound_that_overflows_raises():
    """``up(|s| + r)`` of the largest float is ``inf``: refused with ``NumericalError``, never returned."""
    from lipverify.errors import NumericalError

    big = np.finfo(np.float64).max
    with pytest.raises(NumericalError, match="ChannelScaleOp"):
        ChannelScaleOp(np.array([big, 1.0]), np.array([1e300, 0.0]), (2, 1, 1)).l2_up()
    assert ChannelScaleOp(np.array([2.0**1000, -3.0]), np.array([0.0, 0.0]), (2, 1, 1)).l2_up() >= 2.0**1000


@settings(max_examples=20, deadline=None)
@given(st.one_of(conv_networks(max_blocks=2, max_size=5, max_channels=3), residual_networks(conv=True, max_blocks=1)))
def test_every_linear_step_of_generated_networks_is_adjoint_and_both_representations_agree(net):
    """On generated CNNs (residual ones included): for every linear step of the lowered graph, the implicit
    operator and the explicit matrix are the same matrix, the adjoint identity holds, and |W| agrees."""
    rng = np.random.default_rng(0)

    def linear_steps(graph):
        for s in graph.walk():
            if s.kind == "linear":
                yield s

    implicit = list(linear_steps(lower(net, "implicit")))
    explicit = list(linear_steps(lower(net, "explicit")))
    assert len(implicit) == len(explicit) > 0
    for si, se in zip(implicit, explicit):
        n_out, n_in = si.op.shape
        assert se.op.shape == (n_out, n_in) and si.index == se.index
        eye = np.eye(n_in)
        np.testing.assert_allclose(si.op.matmat(eye), se.op.matmat(eye), rtol=1e-13, atol=1e-13)
        np.testing.assert_allclose(si.op.abs_operator().matmat(eye), se.op.abs_operator().matmat(eye), rtol=1e-13,
                                   atol=1e-300)
        x, y = rng.normal(size=n_in), rng.normal(size=n_out)
        for op in (si.op, se.op):
            assert np.dot(op.matvec(x), y) == pytest.approx(np.dot(x, op.rmatvec(y)), rel=1e-11, abs=1e-11)
