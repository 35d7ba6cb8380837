"""`forgerydet scan`: verdicts for videos, images and folders."""

from __future__ import annotations

import contextlib
import datetime
import os
import sys
import time
from pathlib import Path
from typing import Annotated, Any, Optional

import typer
from rich.console import Group, RenderableType
from rich.markup import escape
from rich.progress import BarColumn, MofNCompleteColumn, TextColumn, TimeElapsedColumn
from rich.table import Table
from rich.text import Text

from forgerydet.cli.common import (EXIT_INTERRUPTED, PRECISION_HELP, End, Start, command_line, console, console_on, fail,
                                   note, output_held, progress_bar, say, shows_whole, table_or_lines, user_errors,
                                   working_directory)
from forgerydet.cli.stdout import PipeSafeStdout, closed_at_start
from forgerydet.errors import ForgeryDetError, os_error_text, out_of_memory, path_text, printable
from forgerydet.faces.detect import DetectorConfig
from forgerydet.faces.segment import parse_time
from forgerydet.io import own_descriptor, write_text_atomic
from forgerydet.model.config import references_path
from forgerydet.paths import check_not_input, check_output, leftovers_text, same_file, sweep_beside
from forgerydet.scan.config import ScanConfig, check_scan_inputs, expand_scan_paths
from forgerydet.scan.html import score_digits, threshold_text
from forgerydet.scan.records import empty_record, json_text, settings_notes, shortest_names
from forgerydet.scan.resume import (Checkpointer, Earlier, GuardedOutput, earlier_records, not_reached, read_earlier,
                                    resumed_line)


