"""Self-blended images (SBI): pseudo-fakes made from one real face alone.

Shiohara & Yamasaki, "Detecting Deepfakes with Self-Blended Images", CVPR 2022. Source and target are the
same face; the source gets a colour transform (RGB shift, hue/saturation, brightness/contrast) and a
frequency transform (down-/up-scale, sharpen or blur) and is slightly rescaled/translated; it is then
alpha-blended into the untouched target through a soft face-shaped mask, so the only evidence left is the
blending boundary and the small colour/frequency/landmark mismatch a real face swap also leaves.

One deliberate difference from the original: it transforms source *or* target at random and returns the
transformed target as the "real" image; here the caller's real face must stay what it is (pixels outside
the mask are returned untouched), so the transforms always go to the source.

With 5 MTCNN landmarks the face region comes from a mean-face outline (jaw line and brows, proportions of
a mean 68-point face) fitted to the 5 points by least-squares affine; 68/81-point landmarks are used
directly (convex hull), as in the original.
"""

from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np

from forgerydet.errors import ForgeryDetError
from forgerydet.pairs.outline import face_frame, five_points, outline


@dataclass
class SBIConfig:
    """Every random choice of one self-blend. Defaults follow the original SBI code where it has one.

    Source colour transform (always applied to the source):
      rgb_shift_p, rgb_shift:   probability 0.3 of adding a per-channel offset in [-20, 20] (0..255 scale).
      hue_shift_deg:            hue rotated by U(-h, h) degrees in the YIQ chroma plane (5). The original's
                                HueSaturationValue limits of +-0.3 are near no-ops on uint8 images, so small
                                but real ranges are used.
      saturation:               chroma scaled by 1 + U(-s, s) (0.1).
      brightness, contrast:     U(-b, b) * 255 added, contrast scaled by 1 + U(-c, c) about the mean (0.1, 0.1).
    Source frequency transform (exactly one, drawn with freq_probs = (downscale, sharpen, blur)):
      downscale_factors:        nearest-neighbour down by 2 or 4, bilinear back up (the original's RandomDownScale).
      sharpen_alpha, sharpen_lightness: albumentations-style Sharpen, alpha in (0.2, 0.5), lightness (0.5, 1.0).
      blur_sigma:               Gaussian blur sigma in pixels (0.5, 1.5); not in the original (it has 2 options).
    Source geometry (the mask moves with it):
      translate:                (x, y) shift as a fraction of width/height, U(-t, t) each: (0.03, 0.015).
      scale:                    zoom about the centre, U(0.95, 1/0.95).
    Mask (face_mask):
      mask_probs:               probabilities of the mask kinds ('face' = brows to chin, 'extended' = brows
                                raised to the forehead, 'inner' = outline shrunk towards the nose, 'local' =
                                one facial part: eyes, nose, mouth or lower face, each half-axis scaled by
                                U(local_scale)), (0.5, 0.25, 0.25, 0). With 68/81 landmarks the hull is used,
                                except that a share mask_probs[3] / sum of masks are 'local'.
      local_scale:              'local' part size range (0.85, 1.15).
      forehead:                 'extended' brow lift factor range (1.5, 2.5) (brows at y*-factor).
      inner_shrink:             'inner' shrink factor range (0.8, 0.95).
      outline_jitter:           std of per-point Gaussian jitter of the outline, in face units (0.03).
      full81_p:                 with 81 landmarks, probability of using all 81 (forehead) rather than the
                                first 68 (0.75).
      work_side, work_jitter:   the mask is processed at about work_side px (224), each axis rescaled by
                                U(work_jitter) (192/224 .. 256/224, the original's random 192-256 resize).
      elastic_alpha, elastic_sigma: elastic deformation (cv2.remap) with displacement alpha and smoothing
                                sigma, both in units of the face size s (the eye-to-eye distance; the
                                original's 50 px / 7 px at s ~ 80 px): (0.6, 0.09).
      morph_size, dilate_p:     erosion (or, with probability dilate_p = 0.3, dilation) with an elliptical
                                kernel of U(morph_size) * s pixels: (0.06, 0.3) (the original's 5..25 px).
      blur_size, blur_mask_sigma: final Gaussian blur kernel U(blur_size) * s and sigma U(blur_mask_sigma) * s
                                for the soft edge: (0.06, 0.3) and (0.06, 0.56) (the original's 5..25, 5..45 px).
    Blend:
      blend_ratios:             fake = mask*r*src + (1-mask*r)*tgt with r drawn from (0.25, 0.5, 0.75, 1, 1, 1).
    """

    rgb_shift_p: float = 0.3
    rgb_shift: float = 20.0
    hue_shift_deg: float = 5.0
    saturation: float = 0.1
    brightness: float = 0.1
    contrast: float = 0.1
    freq_probs: tuple[float, float, float] = (0.4, 0.4, 0.2)
    downscale_factors: tuple[int, ...] = (2, 4)
    sharpen_alpha: tuple[float, float] = (0.2, 0.5)
    sharpen_lightness: tuple[float, float] = (0.5, 1.0)
    blur_sigma: tuple[float, float] = (0.5, 1.5)
    translate: tuple[float, float] = (0.03, 0.015)
    scale: tuple[float, float] = (0.95, 1 / 0.95)
    mask_probs: tuple[float, float, float, float] = (0.5, 0.25, 0.25, 0.0)
    local_scale: tuple[float, float] = (0.85, 1.15)
    forehead: tuple[float, float] = (1.5, 2.5)
    inner_shrink: tuple[float, float] = (0.8, 0.95)
    outline_jitter: float = 0.03
    full81_p: float = 0.75
    work_side: int = 224
    work_jitter: tuple[float, float] = (192 / 224, 256 / 224)
    elastic_alpha: float = 0.6
    elastic_sigma: float = 0.09
    morph_size: tuple[float, float] = (0.06, 0.3)
    dilate_p: float = 0.3
    blur_size: tuple[float, float] = (0.06, 0.3)
    blur_mask_sigma: tuple[float, float] = (0.06, 0.56)
    blend_ratios: tuple[float, ...] = (0.25, 0.5, 0.75, 1.0, 1.0, 1.0)

    @classmethod
    def with_local(cls, share: float) -> "SBIConfig":
        """The default self-blend with a share of 'local' masks (one facial part) in place of whole-face ones,
        the other kinds keeping their proportions (`train --sbi-local`)."""
        if not 0.0 <= share <= 1.0:
            raise ForgeryDetError(f"the share of local masks must be in [0, 1], got {share}")
        face, extended, inner, _ = cls.mask_probs
        k = 1.0 - share
        return cls(mask_probs=(face * k, extended * k, inner * k, share))

    def __post_init__(self) -> None:
        probs = [("rgb_shift_p", self.rgb_shift_p), ("dilate_p", self.dilate_p), ("full81_p", self.full81_p)]
        for name, p in probs:
            if not 0.0 <= p <= 1.0:
                raise ForgeryDetError(f"{name}={p} must be in [0, 1]")
        for name, ps, n in [("freq_probs", self.freq_probs, 3), ("mask_probs", self.mask_probs, 4)]:
            if len(ps) != n or min(ps) < 0 or sum(ps) <= 0:
                raise ForgeryDetError(f"{name}={ps} must be {n} non-negative weights with a positive sum")
        ranges = ["sharpen_alpha", "sharpen_lightness", "blur_sigma", "scale", "forehead", "inner_shrink", "local_scale",
                  "work_jitter", "morph_size", "blur_size", "blur_mask_sigma"]
        for name in ranges:
            lo, hi = getattr(self, name)
            if not 0 < lo <= hi:
                raise ForgeryDetError(f"{name}=({lo}, {hi}) must satisfy 0 < low <= high")
        if not self.blend_ratios or not all(0 < r <= 1 for r in self.blend_ratios):
            raise ForgeryDetError(f"blend_ratios={self.blend_ratios} must be non-empty values in (0, 1]")
        if not self.downscale_factors or min(self.downscale_factors) < 1:
            raise ForgeryDetError(f"downscale_factors={self.downscale_factors} must be integers >= 1")
        if self.work_side < 32:
            raise ForgeryDetError(f"work_side={self.work_side} must be >= 32")


