"""KSDP's total work budget (``max_work``, N³ per SDP) and its default inside ``compare`` (issue 15 item 5)."""

from __future__ import annotations

import numpy as np
import pytest

import lipverify as lv
from lipverify.bounds.kcp import kcp
from lipverify.bounds.records import COMPARE_KSDP_WORK


def _net():
    rng = np.random.default_rng(7)
    return lv.Network([lv.Dense(rng.standard_normal((3, 2))), lv.ReLU(), lv.Dense(rng.standard_normal((2, 3)))])


def test_rows_past_the_work_budget_keep_the_polynomial_bound_with_the_reason():
    net = _net()
    size = 1 + 2 + 3  # the relaxation side: 1 + n_0 + n_1
    full = lv.bound(net, "ksdp", "inf")
    assert full.details["work_capped_rows"] == [] and full.details["max_work"] is None
    rows = lv.compare(net, norms=["inf"], methods=["ksdp"], ksdp={"max_work": size**3})
    (row,) = rows
    assert isinstance(row, lv.Bound) and row.kind == "upper"
    assert len(row.details["work_capped_rows"]) == 1 and row.details["certified_rows"] == 1
    note = row.details["work_note"]
    assert "max_work=216" in note and "max_work=432" in note and note in row.assumptions
    # the value lies between the full KSDP and min(K4, KCP)
    k4 = float(lv.bound(net, "k4", "inf").value)
    assert float(full.value) <= float(row.value) * (1 + 1e-12)
    assert float(row.value) <= min(k4, float(kcp(net, "inf").value)) * (1 + 1e-12)
    none = lv.bound(net, "ksdp", "inf", max_work=0)  # nothing solved: every row keeps min(K4, KCP)
    assert none.details["certified_rows"] == 0 and len(none.details["work_capped_rows"]) == 2
    assert float(none.value) >= float(row.value) * (1 - 1e-12)
    with pytest.raises(ValueError, match="max_work"):
        lv.bound(net, "ksdp", "inf", max_work=-1)


def test_compare_bounds_ksdp_work_by_default_and_bound_does_not():
    net = _net()
    (row,) = lv.compare(net, norms=["inf"], methods=["ksdp"])
    assert row.details["max_work"] == COMPARE_KSDP_WORK
    assert lv.METHODS["ksdp"].budget("max_work").default is None
