"""Held-out validation of a checkpoint on the real forgeries in ../shared/data (never trained on):

- FF++ face crops (faces/ffpp, 20 real / 20 Deepfakes): frame AUC, scored as crops (`evaluate --crops`)
  and as images through detection (MTCNN 1.3x crop, as `scan` does);
- DFDC face crops (faces/dfdc, 11 real / 6 fake), as crops;
- CelebA vs StarGAN edits, and StyleGAN3 faces against the CelebA reals (whole-image synthesis: reported,
  not a target);
- the six videos: per-video fake probability and verdict at the checkpoint's stored threshold, and the
  video AUC (2 real, 4 fake).

    python bench/heldout.py CHECKPOINT [CHECKPOINT ...] [--frames 32] [--json out.json]

Tune nothing on these: they are 40 + 17 crops and 6 videos of a handful of people.
"""

from __future__ import annotations

import argparse
import csv
import json
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import SHARED_DATA as DATA  # noqa: E402

VIDEOS = {  # name -> label
    "anchor_real.mp4": 0, "val_real_film_clip.mp4": 0,
    "anchor_fake_ffpp.mp4": 1, "anchor_fake_deeperforensics.mp4": 1,
    "val_fake_ffpp_df_003_000.mp4": 1, "val_fake_film_clip.mp4": 1,
}


def _write(path: Path, rows: list[tuple[Path, int, str]]) -> Path:
    with open(path, "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["path", "label", "group"])
        w.writerows((str(p), y, g) for p, y, g in rows)
    return path


def lists(tmp: Path) -> dict[str, tuple[Path, bool]]:
    """name -> (list csv, crops?)"""
    f = DATA / "faces"
    ffpp = [(p, int(p.stem.endswith("_fake")), "ffpp") for p in sorted((f / "ffpp").glob("*.png"))]
    dfdc = [(p, 0, "dfdc") for p in sorted((f / "dfdc" / "real").glob("*.png"))] + \
           [(p, 1, "dfdc") for p in sorted((f / "dfdc" / "fake").glob("*.png"))]
    celeba = [(p, 0, "celeba") for p in sorted((f / "celeba_stargan").glob("*_real.png"))]
    stargan = [(p, 1, "stargan") for p in sorted((f / "celeba_stargan").glob("*_fake.png"))]
    stylegan = [(p, 1, "stylegan") for p in sorted((f / "stylegan").glob("*.png"))]
    vids = [(DATA / "videos" / n, y, n.split(".")[0]) for n, y in VIDEOS.items() if (DATA / "videos" / n).is_file()]
    return {
        "ffpp_crops": (_write(tmp / "ffpp.csv", ffpp), True),
        "ffpp_detected": (_write(tmp / "ffpp_det.csv", ffpp), False),
        "dfdc_crops": (_write(tmp / "dfdc.csv", dfdc), True),
        "stargan_crops": (_write(tmp / "stargan.csv", celeba + stargan), True),
        "stylegan_crops": (_write(tmp / "stylegan.csv", celeba + stylegan), True),
        "videos": (_write(tmp / "videos.csv", vids), False),
    }


def evaluate_checkpoint(ck: str, frames: int) -> dict:
    from forgerydet.scan.config import ScanConfig
    from forgerydet.scan.evaluate import evaluate

    out = {}
    with tempfile.TemporaryDirectory() as t:
        for name, (lst, crops) in lists(Path(t)).items():
            r = evaluate(lst, ck, config=ScanConfig(num_frames=frames, device="cpu"), crops=crops)
            level = "video_level" if name == "videos" else "frame_level"
            m = r[level]["overall"]
            out[name] = {"auc": m.get("auc"), "accuracy": m.get("accuracy"), "n": m.get("n"),
                         "files": r["files"], "skipped": r["skipped"], "threshold": r["threshold"]}
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("checkpoints", nargs="+")
    ap.add_argument("--frames", type=int, default=32)
    ap.add_argument("--json", type=Path)
    a = ap.parse_args()
    if not DATA.is_dir():
        sys.exit(f"{DATA} not found: this bench needs ../shared/data (or FORGERYDET_SHARED_DATA)")
    results = {ck: evaluate_checkpoint(ck, a.frames) for ck in a.checkpoints}
    names = ["ffpp_crops", "ffpp_detected", "dfdc_crops", "stargan_crops", "stylegan_crops", "videos"]
    print("| checkpoint | threshold | " + " | ".join(f"{n} AUC" for n in names) + " |")
    print("|---|---:|" + "---:|" * len(names))
    for ck, r in results.items():
        print(f"| {Path(ck).name} | {r['videos']['threshold']:.3f} | "
              + " | ".join(f"{r[n]['auc']:.3f}" if r[n]["auc"] is not None else "n/a" for n in names) + " |")
    for ck, r in results.items():
        print(f"\n{Path(ck).name}: videos at threshold {r['videos']['threshold']:.3f}")
        for f in r["videos"]["files"]:
            verdict = "FAKE" if f["score"] >= r["videos"]["threshold"] else "REAL"
            truth = "fake" if f["label"] else "real"
            print(f"  {Path(f['path']).name:36s} truth {truth}  score {f['score']:.3f}  -> {verdict}"
                  f"{'' if (verdict == 'FAKE') == bool(f['label']) else '  (WRONG)'}")
        for n in ("ffpp_crops", "dfdc_crops", "stylegan_crops", "stargan_crops"):
            fk = [f["score"] for f in r[n]["files"] if f["label"] == 1]
            rl = [f["score"] for f in r[n]["files"] if f["label"] == 0]
            thr = r[n]["threshold"]
            print(f"  {n}: real mean {sum(rl)/len(rl):.3f} ({sum(s >= thr for s in rl)}/{len(rl)} called FAKE), "
                  f"fake mean {sum(fk)/len(fk):.3f} ({sum(s >= thr for s in fk)}/{len(fk)} called FAKE)")
        if r["ffpp_detected"]["skipped"]:
            print(f"  ffpp_detected: {len(r['ffpp_detected']['skipped'])} crops without a detected face (skipped)")
    if a.json:
        a.json.write_text(json.dumps(results, indent=1))


if __name__ == "__main__":
    main()
