"""Closed and downcast eyes: do real faces score higher when their eyes are shut?

A diagnostic (no target). Two real videos of ../shared/data are scanned as `scan --frames 64` samples them, and
their sampled frames were labelled once by eye (2026-12-06; the frame numbers are below): eyes open, a blink
(closed or half-closed), or looking down (lowered lids). For each group the figures are the mean p(fake) of the
person's face (the file's main track) and how many of its frames are at or above the checkpoint's threshold.

- videos/anchor_real.mp4: FF++ original, held out (validation only, never trained on);
- train/videos/d0.mp4: a training video (24 of its frames were among the shipped model's training faces).

The labels hold for these frame numbers only: if the scan samples other frames (another --frames, or a changed
sampler), the script stops and says so rather than score unlabelled frames. Two people: this shows the effect
exists, not how often it happens. README "When a verdict deserves less trust" has the figures.

With --pairs (a pairs.csv whose 'val' split was never trained on, e.g. `make shipped-calib`'s), a second part asks
why: --n held-out real faces (and their self-blends, for the AUC) scored as `evaluate --crops` does, as they are
and with ONE part of the face Gaussian-blurred and nothing else changed (no blend): both eyes, as lowered or
moving lids are less detailed than open eyes, and as controls both cheeks and the mouth, each a disc of radius
0.28x the eye distance placed by the row's 5 landmarks, feathered at its edge. Per row: the reals' mean p(fake)
and the share at or above the stored threshold.

    .venv/bin/python bench/eyes.py [--checkpoint CK] [--pairs PAIRS --n 200 --seed 0] [--json]
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import SHARED_DATA, crop_scores, figure, finish, machine, print_figures, val_rows  # noqa: E402

FRAMES = 64
LABELS = {  # video (under ../shared/data) -> label -> the sampled frame numbers that show it
    "videos/anchor_real.mp4": {"blink": (25, 56, 88, 188, 207, 326, 370), "looking down": (376, 382, 389, 395)},
    "train/videos/d0.mp4": {"blink": (64, 65, 66, 67, 68), "looking down": ()},
}


def main_track_scores(rec: dict) -> dict[int, float]:
    """frame number -> score of the face on the track seen on most frames."""
    if rec["status"] != "ok":
        raise SystemExit(f"error: {rec['path']}: {rec.get('error') or rec['status']}")
    main = max(rec["tracks"], key=lambda t: t["n_faces"])["track_id"]
    return {f["frame_index"]: f["score"] for f in rec["faces"] if f["track_id"] == main}


def groups(scores: dict[int, float], labels: dict[str, tuple[int, ...]], video: str) -> dict[str, list[float]]:
    """label -> the scores of its frames; every frame not labelled otherwise is 'open'."""
    labelled = {f for frames in labels.values() for f in frames}
    unknown = sorted(labelled - set(scores))
    if unknown:
        raise SystemExit(f"error: {video}: labelled frames {unknown} were not sampled (or had no face): the labels "
                         f"hold for `scan --frames {FRAMES}` as of 2026-12-06")
    out = {"open": [s for f, s in scores.items() if f not in labelled]}
    out.update({name: [scores[f] for f in frames] for name, frames in labels.items() if frames})
    return out


PART_RADIUS = 0.28  # a blurred disc's radius, in eye distances
PART_BLURS = (("eyes", 1.0), ("eyes", 2.0), ("eyes", 4.0), ("cheeks", 2.0), ("mouth", 2.0))  # (part, sigma in px)


def part_centres(lm: np.ndarray, part: str) -> list[np.ndarray]:
    """Disc centres of a part from 5 landmarks (eyes, nose, mouth corners; (5, 2) crop pixels)."""
    if part == "eyes":
        return [lm[0], lm[1]]
    if part == "mouth":
        return [0.75 * lm[3] + 0.25 * lm[4], 0.25 * lm[3] + 0.75 * lm[4]]
    across = lm[1] - lm[0]  # cheeks: between each eye and its mouth corner, moved outwards
    return [(lm[0] + lm[3]) / 2 - 0.15 * across, (lm[1] + lm[4]) / 2 + 0.15 * across]


def blur_part(rgb: np.ndarray, lm: np.ndarray, part: str, sigma: float) -> np.ndarray:
    """rgb with one part of the face Gaussian-blurred (discs feathered over a quarter of their radius)."""
    import cv2

    r = PART_RADIUS * float(np.linalg.norm(lm[1] - lm[0]))
    mask = np.zeros(rgb.shape[:2], np.float32)
    for c in part_centres(lm, part):
        cv2.circle(mask, (int(round(c[0])), int(round(c[1]))), max(1, int(round(r))), 1.0, -1)
    mask = cv2.GaussianBlur(mask, (0, 0), max(r / 4, 0.5))[..., None]
    blurred = cv2.GaussianBlur(rgb, (0, 0), sigma).astype(np.float32)
    return np.clip(rgb * (1 - mask) + blurred * mask, 0, 255).astype(np.uint8)


def part_rows(checkpoint: str | None, pairs_csv: Path, n: int, seed: int) -> tuple[list[dict], list[Any]]:
    """The second part: held-out reals (and their self-blends) as they are and with one part blurred."""
    import csv
    import tempfile

    import cv2

    from forgerydet.io import read_image
    from forgerydet.scan.config import find_default_checkpoint

    val = val_rows(pairs_csv, n, seed, "landmarks", "no 'val' rows with landmarks")
    ck = checkpoint or str(find_default_checkpoint())
    rows, figures = [], []
    with tempfile.TemporaryDirectory() as t:
        for k, blur in enumerate((None,) + PART_BLURS):
            name = "as is" if blur is None else f"{blur[0]} blurred, sigma {blur[1]:g}"
            lst = Path(t) / f"{k}.csv"
            with open(lst, "w", newline="") as fh:
                w = csv.writer(fh)
                w.writerow(["path", "label", "group"])
                for j, r in enumerate(val):
                    lm = np.asarray(r.landmarks, np.float32).reshape(5, 2)
                    for label, src in ((0, r.real), (1, r.fake)):
                        if src is None:
                            continue
                        img = read_image(src)
                        out = Path(t) / f"{k}_{j}_{label}.png"
                        img = img if blur is None else blur_part(img, lm, *blur)
                        cv2.imwrite(str(out), cv2.cvtColor(img, cv2.COLOR_RGB2BGR))
                        w.writerow([out, label, "faces"])
            c = crop_scores(lst, ck)
            row = {"faces": name, "reals": int(c["real"].size), "real_mean_p": float(c["real"].mean()),
                   "real_called_fake": float((c["real"] >= c["threshold"]).mean()), "auc": c["auc"]}
            rows.append(row)
            figures.append(figure(f"held-out reals, {name}: called FAKE", 100 * row["real_called_fake"], "%",
                                  note=f"mean p(fake) {row['real_mean_p']:.3f} over {row['reals']} reals"))
    return rows, figures


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--checkpoint", default=None, help="default: the shipped model")
    ap.add_argument("--pairs", type=Path, default=None,
                    help="also blur one part of held-out real faces of this pairs.csv's 'val' split (second part)")
    ap.add_argument("--n", type=int, default=200, help="held-out reals for the second part (default 200)")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--json", action="store_true")
    args = ap.parse_args()
    if args.pairs is not None and not args.pairs.is_file():
        raise SystemExit(f"error: {args.pairs} not found (`make shipped-calib` writes the shipped file's held-out pairs)")
    missing = [v for v in LABELS if not (SHARED_DATA / v).is_file()]
    if missing:
        raise SystemExit(f"error: not found under {SHARED_DATA}: {', '.join(missing)} (set FORGERYDET_SHARED_DATA)")

    from forgerydet.scan.config import ScanConfig
    from forgerydet.scan.scanner import Scanner

    scanner = Scanner(args.checkpoint, ScanConfig(num_frames=FRAMES, device="cpu"))
    thr = scanner.threshold
    rows, figures = [], []
    for video, labels in LABELS.items():
        rec = scanner.scan_file(SHARED_DATA / video)
        for name, ps in groups(main_track_scores(rec), labels, video).items():
            p = np.asarray(ps)
            row = {"video": video, "eyes": name, "frames": len(p), "mean_p": float(p.mean()), "min_p": float(p.min()),
                   "max_p": float(p.max()), "at_or_above_threshold": int((p >= thr).sum())}
            rows.append(row)
            figures.append(figure(f"{Path(video).name}, eyes {name}: mean p(fake)", row["mean_p"],
                                  note=f"{row['at_or_above_threshold']} of {len(p)} frames >= {thr:.3f}; "
                                  f"range {row['min_p']:.2f}-{row['max_p']:.2f}"))
    res = {"machine": machine(), "checkpoint": args.checkpoint or "shipped", "threshold": thr, "rows": rows}
    if args.pairs is not None:
        res["part_blur"], more = part_rows(args.checkpoint, args.pairs, args.n, args.seed)
        figures += more
    if not args.json:
        print_figures(figures)
    finish(res, figures, args.json)


if __name__ == "__main__":
    main()
