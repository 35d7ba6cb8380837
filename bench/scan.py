"""Scan speed split into decode / detection / model+bank, and peak memory on a long video (issue 5).

1. Seconds per video for `forgerydet scan` on ../shared/data/videos/anchor_real.mp4 (640x480, 15.8 s) with 32
   frames, from the Scanner's own record timing (decode_s, detect_s, model_s, total_s), medians over repeats
   after a warm-up scan. Target: total / (decode + detection) <= 1.3 on CPU with the default backbone, i.e. the
   model and the bank add at most 30% to what finding the faces costs anyway. Skipped when the video is absent.
   Where the CPU has bf16 instructions (AVX512-BF16 or AMX), or on a GPU, the same scan with `--precision bf16` is
   timed round-robin with it and gets the same three figures (same target; --no-bf16 leaves it out).
   Beside it, the encoder on that video's faces as the scanner runs it (BatchNorms folded into the
   convolutions) against the checkpoint's encoder as stored, round-robin in one process: a ratio, no target.
2. Peak RSS of a scan of a generated 10-minute video against a generated 10-second one (320x240, 25 fps, mp4v,
   the astronaut's face from scikit-image pasted in and moving), each scanned in its own subprocess that
   reports its ru_maxrss. Target: within 200 MB of each other (memory must not grow with video length). As
   loading the scanner can peak higher than scanning, the peak during the scan alone is shown too (the
   high-water mark is reset after loading through /proc/self/clear_refs), with the same target.
   The videos are written to a temp folder and deleted afterwards.

Without --checkpoint a checkpoint is built in a temp folder: Detector(ModelConfig()) with the packaged ImageNet
weights, its bank rebuilt (key encoder) from --bank-images astronaut-derived face crops. Its scores mean nothing;
its cost is that of any checkpoint with this backbone. Default run: about 2 minutes on 2 CPU cores.

    .venv/bin/python bench/scan.py [--video PATH] [--frames 32] [--repeats 3] [--checkpoint CK] [--precision P] [--json]
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import SHARED_DATA, astronaut_faces, figure, finish, interleaved, machine, median, print_figures  # noqa: E402

RATIO_TARGET = 1.3
RSS_TARGET_MB = 200.0
DEFAULT_VIDEO = SHARED_DATA / "videos" / "anchor_real.mp4"


def build_checkpoint(path: Path, n_faces: int, device: str) -> Path:
    """A checkpoint of the default model whose bank holds n_faces astronaut-derived real crops."""
    import torch

    from forgerydet.model.checkpoint import save_checkpoint
    from forgerydet.model.config import ModelConfig
    from forgerydet.model.detector import Detector
    from forgerydet.model.inputs import to_tensor

    torch.manual_seed(0)
    model = Detector(ModelConfig()).to(device).eval()
    faces = astronaut_faces(n_faces, size=model.img_size, seed=2)
    values = []
    for i in range(0, n_faces, 32):
        x = torch.stack([to_tensor(f) for f in faces[i : i + 32]]).to(device)  # (B,3,S,S)
        values.append(model.encode_keys(x))  # (B,N,D)
    model.bank.rebuild(torch.cat(values), model.key_fingerprint().to(device), source=torch.arange(n_faces, device=device))
    return save_checkpoint(path, model, bank_sources=[f"astronaut_{i:04d}.png" for i in range(n_faces)],
                           extra={"threshold": 0.5, "note": "bench/scan.py throwaway checkpoint"})


def write_video(path: Path, seconds: float, fps: float = 25.0, size: tuple[int, int] = (320, 240)) -> Path:
    """An mp4v video of the astronaut's head moving over a textured background, written frame by frame."""
    import cv2
    import numpy as np
    from skimage.data import astronaut

    w, h = size
    face = 150
    head = cv2.resize(astronaut()[20:240, 115:335], (face, face), interpolation=cv2.INTER_AREA)  # face box ~60x75
    head = cv2.cvtColor(head, cv2.COLOR_RGB2BGR)
    yy, xx = np.mgrid[0:h, 0:w]
    background = np.stack([(xx * 255 // w), (yy * 255 // h), ((xx + yy) * 127 // (w + h)) + 64], -1).astype(np.uint8)
    vw = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"mp4v"), fps, (w, h))
    if not vw.isOpened():
        raise RuntimeError("OpenCV cannot write mp4v video here")
    n = int(round(seconds * fps))
    span_x, span_y = w - face, h - face
    try:
        for i in range(n):
            frame = background.copy()
            x = int(span_x * (0.5 + 0.5 * np.sin(i / 40.0)))
            y = int(span_y * (0.5 + 0.5 * np.sin(i / 57.0)))
            frame[y : y + face, x : x + face] = head
            frame[0:8, :] = (i * 7) % 256  # a changing strip, so no two frames are identical
            vw.write(frame)
    finally:
        vw.release()
    return path


def _status_mb(field: str) -> float | None:
    """VmRSS / VmHWM of this process from /proc (Linux), in MiB."""
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith(field + ":"):
                return int(line.split()[1]) / 1024
    except OSError:
        pass
    return None


def child(args) -> None:
    """Scan one file in this process; print its record's figures and this process's peak RSS as JSON: the whole
    process's (ru_maxrss, loading included) and, where Linux allows resetting the high-water mark after
    loading (/proc/self/clear_refs), the peak during the scan alone."""
    from forgerydet.scan.config import ScanConfig
    from forgerydet.scan.scanner import Scanner

    scanner = Scanner(args.checkpoint, ScanConfig(num_frames=args.frames, device=args.device))
    loaded_peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # KiB on Linux -> MiB
    loaded_rss = _status_mb("VmRSS")
    try:
        Path("/proc/self/clear_refs").write_text("5")  # high-water mark := current RSS
        reset = True
    except OSError:
        reset = False
    rec = scanner.scan_file(Path(args.child))
    scan_peak = _status_mb("VmHWM") if reset else None
    peak = max(loaded_peak, resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024)
    print(json.dumps({"maxrss_mb": peak, "loaded_maxrss_mb": loaded_peak, "loaded_rss_mb": loaded_rss,
                      "scan_peak_rss_mb": scan_peak, "status": rec["status"], "error": rec["error"],
                      "frames_sampled": rec["frames_sampled"], "n_faces": rec["n_faces"], "timing": rec.get("timing")}))


def bench_timing(args, checkpoint: Path, log) -> tuple[list[dict], dict]:
    from forgerydet.runtime import native_bf16
    from forgerydet.scan.config import ScanConfig
    from forgerydet.scan.scanner import Scanner

    video = Path(args.video)
    if not video.is_file():
        msg = f"skipped: {video} not found"
        log(msg)
        return [figure("scan: total / (decode + detection)", None, "x", f"≤ {RATIO_TARGET}", note=msg)], {"skipped": msg}
    t0 = time.perf_counter()
    scanner = Scanner(checkpoint, ScanConfig(num_frames=args.frames, device=args.device, precision=args.precision))
    load_s = time.perf_counter() - t0
    scanners = {scanner.precision: scanner}
    fast = args.device.startswith("cuda") or native_bf16()
    if fast and "bf16" not in scanners and not args.no_bf16:  # the faster arithmetic beside it, same run
        scanners["bf16"] = Scanner(checkpoint, ScanConfig(num_frames=args.frames, device=args.device, precision="bf16"))
    records: dict[str, list[dict]] = {k: [] for k in scanners}

    def scan_once(key: str) -> None:
        rec = scanners[key].scan_file(video)
        if rec["status"] != "ok":
            raise RuntimeError(f"scan of {video} failed: {rec['status']} {rec['error']}")
        records[key].append(rec)

    interleaved({k: (lambda k=k: scan_once(k)) for k in scanners}, args.repeats, args.warmup, args.device)
    figs, detail = [], {"video": str(video), "frames": args.frames, "scanner_load_s": load_s,
                        "default_precision": scanner.precision}
    for key, recs in records.items():
        timed = recs[args.warmup :]
        parts = {k: median([r["timing"][k] for r in timed]) for k in ("decode_s", "detect_s", "model_s", "total_s")}
        ratio = parts["total_s"] / (parts["decode_s"] + parts["detect_s"])
        other = median([r["timing"]["total_s"] - r["timing"]["decode_s"] - r["timing"]["detect_s"]
                        - r["timing"]["model_s"] for r in timed])  # scoring aggregation, record building
        r0 = timed[0]
        label = "scan" if key == scanner.precision else f"scan --precision {key}"
        if key == scanner.precision:
            figs += [figure(f"scan {video.name}, {args.frames} frames: decode", parts["decode_s"], "s"),
                     figure(f"scan {video.name}: face detection (MTCNN)", parts["detect_s"], "s")]
        figs += [
            figure(f"{label} {video.name}: model + bank ({key})", parts["model_s"], "s",
                   note=f"{r0['n_faces']} faces, {r0['n_faces'] / max(parts['model_s'], 1e-9):.1f} faces/s"),
            figure(f"{label} {video.name}: total per video", parts["total_s"], "s",
                   note=f"aggregation etc. {other:.3f} s; video score {r0['score']:.3f}"),
            figure(f"{label}: total / (decode + detection)", ratio, "x", f"≤ {RATIO_TARGET}", ratio <= RATIO_TARGET),
        ]
        detail[key] = {"n_faces": r0["n_faces"], "frames_sampled": r0["frames_sampled"], "median": parts,
                       "ratio": ratio, "score": r0["score"], "all_timings": [r["timing"] for r in timed]}
    if len(records) == 1 and not fast:
        figs.append(figure("scan --precision bf16", None, "", note="not timed: this CPU has no bf16 instructions"))
    fold = encoder_fold(scanner, checkpoint, video, args)
    figs += fold["figures"]
    detail["batchnorm_fold"] = fold["detail"]
    return figs, detail


def encoder_fold(scanner, checkpoint: Path, video: Path, args) -> dict:
    """The scanner's encoder (BatchNorms folded into the convolutions, Encoder.fold_batchnorm) against the same
    checkpoint's encoder as stored, at the scanner's batch size, on the video's face crops, round-robin."""
    import torch

    from forgerydet.faces.pipeline import detect_source
    from forgerydet.model.checkpoint import load_checkpoint
    from forgerydet.model.inputs import resize_face, to_tensor

    model, bs = scanner.model, scanner.config.batch_size
    crops = [f.crop for f in detect_source(video, scanner.extract_config, scanner.detector).all_faces]
    if not crops:
        return {"figures": [], "detail": {}}
    plain = load_checkpoint(checkpoint, scanner.device).model.eval()
    x = torch.stack([to_tensor(resize_face(c, model.img_size)) for c in crops]).to(scanner.device)

    def run(m):
        with torch.inference_mode():
            for i in range(0, len(x), bs):
                m.encode(x[i : i + bs])

    times = interleaved({"stored": lambda: run(plain), "folded": lambda: run(model)}, args.repeats, args.warmup,
                        args.device)
    with torch.inference_mode():
        diff = (plain.encode(x) - model.encode(x)).abs().max().item()
    st, fo = median(times["stored"]), median(times["folded"])
    note = (f"{st:.3f} s -> {fo:.3f} s; {len(crops)} faces, {bs} a call; {scanner.folded_batchnorms} BatchNorms folded, "
            f"tokens differ by <= {diff:.1e}")
    return {"figures": [figure("scan: encoder with BatchNorm folded / as stored", st / fo, "x", note=note)],
            "detail": {"folded": scanner.folded_batchnorms, "batch": bs, "seconds": times, "max_token_diff": diff}}


def bench_rss(args, checkpoint: Path, tmp: Path, log) -> tuple[list[dict], dict]:
    out: dict[str, dict] = {}
    for label, seconds in (("short", args.short_seconds), ("long", args.long_seconds)):
        path = tmp / f"generated_{label}.mp4"
        t0 = time.perf_counter()
        write_video(path, seconds)
        gen_s = time.perf_counter() - t0
        log(f"wrote {seconds:g} s video ({path.stat().st_size / 2**20:.1f} MB) in {gen_s:.1f} s; scanning it in a subprocess")
        cmd = [sys.executable, str(Path(__file__).resolve()), "--child", str(path), "--checkpoint", str(checkpoint),
               "--frames", str(args.frames), "--device", args.device]
        if args.threads:
            cmd += ["--threads", str(args.threads)]
        p = subprocess.run(cmd, capture_output=True, text=True, env={**os.environ, "PYTHONWARNINGS": "ignore"})
        path.unlink(missing_ok=True)
        lines = [ln for ln in p.stdout.splitlines() if ln.startswith("{")]
        if p.returncode != 0 or not lines:
            raise RuntimeError(f"scan subprocess for the {label} video failed (exit {p.returncode}): "
                               f"{(p.stderr.strip().splitlines() or ['no output'])[-1]}")
        res = json.loads(lines[-1])
        if res["status"] != "ok":
            raise RuntimeError(f"the generated {label} video gave status {res['status']}: {res['error']}")
        res["seconds"] = seconds
        out[label] = res
    s, lg = out["short"], out["long"]
    diff = lg["maxrss_mb"] - s["maxrss_mb"]
    figs = [
        figure(f"scan process peak RSS, {args.short_seconds:g} s video", s["maxrss_mb"], "MB",
               note=f"loading the scanner peaked at {s['loaded_maxrss_mb']:.0f} MB"),
        figure(f"scan process peak RSS, {args.long_seconds / 60:g} min video", lg["maxrss_mb"], "MB",
               note=f"loading the scanner peaked at {lg['loaded_maxrss_mb']:.0f} MB; scan {lg['timing']['total_s']:.1f} s"),
        figure("scan process peak RSS: long - short video", diff, "MB", f"≤ {RSS_TARGET_MB:g} MB", abs(diff) <= RSS_TARGET_MB),
    ]
    scan_diff = None
    if s["scan_peak_rss_mb"] is not None and lg["scan_peak_rss_mb"] is not None:
        scan_diff = lg["scan_peak_rss_mb"] - s["scan_peak_rss_mb"]
        figs += [
            figure(f"peak RSS during the scan only, {args.short_seconds:g} s video", s["scan_peak_rss_mb"], "MB",
                   note=f"{s['loaded_rss_mb']:.0f} MB before the scan"),
            figure(f"peak RSS during the scan only, {args.long_seconds / 60:g} min video", lg["scan_peak_rss_mb"], "MB",
                   note=f"{lg['loaded_rss_mb']:.0f} MB before the scan"),
            figure("peak RSS during the scan: long - short video", scan_diff, "MB", f"≤ {RSS_TARGET_MB:g} MB",
                   abs(scan_diff) <= RSS_TARGET_MB),
        ]
    return figs, {"short": s, "long": lg, "difference_mb": diff, "scan_difference_mb": scan_diff}


def main() -> dict | None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0],
                                 formatter_class=argparse.RawDescriptionHelpFormatter, epilog=__doc__)
    ap.add_argument("--video", default=str(DEFAULT_VIDEO), help="video for the timing split (default: %(default)s)")
    ap.add_argument("--frames", type=int, default=32, help="frames sampled per video (default: %(default)s)")
    ap.add_argument("--repeats", type=int, default=3, help="timed scans (default: %(default)s)")
    ap.add_argument("--warmup", type=int, default=1, help="untimed scans first (default: %(default)s)")
    ap.add_argument("--checkpoint", default=None, help="checkpoint to scan with (default: build a throwaway one)")
    ap.add_argument("--bank-images", type=int, default=128, help="bank entries of the built checkpoint")
    ap.add_argument("--short-seconds", type=float, default=10.0, help="length of the short generated video")
    ap.add_argument("--long-seconds", type=float, default=600.0, help="length of the long generated video")
    ap.add_argument("--skip-timing", action="store_true", help="only the memory part")
    ap.add_argument("--skip-rss", action="store_true", help="only the timing part")
    ap.add_argument("--threads", type=int, default=None, help="torch CPU threads (default: torch's)")
    ap.add_argument("--device", default="cpu", help="cpu | cuda | cuda:N, for the model and MTCNN (default: %(default)s)")
    ap.add_argument("--precision", default=None, help="fp32 | bf16 | fp16: the main scan's arithmetic (default: as the "
                    "checkpoint was calibrated); a bf16 scan is timed beside it where the CPU has bf16 instructions or on a GPU")
    ap.add_argument("--no-bf16", action="store_true", help="time the main scan only")
    ap.add_argument("--json", action="store_true", help="print one JSON object (for bench/run_all.py)")
    ap.add_argument("--child", default=None, help=argparse.SUPPRESS)
    args = ap.parse_args()
    import torch

    if args.threads:
        torch.set_num_threads(args.threads)
    if args.child:
        child(args)
        return None
    if args.device.startswith("cuda") and not torch.cuda.is_available():
        ap.error(f"--device {args.device}: no CUDA GPU here")

    def log(msg: str) -> None:
        print(msg, file=sys.stderr if args.json else sys.stdout, flush=True)

    info = machine(args.device)
    if not args.json:
        print(f"{info['cpu']}, {info['cores']} cores, {info['torch_threads']} torch threads, device {args.device}, "
              f"load average {info['loadavg']}")
    res: dict = {"script": "scan", "machine": info}
    figs: list[dict] = []
    with tempfile.TemporaryDirectory(prefix="fdet_bench_scan_") as tmp_name:
        tmp = Path(tmp_name)
        if args.checkpoint:
            checkpoint = Path(args.checkpoint)
        else:
            t0 = time.perf_counter()
            checkpoint = build_checkpoint(tmp / "bench.safetensors", args.bank_images, args.device)
            log(f"built a throwaway checkpoint (default backbone, {args.bank_images} bank entries) in "
                f"{time.perf_counter() - t0:.1f} s")
        res["checkpoint"] = str(checkpoint) if args.checkpoint else f"built ({args.bank_images} bank entries)"
        if not args.skip_timing:
            f, d = bench_timing(args, checkpoint, log)
            figs += f
            res["timing"] = d
            if not args.json:
                print_figures(f)
        if not args.skip_rss:
            f, d = bench_rss(args, checkpoint, tmp, log)
            figs += f
            res["rss"] = d
            if not args.json:
                print_figures(f)
    return finish(res, figs, args.json, args.device)


if __name__ == "__main__":
    main()
