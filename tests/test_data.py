"""The shipped data: the Fashion-MNIST test images fixture (``lipverify.data.fashion_test``) and its script."""

import gzip
from fnmatch import fnmatch
from pathlib import Path

import numpy as np
import pytest

import lipverify as lv
from lipverify.data import FASHION_TEST, fashion_test
from lipverify.data.make_fixture import fixture_arrays
from lipverify.data.train_fashion_cnn import DATA

ROOT = Path(__file__).resolve().parent.parent
MODEL = Path(lv.__file__).parent / "data" / "fashion_cnn.onnx"
#: the CNN's accuracy on the 100 shipped images, measured with onnx's reference evaluator (83 of 100)
MEASURED_ACCURACY = 0.83


def test_fixture_has_the_documented_arrays():
    x, y = fashion_test()
    assert x.shape == (100, 1, 28, 28) and x.dtype == np.float64
    assert y.shape == (100,) and y.dtype == np.int64
    assert set(np.unique(y)) <= set(range(10)) and len(np.unique(y)) == 10
    # grey levels k / 255, k in 0..255 (the training script's scaling), every value the float64 nearest k / 255
    k = np.rint(x * 255)
    assert k.min() == 0 and k.max() == 255
    assert np.array_equal(x, k / 255.0)
    # the first labels of Fashion-MNIST's test file: ankle boot, pullover, trouser, trouser, shirt
    assert y[:5].tolist() == [9, 2, 1, 1, 6]


def test_fashion_test_returns_the_first_n_images_and_refuses_more_than_shipped():
    x, y = fashion_test()
    x5, y5 = fashion_test(5)
    assert np.array_equal(x5, x[:5]) and np.array_equal(y5, y[:5])
    x5[0, 0, 0, 0] = -1.0  # a copy: the next call is unaffected
    assert fashion_test(1)[0][0, 0, 0, 0] == x[0, 0, 0, 0]
    for bad in (0, 101):
        with pytest.raises(ValueError, match=r"n must be in 1\.\.100"):
            fashion_test(bad)


def test_the_shipped_cnn_classifies_the_fixture_as_measured():
    """Accuracy from onnx's own reference evaluator (independent of lipverify's forward pass), and lipverify's
    forward pass predicts the same classes."""
    import onnx
    from onnx.reference import ReferenceEvaluator

    x, y = fashion_test()
    model = onnx.load(str(MODEL))
    logits = ReferenceEvaluator(model).run(None, {model.graph.input[0].name: x})[0]
    accuracy = float(np.mean(logits.argmax(1) == y))
    assert accuracy == MEASURED_ACCURACY
    assert accuracy >= 0.7
    net = lv.load(MODEL)
    assert [int(np.argmax(net(xi))) for xi in x] == logits.argmax(1).tolist()


def _write_idx(path: Path, array: np.ndarray) -> None:
    """An IDX file (the MNIST format: zero bytes, type 0x08 = uint8, the rank, big-endian sizes, data), gzipped."""
    header = bytes([0, 0, 8, array.ndim]) + b"".join(int(n).to_bytes(4, "big") for n in array.shape)
    with gzip.open(path, "wb") as f:
        f.write(header + array.astype(np.uint8).tobytes())


def test_make_fixture_reads_the_idx_files_in_order_and_scales_by_255(tmp_path):
    rng = np.random.default_rng(0)
    images = rng.integers(0, 256, (4, 28, 28))
    labels = np.array([3, 0, 9, 1])
    _write_idx(tmp_path / "t10k-images-idx3-ubyte.gz", images)
    _write_idx(tmp_path / "t10k-labels-idx1-ubyte.gz", labels)
    x, y = fixture_arrays(3, tmp_path)
    assert x.shape == (3, 1, 28, 28) and x.dtype == np.float64 and y.dtype == np.int64
    assert np.array_equal(x[:, 0], images[:3] / 255.0)
    assert y.tolist() == [3, 0, 9]
    with pytest.raises(ValueError, match=r"n must be in 1\.\.4"):
        fixture_arrays(5, tmp_path)


@pytest.mark.skipif(not DATA.is_dir(), reason="Debian's dataset-fashion-mnist is not installed (only the .npz ships)")
def test_the_shipped_fixture_is_what_the_script_writes(tmp_path):
    from lipverify.data.make_fixture import main

    main(["--out", str(tmp_path / "f.npz")])
    assert (tmp_path / "f.npz").read_bytes() == FASHION_TEST.read_bytes()


def test_package_data_ships_every_data_file():
    """pyproject's package-data patterns cover every non-Python file of lipverify/data (CI installs the package
    non-editable: a file left out is missing there)."""
    tomllib = pytest.importorskip("tomllib", reason="tomllib is in the standard library from Python 3.11")
    patterns = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]["package-data"]["lipverify"]
    files = [p for p in (ROOT / "lipverify" / "data").iterdir() if p.is_file() and p.suffix not in (".py", ".pyc")]
    assert {p.name for p in files} >= {"fashion_cnn.onnx", "fashion_test100.npz"}
    for p in files:
        assert any(fnmatch(f"data/{p.name}", pattern) for pattern in patterns), p.name
