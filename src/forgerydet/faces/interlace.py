"""Interlaced video: find combing in a decoded frame and remove it before faces are detected and scored.

Broadcast and DVD footage is often interlaced: the even and odd rows of a frame are two fields captured 1/50 or
1/60 s apart, and OpenCV hands the woven frame over as it is (a player would deinterlace it). Wherever the
subject moved between the fields, the rows alternate between two positions: combing, a fine comb of horizontal
teeth along every moving edge. That is what blending boundaries look like, and the shipped model reads it that
way: on 200 held-out real photos (bench/shortcuts.py, 2026-12-05) the odd rows moved 4 pixels call 21 % of them
FAKE and 8 pixels 36 % (as is 4 %). Whole videos (bench/interlace.py): the real anchor video, interlaced, scored
0.595 (FAKE) against 0.265 progressive, and 0.258 deinterlaced by this module.

Detection follows the block test of the TIVTC / Decomb combing detectors (IsCombedTIVTC: cthresh 9, metric 0,
MI 80 of a 16 x 16 block), asking for two such blocks. Interlacing is a property of the stream, so it is decided per
video (faces/media.py): a video is treated as interlaced once one of its first sampled frames shows combing, and
then every frame is deinterlaced: the even field kept, the odd rows interpolated along edges (edge-line average).
"""

from __future__ import annotations

import cv2
import numpy as np

COMB_THRESHOLD = 9  # grey levels (TIVTC's default cthresh)
COMB_BLOCK = 16
COMB_SHARE = 0.3  # of a block's pixels (TIVTC's MI: 80 of 16 x 16)
COMB_BLOCKS = 2  # blocks over COMB_SHARE for a frame to count as combed


def _combed_pixels(grey: np.ndarray, threshold: float) -> np.ndarray:
    """(H-4,W) bool for rows 2..H-3 of a grey int32 frame (H,W): combed pixels (see comb_map)."""
    cur = grey[2:-2]  # (H-4,W) the rows with two rows on each side
    up, down = cur - grey[1:-3], cur - grey[3:-1]
    other = ((up > threshold) & (down > threshold)) | ((up < -threshold) & (down < -threshold))
    own = np.abs(grey[:-4] + 4 * cur + grey[4:] - 3 * (grey[1:-3] + grey[3:-1])) > 6 * threshold
    return other & own


def comb_map(rgb: np.ndarray, threshold: float = COMB_THRESHOLD, block: int = COMB_BLOCK) -> np.ndarray:
    """The share of combed pixels in each `block` x `block` block of an RGB uint8 frame (H,W,3): (H//b, W//b),
    empty for a frame too small to hold one block. A pixel is combed when it differs from the rows above and
    below (the other field) by more than `threshold` in the same direction, and agrees with the rows two above
    and below (its own field) more than with them (TIVTC's metric 0), so a thin horizontal line is not."""
    combed = _combed_pixels(cv2.cvtColor(rgb, cv2.COLOR_RGB2GRAY).astype(np.int32), threshold)
    h, w = (combed.shape[0] // block) * block, (combed.shape[1] // block) * block
    return combed[:h, :w].reshape(h // block, block, w // block, block).mean(axis=(1, 3))


def is_combed(rgb: np.ndarray, share: float = COMB_SHARE, blocks: int = COMB_BLOCKS) -> bool:
    """Whether a frame shows interlacing combing: at least `blocks` blocks with `share` of their pixels combed."""
    return int((comb_map(rgb) >= share).sum()) >= blocks


def deinterlace(rgb: np.ndarray) -> np.ndarray:
    """Keep the even field; interpolate each odd row from the even rows above and below along the direction in
    which they agree best (edge-line average over -2..2 pixels, yadif's spatial check), so diagonal edges do not
    turn to stairs as with a plain line average. A last odd row copies the row above. Same shape and dtype."""
    h, w = rgb.shape[:2]
    out = rgb.copy()
    odd = np.arange(1, h - 1, 2)  # odd rows with an even row below
    if len(odd):
        above, below = rgb[odd - 1].astype(np.int32), rgb[odd + 1].astype(np.int32)  # (n,W,3)
        pad = 2
        ap = np.pad(above, ((0, 0), (pad, pad), (0, 0)), mode="edge")
        bp = np.pad(below, ((0, 0), (pad, pad), (0, 0)), mode="edge")
        ga, gb = ap.sum(axis=2), bp.sum(axis=2)  # (n,W+4) brightness to compare directions by
        best = np.full((len(odd), w), np.iinfo(np.int32).max)
        value = np.zeros_like(above)
        for d in (0, -1, 1, -2, 2):  # the vertical first: it wins ties
            cost = np.abs(ga[:, pad + d : pad + d + w] - gb[:, pad - d : pad - d + w])  # (n,W)
            take = cost < best
            best = np.where(take, cost, best)
            mean = (ap[:, pad + d : pad + d + w] + bp[:, pad - d : pad - d + w] + 1) // 2  # (n,W,3)
            value = np.where(take[..., None], mean, value)
        out[odd] = value.astype(rgb.dtype)
    if h % 2 == 0:
        out[-1] = rgb[-2]
    return out
