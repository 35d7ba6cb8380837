"""Blended images from ANOTHER person: pseudo-fakes of a face swap made from two real faces.

Face X-ray's "blended images" (Li et al., "Face X-ray for More General Face Forgery Detection", CVPR 2020): a
donor face of another person, chosen for a similar pose, is aligned to the target's landmarks and alpha-blended
into the target through a soft face mask. A self-blend (pairs/sbi.py) leaves only a boundary and small colour and
frequency mismatches; a face swap (FaceSwap, Deepfakes, DFDC) also puts another person's inner face, skin texture
and light inside the target's untouched forehead, hair, ears and jaw. These pseudo-fakes carry that trace too.

Made as a self-blend is, so the two kinds differ in the source: the donor is similarity-aligned (eyes, nose,
mouth corners), its colour matched to the target's inside the mask (mean and standard deviation per channel, as
Face X-ray's colour correction), then given SBI's source colour and frequency transforms, and blended at SBI's
blend ratios through SBI's soft mask on the target's landmarks, of the face or inner-face kind (a swap replaces
the inner face; the forehead and hair stay the target's; with `--sbi-local` that share is one facial part), and
nowhere outside the donor's own picture (a tight crop's black padding is never blended in). Pixels outside the
mask are the target's, so in 'pair' mode the target real face is the reference the fake was made from.
"""

from __future__ import annotations

import dataclasses

import cv2
import numpy as np

from forgerydet.errors import ForgeryDetError
from forgerydet.pairs.outline import five_points
from forgerydet.pairs.sbi import (SBIConfig, check_image, check_landmarks, color_transform, face_mask,
                                  frequency_transform)

DONOR_CANDIDATES = 32  # random faces of other people looked at per pseudo-fake; the nearest in pose is the donor
SWAP_MASKS = (0.6, 0.0, 0.4, 0.0)  # face and inner masks only: a swap replaces the inner face, not forehead or hair
CONTRAST_GAIN = (0.7, 1.4)  # bounds on the per-channel std ratio of the colour match
PAD_LEVEL = 8  # border rows/columns darker than this everywhere are padding (a tight crop padded with black)


def pose_key(landmarks: np.ndarray) -> np.ndarray:
    """(10,) the 5 landmarks centred and scaled to unit RMS radius: faces in similar poses (yaw, pitch, roll,
    expression) have near keys, whatever their size and place in the crop."""
    p = five_points(check_landmarks(landmarks))
    c = p - p.mean(0)
    r = float(np.sqrt((c**2).sum(1).mean()))
    if r < 1e-6:
        raise ForgeryDetError("landmarks are degenerate (all five at one point): check the face detector output")
    return (c / r).reshape(-1)


def pick_donor(keys: np.ndarray, groups: np.ndarray, key: np.ndarray, group: str, rng: np.random.Generator,
               candidates: int = DONOR_CANDIDATES) -> int | None:
    """Index of the donor for a target of `group` with pose `key`: among `candidates` random rows of other groups
    (other people), the one nearest in pose. keys: (N,10) pose_key of every row; groups: (N,) their groups.
    None when every row is of the target's group."""
    other = np.flatnonzero(groups != group)
    if other.size == 0:
        return None
    pool = other[rng.choice(other.size, size=min(candidates, other.size), replace=False)]
    return int(pool[np.argmin(((keys[pool] - key) ** 2).sum(1))])


def similarity(src: np.ndarray, dst: np.ndarray) -> np.ndarray:
    """(2,3) least-squares similarity (rotation, uniform scale, shift) taking points src (N,2) onto dst (N,2)
    (Umeyama 1991, without reflection)."""
    mu_s, mu_d = src.mean(0), dst.mean(0)
    s, d = src - mu_s, dst - mu_d
    u, sig, vt = np.linalg.svd(d.T @ s / len(src))
    flip = np.diag([1.0, np.sign(np.linalg.det(u @ vt)) or 1.0])
    rot = u @ flip @ vt
    scale = float((sig * np.diag(flip)).sum() / max((s**2).sum() / len(src), 1e-12))
    a = scale * rot
    return np.hstack([a, (mu_d - a @ mu_s)[:, None]])


