"""Does the model call a REAL face fake for how it was captured (sharpened, smeared, re-encoded) rather than for
tampering? Held-out real faces and their self-blends, each degraded the same way, scored as `evaluate --crops`
scores crops (the checkpoint's calibrated probability and stored threshold): per degradation, the real faces'
mean fake probability, the share of them called FAKE, and the real-vs-self-blend AUC.

A degradation that lifts the reals far above the calibrated false-positive rate (5 % for the shipped model) is a
shortcut: the model learned it as a sign of forgery, and real footage that carries it gets flagged. It found two
in the model shipped before 2026-12-01 evening: SBI's sharpen kernel and motion blur (training/augment.py).

The faces: the 'val' split of a pairs.csv that the checkpoint never trained on: for the shipped file, `make
shipped-calib` (runs/shipped_calib_pairs/pairs.csv: 2,286 real photos of the four training sources that its
checkpoint does not list as training faces); for a retrain by `make model`, the calibration pairs of `make
model-data` (runs/base_calib_pairs/pairs.csv, which hold 75 % of the SHIPPED file's training photos: never use
them on it). `--n` of them, seeded.

    .venv/bin/python bench/shortcuts.py CHECKPOINT [CHECKPOINT ...] --pairs runs/shipped_calib_pairs/pairs.csv
                                        [--n 200] [--seed 0] [--only TEXT] [--json]
"""

from __future__ import annotations

import csv
import hashlib
import sys
import tempfile
from pathlib import Path
from typing import Callable

import cv2
import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import checkpoints_and_pairs_args, crop_scores, figure, finish, machine, val_rows  # noqa: E402


def _degradations() -> dict[str, Callable[[np.ndarray], np.ndarray]]:
    from forgerydet.pairs.sbi import sharpen
    from forgerydet.training.augment import h264_roundtrip, jpeg_roundtrip, motion_blur

    def rescale(x: np.ndarray, f: float) -> np.ndarray:
        small = cv2.resize(x, None, fx=f, fy=f, interpolation=cv2.INTER_AREA)
        return cv2.resize(small, x.shape[1::-1], interpolation=cv2.INTER_CUBIC)

    return {
        "as is": lambda x: x,
        "SBI sharpen (alpha 0.35, lightness 0.75)": lambda x: sharpen(x, 0.35, 0.75),
        "Gaussian blur sigma 1.5": lambda x: cv2.GaussianBlur(x, (0, 0), 1.5),
        "Gaussian blur sigma 2": lambda x: cv2.GaussianBlur(x, (0, 0), 2.0),
        "motion blur 7 px horizontal": lambda x: motion_blur(x, 7.0, 0.0),
        "motion blur 7 px diagonal": lambda x: motion_blur(x, 7.0, 45.0),
        "MPEG-4 round trip, CRF-like 40": lambda x: h264_roundtrip(x, 40),
        "JPEG quality 40": lambda x: jpeg_roundtrip(x, 40),
        "down to 0.35x and back up": lambda x: rescale(x, 0.35),
        "contrast x1.4": lambda x: np.clip((x.astype(np.float32) - 128) * 1.4 + 128, 0, 255).astype(np.uint8),
        # beauty filters and retouching smooth skin and keep edges (the shared group photo's airbrushed faces
        # score FAKE): two strengths of OpenCV's bilateral filter, and its edge-preserving filter
        "skin smoothing, bilateral d 9 sigma 40": lambda x: cv2.bilateralFilter(x, 9, 40, 40),
        "skin smoothing, bilateral d 9 sigma 75": lambda x: cv2.bilateralFilter(x, 9, 75, 75),
        "edge-preserving smoothing (sigma_s 60, sigma_r 0.4)": lambda x: cv2.edgePreservingFilter(x, flags=1, sigma_s=60, sigma_r=0.4),
        # film and graded video (2026-12-05): a warm grade, desaturation and film grain, each past training's
        # colour jitter (saturation x0.8-1.2, hue +-5 degrees) and noise (std 1-6 then; 1-12 since the widening, models/README.md)
        "warm grade (R x1.15, B x0.80)": lambda x: np.clip(x.astype(np.float32) * [1.15, 1.0, 0.80], 0, 255).astype(np.uint8),
        "desaturated (saturation x0.4)": lambda x: _saturation(x, 0.4),
        "film grain (Gaussian noise std 10)": lambda x: np.clip(x + _rng(x).normal(0, 10, x.shape), 0, 255).astype(np.uint8),
        # headwear and hands: a cloth-coloured band, soft-edged and textured, over part of the face's outline
        "cloth over the forehead (top 22 %)": lambda x: _cloth(x, "top", 0.22),
        "cloth over one cheek (left 18 %)": lambda x: _cloth(x, "left", 0.18),
        # side light (2026-12-05 late): a shadow's edge down the face, alone and with the band (the film real: both)
        "side shadow (right 40 % at x0.5)": lambda x: _shadow(x, 0.4, 0.5),
        "cloth over the forehead + side shadow": lambda x: _shadow(_cloth(x, "top", 0.22), 0.4, 0.5),
        # interlaced video decoded as stored (2026-12-05 night): the odd rows from a field the face moved in
        # (scan deinterlaces such video now, faces/playback.py; bench/interlace.py measures that on whole videos)
        "interlaced, moved 4 px between fields": lambda x: _woven(x, 4),
        "interlaced, moved 8 px between fields": lambda x: _woven(x, 8),
        # shallow depth of field (2026-12-06): the person kept sharp and the background blurred, as phones' portrait
        # and cinematic modes do it (their segmentation here: OpenCV's GrabCut from the crop's inner rectangle)
        "portrait mode, background blur sigma 3": lambda x: _portrait(x, 3.0),
        "portrait mode, background blur sigma 6": lambda x: _portrait(x, 6.0),
    }


