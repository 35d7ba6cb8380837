"""scan/figures.py: pictures for the report: any array as RGB uint8, thumbnails, the heatmap overlay's exact
blend, and the score-over-time plot (one line per track, the threshold, time or frame axis)."""

from __future__ import annotations

import warnings

import numpy as np
import pytest

from forgerydet.io import read_image
from forgerydet.scan import figures
from forgerydet.scan.figures import (FULL_SPREAD, HEAT_ALPHA, as_rgb, attention_spread, heatmap_overlay, narrow_overview,
                                     overview_picture,
                                     shrink, timeline_plot)


def test_as_rgb():
    grey = np.arange(6, dtype=np.uint8).reshape(2, 3)
    assert np.array_equal(as_rgb(grey), np.repeat(grey[:, :, None], 3, axis=2))
    rgba = np.zeros((2, 2, 4), np.uint8)
    rgba[..., 3] = 255
    assert as_rgb(rgba).shape == (2, 2, 3) and as_rgb(rgba).flags["C_CONTIGUOUS"]
    floats = np.array([[[-5.0, 12.7, 300.0]]])
    assert as_rgb(floats).tolist() == [[[0, 12, 255]]] and as_rgb(floats).dtype == np.uint8
    assert as_rgb([[[1, 2, 3]]]).tolist() == [[[1, 2, 3]]]  # a nested list (from JSON) works too


def test_shrink_keeps_the_aspect_and_never_enlarges():
    img = np.zeros((100, 50, 3), np.uint8)
    assert shrink(img, 20).shape == (20, 10, 3)
    assert shrink(img, 100) is img and shrink(img, 400) is img
    assert shrink(np.zeros((300, 2, 3), np.uint8), 30).shape == (30, 1, 3)  # never a zero-width picture


def test_overlay_of_an_empty_map_is_the_coldest_colour_blended_exactly():
    crop = np.full((8, 8, 3), 100, np.uint8)
    # JET(0) is RGB (0, 0, 128): 0.55 * 100 = 55 in R and G, 55 + 0.45 * 128 = 112.6 in B
    for att in (np.zeros((2, 2)), np.full((2, 2), np.nan), np.array([[-1.0, -np.inf], [np.inf, -2.0]])):
        out = heatmap_overlay(crop, att)
        assert out.shape == (8, 8, 3) and out.dtype == np.uint8
        assert out[..., 0].tolist() == [[55] * 8] * 8 and out[..., 1].tolist() == [[55] * 8] * 8
        assert set(out[..., 2].ravel().tolist()) == {113}
    assert HEAT_ALPHA == 0.45


def test_overlay_colours_each_cell_against_the_least_attended_one_on_a_fixed_scale():
    rng = np.random.default_rng(0)
    crop = rng.integers(0, 256, (16, 16, 3), dtype=np.uint8)
    att = 0.5 + rng.random((4, 4)).astype(np.float32)
    assert np.array_equal(heatmap_overlay(crop, att), heatmap_overlay(crop, 1000 * att))  # where, not how much
    assert np.array_equal(heatmap_overlay(crop, att, alpha=0.0), crop)
    black = np.zeros((40, 40, 3), np.uint8)
    hot = heatmap_overlay(black, np.array([[1.0, 2.0], [1.0, 1.0]]), alpha=1.0)
    assert FULL_SPREAD == 2.0 and tuple(hot[0, 39]) == (128, 0, 0)  # twice the least: JET(255), dark red
    assert hot[39, 0, 2] > 120 and hot[39, 0, :2].max() == 0  # the least-attended corner blue
    mild = heatmap_overlay(black, np.array([[1.0, 1.1], [1.0, 1.0]]), alpha=1.0)
    assert mild[..., 0].max() == 0  # a nearly uniform map (1.1x) shows no red anywhere: it is not drawn as a hotspot
    flat = heatmap_overlay(np.zeros((4, 4, 3), np.uint8), np.ones((2, 2)), alpha=1.0)
    assert set(map(tuple, flat.reshape(-1, 3).tolist())) == {(0, 0, 128)}  # a flat map has no focus: all cold
    some_zero = heatmap_overlay(black, np.array([[0.0, 2.0], [0.0, 0.0]]), alpha=1.0)
    assert tuple(some_zero[0, 39]) == (128, 0, 0)  # cells of no attention: no ratio, scaled by the maximum


