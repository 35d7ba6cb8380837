"""Calibration: temperature fit, threshold at a false-positive rate on real faces, the training loop's
stored calibration, the `calibrate` command; the time budget, LN-tuning and the no-reference ablation."""

from __future__ import annotations

import numpy as np
import pytest

from forgerydet.errors import ForgeryDetError
from forgerydet.model.calibration import (PRECISION_CHOICES, calibrate, check_precision, fit_fusion, fit_temperature,
                                         fused_logits, nearest_similarity, probability_formula, sigmoid,
                                         threshold_at_fpr)


def test_temperature_recovers_the_true_scale():
    rng = np.random.default_rng(0)
    z = rng.normal(0, 2, 20000)  # true logits
    y = (rng.random(z.size) < 1 / (1 + np.exp(-z))).astype(int)
    t = fit_temperature(3.0 * z, y)  # an over-confident model: logits 3x too large
    assert t == pytest.approx(3.0, rel=0.05)
    assert fit_temperature(z, np.zeros_like(y)) == 1.0  # one class: nothing to fit
    assert fit_temperature(40.0 * z, y) == pytest.approx(40.0, rel=0.05)  # past the old search's end at T = 20


def test_a_real_face_scored_near_one_stays_below_the_threshold():
    """The threshold was clipped to 1 - 1e-6, under a real face at 0.9999995, which it then called FAKE at a 5 %
    target that allowed none of 15."""
    reals = np.r_[np.linspace(0.1, 0.9, 14), 0.9999995]
    thr = threshold_at_fpr(reals, 0.05)
    assert 0.9999995 < thr < 1.0 and (reals >= thr).sum() == 0
    assert threshold_at_fpr(np.r_[reals[:-1], 1.0], 0.05) < 1.0  # a real at exactly 1.0 cannot be kept under it


def test_threshold_at_fpr_allows_floor_of_the_rate_as_written():
    """--fpr 0.29 on 100 reals let 28 of them be called FAKE, not 29: 0.29 x 100 is 28.999999999999996 in binary,
    and floor took it to 28 (0.57 x 200 likewise 113 for 114)."""
    reals = np.arange(100) / 100.0
    assert int((reals >= threshold_at_fpr(reals, 0.29)).sum()) == 29
    reals = np.arange(200) / 200.0
    assert int((reals >= threshold_at_fpr(reals, 0.57)).sum()) == 114
    assert int((reals >= threshold_at_fpr(reals, 0.05)).sum()) == 10  # the usual rate: as before


def test_threshold_at_fpr_is_exact_on_a_worked_example():
    reals = np.array([0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9, 0.95])
    assert threshold_at_fpr(reals, 0.10) == 0.95  # one of ten reals may be >= the threshold
    assert threshold_at_fpr(reals, 0.25) == 0.9  # floor(2.5) = 2 reals
    thr = threshold_at_fpr(reals, 0.05)  # none may: just above the highest real
    assert thr > 0.95 and (reals >= thr).sum() == 0
    c = calibrate(np.array([-2.0, -1.0, 0.0, 1.0, 2.0, 3.0]), np.array([0, 0, 0, 1, 1, 1]), fpr=0.34)
    assert c["val_fpr"] <= 0.34 and c["val_reals"] == 3 and c["val_fakes"] == 3


def _fusion_data(n: int = 20000, seed: int = 0):
    rng = np.random.default_rng(seed)
    logit, sim = rng.normal(0, 2, n), rng.normal(0.6, 0.1, n)
    y = (rng.random(n) < 1 / (1 + np.exp(-(0.8 * logit - 6.0 * sim + 3.0)))).astype(int)
    return logit, sim, y


def test_bank_fusion_recovers_the_true_weights_and_keeps_its_false_positive_rate():
    logit, sim, y = _fusion_data()
    f = fit_fusion(logit, sim, y)
    assert f["logit"] == pytest.approx(0.8, rel=0.08) and f["similarity"] == pytest.approx(-6.0, rel=0.08)
    assert f["bias"] == pytest.approx(3.0, rel=0.1)
    np.testing.assert_allclose(fused_logits(logit[:3], sim[:3], f), f["logit"] * logit[:3] + f["similarity"] * sim[:3] + f["bias"])
    c = calibrate(logit, y, fpr=0.05, similarities=sim)
    bf = c["bank_fusion"]
    reals = sigmoid(fused_logits(logit, sim, bf))[y == 0]
    assert bf["val_fpr"] == pytest.approx(float(np.mean(reals >= bf["threshold"]))) and bf["val_fpr"] <= 0.05
    assert bf["val_tpr"] > c["val_tpr"]  # the similarity is evidence here: more fakes caught at the same FPR
    assert "bank_fusion" not in calibrate(logit, y, fpr=0.05)  # no similarities given: temperature only


def test_bank_fusion_is_dropped_when_the_similarity_is_no_evidence_of_realness():
    logit, sim, y = _fusion_data()
    assert fit_fusion(logit, -sim, y) is None  # similar to the bank = MORE fake: not a bank of real faces
    assert fit_fusion(-logit, sim, y) is None  # the head's logit pointing the wrong way
    assert fit_fusion(logit, sim, np.zeros_like(y)) is None  # one class: nothing to fit
    assert calibrate(logit, y, similarities=-sim)["bank_fusion"] is None


def test_nearest_similarity_is_the_first_retrieved_or_nan_without_a_bank():
    np.testing.assert_array_equal(nearest_similarity(np.array([[0.9, 0.5], [0.7, 0.1]])), [0.9, 0.7])
    assert np.isnan(nearest_similarity(np.zeros((3, 0)))).all() and nearest_similarity(np.zeros((3, 0))).shape == (3,)


def test_check_precision_accepts_the_choices_and_names_them_otherwise():
    for p in PRECISION_CHOICES:
        check_precision(p)
    with pytest.raises(ForgeryDetError, match=r"^--precision 'FP32': use one of fp32, bf16, fp16$"):
        check_precision("FP32")
    check_precision("fp16", "cuda")
    check_precision("bf16", "cpu")
    with pytest.raises(ForgeryDetError, match=r"^--precision fp16 needs a CUDA GPU, not cpu: use bf16 or fp32$"):
        check_precision("fp16", "cpu")


def test_threshold_keeps_its_rate_when_scores_tie_across_the_cut():
    from forgerydet.model.calibration import threshold_at_fpr

    tied = np.array([0.2] * 300 + [0.49594255] * 300)  # 600 copies of 2 faces
    thr = threshold_at_fpr(tied, 0.05)
    assert (tied >= thr).mean() <= 0.05 and thr > 0.49594255
    spread = np.linspace(0, 1, 101)
    assert threshold_at_fpr(spread, 0.05) == pytest.approx(0.96)  # no tie: unchanged, 5 of 101 at or above


def test_the_probability_formula_says_what_a_flip_scan_averages():
    """With --tta flip the fusion's nearest similarity is the mean over the face and its mirror image, not the one
    the face's listed neighbours show; settings.probability did not say so, and a face's p could not be rebuilt."""
    assert probability_formula(False) == "sigmoid(logit / temperature)"
    fused = probability_formula(True, "flip")
    assert fused.startswith("sigmoid(logit * bank_fusion.logit + nearest similarity * bank_fusion.similarity")
    assert "averaged over the face and its mirror image" in fused and "flip" not in probability_formula(True, "none")
