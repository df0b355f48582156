"""GroupSort / MaxMin / FullSort (issue 13 item 4): forward semantics, Jacobians, every method sound or refusing,
PyTorch and ONNX round trips, and the done-when check (an orthogonal GroupSort MLP holds at 1 + 1e-6 in l2, its copy
with one layer scaled by 1.8 is refuted with a witness).

Oracles are written here: sorting with Python's ``sorted`` on explicit groups, dense permutation Jacobians, an exact
breakpoint enumeration of one-input networks in Fractions (:func:`_pwl1d_constant`), closed forms.
"""

from __future__ import annotations

import io
import json
import warnings
from fractions import Fraction

import numpy as np
import pytest
from _oracle import pwl1d_sort_constant as _pwl1d_constant
from _oracle import sort_permutation as _perm
from _oracle import sort_vector as _sort

import lipverify as lv
from lipverify.cli import main
from lipverify.errors import ModelFormatError, NotApplicableError, ShapeError

LAYERS = [(lv.GroupSort(2), (2, "contiguous", False)), (lv.GroupSort(3), (3, "contiguous", False)),
          (lv.MaxMin(), (2, "strided", True)), (lv.FullSort(), (None, "contiguous", False)),
          (lv.GroupSort(2, layout="strided", descending=True), (2, "strided", True)),
          (lv.GroupSort(3, descending=True), (3, "contiguous", True))]


@pytest.mark.parametrize("layer,spec", LAYERS, ids=lambda v: v.describe() if hasattr(v, "describe") else "")
def test_forward_jacobian_and_sympy_form_match_the_oracle(layer, spec):
    rng = np.random.default_rng(0)
    x = rng.standard_normal((5, 6))
    net = lv.Network([layer], input_shape=(6,))
    want = np.array([_sort(list(row), *spec) for row in x])
    assert np.array_equal(net(x), want)
    for row in x:
        assert np.array_equal(net.jacobian(row), _perm(list(row), *spec))
    small = lv.Network([layer], input_shape=(6 if layer.group_size == 3 else 4,))  # the sympy form grows fast
    xs = small.input_symbols()
    expr = small.sympy()
    for row in x[:2]:
        point = [Fraction(int(v * 1000), 1000) for v in row[:small.n_in]]
        assert [e.subs(dict(zip(xs, point))) for e in expr] == _sort(point, *spec)


def test_odd_even_transposition_sorts_every_input():
    """The compare-exchange network of the sympy form and of the exact rewrite: every 0-1 vector (the 0-1 principle)
    up to 10 values, every permutation up to 6."""
    import itertools

    from lipverify.sort import compare_exchanges

    def run(v):
        v = list(v)
        for a, b in compare_exchanges(len(v)):
            v[a], v[b] = min(v[a], v[b]), max(v[a], v[b])
        return v

    for g in range(1, 11):
        assert all(run(bits) == sorted(bits) for bits in itertools.product((0, 1), repeat=g))
    for g in range(1, 7):
        assert all(run(perm) == sorted(perm) for perm in itertools.permutations(range(g)))


def test_exact_rewrite_computes_the_layer():
    rng = np.random.default_rng(5)
    for layer in (lv.GroupSort(3), lv.MaxMin(), lv.FullSort(), lv.GroupSort(2, layout="strided")):
        chain = lv.Network(layer.relu_chain(6), input_shape=(6,))
        x = rng.standard_normal((20, 6))
        assert np.max(np.abs(chain(x) - layer.forward(x))) <= 1e-12


def test_the_documented_conventions():
    x = np.array([[3.0, 1.0, -1.0, 2.0]])
    assert lv.GroupSort(2).forward(x).tolist() == [[1.0, 3.0, -1.0, 2.0]]   # deel-torchlip: ascending pairs
    assert lv.MaxMin().forward(x).tolist() == [[3.0, 2.0, -1.0, 1.0]]       # orthogonium: [max(a, b), min(a, b)]
    assert lv.FullSort().forward(x).tolist() == [[-1.0, 1.0, 2.0, 3.0]]


