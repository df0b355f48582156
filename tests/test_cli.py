import json
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

import lipverify as lv
from lipverify.cli import main

RESULT_KEYS = {"method", "norm", "value", "kind", "seconds", "error", "quantity_exact", "lower", "rounding"}
OPTIONAL_KEYS = {"exact", "conv"}


def _check_schema(obj):
    assert set(obj) == {"model", "input_shape", "results"}
    assert isinstance(obj["model"], str) and all(isinstance(d, int) for d in obj["input_shape"])
    for r in obj["results"]:
        assert RESULT_KEYS <= set(r) <= RESULT_KEYS | OPTIONAL_KEYS
        assert r["norm"] in ("1", "2", "inf") and isinstance(r["seconds"], float)
        assert isinstance(r["quantity_exact"], bool)
        if r["error"] is None:
            assert isinstance(r["value"], float) and r["kind"] in ("upper", "exact", "lower", "estimate")
            assert isinstance(r["rounding"], str)
            assert r["lower"] is None or (isinstance(r["lower"], float) and r["lower"] <= r["value"])
        else:
            assert r["value"] is None and r["kind"] is None and isinstance(r["error"], str)
            assert r["lower"] is None and r["rounding"] is None and r["quantity_exact"] is False


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


def test_compare_plot_writes_a_png(model, tmp_path, capsys):
    pytest.importorskip("matplotlib")
    out = tmp_path / "bars.png"
    assert main(["compare", model, "--plot", str(out), "--json"]) == 0
    _check_schema(json.loads(capsys.readouterr().out))
    data = out.read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n"
    width, height = int.from_bytes(data[16:20], "big"), int.from_bytes(data[20:24], "big")
    assert width > 400 and height > 200
    zoo = tmp_path / "zoo.png"
    assert main(["compare", "--zoo", "--norm", "inf", "--method", "k4", "--method", "kstar", "--plot", str(zoo)]) == 0
    assert int.from_bytes(zoo.read_bytes()[20:24], "big") > height  # one panel per network
    assert main(["compare", model, "--plot", str(tmp_path / "no-such-dir" / "x.png")]) == 2
    assert "cannot write the figure" in capsys.readouterr().err


def test_plot_without_matplotlib_exits_2(model, tmp_path, capsys, monkeypatch):
    monkeypatch.setitem(sys.modules, "matplotlib", None)  # makes `import matplotlib` raise ImportError
    assert main(["compare", model, "--plot", str(tmp_path / "x.png")]) == 2
    assert "--plot needs matplotlib" in capsys.readouterr().err
    assert not (tmp_path / "x.png").exists()


def test_input_shape_option(model, capsys):
    assert main(["bound", model, "--input-shape", "2", "--json", "--method", "k4", "--no-lower"]) == 0
    capsys.readouterr()
    assert main(["bound", model, "--input-shape", "3"]) == 2
    assert "the model's input shape is (2,), not (3,)" in capsys.readouterr().err
    assert main(["bound", model, "--input-shape", "a,b"]) == 2
    assert "expected positive integers" in capsys.readouterr().err


def test_exact_command_prints_sympy_values_and_json(capsys):
    assert main(["exact", "--zoo", "--norm", "inf"]) == 0
    out = capsys.readouterr().out
    assert "== sawtooth3" in out and "linf: 8  [exact" in out
    assert main(["exact", "--zoo", "--json", "--norm", "1"]) == 0
    objs = json.loads(capsys.readouterr().out)
    saw = next(o for o in objs if o["model"] == "sawtooth3")
    (row,) = saw["results"]
    assert row["kind"] == "exact" and row["exact"] == "8" and row["value"] == 8.0


def test_exact_command_on_a_model_file(model, capsys):
    assert main(["exact", model, "--norm", "inf,1"]) == 0
    out = capsys.readouterr().out
    assert "linf:" in out and "l1:" in out


