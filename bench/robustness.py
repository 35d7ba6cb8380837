"""Does detection survive what happens to footage before a user scans it (re-encoding, resizing, blur)? The
held-out real forgeries of ../shared/data (FF++ crops, 20 real / 20 Deepfakes; DFDC crops, 11 real / 6 fake;
never trained on), each degraded the same way, reals and fakes alike, then scored as `evaluate --crops` scores
crops (the checkpoint's calibrated probability, stored threshold and test-time augmentation): per degradation
and set, the AUC, the share of reals called FAKE and of fakes called FAKE.

It complements bench/shortcuts.py, which asks the reverse question on self-blends (does a degradation alone
make a real face look fake). No targets: 40 + 17 crops are few; a set whose AUC falls far below "as is" tells
which kind of footage the detector cannot be trusted on. Tune nothing on it.

    .venv/bin/python bench/robustness.py CHECKPOINT [CHECKPOINT ...] [--json]
"""

from __future__ import annotations

import argparse
import csv
import sys
import tempfile
from pathlib import Path
from typing import Callable

import cv2
import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import SHARED_DATA, figure, finish, machine  # noqa: E402
from heldout import lists  # noqa: E402


def degradations() -> dict[str, Callable[[np.ndarray], np.ndarray]]:
    from forgerydet.training.augment import h264_roundtrip, jpeg_roundtrip

    def rescale(x: np.ndarray, f: float) -> np.ndarray:
        small = cv2.resize(x, None, fx=f, fy=f, interpolation=cv2.INTER_AREA)
        return cv2.resize(small, x.shape[1::-1], interpolation=cv2.INTER_CUBIC)

    return {
        "as is": lambda x: x,
        "MPEG-4, CRF-like 23": lambda x: h264_roundtrip(x, 23),
        "MPEG-4, CRF-like 30": lambda x: h264_roundtrip(x, 30),
        "MPEG-4, CRF-like 36": lambda x: h264_roundtrip(x, 36),
        "JPEG quality 75": lambda x: jpeg_roundtrip(x, 75),
        "JPEG quality 50": lambda x: jpeg_roundtrip(x, 50),
        "half resolution and back": lambda x: rescale(x, 0.5),
        "Gaussian blur sigma 1": lambda x: cv2.GaussianBlur(x, (0, 0), 1.0),
    }


def crop_sets(tmp: Path) -> dict[str, list[tuple[Path, int]]]:
    """set name -> [(crop, label)] from bench/heldout.py's lists (the crops, not the videos)."""
    out, written = {}, lists(tmp)
    for name in ("ffpp_crops", "dfdc_crops"):
        lst, _ = written[name]
        with open(lst, newline="") as f:
            out[name] = [(Path(r["path"]), int(r["label"])) for r in csv.DictReader(f)]
    return out


def score(checkpoint: str) -> list[dict]:
    from forgerydet.io import read_image
    from forgerydet.scan.config import ScanConfig
    from forgerydet.scan.evaluate import evaluate

    out = []
    with tempfile.TemporaryDirectory() as t:
        sets = crop_sets(Path(t))
        for k, (name, fn) in enumerate(degradations().items()):
            for set_name, items in sets.items():
                lst = Path(t) / f"{k}_{set_name}.csv"
                with open(lst, "w", newline="") as fh:
                    w = csv.writer(fh)
                    w.writerow(["path", "label", "group"])
                    for j, (src, label) in enumerate(items):
                        p = Path(t) / f"{k}_{set_name}_{j}.png"
                        cv2.imwrite(str(p), cv2.cvtColor(fn(read_image(src)), cv2.COLOR_RGB2BGR))
                        w.writerow([p, label, set_name])
                r = evaluate(lst, checkpoint, config=ScanConfig(device="cpu"), crops=True)
                s = np.array([f["score"] for f in r["files"]])
                y = np.array([f["label"] for f in r["files"]])
                out.append({"degradation": name, "set": set_name, "auc": r["frame_level"]["overall"].get("auc"),
                            "real_called_fake": float((s[y == 0] >= r["threshold"]).mean()),
                            "fake_called_fake": float((s[y == 1] >= r["threshold"]).mean()),
                            "threshold": r["threshold"]})
    return out


def set_means(rows: list[dict]) -> dict[str, float]:
    """Each set's AUC averaged over every degradation, 'as is' included: the robustness mean the ship rules use
    (models/README.md). A set with an undefined AUC in any row has no mean."""
    sets: dict[str, list] = {}
    for r in rows:
        sets.setdefault(r["set"], []).append(r["auc"])
    return {k: float(np.mean(v)) for k, v in sets.items() if None not in v}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("checkpoints", nargs="+")
    ap.add_argument("--json", action="store_true")
    args = ap.parse_args()
    if not SHARED_DATA.is_dir():
        sys.exit(f"{SHARED_DATA} not found: this bench needs ../shared/data (or FORGERYDET_SHARED_DATA)")
    res = {"machine": machine(), "checkpoints": {ck: score(ck) for ck in args.checkpoints}}
    figures = [figure(f"{Path(ck).name}: {r['set']} {r['degradation']}: AUC", r["auc"],
                      note=f"reals called FAKE {100 * r['real_called_fake']:.0f} %, "
                           f"fakes {100 * r['fake_called_fake']:.0f} %")
               for ck, rows in res["checkpoints"].items() for r in rows]
    res["means"] = {ck: set_means(rows) for ck, rows in res["checkpoints"].items()}
    figures += [figure(f"{Path(ck).name}: {name} mean AUC over {len(degradations())} conditions", m)
                for ck, ms in res["means"].items() for name, m in ms.items()]
    if not args.json:
        print("held-out FF++ (20/20) and DFDC (11/6) crops, degraded alike; AUC / reals called FAKE / fakes called FAKE")
        cks = args.checkpoints
        print("| degradation | set | " + " | ".join(Path(c).name for c in cks) + " |")
        print("|---|---|" + "---:|" * len(cks))
        for k, r0 in enumerate(res["checkpoints"][cks[0]]):
            cells = [res["checkpoints"][c][k] for c in cks]
            print(f"| {r0['degradation']} | {r0['set']} | " + " | ".join(
                f"{'n/a' if c['auc'] is None else format(c['auc'], '.3f')} / {100 * c['real_called_fake']:.0f} % / "
                f"{100 * c['fake_called_fake']:.0f} %" for c in cells) + " |")
        for name in res["means"][cks[0]]:
            print(f"| **mean AUC of the {len(degradations())} rows** | {name} | " + " | ".join(
                format(res["means"][c][name], ".3f") if name in res["means"][c] else "n/a" for c in cks) + " |")
    finish(res, figures, args.json)


if __name__ == "__main__":
    main()