def _cloth(rgb: np.ndarray, side: str, share: float) -> np.ndarray:
    h, w = rgb.shape[:2]
    mask = np.zeros((h, w), np.float32)
    if side == "top":
        mask[: int(h * share)] = 1.0
    else:
        mask[:, : int(w * share)] = 1.0
    mask = cv2.GaussianBlur(mask, (0, 0), max(h, w) * 0.01)[..., None]
    rng = _rng(rgb)
    folds = cv2.GaussianBlur(rng.normal(0, 1, (h, w)).astype(np.float32), (0, 0), max(h, w) * 0.03)
    cloth = np.array([225, 215, 195], np.float32) * (1 + 0.4 * folds / (np.abs(folds).max() + 1e-6))[..., None]
    return np.clip(rgb * (1 - mask) + cloth * mask, 0, 255).astype(np.uint8)


def _shadow(rgb: np.ndarray, share: float, gain: float) -> np.ndarray:
    """The right `share` of the crop at `gain` of its brightness, behind an edge blurred by 3 % of the width."""
    h, w = rgb.shape[:2]
    mask = np.zeros((h, w), np.float32)
    mask[:, int(w * (1 - share)):] = 1.0
    mask = cv2.GaussianBlur(mask, (0, 0), max(2.0, w * 0.03))[..., None]
    return np.clip(rgb * (1 - (1 - gain) * mask), 0, 255).astype(np.uint8)


def _woven(rgb: np.ndarray, dx: float) -> np.ndarray:
    """The crop's even rows with the odd rows of the crop shifted dx pixels to the right (reflected at the edge)."""
    h, w = rgb.shape[:2]
    moved = cv2.warpAffine(rgb, np.float32([[1, 0, dx], [0, 1, 0]]), (w, h), borderMode=cv2.BORDER_REFLECT_101)
    out = rgb.copy()
    out[1::2] = moved[1::2]
    return out


_PERSON: dict[bytes, np.ndarray] = {}  # sha1 of an image -> its person mask (H,W,1): 200 KB a 224 px face


def _portrait(rgb: np.ndarray, sigma: float) -> np.ndarray:
    """Everything GrabCut does not take for the person (seeded from the rectangle 6 % in from the sides and 3 % from
    top and bottom: the background of a face crop lies at its sides and top) blurred by sigma px, behind an edge of 1
    px. The person's mask is computed once per image (both rows use it)."""
    key = hashlib.sha1(rgb.tobytes()).digest()
    if key not in _PERSON:
        h, w = rgb.shape[:2]
        mask = np.zeros((h, w), np.uint8)
        cv2.setRNGSeed(0)
        cv2.grabCut(cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR), mask, (int(w * 0.06), int(h * 0.03), int(w * 0.88),
                    int(h * 0.97)), np.zeros((1, 65)), np.zeros((1, 65)), 4, cv2.GC_INIT_WITH_RECT)  # fmt: skip
        person = np.isin(mask, (cv2.GC_FGD, cv2.GC_PR_FGD)).astype(np.float32)
        _PERSON[key] = cv2.GaussianBlur(person, (0, 0), 1.0)[..., None]
    m = _PERSON[key]
    return np.clip(rgb * m + cv2.GaussianBlur(rgb, (0, 0), sigma) * (1 - m), 0, 255).astype(np.uint8)


