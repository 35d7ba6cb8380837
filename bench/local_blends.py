"""Does the model catch a blend inside the face, as well as one at its edge? Held-out real faces, each with two
self-blends made from it (pairs/sbi.py, seeded): a whole-face one (the default masks, as training uses) and a
'local' one (one facial part: eyes, nose, mouth or lower face; `train --sbi-local`), scored as `evaluate --crops`
scores crops (the checkpoint's calibrated probability and stored threshold). Per kind: real-vs-fake AUC and the
share of the fakes called FAKE; and the real faces' share called FAKE.

Why: a whole-face self-blend puts its boundary at the face's edge, where a face swap leaves one; reenactment and
local edits (Face2Face, NeuralTextures' re-rendered mouth) leave theirs inside the face. A model that misses local
self-blends has no reason to catch those forgeries. These are pseudo-fakes of the kind a local-mask model trains
on, so for such a model this measures what it learned, not how it generalises to real reenactment.

The faces: the 'val' split of a pairs.csv that the checkpoint never trained on (for the shipped file, `make
shipped-calib`: runs/shipped_calib_pairs/pairs.csv), `--n` of them, seeded, with their stored landmarks.

    .venv/bin/python bench/local_blends.py CHECKPOINT [CHECKPOINT ...] --pairs runs/shipped_calib_pairs/pairs.csv
                                           [--n 300] [--seed 0] [--json]
"""

from __future__ import annotations

import csv
import sys
import tempfile
from pathlib import Path

import cv2
import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import checkpoints_and_pairs_args, crop_scores, figure, finish, machine, val_faces  # noqa: E402

KINDS = ("whole face", "local")


def write_lists(items: list[tuple[Path, np.ndarray]], folder: Path, seed: int) -> dict[str, Path]:
    """One evaluate list per kind (the same real faces in each), the fakes written as PNG into folder."""
    from forgerydet.io import read_image
    from forgerydet.pairs.sbi import SBIConfig, self_blend

    configs = {"whole face": SBIConfig(), "local": SBIConfig(mask_probs=(0.0, 0.0, 0.0, 1.0))}
    lists = {}
    for k, (kind, cfg) in enumerate(configs.items()):
        lists[kind] = folder / f"{k}.csv"
        with open(lists[kind], "w", newline="") as fh:
            w = csv.writer(fh)
            w.writerow(["path", "label", "group"])
            for j, (real, lm) in enumerate(items):
                img = read_image(real)
                fake, _ = self_blend(img, lm, np.random.default_rng([seed, j]), cfg)
                p = folder / f"{k}_{j}.png"
                cv2.imwrite(str(p), cv2.cvtColor(fake, cv2.COLOR_RGB2BGR))
                w.writerow([Path(real).resolve(), 0, "faces"])  # evaluate reads paths relative to the list
                w.writerow([p, 1, "faces"])
    return lists


def score(checkpoint: str, lists: dict[str, Path]) -> dict[str, dict]:
    out = {}
    for kind, lst in lists.items():
        c = crop_scores(lst, checkpoint)
        thr = c["threshold"]
        out[kind] = {"auc": c["auc"], "threshold": thr, "fakes_called_fake": float((c["fake"] >= thr).mean()),
                     "reals_called_fake": float((c["real"] >= thr).mean()),
                     "fake_mean_p": float(c["fake"].mean()), "real_mean_p": float(c["real"].mean())}
    return out


def main() -> None:
    args = checkpoints_and_pairs_args(__doc__, 300, "real faces (default 300), each with one fake of each kind")
    items = val_faces(args.pairs, args.n, args.seed)
    res = {"machine": machine(), "pairs": str(args.pairs), "n": len(items), "seed": args.seed, "checkpoints": {}}
    figures = []
    with tempfile.TemporaryDirectory() as t:
        lists = write_lists(items, Path(t), args.seed)
        for ck in args.checkpoints:
            res["checkpoints"][ck] = s = score(ck, lists)
            for kind in KINDS:
                figures.append(figure(f"{Path(ck).name}: {kind} self-blends: AUC", s[kind]["auc"],
                                      note=f"fakes called FAKE {100 * s[kind]['fakes_called_fake']:.0f} %, "
                                           f"reals {100 * s[kind]['reals_called_fake']:.0f} %"))
    if not args.json:
        print(f"{len(items)} held-out real faces of {args.pairs}, each with a whole-face and a local self-blend")
        print("| checkpoint | threshold | reals called FAKE | whole face: AUC / caught | local: AUC / caught |")
        print("|---|---:|---:|---:|---:|")
        for ck, s in res["checkpoints"].items():
            w, loc = s["whole face"], s["local"]
            print(f"| {Path(ck).name} | {w['threshold']:.3f} | {100 * w['reals_called_fake']:.0f} % | "
                  f"{w['auc']:.3f} / {100 * w['fakes_called_fake']:.0f} % | {loc['auc']:.3f} / {100 * loc['fakes_called_fake']:.0f} % |")
    finish(res, figures, args.json)


if __name__ == "__main__":
    main()
