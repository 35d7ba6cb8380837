"""Helpers shared by the bench scripts: machine description, load average, timing with medians, the
`figures` list every script prints with `--json`, and astronaut-derived face images.

A figure is a dict: name, value (float or None when not measured), unit, target (text such as "≥ 0.6"),
ok (True / False, or None when there is no target or no value), note (optional text).
bench/run_all.py reads the `figures` list of each script's JSON object.
"""

from __future__ import annotations

import json
import os
import platform
import statistics
import sys
import time
from pathlib import Path
from typing import Any, Callable

import numpy as np

from forgerydet.errors import ForgeryDetError
from forgerydet.runtime import tune_malloc

# Every bench runs PyTorch as the forgerydet CLI does, which sets this at start-up: without it glibc maps and unmaps
# each large buffer, and PyTorch on a CPU ran up to ~2x slower here (bench/heatmaps.py --occlusion: 16 -> 6.5 min).
tune_malloc()


def one_line_errors(kind: type, error: BaseException, tb: Any) -> None:
    """sys.excepthook of every bench: a user's mistake the library names (a checkpoint or video not found, a
    pairs.csv of other columns) is one line on stderr, as the CLI prints it, not a traceback; exit code 1."""
    if isinstance(error, ForgeryDetError):
        sys.stderr.write(f"error: {error}\n")
    else:
        sys.__excepthook__(kind, error, tb)


sys.excepthook = one_line_errors

REPO = Path(__file__).resolve().parents[1]
SHARED_DATA = Path(os.environ.get("FORGERYDET_SHARED_DATA", REPO.parent / "shared" / "data"))  # ../shared/data


def cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def loadavg() -> list[float] | None:
    try:
        return [round(v, 2) for v in os.getloadavg()]
    except OSError:
        return None


def machine(device: str = "cpu") -> dict[str, Any]:
    import torch

    info: dict[str, Any] = {
        "cpu": cpu_model(),
        "cores": os.cpu_count(),
        "torch_threads": torch.get_num_threads(),
        "torch": torch.__version__,
        "device": device,
        "loadavg": loadavg(),
    }
    tuning = {k: v for k, v in os.environ.items() if k.startswith("MALLOC_") or k in ("GLIBC_TUNABLES", "LD_PRELOAD", "OMP_NUM_THREADS")}
    if tuning:
        info["env"] = tuning  # allocator / thread settings change these figures a lot: say so
    if device.startswith("cuda") and torch.cuda.is_available():
        info["gpu"] = torch.cuda.get_device_name(torch.device(device))
    return info


def sync(device: str) -> None:
    """Wait for queued GPU work, so wall-clock timings are real (no-op on CPU)."""
    if device.startswith("cuda"):
        import torch

        torch.cuda.synchronize()


def timed(fn: Callable[[], Any], device: str = "cpu") -> tuple[float, float]:
    """(wall seconds, process CPU seconds) of one call of fn, queued GPU work included. CPU seconds add up the
    time of all this process's threads, so they grow less than wall time when other processes share the cores."""
    sync(device)
    t0, c0 = time.perf_counter(), time.process_time()
    fn()
    sync(device)
    return time.perf_counter() - t0, time.process_time() - c0


def interleaved(fns: dict[str, Callable[[], Any]], repeats: int, warmup: int, device: str = "cpu",
                cpu: dict[str, list[float]] | None = None) -> dict[str, list[float]]:
    """Wall seconds of each function over `repeats` rounds after `warmup` untimed rounds, run round-robin (the
    order rotates each round) so that a load change on a shared machine hits every variant alike.
    CPU seconds go into `cpu` when a dict is given."""
    names = list(fns)
    times: dict[str, list[float]] = {n: [] for n in names}
    for r in range(warmup + repeats):
        order = names[r % len(names):] + names[: r % len(names)]
        for n in order:
            wall, proc = timed(fns[n], device)
            if r >= warmup:
                times[n].append(wall)
                if cpu is not None:
                    cpu.setdefault(n, []).append(proc)
    return times


def median(xs: list[float]) -> float:
    return float(statistics.median(xs))


def figure(name: str, value: float | None, unit: str = "", target: str = "", ok: bool | None = None,
           note: str = "") -> dict[str, Any]:
    return {"name": name, "value": None if value is None else float(value), "unit": unit, "target": target,
            "ok": None if (ok is None or value is None) else bool(ok), "note": note}


def fmt_value(v: float | None, unit: str = "") -> str:
    if v is None:
        return "—"
    a = abs(v)
    s = f"{v:,.0f}" if a >= 1000 else f"{v:.1f}" if a >= 100 else f"{v:.2f}" if a >= 1 else f"{v:.3f}"
    return f"{s} {unit}".strip()


def verdict(ok: bool | None) -> str:
    return "n/a" if ok is None else "PASS" if ok else "FAIL"


def print_figures(figures: list[dict[str, Any]]) -> None:
    """One human-readable line per figure, target next to it."""
    width = max((len(f["name"]) for f in figures), default=0)
    for f in figures:
        target = f"target {f['target']}  {verdict(f['ok'])}" if f["target"] else ""
        note = f"  ({f['note']})" if f.get("note") else ""
        print(f"{f['name']:<{width}}  {fmt_value(f['value'], f['unit']):>14}   {target}{note}")


