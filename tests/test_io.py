import numpy as np
import pytest

import lipverify as lv


def _net():
    rng = np.random.default_rng(0)
    return lv.Network([lv.Flatten(), lv.Dense(rng.standard_normal((3, 4)), rng.standard_normal(3)), lv.LeakyReLU(0.25),
                       lv.Dense(rng.standard_normal((2, 3))), lv.Tanh()], input_shape=(1, 2, 2))


def test_npz_round_trip_keeps_forward_and_bounds(tmp_path):
    net = _net()
    path = tmp_path / "net.npz"
    lv.save(net, path)
    back = lv.load(path)
    assert back.input_shape == (1, 2, 2)
    assert [type(layer) for layer in back.layers] == [type(layer) for layer in net.layers]
    x = np.random.default_rng(1).standard_normal((5, 1, 2, 2))
    np.testing.assert_array_equal(back(x), net(x))
    for m in ("kstar", "k3", "k4"):
        assert lv.bound(back, m, norm="inf").value == lv.bound(net, m, norm="inf").value


def test_missing_corrupt_and_unsupported_files_name_the_file(tmp_path):
    with pytest.raises(lv.ModelFormatError, match="no such file"):
        lv.load(tmp_path / "missing.npz")
    bad = tmp_path / "bad.npz"
    bad.write_bytes(b"not a zip archive")
    with pytest.raises(lv.ModelFormatError, match=r"bad\.npz: not a readable"):
        lv.load(bad)
    with pytest.raises(lv.ModelFormatError, match="unsupported model format '.h5'"):
        lv.load(tmp_path / "model.h5")


def test_format_errors_name_the_layer(tmp_path):
    path = tmp_path / "x.npz"
    np.savez(path, format="lipverify-npz", version=1, input_shape=[2], layers=["dense", "softmax"],
             **{"0.weight": np.ones((2, 2))})
    with pytest.raises(lv.ModelFormatError, match="layer 1: unsupported layer type 'softmax'"):
        lv.load(path)
    np.savez(path, format="lipverify-npz", version=1, input_shape=[3], layers=["dense"], **{"0.weight": np.ones((2, 2))})
    with pytest.raises(lv.ModelFormatError, match=r"layer 0 \(Dense\(2->2\)\): input shape \(3,\)"):
        lv.load(path)
    np.savez(path, format="lipverify-npz", version=1, input_shape=[2], layers=["dense"], **{"0.weight": np.full((2, 2), np.nan)})
    with pytest.raises(lv.ModelFormatError, match="layer 0 .dense.: Dense weight: entry"):
        lv.load(path)
    np.savez(path, format="something-else")
    with pytest.raises(lv.ModelFormatError, match="missing 'format'"):
        lv.load(path)
