"""Scene transforms that fall on both faces of a real/fake pair alike (training/augment.py): what covers or lights
the face, not how it was tampered with. The self-blend's boundary runs around the face, so any other edge across it
(a headscarf's hem, a shadow's edge) is a shortcut to FAKE unless real faces carry such edges too.

- `draw_band`: a soft-edged band of one random colour over the top, bottom or one side (a hat, headscarf, hand or
  microphone). bench/shortcuts.py found the model trained without it calling 20 % of real faces with the forehead
  covered FAKE.
- `draw_shade`: one side of the face in shadow behind a soft edge (side light from a window, a stage or a film set).
  The shipped model calls 10 % of 200 held-out real photos FAKE with the right 40 % of the crop at half brightness
  (as they are: 4 %), and 38 % with that shadow and the forehead band together (the band alone: 20 %).

Each `draw_*` returns the transform's parameters, drawn once per pair, or None; `apply_*` applies them to one image.
"""

from __future__ import annotations

import cv2
import numpy as np

Band = tuple[np.ndarray, np.ndarray]  # (mask (H,W,1) float32 in [0,1], colour (3,) float32)
Shade = tuple[np.ndarray, float]  # (mask (H,W,1) float32 in [0,1], gain under the mask)


def draw_band(h: int, w: int, rng: np.random.Generator, p: float, share: tuple[float, float]) -> Band | None:
    """With probability p, a band over the top (half the time), the bottom or one side, U(share) of that side deep."""
    if rng.random() >= p:
        return None
    side, depth = ("top", "top", "bottom", "left", "right")[rng.integers(5)], rng.uniform(*share)
    mask = np.zeros((h, w), np.float32)
    n = max(1, round(depth * (h if side in ("top", "bottom") else w)))
    mask[{"top": np.s_[:n], "bottom": np.s_[h - n:], "left": np.s_[:, :n], "right": np.s_[:, w - n:]}[side]] = 1.0
    return cv2.GaussianBlur(mask, (0, 0), max(h, w) * 0.01)[..., None], rng.uniform(0, 255, 3).astype(np.float32)


def apply_band(img: np.ndarray, band: Band | None) -> np.ndarray:
    return img if band is None else np.clip(img * (1 - band[0]) + band[1] * band[0], 0, 255).astype(np.uint8)


def draw_shade(h: int, w: int, rng: np.random.Generator, p: float, gain: tuple[float, float],
               share: tuple[float, float], soft: tuple[float, float]) -> Shade | None:
    """With probability p, the left or right U(share) of the width darkened to U(gain) of its brightness, behind an edge
    blurred by a Gaussian of sigma U(soft) x the width. No random draw at all when p is 0, so a run without shadows
    draws the same numbers as before this transform existed."""
    if p <= 0 or rng.random() >= p:
        return None
    right, depth, g, s = rng.integers(2), rng.uniform(*share), rng.uniform(*gain), rng.uniform(*soft)
    mask = np.zeros((h, w), np.float32)
    n = max(1, round(depth * w))
    (mask[:, w - n:] if right else mask[:, :n])[...] = 1.0
    return cv2.GaussianBlur(mask, (0, 0), max(1.0, s * w))[..., None], float(g)


def apply_shade(img: np.ndarray, shade: Shade | None) -> np.ndarray:
    if shade is None:
        return img
    return np.clip(img * (1.0 - (1.0 - shade[1]) * shade[0]), 0, 255).round().astype(np.uint8)
