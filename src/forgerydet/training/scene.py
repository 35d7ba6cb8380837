"""Scene transforms that fall on both faces of a real/fake pair alike (training/augment.py): what covers or lights
the face, not how it was tampered with. The self-blend's boundary runs around the face, so any other edge across it
(a headscarf's hem, a shadow's edge) is a shortcut to FAKE unless real faces carry such edges too.

- `draw_band`: a soft-edged band of one random colour over the top, bottom or one side (a hat, headscarf, hand or
  microphone). bench/shortcuts.py found the model trained without it calling 20 % of real faces with the forehead
  covered FAKE.
- `draw_shade`: one side of the face in shadow behind a soft edge (side light from a window, a stage or a film set).
  The shipped model calls 10 % of 200 held-out real photos FAKE with the right 40 % of the crop at half brightness
  (as they are: 4 %), and 38 % with that shadow and the forehead band together (the band alone: 20 %).

- `draw_defocus`: the background out of focus around a sharp head (a shallow depth of field: film, portrait
  lenses, phones' portrait and cinematic modes). The shipped model calls 39 % / 62 % of 200 held-out real photos
  FAKE with the background blurred by sigma 3 / 6 px around the person (GrabCut's segmentation, as a phone does it:
  bench/shortcuts.py), against 4 % as they are: a sharpness edge near the face outline reads as a blend. Off by
  default: at defocus_p 0.2 three one-epoch seeds cut the sigma-3 figure (38 -> 22 %) but not the sigma-6 one on
  every seed (models/README.md, "Portrait mode").

Each `draw_*` returns the transform's parameters, drawn once per pair, or None; `apply_*` applies them to one image;
`draw_scene` / `apply_scene` do all three as an AugmentConfig (training/augment.py) says.
"""

from __future__ import annotations

from typing import Protocol

import cv2
import numpy as np

Band = tuple[np.ndarray, np.ndarray]  # (mask (H,W,1) float32 in [0,1], colour (3,) float32)
Shade = tuple[np.ndarray, float]  # (mask (H,W,1) float32 in [0,1], gain under the mask)
Defocus = tuple[np.ndarray, float]  # (mask (H,W,1) float32 in [0,1] of what stays sharp, blur sigma in pixels)
Scene = tuple[Band | None, Shade | None, Defocus | None]


class SceneSettings(Protocol):
    """The fields of training/augment.py's AugmentConfig that the scene reads."""

    occlude_p: float
    occlude_share: tuple[float, float]
    shade_p: float
    shade_gain: tuple[float, float]
    shade_share: tuple[float, float]
    shade_soft: tuple[float, float]
    defocus_p: float
    defocus_sigma: tuple[float, float]
    defocus_axes: tuple[float, float]


def draw_scene(h: int, w: int, rng: np.random.Generator, cfg: SceneSettings) -> Scene:
    """The band, side shadow and defocused background, drawn once for a pair or a lone face, in that order (a
    transform added later draws last, so runs without it reproduce)."""
    return (draw_band(h, w, rng, cfg.occlude_p, cfg.occlude_share),
            draw_shade(h, w, rng, cfg.shade_p, cfg.shade_gain, cfg.shade_share, cfg.shade_soft),
            draw_defocus(h, w, rng, cfg.defocus_p, cfg.defocus_sigma, cfg.defocus_axes))


def apply_scene(img: np.ndarray, scene: Scene) -> np.ndarray:
    """The background's blur first (the lens), then what covers and lights the face."""
    return apply_shade(apply_band(apply_defocus(img, scene[2]), scene[0]), scene[1])


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


def draw_defocus(h: int, w: int, rng: np.random.Generator, p: float, sigma: tuple[float, float],
                 axes: tuple[float, float]) -> Defocus | None:
    """With probability p, everything outside an upright ellipse about the head blurred by a Gaussian of sigma
    U(sigma) x w / 224 (pixels at a 224 px crop). The ellipse is U(axes) of the width across each side of a centre
    at (w/2, U(0.42, 0.48) x h), 1.15-1.30 times as tall as wide, its edge blurred by 0.5-3 % of the width (a
    segmentation's edge to a lens's): with axes from 0.36 up, it runs outside the face itself (the cheeks reach about
    0.3 of the width from the centre of a crop), through hair, ears and background. No random draw at all when p is
    0, so a run without it draws the same numbers as before this transform existed."""
    if p <= 0 or rng.random() >= p:
        return None
    ax, tall, cy, edge, s = (rng.uniform(*axes), rng.uniform(1.15, 1.30), rng.uniform(0.42, 0.48),
                             rng.uniform(0.005, 0.03), rng.uniform(*sigma))
    mask = np.zeros((h, w), np.float32)
    cv2.ellipse(mask, (round(w / 2), round(cy * h)), (max(1, round(ax * w)), max(1, round(ax * tall * w))),
                0, 0, 360, 1.0, -1)
    return cv2.GaussianBlur(mask, (0, 0), max(0.5, edge * w))[..., None], float(s * w / 224)


def apply_defocus(img: np.ndarray, defocus: Defocus | None) -> np.ndarray:
    if defocus is None:
        return img
    mask, sigma = defocus
    return np.clip(img * mask + cv2.GaussianBlur(img, (0, 0), sigma) * (1.0 - mask), 0, 255).round().astype(np.uint8)
