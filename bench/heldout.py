"""Held-out validation of a checkpoint on the real forgeries in ../shared/data (never trained on):

- FF++ face crops (faces/ffpp, 20 real / 20 Deepfakes): frame AUC, scored as crops (`evaluate --crops`)
  and as images through detection (MTCNN 1.3x crop, as `scan` does);
- DFDC face crops (faces/dfdc, 11 real / 6 fake), as crops;
- CelebA vs StarGAN edits, and StyleGAN3 faces against the CelebA reals (whole-image synthesis: reported,
  not a target);
- the six videos: per-video fake probability and verdict at the checkpoint's stored threshold, and the
  video AUC (2 real, 4 fake).

    python bench/heldout.py CHECKPOINT [CHECKPOINT ...] [--frames 32] [--json out.json] [--precision fp32 bf16]
    python bench/heldout.py --from-json A.json [B.json ...]     # print saved results again, no scoring

Tune nothing on these: they are 40 + 17 crops and 6 videos of a handful of people. How little they can tell
apart is printed too: a 95 % stratified bootstrap interval for every AUC, and with two or more checkpoints the
paired interval of each one's AUC minus the first one's (the same resampled crops for both; 2,000 resamples,
seeded). The intervals treat crops as independent; the 11 DFDC reals are frames of ONE video and the FF++ crops
come from 20 videos of 20 people, so the real uncertainty is wider still.
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


def evaluate_checkpoint(ck: str, frames: int, precision: str | None = None) -> dict:
    from forgerydet.scan.config import ScanConfig
    from forgerydet.scan.evaluate import evaluate

    out = {}
    with tempfile.TemporaryDirectory() as t:
        for name, (lst, crops) in lists(Path(t)).items():
            r = evaluate(lst, ck, config=ScanConfig(num_frames=frames, device="cpu", precision=precision), crops=crops)
            level = "video_level" if name == "videos" else "frame_level"
            m = r[level]["overall"]
            out[name] = {"auc": m.get("auc"), "accuracy": m.get("accuracy"), "n": m.get("n"),
                         "files": r["files"], "skipped": r["skipped"], "threshold": r["threshold"]}
    return out


NAMES = ["ffpp_crops", "ffpp_detected", "dfdc_crops", "stargan_crops", "stylegan_crops", "videos"]


def _scored(r: dict, name: str) -> dict[str, tuple[int, float]]:
    return {f["path"]: (int(f["label"]), float(f["score"])) for f in r[name]["files"]}


def print_intervals(results: dict, n_boot: int = 2000) -> None:
    """AUC with its 95 % bootstrap interval per set; with several checkpoints, the paired interval of each
    AUC minus the first checkpoint's, over the files all of them scored."""
    from forgerydet.metrics import bootstrap_auc, interval

    cks = list(results)
    print("\nAUC [95 % bootstrap interval]" + (f"; difference from {Path(cks[0]).name} [95 % paired interval]"
                                                 if len(cks) > 1 else ""))
    print("| set | " + " | ".join(Path(c).name for c in cks) + " |")
    print("|---|" + "---:|" * len(cks))
    for n in NAMES:
        per = [_scored(results[c], n) for c in cks]
        paths = sorted(set.intersection(*(set(p) for p in per)))
        y = [per[0][p][0] for p in paths]
        if len(set(y)) < 2:
            continue
        boot = bootstrap_auc(y, *[[d[p][1] for p in paths] for d in per], n_boot=n_boot, seed=0)
        cells = []
        for k in range(len(cks)):
            lo, hi = interval(boot[:, k])
            cell = f"{results[cks[k]][n]['auc']:.3f} [{lo:.2f}, {hi:.2f}]"
            if k:
                dlo, dhi = interval(boot[:, k] - boot[:, 0])
                cell += f"; {dlo:+.2f} to {dhi:+.2f}"
            cells.append(cell)
        print(f"| {n} ({y.count(0)}/{y.count(1)}) | " + " | ".join(cells) + " |")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("checkpoints", nargs="*")
    ap.add_argument("--frames", type=int, default=32)
    ap.add_argument("--json", type=Path)
    ap.add_argument("--precision", nargs="+", default=[None], metavar="P",
                    help="score each checkpoint in each of these (fp32, bf16; default: as it was calibrated), as "
                         "`scan --precision`; results are named 'CHECKPOINT (P)'")
    ap.add_argument("--from-json", type=Path, nargs="+", help="print the results saved by --json, scoring nothing")
    a = ap.parse_args()
    if a.from_json:
        results = {}
        for j in a.from_json:
            try:
                results.update(json.loads(j.read_text()))
            except (OSError, ValueError) as e:
                sys.exit(f"{j}: cannot read saved results ({e})")
    elif not a.checkpoints:
        sys.exit("give one or more checkpoints, or --from-json FILE ...")
    elif not DATA.is_dir():
        sys.exit(f"{DATA} not found: this bench needs ../shared/data (or FORGERYDET_SHARED_DATA)")
    else:
        results = {ck if p is None else f"{ck} ({p})": evaluate_checkpoint(ck, a.frames, p)
                   for ck in a.checkpoints for p in a.precision}
    print("| checkpoint | threshold | " + " | ".join(f"{n} AUC" for n in NAMES) + " |")
    print("|---|---:|" + "---:|" * len(NAMES))
    for ck, r in results.items():
        print(f"| {Path(ck).name} | {r['videos']['threshold']:.3f} | "
              + " | ".join(f"{r[n]['auc']:.3f}" if r[n]["auc"] is not None else "n/a" for n in NAMES) + " |")
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
    print_intervals(results)
    if a.json:
        a.json.write_text(json.dumps(results, indent=1))


if __name__ == "__main__":
    main()