def _faces(times: bool) -> list[dict]:
    out = []
    for fi, tid, s in [(0, 0, 0.2), (10, 0, 0.4), (5, 1, 0.9), (0, 1, 0.8), (20, 0, 0.3)]:
        out.append({"frame_index": fi, "track_id": tid, "score": s, "time": fi / 10 if times else None})
    return out


@pytest.mark.parametrize("times", [True, False])
def test_timeline_has_one_sorted_line_per_track_and_the_threshold(times, tmp_path, monkeypatch):
    seen = {}

    def capture(fig, path):
        seen["fig"] = fig
        return path

    monkeypatch.setattr(figures, "save_figure", capture)
    assert timeline_plot({"faces": _faces(times), "threshold": 0.35}, tmp_path / "t.png") == tmp_path / "t.png"
    ax = seen["fig"].axes[0]
    lines = {ln.get_label(): (list(ln.get_xdata()), list(ln.get_ydata())) for ln in ax.get_lines()}
    k = 0.1 if times else 1.0
    assert lines["track 0"] == (pytest.approx([0, 10 * k, 20 * k]), [0.2, 0.4, 0.3])
    assert lines["track 1"] == (pytest.approx([0, 5 * k]), [0.8, 0.9])
    assert list(lines["threshold 0.350"][1]) == [0.35, 0.35]
    assert not any(name.startswith("file score") for name in lines)  # none given, none drawn
    timeline_plot({"faces": _faces(times), "threshold": 0.35, "score": 0.4567}, tmp_path / "t.png")
    lines = {ln.get_label(): list(ln.get_ydata()) for ln in seen["fig"].axes[0].get_lines()}
    assert lines["file score 0.457"] == [0.4567, 0.4567]  # the file's score beside its frames', 3 decimals as elsewhere
    assert ax.get_xlabel() == ("time (s)" if times else "frame") and ax.get_ylabel() == "fake probability"
    assert ax.get_ylim() == (-0.02, 1.02)


def test_timeline_of_a_crowd_names_its_highest_tracks_and_greys_the_rest(tmp_path, monkeypatch):
    # a video of 54 faces (a tiled group photo): every track in the legend made it taller than the figure, which
    # cut off the threshold's entry and the axis label (matplotlib's "Tight layout not applied" on stderr)
    seen = {}
    real_save = figures.save_figure
    monkeypatch.setattr(figures, "save_figure", lambda fig, path: seen.update(fig=fig) or real_save(fig, path))
    faces = [{"frame_index": t, "time": t / 5, "track_id": k, "score": (k % 27) / 30 + t / 1000}
             for k in range(54) for t in range(6)]
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        timeline_plot({"faces": faces, "threshold": 0.35, "score": 0.8}, tmp_path / "t.png")
    ax = seen["fig"].axes[0]
    labels = [t.get_text() for t in ax.get_legend().get_texts()]
    n = figures.MAX_NAMED_TRACKS - 1
    assert labels[0] == f"{54 - n} other tracks (see the table)" and len(labels) == n + 3
    assert set(labels[1:1 + n]) == {f"track {k}" for k in (25, 26, 52, 53, 24)}  # the highest mean scores
    assert labels[-2:] == ["threshold 0.350", "file score 0.800"]
    named = [ln for ln in ax.get_lines() if ln.get_label().startswith("track ")]
    assert len({ln.get_color() for ln in named}) == n  # no two named tracks share a colour
    # nor a marker: printed in black and white, or to a reader who cannot tell the colours apart, their colours were
    # one grey and every track drew the same dots, so which line was which track could not be told
    assert len({ln.get_marker() for ln in named}) == n
    assert len(ax.get_lines()) == 54 + 2  # every track still drawn
    timeline_plot({"faces": _faces(True), "threshold": 0.35}, tmp_path / "few.png")  # few tracks: each named
    assert [t.get_text() for t in seen["fig"].axes[0].get_legend().get_texts()][:2] == ["track 0", "track 1"]


