"""Interlaced footage: does combing change verdicts, and does scanning's deinterlacing undo it?

Broadcast and DVD video is often interlaced, and OpenCV decodes it woven: two fields 1/50 s apart in alternate
rows, a comb along every moving edge. This bench makes an interlaced copy of each video (frame t's even rows with
frame t+1's odd rows: the fields 1/fps apart, twice a real 50i field gap, so the combing is if anything stronger
than broadcast) and a progressive copy through the same codec (MJPG), then scans:

- the progressive copy, as `scan` does by default (its deinterlaced frames, if any, are false alarms);
- the interlaced copy with `--no-deinterlace` (frames as stored: what scan did before 2026-12-05);
- the interlaced copy as `scan` does by default (faces/playback.py decides per video and deinterlaces).

Figures: each file's p(fake) three ways, the mean |p - progressive| of the two interlaced scans, and the cost
of the combing test and of deinterlacing one 640x480 and one 1920x1080 frame (the test runs on a
video's first 8 sampled frames only; deinterlacing on every frame of an interlaced video). Default videos: the six validation videos of
../shared/data/videos (never trained on; used here only to measure).

    .venv/bin/python bench/interlace.py [--checkpoint CK] [--videos V ...] [--frames 32] [--json]
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

import cv2
import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import SHARED_DATA, figure, finish, machine, median, print_figures  # noqa: E402

VIDEOS = ["anchor_real", "val_real_film_clip", "anchor_fake_ffpp", "anchor_fake_deeperforensics",
          "val_fake_ffpp_df_003_000", "val_fake_film_clip"]


def copies(video: Path, out: Path, max_frames: int = 450) -> tuple[Path, Path]:
    """(progressive, interlaced) MJPG copies of the video's first max_frames frames."""
    cap = cv2.VideoCapture(str(video))
    fps = cap.get(cv2.CAP_PROP_FPS) or 25.0
    frames = []
    while len(frames) < max_frames:
        ok, bgr = cap.read()
        if not ok:
            break
        frames.append(bgr)
    cap.release()
    if len(frames) < 2:
        raise SystemExit(f"error: {video}: fewer than 2 frames could be read")
    h, w = frames[0].shape[:2]
    paths = out / f"{video.stem}_progressive.avi", out / f"{video.stem}_interlaced.avi"
    writers = [cv2.VideoWriter(str(p), cv2.VideoWriter_fourcc(*"MJPG"), fps, (w, h)) for p in paths]
    for a, b in zip(frames[:-1], frames[1:]):
        woven = a.copy()
        woven[1::2] = b[1::2]  # the second field, one frame later
        writers[0].write(a)
        writers[1].write(woven)
    for wr in writers:
        wr.release()
    return paths


def frame_costs(size: tuple[int, int], repeats: int = 20) -> tuple[float, float]:
    """Median milliseconds of is_combed and deinterlace on one frame of `size` (w, h): the astronaut, resized."""
    from skimage.data import astronaut

    from forgerydet.faces.interlace import deinterlace, is_combed

    rgb = cv2.resize(astronaut(), size)
    out = []
    for fn in (is_combed, deinterlace):
        fn(rgb)  # warm-up
        ts = []
        for _ in range(repeats):
            t0 = time.perf_counter()
            fn(rgb)
            ts.append(1000 * (time.perf_counter() - t0))
        out.append(median(ts))
    return out[0], out[1]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--checkpoint", default=None, help="default: the shipped model")
    ap.add_argument("--videos", nargs="*", type=Path, default=None)
    ap.add_argument("--frames", type=int, default=32)
    ap.add_argument("--json", action="store_true")
    args = ap.parse_args()
    videos = args.videos or [SHARED_DATA / "videos" / f"{n}.mp4" for n in VIDEOS]
    missing = [str(v) for v in videos if not v.is_file()]
    if missing:
        raise SystemExit(f"error: no such video: {', '.join(missing)} (give --videos)")

    from forgerydet.scan.config import ScanConfig
    from forgerydet.scan.scanner import Scanner

    raw = Scanner(args.checkpoint, ScanConfig(num_frames=args.frames, device="cpu", deinterlace=False))
    fixed = Scanner(args.checkpoint, ScanConfig(num_frames=args.frames, device="cpu"))
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for v in videos:
            prog, woven = copies(v, Path(tmp))
            a, b, c = fixed.scan_file(prog), raw.scan_file(woven), fixed.scan_file(woven)
            rows.append({"video": v.name, "progressive": a["score"], "progressive_deinterlaced": a["frames_deinterlaced"],
                         "interlaced_as_stored": b["score"], "interlaced_deinterlaced": c["score"],
                         "interlaced_frames_deinterlaced": c["frames_deinterlaced"], "frames": c["frames_sampled"],
                         "threshold": fixed.threshold})
    costs = {size: frame_costs(size) for size in ((640, 480), (1920, 1080))}
    ok = [r for r in rows if None not in (r["progressive"], r["interlaced_as_stored"], r["interlaced_deinterlaced"])]
    gap_raw = float(np.mean([abs(r["interlaced_as_stored"] - r["progressive"]) for r in ok])) if ok else None
    gap_fixed = float(np.mean([abs(r["interlaced_deinterlaced"] - r["progressive"]) for r in ok])) if ok else None
    figures = [figure(f"{r['video']}: p(fake) progressive / interlaced as stored / deinterlaced",
                      r["interlaced_deinterlaced"], note=f"{r['progressive']:.3f} / {r['interlaced_as_stored']:.3f} / "
                      f"{r['interlaced_deinterlaced']:.3f}; frames deinterlaced {r['progressive_deinterlaced']} "
                      f"(progressive) / {r['interlaced_frames_deinterlaced']} of {r['frames']}")
               for r in ok]
    figures += [
        figure("interlaced as stored: mean |p - progressive|", gap_raw),
        figure("interlaced, deinterlaced: mean |p - progressive|", gap_fixed),
    ] + [figure(f"{name}, one {w}x{h} frame", ms[k], "ms")
         for (w, h), ms in costs.items() for k, name in enumerate(("combing test", "deinterlace"))]
    res = {"machine": machine(), "checkpoint": args.checkpoint or "shipped", "rows": rows}
    if not args.json:
        print(f"threshold {fixed.threshold:.3f}")
        print("| video | progressive | interlaced, as stored | interlaced, deinterlaced | frames deinterlaced (progressive / interlaced) |")
        print("|---|---:|---:|---:|---:|")
        for r in ok:
            print(f"| {r['video']} | {r['progressive']:.3f} | {r['interlaced_as_stored']:.3f} | "
                  f"{r['interlaced_deinterlaced']:.3f} | {r['progressive_deinterlaced']} / "
                  f"{r['interlaced_frames_deinterlaced']} of {r['frames']} |")
        print_figures(figures[len(ok):])
    finish(res, figures, args.json)


if __name__ == "__main__":
    main()