def _liar(net, norm="inf", **_):
    """A deliberately wrong method: half the norm of the dense Jacobian at (1, ..., 1), labelled an upper bound."""
    j = np.asarray(net.jacobian(np.ones(net.input_shape)), dtype=float).reshape(-1, net.n_in)
    value = 0.5 * np.linalg.norm(j, {"1": 1, "2": 2, "inf": np.inf}[norm])
    return lv.Bound.upper_bound(float(value), norm, "liar", rounding="outward (rigorous float)")


@pytest.mark.parametrize("command", ["bound", "compare"])
@pytest.mark.parametrize("as_json", [False, True])
def test_contradictory_results_are_an_internal_error(tmp_path, capsys, monkeypatch, command, as_json):
    """An upper bound below the sampled certified lower bound: exit 1, both rows named; the contradicting upper bound
    is never printed (rows are checked before they stream; the lower bound runs first), --json prints nothing."""
    from lipverify.bounds import METHODS

    monkeypatch.setitem(METHODS, "liar", _liar)
    path = tmp_path / "line.npz"  # f(x) = 3 relu(x) - 3 relu(-x) = 3x: constant 3; the liar says 1.5
    lv.save(lv.Network([lv.Dense([[1.0], [-1.0]]), lv.ReLU(), lv.Dense([[3.0, -3.0]])]), path)
    argv = [command, str(path), "--method", "k4,liar", "--norm", "inf"] + (["--json"] if as_json else [])
    assert main(argv) == 1
    out, err = capsys.readouterr()
    if as_json:
        assert out == ""
    else:
        assert "lower_bound" in out and "liar" not in out
    assert "internal error" in err and "InternalConsistencyError" in err and "please report" in err
    assert re.search(r"liar linf upper = 1\.5 is below lower_bound linf lower = (3|2\.99)", err), err
    # without the lower bound row nothing contradicts the liar
    assert main(argv + ["--no-lower"]) == 0


# --------------------------------------------------------------------------- through a subprocess (issue 16)

ROOT = Path(__file__).resolve().parents[1]


def _cli(*argv, timeout=600):
    return subprocess.run([sys.executable, "-m", "lipverify", *map(str, argv)], cwd=ROOT, capture_output=True,
                          text=True, timeout=timeout)


def _mlp_file(tmp_path, sizes, seed=0, name="mlp.npz"):
    rng = np.random.default_rng(seed)
    layers = []
    for i, (a, b) in enumerate(zip(sizes[:-1], sizes[1:])):
        if i:
            layers.append(lv.ReLU())
        layers.append(lv.Dense(rng.normal(0, np.sqrt(2 / a), (b, a)), rng.normal(0, 0.1, b)))
    path = tmp_path / name
    lv.save(lv.Network(layers), path)
    return path


def _jsonl(out):
    return [json.loads(line) for line in out.splitlines() if line.strip()]


def test_options_may_come_before_or_after_the_model(model):
    for argv in (["bound", "--method", "k4", model], ["bound", model, "--method", "k4"],
                 ["bound", "--method", "k4", "--norm", "1", model, "--norm", "inf"]):
        res = _cli(*argv, "--jsonl", "--no-lower")
        assert res.returncode == 0, res.stderr
        rows = _jsonl(res.stdout)
        assert {r["method"] for r in rows} == {"k4"} and all(r["model"] == model for r in rows)
    res = _cli("bound", "--method", "k4,k1", "--method", "kstar", "--norm", "1,inf", model, "--jsonl", "--no-lower")
    assert res.returncode == 0, res.stderr
    assert [(r["method"], r["norm"]) for r in _jsonl(res.stdout)] == [
        ("k4", "1"), ("k1", "1"), ("kstar", "1"), ("k4", "inf"), ("k1", "inf"), ("kstar", "inf")]