def scan_cmd(
    paths: Annotated[list[str], typer.Argument(help="Videos, images, folders or glob patterns.")],
    checkpoint: Annotated[Optional[Path], typer.Option(readable=False, help="Checkpoint (default: $FORGERYDET_MODEL, else the shipped models/forgerydet-base.safetensors).")] = None,
    frames: Annotated[int, typer.Option(help="Frames sampled evenly per video.")] = ScanConfig.num_frames,
    aggregation: Annotated[str, typer.Option(help="mean | max-then-mean (SBI) | confident (DFDC winner) | track-max.")] = ScanConfig.aggregation,
    threshold: Annotated[Optional[float], typer.Option(help="Fake-probability threshold (default: the checkpoint's).")] = None,
    device: Annotated[str, typer.Option(help="'auto', 'cpu', 'cuda' or 'cuda:N'.")] = ScanConfig.device,
    batch_size: Annotated[int, typer.Option(help="Faces per model call.")] = ScanConfig.batch_size,
    detect_side: Annotated[int, typer.Option(help="Longest side of the copy MTCNN runs on.")] = DetectorConfig.detect_side,
    min_confidence: Annotated[float, typer.Option(help="Least MTCNN confidence for a face.")] = DetectorConfig.min_confidence,
    json_out: Annotated[Optional[Path], typer.Option("--json", readable=False, help="Write per-file, per-track and per-frame scores as JSON ('-' or /dev/stdout: to standard output, and everything else to standard error).")] = None,
    csv_out: Annotated[Optional[Path], typer.Option("--csv", readable=False, help="Write one row per file as CSV ('-' or /dev/stdout: to standard output, and everything else to standard error).")] = None,
    report: Annotated[Optional[Path], typer.Option(readable=False, help="Write an HTML report (with PNGs) into this folder.")] = None,
    reference: Annotated[Optional[str], typer.Option(help="Compare with this enrolled person's real faces (see `forgerydet enroll`) instead of the global bank.")] = None,
    references: Annotated[Optional[Path], typer.Option(readable=False, help="Reference file of --reference (default: CHECKPOINT.refs.safetensors beside the model).")] = None,
    bank: Annotated[Optional[Path], typer.Option(readable=False, help="A disk bank folder (from `rebuild-bank --disk-bank`) to use instead of the checkpoint's bank.")] = None,
    deinterlace: Annotated[bool, typer.Option("--deinterlace/--no-deinterlace", help="Deinterlace video frames that show interlacing combing (one field kept, noted per file); --no-deinterlace: frames as stored.")] = ScanConfig.deinterlace,
    tta: Annotated[Optional[str], typer.Option(help="'flip': also score each face's mirror image and average (twice the model time); 'none'. Default: as the checkpoint was calibrated (`calibrate --tta`), else none.")] = ScanConfig.tta,
    precision: Annotated[Optional[str], typer.Option(help=PRECISION_HELP)] = ScanConfig.precision,
    start: Start = None,
    end: End = None,
    resume: Annotated[bool, typer.Option("--resume", help="Go on with the scan whose --json is given (one stopped, or crashed: the JSON is saved every so often while a scan runs): its files that got a verdict, or hold no face, are taken over when the settings that decide a score are the same and the file's bytes are those judged; the others are scanned.")] = False,
) -> None:
    """Score every face in 'single' mode against the checkpoint's bank (or an enrolled person's faces); print a
    verdict per file.

    Exit code 0 when every file got a verdict; 1 when some did not or an output could not be written (every other output is still written); 130 after Ctrl-C or SIGTERM, with the outputs holding the files scanned so far and the rest marked not_scanned (stopped while the model loads, before any file is scanned, nothing is written).
    """  # typer prints a paragraph after the first with its line breaks: one line each
    # /dev/stdout (/dev/fd/1, /proc/self/fd/1) is '-': standard output holds that output alone, the table and
    # every other line go to stderr (else `--json /dev/stdout | jq` would get the table too)
    json_out, csv_out = (STDOUT if p is not None and own_descriptor(p) == 1 else p for p in (json_out, csv_out))
    with console_on(sys.stderr if STDOUT in (json_out, csv_out) else None), contextlib.ExitStack() as held:
        from forgerydet.faces.media import describe_skipped
        from forgerydet.scan.records import MAX_FACES  # read when called (tests set MAX_FACES)

        t_start = time.perf_counter()
        with user_errors():
            outputs = [(o, p, o == "--report") for o, p in (("--json", json_out), ("--csv", csv_out), ("--report", report)) if p]
            if json_out == csv_out == STDOUT:  # the two documents would run together
                raise ForgeryDetError("--json and --csv both name standard output: give one of them a file")
            if STDOUT in (json_out, csv_out) and 1 in closed_at_start:  # (`>&-`) it would go nowhere, exit code 0
                raise ForgeryDetError(f"{'--json' if json_out == STDOUT else '--csv'} -: standard output is closed: give a file")
            for option, path, folder in outputs:  # before any work: a bad output must not cost the whole scan
                if path != STDOUT or folder:
                    check_output(path, option, folder=folder)
            keep: Any = lambda rec: rec  # with --report: its pictures in a temporary folder until it is written
            if report:
                from forgerydet.scan.report import check_report_folder
                from forgerydet.scan.spill import PictureSpill

                check_report_folder(report)  # (before killed writers' temp files are removed there: a report's)
                held.enter_context(output_held(report, "--report", "scan", "img/*", "img/*/*"))  # until its page is written
                keep = PictureSpill()  # (in memory they grew ~3 MB a file: 4 GB over 1,500 photos)
                held.callback(keep.close)
            det = DetectorConfig(detect_side=detect_side, min_confidence=min_confidence)
            cfg = ScanConfig(num_frames=frames, aggregation=aggregation, threshold=threshold, batch_size=batch_size,
                             device=device, keep_crops=MAX_FACES if report else 0, detector=det, reference=reference,
                             references=str(references) if references else None, bank=str(bank) if bank else None,
                             tta=tta, deinterlace=deinterlace, precision=precision,
                             start=parse_time(start, "--start"), end=parse_time(end, "--end"))
            skipped: list[Path] = []
            files, bad_paths = expand_scan_paths(paths, skipped=skipped)
            if report:
                files = _without_report_files(files, paths, report)
                skipped = _without_report_files(skipped, [], report)  # its index.html is not "a file left out"
            if not files:  # checked before the model loads
                raise ForgeryDetError("nothing to scan: " + "; ".join(r["error"] for r in bad_paths))
            model = check_scan_inputs(checkpoint, cfg)  # the checkpoint given, else the default one (looked up once)
            # --reference without --references reads the model's default reference file: no output may replace it
            refs_read = references if references is not None or reference is None else references_path(model)
            _check_outputs_apart(outputs, files, model, refs_read)
            if resume and not _a_file_to_keep(json_out):
                raise ForgeryDetError("--resume goes on with the scan whose --json file is given: give --json FILE "
                                      "(a file, not standard output, a pipe or a device)")
            earlier_doc = read_earlier(json_out) if resume else None
            try:  # torch and timm, then the model: ~5 s, after every cheap check
                from forgerydet.scan.scanner import Scanner

                scanner = Scanner(model, cfg)
            except KeyboardInterrupt:  # no file scanned yet: nothing to write, and files at the output paths are old
                raise fail("interrupted while the model loaded, before any file was scanned: no output was written "
                           "(files already at the output paths are an earlier run's)", EXIT_INTERRUPTED) from None
        settings = scanner.settings() | {"command": command_line(), "working_directory": working_directory()}
        with user_errors():  # before anything is said of this scan's settings
            earlier = Earlier(earlier_records(earlier_doc, json_out, settings) if resume else {}, files)
        if resume and earlier_doc is None:  # a typo would otherwise rescan a night's batch in silence
            note("note:", f"--resume: no earlier scan at {printable(json_out)}: every file is scanned", style="yellow")
        settings["notes"] = settings_notes(settings, threshold)  # printed now, and kept with the JSON and the report
        for line in settings["notes"]:
            note("note:", line, style="yellow")
        results = [{**r, "threshold": scanner.threshold} for r in bad_paths]
        for r in bad_paths:
            note("skipped:", r["error"])
        if skipped:
            note("not scanned:", "the folders and patterns given hold " + describe_skipped(skipped), style="yellow")
        # kept with the outputs too, so that a pipeline can account for every file of the folders it gave
        settings["other_files"] = list(dict.fromkeys(path_text(f) for f in skipped))  # reached twice: once
        guard = GuardedOutput(json_out) if _a_file_to_keep(json_out) else None  # a pipe's reader: two documents
        guards = {"--json": guard, "--csv": GuardedOutput(csv_out) if _a_file_to_keep(csv_out) else None}
        keeper = Checkpointer(lambda res, st: guard.write(json_text(res, st), durable=True)) if guard else None
        for kept in (g for g in guards.values() if g is not None):  # a killed scan's unfinished saves: said, as elsewhere
            if removed := sweep_beside(kept.path):
                note("notice:", leftovers_text(removed, removed[0].parent), style="yellow")
        interrupted = False
        if resume:  # (in the JSON saved while it runs too)
            settings["resumed"] = {"from": path_text(json_out), "files_taken_over": 0}
        with progress_bar(TextColumn("[bold]scanning"), BarColumn(), MofNCompleteColumn(), TextColumn("{task.fields[name]}"),
                          TimeElapsedColumn()) as p:
            task = p.add_task("scan", total=len(files), name="")
            done = 0
            try:
                for f in files:
                    p.update(task, completed=done, name=escape(printable(f.name)))
                    rec = earlier.take(f) if earlier else None
                    if rec is not None:
                        settings["resumed"]["files_taken_over"] += 1
                    results.append(rec or keep(_scanned(scanner, f)))
                    done += 1
                    if results[-1]["status"] != "ok":  # most errors start with the path already
                        named = results[-1]["error"].startswith(results[-1]["path"])
                        note("" if named else f"{printable(results[-1]['path'])}:", results[-1]["error"])
                    if keeper is not None and keeper.due():  # what a crash would otherwise lose
                        keeper = _save_so_far(keeper, results + not_reached(
                            earlier.records, files[done:], scanner.threshold,
                            "not scanned yet: the scan was running when this was saved"), settings)
                p.update(task, completed=done, name="")
            except KeyboardInterrupt:
                interrupted = True
                results += not_reached(earlier.records, files[done:], scanner.threshold,  # earlier verdicts kept
                                       "not scanned: the scan was interrupted")
        with user_errors():  # a second Ctrl-C while the outputs are written is still one line
            compared = (f"reference {settings['reference']!r}: {settings['reference_faces']} enrolled faces from "
                        f"{printable(settings['reference_file'])} (fingerprint {settings['reference_fingerprint']})"
                        if reference else
                        f"disk bank {printable(settings['bank'])}: {settings['bank_entries']} real faces, fingerprint "
                        f"{settings['bank_fingerprint']}" if "bank" in settings else
                        f"bank {settings['bank_entries']} real faces, fingerprint {settings['bank_fingerprint']}")
            say(f"checkpoint {settings['checkpoint']} ({settings['backbone']}, weights {settings['pretrained_weights']}, "
                f"{compared}); aggregation {settings['aggregation']}, threshold {threshold_text(settings['threshold'])}")
            console.print(verdict_table(results, reference=bool(reference), width=console.width))
            settings["seconds"] = round(time.perf_counter() - t_start, 3)
            settings["finished"] = datetime.datetime.now().astimezone().isoformat(timespec="seconds")
            settings["interrupted"] = interrupted  # then the files not reached are marked not_scanned
            settings["in_progress"] = False  # (True in the JSON saved while it ran)
            if resume and earlier_doc is not None and not interrupted:  # (an interrupted one's line says what to do)
                taken = settings["resumed"]["files_taken_over"]
                note("resumed:", resumed_line(taken, json_out, done - taken, earlier.left_out()))
            problems = [error for option, path, _ in outputs
                        if (error := _write_output(option, path, results, settings, guards))]
        if interrupted:
            again = "; the same command with --resume goes on" if guard is not None else ""
            raise fail(f"interrupted after {done} of {len(files)} file(s); " + "; ".join(
                problems + ["the outputs hold the files scanned so far, the rest marked not_scanned" + again]),
                EXIT_INTERRUPTED)
        failed = [r for r in results if r["status"] != "ok"]
        if failed:
            problems.append(f"{len(failed)} of {len(results)} file(s) got no verdict (see above)")
        if problems:
            raise fail("; ".join(problems))


