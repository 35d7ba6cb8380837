"""Score aggregation: every strategy on hand-made scores with hand-computed expectations."""

from __future__ import annotations

import numpy as np
import pytest

from forgerydet.errors import ForgeryDetError
from forgerydet.scan.aggregate import STRATEGIES, aggregate, confident, frame_interval, track_scores


def test_mean():
    assert aggregate([0.2, 0.4, 0.9], "mean") == pytest.approx(0.5)  # 1.5 / 3


def test_max_then_mean():
    scores = [0.1, 0.9, 0.3, 0.2, 0.4]
    frames = [0, 0, 1, 2, 2]
    # per-frame max: frame 0 -> 0.9, frame 1 -> 0.3, frame 2 -> 0.4; mean = 1.6 / 3
    assert aggregate(scores, "max-then-mean", frame_ids=frames) == pytest.approx(1.6 / 3)
    assert aggregate(scores, "mean") == pytest.approx(1.9 / 5)  # differs from the plain mean
    with pytest.raises(ValueError, match="frame_ids"):
        aggregate(scores, "max-then-mean")


def test_confident_fake_branch_32_faces():
    # 14 faces at 0.9, 18 at 0.5: 14 confident fakes > 32 // 2.5 = 12 and > 11 -> mean of the fakes = 0.9
    s = [0.9] * 14 + [0.5] * 18
    assert aggregate(s, "confident") == pytest.approx(0.9)


def test_confident_not_enough_fakes_falls_back_to_mean():
    # 12 at 0.9, 20 at 0.5: 12 is not > 12; no face < 0.2 -> mean of all = (10.8 + 10) / 32 = 0.65
    s = [0.9] * 12 + [0.5] * 20
    assert aggregate(s, "confident") == pytest.approx(0.65)


def test_confident_real_branch():
    # 10 faces all < 0.2 (10 > 0.9 * 10): mean of them = (9 * 0.1 + 0.15) / 10 = 0.105
    assert aggregate([0.1] * 9 + [0.15], "confident") == pytest.approx(0.105)
    # 9 of 10 confident reals is not > 9, and 1 fake is not > 10 // 2.5 = 4 -> mean of all = 1.85 / 10
    assert aggregate([0.1] * 9 + [0.95], "confident") == pytest.approx(0.185)


def test_confident_scales_to_few_faces():
    # 5 faces, 3 > 0.8: 3 > 5 // 2.5 = 2 and 3 > 11 * 5 / 32 = 1.72 -> mean(0.9, 0.9, 0.95) = 2.75 / 3.
    # (Unscaled, "> 11 fakes" could never hold for 5 faces and the answer would be the mean, 0.63.)
    assert aggregate([0.9, 0.9, 0.95, 0.3, 0.1], "confident") == pytest.approx(2.75 / 3)


def _selimsef_original(pred, t=0.8):
    """The DFDC winner's rule with its absolute count of 11, as written for 32 faces per video."""
    pred = np.asarray(pred)
    fakes = np.count_nonzero(pred > t)
    if fakes > len(pred) // 2.5 and fakes > 11:
        return np.mean(pred[pred > t])
    if np.count_nonzero(pred < 0.2) > 0.9 * len(pred):
        return np.mean(pred[pred < 0.2])
    return np.mean(pred)


@pytest.mark.parametrize("n", [30, 32, 64, 100])
def test_confident_equals_original_from_30_faces(n):
    # from 30 faces on, floor(n / 2.5) >= 12 > 11, so the scaled and the original rule agree exactly
    rng = np.random.default_rng(n)
    for _ in range(50):
        s = rng.beta(rng.uniform(0.2, 3), rng.uniform(0.2, 3), n)
        assert confident(s) == pytest.approx(_selimsef_original(s))


def test_track_max_and_track_scores():
    scores = [0.2, 0.4, 0.9, 0.7]
    tracks = [0, 0, 1, 1]
    assert track_scores(scores, tracks, "mean") == pytest.approx({0: 0.3, 1: 0.8})
    # the most suspicious person decides: track means 0.3 and 0.8 -> 0.8
    assert aggregate(scores, "track-max", track_ids=tracks) == pytest.approx(0.8)
    with pytest.raises(ValueError, match="track_ids"):
        aggregate(scores, "track-max")


