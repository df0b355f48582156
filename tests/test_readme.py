"""The README's Python API example runs as written."""

import re
from pathlib import Path

README = Path(__file__).resolve().parents[1] / "README.md"


def test_readme_python_example_runs(tmp_path, monkeypatch, capsys):
    blocks = re.findall(r"```python\n(.*?)```", README.read_text(), re.S)
    api = [b for b in blocks if "import lipverify as lv" in b]
    assert api, "the README has no Python API example"
    monkeypatch.chdir(tmp_path)
    for block in api:
        exec(compile(block, str(README), "exec"), {})
    assert "k4" in capsys.readouterr().out


def test_readme_npz_example_loads(tmp_path, monkeypatch):
    import lipverify as lv

    block = next(b for b in re.findall(r"```python\n(.*?)```", README.read_text(), re.S) if "np.savez" in b)
    monkeypatch.chdir(tmp_path)
    exec(compile(block, str(README), "exec"), {})
    assert lv.load(tmp_path / "m.npz").input_shape == (2,)
