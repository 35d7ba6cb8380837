"""`scan --json F`, kept while the scan runs and taken up again with `--resume`: a long batch (thousands of videos
overnight) that crashes (power, out of memory, kill -9) or is stopped goes on where it was instead of starting over.

While scanning, the JSON is rewritten atomically every so often (`Checkpointer`: at most ~5 % of the scan's time
goes to it) with the records so far and the files not reached yet marked not_scanned, and `settings.in_progress`.
`--resume` reads it back (`earlier_records`): its records of files that got a verdict or were found to hold no face
are taken over when the scan's settings that decide a score are the same (DECIDING) and the file's bytes are the
ones judged then (sha256); every other file is scanned."""

from __future__ import annotations

import json
import os
import time
from pathlib import Path
from typing import Any, Callable

from forgerydet import __version__
from forgerydet.errors import ForgeryDetError, path_text, printable
from forgerydet.io import file_sha256

# Scanner.settings() keys that decide a record's scores and verdict (the device, the command and the timing do not)
DECIDING = ("checkpoint_sha256", "bank_fingerprint", "bank_entries", "aggregation", "threshold", "temperature",
            "bank_fusion", "frames_per_video", "segment", "deinterlace", "tta", "precision", "face_size", "detector",
            "mode", "bank", "reference", "reference_fingerprint", "reference_faces")
TAKEN_OVER = ("ok", "no_face")  # the statuses a resumed scan keeps; errors and files not scanned are tried again
SHARE = 0.05  # of the scan's time at most spent rewriting the JSON while it runs
FIRST_AFTER = 30.0  # seconds: the JSON is first written this long after the scan starts, then as SHARE allows


def _shown(v: Any) -> str:
    text = json.dumps(v) if not isinstance(v, str) else repr(v)
    return text if len(text) <= 40 else text[:37] + "..."


def read_earlier(path: Path) -> dict[str, Any] | None:
    """The JSON document of the earlier scan at `path` (checked before the model loads); None when there is no file
    there yet (nothing to resume: everything is scanned). One ForgeryDetError line for a file that is not a
    forgerydet scan's JSON, or one an other version of forgerydet wrote."""
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        return None
    except (OSError, UnicodeDecodeError) as e:
        raise ForgeryDetError(f"--resume: cannot read {path_text(path)} ({type(e).__name__})") from None
    try:
        doc = json.loads(text)
        if not isinstance(doc["settings"], dict) or not isinstance(doc["files"], list):
            raise TypeError
    except (ValueError, KeyError, TypeError):
        raise ForgeryDetError(f"--resume: {path_text(path)} is not the JSON of a forgerydet scan (give the --json an "
                              f"earlier scan wrote, or leave out --resume)") from None
    if doc.get("forgerydet_version") != __version__:
        raise ForgeryDetError(f"--resume: {path_text(path)} was written by forgerydet {doc.get('forgerydet_version')}, "
                              f"this is {__version__}: its scores may differ; scan again without --resume")
    return doc


def earlier_records(doc: dict[str, Any] | None, path: Path, settings: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """The records of the earlier scan (`doc`, read from `path`) that this scan of `settings` can take over, by
    their path as written: those of files that got a verdict or hold no face. One ForgeryDetError line when its
    settings differ from this scan's in what decides a score (DECIDING), naming each difference."""
    if doc is None:
        return {}
    before = doc["settings"]
    changed = [f"{k} {_shown(before.get(k))} -> {_shown(settings.get(k))}" for k in DECIDING
               if before.get(k) != settings.get(k)]
    if changed:
        raise ForgeryDetError(f"--resume: {path_text(path)} was scanned with other settings ({'; '.join(changed)}): "
                              f"resume with the same options, or scan without --resume (or into another --json)")
    folder = before.get("working_directory") if isinstance(before.get("working_directory"), str) else os.getcwd()
    return {where(r["path"], folder): r for r in doc["files"]
            if isinstance(r, dict) and r.get("status") in TAKEN_OVER and isinstance(r.get("path"), str) and r.get("sha256")}


def where(path: str | Path, folder: str | None = None) -> str:
    """A file's place, links resolved, a relative path taken from `folder` (the earlier scan's working directory;
    None: this one's): the same file given relative, absolute or through a link is one file."""
    return os.path.realpath(os.path.join(folder or os.getcwd(), path))


def take_over(earlier: dict[str, dict[str, Any]], f: Path) -> dict[str, Any] | None:
    """The earlier record of file `f` (found by its place: where) when the file still holds the bytes judged then,
    with `f`'s path as given now and marked `resumed`; else None."""
    rec = earlier.get(where(f))
    if rec is None:
        return None
    try:
        if file_sha256(f) != rec["sha256"]:
            return None
    except OSError:
        return None
    return {**rec, "path": path_text(f), "resumed": True}


class Checkpointer:
    """Rewrites the --json while a scan runs, atomically, when enough time has passed since the scan started
    (FIRST_AFTER) and since the last write (the last write's duration / SHARE), so that a long scan that crashes
    loses at most a few minutes of work. `write(results, settings)` writes; `due()` says whether one is due now."""

    def __init__(self, write: Callable[[list[dict[str, Any]], dict[str, Any]], None], *, first_after: float = FIRST_AFTER,
                 share: float = SHARE, clock: Callable[[], float] = time.monotonic) -> None:
        self._write, self._share, self._clock = write, share, clock
        self._next = clock() + first_after
        self.writes = 0

    def due(self) -> bool:
        return self._clock() >= self._next

    def write(self, results: list[dict[str, Any]], settings: dict[str, Any]) -> None:
        t0 = self._clock()
        self._write(results, {**settings, "in_progress": True, "finished": None})
        took = self._clock() - t0
        self._next = self._clock() + max(took / self._share, 1.0)
        self.writes += 1


def resumed_line(taken: int, path: Path, scanned: int) -> str:
    """What `scan --resume` says at its end: how many files it took over, and how many it scanned."""
    return (f"{taken} file{'' if taken == 1 else 's'} taken over from the earlier scan in {printable(path_text(path))} "
            f"(same settings, same bytes), {scanned} scanned")
