"""Metrics: AUC/AP against scikit-learn, EER against hand-worked ROC curves, one-class handling, ROC plot."""

from __future__ import annotations

import cv2
import numpy as np
import pytest
from sklearn.metrics import average_precision_score, roc_auc_score

from forgerydet.errors import ForgeryDetError
from forgerydet.metrics import binary_metrics, eer, grouped_metrics, roc_plot


def test_auc_ap_match_sklearn_on_random_scores():
    rng = np.random.default_rng(1)
    labels = rng.integers(0, 2, 200)
    scores = np.clip(rng.normal(0.4 + 0.2 * labels, 0.2), 0, 1)  # fakes score higher, with overlap
    m = binary_metrics(labels, scores, threshold=0.5)
    assert m["auc"] == pytest.approx(roc_auc_score(labels, scores), abs=1e-12)
    assert m["ap"] == pytest.approx(average_precision_score(labels, scores), abs=1e-12)
    assert m["accuracy"] == pytest.approx(np.mean((scores >= 0.5) == labels))
    assert (m["n"], m["n_real"], m["n_fake"]) == (200, int((labels == 0).sum()), int(labels.sum()))
    assert 0.5 < m["auc"] < 1.0 and 0.0 < m["eer"] < 0.5


def test_eer_exact_roc_point():
    # reals 0.1 0.2 0.3 0.6, fakes 0.4 0.7 0.8 0.9 (fake when score >= t).
    # t=0.6: reals >= t: {0.6} -> FPR 1/4; fakes < t: {0.4} -> FNR 1/4. The ROC point itself has FPR = FNR.
    labels = [0, 0, 0, 0, 1, 1, 1, 1]
    scores = [0.1, 0.2, 0.3, 0.6, 0.4, 0.7, 0.8, 0.9]
    rate, thr = eer(labels, scores)
    assert rate == pytest.approx(0.25)
    assert thr == pytest.approx(0.6)


def test_eer_interpolated_between_roc_points():
    # reals 0.1 0.2 0.5 0.5, fakes 0.5 0.5 0.8 0.9. ROC points (threshold: FPR, FNR):
    #   0.9: (0, 3/4)   0.8: (0, 1/2)   0.5: (1/2, 0)   -- the tie at 0.5 moves both rates at once.
    # FNR - FPR goes from +1/2 at t=0.8 to -1/2 at t=0.5, so it crosses zero halfway:
    #   EER = 0 + 0.5 * (1/2 - 0) = 0.25, threshold = 0.8 + 0.5 * (0.5 - 0.8) = 0.65.
    labels = [0, 0, 0, 0, 1, 1, 1, 1]
    scores = [0.1, 0.2, 0.5, 0.5, 0.5, 0.5, 0.8, 0.9]
    rate, thr = eer(labels, scores)
    assert rate == pytest.approx(0.25)
    assert thr == pytest.approx(0.65)


def test_eer_perfect_and_inverted_separation():
    assert eer([0, 0, 1, 1], [0.1, 0.2, 0.8, 0.9]) == pytest.approx((0.0, 0.8))
    rate, _ = eer([0, 0, 1, 1], [0.9, 0.8, 0.2, 0.1])
    assert rate == pytest.approx(1.0)


def test_eer_threshold_balances_error_rates_on_many_samples():
    rng = np.random.default_rng(2)
    labels = np.repeat([0, 1], 1000)
    scores = rng.normal(labels * 1.0, 1.0)
    rate, thr = eer(labels, scores)
    fpr = np.mean(scores[labels == 0] >= thr)
    fnr = np.mean(scores[labels == 1] < thr)
    assert abs(fpr - fnr) < 0.01 and rate == pytest.approx((fpr + fnr) / 2, abs=0.005)
    assert rate == pytest.approx(0.3085, abs=0.03)  # two unit normals 1 apart: EER = Phi(-0.5)


@pytest.mark.parametrize("labels, only", [([0, 0, 0], "real"), ([1, 1], "fake")])
def test_one_class_raises(labels, only):
    with pytest.raises(ForgeryDetError, match=f"only {only} samples.*need both classes"):
        binary_metrics(labels, np.linspace(0.1, 0.9, len(labels)))


