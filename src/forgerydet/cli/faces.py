"""Commands `extract` (face crops + faces.csv) and `pairs` (pairs.csv for training)."""

from __future__ import annotations

from contextlib import contextmanager
from pathlib import Path
from typing import Annotated, Iterator, Optional

import typer
from rich.markup import escape
from rich.progress import BarColumn, MofNCompleteColumn, TextColumn, TimeElapsedColumn, TimeRemainingColumn
from rich.table import Table

from forgerydet.cli.common import (
    End,
    Start,
    console,
    err_console,
    fail,
    note,
    progress_bar,
    say,
    say_swept,
    table_or_lines,
    typed_options,
    user_errors,
)
from forgerydet.errors import ForgeryDetError, WriteError, printable
from forgerydet.faces.detect import DetectorConfig
from forgerydet.pairs.selfblend import BlendOptions
from forgerydet.pairs.table import TEST_SHARE, VAL_SHARE

Frames = Annotated[Optional[int], typer.Option("--frames", help="Frames sampled evenly per video (default 32).")]
Every = Annotated[Optional[int], typer.Option("--every", help="Sample every n-th frame instead.")]
Fps = Annotated[Optional[float], typer.Option("--fps", help="Sample this many frames per second of video instead.")]
Size = Annotated[int, typer.Option("--size", help="Face crop side in pixels.")]
Margin = Annotated[float, typer.Option("--margin", help="Crop side = (1 + margin) x the face box's longer side.")]
DetectSide = Annotated[int, typer.Option("--detect-side", help="MTCNN runs on a copy downscaled to this longest side.")]
MinConf = Annotated[float, typer.Option("--min-confidence", help="Drop faces MTCNN is less sure of.")]
MinFace = Annotated[int, typer.Option("--min-face", help="Drop faces whose box is smaller (full-resolution pixels).")]
Device = Annotated[str, typer.Option("--device", help="Torch device for MTCNN: cpu, cuda, cuda:1 ...")]
BatchSize = Annotated[int, typer.Option("--batch-size", help="Frames per MTCNN call.")]
Out = Annotated[Path, typer.Option("--out", "-o", readable=False, help="Output folder.")]
Deinterlace = Annotated[bool, typer.Option("--deinterlace/--no-deinterlace", help="Deinterlace video frames that show interlacing combing (one field kept); --no-deinterlace: frames as stored.")]


def _config(frames, every, fps, size, margin, detect_side, min_confidence, min_face, device, batch_size, deinterlace,
            start=None, end=None):
    from forgerydet.faces.detect import DetectorConfig
    from forgerydet.faces.pipeline import ExtractConfig
    from forgerydet.faces.segment import parse_time

    det = DetectorConfig(
        detect_side=detect_side, min_confidence=min_confidence, min_face=min_face, margin=margin,
        size=size, batch_size=batch_size, device=device,
    )  # fmt: skip
    return ExtractConfig(num_frames=frames, every=every, fps=fps, detector=det, deinterlace=deinterlace,
                         start=parse_time(start, "--start"), end=parse_time(end, "--end"))


