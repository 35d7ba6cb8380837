"""`pairs --self-blend` on still images: the per-file path (one image at a time through `detect_source`,
as every source went before) against the worker pool (`faces.stills.iter_faces`: worker
processes, MTCNN batches, padded retry for tight crops, videos one per task), both writing crops and self-blended fakes.

Images: real faces from ../shared/data/train, by default half LFW and half UTKFace (the mix the issue timed;
UTKFace photos are tight crops that fill the image), `--sources lfw,celeba` for another mix; astronaut-derived
faces where that folder is absent. Videos: the issue's figure also covered the 12 real videos of
../shared/data/train/videos at 24 frames each; `--videos 12` adds them (`--frames` per video) to the
comparison against the old revision, so the whole mix the issue timed can be timed again (default 0: images only).

The speed target of issue 10 (">= 4x faster on 2 cores") is against the code that issue measured (about 5
faces/s): `--against REV` (default d4b3900, the last commit before the speed-up) checks that revision out into a
temporary git worktree and times the same command, `forgerydet pairs --self-blend DIR --out OUT --seed 0`, with
its code and with this checkout's, in subprocesses of this interpreter, in the order old, new, all, all, new, old
(the median of two each). 'new' is this checkout's default, which since 2026-12-04 writes no fake for train rows
(`--online`: training re-blends every epoch and never read them); 'all' adds `--all-fakes`, so it writes every
file the old code wrote (crop, fake and mask per face), the like-for-like figure. `--against none` skips it.
The in-process comparison (today's per-file path vs the pool, both writing every fake) is printed too; it is no
target: the per-file path already has the batched, downscaled detection.

    .venv/bin/python bench/pairs.py [--n 480] [--sources lfw,utkface] [--videos 0] [--frames 24]
                                    [--against d4b3900|none] [--no-in-process] [--json]

The issue's whole scale, every train/ photo (7,701 + 3,000 + 3,000 + 1,662; the smaller sources first so that
the even split takes all of each) and the 12 videos, without the in-process comparison:
    .venv/bin/python bench/pairs.py --n 15363 --sources rmfd_web,utkface,celeba,lfw --videos 12 --no-in-process
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

from forgerydet.pairs.selfblend import BlendOptions
from forgerydet.pairs.table import read_pairs

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import REPO, SHARED_DATA, figure, finish, machine, print_figures  # noqa: E402


def images(n: int, tmp: Path, sources: list[str]) -> list[Path]:
    shared = SHARED_DATA / "train"
    if shared.is_dir():
        out: list[Path] = []
        for k, src in enumerate(sources):  # n split evenly, the first files of each source
            out += sorted((shared / src).glob("*.jpg"))[: (n - len(out)) // (len(sources) - k)]
        return out
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

    s = pairs_from_self_blend(paths, out, val=0.1, options=BlendOptions(workers=workers, online=False))  # as per_file: every fake
    return s.rows


def train_videos(n: int) -> list[Path]:
    """The first n real videos of ../shared/data/train/videos (none where that folder is absent)."""
    shared = SHARED_DATA / "train" / "videos"
    return sorted(shared.glob("*.mp4"))[:n] if n and shared.is_dir() else []


def versus_revision(rev: str, paths: list[Path], tmp: Path, videos: list[Path] = (), frames: int = 24
                    ) -> tuple[dict[str, list[float]], dict[str, int]] | str:
    """Wall seconds of `forgerydet pairs --self-blend` with REV's code ('old') and with this checkout's, as it is
    ('new') and with --all-fakes ('all'), run old, new, all, all, new, old; and the rows each wrote; or why it could
    not run. `videos` are passed too, at `frames` frames each."""
    if shutil.which("git") is None or not (REPO / ".git").exists():
        return "no git checkout here"
    src = tmp / "images"
    src.mkdir()
    for i, p in enumerate(paths):
        (src / f"{i:04d}_{p.name}").symlink_to(p.resolve())
    tree = tmp / "old"
    r = subprocess.run(["git", "-C", str(REPO), "worktree", "add", "--detach", str(tree), rev], capture_output=True, text=True)
    if r.returncode != 0:
        return f"git worktree add {rev} failed: {r.stderr.strip().splitlines()[-1:]}"
    try:
        secs: dict[str, list[float]] = {"old": [], "new": [], "all": []}
        rows: dict[str, int] = {}
        for k, which in enumerate(("old", "new", "all", "all", "new", "old")):
            out = tmp / f"out{k}"
            env = {**os.environ, "PYTHONPATH": str((tree if which == "old" else REPO) / "src")}
            t0 = time.perf_counter()
            cmd = [sys.executable, "-m", "forgerydet", "pairs", "--self-blend", str(src), *map(str, videos),
                   "--out", str(out), "--seed", "0"] + (["--frames", str(frames)] if videos else []) \
                + (["--all-fakes"] if which == "all" else [])
            r = subprocess.run(cmd, env=env, capture_output=True, text=True)
            secs[which].append(time.perf_counter() - t0)
            if r.returncode != 0:
                return f"{which} code failed: {(r.stderr or r.stdout).strip().splitlines()[-1:]}"
            rows[which] = len(read_pairs(out / "pairs.csv").rows)
            shutil.rmtree(out)
        return secs, rows
    finally:
        subprocess.run(["git", "-C", str(REPO), "worktree", "remove", "--force", str(tree)], capture_output=True)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--n", type=int, default=480)
    ap.add_argument("--sources", default="lfw,utkface", help="comma-separated folders of ../shared/data/train")
    ap.add_argument("--videos", type=int, default=0, help="also pass this many train videos (the issue's mix: 12)")
    ap.add_argument("--frames", type=int, default=24, help="frames per video")
    ap.add_argument("--against", default="d4b3900", help="git revision to time against ('none': skip)")
    ap.add_argument("--no-in-process", action="store_true",
                    help="skip the in-process per-file vs pool comparison (minutes at the issue's whole scale)")
    ap.add_argument("--json", action="store_true")
    a = ap.parse_args()
    import torch

    torch.set_num_threads(os.cpu_count() or 1)
    with tempfile.TemporaryDirectory() as t:
        tmp = Path(t)
        paths = images(a.n, tmp, a.sources.split(","))
        if not a.no_in_process:
            (tmp / "a").mkdir()
            t0 = time.perf_counter()
            n_old = per_file(paths, tmp / "a")
            s_old = time.perf_counter() - t0
            t0 = time.perf_counter()
            n_new = pool(paths, tmp / "b", 0)
            s_new = time.perf_counter() - t0
        videos = train_videos(a.videos)
        rev = None if a.against == "none" else versus_revision(a.against, paths, tmp, videos, a.frames)
    figures = []
    if isinstance(rev, tuple):
        secs, rows = rev
        fo, fn, fa = (rows[w] / float(np.median(secs[w])) for w in ("old", "new", "all"))
        times = {w: ", ".join(f"{x:.1f}" for x in secs[w]) + " s" for w in secs}
        figures += [
            figure(f"pairs --self-blend, code of {a.against}", fo, "faces/s",
                   note=f"{rows['old']} faces ({len(paths)} images, {len(videos)} videos x {a.frames} frames); {times['old']}"),
            figure("pairs --self-blend, this checkout", fn, "faces/s", note=f"{rows['new']} faces; {times['new']}"),
            figure("pairs --self-blend --all-fakes, this checkout", fa, "faces/s",
                   note=f"{rows['all']} faces, every fake written as the old code did; {times['all']}"),
            figure(f"pairs: this checkout / {a.against} faces/s", fn / fo, "x", "≥ 4", fn / fo >= 4),
            figure(f"pairs: this checkout --all-fakes / {a.against} faces/s", fa / fo, "x"),
        ]
    elif rev is not None:
        figures.append(figure(f"pairs: this checkout / {a.against} faces/s", None, "x", "≥ 4", note=rev))
    if not a.no_in_process:
        old, new = n_old / s_old, n_new / s_new
        figures += [
            figure(f"pairs: per-file path, {len(paths)} images", old, "faces/s", note=f"{n_old} faces in {s_old:.1f} s"),
            figure(f"pairs: image pool ({os.cpu_count()} processes)", new, "faces/s",
                   note=f"{n_new} faces in {s_new:.1f} s"),
            figure("pairs: pool / per-file faces/s (in process)", new / old, "x"),
        ]
    res = {"machine": machine(), "images": len(paths), "sources": a.sources, "videos": len(videos), "frames": a.frames}
    if not a.json:
        print_figures(figures)
    finish(res, figures, a.json)


if __name__ == "__main__":
    main()