def test_the_phone_copy_of_the_timeline_keeps_its_legend_legible_and_whole(tmp_path, monkeypatch):
    """Shrunk to a phone's width (~240 CSS px of a 320 px screen) the wide plot's legend was text 4 px high; its
    phone copy is narrow enough that the text is 10 px or more there, with the same entries, none cut off."""
    figs = {}
    real_save = figures.save_figure
    monkeypatch.setattr(figures, "save_figure", lambda fig, path: figs.update({path.name: fig}) or real_save(fig, path))
    faces = [{"frame_index": t, "time": t / 5, "track_id": k, "score": (k % 27) / 30 + t / 1000}
             for k in range(54) for t in range(6)]  # a crowd: the most legend entries there are
    for name, video in [("few", _faces(True)), ("crowd", faces)]:
        with warnings.catch_warnings():
            warnings.simplefilter("error")  # "Tight layout not applied": something cut off
            timeline_plot({"faces": video, "threshold": 0.35, "score": 0.8}, tmp_path / f"{name}.png")
            timeline_plot({"faces": video, "threshold": 0.35, "score": 0.8}, tmp_path / f"{name}_n.png", narrow=True)
        wide, narrow = figs[f"{name}.png"], figs[f"{name}_n.png"]
        legend = narrow.legends[0]  # the figure's, from its left edge

        def px_on_a_phone(fig, size):  # text size on screen when the picture is shown 240 CSS px wide
            return size / 72 * 240 / fig.get_size_inches()[0]

        assert [t.get_text() for t in legend.get_texts()] == \
            [t.get_text() for t in wide.axes[0].get_legend().get_texts()]
        assert px_on_a_phone(wide, wide.axes[0].get_legend().get_texts()[0].get_fontsize()) < 5  # why a copy
        assert min(px_on_a_phone(narrow, t.get_fontsize()) for t in legend.get_texts()) >= 10
        assert min(px_on_a_phone(narrow, t.get_fontsize()) for t in narrow.axes[0].get_xticklabels()) >= 9
        from matplotlib.backends.backend_agg import FigureCanvasAgg

        box = legend.get_window_extent(FigureCanvasAgg(narrow).get_renderer())
        assert 0 <= box.x0 and box.x1 <= narrow.bbox.width and box.y1 <= narrow.bbox.height  # whole, inside
        assert read_image(tmp_path / f"{name}_n.png").shape[1] == figures.NARROW_WIDTH_IN * 200  # sharp at 2x


def test_timeline_writes_a_png(tmp_path):
    out = timeline_plot({"faces": _faces(True)}, tmp_path / "plots" / "t.png")  # threshold missing: 0.5
    img = read_image(out)
    assert img.shape == (260, 750, 3) and img.std() > 0
    assert [p.name for p in (tmp_path / "plots").iterdir()] == ["t.png"]


def test_attention_spread_is_the_ratio_of_the_most_to_the_least_attended_cell():
    assert attention_spread(np.array([[1.0, 2.0], [1.5, 1.2]])) == pytest.approx(2.0)
    assert attention_spread(np.full((3, 3), 0.02)) == pytest.approx(1.0)  # flat
    assert attention_spread(np.array([[0.0, 1.0]])) is None and attention_spread(np.zeros((0, 0))) is None
    assert attention_spread(np.array([[np.nan, 1.0]])) is None  # a NaN cell counts as 0, as in the overlay


def test_overview_boxes_each_face_in_the_colour_of_its_side_of_the_threshold():
    image = np.full((100, 200, 3), 255, np.uint8)
    faces = [{"track_id": 0, "box": [20, 40, 80, 90], "score": 0.1}, {"track_id": 1, "box": [240, 40, 320, 90], "score": 0.8}]
    out = overview_picture(image, faces, frame_width=400, threshold=0.5)  # the picture is half the frame's width
    assert out.shape == image.shape and np.array_equal(image, np.full((100, 200, 3), 255, np.uint8))  # a copy
    assert tuple(out[30, 10]) == (46, 125, 50)  # face 0's box (frame x 20 -> 10 here): green, below
    assert tuple(out[30, 120]) == (198, 40, 40)  # face 1's box (frame x 240 -> 120): red, at or above
    assert tuple(out[70, 100]) == (255, 255, 255)  # between the boxes: untouched