def test_bad_inputs_raise():
    with pytest.raises(ForgeryDetError, match="labels but"):
        binary_metrics([0, 1, 1], [0.2, 0.7])
    with pytest.raises(ForgeryDetError, match="0 \\(real\\) or 1 \\(fake\\)"):
        binary_metrics([0, 2], [0.2, 0.7])
    with pytest.raises(ForgeryDetError, match="NaN"):
        binary_metrics([0, 1], [0.2, float("nan")])


def test_grouped_metrics_with_one_class_group():
    labels = [0, 0, 1, 1, 1, 1]
    scores = [0.1, 0.6, 0.7, 0.9, 0.4, 0.8]
    groups = ["ffpp", "ffpp", "ffpp", "ffpp", "stylegan", "stylegan"]
    out = grouped_metrics(labels, scores, groups, threshold=0.5)
    assert set(out) == {"ffpp", "stylegan", "overall"}
    assert out["ffpp"]["auc"] == pytest.approx(roc_auc_score([0, 0, 1, 1], [0.1, 0.6, 0.7, 0.9]))
    # an all-fake group is measured against every real of the set (FF++ per-method figures are made so)
    assert out["stylegan"]["against"] == "real" and "against" not in out["ffpp"]
    assert out["stylegan"]["auc"] == pytest.approx(roc_auc_score([0, 0, 1, 1], [0.1, 0.6, 0.4, 0.8]))
    assert (out["stylegan"]["n"], out["stylegan"]["n_real"], out["stylegan"]["n_fake"]) == (4, 2, 2)
    assert out["stylegan"]["accuracy"] == pytest.approx(0.5)  # 0.1 right, 0.6 wrong, 0.4 missed, 0.8 caught
    reals_apart = grouped_metrics(labels, scores, ["originals"] * 2 + ["ffpp"] * 4, threshold=0.5)
    assert reals_apart["originals"]["against"] == "fake" and reals_apart["originals"]["n_fake"] == 4
    assert reals_apart["ffpp"]["against"] == "real" and reals_apart["ffpp"]["n_real"] == 2
    only_fakes = grouped_metrics([1, 1, 1], [0.2, 0.9, 0.7], ["a", "a", "b"], threshold=0.5)
    assert "only fake samples" in only_fakes["a"]["error"] and "against" not in only_fakes["a"]
    assert only_fakes["b"]["n"] == 1 and only_fakes["b"]["accuracy"] == 1.0 and "auc" not in only_fakes["overall"]
    assert out["overall"]["auc"] == pytest.approx(roc_auc_score(labels, scores))
    assert out["overall"]["n"] == 6
    assert all("auc_ci" not in m for m in out.values())  # only when asked (evaluate asks)
    few = grouped_metrics(labels, scores, groups, threshold=0.5, ci=True)
    assert all(m["auc_ci"] is None for m in few.values())  # 2 reals: too few for an interval (it would be ~0 wide)
    y = np.repeat([0, 1], [6, 8])
    s = np.r_[np.linspace(0.1, 0.6, 6), np.linspace(0.3, 0.9, 8)]
    g = ["ffpp"] * 10 + ["stylegan"] * 4
    ci = grouped_metrics(y, s, g, threshold=0.5, ci=True)
    lo, hi = ci["overall"]["auc_ci"]
    assert lo <= ci["overall"]["auc"] <= hi and 0.0 <= lo < hi <= 1.0
    assert ci["ffpp"]["auc_ci"] is None and ci["ffpp"]["n_fake"] == 4  # 6 reals but only 4 fakes
    assert ci["stylegan"]["n_real"] == 6 and ci["stylegan"]["auc_ci"] is None  # measured against all 6 reals, 4 fakes