def test_exit_codes_through_a_subprocess(tmp_path, model):
    rng = np.random.default_rng(0)
    cnn = tmp_path / "cnn.onnx"
    lv.save(lv.Network([lv.Conv2d(rng.standard_normal((2, 1, 3, 3))), lv.ReLU(), lv.Flatten(),
                        lv.Dense(rng.standard_normal((2, 8)))], input_shape=(1, 4, 4)), cnn)
    res = _cli("exact", cnn)  # a layer exact cannot handle: bad input, with the reason
    assert res.returncode == 2 and "layer 0 (Conv2d" in res.stderr and "Traceback" not in res.stderr
    res = _cli("exact", _mlp_file(tmp_path, (16, 8, 2)), "--norm", "inf")  # over exact's limits: computes nothing
    assert res.returncode == 2 and "input dimension 16" in res.stderr and "--max-input-dim N" in res.stderr
    small = tmp_path / "relu2.npz"  # a 2-input ReLU net: exact by region enumeration, refused below input dimension 2
    lv.save(lv.Network([lv.Dense([[1.0, 2.0], [2.0, -1.0], [1.0, 1.0]]), lv.ReLU(), lv.Dense([[1.0, -1.0, 0.5]])]), small)
    res = _cli("exact", small, "--max-input-dim", "1")
    assert res.returncode == 2 and "limited to input dimension 1" in res.stderr
    res = _cli("exact", small, "--max-input-dim", "2", "--time-limit", "60", "--json")
    assert res.returncode == 0 and json.loads(res.stdout)["results"][0]["kind"] == "exact"
    tanh = tmp_path / "tanh.npz"
    lv.save(lv.Network([lv.Dense([[1.0], [2.0]]), lv.Tanh(), lv.Dense([[1.0, -1.0]])]), tanh)
    res = _cli("exact", tanh, "--max-neurons", "5")
    assert res.returncode == 2 and "region enumeration only" in res.stderr and "Traceback" not in res.stderr
    res = _cli("bound", "--method", "ksdp", _mlp_file(tmp_path, (8, 12, 1), name="m2.npz"), "--max-size", "10")
    assert res.returncode == 2 and "> --max-size 10" in res.stderr and "max_size=" not in res.stderr
    res = _cli("bound", model, "--k2-nodes", "0")
    assert res.returncode == 2 and "--k2-nodes: expected a positive int" in res.stderr
    res = _cli("bound", tmp_path / "missing.onnx")
    assert res.returncode == 2 and "no such file" in res.stderr
    res = _cli("bound", model, "--method", "k4", "--no-lower")
    assert res.returncode == 0 and "k4" in res.stdout and res.stderr == ""


def test_k2_node_budget_is_reproducible_from_the_command_line(tmp_path):
    path = _mlp_file(tmp_path, (6, 16, 16, 3), seed=4)
    values = set()
    for _ in range(2):
        res = _cli("bound", path, "--method", "k2", "--norm", "2", "--k2-nodes", "80", "--seed", "1", "--json",
                   "--no-lower")
        assert res.returncode == 0, res.stderr
        (row,) = json.loads(res.stdout)["results"]
        values.add(row["value"])
    assert len(values) == 1


def test_time_limit_skips_rows_and_names_the_flag(model):
    res = _cli("compare", model, "--time-limit", "1e-6", "--jsonl")
    assert res.returncode == 0, res.stderr
    rows = _jsonl(res.stdout)
    assert len(rows) == 3 * (len(lv.METHODS) + 1)
    skipped = [r for r in rows if r["error"] and r["error"].startswith("time budget exhausted")]
    assert skipped and all("--time-limit 1e-06" in r["error"] for r in skipped)
    assert all(r["error"] for r in rows[1:])  # at most the first row started within 1 µs


def test_jsonl_streams_one_object_per_row_and_json_agrees(model):
    streamed = _jsonl(_cli("compare", model, "--jsonl", "--norm", "inf").stdout)
    whole = json.loads(_cli("compare", model, "--json", "--norm", "inf").stdout)
    assert [{k: v for k, v in r.items() if k not in ("model", "seconds")} for r in streamed] == \
        [{k: v for k, v in r.items() if k != "seconds"} for r in whole["results"]]
    assert streamed[0]["method"] == "lower_bound"  # the lower bound first: upper bounds are checked against it