def test_shapes_and_arguments_are_checked_with_the_layer_named():
    with pytest.raises(ShapeError, match=r"layer 0 \(GroupSort\(2\)\).*Flatten"):
        lv.Network([lv.GroupSort(2)], input_shape=(2, 2, 2))
    with pytest.raises(ShapeError, match=r"layer 1 \(GroupSort\(3\)\).*does not divide the 4"):
        lv.Network([lv.Dense(np.ones((4, 2))), lv.GroupSort(3)])
    with pytest.raises(ValueError, match="group_size"):
        lv.GroupSort(0)
    with pytest.raises(ValueError, match="layout"):
        lv.GroupSort(2, layout="rows")


# --------------------------------------------------------------------------- bounds


def test_a_sorting_layer_alone_has_bounds_one_in_every_norm_and_methods_needing_a_chain_refuse():
    net = lv.Network([lv.GroupSort(3)], input_shape=(6,))
    for method, norms in {"kstar": ("1", "2", "inf"), "k1": ("1", "2", "inf"), "k3": ("1", "inf"),
                          "k4": ("1", "inf")}.items():
        for p in norms:
            assert 1.0 <= lv.bound(net, method, p).value <= 1.0 + 1e-14, (method, p)
    for method, p in (("k2", "inf"), ("kcp", "inf"), ("ksdp", "inf"), ("lipsdp", "2"), ("lipsdp_fast", "2")):
        with pytest.raises(NotApplicableError, match=r"layer 0 \(GroupSort\(3\)\).*not elementwise"):
            lv.bound(net, method, p)
    rows = {(r.method, r.norm): r for r in lv.compare(net)}
    assert "GroupSort(3)" in rows[("k2", "inf")].error and rows[("k2", "inf")].value is None


def test_k3_and_k4_use_the_group_max_on_both_passes():
    """f = (1, 1) . sort(W1 x).  W1 = I: f = x0 + x1, constant 2 in l∞ and 1 in l1, and K3 = K4 = these.
    W1 = [[1, 0], [0, 0]]: f = min(x0, 0) + max(x0, 0) = x0, constant 1; in l1 the backward group max gives exactly 1
    (a rule summing a group, as max pooling's backward window sum, would give 2); in l∞ the forward group max gives 2,
    an upper bound."""
    for w1, want_inf, want_1, k_inf in (([[1, 0], [0, 1]], 2, 1, 2), ([[1, 0], [0, 0]], 1, 1, 2)):
        net = lv.Network([lv.Dense(w1), lv.GroupSort(2), lv.Dense([[1, 1]])])
        for method in ("k3", "k4"):
            for p, want in (("inf", k_inf), ("1", want_1)):
                assert want <= lv.bound(net, method, p).value <= want * (1 + 1e-14), (method, p)
                assert want <= lv.bound(net, method, p, arithmetic="float").value <= want * (1 + 1e-14), (method, p)
        assert lv.exact(net, "inf").value == want_inf and lv.exact(net, "1").value == want_1


def test_float_and_exact_arithmetic_agree():
    rng = np.random.default_rng(3)
    w1 = [[Fraction(int(v), 4) for v in row] for row in rng.integers(-6, 7, (4, 3))]
    w2 = [[Fraction(int(v), 4) for v in row] for row in rng.integers(-6, 7, (2, 4))]
    exact_net = lv.Network([lv.Dense(w1), lv.MaxMin(), lv.Dense(w2)])
    float_net = lv.Network([lv.Dense(np.array(w1, dtype=float)), lv.MaxMin(), lv.Dense(np.array(w2, dtype=float))])
    for method in ("kstar", "k3"):  # K4 cuts at sorting layers in float arithmetic
        for p in ("1", "inf"):
            e = lv.bound(exact_net, method, p)
            f = lv.bound(float_net, method, p, arithmetic="float")
            assert e.exact_value is not None
            assert float(e.exact_value) <= f.value <= float(e.exact_value) * (1 + 1e-12), (method, p)