def test_a_one_class_group_borrows_the_other_class_from_its_own_pool():
    # FaceForensics++: Deepfakes against the YouTube originals only, DeepFakeDetection against the actors' videos
    labels = [0, 0, 0, 1, 1, 1, 1]
    scores = [0.1, 0.2, 0.9, 0.6, 0.8, 0.3, 0.95]
    groups = ["original", "original", "actors", "Deepfakes", "Deepfakes", "DeepFakeDetection", "DeepFakeDetection"]
    pools = ["youtube", "youtube", "actors", "youtube", "youtube", "actors", "actors"]
    out = grouped_metrics(labels, scores, groups, threshold=0.5, pools=pools)
    assert (out["Deepfakes"]["n_real"], out["Deepfakes"]["auc"]) == (2, 1.0)  # not also the actors' 0.9
    assert (out["DeepFakeDetection"]["n_real"], out["DeepFakeDetection"]["auc"]) == (1, 0.5)
    assert out["overall"]["n"] == 7
    assert grouped_metrics(labels, scores, groups, threshold=0.5)["Deepfakes"]["n_real"] == 3  # no pools: all reals


def test_roc_plot_writes_png_atomically(tmp_path):
    rng = np.random.default_rng(3)
    labels = np.repeat([0, 1], 50)
    curves = {
        "frames": (labels, rng.normal(labels, 1.0)),
        "videos": (labels[::10], rng.normal(labels[::10], 0.5)),
        "stylegan only": ([1, 1, 1], [0.9, 0.8, 0.3]),
    }
    path = roc_plot(curves, tmp_path / "plots" / "roc.png", "test ROC")
    img = cv2.imread(str(path))
    assert img is not None and img.shape[0] > 300 and img.shape[1] > 300
    assert sorted(p.name for p in path.parent.iterdir()) == ["roc.png"]  # no temp file left behind
    with pytest.raises(ForgeryDetError, match="single class"):
        roc_plot({"x": ([1, 1], [0.2, 0.3])}, tmp_path / "none.png", "t")


def test_bootstrap_auc_intervals_are_paired_and_honest():
    from forgerydet.metrics import bootstrap_auc, interval

    rng = np.random.default_rng(0)
    y = np.array([0] * 20 + [1] * 20)
    good = np.r_[rng.normal(0, 1, 20), rng.normal(1.5, 1, 20)]
    noise = rng.normal(0, 1, 40)
    perfect = y + 0.1 * rng.random(40)
    b = bootstrap_auc(y, good, noise, perfect, n_boot=3000, seed=1)
    assert b.shape == (3000, 3)
    lo, hi = interval(b[:, 0])
    assert lo < roc_auc_score(y, good) < hi and 0.6 < lo and hi - lo > 0.1  # 20 + 20 crops: a wide interval
    lo, hi = interval(b[:, 1])
    assert lo < 0.5 < hi
    assert interval(b[:, 2]) == (1.0, 1.0)
    d = interval(b[:, 0] - b[:, 0])
    assert d == (0.0, 0.0)  # the same resamples for every list: a list against itself differs by exactly 0
    assert np.array_equal(b, bootstrap_auc(y, good, noise, perfect, n_boot=3000, seed=1))
    # each resample's AUC is roc_auc_score's on the same resample (positions among each class's scores in order)
    reals, fakes = np.argsort(good[:20]), 20 + np.argsort(good[20:])
    np.testing.assert_allclose(bootstrap_auc(y, good, n_boot=50, seed=2).mean(),
                               np.mean([roc_auc_score(y[np.r_[reals[i], fakes[j]]], good[np.r_[reals[i], fakes[j]]])
                                        for i, j in zip(*_resamples(50, 2))]), rtol=1e-12)


def _resamples(n_boot, seed):
    rng = np.random.default_rng(seed)
    return list(rng.integers(0, 20, (n_boot, 20))), list(rng.integers(0, 20, (n_boot, 20)))


