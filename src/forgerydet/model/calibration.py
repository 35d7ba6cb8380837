"""Calibration of a detector's scores on held-out validation faces: a temperature for the logits
(probabilities that mean something) and a decision threshold chosen on REAL faces at a target
false-positive rate. Both are stored in the checkpoint and used by `scan`, `evaluate` and the report.

The bank fusion: in 'single' mode a face's cosine similarity to its nearest real face in the bank is evidence
of its own (bench/bank_use.py: on held-out forgeries the fakes sit farther from the bank than the reals). The
head barely reads it from the difference tokens, so calibration adds it as a second input of a Platt scaling
(a logistic regression on [logit, nearest similarity], fitted on the same validation faces):
p = sigmoid(a * logit + b * similarity + c), with its own threshold at the same false-positive rate. It is
used only against the bank it was fitted with (a person's references or a disk bank have other similarity
distributions); there the temperature and its threshold apply.

Why a false-positive rate on real faces and not an EER on real+pseudo-fake faces: the validation fakes
are self-blended pseudo-fakes, easier than real forgeries, so an EER threshold would sit too high for
real forgeries; the real faces, on the other hand, are genuine, so "at most 5% of held-out real faces
called FAKE" is a promise the threshold can keep.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from forgerydet.errors import ForgeryDetError, option_error

TTA_CHOICES = ("none", "flip")  # how a face is scored: as it is, or averaged with its mirror image (scan, calibrate)


def check_tta(tta: str) -> None:
    """One clear error for a test-time augmentation that is not one of TTA_CHOICES (scan, evaluate, calibrate)."""
    if tta not in TTA_CHOICES:
        raise option_error("--tta", tta, f"use one of {', '.join(TTA_CHOICES)}")


# the arithmetic a face is scored in (scan, evaluate, calibrate): fp32; bf16 (autocast, CPU or CUDA: a scan's model
# stage 1.8x faster on a CPU with AVX512-BF16, the six shared videos' scores within 0.045 of fp32's); fp16 (CUDA only)
PRECISION_CHOICES = ("fp32", "bf16", "fp16")


def check_precision(precision: str, device_type: str | None = None) -> None:
    """One clear error for a precision that is not one of PRECISION_CHOICES, or (given the device type: 'cpu',
    'cuda') one that device cannot compute in: fp16 needs CUDA."""
    if precision not in PRECISION_CHOICES:
        raise option_error("--precision", precision, f"use one of {', '.join(PRECISION_CHOICES)}")
    if precision == "fp16" and device_type is not None and device_type != "cuda":
        raise ForgeryDetError(f"--precision fp16 needs a CUDA GPU, not {device_type}: use bf16 or fp32")


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
    grid = np.exp(np.linspace(np.log(0.01), np.log(500.0), 271))  # T ~ 26 for logits of scale 100 was past 20
    best = grid[int(np.argmin([_nll(logits, labels, t) for t in grid]))]  # 500: a model with no signal at all
    fine = np.clip(np.exp(np.linspace(np.log(best) - 0.05, np.log(best) + 0.05, 41)), grid[0], grid[-1])
    return float(fine[int(np.argmin([_nll(logits, labels, t) for t in fine]))])


def allowed_reals(fpr: float, n: int) -> int:
    """floor(fpr x n), the real faces a threshold at rate `fpr` may call FAKE, of the decimal rate as given: in binary
    0.29 x 100 is 28.999999999999996, which floor made 28 (rounded to 12 digits first, so it is 29)."""
    return int(np.floor(round(fpr * n, 12)))


FEW_REALS = 200  # calibrate and train warn below this many held-out real faces


def few_reals_note(n: int | None, fpr: float | None, option: str, what: str) -> str | None:
    """What a threshold fitted on n held-out real faces at rate fpr (given as `option`) is worth, where they are too
    few (FEW_REALS), for `calibrate` and for `train`, whose epoch ends calibrate the same way; None otherwise."""
    if n is None or fpr is None:
        return None
    top = allowed_reals(fpr, n)
    if top == 0 and n:  # 'rests on the top 0 of them' said nothing
        return (f"{option} {fpr:g} is less than one of the {n} held-out real faces (1/{n} = {1 / n:.3f}): {what} "
                f"sits at the highest real score, and a rate this small cannot be resolved on them; calibrate on more "
                f"real faces, or give a larger {option}")
    if n >= FEW_REALS:
        return None
    # 2 reals gave a threshold of 0.0001, and a real video scanned FAKE
    return (f"only {n} held-out real face(s): at a {fpr:g} false-positive rate {what} rests on the top {top} of them, "
            f"so the rate scans see can be far from it; calibrate on a few hundred or more")


def threshold_at_fpr(real_probs: np.ndarray, fpr: float = DEFAULT_FPR) -> float:
    """A threshold that calls at most floor(fpr x n) of these n real faces FAKE (score >= threshold): the highest
    score among those allowed above it (any threshold down to just above the next real score calls as many), or
    just above them all when none is allowed. It stays below 1: a real face at probability 1.0 cannot be kept
    under it."""
    p = np.sort(np.asarray(real_probs, np.float64))
    if p.size == 0:
        return 0.5
    k = allowed_reals(fpr, p.size)  # how many reals may be at or above the threshold
    thr = p[p.size - k] if k > 0 else np.nextafter(p[-1], 1.0)
    if 0 < k < p.size and p[p.size - k - 1] >= thr:  # the k-th highest is tied with faces below the cut: at that
        thr = np.nextafter(thr, 1.0)  # value more than k would be at or above it, so the tie goes below instead
    return float(np.clip(thr, 1e-6, np.nextafter(1.0, 0.0)))  # 1 - 1e-6 called a real at 0.9999995 FAKE


def nearest_similarity(similarities: np.ndarray) -> np.ndarray:
    """(B,k) retrieved similarities, best first -> (B,) the nearest one, the fusion's second input; NaN where
    nothing was retrieved (the reference='none' ablation), which leaves the fusion out."""
    sims = np.asarray(similarities, np.float64)
    return sims[..., 0] if sims.shape[-1] else np.full(sims.shape[:-1], np.nan)


def probability_formula(fused: bool, tta: str = "none") -> str:
    """How a scan's probability is computed, in words, for its JSON settings: with the bank fusion, or from the
    temperature alone. With the flip the inputs are averaged over the face and its mirror image, so the nearest
    similarity it uses is not the one a face's listed neighbours show."""
    text = ("sigmoid(logit * bank_fusion.logit + nearest similarity * bank_fusion.similarity + bank_fusion.bias)"
            if fused else "sigmoid(logit / temperature)")
    return text + (" (tta flip: logit and nearest similarity averaged over the face and its mirror image; the "
                   "neighbours listed are the face's own, unmirrored)" if tta == "flip" else "")


