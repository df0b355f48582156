"""The method records (``lipverify/bounds/records.py``, ``lv.METHODS``): what each record declares is what the method
does (norms, conv representations, layer kinds), every proof file exists, the README's methods table lists exactly
the records, and ``compare`` takes its refusals from the records."""

import re
from pathlib import Path

import numpy as np
import pytest

import lipverify as lv
from lipverify.bounds.records import COSTS, STEP_KINDS, Method, command_line, limit_hint

ROOT = Path(__file__).resolve().parents[1]


def _mlp(seed=0, sizes=(3, 4, 2)):
    rng = np.random.default_rng(seed)
    layers = []
    for i, (a, b) in enumerate(zip(sizes[:-1], sizes[1:])):
        if i:
            layers.append(lv.ReLU())
        layers.append(lv.Dense(rng.standard_normal((b, a)), rng.standard_normal(b)))
    return lv.Network(layers)


def _cnn(maxpool=False):
    rng = np.random.default_rng(1)
    layers = [lv.Conv2d(rng.standard_normal((2, 1, 3, 3)), padding=1), lv.ReLU()]
    layers += [lv.MaxPool2d(2), lv.Flatten(), lv.Dense(rng.standard_normal((2, 8)))] if maxpool else \
        [lv.Flatten(), lv.Dense(rng.standard_normal((2, 32)))]
    return lv.Network(layers, input_shape=(1, 4, 4))


def test_every_record_is_complete_and_its_proof_exists():
    assert list(lv.METHODS) == ["kstar", "k1", "k2", "k3", "k4", "kcp", "ksdp", "lipsdp", "lipsdp_fast", "lipsdp_fo"]
    for mid, record in lv.METHODS.items():
        assert isinstance(record, Method) and record.id == mid
        assert (ROOT / record.proof).is_file(), record.proof
        assert record.kind == "upper" and record.cost in COSTS
        assert set(record.norms) <= {"1", "2", "inf"} and record.norms
        assert record.steps <= set(STEP_KINDS) and {"dense", "activation", "flatten"} <= record.steps
        assert set(record.conv) <= {"implicit", "explicit"}
        for b in record.budgets:
            assert b.flag.startswith("--") and b.kind in ("work", "wallclock", "seed")


@pytest.mark.parametrize("mid", ["kstar", "k1", "k2", "k3", "k4", "kcp", "ksdp", "lipsdp", "lipsdp_fast", "lipsdp_fo"])
def test_declared_norms_are_the_norms_that_work(mid):
    """Call the method's function (not the record) in every norm: it answers exactly in the declared ones."""
    record = lv.METHODS[mid]
    net = _mlp()
    for p in ("1", "2", "inf"):
        if p in record.norms:
            b = record.function(net, p)
            assert b.kind == "upper" and b.norm == p and b.value >= lv.lower_bound(net, p).value
        else:
            with pytest.raises(lv.NotApplicableError) as info:
                record.function(net, p)
            assert str(info.value) == record.norm_refusal(p)  # the record words the refusal as the method does


@pytest.mark.parametrize("mid", ["kstar", "k1", "k2", "k3", "k4", "kcp", "ksdp", "lipsdp", "lipsdp_fast", "lipsdp_fo"])
def test_declared_conv_representations_and_layer_kinds_are_the_ones_that_work(mid):
    record = lv.METHODS[mid]
    p = record.norms[-1]
    for conv in ("implicit", "explicit"):
        if not record.conv:
            with pytest.raises(lv.LipVerifyError):  # a fully connected method meets the Conv2d layer
                record.function(_cnn(), p)
        elif conv in record.conv:
            assert record.function(_cnn(), p, conv=conv).details["conv"] == conv
        else:
            with pytest.raises(lv.NotApplicableError, match=f"conv='{conv}'"):
                record.function(_cnn(), p, conv=conv)
    if record.conv and "maxpool" not in record.steps:
        with pytest.raises(lv.NotApplicableError, match="max pooling"):
            record.function(_cnn(maxpool=True), p, conv=record.conv[0])
    elif record.conv:
        assert record.function(_cnn(maxpool=True), p, conv=record.conv[0]).kind == "upper"


def test_a_record_is_callable_like_its_function():
    net = _mlp()
    assert lv.METHODS["k4"](net, "inf").value == lv.bounds.k4(net, "inf").value


def _readme_table():
    text = (ROOT / "README.md").read_text()
    section = text[text.index("### Methods (`lv.METHODS`)"):]
    rows = []
    for line in section.splitlines()[1:]:
        if line.startswith("#"):
            break
        m = re.match(r"^\| `(\w+)` \|", line)
        if m:
            cells = [c.strip() for c in re.split(r"(?<!\\)\|", line)[1:-1]]
            rows.append((m.group(1), cells))
    return rows


def test_the_readme_methods_table_lists_exactly_the_records():
    rows = _readme_table()
    assert [mid for mid, _ in rows] == list(lv.METHODS)
    for mid, cells in rows:
        record = lv.METHODS[mid]
        _, _, norms, conv, cost, budgets, proof = cells[:7]
        assert tuple(n.strip().replace("∞", "inf") for n in norms.split(",")) == record.norms
        assert all(c in conv for c in record.conv) and (record.conv or conv.startswith("–"))
        assert cost == record.cost
        assert f"({record.proof})" in proof
        for b in record.budgets:
            assert f"`{b.name}={b.default}`" in budgets and f"`{b.flag}`" in budgets, (mid, b)