def astronaut_faces(n: int, size: int = 224, seed: int = 0) -> list[np.ndarray]:
    """n distinct RGB uint8 (size,size,3) face crops derived from skimage's astronaut photo: random shifts,
    scales, flips, brightness/contrast and noise around the head, with crop margin as `extract` writes."""
    import cv2
    from skimage.data import astronaut

    photo = astronaut()  # (512,512,3); the face box is about x 160-250, y 60-170
    rng = np.random.default_rng(seed)
    out = []
    for _ in range(n):
        side = int(rng.integers(190, 250))
        cx, cy = 225 + int(rng.integers(-12, 13)), 125 + int(rng.integers(-12, 13))
        x0, y0 = max(0, cx - side // 2), max(0, cy - side // 2)
        crop = photo[y0 : y0 + side, x0 : x0 + side]
        crop = cv2.resize(crop, (size, size), interpolation=cv2.INTER_AREA)
        if rng.random() < 0.5:
            crop = crop[:, ::-1]
        gain, bias = rng.uniform(0.8, 1.2), rng.uniform(-20, 20)
        noise = rng.normal(0, 4, crop.shape)
        out.append(np.clip(crop.astype(np.float32) * gain + bias + noise, 0, 255).astype(np.uint8))
    return out


def finish(res: dict[str, Any], figures: list[dict[str, Any]], as_json: bool, device: str = "cpu") -> dict[str, Any]:
    """Close a bench script's run: attach its figures and the load average, print JSON or the load line."""
    res["figures"] = figures
    res["loadavg_end"] = machine(device)["loadavg"]
    if as_json:
        print(json.dumps(res))
    else:
        print(f"load average at the end: {res['loadavg_end']}")
    return res


def checkpoints_and_pairs_args(doc: str, n: int, n_help: str, rows_help: str = "", flags: dict[str, str] | None = None):
    """The command line of the benches that score CHECKPOINT ... on the held-out real faces of a pairs.csv
    (shortcuts.py, local_blends.py, heatmaps.py): checkpoints, --pairs (checked to exist), --n, --seed, --json;
    --only TEXT where rows_help is given; a store_true option per `flags` entry (option: help)."""
    import argparse
    import sys

    ap = argparse.ArgumentParser(description=doc.split("\n\n")[0])
    ap.add_argument("checkpoints", nargs="+")
    ap.add_argument("--pairs", type=Path, required=True, help="pairs.csv whose 'val' split was never trained on")
    ap.add_argument("--n", type=int, default=n, help=n_help)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--json", action="store_true")
    if rows_help:
        ap.add_argument("--only", default="", metavar="TEXT", help=rows_help)
    for option, text in (flags or {}).items():
        ap.add_argument(option, action="store_true", help=text)
    args = ap.parse_args()
    if not args.pairs.is_file():
        sys.exit(f"{args.pairs} not found: give the pairs.csv of held-out real faces (`make shipped-calib` writes one "
                 "for the shipped file, `make model-data` for a retrain)")
    return args


def crop_scores(list_csv: Path, checkpoint: str) -> dict[str, Any]:
    """An evaluate list of face crops scored as `evaluate --crops` scores them (the checkpoint's calibrated
    probability): {'real': (n,), 'fake': (m,) scores, 'fake_groups': (m,) the fakes' groups, 'threshold', 'auc'};
    exits if a listed face was skipped."""
    import sys

    from forgerydet.scan.config import ScanConfig
    from forgerydet.scan.evaluate import evaluate

    r = evaluate(list_csv, checkpoint, config=ScanConfig(device="cpu"), crops=True)
    if r["skipped"]:
        sys.exit(f"{len(r['skipped'])} faces were skipped, e.g. {r['skipped'][0]['error']}")
    by = {lab: np.array([f["score"] for f in r["files"] if f["label"] == lab]) for lab in (0, 1)}
    fake_groups = np.array([f["group"] for f in r["files"] if f["label"] == 1])
    return {"real": by[0], "fake": by[1], "fake_groups": fake_groups, "threshold": r["threshold"],
            "auc": r["frame_level"]["overall"].get("auc")}


def val_rows(pairs_csv: Path, n: int, seed: int, has: str, missing: str) -> list[Any]:
    """n 'val' rows of pairs_csv whose field `has` ('landmarks', 'fake') is set, drawn at random (seeded) and kept
    in file order: the held-out faces the shortcut, local-blend and heatmap benches use. Exits with
    '{pairs_csv}: {missing}' when there is none."""
    import sys

    from forgerydet.pairs.table import read_pairs

    table = read_pairs(pairs_csv, need_splits=("val",))
    rows = [r for r in table.rows if r.split == "val" and getattr(r, has) is not None]
    if not rows:
        sys.exit(f"{pairs_csv}: {missing}")
    pick = np.random.default_rng(seed).permutation(len(rows))[:n]
    return [rows[i] for i in sorted(pick)]


def val_faces(pairs_csv: Path, n: int, seed: int, groups: bool = False) -> list[tuple]:
    """(real crop, its 5 landmarks in crop pixels[, its group]) of n 'val' rows at random (seeded): the held-out
    faces that local_blends.py and heatmaps.py blend."""
    rows = val_rows(pairs_csv, n, seed, "landmarks",
                    "no 'val' rows with landmarks (make the pairs with `pairs --self-blend --val ...`)")
    return [(r.real, r.landmarks, r.group) if groups else (r.real, r.landmarks) for r in rows]
