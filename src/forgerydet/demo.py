"""`make demo`: the whole job end to end on data this machine already has, with no download.

1. real faces: the real images of ../shared/data when present (CelebA, DFDC reals, photos), else the
   astronaut photo that ships with scikit-image and generated variations of it;
2. `forgerydet pairs --self-blend`: pseudo-fakes from those real faces alone;
3. `forgerydet train` twice, same data and settings: the packaged ImageNet-pretrained default backbone and
   the same backbone from random init, so the gain from pretraining is measured, not assumed;
4. `forgerydet rebuild-bank`, `forgerydet scan` (with JSON and an HTML report) on ../shared/data/videos
   (or a generated real video and a self-blended fake of it), `forgerydet evaluate` at video level on those
   videos and at frame level on ../shared/data/faces/ffpp (20 real, 20 fake FF++ crops);
5. a summary of both runs. The demo's models stay in demo_out/: the shipped default model
   (models/forgerydet-base.safetensors) is never overwritten.

Every step runs the real `forgerydet` command (printed before it runs), as a user would.
The shared samples are used for evaluation only where they are never trained on: the videos and the FF++
crops are held out, training uses other people.
"""

from __future__ import annotations

import argparse
import contextlib
import csv
import json
import os
import shlex
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import cv2
import numpy as np

from forgerydet.errors import ForgeryDetError
from forgerydet.paths import folder_held
from forgerydet.runtime import sigterm_as_interrupt

REPO = Path(__file__).resolve().parents[2]


def find_shared() -> Path | None:
    for p in (os.environ.get("FORGERYDET_SHARED_DATA"), REPO.parent / "shared" / "data", Path.cwd().parent / "shared" / "data"):
        if p and Path(p, "README.md").is_file():
            return Path(p)
    return None


def say(msg: str) -> None:
    """A step heading, bold on a terminal; plain where the output goes to a log file (no escape codes in it)."""
    bold, plain = ("\033[1m", "\033[0m") if sys.stdout.isatty() and os.environ.get("NO_COLOR") is None else ("", "")
    print(f"\n{bold}== {msg}{plain}", flush=True)


def run(args: list[str], allow_fail: bool = False) -> int:
    cmd = ["forgerydet", *args]
    print("$ " + " ".join(shlex.quote(c) for c in cmd), flush=True)
    step = subprocess.Popen([sys.executable, "-m", "forgerydet", *args])
    try:
        rc = step.wait()
    except KeyboardInterrupt:
        stop(step)
        raise KeyboardInterrupt(f"interrupted during `{' '.join(cmd[:2])}`") from None
    if rc and not allow_fail:
        raise SystemExit(f"demo: step failed (exit {rc}): {' '.join(cmd)}")
    return rc


def stop(step: subprocess.Popen) -> None:
    """The step running when the demo got Ctrl-C or SIGTERM. A terminal's Ctrl-C (or `timeout`) reaches it too, and
    it ends as it does alone, saying what it kept (subprocess.call killed it a quarter second later, mid-sentence);
    one still running after 10 s did not get it (the demo alone was signalled) and is sent Ctrl-C. A second Ctrl-C
    kills it."""
    try:
        try:
            step.wait(timeout=10)
        except subprocess.TimeoutExpired:
            step.send_signal(signal.SIGINT)
            step.wait()
    except KeyboardInterrupt:
        step.kill()
        step.wait()


def evaluation(folder: Path) -> dict:
    """The metrics.json an evaluate step wrote into `folder` (emptied before it ran); none: the step failed."""
    if not (folder / "metrics.json").is_file():
        raise SystemExit(f"demo: the evaluation wrote no {folder / 'metrics.json'} (its error is above)")
    return json.loads((folder / "metrics.json").read_text())


def write_list(path: Path, rows: list[tuple[Path, int, str]]) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["path", "label", "group"])
        for p, y, g in rows:
            w.writerow([str(p.resolve()), y, g])
    return path