def test_the_bootstrap_resamples_whole_videos_when_faces_are_grouped_by_video():
    """Frame-level intervals resample files with all their faces: with one face per file it is the plain bootstrap,
    resample for resample; with each file's faces sharing its score it is the video-level interval exactly (faces
    resampled one by one gave [1.0, 1.0] for one real and one fake video of 32 faces, as if exact)."""
    from forgerydet.metrics import bootstrap_auc

    rng = np.random.default_rng(0)
    y = np.repeat([0, 1], 12)
    s = rng.normal(y * 0.8, 1.0)
    plain = bootstrap_auc(y, s, n_boot=300, seed=3)
    np.testing.assert_allclose(bootstrap_auc(y, s, n_boot=300, seed=3, clusters=[f"v{i}" for i in range(24)]), plain)
    faces_y, faces_s, faces_c = np.repeat(y, 32), np.repeat(s, 32), np.repeat(np.arange(24), 32)
    np.testing.assert_allclose(bootstrap_auc(faces_y, faces_s, n_boot=300, seed=3, clusters=faces_c), plain)
    g = ["a"] * faces_y.size
    frame = grouped_metrics(faces_y, faces_s, g, ci=True, clusters=faces_c)["overall"]
    video = grouped_metrics(y, s, ["a"] * 24, ci=True)["overall"]
    assert frame["auc"] == pytest.approx(video["auc"]) and frame["auc_ci"] == pytest.approx(video["auc_ci"])
    assert np.diff(grouped_metrics(faces_y, faces_s, g, ci=True)["overall"]["auc_ci"])[0] < np.diff(frame["auc_ci"])[0] / 3
    two = grouped_metrics(np.repeat([0, 1], 32), np.r_[np.zeros(32), np.ones(32)], ["a"] * 64, ci=True,
                          clusters=np.repeat([0, 1], 32))["overall"]
    assert two["auc"] == 1.0 and two["auc_ci"] is None  # one video a class: too few for an interval, not [1, 1]
    assert two["auc_ci_missing"] == "too few: under 5 real or 5 fake files" and "auc_ci_missing" not in frame


def test_roc_plot_shows_names_as_they_are(tmp_path, monkeypatch):
    """Group names come from a user's list: "$\\x$" was read as math and raised at saving (a traceback after the
    whole evaluation), "a$x$b" lost its dollars, and "_x" vanished from the legend."""
    import forgerydet.metrics as m

    figures = []
    monkeypatch.setattr(m, "save_figure", lambda fig, path: figures.append(fig) or m.atomic_write(
        path, lambda tmp: fig.savefig(tmp, format="png")))
    both = ([0, 1, 0, 1], [0.1, 0.9, 0.3, 0.6])
    names = ["$\\foo$", "_hidden", "a$x$b"]
    roc_plot({n: both for n in names}, tmp_path / "roc.png", "ROC: my$list$.csv")
    ax = figures[0].axes[0]
    shown = [t.get_text() for t in ax.get_legend().get_texts()]
    assert [s.split(": AUC")[0] for s in shown[1:]] == names
    assert ax.get_title() == "ROC: my$list$.csv"
    assert not any(t.get_parse_math() for t in [*ax.get_legend().get_texts(), ax.title])


def test_the_bootstrap_interval_does_not_depend_on_the_order_the_files_are_listed_in():
    """The same files with the same scores, listed in another order (a list written again, sorted by label), got
    another 95 % interval: evaluate printed 0.82-0.98 for the FF++ crops and 0.81-0.98 for them shuffled."""
    rng = np.random.default_rng(4)
    y = np.repeat([0, 1], [9, 7])
    s = rng.normal(y * 0.7, 1.0)
    faces_c = np.repeat(np.arange(16), 3)
    faces_s = np.repeat(s, 3) + rng.normal(0, 0.3, 48)
    faces_y = np.repeat(y, 3)
    for _ in range(3):
        p, q = rng.permutation(16), rng.permutation(48)
        assert (grouped_metrics(y[p], s[p], ["a"] * 16, ci=True)["overall"]["auc_ci"]
                == grouped_metrics(y, s, ["a"] * 16, ci=True)["overall"]["auc_ci"])
        assert (grouped_metrics(faces_y[q], faces_s[q], ["a"] * 48, ci=True, clusters=faces_c[q])["overall"]["auc_ci"]
                == grouped_metrics(faces_y, faces_s, ["a"] * 48, ci=True, clusters=faces_c)["overall"]["auc_ci"])
