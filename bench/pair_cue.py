"""How far can a 'pair' training step be told without looking for a forgery? The raw pixel difference between a
training face and its reference, as `train` builds them, scored as a real/fake separator.

In a 'pair' step a fake's reference is the real face it was blended from, under the same geometric augmentation,
so the two line up pixel for pixel outside the blend; a real face's reference is another frame of its source, or
(a photo alone in its group) its own image augmented a second time. The mean |x - ref| then tells them apart by
alignment alone (a code audit on 2026-12-06 measured AUC 0.88 on 120 samples of the base pairs). A scan never has
such a reference: it compares with other people's faces from the bank. This prints that AUC for a pairs.csv, so a
change to how references are drawn can be measured against it. No model is involved.

    .venv/bin/python bench/pair_cue.py --pairs runs/base_pairs/pairs.csv [--n 200] [--size 224] [--seed 0]
                                       [--pair-reference source|other|reaugmented] [--json]
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import figure, finish, machine, print_figures  # noqa: E402


def main(argv: list[str] | None = None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--pairs", type=Path, required=True, help="a pairs.csv with a train split (self-blend or FF++)")
    ap.add_argument("--n", type=int, default=200, help="training samples drawn (half fakes, half reals)")
    ap.add_argument("--size", type=int, default=224, help="face size, as train --img-size")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--pair-reference", default="source", help="how references are drawn, as train --pair-reference "
                    "(source, other, reaugmented)")
    ap.add_argument("--json", action="store_true")
    args = ap.parse_args(argv)
    if not args.pairs.is_file():
        sys.exit(f"error: --pairs {args.pairs}: no such file")

    import cv2
    import torch
    from sklearn.metrics import roc_auc_score

    from forgerydet.pairs.table import read_pairs
    from forgerydet.training.data import TrainPairs

    torch.set_num_threads(1)
    cv2.setNumThreads(1)
    ds = TrainPairs(read_pairs(args.pairs, need_splits=("train",)), args.size, seed=args.seed,
                    pair_reference=args.pair_reference)
    picked = np.random.default_rng(args.seed).choice(len(ds), size=min(args.n, len(ds)), replace=False)
    labels, diffs, same = [], [], []
    for i in sorted(int(k) for k in picked):  # the epoch's order alternates a fake and a real
        b = ds[i]
        d = (b["x"] - b["ref"]).abs()  # (3,S,S) in [0,1]
        labels.append(int(b["label"]))
        diffs.append(float(d.mean()))
        same.append(float((d.max(0).values < 3 / 255).float().mean()))  # pixels that match to 3 grey levels
    y, diff, same = np.array(labels), np.array(diffs), np.array(same)
    auc = float(roc_auc_score(y, -diff))  # a smaller difference taken as 'fake'
    figures = [
        figure("pair steps: AUC of -mean|x - ref| for fake (0.5: no cue)", auc),
        figure("fakes: median mean|x - ref|", float(np.median(diff[y == 1]))),
        figure("reals: median mean|x - ref|", float(np.median(diff[y == 0]))),
        figure("fakes: median share of pixels matching their reference", float(np.median(same[y == 1]))),
        figure("reals: median share of pixels matching their reference", float(np.median(same[y == 0]))),
    ]
    res = {"bench": "pair_cue", "pairs": str(args.pairs), "pair_reference": args.pair_reference, "n": int(y.size),
           "fakes": int(y.sum()),
           "machine": machine()}
    if not args.json:
        print(f"{args.pairs}: {y.size} training samples ({int(y.sum())} fakes), {args.size} px, seed {args.seed}, "
              f"--pair-reference {args.pair_reference}")
        print_figures(figures)
    return finish(res, figures, args.json)


if __name__ == "__main__":
    main()
