"""The report's pictures: face thumbnails, the difference-attention heatmap overlay, and the score-over-time plot."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import cv2
import numpy as np

from forgerydet.metrics import save_figure
from forgerydet.scan.html import score_digits, threshold_text

HEAT_ALPHA = 0.45  # heatmap weight in the overlay


def as_rgb(img: Any) -> np.ndarray:
    a = np.asarray(img)
    if a.dtype != np.uint8:
        a = np.clip(a, 0, 255).astype(np.uint8)
    if a.ndim == 2:
        a = np.repeat(a[:, :, None], 3, axis=2)
    return np.ascontiguousarray(a[:, :, :3])


def shrink(rgb: np.ndarray, side: int) -> np.ndarray:
    h, w = rgb.shape[:2]
    scale = side / max(h, w)
    if scale >= 1:
        return rgb
    return cv2.resize(rgb, (max(1, round(w * scale)), max(1, round(h * scale))), interpolation=cv2.INTER_AREA)


def _clean(attention: Any) -> np.ndarray:
    a = np.asarray(attention, dtype=np.float32)
    return np.nan_to_num(a, nan=0.0, posinf=0.0, neginf=0.0).clip(min=0)


def attention_spread(attention: Any) -> float | None:
    """How much more attention the most-attended cell of a map got than the least (max / min): 1.0 is a flat map.
    None when the least is 0 (or the map is empty). The shipped model's maps are mild: 1.1-1.7 on the six
    validation videos' faces (2026-12-06)."""
    a = _clean(attention)
    if a.size == 0 or float(a.min()) <= 0:
        return None
    return float(a.max() / a.min())


FULL_SPREAD = 2.0  # a cell with this many times the attention of the face's least-attended cell is drawn full red


def heatmap_overlay(crop: Any, attention: Any, alpha: float = HEAT_ALPHA) -> np.ndarray:
    """The g x g attention map upsampled to the crop (cv2.resize), JET-coloured and alpha-blended on it.

    Colour is each cell's attention relative to the face's least-attended cell, on a fixed scale: blue at 1x, red
    at FULL_SPREAD (2x) or more. So a nearly uniform map stays nearly all blue and every face is drawn on the
    same scale. (Scaled by its own maximum, every mild map came out red all over; stretched from its own minimum
    to its maximum, every mild map looked sharply focused.) A map with cells of no attention at all, where a
    ratio has no meaning, is scaled by its maximum.
    """
    rgb = as_rgb(crop)
    h, w = rgb.shape[:2]
    a = _clean(attention)
    low, high = (float(a.min()), float(a.max())) if a.size else (0.0, 0.0)
    if low > 0:
        a = (a / low - 1.0) / (FULL_SPREAD - 1.0)
    else:
        a = a / high if high > 0 else np.zeros_like(a)
    up = cv2.resize(a.astype(np.float32), (w, h), interpolation=cv2.INTER_CUBIC).clip(0, 1)  # (g,g) -> (H,W)
    heat = cv2.applyColorMap((up * 255).astype(np.uint8), cv2.COLORMAP_JET)  # (H,W,3) BGR
    heat = cv2.cvtColor(heat, cv2.COLOR_BGR2RGB)
    return cv2.addWeighted(rgb, 1.0 - alpha, heat, alpha, 0.0)


def overview_picture(image: Any, faces: list[dict], frame_width: int, threshold: float) -> np.ndarray:
    """A still image with every face's box and number drawn on it (its track id, as the report's cards name it):
    red with a ▲ beside the number for a face at or above the threshold, green with a ▼ below (the sign, as the
    page's scores have, since the two colours print as one grey in black and white). `image` may be a shrunk copy
    of the frame the boxes (frame pixels) were found on, `frame_width` wide (a phone's copy: narrow_overview)."""
    out = as_rgb(image).copy()
    scale = out.shape[1] / max(1, frame_width)
    thick = max(2, round(out.shape[1] / 400))
    for f in faces:
        x1, y1, x2, y2 = (int(round(float(v) * scale)) for v in f["box"])
        above = f.get("score") is not None and float(f["score"]) >= threshold
        cv2.rectangle(out, (x1, y1), (x2, y2), _side_colour(above), thick)
        size = max(0.6, (x2 - x1) / 90)
        th = cv2.getTextSize("0", cv2.FONT_HERSHEY_SIMPLEX, size, thick)[0][1]
        _tag(out, x1, max(th + 4, y1 - 4), str(f.get("track_id", "?")), above, size, thick)
    return out


def _side_colour(above: bool) -> tuple[int, int, int]:
    return (198, 40, 40) if above else (46, 125, 50)


def _tag_size(label: str, size: float, thick: int) -> tuple[int, int]:
    """The (width, height) of a face's tag: its number and the sign after it, on a filled ground."""
    (tw, th), _ = cv2.getTextSize(label, cv2.FONT_HERSHEY_SIMPLEX, size, thick)
    return tw + th + 11, th + 6


