"""Calibration: temperature fit, threshold at a false-positive rate on real faces, the training loop's
stored calibration, the `calibrate` command; the time budget, LN-tuning and the no-reference ablation."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from test_train import make_synthetic_pairs, tcfg
from typer.testing import CliRunner

from forgerydet.calibrate import calibrate, fit_temperature, threshold_at_fpr
from forgerydet.checkpoint import load_checkpoint
from forgerydet.cli import app
from forgerydet.scan import Scanner
from forgerydet.train import set_tuning, train
from tests.helpers import tiny_config, tiny_model


def test_temperature_recovers_the_true_scale():
    rng = np.random.default_rng(0)
    z = rng.normal(0, 2, 20000)  # true logits
    y = (rng.random(z.size) < 1 / (1 + np.exp(-z))).astype(int)
    t = fit_temperature(3.0 * z, y)  # an over-confident model: logits 3x too large
    assert t == pytest.approx(3.0, rel=0.05)
    assert fit_temperature(z, np.zeros_like(y)) == 1.0  # one class: nothing to fit


def test_threshold_at_fpr_is_exact_on_a_worked_example():
    reals = np.array([0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9, 0.95])
    assert threshold_at_fpr(reals, 0.10) == 0.95  # one of ten reals may be >= the threshold
    assert threshold_at_fpr(reals, 0.25) == 0.9  # floor(2.5) = 2 reals
    thr = threshold_at_fpr(reals, 0.05)  # none may: just above the highest real
    assert thr > 0.95 and (reals >= thr).sum() == 0
    c = calibrate(np.array([-2.0, -1.0, 0.0, 1.0, 2.0, 3.0]), np.array([0, 0, 0, 1, 1, 1]), fpr=0.34)
    assert c["val_fpr"] <= 0.34 and c["val_reals"] == 3 and c["val_fakes"] == 3


@pytest.fixture(scope="module")
def pairs(tmp_path_factory):
    return make_synthetic_pairs(tmp_path_factory.mktemp("calib"))


def test_training_stores_calibration_and_keeps_to_the_time_budget(pairs, tmp_path):
    res = train(tcfg(pairs, tmp_path / "run", epochs=50, max_minutes=0.001), tiny_config(bank_size=64))
    assert len(res["history"]) == 1  # the budget ended the run at the first epoch end
    ck = load_checkpoint(res["best"])
    extra = ck.meta["extra"]
    cal = extra["calibration"]
    assert 0 < extra["threshold"] < 1 and extra["temperature"] > 0 and cal["target_fpr"] == 0.05
    assert cal["val_fpr"] <= 0.05 + 1e-9
    scanner = Scanner(res["best"])
    assert scanner.threshold == extra["threshold"] and scanner.temperature == extra["temperature"]
    r = CliRunner().invoke(app, ["calibrate", "--checkpoint", res["best"], "--pairs", str(pairs), "--fpr", "0.2",
                                 "--device", "cpu"])
    assert r.exit_code == 0, r.output
    again = load_checkpoint(res["best"]).meta["extra"]["calibration"]
    assert again["target_fpr"] == 0.2 and again["val_fpr"] <= 0.2 + 1e-9
    r = CliRunner().invoke(app, ["calibrate", "--checkpoint", res["best"], "--pairs", str(pairs), "--fpr", "1.5"])
    assert r.exit_code == 1 and "Traceback" not in r.output


def test_norm_tuning_trains_only_normalisation_in_the_backbone():
    m = tiny_model()
    total = sum(p.numel() for p in m.trainable_parameters())
    n = set_tuning(m, "norm")
    assert 0 < n < total
    trainable = {k for k, p in m.named_parameters() if p.requires_grad}
    assert any(k.startswith("attention.") for k in trainable) and any(k.startswith("head.") for k in trainable)
    assert not any(k.startswith("key_encoder.") for k in trainable)
    backbone = [k for k in trainable if k.startswith("encoder.backbone.")]
    assert backbone and all(".bn" in k or "norm" in k for k in backbone), backbone


def test_no_reference_ablation_ignores_bank_and_mode():
    m = tiny_model(reference="none").eval()
    x = torch.rand(3, 3, 64, 64)
    a, b = m(x, "single"), m(x, "pair", reference=x.flip(0))
    assert torch.equal(a["logits"], b["logits"]) and a["neighbours"].shape == (3, 0)
    assert m.bank.filled == 0  # it never needed one
