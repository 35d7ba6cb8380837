"""Which kinds of blend does the model catch? Held-out real faces, each with three pseudo-fakes made from it
(seeded): a whole-face self-blend (pairs/sbi.py, the default masks, as training uses), a 'local' one (one facial
part: eyes, nose, mouth or lower face; `train --sbi-local`), and one blended from ANOTHER of the held-out people
(pairs/swapblend.py, the donor nearest in pose among 32; `train --swap-blends`); and four self-blends whose source
differs from the face in ONE way only, no colour change, blended whole (ratio 1, face or inner mask): downscaled x2
or x4 and back up (a Deepfakes-like low-resolution inner face), blurred (sigma 0.5-1.5), or sharpened. Each is scored
as `evaluate --crops` scores crops (the checkpoint's calibrated probability and stored threshold). Per kind:
real-vs-fake AUC and the share of the fakes called FAKE; and the real faces' share called FAKE. `--only TEXT`
scores the kinds whose name contains TEXT.

Why: a whole-face self-blend puts its boundary at the face's edge, where a face swap leaves one; reenactment and
local edits (Face2Face, NeuralTextures' re-rendered mouth) leave theirs inside the face; a face swap also puts
another person's face inside the outline. A model that misses local self-blends has no reason to catch those
forgeries. These are pseudo-fakes of the kinds the options train on, so for a model trained with one this measures
what it learned, not how it generalises to real forgeries.

The faces: the 'val' split of a pairs.csv that the checkpoint never trained on (for the shipped file, `make
shipped-calib`: runs/shipped_calib_pairs/pairs.csv), `--n` of them, seeded, with their stored landmarks.

    .venv/bin/python bench/local_blends.py CHECKPOINT [CHECKPOINT ...] --pairs runs/shipped_calib_pairs/pairs.csv
                                           [--n 300] [--seed 0] [--only TEXT] [--json]
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

ONE_CHANGE = dict(rgb_shift_p=0.0, hue_shift_deg=1e-6, saturation=1e-6, brightness=1e-6, contrast=1e-6,
                  mask_probs=(0.5, 0.0, 0.5, 0.0), blend_ratios=(1.0,))  # no colour change, blended whole


def configs() -> dict:
    """Every kind: its SBIConfig, or None for the blend from another person."""
    from forgerydet.pairs.sbi import SBIConfig

    return {"whole face": SBIConfig(), "local": SBIConfig(mask_probs=(0.0, 0.0, 0.0, 1.0)), "another person": None,
            "only downscaled x2": SBIConfig(**ONE_CHANGE, freq_probs=(1, 0, 0), downscale_factors=(2,)),
            "only downscaled x4": SBIConfig(**ONE_CHANGE, freq_probs=(1, 0, 0), downscale_factors=(4,)),
            "only blurred": SBIConfig(**ONE_CHANGE, freq_probs=(0, 0, 1)),
            "only sharpened": SBIConfig(**ONE_CHANGE, freq_probs=(0, 1, 0))}


KINDS = tuple(configs())


def write_list(items: list[tuple[Path, np.ndarray, str]], folder: Path, seed: int, kinds: tuple[str, ...]) -> Path:
    """One evaluate list: every real face once (group 'real'), then each kind's fakes made from them (group: the
    kind), written as PNG into folder; so each real face is scored once, not once per kind."""
    from forgerydet.io import read_image
    from forgerydet.pairs.sbi import self_blend
    from forgerydet.pairs.swapblend import pick_donor, pose_key, swap_blend

    images = [read_image(real) for real, _, _ in items]  # read once: each is blended once per kind, and a donor
    keys = np.stack([pose_key(lm) for _, lm, _ in items])
    groups = np.array([g for _, _, g in items])

    def from_another(j: int, img: np.ndarray, lm: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        d = pick_donor(keys, groups, keys[j], groups[j], rng)
        if d is None:
            raise SystemExit("every held-out face is of one person: no donor for a blend from another person")
        return swap_blend(img, lm, images[d], items[d][1], rng)[0]

    lst = folder / "faces.csv"
    with open(lst, "w", newline="") as fh:
        w = csv.writer(fh)
        w.writerow(["path", "label", "group"])
        w.writerows([Path(real).resolve(), 0, "real"] for real, _, _ in items)  # paths absolute: evaluate reads relative
        for k, (kind, cfg) in enumerate((kind, cfg) for kind, cfg in configs().items() if kind in kinds):
            for j, ((_, lm, _), img) in enumerate(zip(items, images)):
                rng = np.random.default_rng([seed, j])
                fake = self_blend(img, lm, rng, cfg)[0] if cfg is not None else from_another(j, img, lm, rng)
                p = folder / f"{k}_{j}.png"
                cv2.imwrite(str(p), cv2.cvtColor(fake, cv2.COLOR_RGB2BGR))
                w.writerow([p, 1, kind])
    return lst


def score(checkpoint: str, lst: Path, kinds: tuple[str, ...]) -> dict[str, dict]:
    from forgerydet.metrics import binary_metrics

    c = crop_scores(lst, checkpoint)
    real, thr = c["real"], c["threshold"]
    out = {}
    for kind in kinds:
        fake = c["fake"][c["fake_groups"] == kind]
        auc = binary_metrics(np.r_[np.zeros(real.size), np.ones(fake.size)], np.r_[real, fake])["auc"]
        out[kind] = {"auc": auc, "threshold": thr, "fakes_called_fake": float((fake >= thr).mean()),
                     "reals_called_fake": float((real >= thr).mean()),
                     "fake_mean_p": float(fake.mean()), "real_mean_p": float(real.mean())}
    return out


def main() -> None:
    args = checkpoints_and_pairs_args(__doc__, 300, "real faces (default 300), each with one fake of each kind",
                                      "score only the kinds whose name contains TEXT (e.g. 'only', 'another')")
    kinds = tuple(k for k in KINDS if args.only in k)
    if not kinds:
        sys.exit(f"--only {args.only!r} matches no kind: {', '.join(KINDS)}")
    items = val_faces(args.pairs, args.n, args.seed, groups=True)
    res = {"machine": machine(), "pairs": str(args.pairs), "n": len(items), "seed": args.seed, "checkpoints": {}}
    figures = []
    with tempfile.TemporaryDirectory() as t:
        lst = write_list(items, Path(t), args.seed, kinds)
        for ck in args.checkpoints:
            res["checkpoints"][ck] = s = score(ck, lst, kinds)
            for kind in kinds:
                figures.append(figure(f"{Path(ck).name}: {kind} blends: AUC", s[kind]["auc"],
                                      note=f"fakes called FAKE {100 * s[kind]['fakes_called_fake']:.0f} %, "
                                           f"reals {100 * s[kind]['reals_called_fake']:.0f} %"))
    if not args.json:
        print(f"{len(items)} held-out real faces of {args.pairs}, each with one pseudo-fake of each kind")
        print("| checkpoint | threshold | reals called FAKE | " + " | ".join(f"{k}: AUC / caught" for k in kinds) + " |")
        print("|---|---:|---:|" + "---:|" * len(kinds))
        for ck, s in res["checkpoints"].items():
            w = s[kinds[0]]
            cells = " | ".join(f"{s[k]['auc']:.3f} / {100 * s[k]['fakes_called_fake']:.0f} %" for k in kinds)
            print(f"| {Path(ck).name} | {w['threshold']:.3f} | {100 * w['reals_called_fake']:.0f} % | {cells} |")
    finish(res, figures, args.json)


if __name__ == "__main__":
    main()