def _tag(out: np.ndarray, x1: int, top: int, label: str, above: bool, size: float, thick: int) -> None:
    """A face's tag drawn on `out`: its number in white on a filled ground of its side's colour, then ▲ (at or above
    the threshold) or ▼; `x1` its left edge, `top` the number's baseline."""
    font = cv2.FONT_HERSHEY_SIMPLEX
    (tw, th), _ = cv2.getTextSize(label, font, size, thick)
    cv2.rectangle(out, (x1, top - th - 4), (x1 + tw + th + 11, top + 2), _side_colour(above), -1)  # behind both
    cv2.putText(out, label, (x1 + 3, top - 1), font, size, (255, 255, 255), thick, cv2.LINE_AA)
    left, bottom, tip = x1 + tw + 7, top - 1, top - 1 - th  # the sign: a triangle as tall as the number
    corners = ([(left, bottom), (left + th, bottom), (left + th // 2, tip)] if above else
               [(left, tip), (left + th, tip), (left + th // 2, bottom)])
    cv2.fillPoly(out, [np.array(corners, np.int32)], (255, 255, 255), cv2.LINE_AA)


NARROW_OVERVIEW_WIDTH = 640  # px: a phone's copy of a still image's overview (shown ~240-560 CSS px wide)
NARROW_TAG_SHARES = (0.045, 0.04, 0.035)  # its tags' digits that share of its width high: ~11 to ~8 CSS px on a
# 320 px screen (the wide copy's, shrunk there, were ~3 px high)
NARROW_TAG_ROWS = 2  # at most this many rows of tags above it (a third made a crowd's lines a tangle)


def narrow_overview(image: Any, faces: list[dict], frame_width: int, threshold: float) -> np.ndarray | None:
    """overview_picture for a phone's screen: NARROW_OVERVIEW_WIDTH wide, its tags in a band above the picture (the
    faces from the left taking the rows in turn), each at its face's place (pushed aside where tags meet, in the
    faces' order) with a line down to the box: tags that large, drawn on the picture, would cover the faces around.
    None where they do not fit in NARROW_TAG_ROWS rows even at the smallest of NARROW_TAG_SHARES (a crowd: the
    wide copy is shown, as on a desktop)."""
    rgb, width, thick = as_rgb(image), NARROW_OVERVIEW_WIDTH, 2
    boxes = [tuple(int(round(float(v) * width / max(1, frame_width))) for v in f["box"]) for f in faces]
    labels = [str(f.get("track_id", "?")) for f in faces]
    order = sorted(range(len(faces)), key=lambda i: (boxes[i][0] + boxes[i][2]) / 2)
    fits = [(share, k) for share in NARROW_TAG_SHARES for k in range(1, NARROW_TAG_ROWS + 1)
            if all(sum(_tag_size(labels[i], share * width / 22, thick)[0] + 6 for i in order[r::k]) <= width + 6
                   for r in range(k))]  # (HERSHEY_SIMPLEX's digits are ~22 px high at size 1)
    if not fits:
        return None
    share, rows = min(fits, key=lambda f: (f[1], -f[0]))  # the fewest rows, then the largest tags
    size = share * width / 22
    tag_h, widths = _tag_size("0", size, thick)[1], [_tag_size(label, size, thick)[0] for label in labels]
    lefts, tops = {}, {}
    for r in range(rows):  # row 0 nearest the picture; in each, from the left, each tag as near its face as it can
        end, row = -6, order[r::rows]
        for n, i in enumerate(row):
            room = width - sum(widths[j] + 6 for j in row[n + 1:])
            lefts[i] = end = int(min(max((boxes[i][0] + boxes[i][2]) / 2 - widths[i] / 2, end + 6), room - widths[i]))
            end, tops[i] = end + widths[i], 4 + (rows - 1 - r) * (tag_h + 6)
    band = 4 + rows * (tag_h + 6) + 8  # the rows, then room for the lines to leave them
    scale = width / rgb.shape[1]
    out = np.full((band + max(1, round(rgb.shape[0] * scale)), width, 3), 255, np.uint8)
    out[band:] = cv2.resize(rgb, (width, out.shape[0] - band), interpolation=cv2.INTER_AREA if scale < 1
                            else cv2.INTER_LINEAR)
    above = [f.get("score") is not None and float(f["score"]) >= threshold for f in faces]
    for i, (x1, y1, x2, y2) in enumerate(boxes):
        cv2.rectangle(out, (x1, band + y1), (x2, band + y2), _side_colour(above[i]), thick + 1)
    for r in range(rows):  # a row's lines over the rows nearer the picture: each line is whole from tag to box
        for i in order[r::rows]:
            x1, y1, x2, _ = boxes[i]
            cv2.line(out, (lefts[i] + widths[i] // 2, tops[i] + tag_h), ((x1 + x2) // 2, band + y1),
                     _side_colour(above[i]), thick, cv2.LINE_AA)
        for i in order[r::rows]:
            _tag(out, lefts[i], tops[i] + tag_h - 2, labels[i], above[i], size, thick)
    return out


MAX_NAMED_TRACKS = 6  # tracks a timeline names in its legend and colours; more: the highest-scoring 5, the rest grey
# each named track's own marker as well as its colour: printed in black and white, colours alone became one grey
TRACK_MARKERS = ("o", "s", "D", "X", "P", "*")


def _named_tracks(by_track: dict[int, list[tuple[float, float]]]) -> list[int]:
    """The tracks a timeline draws in colour with a legend entry each: all of up to MAX_NAMED_TRACKS, else the
    MAX_NAMED_TRACKS - 1 of the highest mean score. (Every track named: a crowd of 54 faces made the legend above
    the plot taller than the figure, which cut it off with the threshold's entry and the axis label, and the
    colours repeated every 10 tracks.)"""
    if len(by_track) <= MAX_NAMED_TRACKS:
        return sorted(by_track)
    mean = {tid: sum(s for _, s in pts) / len(pts) for tid, pts in by_track.items()}
    return sorted(sorted(by_track, key=lambda t: (-mean[t], t))[:MAX_NAMED_TRACKS - 1])


NARROW_WIDTH_IN = 3.2  # a phone's copy: shown ~240 CSS px wide on a 320 px screen, 11 pt text is ~11 px there
NARROW_ROW_IN = 0.24  # the height of one of its legend's lines (11 pt), inches


def timeline_plot(result: dict, path: Path, narrow: bool = False) -> Path:
    """Score over time, one line per track (more than MAX_NAMED_TRACKS: the highest in colour, the rest grey), with the
    decision threshold and the file's score. `narrow`: the same plot for a phone's screen, NARROW_WIDTH_IN wide
    (at twice the pixels, for its denser screen) with the legend an entry a line: the wide one, shrunk to a phone's
    width, had text 3-4 px high."""
    from matplotlib.figure import Figure

    fig = Figure(figsize=(7.5, 2.6), dpi=200 if narrow else 100)
    ax = fig.add_subplot()
    use_time = all(f.get("time") is not None for f in result["faces"])
    by_track: dict[int, list[tuple[float, float]]] = {}
    for f in result["faces"]:
        x = float(f["time"]) if use_time else float(f.get("frame_index", 0))
        by_track.setdefault(int(f.get("track_id", 0)), []).append((x, float(f["score"])))
    named = _named_tracks(by_track)
    others = [tid for tid in sorted(by_track) if tid not in named]
    for k, tid in enumerate(others):  # beneath, in one grey, with one legend entry for them all
        xs, ys = zip(*sorted(by_track[tid]))
        ax.plot(xs, ys, color="silver", marker="o", markersize=2, linewidth=0.8,
                label=f"{len(others)} other tracks (see the table)" if k == 0 else "_nolegend_")
    for k, tid in enumerate(named):
        xs, ys = zip(*sorted(by_track[tid]))
        ax.plot(xs, ys, marker=TRACK_MARKERS[k % len(TRACK_MARKERS)], markersize=5, linewidth=1.4, label=f"track {tid}")
    thr = float(result.get("threshold", 0.5))
    ax.axhline(thr, color="crimson", linestyle="--", linewidth=1, label=f"threshold {threshold_text(thr)}")
    if result.get("score") is not None:
        ax.axhline(float(result["score"]), color="dimgrey", linestyle=":", linewidth=1.2,
                   label=f"file score {float(result['score']):.{score_digits(result['score'], thr)}f}")
    ax.set(ylim=(-0.02, 1.02), xlabel="time (s)" if use_time else "frame", ylabel="fake probability")
    ax.xaxis.label.set_size(11)
    ax.yaxis.label.set_size(11)
    ax.tick_params(labelsize=10)
    ax.grid(alpha=0.3)
    if narrow:  # the figure's legend, from its left edge (an axes' one began after the y label, and was cut off)
        rows = len(ax.get_legend_handles_labels()[1])
        fig.set_size_inches(NARROW_WIDTH_IN, 2.2 + NARROW_ROW_IN * rows)
        fig.legend(loc="upper left", bbox_to_anchor=(0.0, 1.0), fontsize=11, handlelength=1.5, frameon=False)
        fig.tight_layout(rect=(0.0, 0.0, 1.0, 1.0 - (NARROW_ROW_IN * rows + 0.05) / (2.2 + NARROW_ROW_IN * rows)))
        return save_figure(fig, path)
    # above the plot, across its width
    ax.legend(loc="lower left", bbox_to_anchor=(0.0, 1.01), ncol=4, fontsize=10, frameon=False)
    fig.tight_layout()
    return save_figure(fig, path)
