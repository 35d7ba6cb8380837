"""The report's pictures: face thumbnails, the difference-attention heatmap overlay, and the score-over-time plot."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import cv2
import numpy as np

from forgerydet.metrics import save_figure

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


def heatmap_overlay(crop: Any, attention: Any, alpha: float = HEAT_ALPHA) -> np.ndarray:
    """The g x g attention map upsampled to the crop (cv2.resize), JET-coloured and alpha-blended on it.

    The map is scaled by its own maximum, so colours show where this face's attention went, not how much.
    """
    rgb = as_rgb(crop)
    h, w = rgb.shape[:2]
    a = np.asarray(attention, dtype=np.float32)
    a = np.nan_to_num(a, nan=0.0, posinf=0.0, neginf=0.0).clip(min=0)
    peak = float(a.max()) if a.size else 0.0
    a = a / peak if peak > 0 else np.zeros_like(a)
    up = cv2.resize(a, (w, h), interpolation=cv2.INTER_CUBIC).clip(0, 1)  # (g,g) -> (H,W)
    heat = cv2.applyColorMap((up * 255).astype(np.uint8), cv2.COLORMAP_JET)  # (H,W,3) BGR
    heat = cv2.cvtColor(heat, cv2.COLOR_BGR2RGB)
    return cv2.addWeighted(rgb, 1.0 - alpha, heat, alpha, 0.0)


def timeline_plot(result: dict, path: Path) -> Path:
    """Score over time, one line per track, with the decision threshold."""
    from matplotlib.figure import Figure

    fig = Figure(figsize=(7.5, 2.6), dpi=100)
    ax = fig.add_subplot()
    use_time = all(f.get("time") is not None for f in result["faces"])
    by_track: dict[int, list[tuple[float, float]]] = {}
    for f in result["faces"]:
        x = float(f["time"]) if use_time else float(f.get("frame_index", 0))
        by_track.setdefault(int(f.get("track_id", 0)), []).append((x, float(f["score"])))
    for tid, pts in sorted(by_track.items()):
        pts.sort()
        xs, ys = zip(*pts)
        ax.plot(xs, ys, marker="o", markersize=3, linewidth=1.4, label=f"track {tid}")
    thr = float(result.get("threshold", 0.5))
    ax.axhline(thr, color="crimson", linestyle="--", linewidth=1, label=f"threshold {thr:g}")
    ax.set(ylim=(-0.02, 1.02), xlabel="time (s)" if use_time else "frame", ylabel="fake probability")
    ax.grid(alpha=0.3)
    ax.legend(loc="upper left", bbox_to_anchor=(1.01, 1.0), fontsize=8, frameon=False)
    fig.tight_layout()
    return save_figure(fig, path)
