"""`scan --json F`, kept while the scan runs and taken up again with `--resume`: a long batch (thousands of videos
overnight) that crashes (power, out of memory, kill -9) or is stopped goes on where it was instead of starting over.

While scanning, the JSON is rewritten atomically every so often (`Checkpointer`: at most ~5 % of the scan's time
goes to it) with the records so far, the files not reached yet marked not_scanned (or, in a resumed scan, as the
earlier scan had them: `not_reached`), and `settings.in_progress`.
`--resume` reads it back (`earlier_records`): its records of files that got a verdict or were found to hold no face
are taken over when the scan's settings that decide a score are the same (DECIDING) and the file's bytes are the
ones judged then (sha256); every other file is scanned."""

from __future__ import annotations

import json
import math
import os
import re
import time
from pathlib import Path
from typing import Any, Callable

from forgerydet import __version__
from forgerydet.errors import ForgeryDetError, current_folder, path_text, printable
from forgerydet.faces.media import IMAGE_EXTS
from forgerydet.io import file_sha256, file_state, write_text_atomic
from forgerydet.scan.records import empty_record

# Scanner.settings() keys that decide a record's scores and verdict (the device, the command and the timing do not)
# and the options that set them, for the line that refuses a resume with other settings
DECIDING = {"checkpoint_sha256": "--checkpoint", "bank_fingerprint": "--bank", "bank_entries": "--bank",
            "bank_written": "--bank", "aggregation": "--aggregation", "threshold": "--threshold",
            "temperature": "--checkpoint", "bank_fusion": "--checkpoint", "frames_per_video": "--frames",
            "segment": "--start/--end", "deinterlace": "--deinterlace", "tta": "--tta", "precision": "--precision",
            "face_size": "--checkpoint", "detector": "--detect-side/--min-confidence", "mode": "--reference/--bank",
            "bank": "--bank", "reference": "--reference", "reference_fingerprint": "--references",
            "reference_faces": "--reference (enrolled since)", "reference_content": "--reference (enrolled since)",
            "bank_search": "--bank (searched with faiss, or exactly where it is not installed)"}
OPTIONAL = {"bank_written", "bank", "bank_search", "reference", "reference_fingerprint", "reference_faces", "reference_content"}
VIDEO_ONLY = {"frames_per_video", "segment", "deinterlace"}  # other values of these: images are still taken over
TAKEN_OVER = ("ok", "no_face")  # the statuses a resumed scan keeps; errors and files not scanned are tried again
SHARE = 0.05  # of the scan's time at most spent rewriting the JSON while it runs
FIRST_AFTER = 30.0  # seconds: the JSON is first written this long after the scan starts, then as SHARE allows


def _shown(v: Any) -> str:
    text = json.dumps(v) if not isinstance(v, str) else repr(v)
    return text if len(text) <= 40 else text[:37] + "..."


def setting_difference(key: str, before: Any, now: Any) -> str:
    """One setting that differs, named with its option; of a group of settings (the detector's), the members
    that differ."""
    if isinstance(before, dict) and isinstance(now, dict):
        inner = [f"{k} {_shown(before.get(k))} -> {_shown(now.get(k))}" for k in sorted({*before, *now})
                 if before.get(k) != now.get(k)]
        return f"{DECIDING[key]}: {key} " + ", ".join(inner)
    return f"{DECIDING[key]}: {key} {_shown(before)} -> {_shown(now)}"


# what a record needs to be shown and written again (the scan's record layout, scan/records.py)
NEEDED = {"path": str, "status": str, "sha256": str, "kind": str, "n_faces": int, "n_tracks": int, "frames_sampled": int,
          "frames_with_face": int, "tracks": list, "faces": list, "notes": list}


def _complete(r: Any) -> bool:
    """Whether an earlier record can be taken over as it is: one of TAKEN_OVER with every field a record has, and a
    verdict with its score for a file that got one (a record trimmed by hand is scanned again)."""
    if not isinstance(r, dict) or r.get("status") not in TAKEN_OVER:
        return False
    if any(not isinstance(r.get(k), t) for k, t in NEEDED.items()):
        return False
    if not (all(isinstance(x, str) for x in r["notes"]) and all(isinstance(x, dict) for x in r["tracks"] + r["faces"])
            and finite_number(r.get("threshold")) and all(r.get(k) is None or finite_number(r[k]) for k in NUMBERS_OR_NONE)):
        return False
    iv = r.get("score_interval")
    if iv is not None and not (isinstance(iv, list) and len(iv) == 2 and all(finite_number(x) for x in iv)):
        return False
    return r["status"] != "ok" or (r.get("verdict") in ("FAKE", "REAL") and finite_number(r.get("score")))


