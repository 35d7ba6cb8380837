"""Which packaged-weights backbone should be the default? Trains each on the same self-blended pairs with
the same settings (as `make demo` does) and evaluates on held-out real forgeries from ../shared/data:
frame-level AUC on the 20+20 FF++ face crops and video-level scores on the three anchor videos.

    .venv/bin/python bench/backbone_choice.py [--pairs demo_out/pairs/pairs.csv] [--epochs 6]
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

from forgerydet.demo import find_shared, run, write_list
from forgerydet.model.weights import packaged_backbones


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--pairs", type=Path, default=Path("demo_out/pairs/pairs.csv"))
    ap.add_argument("--out", type=Path, default=Path("bench_out/backbones"))
    ap.add_argument("--epochs", type=int, default=6)
    ap.add_argument("--img-size", type=int, default=160)
    ap.add_argument("--seeds", type=int, nargs="+", default=[0])
    args = ap.parse_args()
    shared = find_shared()
    if shared is None or not args.pairs.is_file():
        sys.exit("needs ../shared/data and a pairs.csv (run `make demo` first, or pass --pairs)")
    ffpp = sorted((shared / "faces" / "ffpp").glob("*.png"))
    ffpp_list = write_list(args.out / "ffpp.csv", [(p, 0 if p.stem.endswith("_real") else 1, "ffpp") for p in ffpp])
    vids = sorted((shared / "videos").glob("*.mp4"))
    vid_list = write_list(args.out / "videos.csv", [(p, 0 if "real" in p.stem else 1, "anchor") for p in vids])
    rows = []
    for backbone in packaged_backbones():
        for seed in args.seeds:
            d = args.out / f"{backbone}-s{seed}"
            t0 = time.time()
            run(["train", "--pairs", str(args.pairs), "--out", str(d), "--backbone", backbone, "--img-size",
                 str(args.img_size), "--epochs", str(args.epochs), "--batch-size", "16", "--lr", "5e-4",
                 "--bank-size", "4096", "--seed", str(seed), "--device", "cpu"])
            train_s = time.time() - t0
            ck = str(d / "best.safetensors")
            run(["evaluate", str(ffpp_list), "--checkpoint", ck, "--crops", "--device", "cpu", "--out", str(d / "ev_ffpp")], allow_fail=True)
            run(["evaluate", str(vid_list), "--checkpoint", ck, "--frames", "16", "--device", "cpu", "--out", str(d / "ev_vid")], allow_fail=True)  # exit 1 = a file skipped
            f = json.loads((d / "ev_ffpp" / "metrics.json").read_text())["frame_level"]["overall"]
            v = json.loads((d / "ev_vid" / "metrics.json").read_text())
            hist = [json.loads(x) for x in (d / "metrics.jsonl").read_text().splitlines()]
            rows.append({"backbone": backbone, "seed": seed, "train_min": train_s / 60,
                         "val_auc": max(h["val_auc"] for h in hist), "ffpp_auc": f["auc"], "ffpp_eer": f["eer"],
                         "video_auc": v["video_level"]["overall"]["auc"], "frame_auc_videos": v["frame_level"]["overall"]["auc"]})
    print("\nbackbone                 seed  train min  val AUC  FF++ crop AUC  FF++ EER  video AUC  video-frame AUC")
    for r in rows:
        print(f"{r['backbone']:24} {r['seed']:4} {r['train_min']:10.1f} {r['val_auc']:8.3f} {r['ffpp_auc']:14.3f} "
              f"{r['ffpp_eer']:9.3f} {r['video_auc']:10.3f} {r['frame_auc_videos']:16.3f}")
    (args.out / "results.json").write_text(json.dumps(rows, indent=1))


if __name__ == "__main__":
    main()