def _scanned(scanner: Any, f: Path) -> dict:
    """scanner.scan_file(f), where running out of memory (a huge frame, a limit such as `ulimit -v`) is this file's
    error and the scan goes on: it ended the scan, and every verdict not yet saved in --json was lost."""
    try:
        return scanner.scan_file(f)
    except (MemoryError, RuntimeError) as e:
        if not out_of_memory(e):
            raise
        return empty_record(f, scanner.threshold, "error", f"out of memory while scanning this file ({type(e).__name__}: "
                            f"{printable(str(e).strip().splitlines()[0][:160]) if str(e).strip() else 'no details'}): "
                            f"free memory or raise the process's limit, then scan it again")


def _a_file_to_keep(path: Optional[Path]) -> bool:
    """Whether --json names a file the scan can save while it runs and `--resume` read back: a regular file (also
    through a link) or a new one; not standard output, a named pipe or a device such as /dev/stderr."""
    return path is not None and path != STDOUT and (os.path.isfile(path) or not os.path.exists(path))


def _save_so_far(keeper: Checkpointer, records: list[dict], settings: dict) -> Checkpointer | None:
    """The scan so far (`records`: every file's, reached or not) into its --json while it runs, for `--resume` after
    a crash; a failed write is said once and not tried again (the JSON is still written at the end)."""
    try:
        keeper.write(records, settings)
    except (OSError, ForgeryDetError) as e:
        note("warning:", f"--json: could not save the scan so far ({os_error_text(e) if isinstance(e, OSError) else e}); "
                         f"it goes on, and the JSON is written at its end", style="yellow")
        return None
    return keeper


