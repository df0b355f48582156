"""Checking a Lipschitz claim (issue 13 item 7): holds / refuted (with a witness) / undecided, in Python and on the
command line, against closed forms written here."""

from __future__ import annotations

import json

import numpy as np
import pytest

import lipverify as lv
from lipverify.cli import main


def _orthogonal(n: int, seed: int) -> np.ndarray:
    q, r = np.linalg.qr(np.random.default_rng(seed).standard_normal((n, n)))
    return q * np.sign(np.diag(r))


def _orthogonal_net(scale: float = 1.0) -> lv.Network:
    """x -> Q3 relu(Q2 relu(Q1 x)) with orthogonal Q's: 1-Lipschitz in l2 (ReLU is 1-Lipschitz coordinatewise);
    scaling Q2 by 1.8 makes it 1.8-Lipschitz near any point where every neuron is active (the Jacobian is 1.8 Q3 Q2 Q1
    there, an orthogonal matrix times 1.8)."""
    return lv.Network([lv.Dense(_orthogonal(4, 0)), lv.ReLU(), lv.Dense(scale * _orthogonal(4, 1)), lv.ReLU(),
                       lv.Dense(_orthogonal(4, 2))])


def test_orthogonal_network_holds_and_its_scaled_copy_is_refuted_with_a_witness():
    v = lv.check_lipschitz(_orthogonal_net(), 1 + 1e-6, 2)
    assert v.verdict == "holds" and v.upper <= 1 + 1e-6 and v.upper_method is not None
    scaled = _orthogonal_net(1.8)
    r = lv.check_lipschitz(scaled, 1 + 1e-6, 2)
    assert r.verdict == "refuted" and r.lower > 1 + 1e-6
    x = np.asarray(r.witness)
    assert x.shape == scaled.input_shape
    # the witness is an independent check: the float Jacobian there (forward mode) has norm above the claim
    assert np.linalg.norm(scaled.jacobian(x), 2) > 1 + 1e-6


def test_undecided_between_the_certified_ends():
    rng = np.random.default_rng(4)
    net = lv.Network([lv.Dense(rng.standard_normal((6, 3))), lv.ReLU(), lv.Dense(rng.standard_normal((2, 6)))])
    upper = min(lv.bound(net, m, norm="inf").value for m in ("k3", "k4", "kstar", "k1", "kcp"))
    lower = lv.lower_bound(net, "inf").value
    assert lower < upper
    v = lv.check_lipschitz(net, (lower + upper) / 2, "inf")
    assert v.verdict == "undecided" and v.upper == pytest.approx(upper) and v.lower == pytest.approx(lower)
    assert v.witness is None


def test_claims_are_checked():
    with pytest.raises(ValueError, match="claim"):
        lv.check_lipschitz(_orthogonal_net(), float("nan"), 2)


def test_cli_check_json_and_exit_codes(tmp_path, capsys):
    path = tmp_path / "net.npz"
    lv.save(_orthogonal_net(1.8), str(path))
    assert main(["check", str(path), "--claim", "1.000001", "--norm", "2", "--json"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert set(out) == {"model", "norm", "claim", "verdict", "upper", "upper_method", "lower", "witness"}
    assert out["verdict"] == "refuted" and out["lower"] > 1.000001 and len(out["witness"]) == 4
    assert main(["check", str(path), "--claim", "2", "--norm", "2"]) == 0
    assert "holds" in capsys.readouterr().out
    assert main(["check", str(path), "--claim", "-1"]) == 2
    capsys.readouterr()
    lv.save(_orthogonal_net(), str(path))  # the text names the claim in full, not rounded to 1
    assert main(["check", str(path), "--claim", "1.000001", "--norm", "2"]) == 0
    text = capsys.readouterr().out
    assert "<= 1.000001" in text and "<= 1\n" not in text


def test_an_l2_claim_only_the_first_order_lipsdp_proves_holds_with_it():
    """20-120-100-5 ReLU MLP: K1 4.25, lipsdp_fast 3.16, LipSDP refused (LMI side 240 > 200), lipsdp_fo 2.54."""
    rng = np.random.default_rng(0)
    sizes = [20, 120, 100, 5]
    layers = []
    for i in range(3):
        layers.append(lv.Dense(rng.normal(size=(sizes[i + 1], sizes[i])) / np.sqrt(sizes[i]), rng.normal(size=sizes[i + 1])))
        if i < 2:
            layers.append(lv.ReLU())
    net = lv.Network(layers)
    verdict = lv.check_lipschitz(net, 2.8, 2)
    assert verdict.verdict == "holds" and verdict.upper_method == "lipsdp_fo" and verdict.upper <= 2.8
    assert verdict.tried["lipsdp_fast"] > 2.8 and "NotApplicableError" in verdict.tried["lipsdp"]
    # the value is an upper bound: above the spectral norm of the Jacobian at sampled points (written here)
    for x in rng.normal(size=(20, 20)):
        j, h = np.eye(20), x
        for layer in net.layers:
            if isinstance(layer, lv.Dense):
                h, j = layer.weight @ h + layer.bias, layer.weight @ j
            else:
                j, h = (h > 0)[:, None] * j, np.maximum(h, 0)
        assert np.linalg.norm(j, 2) <= verdict.upper
