"""Per-face fake probabilities -> one score per track and per file.

Strategies (STRATEGIES):
  mean           mean of all face scores.
  max-then-mean  per frame the highest face score, then the mean over frames (SBI's video protocol:
                 a frame is as fake as its most suspicious face).
  confident      selimsef's DFDC-winning `confident_strategy`: when many faces are confidently fake,
                 the mean of those; else when nearly all are confidently real, the mean of those;
                 else the mean of all. Its counts were tuned for 32 faces per video; here they scale
                 with the number of faces.
  track-max      mean per face track, then the highest track (a file is as fake as its most suspicious
                 person: face swaps often replace only one of several people).
"""

from __future__ import annotations

from typing import Any

import numpy as np

from forgerydet.errors import ForgeryDetError

STRATEGIES: tuple[str, ...] = ("mean", "max-then-mean", "confident", "track-max")

# confident_strategy's constants (selimsef/dfdc_deepfake_challenge, kernel_utils.py), from 32 faces per video.
CONFIDENT_FAKE = 0.8  # p > this is a confident fake
CONFIDENT_REAL = 0.2  # p < this is a confident real
FAKE_DIVISOR = 2.5  # more than floor(n / 2.5) confident fakes ...
FAKE_MIN_PER_32 = 11  # ... and more than 11 of 32 faces (11/32 of n here; once scaled it seldom binds)
REAL_SHARE = 0.9  # more than 90% confident reals


def _check_strategy(strategy: str) -> None:
    if strategy not in STRATEGIES:
        raise ForgeryDetError(f"unknown aggregation strategy {strategy!r}: choose one of {', '.join(STRATEGIES)}")


def _as_scores(scores: Any) -> np.ndarray:
    s = np.asarray(scores, dtype=np.float64).reshape(-1)
    if s.size == 0:
        raise ForgeryDetError("no face scores to aggregate: no face was found, so there is nothing to judge")
    if not np.isfinite(s).all():
        raise ValueError(f"{int((~np.isfinite(s)).sum())} face scores are NaN or infinite")
    return s


def _ids(ids: Any, n: int, name: str) -> np.ndarray:
    a = np.asarray(ids).reshape(-1)
    if a.size != n:
        raise ValueError(f"{name} has {a.size} entries for {n} scores")
    return a


def confident(scores: Any, fake_threshold: float = CONFIDENT_FAKE, real_threshold: float = CONFIDENT_REAL) -> float:
    """selimsef's confident_strategy, with its absolute count of 11 (of 32 faces) scaled to len(scores)."""
    s = _as_scores(scores)
    n = s.size
    fakes = s > fake_threshold
    n_fakes = int(fakes.sum())
    if n_fakes > n // FAKE_DIVISOR and n_fakes > FAKE_MIN_PER_32 * n / 32:
        return float(s[fakes].mean())
    reals = s < real_threshold
    if reals.sum() > REAL_SHARE * n:
        return float(s[reals].mean())
    return float(s.mean())


def aggregate(
    scores: Any,
    strategy: str = "mean",
    *,
    track_ids: Any = None,
    frame_ids: Any = None,
    confidences: Any = None,
    min_confidence: float = 0.0,
) -> float:
    """One fake probability for a file from its per-face scores.

    track_ids / frame_ids: one per face; 'max-then-mean' needs frame_ids, 'track-max' needs track_ids.
    confidences: detector confidence per face; faces below `min_confidence` are left out (default: none).
    Raises ForgeryDetError on no faces (or none confident enough) and on an unknown strategy.
    """
    _check_strategy(strategy)
    s = _as_scores(scores)
    keep = np.ones(s.size, dtype=bool)
    if confidences is not None:
        keep = _ids(confidences, s.size, "confidences").astype(np.float64) >= min_confidence
        if not keep.any():
            raise ForgeryDetError(
                f"no face has detector confidence >= {min_confidence}: lower the confidence threshold"
            )
    s = s[keep]
    if strategy == "mean":
        return float(s.mean())
    if strategy == "confident":
        return confident(s)
    if strategy == "max-then-mean":
        if frame_ids is None:
            raise ValueError("strategy 'max-then-mean' needs frame_ids (one per face)")
        frames = _ids(frame_ids, keep.size, "frame_ids")[keep]
        return float(np.mean([s[frames == f].max() for f in np.unique(frames)]))
    # track-max
    if track_ids is None:
        raise ValueError("strategy 'track-max' needs track_ids (one per face)")
    tracks = _ids(track_ids, keep.size, "track_ids")[keep]
    return float(max(s[tracks == t].mean() for t in np.unique(tracks)))


def track_scores(scores: Any, track_ids: Any, strategy: str = "mean", *, frame_ids: Any = None) -> dict[int, float]:
    """One score per face track, each track's faces aggregated with `strategy`.

    A track holds at most one face per frame, so 'max-then-mean' and 'track-max' both reduce to the
    mean there; 'confident' applies selimsef's rule to each track's faces.
    """
    _check_strategy(strategy)
    s = _as_scores(scores)
    tracks = _ids(track_ids, s.size, "track_ids")
    frames = None if frame_ids is None else _ids(frame_ids, s.size, "frame_ids")
    out: dict[int, float] = {}
    for t in np.unique(tracks):
        m = tracks == t
        if strategy == "confident":
            out[int(t)] = confident(s[m])
        elif strategy == "max-then-mean" and frames is not None:
            out[int(t)] = aggregate(s[m], strategy, frame_ids=frames[m])
        else:
            out[int(t)] = float(s[m].mean())
    return out


def frame_interval(scores: Any, strategy: str = "mean", *, frame_ids: Any, track_ids: Any = None, level: float = 0.9,
                   n_boot: int = 1000, seed: int = 0) -> tuple[float, float] | None:
    """How much a file's score depends on which frames were sampled: the central `level` interval of `aggregate`
    over `n_boot` resamplings of its frames with replacement (each frame's faces drawn together; seeded, so a
    file always gets the same interval). None with fewer than two frames (an image). Sampled frames of one video
    are alike, so other frames of the same video would vary at least this much."""
    _check_strategy(strategy)
    s = _as_scores(scores)
    uniq, inv = np.unique(_ids(frame_ids, s.size, "frame_ids"), return_inverse=True)
    n = uniq.size
    if n < 2:
        return None
    draws = np.random.default_rng(seed).integers(0, n, (n_boot, n))  # (R,n) frames of each resampling
    if strategy == "mean":
        vals = np.bincount(inv, s, n)[draws].sum(1) / np.bincount(inv, minlength=n)[draws].sum(1)
    elif strategy == "max-then-mean":
        top = np.full(n, -np.inf)
        np.maximum.at(top, inv, s)  # (n,) each frame's highest face score
        vals = top[draws].mean(1)
    else:  # not per-frame sums: aggregate each resampling's faces (~0.1 s for 1,000)
        tracks = None if track_ids is None else _ids(track_ids, s.size, "track_ids")
        members = [np.flatnonzero(inv == k) for k in range(n)]
        vals = np.empty(n_boot)
        for r, d in enumerate(draws):
            idx = np.concatenate([members[k] for k in d])
            vals[r] = aggregate(s[idx], strategy, track_ids=None if tracks is None else tracks[idx])
    lo, hi = np.quantile(vals, [(1 - level) / 2, (1 + level) / 2])
    return float(lo), float(hi)