def test_local_bounds_map_a_box_to_the_sorted_ends():
    net = lv.Network([lv.FullSort()], input_shape=(3,))
    lo, hi = np.array([0.0, -2.0, 1.0]), np.array([3.0, -1.0, 2.0])
    from lipverify.local import output_enclosure

    out_lo, out_hi = output_enclosure(net, (lo, hi))
    assert out_lo.tolist() == [-2.0, 0.0, 1.0] and out_hi.tolist() == [-1.0, 2.0, 3.0]
    # on a box where the order cannot change, a following ReLU is narrowed: K3 on the box is the active path only
    net = lv.Network([lv.Dense([[1.0], [-1.0]]), lv.GroupSort(2), lv.ReLU(), lv.Dense([[1.0, 0.0]])])
    box = (np.array([1.0]), np.array([2.0]))  # sort gives (-x, x): the first output is negative, cut by the ReLU
    assert lv.bound(net, "k3", "inf", domain=box).value <= 1e-300  # 0 up to outward rounding
    assert lv.bound(net, "k3", "inf").value == pytest.approx(1.0, rel=1e-14)


def test_certified_lower_bound_refuses_a_tie_and_certifies_a_generic_point():
    from lipverify.lower import certified_jacobian_norm

    net = lv.Network([lv.Dense([[1.0, 0.0], [0.0, 2.0]]), lv.GroupSort(2), lv.Dense([[3.0, 0.0]])])
    assert certified_jacobian_norm(net, np.array([2.0, 1.0]), "inf") is None  # x0 = 2 x1: a tie
    assert certified_jacobian_norm(net, np.array([1.0, 2.0]), "inf") == pytest.approx(3.0, rel=1e-12)  # min is x0
    assert certified_jacobian_norm(net, np.array([3.0, 1.0]), "inf") == pytest.approx(6.0, rel=1e-12)  # min is 2 x1
    b = lv.lower_bound(net, "inf")
    assert b.kind == "lower" and b.value == pytest.approx(6.0, rel=1e-9)
    # tied entries that are locally constant are certified (both cut to 0 by a ReLU before the sort)
    net = lv.Network([lv.Dense([[1.0], [1.0], [1.0]], [-5.0, -5.0, 0.0]), lv.ReLU(), lv.FullSort(),
                      lv.Dense([[1.0, 1.0, 1.0]])])
    assert certified_jacobian_norm(net, np.array([1.0]), "inf") == pytest.approx(1.0, rel=1e-12)


def test_exact_constant_of_a_closed_form():
    """f(x) = (1, -2, 3) . sort(x, 2x + 1, 1/2 - x): on -1/6 < x < 1/4 the order is (x, 1/2 - x, 2x + 1), slope
    1 + 2 + 6 = 9, the largest of the realizable slopes (the others are ±3, ±5 or 7 at most)."""
    net = lv.Network([lv.Dense([[1], [2], [-1]], [0, 1, Fraction(1, 2)]), lv.FullSort(), lv.Dense([[1, -2, 3]])])
    assert _pwl1d_constant(net, "inf") == 9
    for p in ("1", "2", "inf"):
        assert lv.exact(net, p).value == 9


# --------------------------------------------------------------------------- PyTorch and ONNX


torch = pytest.importorskip("torch")
nn = torch.nn


