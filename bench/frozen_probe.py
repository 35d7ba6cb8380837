"""Do frozen pretrained features already carry the forgery signal? A linear probe per packaged backbone.

Issue 10 asks whether a frozen (or LN-tuned) foundation ViT generalises better than the fine-tuned CNN; UnivFD
(Ojha et al., CVPR 2023) found a linear probe on frozen CLIP features generalises across generators. This bench
asks the same of the backbones that ship offline, with no training of the backbone at all:

1. self-blended pairs (`pairs --self-blend --all-fakes`, 224 px) from `--n` real photos of ../shared/data/train
   (half LFW drawn by whole person, half UTKFace; seeded), split by group into train / val;
2. each backbone frozen with its packaged ImageNet (or DINOv2) weights: one feature vector per face (CNN: the
   globally pooled last feature map; ViT: the CLS token and the mean patch token after the final norm); with
   `--layers multi` also from two earlier depths, fixed beforehand at about a third and two thirds of the network
   (ViT: blocks 4 and 8 of 12, each through the final norm; lite0: the pooled 28x28 and 14x14 stage outputs),
   since blending artifacts are low-level and the last layer may have pooled them away;
3. a logistic regression on standardised features, its C chosen on the self-blend val split only;
4. with `--nearest K`, also the method's idea without its training: each face's features beside their difference
   to the mean of its K nearest real training faces ([f, f - nearest], cosine retrieval; a training face never
   recalls its own group), probed the same way;
5. AUC (with a 95 % stratified bootstrap interval) on the self-blend val split and on the held-out crops that
   `bench/heldout.py` scores as crops: FF++ (20/20), DFDC (11/6), CelebA vs StarGAN, CelebA vs StyleGAN3.

Nothing is tuned on the held-out crops. For reference, the shipped model (fine-tuned lite0 with the full method)
scores FF++ crops 0.915 and DFDC crops 0.909 (models/README.md). Needs ../shared/data. ~10 min on 2 CPU cores
at the default --n 1200.

    .venv/bin/python bench/frozen_probe.py [--n 1200] [--backbones tf_efficientnet_lite0,vit_small_patch14_dinov2]
                                           [--layers last|multi] [--nearest K] [--seed 0] [--json]
"""

from __future__ import annotations

import argparse
import random
import re
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import SHARED_DATA, figure, finish, print_figures  # noqa: E402

PERSON = re.compile(r"^(.+)_\d{4}\.jpg$")
SIZE = 224