# ---------------------------------------------------------------------------------------------- checks


def check_image(img: np.ndarray) -> None:
    if not isinstance(img, np.ndarray) or img.dtype != np.uint8 or img.ndim != 3 or img.shape[2] != 3:
        got = f"{img.dtype} {img.shape}" if isinstance(img, np.ndarray) else type(img).__name__
        raise ForgeryDetError(f"self-blending needs an (H,W,3) uint8 RGB face crop, got {got}")


def check_landmarks(landmarks: np.ndarray) -> np.ndarray:
    lm = np.asarray(landmarks, dtype=np.float64)
    if lm.ndim != 2 or lm.shape[1] != 2 or lm.shape[0] not in (5, 68, 81):
        raise ForgeryDetError(
            f"landmarks must be (5,2) MTCNN points or (68,2)/(81,2), got shape {lm.shape}"
        )
    if not np.isfinite(lm).all():
        raise ForgeryDetError(
            "this face has no landmarks (NaN): self-blending needs them; re-extract the faces with landmarks"
        )
    return lm


# ---------------------------------------------------------------------------------------------- the mask


def _odd(x: float) -> int:
    return max(3, int(round(x)) | 1)


def face_mask(
    shape: tuple[int, ...], landmarks: np.ndarray, rng: np.random.Generator, cfg: SBIConfig | None = None
) -> np.ndarray:
    """The soft blending mask alone: float32 (H,W) in [0,1], 1 inside the face, 0 well outside it.

    A face-shaped convex hull from the landmarks (see SBIConfig.mask_probs), elastically deformed
    (cv2.remap), eroded or dilated, Gaussian-blurred for a soft edge, normalised to a peak of 1. The work is
    done at about cfg.work_side pixels with a random per-axis stretch, then resized to `shape`.
    """
    cfg = cfg or SBIConfig()
    h, w = int(shape[0]), int(shape[1])
    lm = check_landmarks(landmarks)
    frame, size = face_frame(five_points(lm))  # the face's placement and size s in pixels
    pts, part = outline(lm, frame, rng, cfg)  # (P,2) image pixels

    base = min(1.0, cfg.work_side / min(h, w))
    fy, fx = base * rng.uniform(*cfg.work_jitter, size=2)
    hs, ws = max(8, round(h * fy)), max(8, round(w * fx))
    sy, sx = hs / h, ws / w
    s = size * float(np.sqrt(sx * sy))  # face size in work pixels

    mask = np.zeros((hs, ws), np.uint8)  # binary work is uint8: morphology is ~3x faster than in float
    hull = cv2.convexHull(np.round(pts * [sx, sy] * 16).astype(np.int32))  # 4 fractional bits
    cv2.fillConvexPoly(mask, hull, 255, lineType=cv2.LINE_8, shift=4)

    # Elastic deformation: smoothed uniform noise as a displacement field, drawn at 1/4 resolution (it is
    # smooth anyway) and resized up; smoothing white noise with sigma/4 leaves it 4x stronger than with
    # sigma at full resolution, hence alpha/4.
    sigma, alpha = cfg.elastic_sigma * s, cfg.elastic_alpha * s
    if alpha > 0 and sigma > 0:
        hq, wq = max(2, hs // 4), max(2, ws // 4)
        noise = rng.uniform(-1.0, 1.0, (hq, wq, 2)).astype(np.float32)
        field = cv2.GaussianBlur(noise, (0, 0), sigma / 4) * np.float32(alpha / 4)  # (hq,wq,2)
        field = cv2.resize(field, (ws, hs), interpolation=cv2.INTER_LINEAR)  # (hs,ws,2)
        field[..., 0] += np.arange(ws, dtype=np.float32)
        field[..., 1] += np.arange(hs, dtype=np.float32)[:, None]
        mask = cv2.remap(mask, field, None, cv2.INTER_LINEAR, borderMode=cv2.BORDER_CONSTANT, borderValue=0)

    # a facial part is smaller than the face: its erosion and blur stay under a third of its diameter
    cap = np.inf if part is None else part * s / 3
    k = _odd(min(rng.uniform(*cfg.morph_size) * s, cap))
    kernel = cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (k, k))
    morphed = cv2.dilate(mask, kernel) if rng.random() < cfg.dilate_p else cv2.erode(mask, kernel)
    if morphed.max() > 127:  # an erosion that removed the whole region is skipped
        mask = morphed
    mask = mask.astype(np.float32) / 255.0

    kb = _odd(min(rng.uniform(*cfg.blur_size) * s, cap))
    mask = cv2.GaussianBlur(mask, (kb, kb), min(rng.uniform(*cfg.blur_mask_sigma) * s, cap))
    peak = float(mask.max())
    if peak <= 0:
        raise ForgeryDetError("the face region from these landmarks lies outside the image: check the landmarks")
    mask = cv2.resize(mask / peak, (w, h), interpolation=cv2.INTER_LINEAR)
    return np.clip(mask, 0.0, 1.0).astype(np.float32)