def generated_material(out: Path) -> tuple[list[Path], list[tuple[Path, int, str]]]:
    """No shared data: the astronaut photo, variations of it as training reals, and a real video plus a
    self-blended fake video of it for scanning."""
    try:
        from skimage.data import astronaut
    except ImportError:  # a test extra (`make install` has it), not a dependency: `pip install .` lacks it
        raise SystemExit("demo: no shared data here (../shared/data, or set FORGERYDET_SHARED_DATA), and the faces "
                         "generated instead come from scikit-image's astronaut photo, which is not installed: "
                         "pip install scikit-image (`make install` installs it)") from None

    from forgerydet.faces.detect import DetectorConfig, FaceDetector
    from forgerydet.faces.media import Frame
    from forgerydet.pairs.sbi import self_blend

    photo = astronaut()
    reals_dir = out / "generated_reals"
    reals_dir.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(0)
    sources = []
    for i in range(24):
        img = photo.copy()
        if i % 2:
            img = img[:, ::-1]
        s = rng.uniform(0.8, 1.1)
        img = cv2.resize(img, None, fx=s, fy=s, interpolation=cv2.INTER_AREA)
        img = np.clip(img.astype(np.float32) * rng.uniform(0.7, 1.2) + rng.uniform(-20, 20), 0, 255).astype(np.uint8)
        p = reals_dir / f"astronaut_{i:02d}.png"
        cv2.imwrite(str(p), cv2.cvtColor(np.ascontiguousarray(img), cv2.COLOR_RGB2BGR))
        sources.append(p)
    # a real and a fake video: the photo drifting; the fake has a self-blended face pasted back
    face = FaceDetector(DetectorConfig(device="cpu", margin=0.3, size=224)).faces([Frame(0, 0.0, photo)])[0][0]
    x1, y1, x2, y2 = [int(round(v)) for v in face.crop_box]
    fake_crop, _ = self_blend(face.crop, face.landmarks_crop, np.random.default_rng(1))
    fake_photo = photo.copy()
    h, w = photo.shape[:2]
    region = cv2.resize(fake_crop, (x2 - x1, y2 - y1), interpolation=cv2.INTER_AREA)
    sx1, sy1, sx2, sy2 = max(0, x1), max(0, y1), min(w, x2), min(h, y2)
    fake_photo[sy1:sy2, sx1:sx2] = region[sy1 - y1 : sy2 - y1, sx1 - x1 : sx2 - x1]
    videos = []
    for name, img, label in (("generated_real.mp4", photo, 0), ("generated_fake.mp4", fake_photo, 1)):
        path = out / "videos" / name
        path.parent.mkdir(parents=True, exist_ok=True)
        vw = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"mp4v"), 25, (384, 384))
        for t in range(50):
            dx, dy = int(20 * np.sin(t / 8)), int(10 * np.cos(t / 11))
            frame = img[64 + dy : 448 + dy, 64 + dx : 448 + dx]
            vw.write(cv2.cvtColor(np.ascontiguousarray(frame), cv2.COLOR_RGB2BGR))
        vw.release()
        videos.append((path, label, "generated"))
    return sources, videos


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--out", type=Path, default=Path("demo_out"))
    ap.add_argument("--epochs", type=int, default=20)
    ap.add_argument("--img-size", type=int, default=224)
    ap.add_argument("--batch-size", type=int, default=16)
    ap.add_argument("--frames", type=int, default=16, help="frames sampled per video when scanning")
    ap.add_argument("--no-random-baseline", action="store_true", help="skip the random-init comparison run")
    args = ap.parse_args()
    out: Path = args.out
    # held for the whole demo: two at once in one clone replaced each other's pairs, runs and scores, and the
    # second one's clean-up deleted the evaluation folder the first one was writing
    with contextlib.ExitStack() as held:
        try:
            held.enter_context(folder_held(out, "--out", "demo"))
        except ForgeryDetError as e:
            raise SystemExit(f"demo: {e}") from None
        _demo(args, out)