def _check_outputs_apart(outputs: list[tuple[str, Path, bool]], files: list[Path], checkpoint: Path,
                         references: Optional[Path]) -> None:
    """No output file may be a file the scan reads (`--json photo.png`, `--csv model.safetensors`) or the other
    output: it would be replaced."""
    inputs = [("the checkpoint", checkpoint), ("the references file", references)]
    files_out = [(option, path) for option, path, folder in outputs if not folder and path != STDOUT]
    for option, path in files_out:
        check_not_input(path, option, [*inputs, *(("a file being scanned", f) for f in files)])
    if len(files_out) == 2 and same_file(files_out[0][1], files_out[1][1]):
        raise ForgeryDetError(f"--json and --csv name the same file ({printable(files_out[0][1])}): give each its own path")
    report = next((path for option, path, folder in outputs if folder), None)
    if report is not None:
        from forgerydet.scan.report import written_by_report

        for option, path in files_out:
            if written_by_report(report, path):
                raise ForgeryDetError(f"{option} {printable(path)} is a file the --report writes (its page or its images): "
                                      f"give a path outside them")


def _without_report_files(files: list[Path], paths: list[Path], report: Path) -> list[Path]:
    """The files to scan less an earlier report's page and pictures in the --report folder, which a folder given to
    scan holds after a first run (the report's crops and heatmaps got verdicts of their own); one of them named
    on its own is refused: the report would overwrite it."""
    from forgerydet.scan.report import written_by_report

    named = {os.path.realpath(p) for p in paths}
    for f in files:
        if written_by_report(report, f) and os.path.realpath(f) in named:
            raise ForgeryDetError(f"{printable(f)} lies where the --report {printable(report)} writes its page and images, "
                                  f"so the report would overwrite it: give another --report folder")
    return [f for f in files if not written_by_report(report, f)]