class GroupSort(nn.Module):
    """deel-torchlip's GroupSort (contiguous groups along dim 1, ascending; None: the whole vector), times its Lipschitz
    coefficient (exported to ONNX as a Mul by 1.0, read as the identity)."""

    def __init__(self, group_size=None):
        super().__init__()
        self.group_size = group_size
        self._coefficient_lip = 1.0

    def forward(self, x):
        g = x.shape[1] if self.group_size is None else self.group_size
        if g == 2:  # deel's g = 2 branch: ReduceMin/ReduceMax and a concatenation
            r = x.view(x.shape[0], x.shape[1] // 2, 2)
            pairs = torch.cat([torch.min(r, 2, keepdim=True)[0], torch.max(r, 2, keepdim=True)[0]], dim=2)
            return pairs.view(x.shape) * self._coefficient_lip
        return torch.sort(x.reshape(x.shape[0], x.shape[1] // g, g), dim=2)[0].reshape(x.shape) * self._coefficient_lip


class GroupSort2(GroupSort):
    def __init__(self):
        super().__init__(2)


class FullSort(GroupSort):
    def __init__(self):
        super().__init__(None)


class MaxMin(nn.Module):
    """orthogonium's MaxMin: the halves a, b become [max(a, b), min(a, b)]."""

    def __init__(self, axis=1):
        super().__init__()
        self.axis = axis

    def forward(self, z):
        a, b = z.split(z.shape[self.axis] // 2, self.axis)
        return torch.cat([torch.max(a, b), torch.min(a, b)], dim=self.axis)


class DeelMaxMin(nn.Module):
    """deel-torchlip's MaxMin: [relu(x), relu(-x)] (doubles the width)."""

    def __init__(self):
        super().__init__()
        self._dim = None
        self._coefficient_lip = 1.0

    def forward(self, x):
        return torch.cat((torch.relu(x), torch.relu(-x)), dim=1)


DeelMaxMin.__name__ = "MaxMin"

MODULES = [(GroupSort(4), lv.GroupSort(4)), (GroupSort2(), lv.GroupSort(2)), (FullSort(), lv.FullSort()),
           (MaxMin(), lv.MaxMin()), (GroupSort(2), lv.GroupSort(2))]


def _torch_net(act):
    torch.manual_seed(0)
    return nn.Sequential(nn.Linear(3, 8), act, nn.Linear(8, 2)).double()


def _close(a, b):
    assert np.max(np.abs(a - b)) <= 1e-6 * (1 + np.max(np.abs(b)))


@pytest.mark.parametrize("module,layer", MODULES, ids=lambda v: type(v).__name__)
def test_torch_modules_import_and_round_trip_through_onnx(module, layer, tmp_path):
    import onnx
    from onnx.reference import ReferenceEvaluator

    model = _torch_net(module)
    net = lv.from_torch(model)
    assert type(net.layers[1]) is type(layer) and net.layers[1].describe() == layer.describe()
    x = np.random.default_rng(1).standard_normal((4, 3))
    ref = model(torch.from_numpy(x)).detach().numpy()
    _close(net(x), ref)
    # the module exported by torch (its own pattern: TopK, ReduceMin/ReduceMax-Concat or Split-Max/Min-Concat)
    buf = io.BytesIO()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(model, torch.from_numpy(x), buf, dynamo=False)
    path = tmp_path / "torch.onnx"
    path.write_bytes(buf.getvalue())
    from_torch_onnx = lv.load(str(path))
    assert from_torch_onnx.layers[1].describe() == layer.describe()
    _close(from_torch_onnx(x), ref)
    # lipverify's own export (Reshape-TopK-Reshape), read back, and the ONNX reference evaluator on it
    mine = tmp_path / "mine.onnx"
    lv.save(net, str(mine))
    back = lv.load(str(mine))
    assert back.layers[1].describe() == layer.describe()
    assert np.array_equal(back(x), net(x))
    _close(ReferenceEvaluator(onnx.load(str(mine))).run(None, {"input": x})[0], net(x))


def test_torch_modules_inside_a_traced_model_and_refusals():
    class Block(nn.Module):
        def __init__(self):
            super().__init__()
            self.lin, self.act, self.out = nn.Linear(4, 4), MaxMin(), nn.Linear(4, 4)

        def forward(self, x):
            return x + self.out(self.act(self.lin(x)))

    model = Block().double()
    net = lv.from_torch(model, input_shape=(4,))
    assert "MaxMin" in repr(net)
    x = np.random.default_rng(2).standard_normal((3, 4))
    _close(net(x), model(torch.from_numpy(x)).detach().numpy())
    with pytest.raises(ModelFormatError, match=r"deel-torchlip's MaxMin.*\[I; -I\]"):
        lv.from_torch(_torch_net(DeelMaxMin()))
    scaled = GroupSort(2)
    scaled._coefficient_lip = 2.0
    with pytest.raises(ModelFormatError, match="k_coef_lip=2"):
        lv.from_torch(_torch_net(scaled))


def test_onnx_patterns_that_are_not_a_sort_raise_naming_the_node(tmp_path):
    from onnx import TensorProto, helper, numpy_helper

    def model(nodes, inits):
        graph = helper.make_graph(nodes, "g", [helper.make_tensor_value_info("x", TensorProto.DOUBLE, [1, 4])],
                                  [helper.make_tensor_value_info("y", TensorProto.DOUBLE, [1, None])],
                                  initializer=[numpy_helper.from_array(np.asarray(v, dtype=np.int64), k)
                                               for k, v in inits.items()])
        return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)], ir_version=8)

    top2 = model([helper.make_node("TopK", ["x", "k"], ["y", "i"], name="top", axis=1)], {"k": [2]})
    with pytest.raises(ModelFormatError, match=r"node 0 'top' \(TopK\).*whole vector"):
        lv.io.onnx.from_onnx_model(top2)
    split3 = model([helper.make_node("Split", ["x", "s"], ["a", "b"], name="split", axis=1),
                    helper.make_node("Max", ["a", "b"], ["m"], name="max"),
                    helper.make_node("Sub", ["a", "b"], ["t"], name="sub"),
                    helper.make_node("Concat", ["m", "t"], ["y"], name="cat", axis=1)], {"s": [2, 2]})
    with pytest.raises(ModelFormatError, match=r"node 0 'split' \(Split\).*MaxMin"):
        lv.io.onnx.from_onnx_model(split3)


# --------------------------------------------------------------------------- done-when (issue 13)


def _orthonormal(rows: int, cols: int, seed: int) -> np.ndarray:
    """Orthonormal rows (rows <= cols) or columns (rows >= cols): a slice of the QR factor of a Gaussian matrix."""
    n = max(rows, cols)
    q, r = np.linalg.qr(np.random.default_rng(seed).standard_normal((n, n)))
    return (q * np.sign(np.diag(r)))[:rows, :cols]


def _groupsort_mlp(scale: float = 1.0) -> lv.Network:
    """8-16-16-4 with orthonormal columns, an orthogonal square and orthonormal rows, GroupSort(2) between: every
    factor has l2 norm 1, so the network is 1-Lipschitz in l2 (``proofs/groupsort.md``)."""
    return lv.Network([lv.Dense(_orthonormal(16, 8, 0), np.linspace(-1, 1, 16)), lv.GroupSort(2),
                       lv.Dense(scale * _orthogonal16()), lv.GroupSort(2), lv.Dense(_orthonormal(4, 16, 2))])


def _orthogonal16() -> np.ndarray:
    return _orthonormal(16, 16, 1)


def test_orthogonal_groupsort_mlp_holds_and_scaled_copy_is_refuted(tmp_path, capsys):
    net = _groupsort_mlp()
    v = lv.check_lipschitz(net, 1 + 1e-6, 2)
    assert v.verdict == "holds" and v.upper <= 1 + 1e-6
    scaled = _groupsort_mlp(1.8)
    r = lv.check_lipschitz(scaled, 1 + 1e-6, 2)
    assert r.verdict == "refuted" and r.lower > 1 + 1e-6
    # independent check of the witness: the dense Jacobian W3 P2 W2 P1 W1 written here, with the permutations of the
    # oracle's sorting at the witness
    x = np.asarray(r.witness)
    w1, w2, w3 = (layer.weight for layer in scaled.layers[::2])
    z1 = w1 @ x + scaled.layers[0].bias
    p1 = _perm(list(z1))
    z2 = w2 @ np.array(_sort(list(z1)))
    jac = w3 @ _perm(list(z2)) @ w2 @ p1 @ w1
    assert np.linalg.norm(jac, 2) >= r.lower * (1 - 1e-9) and np.linalg.norm(jac, 2) > 1 + 1e-6
    # the command line on the exported model
    for model, verdict in ((net, "holds"), (scaled, "refuted")):
        path = tmp_path / f"{verdict}.onnx"
        lv.save(model, str(path))
        assert main(["check", str(path), "--claim", "1.000001", "--norm", "2", "--json"]) == 0
        out = json.loads(capsys.readouterr().out)
        assert out["verdict"] == verdict and out["norm"] == "2"


def test_the_strategy_rejects_bad_arguments():
    from lipverify.strategies import groupsort_networks

    with pytest.raises(ValueError, match="min_depth"):
        groupsort_networks(min_depth=1)
    with pytest.raises(ValueError, match="unknown kinds"):
        groupsort_networks(kinds=("bubble",))
