"""Tiny models for tests: timm's test_efficientnet at 64 px, small token dims, a small bank."""

from __future__ import annotations

import csv
from pathlib import Path

import cv2
import numpy as np

from forgerydet.model.config import ModelConfig
from forgerydet.model.detector import Detector
from forgerydet.training.config import TrainConfig

TINY = dict(backbone="test_efficientnet", pretrained="none", img_size=64, dim=32, grid=4, heads=4, bank_size=37, topk=2)


def tiny_config(**kw) -> ModelConfig:
    return ModelConfig(**{**TINY, **kw})


def tiny_model(**kw) -> Detector:
    return Detector(tiny_config(**kw))


S = 64  # side of the synthetic training crops


def make_synthetic_pairs(root: Path, groups: int = 8, frames: int = 4, val_groups: int = 2, seed: int = 0) -> Path:
    """Smooth random 'faces'; each fake is its real frame with a visible bright patch blended in."""
    rng = np.random.default_rng(seed)
    root.mkdir(parents=True, exist_ok=True)
    rows = []
    yy, xx = np.mgrid[0:S, 0:S] / S
    for g in range(groups):
        base = rng.uniform(40, 200, size=3)
        for f in range(frames):
            img = np.stack([base[c] + 40 * np.sin(3 * xx + c + f * 0.3) + 30 * yy for c in range(3)], -1)
            img = np.clip(img + rng.normal(0, 4, img.shape), 0, 255).astype(np.uint8)
            fake = img.copy()
            cy, cx = rng.integers(16, 40, size=2)
            patch = fake[cy : cy + 14, cx : cx + 14].astype(float)
            fake[cy : cy + 14, cx : cx + 14] = np.clip(0.3 * patch + 0.7 * np.array([255, 230, 40]), 0, 255).astype(np.uint8)
            rp, fp = root / f"g{g}_f{f}_real.png", root / f"g{g}_f{f}_fake.png"
            cv2.imwrite(str(rp), img[:, :, ::-1])
            cv2.imwrite(str(fp), fake[:, :, ::-1])
            rows.append({"real": rp.name, "fake": fp.name, "group": f"g{g}",
                         "split": "val" if g >= groups - val_groups else "train", "method": "patch", "landmarks": ""})
    path = root / "pairs.csv"
    with open(path, "w", newline="") as fh:
        w = csv.DictWriter(fh, fieldnames=list(rows[0]))
        w.writeheader()
        w.writerows(rows)
    return path


def tcfg(pairs: Path, out: Path, **kw) -> TrainConfig:
    base = dict(pairs=str(pairs), out=str(out), epochs=2, batch_size=6, lr=2e-3, workers=0, seed=0, device="cpu",
                augment=False, warmup=0.1)
    return TrainConfig(**{**base, **kw})


def randomise_batchnorm_statistics(module, seed: int = 0) -> int:
    """Running statistics and affine parameters far from their initial values, so that folding has to be right."""
    import torch

    g = torch.Generator().manual_seed(seed)
    n = 0
    with torch.no_grad():
        for m in module.modules():
            if isinstance(m, torch.nn.BatchNorm2d):
                c = m.num_features
                m.running_mean.copy_(torch.randn(c, generator=g) * 0.5)
                m.running_var.copy_(torch.rand(c, generator=g) * 2 + 0.1)
                m.weight.copy_(torch.randn(c, generator=g))
                m.bias.copy_(torch.randn(c, generator=g) * 0.2)
                n += 1
    return n