def test_a_phone_gets_an_overview_whose_tags_are_legible_there_and_cover_no_face():
    """The overview is 960 px wide: shrunk to a 320 px screen (~240 px), its tags were ~3 px high. The phone's copy
    (640 px) draws them NARROW_TAG_SHARES of its width high, about 11 px there, in a band above the picture, in the
    faces' order from the left, with a line to each box; on the picture itself only boxes and lines."""
    image = np.full((600, 960, 3), 90, np.uint8)  # as the scan keeps a photo for its report: 960 px wide
    faces = [{"track_id": k, "box": [40 + 150 * k, 150, 120 + 150 * k, 250], "score": 0.9 if k == 2 else 0.1}
             for k in range(6)]  # a group photo's row of faces
    out = narrow_overview(image, faces, frame_width=960, threshold=0.5)
    wide = overview_picture(image, faces, frame_width=960, threshold=0.5)
    band = out.shape[0] - round(600 * 640 / 960)
    assert out.shape[1] == figures.NARROW_OVERVIEW_WIDTH and band > 0
    # the tags' height: the filled rows above the boxes (the band; the wide copy's boxes begin at 150)
    tag_rows = [np.flatnonzero((pic[:top] == (46, 125, 50)).all(axis=2).sum(axis=1) > 20) for pic, top in
                ((out, band), (wide, 148))]
    on_phone = [len(rows) * 240 / pic.shape[1] for rows, pic in zip(tag_rows, (out, wide))]  # px high, 240 px wide
    assert on_phone[0] >= 12 and on_phone[0] > 1.8 * on_phone[1], on_phone  # 15.75 and 7.5: the digits ~11 px
    white = (out[band:] > 200).all(axis=2)  # a tag's number and sign are white: none on the picture
    assert not white.any()
    top = tag_rows[0][0]  # the tags' top edge: faces 0, 1, 3 to 5 green, 2 red, each over its face, from the left
    runs = [np.flatnonzero(np.diff(np.r_[0, (out[top] == colour).all(axis=1), 0]) == 1) for colour in
            ((46, 125, 50), (198, 40, 40))]
    assert len(runs[0]) == 5 and len(runs[1]) == 1 and runs[0][1] < runs[1][0] < runs[0][2]
    crowd = [{"track_id": k, "box": [10 * k, 20, 10 * k + 9, 30], "score": 0.1} for k in range(40)]
    assert narrow_overview(image, crowd, frame_width=960, threshold=0.5) is None  # shown as on a desktop


def test_overview_marks_each_face_with_its_side_of_the_threshold_not_by_colour_alone():
    """Red and green boxes print as one grey (luma 87 and 93): printed in black and white, the overview did not say
    which faces were at or above the threshold. Each tag now holds a ▲ or ▼ beside the number, as the page's
    scores do."""
    black = np.zeros((120, 200, 3), np.uint8)
    face = {"track_id": 3, "box": [40, 50, 140, 110]}
    below, above = (overview_picture(black, [face | {"score": s}], frame_width=200, threshold=0.5) for s in (0.1, 0.8))
    marks = [(pic > 200).all(axis=2) for pic in (below, above)]  # what is drawn in white: the number and the sign
    assert marks[0].sum() > 0 and (marks[0] != marks[1]).sum() > 20  # the same number; a different sign
    rows = [np.flatnonzero(m.any(axis=1)) for m in marks]
    width = [m.sum(axis=1) for m in marks]  # the sign narrows upwards (▲) or downwards (▼): compare its top and foot
    top_minus_foot = [int(w[r[0] + 2]) - int(w[r[-1] - 2]) for w, r in zip(width, rows)]
    assert top_minus_foot[0] > top_minus_foot[1]  # ▼ widest at its top, ▲ at its foot