def content_box(img: np.ndarray) -> tuple[int, int, int, int]:
    """(x0, y0, x1, y1) of the image inside its black padding (the whole image when it has none)."""
    bright = img.max(2) >= PAD_LEVEL
    rows, cols = np.flatnonzero(bright.any(1)), np.flatnonzero(bright.any(0))
    if rows.size == 0:
        return 0, 0, img.shape[1], img.shape[0]
    return int(cols[0]), int(rows[0]), int(cols[-1]) + 1, int(rows[-1]) + 1


def _inside(img: np.ndarray) -> np.ndarray:
    """float32 (H,W): 1 on the picture, 0 on its black padding."""
    x0, y0, x1, y1 = content_box(img)
    out = np.zeros(img.shape[:2], np.float32)
    out[y0:y1, x0:x1] = 1.0
    return out


def _match_colour(src: np.ndarray, tgt: np.ndarray, weight: np.ndarray) -> np.ndarray:
    """src moved to tgt's per-channel mean and standard deviation, both measured where weight (H,W) is high."""
    w = weight.reshape(-1, 1).astype(np.float64)
    w = w / max(float(w.sum()), 1e-6)
    s, t = src.reshape(-1, 3).astype(np.float64), tgt.reshape(-1, 3).astype(np.float64)
    ms, mt = (w * s).sum(0), (w * t).sum(0)
    ss = np.sqrt((w * (s - ms) ** 2).sum(0)) + 1e-3
    st = np.sqrt((w * (t - mt) ** 2).sum(0))
    gain = np.clip(st / ss, *CONTRAST_GAIN)  # hair or a beard inside the mask must not turn the skin purple
    return np.clip((src - ms) * gain + mt, 0, 255).astype(np.float32)


def swap_masks(cfg: SBIConfig) -> SBIConfig:
    """cfg with its whole-face mask kinds replaced by SWAP_MASKS' face and inner kinds; its share of 'local' masks
    (`train --sbi-local`: one facial part, here taken from the other person) is kept."""
    local = cfg.mask_probs[3] / sum(cfg.mask_probs)
    return dataclasses.replace(cfg, mask_probs=tuple(p * (1.0 - local) for p in SWAP_MASKS[:3]) + (local,))


def swap_blend(
    target: np.ndarray, target_landmarks: np.ndarray, donor: np.ndarray, donor_landmarks: np.ndarray,
    rng: np.random.Generator, cfg: SBIConfig | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """A pseudo-fake of `target` with `donor`'s inner face blended in.

    target, donor: (H,W,3) uint8 RGB face crops (any sizes); *_landmarks: (5,2) MTCNN points or (68,2)/(81,2) in
    their own crop's pixels. Returns (fake uint8 of target's shape, alpha float32 (H,W) in [0,1]):
    fake = alpha*source + (1-alpha)*target, so pixels with alpha == 0 equal the target exactly.
    Deterministic for a given rng state.
    """
    cfg = cfg or SBIConfig()
    check_image(target)
    check_image(donor)
    tlm, dlm = check_landmarks(target_landmarks), check_landmarks(donor_landmarks)
    h, w = target.shape[:2]
    m = similarity(five_points(dlm), five_points(tlm))
    source = cv2.warpAffine(donor.astype(np.float32), m, (w, h), flags=cv2.INTER_LINEAR,
                            borderMode=cv2.BORDER_REFLECT_101)
    # where the donor has no picture (outside its frame or in its padding) the target stays, with a soft edge
    inside = cv2.warpAffine(_inside(donor), m, (w, h), flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_CONSTANT,
                            borderValue=0) * _inside(target)
    inside = cv2.GaussianBlur(cv2.erode(inside, np.ones((5, 5), np.uint8)), (0, 0), max(1.0, w / 64))
    swap_cfg = swap_masks(cfg)
    mask = face_mask((h, w), tlm, rng, swap_cfg) * inside
    tgt = target.astype(np.float32)
    source = _match_colour(source, tgt, mask)
    source = frequency_transform(color_transform(source, rng, cfg), rng, cfg)
    ratio = cfg.blend_ratios[rng.integers(len(cfg.blend_ratios))]
    alpha = (mask * np.float32(ratio)).astype(np.float32)
    fake = tgt + alpha[..., None] * (source - tgt)
    return np.clip(np.rint(fake), 0, 255).astype(np.uint8), alpha