def _demo(args: argparse.Namespace, out: Path) -> None:
    t0 = time.time()
    shared = find_shared()

    say("1. real training faces")
    if shared:
        print(f"shared samples found at {shared}: training on their real faces of OTHER people; "
              "the three anchor videos and the FF++ crops are held out for evaluation")
        sources = sorted((shared / "faces" / "celeba_stargan").glob("*_real.png")) + sorted(
            (shared / "faces" / "dfdc" / "real").glob("*.png")) + sorted((shared / "photos").glob("*.*"))
        videos = [(p, 0 if "real" in p.stem else 1, "anchor") for p in sorted((shared / "videos").glob("anchor_*.mp4"))]
        ffpp = sorted((shared / "faces" / "ffpp").glob("*.png"))
        ffpp_rows = [(p, 0 if p.stem.endswith("_real") else 1, "ffpp") for p in ffpp]
    else:
        print("no ../shared/data here: using the astronaut photo (scikit-image) and generated variations")
        sources, videos = generated_material(out)
        ffpp_rows = []
    print(f"{len(sources)} real source images")

    say("2. self-blended pairs from real faces only")
    pairs_dir = out / "pairs"
    run(["pairs", "--self-blend", *map(str, sources), "--out", str(pairs_dir), "--val", "0.25", "--seed", "0",
         "--overwrite"])  # the demo remakes its own
    pairs_csv = pairs_dir / "pairs.csv"

    runs = {"pretrained": "auto"} if args.no_random_baseline else {"pretrained": "auto", "random-init": "none"}
    video_list = write_list(out / "lists" / "videos.csv", videos)
    ffpp_list = write_list(out / "lists" / "ffpp_faces.csv", ffpp_rows) if ffpp_rows else None
    summary: dict[str, dict] = {}
    for name, weights in runs.items():
        say(f"3. train ({name}: --pretrained {weights})")
        run_dir = out / "models" / name
        run(["train", "--pairs", str(pairs_csv), "--out", str(run_dir), "--pretrained", weights,
             "--img-size", str(args.img_size), "--epochs", str(args.epochs), "--batch-size", str(args.batch_size),
             "--lr", "5e-4", "--bank-size", "4096", "--device", "cpu", "--overwrite"])  # the demo remakes its own runs
        ck = run_dir / "best.safetensors"
        hist = [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()]
        best = max(hist, key=lambda h: h["val_auc"])
        res: dict = {"checkpoint": str(ck), "val_auc_single": best["val_auc"], "val_auc_pair": best["val_auc_pair"],
                     "best_epoch": best["epoch"]}
        if name == "pretrained":
            say("4. rebuild the bank explicitly (the same code as the epoch-end rebuild)")
            run(["rebuild-bank", "--checkpoint", str(ck), "--pairs", str(pairs_csv), "--device", "cpu"])
            say("5. scan the videos, with JSON and an HTML report")
            run(["scan", *[str(v[0]) for v in videos], "--checkpoint", str(ck), "--frames", str(args.frames),
                 "--device", "cpu", "--json", str(out / "scan.json"), "--report", str(out / "report")], allow_fail=True)
        say(f"6. evaluate ({name})")
        ev_v = out / "eval" / name / "videos"
        for old in (ev_v, out / "eval" / name / "ffpp_faces"):  # the demo remakes its own: an interrupted earlier
            shutil.rmtree(old, ignore_errors=True)  # run's scores there are refused by evaluate, then were read back
        # evaluate exits 1 when a file was skipped (no face), yet writes metrics.json for the rest
        run(["evaluate", str(video_list), "--checkpoint", str(ck), "--frames", str(args.frames), "--device", "cpu",
             "--out", str(ev_v)], allow_fail=True)
        m = evaluation(ev_v)
        res["video_auc_videos"] = m["video_level"]["overall"].get("auc")
        res["frame_auc_videos"] = m["frame_level"]["overall"].get("auc")
        res["video_scores"] = {Path(f["path"]).name: round(f["score"], 4) for f in m["files"]}
        if ffpp_list:
            ev_f = out / "eval" / name / "ffpp_faces"
            run(["evaluate", str(ffpp_list), "--checkpoint", str(ck), "--crops", "--device", "cpu", "--out", str(ev_f)],
                allow_fail=True)
            mf = evaluation(ev_f)
            res["frame_auc_ffpp"] = mf["frame_level"]["overall"].get("auc")
            res["acc_ffpp"] = mf["frame_level"]["overall"].get("accuracy")
        summary[name] = res

    say(f"summary (demo took {(time.time() - t0) / 60:.1f} min)")
    cols = [("val AUC single", "val_auc_single"), ("val AUC pair", "val_auc_pair"),
            ("video AUC (3 anchor videos)" if shared else "video AUC (generated)", "video_auc_videos"),
            ("frame AUC (video faces)", "frame_auc_videos")]
    if ffpp_list:
        cols += [("frame AUC FF++ crops (20/20)", "frame_auc_ffpp"), ("accuracy FF++ crops", "acc_ffpp")]
    width = max(len(c[0]) for c in cols)
    print(f"{'':{width}}  " + "  ".join(f"{n:>12}" for n in summary))
    for label, key in cols:
        vals = [summary[n].get(key) for n in summary]
        print(f"{label:{width}}  " + "  ".join(f"{v:12.3f}" if isinstance(v, float) else f"{'-':>12}" for v in vals))
    for n, r in summary.items():
        print(f"{n}: per-video fake probability {r['video_scores']}")
    (out / "summary.json").write_text(json.dumps(summary, indent=1))
    print(f"\noutputs: pairs {pairs_csv} | models {out / 'models'} | scan JSON {out / 'scan.json'} | "
          f"report {out / 'report' / 'index.html'} | evaluations {out / 'eval'} | summary {out / 'summary.json'}")
    print("A model trained for minutes on a CPU from a few dozen self-blended faces is a demonstration, not a "
          "detector to trust: see README 'Getting real accuracy'.")


def cli() -> None:
    """`make demo`: main, with Ctrl-C or SIGTERM told in one line and exit code 130, as the CLI's commands do."""
    sigterm_as_interrupt()  # SIGTERM (`timeout`, a scheduler) stops the demo as Ctrl-C does, as it stops the CLI
    try:
        main()
    except KeyboardInterrupt as e:
        sys.stderr.write(f"demo: {str(e) or 'interrupted'}; `make demo` again starts over (each step remakes its outputs "
                         f"in demo_out/)\n")
        sys.exit(130)


if __name__ == "__main__":
    cli()
