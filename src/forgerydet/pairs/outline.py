"""The blending region of a self-blend (pairs/sbi.py) from face landmarks: a mean-face outline fitted to 5 MTCNN
points (or the hull of 68/81 points), in one of four kinds: the face, the face with the forehead, the face shrunk
towards the nose, or one facial part ('local')."""

from __future__ import annotations

from typing import Any

import numpy as np

from forgerydet.errors import ForgeryDetError

# Landmark-normalised face frame: origin at the midpoint between the eye centres, x in units of the
# eye-to-eye distance, y in units of the eye-centre-to-mouth-centre distance (y points down). Values are
# rounded proportions measured on a mean 68-point face.
ANCHORS = np.array([[-0.5, 0.0], [0.5, 0.0], [0.0, 0.55], [-0.45, 1.0], [0.45, 1.0]])  # MTCNN order
JAW_RIGHT = np.array(  # chin -> right temple
    [[0.0, 1.75], [0.29, 1.71], [0.54, 1.56], [0.77, 1.36], [0.95, 1.13], [1.07, 0.87], [1.14, 0.58],
     [1.16, 0.29], [1.17, 0.0]]
)
BROW_RIGHT = np.array([[0.93, -0.2], [0.78, -0.3], [0.58, -0.33], [0.38, -0.3], [0.19, -0.23]])
MIRROR = np.array([-1.0, 1.0])
JAW = np.concatenate([JAW_RIGHT, JAW_RIGHT[1:] * MIRROR])
BROWS = np.concatenate([BROW_RIGHT, BROW_RIGHT * MIRROR])
FACE_CENTRE = np.array([0.0, 0.55])  # the nose: "inner" masks shrink towards it
EYE_MOUTH_RATIO = 1.09  # mean face: eye-to-mouth distance / eye-to-eye distance
MASK_KINDS = ("face", "extended", "inner", "local")
# 'local' masks cover one facial part, an ellipse in face units: (centre x, centre y, half-width, half-height).
# A face swap replaces the whole face; reenactment and local edits (Face2Face, NeuralTextures' mouth) re-render
# only part of it, so their boundary lies inside the face, where a whole-face self-blend never puts one.
PARTS = {
    "eyes": (0.0, -0.05, 0.95, 0.38),  # both eyes and the lower brows
    "nose": (0.0, 0.5, 0.32, 0.42),
    "mouth": (0.0, 1.02, 0.7, 0.35),
    "lower": (0.0, 0.95, 0.85, 0.62),  # nose tip to above the chin: the mouth region with its surround
}
ELLIPSE = np.stack([np.cos(np.linspace(0, 2 * np.pi, 16, endpoint=False)),
                     np.sin(np.linspace(0, 2 * np.pi, 16, endpoint=False))], 1)  # (16,2) unit circle


def five_points(lm: np.ndarray) -> np.ndarray:
    """(5,2) eye centres, nose tip, mouth corners (MTCNN order) from 5, 68 or 81 landmarks."""
    if len(lm) == 5:
        return lm
    # 68-point (dlib/iBUG) indices: 36-41 one eye, 42-47 the other, 30 nose tip, 48/54 mouth corners.
    return np.stack([lm[36:42].mean(0), lm[42:48].mean(0), lm[30], lm[48], lm[54]])


def face_frame(lm5: np.ndarray) -> tuple[np.ndarray, float]:
    """Least-squares affine (2,3) from the normalised face frame to pixels, and the face size s in pixels."""
    src = np.hstack([ANCHORS, np.ones((5, 1))])  # (5,3)
    a, *_ = np.linalg.lstsq(src, lm5, rcond=None)  # (3,2)
    eye = float(np.linalg.norm(lm5[1] - lm5[0]))
    mouth = float(np.linalg.norm((lm5[3] + lm5[4]) / 2 - (lm5[0] + lm5[1]) / 2))
    s = max(eye, mouth / EYE_MOUTH_RATIO)  # robust to yaw (eyes close up) and pitch (eye-mouth shrinks)
    if s < 2.0:
        raise ForgeryDetError(f"landmarks are degenerate (face size {s:.1f} px): check the face detector output")
    return a.T, s


def outline(lm: np.ndarray, frame: np.ndarray, rng: np.random.Generator, cfg: Any) -> tuple[np.ndarray, float | None]:
    """(P,2) pixel points whose convex hull is the (unsoftened) blending region, and for a 'local' mask the
    part's smaller diameter in face units (None otherwise), which bounds its erosion and blur. frame: the
    landmarks' face frame, face_frame(five_points(lm))[0], which places the mean-face outline. cfg: the
    self-blend's SBIConfig (pairs/sbi.py: mask_probs, full81_p, forehead, inner_shrink, local_scale,
    outline_jitter)."""
    probs = np.asarray(cfg.mask_probs, np.float64) / sum(cfg.mask_probs)
    if len(lm) in (68, 81):
        # (no draw when local masks are off, so a seed gives the masks it gave before they existed)
        if not (probs[3] > 0 and rng.random() < probs[3]):
            return (lm if len(lm) == 68 or rng.random() < cfg.full81_p else lm[:68]), None
        kind = "local"
    else:
        kind = MASK_KINDS[rng.choice(4, p=probs)]  # one uniform draw: with probs[3] = 0 as with 3 kinds
    part = None
    if kind == "local":
        cx, cy, ax, ay = PARTS[list(PARTS)[rng.integers(len(PARTS))]]
        half = np.array([ax, ay]) * rng.uniform(*cfg.local_scale, size=2)
        pts = np.array([cx, cy]) + ELLIPSE * half
        part = float(2 * min(half[0], half[1] * EYE_MOUTH_RATIO))  # y units are eye-to-mouth distances
    else:
        jaw, brows = JAW.copy(), BROWS.copy()
        if kind == "extended":
            brows[:, 1] *= rng.uniform(*cfg.forehead)
        pts = np.concatenate([jaw, brows])  # (P,2) face units
        if kind == "inner":
            pts = FACE_CENTRE + (pts - FACE_CENTRE) * rng.uniform(*cfg.inner_shrink)
    pts = pts + rng.normal(0.0, cfg.outline_jitter, pts.shape)
    return pts @ frame[:, :2].T + frame[:, 2], part