STDOUT = Path("-")  # --json - / --csv -: that output on standard output


def _write_output(option: str, path: Path, results: list[dict], settings: dict,
                  guards: dict[str, GuardedOutput | None] | None = None) -> str | None:
    """Write one output (each on its own, so one failing does not lose the others); the error text, or None. The
    --json and --csv go through their guards, which write beside a file another process wrote meanwhile."""
    from forgerydet.scan.records import csv_text

    try:
        if option in ("--json", "--csv"):
            text = json_text(results, settings) if option == "--json" else csv_text(results)
            if path == STDOUT:  # in UTF-8, as its file would be (guard_stdout installed PipeSafeStdout)
                text = text if text.endswith("\n") else text + "\n"
                sys.stdout.write_utf8(text) if isinstance(sys.stdout, PipeSafeStdout) else sys.stdout.write(text)
                sys.stdout.flush()
                return None
            guard = (guards or {}).get(option)  # --csv too: two scans at once left one's JSON beside the other's CSV
            if guard is not None:  # durable: synced, and a temp file a killed earlier write left beside it removed
                guard.write(text, durable=True)
            else:
                write_text_atomic(path, text, durable=True)
            elsewhere = guard.elsewhere if guard is not None else None
            say(f"{option[2:].upper()}: {elsewhere or path}")  # one line, a long path not folded (a log, a pipe)
            if elsewhere:
                return (f"{option}: another process wrote {printable(path)} while this scan ran (two scans into one "
                        f"{option}?): it was left as that process wrote it, and this scan's {option[2:].upper()} is "
                        f"{printable(elsewhere)}")
        else:
            from forgerydet.scan.report import write_report

            left: list[str] = []
            index = write_report(results, path, settings, notes=left)
            say(f"report: {index}")
            for line in left:
                note("note:", line, style="yellow")
    except ForgeryDetError as e:
        return f"{option}: {e}"
    except OSError as e:
        return f"{option}: cannot write {os_error_text(e, 'standard output' if path == STDOUT else None)}"
    return None