# ---------------------------------------------------------------------------------------------- the source


# RGB <-> YIQ: hue is a rotation of the (I,Q) chroma plane, saturation a scaling of it.
_RGB2YIQ = np.array([[0.299, 0.587, 0.114], [0.596, -0.274, -0.322], [0.211, -0.523, 0.312]])
_YIQ2RGB = np.linalg.inv(_RGB2YIQ)


def _color_matrix(hue_deg: float, saturation: float) -> np.ndarray:
    """(3,3) RGB matrix rotating hue by hue_deg and scaling saturation; luma is kept."""
    t = np.deg2rad(hue_deg)
    chroma = saturation * np.array([[np.cos(t), -np.sin(t)], [np.sin(t), np.cos(t)]])
    yiq = np.eye(3)
    yiq[1:, 1:] = chroma
    return _YIQ2RGB @ yiq @ _RGB2YIQ


def color_transform(x: np.ndarray, rng: np.random.Generator, cfg: SBIConfig) -> np.ndarray:
    """x: float32 (H,W,3) RGB in 0..255 -> same. RGB shift, hue/saturation, brightness/contrast, folded
    into one affine colour map (one cv2.transform pass)."""
    shift = np.zeros(3)
    if rng.random() < cfg.rgb_shift_p:
        shift = rng.uniform(-cfg.rgb_shift, cfg.rgb_shift, 3)
    hue = rng.uniform(-cfg.hue_shift_deg, cfg.hue_shift_deg)
    sat = 1.0 + rng.uniform(-cfg.saturation, cfg.saturation)
    b = rng.uniform(-cfg.brightness, cfg.brightness) * 255.0
    c = 1.0 + rng.uniform(-cfg.contrast, cfg.contrast)
    a = _color_matrix(hue, sat)  # (3,3)
    mean = a @ (x.reshape(-1, 3).mean(0) + shift)  # (3,) image mean after shift and hue/saturation
    # y = c * (a @ (x + shift) - mean) + mean + b, per pixel
    m = np.hstack([c * a, (c * (a @ shift) + (1.0 - c) * mean + b)[:, None]]).astype(np.float32)  # (3,4)
    return np.clip(cv2.transform(x, m), 0, 255)