def _rng(img: np.ndarray) -> np.random.Generator:
    """A generator seeded by the image itself: the same noise for the same face in every run and checkpoint."""
    return np.random.default_rng(int(img[::16, ::16].sum()))


def _saturation(rgb: np.ndarray, factor: float) -> np.ndarray:
    grey = rgb.astype(np.float32) @ np.array([0.299, 0.587, 0.114], np.float32)
    return np.clip(grey[..., None] + (rgb - grey[..., None]) * factor, 0, 255).astype(np.uint8)


def faces(pairs_csv: Path, n: int, seed: int) -> list[tuple[Path, Path]]:
    """(real, self-blend) file pairs of the val split, n of them at random (seeded)."""
    rows = val_rows(pairs_csv, n, seed, "fake",
                    "no 'val' rows with a written fake (make the pairs with --val: val rows always get a written fake)")
    return [(r.real, r.fake) for r in rows]


def score(checkpoint: str, pairs: list[tuple[Path, Path]], only: str = "") -> list[dict]:
    from forgerydet.io import read_image

    out = []
    rows = {k: v for k, v in _degradations().items() if k == "as is" or only.lower() in k.lower()}
    with tempfile.TemporaryDirectory() as t:
        for k, (name, fn) in enumerate(rows.items()):
            lst = Path(t) / f"{k}.csv"
            with open(lst, "w", newline="") as fh:
                w = csv.writer(fh)
                w.writerow(["path", "label", "group"])
                for j, (real, fake) in enumerate(pairs):
                    for label, src in ((0, real), (1, fake)):
                        p = Path(t) / f"{k}_{j}_{label}.png"
                        cv2.imwrite(str(p), cv2.cvtColor(fn(read_image(src)), cv2.COLOR_RGB2BGR))
                        w.writerow([p, label, "faces"])
            c = crop_scores(lst, checkpoint)
            out.append({"degradation": name, "real_mean_p": float(c["real"].mean()),
                        "real_called_fake": float((c["real"] >= c["threshold"]).mean()),
                        "auc": c["auc"], "threshold": c["threshold"]})
    return out


def main() -> None:
    args = checkpoints_and_pairs_args(__doc__, 200, "real/self-blend pairs to score (default 200)",
                                      "score only the rows whose name holds TEXT (and 'as is')")
    pairs = faces(args.pairs, args.n, args.seed)
    res = {"machine": machine(), "pairs": str(args.pairs), "n": len(pairs), "seed": args.seed, "checkpoints": {}}
    figures = []
    for ck in args.checkpoints:
        res["checkpoints"][ck] = score(ck, pairs, args.only)
        for r in res["checkpoints"][ck]:
            figures.append(figure(f"{Path(ck).name}: {r['degradation']}: real called FAKE", r["real_called_fake"],
                                  note=f"real mean p {r['real_mean_p']:.3f}, AUC "
                                       f"{'n/a' if r['auc'] is None else format(r['auc'], '.3f')}"))
    if not args.json:
        rows = res["checkpoints"]
        print(f"{len(pairs)} held-out real faces of {args.pairs} and their self-blends, degraded alike")
        print("| degradation | " + " | ".join(f"{Path(c).name}: real p / called FAKE / AUC" for c in rows) + " |")
        print("|---|" + "---:|" * len(rows))
        for k, r0 in enumerate(rows[args.checkpoints[0]]):
            cells = [rows[c][k] for c in args.checkpoints]
            print(f"| {r0['degradation']} | " + " | ".join(
                f"{c['real_mean_p']:.2f} / {100 * c['real_called_fake']:.0f} % / "
                f"{'n/a' if c['auc'] is None else format(c['auc'], '.3f')}" for c in cells) + " |")
        print("thresholds: " + ", ".join(f"{Path(c).name} {rows[c][0]['threshold']:.3f}" for c in rows))
    finish(res, figures, args.json)

if __name__ == "__main__":
    main()