def test_compare_takes_refusals_from_the_records_without_calling():
    net = _mlp()
    rows = lv.compare(net, norms=["2"], methods=["k3", "kcp", "k4"])
    for row in rows:
        assert isinstance(row, lv.Skipped) and row.error == lv.METHODS[row.method].norm_refusal("2")
        assert row.seconds == 0.0
    rows = lv.compare(_cnn(maxpool=True), norms=["inf"], methods=["kcp", "k2", "k1"])
    by = {(r.method, lv.bounds._conv_of(r)): r for r in rows}
    assert "layer 0 (Conv2d" in by["kcp", None].error
    assert by["k2", "implicit"].error.startswith("conv=implicit: k2 with conv='implicit'")
    assert "layer 2 (MaxPool2d" in by["k2", "explicit"].error
    assert isinstance(by["k1", "explicit"], lv.Bound) and "conv='implicit'" in by["k1", "implicit"].error


def test_limit_hints_name_the_keyword_in_python_and_the_flag_on_the_command_line():
    budget = lv.METHODS["ksdp"].budget("max_size")
    assert limit_hint(budget, 9) == "max_size=9"
    with command_line():
        assert limit_hint(budget, 9) == "--max-size 9"
    big = _mlp(sizes=(3, 30, 1))
    with pytest.raises(lv.NotApplicableError, match=r"> max_size=20; raise it \(e\.g\. max_size=34"):
        lv.bound(big, "ksdp", "inf", max_size=20)
    with command_line(), pytest.raises(lv.NotApplicableError, match=r"> --max-size 20; raise it \(e\.g\. --max-size 34"):
        lv.bound(big, "ksdp", "inf", max_size=20)


# ---- work progress inside long methods (issue 16 item 1): a callback collecting ticks sees a nondecreasing
# count that ends at the total (or at the budget when one stops the method)

def _ticks_ok(ticks, total):
    done = [d for d, _ in ticks]
    assert ticks and all(t == total for _, t in ticks), ticks
    assert done == sorted(done) and 0 < done[0] and done[-1] <= total, ticks


def test_compare_passes_work_progress_into_ksdp_and_lipsdp():
    net = _mlp(0, (3, 4, 2))  # 3 inputs, 2 outputs
    ticks: dict = {}
    rows = lv.compare(net, norms=["inf", "1", "2"], methods=["ksdp", "lipsdp", "k4"],
                      work_progress=lambda m, n, done, total: ticks.setdefault((m, n), []).append((done, total)))
    assert all(isinstance(r, lv.Bound) for r in rows if lv.METHODS[r.method].norm_refusal(r.norm) is None)
    # one SDP per output row (l∞) / input column (l1), one tick each
    assert ticks[("ksdp", "inf")] == [(1, 2), (2, 2)]
    assert ticks[("ksdp", "1")] == [(1, 3), (2, 3), (3, 3)]
    _ticks_ok(ticks[("lipsdp", "2")], 4)
    assert ticks[("lipsdp", "2")][-1] == (4, 4)
    assert set(ticks) == {("ksdp", "inf"), ("ksdp", "1"), ("lipsdp", "2")}  # k4 declares no progress
    assert {m for m, r in lv.METHODS.items() if r.progress} == {"k2", "ksdp", "lipsdp"}
    assert [lv.METHODS[m].progress_unit for m in ("k2", "ksdp", "lipsdp")] == ["nodes", "SDPs", "stages"]


def test_ksdp_progress_does_not_change_the_bound():
    net = _mlp(2, (3, 5, 3))
    ticks = []
    with_progress = lv.bound(net, "ksdp", norm="inf", progress=lambda d, t: ticks.append((d, t)))
    assert with_progress.value == lv.bound(net, "ksdp", norm="inf").value
    assert ticks == [(1, 3), (2, 3), (3, 3)]


def test_lower_bound_progress_counts_samples_steps_and_candidates():
    from lipverify.lower import CANDIDATES

    net = _mlp(1, (3, 6, 2))
    ticks = []
    b = lv.lower_bound(net, "2", samples=20, steps=5, progress=lambda d, t: ticks.append((d, t)))
    total = 20 + 5 + 1 + CANDIDATES
    _ticks_ok(ticks, total)
    assert ticks[0] == (20, total) and [d for d, _ in ticks[1:6]] == [21, 22, 23, 24, 25]
    assert ticks[-1] == (total, total)
    assert b.value == lv.lower_bound(net, "2", samples=20, steps=5).value


def _regions_net():
    rng = np.random.default_rng(3)
    return lv.Network([lv.Dense(rng.standard_normal((8, 2)), rng.standard_normal(8)), lv.ReLU(),
                       lv.Dense(rng.standard_normal((8, 8)), rng.standard_normal(8)), lv.ReLU(),
                       lv.Dense(rng.standard_normal((2, 8)))])


def test_exact_regions_progress_counts_nodes_against_max_nodes():
    ticks = []
    r = lv.exact(_regions_net(), "inf", method="regions", max_nodes=100_000, progress=lambda d, t: ticks.append((d, t)))
    assert r.kind == "exact"
    _ticks_ok(ticks, 100_000)
    assert ticks[-1][0] == r.details["nodes"] > 50 and len(ticks) >= 3
    # a node budget stops it: the count ends at the budget
    ticks = []
    r = lv.exact(_regions_net(), "inf", method="regions", max_nodes=60, progress=lambda d, t: ticks.append((d, t)))
    assert r.kind == "upper" and "max_nodes=60" in r.status
    _ticks_ok(ticks, 60)
    assert ticks[-1] == (60, 60)
