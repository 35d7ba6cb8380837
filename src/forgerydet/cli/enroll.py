"""`forgerydet enroll`: a known person's real faces into a reference file (list, add, remove)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Optional

import typer
from rich.progress import BarColumn, MofNCompleteColumn, TextColumn, TimeElapsedColumn
from rich.table import Table

from forgerydet.cli.common import End, Start, console, fail, note, progress_bar, said_if_stopped, say, shown, user_errors
from forgerydet.faces.detect import DetectorConfig
from forgerydet.faces.segment import parse_time
from forgerydet.scan.config import EnrollConfig


def enroll_cmd(
    name: Annotated[Optional[str], typer.Argument(help="The person's name (as `scan --reference NAME` will use it).")] = None,
    sources: Annotated[Optional[list[str]], typer.Argument(help="Real videos, images or folders of that person.")] = None,
    into: Annotated[Optional[Path], typer.Option(help="Reference file (default: CHECKPOINT.refs.safetensors beside the model).")] = None,
    checkpoint: Annotated[Optional[Path], typer.Option(help="Model whose key encoder encodes the faces (default: $FORGERYDET_MODEL, else the shipped models/forgerydet-base.safetensors).")] = None,
    face: Annotated[str, typer.Option(help="Which faces of a source: main-track (tracked over most frames) | largest (per frame) | all (bystanders too).")] = EnrollConfig.face,
    frames: Annotated[int, typer.Option(help="Frames sampled evenly per video (as scan).")] = EnrollConfig.num_frames,
    list_: Annotated[bool, typer.Option("--list", help="List the people enrolled in the reference file; with NAME, the files that person was enrolled from.")] = False,
    remove: Annotated[bool, typer.Option("--remove", help="Remove NAME's faces from the reference file; with SOURCES, only the faces enrolled from those files (or the files of those folders or patterns).")] = False,
    wait: Annotated[float, typer.Option(help="Seconds to wait while another forgerydet process uses the reference file.")] = EnrollConfig.wait,
    device: Annotated[str, typer.Option(help="'auto', 'cpu', 'cuda' or 'cuda:N'.")] = EnrollConfig.device,
    detect_side: Annotated[int, typer.Option(help="Longest side of the copy MTCNN runs on.")] = DetectorConfig.detect_side,
    min_confidence: Annotated[float, typer.Option(help="Least MTCNN confidence for a face.")] = DetectorConfig.min_confidence,
    deinterlace: Annotated[bool, typer.Option("--deinterlace/--no-deinterlace", help="As scan's: deinterlace video frames that show interlacing combing; --no-deinterlace: frames as stored.")] = EnrollConfig.deinterlace,
    start: Start = None,
    end: End = None,
) -> None:
    """Enrol NAME's real faces from SOURCES (added to what is enrolled already), or --list [NAME] / --remove [SOURCES]."""
    from forgerydet.model import references as refs
    from forgerydet.model.config import check_name, references_path

    with user_errors():
        cfg = EnrollConfig(num_frames=frames, face=face, device=device, wait=wait, deinterlace=deinterlace,
                           start=parse_time(start, "--start"), end=parse_time(end, "--end"),
                           detector=DetectorConfig(detect_side=detect_side, min_confidence=min_confidence))  # checks all
        path = into or references_path(checkpoint or _default_checkpoint())
        if list_ and (remove or sources):
            raise fail("--list lists the reference file (with NAME, one person's files): it takes no sources or --remove")
        if list_:
            _list(path) if name is None else _list_sources(path, check_name(name))
            return
        if not name:
            raise fail("give the person's NAME (or --list)")
        name = check_name(name)  # as stored and as the messages below name it: 'Ann', not ' Ann '
        if remove and sources:
            n, left, matched = refs.remove_sources(path, name, sources, wait=cfg.wait)
            rest = f"{left} left" if left else f"none left: {name!r} is no longer enrolled"
            say(f"removed {n} face{'' if n == 1 else 's'} of {name!r} enrolled from {len(matched)} file"
                f"{'' if len(matched) == 1 else 's'}, from {path} ({rest})")
            for src, by_content in matched:  # a copy or a renamed file is found by its bytes: say which file that was
                say(f"  {src}" + (" (not a path given: found by its content, the same bytes as a file given)"
                                  if by_content else ""))
            return
        if remove:
            n = refs.remove_person(path, name, wait=cfg.wait)
            say(f"removed {name!r}: {n} enrolled face{'' if n == 1 else 's'}, from {path}")
            return
        if not sources:
            raise fail(f"give real videos or images of {name!r} to enrol (or --remove / --list)")
        from forgerydet.scan.enroll import enroll

        with said_if_stopped(path), progress_bar(TextColumn("[bold]enrolling"), BarColumn(), MofNCompleteColumn(),
                                                 TextColumn("{task.fields[f]}"), TimeElapsedColumn()) as p:
            task = p.add_task("enroll", total=None, f="")
            res = enroll(name, sources, checkpoint=checkpoint, into=into, config=cfg,
                         progress=lambda i, n, f="": p.update(task, completed=i, total=n, f=Path(f).name))
    for src, n, which in res.sources:
        say(f"  {Path(src).name}: {which}")
    for src, other in res.also_as:
        note("warning:", f"{src}: the same file is enrolled as {other!r} too; the faces of one person under two names make a "
             f"comparison with either say less (`forgerydet enroll {other!r} --remove` if that was a mistake)", style="yellow")
    for twin in res.case_twins:  # names are matched exactly: 'anchor' and 'Anchor' are two people
        note("warning:", f"{twin!r} is enrolled too, a name that differs from {res.name!r} only by case: they are two "
             f"people to forgerydet, and each scan compares with one (`forgerydet enroll {res.name!r} --remove` if "
             f"these faces were meant for {twin!r})", style="yellow")
    dup = f" ({res.duplicates} already enrolled, skipped)" if res.duplicates else ""
    people = "1 person" if res.people == 1 else f"{res.people} people"
    say(f"enrolled {res.added} face{'' if res.added == 1 else 's'} of {name!r}{dup}: {res.total} in all; {people} in {res.path} "
        f"(key encoder of {res.checkpoint})")


def _default_checkpoint() -> Path:
    from forgerydet.scan.config import find_default_checkpoint

    return find_default_checkpoint()


def _list(path: Path) -> None:
    from forgerydet.model.references import list_people

    refs, people = list_people(path)
    if not people:  # every person removed: no empty table
        say(f"nobody enrolled in {path} (key encoder {refs.fingerprint[:16]}, {refs.backbone})")
        return
    say(f"{path} (key encoder {refs.fingerprint[:16]}, {refs.backbone})")  # one line, a long path not folded
    t = Table()
    for col in ("person", "faces", "sources", "face choice"):
        t.add_column(col, justify="right" if col in ("faces", "sources") else "left", overflow="fold")  # never cut to "…"
    for name, p in people.items():
        t.add_row(shown(name), str(p["faces"]), str(p["sources"]), shown(p["face"]))  # names are text, not markup
    console.print(t)


def _list_sources(path: Path, name: str) -> None:
    from forgerydet.model.references import person_sources

    rows = person_sources(path, name)
    say(f"{name} in {path}")
    t = Table()
    for col in ("source", "faces", "face choice", "sha256"):
        t.add_column(col, justify="right" if col == "faces" else "left", overflow="fold")  # a path whole, never "…"
    for r in rows:
        t.add_row(shown(r["source"]), str(r["faces"]), shown(r["face"]), (r["sha256"] or "not recorded")[:16])
    console.print(t)