def photos(n: int, seed: int) -> list[Path]:
    """n // 2 LFW photos of whole people and n - n // 2 UTKFace photos, seeded."""
    train = SHARED_DATA / "train"
    rng = random.Random(seed)
    by_person: dict[str, list[Path]] = {}
    for p in sorted((train / "lfw").glob("*.jpg")):
        m = PERSON.match(p.name)
        by_person.setdefault(m.group(1) if m else p.stem, []).append(p)
    people = sorted(by_person)
    rng.shuffle(people)
    lfw: list[Path] = []
    for who in people:
        if len(lfw) >= n // 2:
            break
        lfw += by_person[who]
    utk = sorted((train / "utkface").glob("*.jpg"))
    rng.shuffle(utk)
    return lfw[: n // 2] + utk[: n - n // 2]


def self_blends(paths: list[Path], out: Path, seed: int) -> tuple[dict[str, list[tuple[Path, int]]], dict[str, np.ndarray]]:
    """split -> [(image, label)]: every real face and its stored self-blend; and split -> each face's group."""
    from forgerydet.pairs.selfblend import BlendOptions, pairs_from_self_blend
    from forgerydet.pairs.table import read_pairs

    src = out / "photos"
    src.mkdir()
    for i, p in enumerate(paths):
        (src / f"{i:05d}_{p.name}").symlink_to(p.resolve())
    opts = BlendOptions(online=False, group_pattern=r"^\d{5}_(.+)_\d{4}$")  # LFW people stay in one split
    pairs_from_self_blend([src], out / "pairs", val=0.3, test=0.0, seed=seed, options=opts)
    table = read_pairs(out / "pairs" / "pairs.csv")
    split: dict[str, list[tuple[Path, int]]] = {"train": [], "val": []}
    groups: dict[str, list[str]] = {"train": [], "val": []}
    for r in table.rows:
        if r.fake is not None:
            split[r.split] += [(r.real, 0), (r.fake, 1)]
            groups[r.split] += [r.group, r.group]
    return split, {k: np.array(v) for k, v in groups.items()}


class NearestReal:
    """The method's idea on frozen features: each face beside the mean of its k nearest real training faces
    (cosine), as [f, f - nearest]. A training face never recalls a face of its own group (person or photo),
    as in training's 'single' steps: its own source would make "no difference" mean real."""

    def __init__(self, feats: np.ndarray, groups: np.ndarray, k: int):
        self.bank, self.groups, self.k = feats, groups, k
        self.unit = feats / np.linalg.norm(feats, axis=1, keepdims=True)

    def __call__(self, f: np.ndarray, groups: np.ndarray | None = None) -> np.ndarray:
        sim = (f / np.linalg.norm(f, axis=1, keepdims=True)) @ self.unit.T
        if groups is not None:
            sim[groups[:, None] == self.groups[None, :]] = -np.inf
        idx = np.argpartition(-sim, self.k - 1, axis=1)[:, : self.k]
        return np.concatenate([f, f - self.bank[idx].mean(1)], axis=1)


def heldout() -> dict[str, list[tuple[Path, int]]]:
    f = SHARED_DATA / "faces"
    celeba = [(p, 0) for p in sorted((f / "celeba_stargan").glob("*_real.png"))]
    return {
        "FF++ crops": [(p, int(p.stem.endswith("_fake"))) for p in sorted((f / "ffpp").glob("*.png"))],
        "DFDC crops": [(p, 0) for p in sorted((f / "dfdc" / "real").glob("*.png"))]
        + [(p, 1) for p in sorted((f / "dfdc" / "fake").glob("*.png"))],
        "StarGAN": celeba + [(p, 1) for p in sorted((f / "celeba_stargan").glob("*_fake.png"))],
        "StyleGAN3": celeba + [(p, 1) for p in sorted((f / "stylegan").glob("*.png"))],
    }


class Frozen:
    """A packaged backbone, frozen: (B,3,S,S) RGB uint8 batches -> (B,F) feature vectors."""

    def __init__(self, name: str, layers: str = "last"):
        import timm

        from forgerydet.model.backbone import create_backbone
        from forgerydet.model.weights import load_pretrained

        self.name = name
        self.model = create_backbone(name, SIZE).eval()
        self.weights = load_pretrained(self.model, name, "packaged")
        cfg = timm.data.resolve_model_data_config(self.model)
        self.mean = torch.tensor(cfg["mean"]).view(1, 3, 1, 1)
        self.std = torch.tensor(cfg["std"]).view(1, 3, 1, 1)
        self.vit = hasattr(self.model, "cls_token")
        self.layers = layers

    @torch.inference_mode()
    def __call__(self, images: np.ndarray) -> np.ndarray:
        x = (torch.from_numpy(images).permute(0, 3, 1, 2).float() / 255.0 - self.mean) / self.std  # (B,3,S,S)
        if self.vit:  # per block: CLS and the mean patch token, through the final norm
            n = len(self.model.blocks)
            idx = [n // 3 - 1, 2 * n // 3 - 1, n - 1] if self.layers == "multi" else [n - 1]
            out = self.model.forward_intermediates(x, indices=idx, return_prefix_tokens=True, norm=True,
                                                   output_fmt="NLC", intermediates_only=True)
            f = torch.cat([torch.cat([prefix[:, 0], patches.mean(1)], dim=1) for patches, prefix in out], dim=1)
        else:
            f = self.model.forward_features(x).mean((2, 3))  # (B,C) the last map, pooled
            if self.layers == "multi":  # the 28x28 and 14x14 stage outputs (strides 8 and 16), pooled
                stages = self.model.forward_intermediates(x, intermediates_only=True)
                f = torch.cat([*(m.mean((2, 3)) for m in stages if m.shape[-1] in (SIZE // 8, SIZE // 16)), f], dim=1)
        return f.numpy()


def load(items: list[tuple[Path, int]]) -> tuple[np.ndarray, np.ndarray]:
    """The images at SIZE, resized as training, `evaluate --crops` and `scan` resize a face (model.inputs)."""
    from forgerydet.model.inputs import load_image

    return np.stack([load_image(p, SIZE) for p, _ in items]), np.array([y for _, y in items])  # (B,S,S,3), (B,)


def features(model: Frozen, images: np.ndarray, batch: int = 32) -> np.ndarray:
    return np.concatenate([model(images[i : i + batch]) for i in range(0, len(images), batch)])


def probe(train_x, train_y, val_x, val_y):
    """Standardised logistic regression; C chosen by self-blend val AUC."""
    from sklearn.linear_model import LogisticRegression
    from sklearn.metrics import roc_auc_score
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    best = None
    for c in (0.001, 0.01, 0.1, 1.0):
        clf = make_pipeline(StandardScaler(), LogisticRegression(C=c, max_iter=3000))
        clf.fit(train_x, train_y)
        auc = roc_auc_score(val_y, clf.decision_function(val_x))
        if best is None or auc > best[0]:
            best = (auc, c, clf)
    return best


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--n", type=int, default=1200, help="real photos to self-blend")
    ap.add_argument("--backbones", default="tf_efficientnet_lite0,vit_small_patch14_dinov2")
    ap.add_argument("--layers", choices=("last", "multi"), default="last")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--nearest", type=int, default=0, metavar="K",
                    help="also probe [f, f - mean of the K nearest real training faces] (the bank's idea); 0: off")
    ap.add_argument("--json", action="store_true")
    a = ap.parse_args()
    if not (SHARED_DATA / "train").is_dir():
        sys.exit(f"{SHARED_DATA / 'train'} not found: this bench needs ../shared/data")
    from sklearn.metrics import roc_auc_score

    from forgerydet.metrics import bootstrap_auc, interval

    torch.manual_seed(a.seed)
    figures, res = [], {"n_photos": a.n, "seed": a.seed, "layers": a.layers, "nearest": a.nearest, "backbones": {}}
    with tempfile.TemporaryDirectory() as t:
        t0 = time.perf_counter()
        split, groups = self_blends(photos(a.n, a.seed), Path(t), a.seed)
        sets = {name: load(items) for name, items in heldout().items()}
        (tr_x, tr_y), (va_x, va_y) = load(split["train"]), load(split["val"])
        prep = time.perf_counter() - t0
        for name in a.backbones.split(","):
            t0 = time.perf_counter()
            model = Frozen(name, a.layers)
            f_tr, f_va = features(model, tr_x), features(model, va_x)
            f_sets = {k: features(model, x) for k, (x, _) in sets.items()}
            variants = {"": lambda f, g=None: f}
            if a.nearest:
                variants[f", nearest {a.nearest}"] = NearestReal(f_tr[tr_y == 0], groups["train"][tr_y == 0], a.nearest)
            for tag, view in variants.items():
                x_tr, x_va = view(f_tr, groups["train"]), view(f_va, groups["val"])
                val_auc, c, clf = probe(x_tr, tr_y, x_va, va_y)
                row = {"weights": model.weights, "features": int(x_tr.shape[1]), "C": c}
                scored = {"self-blend val": (va_y, clf.decision_function(x_va))}
                scored.update({k: (sets[k][1], clf.decision_function(view(f))) for k, f in f_sets.items()})
                for k, (y, s) in scored.items():
                    lo, hi = interval(bootstrap_auc(y, s)[:, 0])
                    auc = float(roc_auc_score(y, s))
                    row[k] = {"auc": auc, "ci": [lo, hi], "n_real": int((y == 0).sum()), "n_fake": int((y == 1).sum())}
                    figures.append(figure(f"{name} ({a.layers}{tag}) frozen + linear probe: {k}", auc, "AUC",
                                          note=f"95 % CI {lo:.2f}-{hi:.2f}, {int((y == 0).sum())} real / {int((y == 1).sum())} fake"))
                row["seconds"] = time.perf_counter() - t0
                res["backbones"][name + tag] = row
                print(f"{name}{tag}: {x_tr.shape[1]} features, C={c}, {row['seconds']:.0f} s", file=sys.stderr)
        res.update(train_faces=int(len(tr_y)), val_faces=int(len(va_y)), prep_seconds=prep)
    if not a.json:
        print(f"self-blends: {len(tr_y)} train / {len(va_y)} val faces (half real), made in {prep:.0f} s")
        print_figures(figures)
    finish(res, figures, a.json)


if __name__ == "__main__":
    main()