def fused_logits(logits: np.ndarray, similarities: np.ndarray, fusion: dict[str, float]) -> np.ndarray:
    """a * logit + b * nearest similarity + c (see the module docstring); sigmoid of it is the fake probability."""
    return (fusion["logit"] * np.asarray(logits, np.float64) + fusion["similarity"] * np.asarray(similarities, np.float64)
            + fusion["bias"])


def fit_fusion(logits: np.ndarray, similarities: np.ndarray, labels: np.ndarray) -> dict[str, float] | None:
    """The Platt scaling on [logit, nearest similarity]: {'logit': a, 'similarity': b, 'bias': c}, or None when
    the fit gives the similarity no weight towards REAL (b >= 0) or the logit no weight towards FAKE (a <= 0):
    then the similarity is no evidence on these faces and the temperature alone is kept."""
    from sklearn.linear_model import LogisticRegression

    labels = np.asarray(labels, np.int64)
    if len(np.unique(labels)) < 2:
        return None
    x = np.c_[np.asarray(logits, np.float64), np.asarray(similarities, np.float64)]  # (n,2)
    lr = LogisticRegression(C=1e4, max_iter=1000).fit(x, labels)  # C: next to no shrinkage, 3 numbers
    a, b = (float(v) for v in lr.coef_[0])
    if not (a > 0.0 and b < 0.0):
        return None
    return {"logit": a, "similarity": b, "bias": float(lr.intercept_[0])}


def _rates(probs: np.ndarray, labels: np.ndarray, thr: float) -> dict[str, float]:
    real, fake = probs[labels == 0], probs[labels == 1]
    return {"val_fpr": float(np.mean(real >= thr)) if real.size else float("nan"),
            "val_tpr": float(np.mean(fake >= thr)) if fake.size else float("nan")}


def calibrate(logits: np.ndarray, labels: np.ndarray, fpr: float = DEFAULT_FPR,
              similarities: np.ndarray | None = None) -> dict[str, Any]:
    """Temperature (on all validation faces) and threshold (on the real ones) from validation logits; with the
    faces' nearest-bank similarities also the bank fusion ('bank_fusion': a, b, c and its own threshold and
    rates, or None when the similarity carries no evidence)."""
    logits = np.asarray(logits, np.float64)
    labels = np.asarray(labels, np.int64)
    t = fit_temperature(logits, labels)
    probs = sigmoid(logits, t)
    thr = threshold_at_fpr(probs[labels == 0], fpr)
    out: dict[str, Any] = {"temperature": t, "threshold": thr, "target_fpr": fpr, **_rates(probs, labels, thr),
                           "val_reals": int((labels == 0).sum()), "val_fakes": int((labels == 1).sum())}
    if similarities is not None:
        fusion = fit_fusion(logits, similarities, labels)
        if fusion is not None:
            fp = sigmoid(fused_logits(logits, similarities, fusion))
            fusion["threshold"] = threshold_at_fpr(fp[labels == 0], fpr)
            fusion.update(_rates(fp, labels, fusion["threshold"]))
        out["bank_fusion"] = fusion
    return out