def sharpen(x: np.ndarray, alpha: float, lightness: float) -> np.ndarray:
    """albumentations' Sharpen kernel, (1 - alpha) * identity + alpha * (8 + lightness centre, -1 around), on an
    (H,W,3) image in 0..255; float32 in -> float32 out, uint8 in -> uint8 out. Also the training augmentation's
    camera sharpening (training/augment.py), so that this kernel alone never marks a face as self-blended."""
    effect = np.full((3, 3), -1.0, np.float32)
    effect[1, 1] = 8.0 + lightness
    identity = np.zeros((3, 3), np.float32)
    identity[1, 1] = 1.0
    kernel = (1.0 - alpha) * identity + alpha * effect
    out = np.clip(cv2.filter2D(x.astype(np.float32, copy=False), -1, kernel, borderType=cv2.BORDER_REFLECT_101), 0, 255)
    return out.round().astype(np.uint8) if x.dtype == np.uint8 else out


def frequency_transform(x: np.ndarray, rng: np.random.Generator, cfg: SBIConfig) -> np.ndarray:
    """x: float32 (H,W,3) -> same; one of down-/up-scale, sharpen, blur."""
    h, w = x.shape[:2]
    op = rng.choice(3, p=np.asarray(cfg.freq_probs) / sum(cfg.freq_probs))
    if op == 0:
        r = cfg.downscale_factors[rng.integers(len(cfg.downscale_factors))]
        small = cv2.resize(x, (max(1, w // r), max(1, h // r)), interpolation=cv2.INTER_NEAREST)
        return cv2.resize(small, (w, h), interpolation=cv2.INTER_LINEAR)
    if op == 1:
        return sharpen(x, rng.uniform(*cfg.sharpen_alpha), rng.uniform(*cfg.sharpen_lightness))
    return cv2.GaussianBlur(x, (0, 0), rng.uniform(*cfg.blur_sigma))


def _source_affine(h: int, w: int, rng: np.random.Generator, cfg: SBIConfig) -> np.ndarray:
    """(2,3) zoom about the image centre plus a small shift."""
    s = rng.uniform(*cfg.scale)
    tx = rng.uniform(-cfg.translate[0], cfg.translate[0]) * w
    ty = rng.uniform(-cfg.translate[1], cfg.translate[1]) * h
    cx, cy = (w - 1) / 2.0, (h - 1) / 2.0
    return np.array([[s, 0.0, (1 - s) * cx + tx], [0.0, s, (1 - s) * cy + ty]])


def self_blend(
    img: np.ndarray, landmarks: np.ndarray, rng: np.random.Generator, cfg: SBIConfig | None = None
) -> tuple[np.ndarray, np.ndarray]:
    """A self-blended pseudo-fake of one real face.

    img: (H,W,3) uint8 RGB face crop; landmarks: (5,2) float MTCNN points (left eye, right eye, nose,
    mouth left, mouth right) in crop pixels, or (68,2)/(81,2). Returns (fake uint8 (H,W,3), mask float32
    (H,W) in [0,1]) where mask is the effective blend weight (face_mask x blend ratio):
    fake = mask*src + (1-mask)*img, so pixels with mask == 0 equal img exactly.
    Deterministic for a given rng state. Give it crops with margin around the face (extract's 1.3x box):
    on a crop tighter than the jaw line the mask can fill the frame and the fake then has no boundary.
    """
    cfg = cfg or SBIConfig()
    check_image(img)
    lm = check_landmarks(landmarks)
    h, w = img.shape[:2]
    target = img.astype(np.float32)
    source = frequency_transform(color_transform(target, rng, cfg), rng, cfg)
    m = _source_affine(h, w, rng, cfg)
    source = cv2.warpAffine(source, m, (w, h), flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_REFLECT_101)
    lm_moved = lm @ m[:, :2].T + m[:, 2]  # the mask follows the moved source face
    mask = face_mask((h, w), lm_moved, rng, cfg)
    ratio = cfg.blend_ratios[rng.integers(len(cfg.blend_ratios))]
    alpha = (mask * np.float32(ratio)).astype(np.float32)
    fake = target + alpha[..., None] * (source - target)  # exactly target where alpha == 0
    return np.clip(np.rint(fake), 0, 255).astype(np.uint8), alpha
