"""`forgerydet evaluate`: metrics on a labelled list."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Optional

import typer
from rich import box
from rich.console import Group, RenderableType
from rich.progress import BarColumn, MofNCompleteColumn, TextColumn, TimeElapsedColumn
from rich.table import Table

from forgerydet.cli.common import (EXIT_INTERRUPTED, PRECISION_HELP, command_line, console, fail, note,
                                   progress_bar, say, shown, shows_whole, table_or_lines, user_errors)
from forgerydet.metrics import CI_MIN_PER_CLASS
from forgerydet.scan.config import ScanConfig
from forgerydet.scan.html import threshold_text


def evaluate_cmd(
    list_csv: Annotated[Optional[Path], typer.Argument(readable=False, help="CSV with columns path,label[,group]; label 0/1 or real/fake. Or one of --ffpp, --dfdc, --celebdf, --real/--fake instead.")] = None,
    checkpoint: Annotated[Optional[Path], typer.Option(readable=False, help="Checkpoint (default: $FORGERYDET_MODEL, else the shipped models/forgerydet-base.safetensors).")] = None,
    out: Annotated[Path, typer.Option(readable=False, help="Folder for metrics.json, roc.png and roc_groups.png.")] = Path("eval_out"),
    crops: Annotated[bool, typer.Option(help="Listed images are face crops already: score them as they are.")] = False,
    frames: Annotated[int, typer.Option(help="Frames sampled per video.")] = ScanConfig.num_frames,
    aggregation: Annotated[str, typer.Option(help="mean | max-then-mean | confident | track-max.")] = ScanConfig.aggregation,
    threshold: Annotated[Optional[float], typer.Option(help="Threshold for accuracy (default: the checkpoint's).")] = None,
    device: Annotated[str, typer.Option(help="'auto', 'cpu', 'cuda' or 'cuda:N'.")] = ScanConfig.device,
    tta: Annotated[Optional[str], typer.Option(help="'flip': also score each face's mirror image and average; 'none'. Default: as the checkpoint was calibrated, else none.")] = ScanConfig.tta,
    precision: Annotated[Optional[str], typer.Option(help=PRECISION_HELP)] = ScanConfig.precision,
    ffpp: Annotated[Optional[Path], typer.Option("--ffpp", readable=False, help="A FaceForensics++ root: originals real, each method's fakes a group (measured against all originals).")] = None,
    compression: Annotated[Optional[str], typer.Option("--compression", help="With --ffpp: raw, c23 or c40 (needed when several exist).")] = None,
    methods: Annotated[Optional[str], typer.Option("--methods", help="With --ffpp: methods, comma-separated (default: all found).")] = None,
    split: Annotated[Optional[Path], typer.Option("--split", readable=False, help="With --ffpp: an official split file (splits/test.json of the FaceForensics repository): only its videos.")] = None,
    dfdc: Annotated[Optional[Path], typer.Option("--dfdc", readable=False, help="A DFDC folder with metadata.json (training parts) or labels.csv (test set).")] = None,
    celebdf: Annotated[Optional[Path], typer.Option("--celebdf", readable=False, help="A Celeb-DF root: the videos of its official test list (List_of_testing_videos.txt).")] = None,
    celebdf_all: Annotated[bool, typer.Option("--celebdf-all", help="With --celebdf: every video of Celeb-real, YouTube-real and Celeb-synthesis, not the test list's.")] = False,
    real: Annotated[Optional[list[Path]], typer.Option("--real", readable=False, help="Real files, folders or globs (repeat; each is a group), with --fake.")] = None,
    fake: Annotated[Optional[list[Path]], typer.Option("--fake", readable=False, help="Fake files, folders or globs (repeat; each is a group), with --real.")] = None,
    per_group: Annotated[Optional[int], typer.Option("--per-group", help="At most N files of each group and class, a seeded random draw (a quick figure; not with LIST.csv).")] = None,
    resume: Annotated[bool, typer.Option("--resume", help="Go on with the evaluation in --out (one stopped, or crashed: its metrics.json is saved every so often while it runs; or a finished one, to score only the files a grown list adds): files scored with the settings that decide a score, whose bytes are the same, are taken over; the rest are scored, and the metrics computed over all.")] = False,
) -> None:
    """Frame- and video-level AUC, AP, EER and accuracy per group and overall; JSON and a ROC plot."""
    from forgerydet.scan.evalsets import evaluation_source

    with user_errors():
        from forgerydet.scan.config import ScanConfig

        layout_notes: list[str] = []
        source = evaluation_source(list_csv, ffpp=ffpp, compression=compression,
                                   methods=[m.strip() for m in methods.split(",") if m.strip()] if methods else None,
                                   split=split, dfdc=dfdc, celebdf=celebdf, celebdf_all=celebdf_all,
                                   real=real or (), fake=fake or (), per_group=per_group, notes=layout_notes)
        for line in layout_notes:
            note("note:", line, style="yellow")
        if checkpoint is not None:
            from forgerydet.model.config import check_checkpoint_path

            check_checkpoint_path(checkpoint)
        else:  # a missing shipped model: said now, not after torch and timm have loaded
            from forgerydet.scan.config import find_default_checkpoint

            find_default_checkpoint()
        from forgerydet.scan.evaluate import evaluate as run  # torch and timm: ~5 s, after the layout was read
        cfg = ScanConfig(num_frames=frames, aggregation=aggregation, threshold=threshold, device=device, tta=tta,
                         precision=precision)
        said: list[str] = []
        with progress_bar(TextColumn("[bold]evaluating"), BarColumn(), MofNCompleteColumn(),
                          TextColumn("{task.fields[name]}"), TimeElapsedColumn()) as p:
            task = p.add_task("eval", total=None, name="")
            res = run(source, checkpoint, config=cfg, crops=crops, out_dir=out, notes=layout_notes, resume=resume,
                      progress=lambda i, n, name="": p.update(task, completed=i, total=n, name=name),
                      say=lambda line: said.append(line) or note("note:", line, style="yellow"), command=command_line())
    for s in res["skipped"]:
        named = (s["error"] or "").startswith(s["path"])
        note("skipped" if named else f"skipped {Path(s['path']).name}:", s["error"] or s["status"], style="yellow")
    for line in [n for n in res.get("notes", []) if n not in layout_notes + said]:  # said before the scoring
        note("note:", line, style="yellow")
    if (res.get("resumed") or {}).get("line"):
        note("resumed:", res["resumed"]["line"])
    console.print(checkpoint_line(res["checkpoint"]), highlight=False, soft_wrap=True)  # a long path: one line
    console.print(metrics_table(res, console.width))
    cc = res.get("close_calls")
    if cc:
        acc = lambda a: "-" if a is None else f"{a:.2f}"  # noqa: E731
        console.print(f"close calls (the threshold inside a video's score interval over resampled frames): "
                      f"{cc['close_calls']} of {cc['videos']} videos; accuracy {acc(cc['accuracy_close_calls'])} on "
                      f"them, {acc(cc['accuracy_others'])} on the other {cc['videos'] - cc['close_calls']}", highlight=False)
    written = [f"metrics: {res['metrics_json']}"] if res.get("metrics_json") else []
    written += [f"ROC: {res['roc_png']}"] if res.get("roc_png") else []
    written += [f"per group: {res['roc_groups_png']}"] if res.get("roc_groups_png") else []
    if written:
        say("   ".join(written))
    problems = res["output_errors"] + res["problems"]  # exit 1 like scan when the result is incomplete
    if problems:
        raise fail("; ".join(problems), EXIT_INTERRUPTED if res.get("interrupted") or res.get("output_interrupted") else 1)


def checkpoint_line(settings: dict) -> str:
    """Which model was evaluated (a forgotten --checkpoint evaluates the shipped one), as scan names it."""
    return shown(f"checkpoint {settings['checkpoint']} ({settings['backbone']}, weights {settings['pretrained_weights']}, "
                 f"bank {settings['bank_entries']} real faces); threshold {threshold_text(settings['threshold'])}")


COLUMNS = ("level", "group", "real", "fake", "AUC", "95 % CI", "AP", "EER", "accuracy")
# Where one table is wider than the terminal (below ~75 columns with a short group name, or on 80 columns with a
# group name over ~9 characters, such as 'NeuralTextures*' or 'Celeb-synthesis*', which it would fold), two tables
# share the row labels: level, group and counts with the AUC and its interval, then level and group with AP, EER,
# accuracy (each figure whole down to ~45 columns; rich would otherwise cut the last column off).
SPLIT = (COLUMNS[:6], COLUMNS[:2] + COLUMNS[6:])


def metrics_table(res: dict, width: int | None = None) -> RenderableType:
    """The metrics as one table, or as two tables (SPLIT) where one would not fit `width` terminal columns."""
    rows = []
    for level in ("frame_level", "video_level"):
        for g, m in res[level].items():
            group = f"{g}*" if "against" in m else g  # a one-class group, measured with the other class of the set
            head = [level.split("_")[0], group, str(m["n_real"]), str(m["n_fake"])]
            if "error" in m:
                rows.append([*head, "-", "-", "-", "-", f"{m['accuracy']:.3f}"])
            else:
                ci = (f"{m['auc_ci'][0]:.2f}-{m['auc_ci'][1]:.2f}" if m.get("auc_ci") else
                      "too few" if "auc_ci" in m else "-")
                rows.append([*head, f"{m['auc']:.3f}", ci, f"{m['ap']:.3f}", f"{m['eer']:.3f}", f"{m['accuracy']:.3f}"])
    title = f"evaluation (threshold {threshold_text(res['threshold'])})"
    caption = ("95 % CI: stratified bootstrap of the AUC (1,000 resamples); at frame level whole files are resampled "
               "with their faces, which are not independent samples")
    if any("auc_ci" in m and m["auc_ci"] is None for level in ("frame_level", "video_level") for m in res[level].values()):
        caption += f"\ntoo few: under {CI_MIN_PER_CLASS} real or {CI_MIN_PER_CLASS} fake files (the faces of one file count once), no interval is given"
    if any("against" in m for level in ("frame_level", "video_level") for m in res[level].values()):
        caption += ("\n* a group of one class, measured against every sample of the other class (with --ffpp: the "
                    "originals its fakes were made on)")
    whole = _table(rows, COLUMNS, title, caption)
    figures = [r[k] for r in rows for k in range(2, len(COLUMNS))]
    names = [r[1] for r in rows]
    if width is None:
        return whole
    figures_whole = shows_whole(whole, width, figures)
    if figures_whole and shows_whole(whole, width, names):
        return whole
    first, second = SPLIT
    split = Group(_table(rows, first, title, None), _table(rows, second, None, caption))
    if figures_whole and not shows_whole(split, width, names):
        return whole  # the group names fold either way: one table, every figure whole
    if not shows_whole(split, width, figures):  # (under ~45 columns) a line of "HEADER figure" per row
        return table_or_lines(whole, [[shown(c) for c in r] for r in rows], width, figures)
    return split  # every figure whole, and the group names too where two tables leave them room


def _table(rows: list[list[str]], columns: tuple[str, ...], title: str | None, caption: str | None) -> Table:
    t = Table(title=title, title_justify="left", box=box.SIMPLE_HEAD, pad_edge=False, caption=caption)
    picked = [COLUMNS.index(c) for c in columns]
    # real and fake counts get columns of their own (one "n (real/fake)" column was cut to "(real/fa…" on 80
    # columns), and a figure column is never narrower than its widest figure: a narrow terminal folds the group
    # names and never cuts or breaks a number
    for k in picked:
        c = COLUMNS[k]
        text = c in ("level", "group")
        widest = max((len(r[k]) for r in rows), default=1)
        t.add_column(c, justify="left" if text else "right", overflow="fold", min_width=None if text else widest)
    for r in rows:
        t.add_row(*(shown(r[k]) for k in picked))  # a group named "[b]" from a user's CSV is text, not rich markup
    return t