def _enrolled_used(r: dict, n: int = 2) -> str:
    """The enrolled faces a file was compared with most, with their mean similarity: 'd0.mp4 f12 0.83 (x9)'."""
    used = (r.get("reference") or {}).get("used") or []
    return ", ".join(f"{Path(u['source']).name} f{u['frame_index']} {u['mean_similarity']:.2f} x{u['times']}"
                     for u in used[:n]) + (f" +{len(used) - n} more" if len(used) > n else "")


def verdict_table(results: list[dict], reference: bool = False, width: int | None = None) -> RenderableType:
    """The verdict table; where it would not show every verdict, score, count and note whole on `width` columns,
    the notes (and enrolled matches) leave the table for lines of their own under it."""
    names = shortest_names([r["path"] for r in results])
    rows = [_row(r, reference, name) for r, name in zip(results, names)]
    whole = _verdicts(rows, notes=True, reference=reference)
    cells = [x.plain if isinstance(x, Text) else x for row in rows for x in row[1:]]
    if width is None or shows_whole(whole, width, ["verdict", "p(fake)", "frames", "note", *cells]):
        return whole  # every verdict, score, count and note whole, and the right edge there; file names may fold
    lines = [Text.assemble((f"{row[0].plain}: ", "bold"), row[5]) for row in rows if row[5].plain]
    lines += [Text(f"{row[0].plain}: nearest enrolled {row[6]}") for row in rows if reference and row[6]]
    figures = [x.plain if isinstance(x, Text) else x for row in rows for x in row[1:5]]  # too narrow still: a line each
    return Group(table_or_lines(_verdicts(rows, notes=False, reference=False), [r[:5] for r in rows], width, figures), *lines)


def _row(r: dict, reference: bool, shown_name: str) -> list:
    """One table row: file (Text), verdict (Text), p(fake), faces/tracks, frames, note (Text), [nearest enrolled]."""
    more = [_enrolled_used(r)] if reference else []
    counts = [f"{r['n_faces']}/{r['n_tracks']}", f"{r['frames_with_face']}/{r['frames_sampled']}"]
    name = Text(printable(shown_name))  # one row per file, whatever characters its name holds
    if r["status"] == "ok":
        colour = "red" if r["verdict"] == "FAKE" else "green"
        note = Text("; ".join(r.get("notes") or []), style="yellow")
        digits = score_digits(r["score"], r["threshold"]) if r.get("threshold") is not None else 3
        return [name, Text(r["verdict"], style=f"bold {colour}"), f"{r['score']:.{digits}f}", *counts, note, *more]
    verdict, note = {"no_face": (Text("none", style="yellow"), "no face found"),
                     "not_scanned": (Text("-", style="yellow"), "not scanned (interrupted)")}.get(
        r["status"], (Text("error", style="red"), "see above"))
    return [name, verdict, "-", *counts, Text(note), *more]


def _verdicts(rows: list[list], notes: bool, reference: bool) -> Table:
    t = Table(title="forgerydet scan", title_justify="left")
    t.add_column("file", overflow="fold", min_width=16 if notes else 10, ratio=1)
    t.add_column("verdict", justify="center", min_width=7)
    t.add_column("p(fake)", justify="right", min_width=7)
    t.add_column("faces/tracks", justify="right", overflow="fold")
    t.add_column("frames", justify="right", min_width=6)
    if notes:
        t.add_column("note", max_width=13, overflow="fold")  # 13: the table still fits 80 columns
    if reference:
        t.add_column("nearest enrolled (sim)", overflow="fold", ratio=1)
    for row in rows:
        t.add_row(*row[:5], *([row[5]] if notes else []), *(row[6:] if reference else []))
    return t