def test_track_scores_confident_per_track():
    # track 0: 3 faces [0.1, 0.1, 0.1] all < 0.2 -> 0.1; track 1: [0.9, 0.9, 0.5]: 2 fakes > 3 // 2.5 = 1
    # and > 11 * 3 / 32 -> 0.9
    out = track_scores([0.1, 0.9, 0.1, 0.9, 0.1, 0.5], [0, 1, 0, 1, 0, 1], "confident")
    assert out == pytest.approx({0: 0.1, 1: 0.9})


def test_low_confidence_faces_left_out():
    scores, conf = [0.9, 0.1, 0.2], [0.5, 0.99, 0.95]
    assert aggregate(scores, "mean", confidences=conf, min_confidence=0.9) == pytest.approx(0.15)
    assert aggregate(scores, "mean", confidences=conf) == pytest.approx(0.4)  # default keeps all
    with pytest.raises(ForgeryDetError, match="confidence"):
        aggregate(scores, "mean", confidences=conf, min_confidence=0.999)


@pytest.mark.parametrize("strategy", STRATEGIES)
def test_empty_input_raises(strategy):
    with pytest.raises(ForgeryDetError, match="no face"):
        aggregate([], strategy, track_ids=[], frame_ids=[])


def test_unknown_strategy_lists_valid_ones():
    with pytest.raises(ForgeryDetError, match="median.*mean, max-then-mean, confident"):
        aggregate([0.5], "median")
    with pytest.raises(ForgeryDetError, match="choose one of"):
        track_scores([0.5], [0], "median")


def test_every_strategy_gives_a_probability():
    rng = np.random.default_rng(0)
    s = rng.uniform(0, 1, 40)
    ids = np.repeat(np.arange(20), 2)  # 20 frames, 2 faces (tracks 0 and 1) each
    for strategy in STRATEGIES:
        v = aggregate(s, strategy, track_ids=np.tile([0, 1], 20), frame_ids=ids)
        assert s.min() <= v <= s.max()


def _video(n_frames: int, seed: int = 0, faces_per_frame: int = 2):
    rng = np.random.default_rng(seed)
    s = rng.beta(2, 5, n_frames * faces_per_frame)  # (F,) face scores
    frames = np.repeat(np.arange(n_frames) * 10, faces_per_frame)  # frame indices, not 0..n-1
    tracks = np.tile(np.arange(faces_per_frame), n_frames)
    return s, frames, tracks


@pytest.mark.parametrize("strategy", STRATEGIES)
def test_frame_interval_is_aggregate_over_resampled_frames(strategy):
    s, frames, tracks = _video(12)
    lo, hi = frame_interval(s, strategy, frame_ids=frames, track_ids=tracks, level=0.8, n_boot=300, seed=3)
    # the same resamplings, each aggregated the plain way
    draws = np.random.default_rng(3).integers(0, 12, (300, 12))
    vals = []
    for d in draws:
        idx = np.concatenate([np.flatnonzero(frames == 10 * k) for k in d])
        new_frames = np.repeat(np.arange(12), 2)  # a frame drawn twice counts twice
        vals.append(aggregate(s[idx], strategy, frame_ids=new_frames, track_ids=tracks[idx]))
    want = np.quantile(vals, [0.1, 0.9])
    np.testing.assert_allclose([lo, hi], want, atol=1e-12)
    score = aggregate(s, strategy, frame_ids=frames, track_ids=tracks)
    assert lo < score < hi and lo < hi
    assert frame_interval(s, strategy, frame_ids=frames, track_ids=tracks, level=0.8, n_boot=300, seed=3) == (lo, hi)


def test_frame_interval_narrows_with_more_frames_and_is_none_for_one_frame():
    widths = []
    for n in (16, 256):
        s, frames, _ = _video(n, seed=1)
        lo, hi = frame_interval(s, "max-then-mean", frame_ids=frames)
        widths.append(hi - lo)
    assert widths[1] < widths[0] / 2.5  # ~1/sqrt(frames): 4x narrower for 16x the frames, give or take
    assert frame_interval([0.2, 0.9], "max-then-mean", frame_ids=[5, 5]) is None  # one frame: an image
    assert frame_interval([0.4] * 6, "mean", frame_ids=range(6)) == pytest.approx((0.4, 0.4))  # no spread, no width
    with pytest.raises(ValueError, match="frame_ids has 2 entries for 3 scores"):
        frame_interval([0.1, 0.2, 0.3], "mean", frame_ids=[1, 2])
