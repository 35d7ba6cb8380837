"""Calibration of a detector's scores on held-out validation faces: a temperature for the logits
(probabilities that mean something) and a decision threshold chosen on REAL faces at a target
false-positive rate. Both are stored in the checkpoint and used by `scan`, `evaluate` and the report.

Why a false-positive rate on real faces and not an EER on real+pseudo-fake faces: the validation fakes
are self-blended pseudo-fakes, easier than real forgeries, so an EER threshold would sit too high for
real forgeries; the real faces, on the other hand, are genuine, so "at most 5% of held-out real faces
called FAKE" is a promise the threshold can keep.
"""

from __future__ import annotations

import numpy as np

DEFAULT_FPR = 0.05


def sigmoid(logits: np.ndarray, temperature: float = 1.0) -> np.ndarray:
    """Fake probabilities of logits, in float64: sigmoid(logit / temperature)."""
    return 1.0 / (1.0 + np.exp(-np.asarray(logits, np.float64) / temperature))


def _nll(logits: np.ndarray, labels: np.ndarray, t: float) -> float:
    z = logits / t
    # log(1 + exp(-|z|)) + max(z, 0) - y z: the stable binary cross-entropy of sigmoid(z)
    return float(np.mean(np.logaddexp(0.0, z) - labels * z))


def fit_temperature(logits: np.ndarray, labels: np.ndarray) -> float:
    """The T > 0 minimising the NLL of sigmoid(logit / T): log-spaced grid, then a finer grid around the best."""
    logits = np.asarray(logits, np.float64)
    labels = np.asarray(labels, np.float64)
    if len(np.unique(labels)) < 2:
        return 1.0
    grid = np.exp(np.linspace(np.log(0.05), np.log(20.0), 161))
    best = grid[int(np.argmin([_nll(logits, labels, t) for t in grid]))]
    fine = np.exp(np.linspace(np.log(best) - 0.05, np.log(best) + 0.05, 41))
    return float(fine[int(np.argmin([_nll(logits, labels, t) for t in fine]))])


def threshold_at_fpr(real_probs: np.ndarray, fpr: float = DEFAULT_FPR) -> float:
    """The smallest threshold that calls at most `fpr` of these real faces FAKE (score >= threshold)."""
    p = np.sort(np.asarray(real_probs, np.float64))
    if p.size == 0:
        return 0.5
    k = int(np.floor(fpr * p.size))  # how many reals may be at or above the threshold
    thr = p[p.size - k] if k > 0 else np.nextafter(p[-1], 1.0)
    return float(np.clip(thr, 1e-6, 1.0 - 1e-6))


def calibrate(logits: np.ndarray, labels: np.ndarray, fpr: float = DEFAULT_FPR) -> dict[str, float]:
    """Temperature (on all validation faces) and threshold (on the real ones) from validation logits."""
    logits = np.asarray(logits, np.float64)
    labels = np.asarray(labels, np.int64)
    t = fit_temperature(logits, labels)
    probs = sigmoid(logits, t)
    thr = threshold_at_fpr(probs[labels == 0], fpr)
    fake = probs[labels == 1]
    return {
        "temperature": t,
        "threshold": thr,
        "target_fpr": fpr,
        "val_fpr": float(np.mean(probs[labels == 0] >= thr)) if (labels == 0).any() else float("nan"),
        "val_tpr": float(np.mean(fake >= thr)) if fake.size else float("nan"),
        "val_reals": int((labels == 0).sum()),
        "val_fakes": int((labels == 1).sum()),
    }