NUMBERS_OR_NONE = ("fps", "duration_s", "width", "height", "pixel_aspect")


def finite_number(x: Any) -> bool:
    """A finite int or float (not a bool, not NaN: strict JSON readers refuse NaN)."""
    return isinstance(x, (int, float)) and not isinstance(x, bool) and math.isfinite(x)


def read_saved(path: Path, needed: dict[str, type]) -> dict[str, Any] | None:
    """The JSON document a scan or an evaluation saved at `path`; None when no file is there. ValueError when it is
    not UTF-8 JSON (nested too deep included) or lacks a key of `needed` with its type; one ForgeryDetError line
    when it cannot be read."""
    try:
        doc = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        return None
    except OSError as e:
        raise ForgeryDetError(f"cannot read {path_text(path)} ({os.strerror(e.errno or 0)})") from None
    except RecursionError:  # (UnicodeDecodeError is a ValueError already)
        raise ValueError("nested too deep") from None
    if not (isinstance(doc, dict) and all(isinstance(doc.get(k), t) for k, t in needed.items())):
        raise ValueError("not the document wanted")
    return doc


def read_earlier(path: Path) -> dict[str, Any] | None:
    """The JSON document of the earlier scan at `path` (checked before the model loads); None when there is no file
    there yet (nothing to resume: everything is scanned). One ForgeryDetError line for a file that is not a
    forgerydet scan's JSON, or one an other version of forgerydet wrote."""
    try:
        doc = read_saved(path, {"settings": dict, "files": list})
    except ValueError:
        raise ForgeryDetError(f"--resume: {path_text(path)} is not the JSON of a forgerydet scan (give the --json an "
                              f"earlier scan wrote, or leave out --resume)") from None
    if doc is None:
        return None
    if doc.get("forgerydet_version") != __version__:
        by = f"forgerydet {doc['forgerydet_version']}" if doc.get("forgerydet_version") else "an unknown version"
        raise ForgeryDetError(f"--resume: {path_text(path)} was written by {by}, this is forgerydet {__version__}: its "
                              f"scores may differ; scan again without --resume")
    return doc


