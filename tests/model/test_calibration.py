"""Calibration: temperature fit, threshold at a false-positive rate on real faces, the training loop's
stored calibration, the `calibrate` command; the time budget, LN-tuning and the no-reference ablation."""

from __future__ import annotations

import numpy as np
import pytest

from forgerydet.model.calibration import calibrate, fit_temperature, threshold_at_fpr


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
