"""`forgerydet scan`: verdicts for videos, images and folders."""

from __future__ import annotations

import csv
import io
import json
import time
from pathlib import Path
from typing import Annotated, Optional

import typer
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

from . import __version__
from .atomic import write_text_atomic
from .cli_common import console, err_console, fail, user_errors

CSV_COLUMNS = ["path", "status", "verdict", "score", "threshold", "n_faces", "n_tracks", "frames_sampled",
               "frames_with_face", "error"]


def scan(
    paths: Annotated[list[str], typer.Argument(help="Videos, images, folders or glob patterns.")],
    checkpoint: Annotated[Optional[Path], typer.Option(help="Checkpoint (default: models/default.safetensors or $FORGERYDET_MODEL).")] = None,
    frames: Annotated[int, typer.Option(help="Frames sampled evenly per video.")] = 32,
    aggregation: Annotated[str, typer.Option(help="mean | max-then-mean (SBI) | confident (DFDC winner) | track-max.")] = "max-then-mean",
    threshold: Annotated[Optional[float], typer.Option(help="Fake-probability threshold (default: the checkpoint's).")] = None,
    device: Annotated[str, typer.Option(help="'auto', 'cpu', 'cuda' or 'cuda:N'.")] = "auto",
    batch_size: Annotated[int, typer.Option(help="Faces per model call.")] = 32,
    detect_side: Annotated[int, typer.Option(help="Longest side of the copy MTCNN runs on.")] = 640,
    min_confidence: Annotated[float, typer.Option(help="Least MTCNN confidence for a face.")] = 0.9,
    json_out: Annotated[Optional[Path], typer.Option("--json", help="Write per-file, per-track and per-frame scores as JSON.")] = None,
    csv_out: Annotated[Optional[Path], typer.Option("--csv", help="Write one row per file as CSV.")] = None,
    report: Annotated[Optional[Path], typer.Option(help="Write an HTML report (with PNGs) into this folder.")] = None,
    reference: Annotated[Optional[str], typer.Option(help="Compare with this enrolled person's real faces (see `forgerydet enroll`) instead of the global bank.")] = None,
    references: Annotated[Optional[Path], typer.Option(help="Reference file of --reference (default: CHECKPOINT.refs.safetensors beside the model).")] = None,
    bank: Annotated[Optional[Path], typer.Option(help="A disk bank folder (from `rebuild-bank --disk-bank`) to use instead of the checkpoint's bank.")] = None,
) -> None:
    """Score every face in 'single' mode against the checkpoint's bank (or an enrolled person's faces); print a
    verdict per file."""
    from .detect import DetectorConfig
    from .scan import ScanConfig, Scanner, json_record

    t_start = time.perf_counter()
    with user_errors():
        det = DetectorConfig(detect_side=detect_side, min_confidence=min_confidence)
        cfg = ScanConfig(num_frames=frames, aggregation=aggregation, threshold=threshold, batch_size=batch_size,
                         device=device, keep_crops=24 if report else 0, detector=det, reference=reference,
                         references=str(references) if references else None, bank=str(bank) if bank else None)
        scanner = Scanner(checkpoint, cfg)
        settings = scanner.settings()
        results = []
        with Progress(TextColumn("[bold]scanning"), BarColumn(), MofNCompleteColumn(), TextColumn("{task.fields[name]}"),
                      TimeElapsedColumn(), console=console, transient=True) as p:
            task = p.add_task("scan", total=None, name="")
            for rec in scanner.scan(paths, progress=lambda i, n, name: p.update(task, completed=i, total=n, name=Path(name).name)):
                results.append(rec)
                if rec["status"] != "ok":
                    err_console.print(f"[red]{Path(rec['path']).name}:[/] {rec['error']}", highlight=False, soft_wrap=True)
    compared = (f"reference {settings['reference']!r}: {settings['reference_faces']} enrolled faces from "
                f"{settings['reference_file']} (fingerprint {settings['reference_fingerprint']})" if reference else
                f"bank {settings['bank_entries']} real faces, fingerprint {settings['bank_fingerprint']}")
    console.print(f"checkpoint {settings['checkpoint']} ({settings['backbone']}, weights {settings['pretrained_weights']}, "
                  f"{compared}); aggregation {settings['aggregation']}, threshold {settings['threshold']:.2f}", highlight=False)
    console.print(_table(results, reference=bool(reference)))
    settings["seconds"] = round(time.perf_counter() - t_start, 3)
    with user_errors():
        if json_out:
            doc = {"forgerydet_version": __version__, "settings": settings, "files": [json_record(r) for r in results]}
            write_text_atomic(json_out, json.dumps(doc, indent=1))
            console.print(f"JSON: {json_out}")
        if csv_out:
            buf = io.StringIO()
            w = csv.DictWriter(buf, fieldnames=CSV_COLUMNS, extrasaction="ignore")
            w.writeheader()
            w.writerows(results)
            write_text_atomic(csv_out, buf.getvalue())
            console.print(f"CSV: {csv_out}")
        if report:
            from .report import write_report

            index = write_report(results, report, settings)
            console.print(f"report: {index}")
    failed = [r for r in results if r["status"] != "ok"]
    if failed:
        raise fail(f"{len(failed)} of {len(results)} file(s) got no verdict (see above)")


def _enrolled_used(r: dict, n: int = 2) -> str:
    """The enrolled faces a file was compared with most, with their mean similarity: 'd0.mp4 f12 0.83 (x9)'."""
    used = (r.get("reference") or {}).get("used") or []
    return ", ".join(f"{Path(u['source']).name} f{u['frame_index']} {u['mean_similarity']:.2f} x{u['times']}"
                     for u in used[:n]) + (f" +{len(used) - n} more" if len(used) > n else "")


def _table(results: list[dict], reference: bool = False) -> Table:
    t = Table(title="forgerydet scan", title_justify="left")
    t.add_column("file", overflow="fold", min_width=16, ratio=1)
    t.add_column("verdict", justify="center", min_width=7)
    t.add_column("p(fake)", justify="right", min_width=7)
    t.add_column("faces/tracks", justify="right")
    t.add_column("frames", justify="right", min_width=6)
    t.add_column("note", max_width=16, overflow="fold")
    if reference:
        t.add_column("nearest enrolled (sim)", overflow="fold", ratio=1)
    for r in results:
        more = [_enrolled_used(r)] if reference else []
        counts = (f"{r['n_faces']}/{r['n_tracks']}", f"{r['frames_with_face']}/{r['frames_sampled']}")
        if r["status"] == "ok":
            colour = "red" if r["verdict"] == "FAKE" else "green"
            t.add_row(Path(r["path"]).name, f"[bold {colour}]{r['verdict']}[/]", f"{r['score']:.3f}", *counts, "", *more)
        elif r["status"] == "no_face":
            t.add_row(Path(r["path"]).name, "[yellow]none[/]", "-", *counts, "no face found", *more)
        else:
            t.add_row(Path(r["path"]).name, "[red]error[/]", "-", *counts, "unreadable, see above", *more)
    return t


def register(app: typer.Typer) -> None:
    app.command()(scan)