def earlier_records(doc: dict[str, Any] | None, path: Path, settings: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """The records of the earlier scan (`doc`, read from `path`) that this scan of `settings` can take over, keyed by
    the file's place: those of files that got a verdict or hold no face; only images' when the settings differ in
    what videos alone depend on (VIDEO_ONLY: --frames, --start/--end, --deinterlace). One ForgeryDetError line when
    they differ in anything else that decides a score (DECIDING), naming each difference."""
    if doc is None:
        return {}
    before = doc["settings"]
    differ = [k for k in DECIDING if before.get(k) != settings.get(k)]
    kinds = ("image", "video") if not differ else ("image",) if set(differ) <= VIDEO_ONLY else ()
    changed = [setting_difference(k, before.get(k), settings.get(k)) for k in differ]
    if not kinds:
        if unrecorded := _unrecorded(before, settings, differ):  # no option of this forgerydet can match them
            raise ForgeryDetError(f"--resume: {path_text(path)} was written by an earlier forgerydet, which did not "
                                  f"record {', '.join(unrecorded)} as this one does: its verdicts cannot be checked "
                                  f"against this scan's settings; scan into another --json, or without --resume to "
                                  f"replace it")
        command = f" (it ran `{before['command']}`)" if isinstance(before.get("command"), str) else ""
        raise ForgeryDetError(f"--resume: {path_text(path)} was scanned with other settings{command}: "
                              f"{'; '.join(changed)}; resume with its options, or scan without --resume (or into "
                              f"another --json)")
    return by_place([r for r in doc["files"] if _complete(r) and r["kind"] in kinds], before.get("working_directory"))


def _unrecorded(before: dict[str, Any], settings: dict[str, Any], differ: list[str]) -> list[str]:
    """The settings of `differ` that the earlier scan's forgerydet did not record (a scan writes every DECIDING key
    but the OPTIONAL ones, each time) or recorded in an older form (the checkpoint's sha256 cut to 16 characters)."""
    sha, now = before.get("checkpoint_sha256"), settings.get("checkpoint_sha256")
    cut = isinstance(sha, str) and isinstance(now, str) and len(sha) < len(now) and now.startswith(sha)
    return [k for k in differ if (k not in before and k not in OPTIONAL and settings.get(k) is not None)
            or (k == "checkpoint_sha256" and cut)]


def by_place(records: list[dict[str, Any]], folder: Any) -> dict[str, dict[str, Any]]:
    """An earlier run's `records` keyed by every place each names (places), from `folder`, the one that run ran in
    (this one's when it recorded none); two records of one place that disagree (a hand edit) are neither taken."""
    folder = folder if isinstance(folder, str) else current_folder()  # None: this one's was deleted under it
    found: dict[str, dict[str, Any]] = {}
    clash: set[str] = set()
    for r in records:
        for key in places(r["path"], folder):
            if key in found and found[key] != r:
                clash.add(key)
            found[key] = r
    return {k: r for k, r in found.items() if k not in clash}


def places(path: str, folder: str | None) -> set[str]:
    """The places an earlier record's `path` names (resume.where), from `folder`, the one the earlier run ran in: as
    written, and as the name on disk of bytes that are not UTF-8 (fs_name). When that folder is gone (the project
    was moved or renamed since, and this run runs in its new place), a path inside it also names the same path in
    this run's folder; a file found so is taken over only if it holds the bytes judged then (take_over)."""
    found = set()
    for name in {path, fs_name(path)}:
        found.add(where(name, folder))
        if folder is not None and not os.path.isdir(folder):
            try:
                inside = os.path.relpath(os.path.normpath(os.path.join(folder, name)), folder)
            except ValueError:
                continue
            if inside != ".." and not inside.startswith(".." + os.sep):
                found.add(where(inside))
    return found - {None}


def file_kind(path: str | Path) -> str:
    """'image' or 'video', by the file's extension, as scan and evaluate tell them apart."""
    return "image" if Path(path).suffix.lower() in IMAGE_EXTS else "video"


CONTENT = ("status", "score", "score_interval", "n_faces", "face_scores")  # what a taken-over record gives


class Earlier:
    """The earlier run's records this one can take over (evalresume.earlier_scores, or earlier_records for a scan:
    keyed by place) for its `listed` files, and which of them it took over. A listed file takes over the record of
    its place when it holds the bytes scored then (resume.take_over); else, a record that no listed file's place
    matches, of the same bytes and kind (its sha256): the same bytes scored with the same settings get the same score wherever they lie, so a project
    moved or renamed, an evaluation run from another folder, or a file renamed (or a copy of a file no longer listed
    at its old place) is not scored again."""

    def __init__(self, records: dict[str, dict], listed: list[Path]) -> None:
        self.records = records
        self._placed = {id(records[k]) for f in (listed if records else []) if (k := where(f)) in records}
        found: dict[tuple[str, str], dict] = {}
        clash: set[tuple[str, str]] = set()
        for r in {id(r): r for r in records.values() if id(r) not in self._placed}.values():
            key = (file_kind(r["path"]), r["sha256"])
            if key in found and any(found[key].get(c) != r.get(c) for c in CONTENT):
                clash.add(key)  # the same bytes with other scores (a hand edit): neither is believed
            found[key] = r
        self._by_bytes = {k: r for k, r in found.items() if k not in clash}  # hashing a file only when one is left
        self._used: set[int] = set()

    def __bool__(self) -> bool:
        return bool(self.records)

    def take(self, f: Path) -> dict[str, Any] | None:
        """The earlier record `f` takes over, with `f`'s path and marked resumed; None: `f` is scored."""
        was = take_over(self.records, f)
        if was is not None or not self._by_bytes:
            return was
        try:
            digest = file_sha256(f)
        except OSError:
            return None
        r = self._by_bytes.get((file_kind(str(f)), digest))
        if r is None:
            return None
        self._used.add(id(r))
        return {**r, "path": path_text(f), "resumed": True}

    def kept(self, rest: list[Path]) -> list[dict]:
        """The records the metrics.json this one writes keeps as `earlier_files`, so that a later --resume can still
        take them over: those of `rest` (listed, not reached yet: a resumed evaluation stopped or crashed again),
        with their paths as given now, and those of no listed file (a resume given a shorter list, or files not
        reached that match by their bytes alone), under a place that exists where there is one."""
        records = [dict(self.records[k], path=path_text(f)) for f in rest if (k := where(f)) in self.records]
        return records + self._unlisted()

    def left_out(self) -> int:
        """How many earlier records this evaluation neither took over nor lists (said, and kept: kept)."""
        return len(self._unlisted())

    def _unlisted(self) -> list[dict]:
        others: dict[int, tuple[str, dict]] = {}
        for place, r in self.records.items():  # a record is found under several places (resume.places): kept once,
            if id(r) in self._placed or id(r) in self._used:  # under one that exists
                continue
            if id(r) not in others or not os.path.lexists(others[id(r)][0]):
                others[id(r)] = (place, r)
        return [dict(r, path=path_text(place)) for place, r in others.values()]


def fs_name(text: str) -> str:
    """A path as errors.path_text wrote it (each byte that is not UTF-8 as the four characters \\xNN) as the name on
    disk, with those bytes back (surrogate escapes, as os.fsdecode gives)."""
    if "\\x" not in text:
        return text
    raw = re.sub(rb"\\x([0-9a-fA-F]{2})", lambda m: bytes([int(m.group(1), 16)]), text.encode("utf-8"))
    return os.fsdecode(raw)


def where(path: str | Path, folder: str | None = None) -> str | None:
    """A file's place, links resolved, a relative path taken from `folder` (the earlier scan's working directory;
    None: this one's): the same file given relative, absolute or through a link is one file. None for a path no
    file can have (a NUL character, in a JSON edited by hand), and for a relative one where the current folder was
    deleted under the process."""
    try:
        return os.path.realpath(path if os.path.isabs(path) else os.path.join(folder or os.getcwd(), path))
    except (ValueError, OSError):
        return None


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


def not_reached(earlier: dict[str, dict[str, Any]], files: list[Path], threshold: float, why: str) -> list[dict[str, Any]]:
    """The records of files a (resumed) scan has not reached: the earlier scan's record where it has one, kept as
    it was (its sha256 names the bytes it judged; the next --resume checks them), else a not_scanned one saying
    `why`."""
    return [dict(earlier[k], path=path_text(f)) if (k := where(f)) in earlier else
            empty_record(f, threshold, "not_scanned", why) for f in files]


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
        self._write(results, {**settings, "in_progress": True, "finished": None, "seconds": None,
                              "interrupted": None})
        took = self._clock() - t0
        self._next = self._clock() + max(took / self._share, 1.0)
        self.writes += 1


class GuardedOutput:
    """The --json (or --csv) file as this scan last left it. A write finds whether another process wrote it since
    (two scans into one --json at once) and then writes beside it, NAME.PID.json, instead of replacing that one's
    work, and goes on writing there (`elsewhere`)."""

    def __init__(self, path: Path) -> None:
        self.path, self._state, self.elsewhere = Path(path), file_state(path), None

    def write(self, text: str, *, durable: bool = False) -> Path:
        if self.elsewhere is None and file_state(self.path) != self._state:
            self.elsewhere = self.path.with_name(f"{self.path.stem}.{os.getpid()}{self.path.suffix}")
        target = self.elsewhere or self.path
        write_text_atomic(target, text, durable=durable)
        self._state = file_state(self.path)
        return target


def resumed_line(taken: int, path: Path, scanned: int, left_out: int = 0) -> str:
    """What `scan --resume` says at its end: how many files it took over, how many it scanned, and how many of the
    earlier scan's files this one was not given (their records are not in the JSON any more)."""
    return (f"{taken} file{'' if taken == 1 else 's'} taken over from the earlier scan in {printable(path_text(path))} "
            f"(the same bytes, judged with the settings that decide their scores now), {scanned} scanned"
            + (f"; {left_out} file{'' if left_out == 1 else 's'} of the earlier scan not given to this one "
               f"{'is' if left_out == 1 else 'are'} left out of the JSON" if left_out else ""))
