import json
import subprocess
import sys

import numpy as np
import pytest

import lipverify as lv
from lipverify.cli import main

RESULT_KEYS = {"method", "norm", "value", "kind", "seconds", "error"}


def _check_schema(obj):
    assert set(obj) == {"model", "input_shape", "results"}
    assert isinstance(obj["model"], str) and all(isinstance(d, int) for d in obj["input_shape"])
    for r in obj["results"]:
        assert set(r) == RESULT_KEYS
        assert r["norm"] in ("1", "2", "inf") and isinstance(r["seconds"], float)
        if r["error"] is None:
            assert isinstance(r["value"], float) and r["kind"] in ("upper", "exact", "lower", "estimate")
        else:
            assert r["value"] is None and r["kind"] is None and isinstance(r["error"], str)


@pytest.fixture
def model(tmp_path):
    path = tmp_path / "m.npz"
    lv.save(lv.Network([lv.Dense([[1.0, -2.0], [0.5, 1.0]], [0.1, 0.2]), lv.ReLU(), lv.Dense([[1.0, 1.0]])]), path)
    return str(path)


def test_compare_json_follows_the_schema(model, capsys):
    assert main(["compare", model, "--json"]) == 0
    obj = json.loads(capsys.readouterr().out)
    _check_schema(obj)
    methods = {r["method"] for r in obj["results"]}
    assert set(lv.METHODS) <= methods and "lower_bound" in methods
    k4 = [r for r in obj["results"] if r["method"] == "k4" and r["norm"] == "inf"][0]
    assert k4["value"] == lv.bound(lv.load(model), "k4", norm="inf").value


def test_bound_single_method_and_norm(model, capsys):
    assert main(["bound", model, "--method", "k3", "--norm", "l1", "--json", "--no-lower"]) == 0
    obj = json.loads(capsys.readouterr().out)
    assert [(r["method"], r["norm"]) for r in obj["results"]] == [("k3", "1")]


def test_zoo_table_and_json(capsys):
    assert main(["compare", "--zoo", "--norm", "inf"]) == 0
    out = capsys.readouterr().out
    assert "== abs" in out and "true constant" in out and "k4" in out
    assert main(["compare", "--zoo", "--json", "--method", "k4"]) == 0
    objs = json.loads(capsys.readouterr().out)
    assert isinstance(objs, list) and len(objs) >= 5
    for obj in objs:
        _check_schema(obj)


def test_bad_input_exits_2_with_a_message_naming_the_place(tmp_path, model, capsys):
    assert main(["compare", str(tmp_path / "nope.npz")]) == 2
    assert "nope.npz: no such file" in capsys.readouterr().err
    assert main(["bound", model, "--method", "k9"]) == 2
    assert "valid methods are" in capsys.readouterr().err
    assert main(["bound", model, "--norm", "7"]) == 2
    assert "valid norms" in capsys.readouterr().err
    assert main(["bound", model, "--method", "k3", "--norm", "2"]) == 2
    assert "l1, linf" in capsys.readouterr().err
    assert main(["compare"]) == 2
    path = tmp_path / "shape.npz"
    np.savez(path, format="lipverify-npz", version=1, input_shape=[3], layers=["dense"], **{"0.weight": np.ones((2, 2))})
    assert main(["compare", str(path)]) == 2
    err = capsys.readouterr().err
    assert "shape.npz" in err and "layer 0" in err and "(3,)" in err


def test_python_dash_m_entry_point(model):
    out = subprocess.run([sys.executable, "-m", "lipverify", "bound", model, "--json", "--method", "k4"],
                         capture_output=True, text=True, check=True)
    _check_schema(json.loads(out.stdout))
    assert out.stderr == ""
