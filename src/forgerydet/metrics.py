"""Detection metrics (AUC, AP, EER, accuracy), per-group metrics and ROC plots.

Convention everywhere: label 1 = fake, 0 = real; a score is the fake probability (higher = more fake);
a sample is called fake when score >= threshold.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Sequence

import numpy as np

from forgerydet.errors import ForgeryDetError
from forgerydet.io import atomic_write

OVERALL = "overall"
CI_MIN_PER_CLASS = 5  # fewer real or fake samples than this: no bootstrap interval (with one of each it is 0 wide)


def _check(labels: Any, scores: Any) -> tuple[np.ndarray, np.ndarray]:
    """Labels as int 0/1 and scores as finite floats, same length, at least one sample."""
    y = np.asarray(labels).reshape(-1)
    s = np.asarray(scores, dtype=np.float64).reshape(-1)
    if y.shape != s.shape:
        raise ForgeryDetError(f"{y.size} labels but {s.size} scores: give one score per labelled sample")
    if y.size == 0:
        raise ForgeryDetError("no samples to evaluate: the label list is empty")
    if not np.isin(y, (0, 1)).all():
        bad = sorted({str(v) for v in y[~np.isin(y, (0, 1))]})[:5]
        raise ForgeryDetError(f"labels must be 0 (real) or 1 (fake), got {bad}")
    if not np.isfinite(s).all():
        raise ForgeryDetError(f"{int((~np.isfinite(s)).sum())} scores are NaN or infinite: fix the scoring step")
    return y.astype(np.int64), s


def _need_both(y: np.ndarray) -> None:
    n_fake = int(y.sum())
    if n_fake == 0 or n_fake == y.size:
        only = "fake" if n_fake else "real"
        raise ForgeryDetError(
            f"only {only} samples ({y.size}): AUC/EER need both classes; add {'real' if n_fake else 'fake'} "
            "samples to the evaluation list"
        )


def eer(labels: Any, scores: Any) -> tuple[float, float]:
    """Equal error rate and its threshold.

    Walks the ROC curve (every threshold, none dropped) to where the false-negative rate 1 - TPR falls
    to the false-positive rate, and interpolates linearly between the two ROC points around that
    crossing; the threshold is interpolated the same way. Returns (eer, threshold).
    """
    from sklearn.metrics import roc_curve  # here, not at import: sklearn and scipy add ~1 s to every command

    y, s = _check(labels, scores)
    _need_both(y)
    fpr, tpr, thr = roc_curve(y, s, drop_intermediate=False)  # thresholds decreasing, thr[0] = +inf
    fnr = 1.0 - tpr
    d = fnr - fpr  # starts at 1 (nothing called fake), ends at -1 (everything called fake)
    j = int(np.flatnonzero(d <= 0)[0])  # first ROC point where FNR <= FPR; j >= 1 since d[0] = 1
    i = j - 1
    t = d[i] / (d[i] - d[j])  # fraction of the way from point i to point j where d = 0
    rate = fpr[i] + t * (fpr[j] - fpr[i])
    lo = thr[i] if np.isfinite(thr[i]) else thr[j]  # +inf stands for "above every score"
    threshold = lo + t * (thr[j] - lo)
    return float(rate), float(threshold)


def binary_metrics(labels: Any, scores: Any, threshold: float = 0.5) -> dict[str, Any]:
    """AUC, AP, EER (+ its threshold) and accuracy at `threshold`, with sample counts.

    Raises ForgeryDetError when only one class is present (AUC and EER are undefined then).
    """
    from sklearn.metrics import accuracy_score, average_precision_score, roc_auc_score

    y, s = _check(labels, scores)
    _need_both(y)
    rate, eer_thr = eer(y, s)
    return {
        "auc": float(roc_auc_score(y, s)),
        "ap": float(average_precision_score(y, s)),
        "eer": rate,
        "eer_threshold": eer_thr,
        "accuracy": float(accuracy_score(y, (s >= threshold).astype(np.int64))),
        "threshold": float(threshold),
        "n": int(y.size),
        "n_real": int((y == 0).sum()),
        "n_fake": int((y == 1).sum()),
    }


def bootstrap_auc(labels: Any, *scores: Any, n_boot: int = 2000, seed: int = 0,
                  clusters: Sequence[Any] | None = None) -> np.ndarray:
    """AUC of each score list on `n_boot` stratified bootstrap resamples (reals and fakes resampled separately,
    with replacement, the same resample for every list, so differences between lists are paired): (n_boot, k).
    `clusters` (one id per sample, e.g. the video a face came from): whole clusters are resampled, as the faces of
    one video are not independent samples: in 60 simulated sets of 40 videos x 32 faces (a per-video effect, as real
    scores have), 95 % intervals resampling faces held the true AUC 22 % of the time, resampling videos 92 %
    (2026-12-07). With one sample per cluster it is the plain bootstrap, resample for resample.

    Each resample's AUC is the Mann-Whitney statistic from average ranks (ties count one half), which is what
    roc_auc_score computes; O(n log n) per resample, in chunks, so it serves 40 crops and 40,000 faces alike.
    The samples (or clusters) of each class are drawn from in the order of their scores, not of the list, so the
    same scores listed in another order get the same intervals."""
    from scipy.stats import rankdata

    y, _ = _check(labels, scores[0])
    _need_both(y)
    checked = [_check(y, sc)[1] for sc in scores]
    if clusters is not None:
        return _cluster_bootstrap_auc(y, checked, clusters, n_boot, seed)
    rng = np.random.default_rng(seed)
    values = np.stack(checked, axis=1)  # (n,k)
    real, fake = (_in_value_order(np.flatnonzero(y == c), values) for c in (0, 1))
    ir = rng.integers(0, real.size, (n_boot, real.size))  # (B,n_r) positions among the reals
    jf = rng.integers(0, fake.size, (n_boot, fake.size))  # (B,n_f)
    n_r, n_f = real.size, fake.size
    out = np.empty((n_boot, len(scores)))
    chunk = max(1, int(4e6 // (n_r + n_f)))
    for k, s in enumerate(checked):
        sr, sf = s[real], s[fake]
        for b in range(0, n_boot, chunk):
            both = np.concatenate([sr[ir[b : b + chunk]], sf[jf[b : b + chunk]]], axis=1)  # (b,n_r+n_f)
            ranks = rankdata(both, axis=1)[:, n_r:]  # the fakes' average ranks
            out[b : b + chunk, k] = (ranks.sum(axis=1) - n_f * (n_f + 1) / 2.0) / (n_r * n_f)
    return out


def _in_value_order(idx: np.ndarray, values: np.ndarray) -> np.ndarray:
    """`idx` sorted by the rows of `values` (n,k) it points to, the first column first: an order of the samples that
    does not depend on the order they were listed in (samples of equal rows are interchangeable)."""
    return idx[np.lexsort(values[idx].T[::-1])]


def cluster_ids(clusters: Sequence[Any], y: np.ndarray) -> np.ndarray:
    """Cluster numbers 0..C-1 in order of first appearance; a cluster id holding both classes is split in two."""
    keys = np.asarray([f"{c}\x00{int(label)}" for c, label in zip(clusters, y)], dtype=object)
    if keys.size != y.size:
        raise ForgeryDetError(f"{y.size} labels but {keys.size} cluster ids: give one per sample")
    _, first, inv = np.unique(keys, return_index=True, return_inverse=True)
    return np.argsort(np.argsort(first))[inv]


def _cluster_bootstrap_auc(y: np.ndarray, scores: list[np.ndarray], clusters: Sequence[Any], n_boot: int,
                           seed: int) -> np.ndarray:
    from scipy.stats import rankdata

    ids = cluster_ids(clusters, y)
    order = np.argsort(ids, kind="stable")
    members = np.split(order, np.cumsum(np.bincount(ids))[:-1])  # each cluster's samples, in their order
    label = np.asarray([y[m[0]] for m in members])
    s = np.stack(scores, axis=1)  # (n,k)

    def by_value(cs: np.ndarray) -> np.ndarray:  # clusters by their sorted scores, list by list (as _in_value_order)
        return np.asarray(sorted(cs.tolist(), key=lambda c: [sorted(col) for col in s[members[c]].T.tolist()]), int)

    real, fake = by_value(np.flatnonzero(label == 0)), by_value(np.flatnonzero(label == 1))
    rng = np.random.default_rng(seed)  # drawn as the plain bootstrap draws samples: one per cluster, the same
    ir = rng.integers(0, real.size, (n_boot, real.size))
    jf = rng.integers(0, fake.size, (n_boot, fake.size))
    out = np.empty((n_boot, len(scores)))
    for b in range(n_boot):
        r = np.concatenate([members[c] for c in real[ir[b]]])
        f = np.concatenate([members[c] for c in fake[jf[b]]])
        ranks = rankdata(np.concatenate([s[r], s[f]]), axis=0)[r.size:]  # the fakes' average ranks
        out[b] = (ranks.sum(axis=0) - f.size * (f.size + 1) / 2.0) / (r.size * f.size)
    return out


def interval(values: np.ndarray, level: float = 0.95) -> tuple[float, float]:
    """Percentile interval of bootstrap values (e.g. a column of bootstrap_auc, or a difference of two)."""
    a = (1.0 - level) / 2.0
    lo, hi = np.quantile(np.asarray(values, np.float64), [a, 1.0 - a])
    return float(lo), float(hi)


def grouped_metrics(labels: Any, scores: Any, groups: Sequence[Any], threshold: float = 0.5,
                    ci: bool = False, pools: Sequence[str] | None = None,
                    clusters: Sequence[Any] | None = None) -> dict[str, dict]:
    """binary_metrics per group (e.g. per source dataset) plus 'overall'; ci=True adds 'auc_ci', the 95 %
    stratified bootstrap interval of the AUC (1,000 resamples, seeded), where an AUC exists; None where the
    samples hold fewer than CI_MIN_PER_CLASS of a class (resampling one real and one fake gives an interval of
    width 0, which would read as exact). `clusters` (one id per sample: the file a face came from) makes the
    bootstrap resample whole clusters, and the CI_MIN_PER_CLASS count clusters (bootstrap_auc).

    A group holding a single class is measured against every sample of the other class in the whole set, as
    per-method figures on FaceForensics++ are (each method's fakes against all originals): its metrics then
    carry 'against' = 'real' or 'fake', the class borrowed. Where the whole set holds one class, that group
    (and 'overall') gets {'error', 'n', 'n_real', 'n_fake', 'accuracy'} instead of AUC/EER, so one all-fake
    source never stops the rest of an evaluation. `pools` (one per sample; '' = any) limits the borrowed class to
    the samples of the group's own pool: FaceForensics++'s methods against the YouTube originals, not also the
    actors' videos that DeepFakeDetection's fakes were made on.
    """
    y, s = _check(labels, scores)
    g = np.asarray([str(v) for v in groups], dtype=object)
    pool = np.asarray(list(pools) if pools is not None else [""] * g.size, dtype=object)
    if g.size != y.size:
        raise ForgeryDetError(f"{y.size} labels but {g.size} group names: give one group per sample")
    if OVERALL in set(g):
        raise ForgeryDetError(f"a group is named {OVERALL!r}, which is reserved for all samples: rename it")
    c = cluster_ids(clusters, y) if clusters is not None else np.arange(y.size)

    def metrics(sel: np.ndarray) -> dict[str, Any]:
        ys, ss, cs = y[sel], s[sel], c[sel]
        m = _metrics_or_error(ys, ss, threshold)
        if ci and "auc" in m:
            few = min(np.unique(cs[ys == 0]).size, np.unique(cs[ys == 1]).size) < CI_MIN_PER_CLASS
            m["auc_ci"] = None if few else list(interval(bootstrap_auc(
                ys, ss, n_boot=1000, seed=0, clusters=cs if clusters is not None else None)[:, 0]))
            if few:  # metrics.json says why there is none
                unit = "files" if clusters is not None else "samples"
                m["auc_ci_missing"] = f"too few: under {CI_MIN_PER_CLASS} real or {CI_MIN_PER_CLASS} fake {unit}"
        return m

    out: dict[str, dict] = {}
    for name, (sel, against) in group_samples(y, g, pool).items():
        out[name] = {**metrics(sel), **({"against": against} if against else {})}
    out[OVERALL] = metrics(np.ones(y.size, bool))
    return out


def group_samples(y: np.ndarray, groups: np.ndarray, pools: np.ndarray) -> dict[str, tuple[np.ndarray, str | None]]:
    """Each group's samples as grouped_metrics measures them (a boolean mask over all samples), and the class it
    borrows ('real' or 'fake', None when it holds both): a group of one class takes the other class from the
    whole set, or from its own pool where its samples name one."""
    out: dict[str, tuple[np.ndarray, str | None]] = {}
    both = len(np.unique(y)) == 2
    for name in sorted(set(groups)):
        m = groups == name
        own = np.unique(y[m])
        if len(own) == 1 and both:  # borrow the other class from the whole set (or the group's pool)
            mine = set(pools[m]) - {""}
            sel = m | ((y != own[0]) & (np.isin(pools, list(mine)) if len(mine) == 1 else True))
            out[name] = (sel, "fake" if own[0] == 0 else "real")
        else:
            out[name] = (m, None)
    return out


def _metrics_or_error(y: np.ndarray, s: np.ndarray, threshold: float) -> dict[str, Any]:
    from sklearn.metrics import accuracy_score

    try:
        return binary_metrics(y, s, threshold)
    except ForgeryDetError as e:
        return {
            "error": str(e),
            "accuracy": float(accuracy_score(y, (s >= threshold).astype(np.int64))),
            "threshold": float(threshold),
            "n": int(y.size),
            "n_real": int((y == 0).sum()),
            "n_fake": int((y == 1).sum()),
        }


def roc_plot(curves: dict[str, tuple[Any, Any]], path: Path, title: str) -> Path:
    """One ROC curve per entry (name -> (labels, scores)), AUC in the legend, written atomically as PNG.

    Entries with a single class cannot have a curve and are listed in the legend as such. Names and the title are
    shown as they are: a group from a user's list named "$\\x$" is not read as math (which raised at saving, after
    the evaluation), nor one named "_x" dropped from the legend as matplotlib drops labels that start with "_".
    """
    import matplotlib
    from matplotlib.figure import Figure  # Figure without pyplot: no global state, Agg canvas
    from sklearn.metrics import roc_auc_score, roc_curve

    if not curves:
        raise ForgeryDetError("no ROC curves to plot: give at least one (labels, scores) pair")
    with matplotlib.rc_context({"text.parse_math": False}):
        fig = Figure(figsize=(5.5, 5), dpi=110)
        ax = fig.add_subplot()
        handles = ax.plot([0, 1], [0, 1], linestyle=":", color="grey", linewidth=1)
        labels = ["chance"]
        plotted = 0
        for name, (y_true, scores) in curves.items():
            y, s = _check(y_true, scores)
            if y.min() == y.max():
                handles += ax.plot([], [], linestyle="none")
                labels.append(f"{name}: one class only, no ROC (n={y.size})")
                continue
            fpr, tpr, _ = roc_curve(y, s)
            handles += ax.plot(fpr, tpr, linewidth=1.8)
            labels.append(f"{name}: AUC {roc_auc_score(y, s):.3f} (n={y.size})")
            plotted += 1
        if plotted == 0:
            raise ForgeryDetError("every ROC curve holds a single class: add both real and fake samples")
        ax.set(xlim=(0, 1), ylim=(0, 1.01), xlabel="false positive rate (real called fake)",
               ylabel="true positive rate (fake caught)", title=title)
        ax.grid(alpha=0.3)
        ax.legend(handles, labels, loc="lower right", fontsize=8)  # given, not collected: "_x" is kept
        fig.tight_layout()
        return save_figure(fig, path)


def save_figure(fig: Any, path: Path) -> Path:
    """Write a matplotlib Figure to `path` as PNG atomically (temp file in the same folder + os.replace)."""
    return atomic_write(path, lambda tmp: fig.savefig(tmp, format="png"))
