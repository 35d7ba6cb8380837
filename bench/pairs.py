"""`pairs --self-blend` on still images: the per-file path (one image at a time through `detect_source`,
as every source went before) against the image pool (`selfblend_images.iter_image_faces`: worker
processes, MTCNN batches, padded retry for tight crops), both writing crops and self-blended fakes.

Images: real faces of other people from ../shared/data/train (LFW and CelebA, some tight crops), or
astronaut-derived faces where that folder is absent. Target: the pool >= 4x the per-file path's faces/s.

    .venv/bin/python bench/pairs.py [--n 480] [--json]
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

from forgerydet.pairs.selfblend import BlendOptions

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import REPO, figure, finish, machine, print_figures  # noqa: E402


def images(n: int, tmp: Path) -> list[Path]:
    shared = Path(os.environ.get("FORGERYDET_SHARED_DATA", REPO.parent / "shared" / "data")) / "train"
    if shared.is_dir():
        lfw = sorted((shared / "lfw").glob("*.jpg"))[: n // 2]
        celeba = sorted((shared / "celeba").glob("*.jpg"))[: n - len(lfw)]
        return lfw + celeba
    import cv2
    from _common import astronaut_faces

    out = []
    for i, face in enumerate(astronaut_faces(n, 160)):
        p = tmp / f"face{i:04d}.jpg"
        cv2.imwrite(str(p), face[:, :, ::-1])
        out.append(p)
    return out


def per_file(paths: list[Path], out: Path) -> int:
    """The path every source took before: detect_source per file, crop, blend, write PNGs."""
    from forgerydet.faces.detect import FaceDetector
    from forgerydet.faces.pipeline import ExtractConfig, detect_source
    from forgerydet.io import write_png
    from forgerydet.pairs.sbi import self_blend

    cfg = ExtractConfig()
    det = FaceDetector(cfg.detector)
    n = 0
    for i, p in enumerate(paths):
        for fr in detect_source(p, cfg, det).faces:
            for f in fr[:1]:
                write_png(out / f"r{i}.png", f.crop)
                fake, mask = self_blend(f.crop, f.landmarks_crop, np.random.default_rng([0, i]))
                write_png(out / f"f{i}.png", fake)
                write_png(out / f"m{i}.png", (mask * 255).astype(np.uint8))
                n += 1
    return n


def pool(paths: list[Path], out: Path, workers: int) -> int:
    from forgerydet.pairs.selfblend import pairs_from_self_blend

    s = pairs_from_self_blend(paths, out, val=0.1, options=BlendOptions(workers=workers))
    return s.rows


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--n", type=int, default=480)
    ap.add_argument("--json", action="store_true")
    a = ap.parse_args()
    import torch

    torch.set_num_threads(os.cpu_count() or 1)
    with tempfile.TemporaryDirectory() as t:
        tmp = Path(t)
        paths = images(a.n, tmp)
        (tmp / "a").mkdir()
        t0 = time.perf_counter()
        n_old = per_file(paths, tmp / "a")
        s_old = time.perf_counter() - t0
        t0 = time.perf_counter()
        n_new = pool(paths, tmp / "b", 0)
        s_new = time.perf_counter() - t0
    old, new = n_old / s_old, n_new / s_new
    figures = [
        figure(f"pairs: per-file path, {len(paths)} images", old, "faces/s", note=f"{n_old} faces in {s_old:.1f} s"),
        figure(f"pairs: image pool ({os.cpu_count()} processes)", new, "faces/s", note=f"{n_new} faces in {s_new:.1f} s"),
        figure("pairs: pool / per-file faces/s", new / old, "x", "≥ 4", new / old >= 4),
    ]
    res = {"machine": machine(), "images": len(paths)}
    if not a.json:
        print_figures(figures)
    finish(res, figures, a.json)


if __name__ == "__main__":
    main()