def test_ctrl_c_prints_the_rows_done_and_exits_130(tmp_path):
    path = _mlp_file(tmp_path, (64, 128, 64, 10))
    proc = subprocess.Popen([sys.executable, "-m", "lipverify", "bound", str(path), "--method", "k4,k2", "--norm", "2",
                             "--no-lower", "--k2-nodes", "100000000", "--time-limit", "500", "--jsonl"],
                            cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        first = proc.stdout.readline()  # k4's row (not defined in l2) is out: k2 is running
        assert json.loads(first)["method"] == "k4"
        time.sleep(1.0)
        proc.send_signal(signal.SIGINT)
        out, err = proc.communicate(timeout=120)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 130
    assert "Traceback" not in err and "interrupted; 1 row(s) done" in err
    assert out == ""


def test_plot_draws_every_row_labelled_and_marked_by_kind():
    pytest.importorskip("matplotlib")
    from lipverify.cli import plot_figure

    rng = np.random.default_rng(0)
    cnn = lv.Network([lv.Conv2d(rng.standard_normal((2, 1, 3, 3)), padding=1), lv.ReLU(), lv.Flatten(),
                      lv.Dense(rng.standard_normal((2, 32)))], input_shape=(1, 4, 4))
    rows = lv.Comparison([lv.lower_bound(cnn, n) for n in ("1", "inf")] +
                         list(lv.compare(cnn, norms=["1", "inf"], methods=["kstar", "k1", "k4"])))
    fig = plot_figure([("cnn", rows)], ["1", "inf"])
    (ax,) = fig.axes
    bars = {p.get_gid(): p.get_height() for p in ax.patches if p.get_gid()}
    expected = {}
    for r in rows:
        if isinstance(r, lv.Bound):
            conv = r.details.get("conv")
            label = r.method if conv is None else f"{r.method} {conv[:4]}"
            expected[f"{label}|l{r.norm}|{r.kind}"] = r.float_value()
    assert bars == expected  # every row with a value, implicit and explicit apart, k1 included
    assert {"kstar impl|linf|upper", "kstar expl|linf|upper", "k1 expl|l1|upper", "lower_bound|l1|lower"} <= set(bars)
    texts = {t.get_text() for t in ax.texts}
    assert all(f"{gid.split('|')[0]} {h:.4g}" in texts for gid, h in bars.items())
    colours = {p.get_gid().split("|")[2]: (p.get_facecolor(), p.get_hatch()) for p in ax.patches if p.get_gid()}
    assert colours["upper"] != colours["lower"]
    spans_decades = max(bars.values()) >= 10 * min(bars.values())
    assert ax.get_yscale() == ("log" if spans_decades else "linear")
    narrow = lv.Comparison([lv.Bound.upper_bound(2.0, "inf", "k4", rounding="x"),
                            lv.Bound.upper_bound(3.0, "inf", "k3", rounding="x")])
    assert plot_figure([("m", narrow)], ["inf"]).axes[0].get_yscale() == "linear"


def test_shape_advice_names_the_command_line_fix(tmp_path):
    torch = pytest.importorskip("torch")
    path = tmp_path / "lin.pt"
    torch.save(torch.nn.Sequential(torch.nn.Linear(64, 8), torch.nn.ReLU(), torch.nn.Linear(8, 2)), path)
    res = _cli("bound", path, "--input-shape", "1,8,8", "--method", "k4")
    assert res.returncode == 2 and "--input-shape 64" in res.stderr
    assert _cli("bound", path, "--input-shape", "64", "--method", "k4", "--no-lower").returncode == 0


def test_l2_values_are_the_same_in_every_process(tmp_path):
    """Spectral norms of matrices wider than 32 went through ARPACK with a random start vector: kstar and k1 in l2
    differed in the last bits from run to run.  Three processes must print the same numbers."""
    path = _mlp_file(tmp_path, (40, 48, 40, 3), seed=2)
    outputs = {_cli("bound", path, "--norm", "2", "--method", "kstar,k1", "--no-lower", "--json").stdout for _ in range(3)}
    values = {tuple(r["value"] for r in json.loads(out)["results"]) for out in outputs}
    assert len(values) == 1 and all(v > 0 for v in next(iter(values)))
