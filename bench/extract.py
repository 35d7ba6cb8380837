"""Face extraction speed on one video: sampled decoding vs decoding every frame, MTCNN, cropping.

Measured in one run on the same file (default ../shared/data/videos/anchor_real.mp4, 32 sampled frames):
  decode every frame   cap.read() of every frame + RGB conversion (what sampling avoids)
  sampled decode       video.iter_frames(num_frames=32) (grab-skip, seek on long gaps)
  always seeking       the same frames reached with a seek each (seek_threshold=0), for comparison
  detection            FaceDetector.detect on the 32 frames (MTCNN on a copy with longest side 640)
  crops/s              detect_source end to end (decode + detect + crop + track) and the crop step alone
Target (issue 3): sampled decode / decode every frame <= 0.5. Timings are medians of repeated runs.
`--json` prints a JSON object for bench/run_all.py.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import time
from pathlib import Path

import cv2
import torch

from forgerydet.faces.detect import DetectorConfig, FaceDetector, crop_faces
from forgerydet.faces.media import iter_frames, video_info
from forgerydet.faces.pipeline import ExtractConfig, detect_source

# ../shared/data or FORGERYDET_SHARED_DATA, as _common.SHARED_DATA (not imported: it would change the malloc setting)
SHARED_DATA = Path(os.environ.get("FORGERYDET_SHARED_DATA", Path(__file__).resolve().parents[2] / "shared" / "data"))
DEFAULT_VIDEO = SHARED_DATA / "videos" / "anchor_real.mp4"


def _median_time(fn, repeats: int) -> tuple[float, object]:
    times, out = [], None
    for _ in range(repeats):
        t = time.perf_counter()
        out = fn()
        times.append(time.perf_counter() - t)
    return statistics.median(times), out


def _decode_all(path: Path) -> int:
    cap = cv2.VideoCapture(str(path), cv2.CAP_FFMPEG)
    n = 0
    while True:
        ok, bgr = cap.read()
        if not ok:
            break
        cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB)
        n += 1
    cap.release()
    return n


def main() -> dict:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("video", nargs="?", type=Path, default=DEFAULT_VIDEO)
    ap.add_argument("--frames", type=int, default=32)
    ap.add_argument("--repeats", type=int, default=3, help="repeats of detection and cropping")
    ap.add_argument("--decode-repeats", type=int, default=7, help="repeats of the decode comparison")
    ap.add_argument("--detect-side", type=int, default=640)
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--json", action="store_true")
    args = ap.parse_args()
    if not args.video.is_file():
        raise SystemExit(f"error: {args.video} not found: give a video, or set FORGERYDET_SHARED_DATA to the shared data")
    path = args.video.resolve()
    info = video_info(path)

    # the decode variants take turns within each repeat, so a burst of load elsewhere hits all of them
    all_t, sampled_t, seek_t = [], [], []
    for _ in range(args.decode_repeats):
        t, n_all = _median_time(lambda: _decode_all(path), 1)
        all_t.append(t)
        t, frames = _median_time(lambda: list(iter_frames(path, num_frames=args.frames)), 1)
        sampled_t.append(t)
        t, _ = _median_time(lambda: list(iter_frames(path, num_frames=args.frames, seek_threshold=0)), 1)
        seek_t.append(t)
    t_all, t_sampled, t_seek = (statistics.median(x) for x in (all_t, sampled_t, seek_t))

    cfg = ExtractConfig(num_frames=args.frames, detector=DetectorConfig(detect_side=args.detect_side, device=args.device))
    t = time.perf_counter()
    detector = FaceDetector(cfg.detector)
    detector.mtcnn  # noqa: B018 - load the weights outside the timed part
    t_load = time.perf_counter() - t
    images = [f.image for f in frames]
    t_detect, dets = _median_time(lambda: detector.detect(images), args.repeats)
    n_faces = sum(len(d) for d in dets)
    t_crop, _ = _median_time(
        lambda: [crop_faces(f, d.boxes, d.landmarks, d.confidences, cfg.detector.margin, cfg.detector.size) for f, d in zip(frames, dets)],
        args.repeats,
    )
    t_e2e, found = _median_time(lambda: detect_source(path, cfg, detector), 1)

    res = {
        "video": str(path), "frames_total": n_all, "frames_sampled": len(frames),
        "size": f"{info.width}x{info.height}", "fps": info.fps,
        "decode_all_s": t_all, "decode_sampled_s": t_sampled, "decode_always_seek_s": t_seek,
        "sampled_over_all": t_sampled / t_all, "mtcnn_load_s": t_load,
        "detect_s": t_detect, "detect_ms_per_frame": 1000 * t_detect / len(frames), "faces": n_faces,
        "crop_s": t_crop, "crops_per_s_crop_step": n_faces / t_crop if t_crop > 0 else float("inf"),
        "end_to_end_s": t_e2e, "crops_per_s_end_to_end": len(found.all_faces) / t_e2e, "tracks": found.num_tracks,
        "threads": torch.get_num_threads(), "load_avg_1min": os.getloadavg()[0], "cpus": os.cpu_count(), "cpu": platform.processor() or platform.machine(), "device": args.device,
    }  # fmt: skip
    if args.json:
        print(json.dumps(res))
    else:
        print(f"video                 {path.name} {res['size']} @ {info.fps:g} fps, {n_all} frames; {len(frames)} sampled")
        print(f"decode every frame    {t_all:.3f} s")
        print(f"sampled decode        {t_sampled:.3f} s   (always seeking: {t_seek:.3f} s)")
        print(f"sampled / every       {res['sampled_over_all']:.2f}   (target <= 0.5)")
        print(f"MTCNN load            {t_load:.3f} s")
        print(f"detection             {t_detect:.3f} s for {len(frames)} frames ({res['detect_ms_per_frame']:.0f} ms/frame), {n_faces} faces")
        print(f"crop step             {res['crops_per_s_crop_step']:.0f} crops/s")
        print(f"end to end            {t_e2e:.3f} s, {res['crops_per_s_end_to_end']:.2f} crops/s, {found.num_tracks} track(s)")
        print(
            f"(medians of {args.decode_repeats} decode / {args.repeats} detection runs; torch threads {res['threads']}, device {args.device}, "
            f"load average {res['load_avg_1min']:.1f} on {res['cpus']} CPUs: other work on the machine slows MTCNN)"
        )
    return res


if __name__ == "__main__":
    from forgerydet.runtime import tune_malloc

    tune_malloc()  # as the forgerydet CLI does at start-up
    main()