@contextmanager
def _progress(label: str) -> Iterator:
    bar = progress_bar(TextColumn(f"[bold]{label}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
                       TimeRemainingColumn(), on=err_console)
    with bar:
        task = bar.add_task(label, total=None)
        yield lambda done, total, item="": bar.update(task, completed=done, total=total)


@contextmanager
def _said_if_stopped(message: str, full: str = "") -> Iterator[None]:
    """Ctrl-C or SIGTERM inside: the interrupted line says what was kept and how to go on (user_errors prints it);
    an output that could not be written (a full disk), with `full` after it where that says how to go on."""
    try:
        yield
    except KeyboardInterrupt:
        raise KeyboardInterrupt(message) from None
    except WriteError as e:
        if not full:
            raise
        raise WriteError(f"{e}; {full}") from None


def _report_errors(errors: list[tuple[str, str]], total_label: str) -> None:
    if errors:
        for _, msg in errors:
            note("failed:", msg)
        raise fail(f"{len(errors)} {total_label} failed (listed above); everything else was done")


def extract_cmd(
    sources: Annotated[list[Path], typer.Argument(readable=False, help="Videos, images, folders (searched recursively) or globs.")],
    out: Out,
    frames: Frames = None,
    every: Every = None,
    fps: Fps = None,
    size: Size = DetectorConfig.size,
    margin: Margin = DetectorConfig.margin,
    detect_side: DetectSide = DetectorConfig.detect_side,
    min_confidence: MinConf = DetectorConfig.min_confidence,
    min_face: MinFace = DetectorConfig.min_face,
    device: Device = DetectorConfig.device,
    batch_size: BatchSize = DetectorConfig.batch_size,
    deinterlace: Deinterlace = True,
    start: Start = None,
    end: End = None,
) -> None:
    """Detect faces, write PNG crops and OUT/faces.csv. Re-running into the same folder skips finished files."""
    from forgerydet.faces.index import extract

    with user_errors():
        config = _config(frames, every, fps, size, margin, detect_side, min_confidence, min_face, device, batch_size,
                         deinterlace, start, end)
        say_swept(out, "parts", "crops/*")  # what a killed run left: a crop's, a part's or faces.csv's temp file
        with _progress("extract") as progress, _said_if_stopped(
                "interrupted: the files finished so far are kept; run the same command again to go on (it skips them)",
                "the files finished before it are kept: once that is put right, the same command goes on (it skips "
                "them)"):
            s = extract(sources, out, config, progress=progress)
    table = Table(show_header=False)
    for k, v in [
        ("files", s.sources), ("processed now", s.processed), ("skipped (done before)", s.skipped),
        ("face crops written", s.faces), ("face tracks", s.tracks), ("frames without a face", s.no_face_frames),
        ("files failed", len(s.errors)),
    ]:  # fmt: skip
        table.add_row(k, str(v))
    console.print(table)
    console.print(escape(printable(f"index: {s.index}")), highlight=False, soft_wrap=True)
    if s.not_media:
        note("not extracted:", "the folders and patterns given hold " + s.not_media, style="yellow")
    for w in s.warnings:
        note("warning:", w, style="yellow")
    _report_errors(s.errors, "file(s)")


def pairs_cmd(
    ctx: typer.Context,
    out: Out,
    sources: Annotated[Optional[list[Path]], typer.Argument(readable=False, help="With --self-blend: real videos, images, folders or faces.csv indexes.")] = None,
    ffpp: Annotated[Optional[Path], typer.Option("--ffpp", readable=False, help="FaceForensics++ root (original_sequences/, manipulated_sequences/).")] = None,
    compression: Annotated[Optional[str], typer.Option("--compression", help="FF++ compression folder (raw, c23, c40); needed when several exist.")] = None,
    methods: Annotated[Optional[str], typer.Option("--methods", help="FF++ methods to use, comma-separated (default: all found).")] = None,
    splits: Annotated[Optional[Path], typer.Option("--splits", readable=False, help="With --ffpp: the folder of FaceForensics++'s official split files (dataset/splits of its repository: train.json, val.json, test.json); each video goes to the split that lists it, as in published results, instead of --val/--test fractions.")] = None,
    mapping: Annotated[Optional[Path], typer.Option("--mapping", readable=False, help="CSV with columns real,fake (optional group,method); paths relative to it.")] = None,
    real_dir: Annotated[Optional[Path], typer.Option("--real-dir", readable=False, help="Folder of real files (with --fake-dir).")] = None,
    fake_dir: Annotated[Optional[Path], typer.Option("--fake-dir", readable=False, help="Folder of fakes named like their real (same stem, or real stem + suffix).")] = None,
    self_blend: Annotated[bool, typer.Option("--self-blend", help="Make one self-blended pseudo-fake per real face of SOURCES.")] = False,
    val: Annotated[float, typer.Option("--val", help="Fraction of groups (source videos) for validation.")] = VAL_SHARE,
    test: Annotated[float, typer.Option("--test", help="Fraction of groups for test.")] = TEST_SHARE,
    seed: Annotated[int, typer.Option("--seed", min=0, max=2**32 - 1, help="Seed for the split and the self-blending.")] = 0,
    frames: Frames = None,
    every: Every = None,
    fps: Fps = None,
    size: Size = DetectorConfig.size,
    margin: Margin = DetectorConfig.margin,
    detect_side: DetectSide = DetectorConfig.detect_side,
    min_confidence: MinConf = DetectorConfig.min_confidence,
    min_face: MinFace = DetectorConfig.min_face,
    device: Device = DetectorConfig.device,
    batch_size: BatchSize = DetectorConfig.batch_size,
    deinterlace: Deinterlace = True,
    group_pattern: Annotated[Optional[str], typer.Option("--group-pattern", help="With --self-blend: regex searched in each file stem; its first group (or match) is the split group, e.g. '^(.+)_\\d{4}$' keeps LFW's photos of one person together.")] = None,
    online: Annotated[bool, typer.Option("--online/--all-fakes", help="With --self-blend: --online (default) writes no fakes for train rows, since training makes a new one every epoch and never reads them; only val/test fakes are written. --all-fakes writes one for every row (needed by train --no-sbi-online).")] = BlendOptions.online,
    image_format: Annotated[str, typer.Option("--format", help="With --self-blend: crop file format, png or jpg (smaller; fakes are blended from the decoded JPEG).")] = BlendOptions.image_format,
    jpeg_quality: Annotated[int, typer.Option("--jpeg-quality", help="With --format jpg.")] = BlendOptions.jpeg_quality,
    workers: Annotated[int, typer.Option("--workers", help="With --self-blend: processes detecting faces in still images and videos (0 = one per core).")] = BlendOptions.workers,
    overwrite: Annotated[bool, typer.Option("--overwrite", help="Replace the pairs.csv already in OUT (refused without it).")] = False,
) -> None:
    """Write OUT/pairs.csv (real,fake,group,split,method,landmarks) and the face crops it names."""
    from forgerydet.pairs.build import make_pairs
    from forgerydet.pairs.table import SPLITS

    with user_errors():
        given = typed_options(ctx)  # --val/--test even at their default values: the split files decide
        typed = [f"--{n}" for n in ("val", "test") if n in given]
        if splits is not None and typed:
            raise ForgeryDetError(f"--splits decides the splits: leave out {' and '.join(typed)}")
        config = _config(frames, every, fps, size, margin, detect_side, min_confidence, min_face, device, batch_size,
                         deinterlace)
        with _progress("pairs") as progress, _said_if_stopped(
                "interrupted before pairs.csv was written: run the same command again (it starts over)"):
            s = make_pairs(
                out, config, ffpp=ffpp, compression=compression, methods=methods, mapping=mapping,
                real_dir=real_dir, fake_dir=fake_dir, self_blend=self_blend, sources=sources,
                val=val, test=test, seed=seed, progress=progress, splits=splits, overwrite=overwrite,
                blend=BlendOptions(group_pattern=group_pattern, online=online, image_format=image_format,
                                   jpeg_quality=jpeg_quality, workers=workers),
            )  # fmt: skip
    table = Table()
    for col in ("split", "groups", "pairs"):
        table.add_column(col)
    rows = [[split, str(s.split_groups.get(split, 0)), str(s.split_rows.get(split, 0))] for split in SPLITS]
    for row in rows:
        table.add_row(*row)
    console.print(table_or_lines(table, rows, console.width))  # too narrow: a line per split, none cut to "tr…"
    say("methods: " + ", ".join(f"{m} {n}" for m, n in sorted(s.methods.items())))  # a user's names: not markup
    if s.blended_online:
        console.print(f"fakes: {s.blended_online} train row(s) have none stored; training blends a new one every "
                      "epoch (--all-fakes writes them)", highlight=False)
    if s.images:
        console.print("still images: " + ", ".join(f"{k.replace('_', ' ')} {v}" for k, v in s.images.items()), highlight=False)
    if s.videos:
        v = s.videos
        console.print(f"videos: ok {v['ok']} ({v['faces']} faces), no face {v['no_face']}, error {v['error']}", highlight=False)
    console.print(escape(printable(f"wrote {s.pairs_csv}")), highlight=False, soft_wrap=True)
    for w in s.warnings:
        note("warning:", w, style="yellow")
    _report_errors(s.errors, "file(s)")
