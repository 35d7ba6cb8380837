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

    .venv/bin/python bench/eyes.py [--checkpoint CK] [--json]
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import SHARED_DATA, figure, finish, machine, print_figures  # noqa: E402

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


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--checkpoint", default=None, help="default: the shipped model")
    ap.add_argument("--json", action="store_true")
    args = ap.parse_args()
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
    if not args.json:
        print_figures(figures)
    finish(res, figures, args.json)


if __name__ == "__main__":
    main()
