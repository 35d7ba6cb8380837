"""`evaluate --resume`: an evaluation of thousands of files (a DFDC test set is hours on a CPU) that crashes or is
stopped goes on where it was. While it runs, evaluate saves the files scored so far into --out/metrics.json every so
often (`in_progress`, no metrics yet: resume.Checkpointer times it); each file's record keeps its sha256 and every
face's score, so that frame-level metrics can be computed again without scoring. `--resume` reads that file back
(or a finished evaluation's, to score only the files a grown list adds) and takes over each file that was scored
with the settings that decide a score (resume.DECIDING, less the threshold: it decides the accuracy only, which is
computed again from the scores) and still holds the bytes scored then; the rest are scored."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from forgerydet import __version__
from forgerydet.errors import ForgeryDetError, path_text
from forgerydet.scan.resume import (DECIDING, VIDEO_ONLY, by_place, file_kind, finite_number, read_saved,
                                    setting_difference)

METRICS = "metrics.json"
PLOT_NAMES = ("roc.png", "roc_groups.png")  # the plots evaluate writes beside metrics.json
SCORE_DECIDING = [k for k in DECIDING if k != "threshold"]
CROP_FREE = VIDEO_ONLY | {"aggregation", "detector"}  # a face crop scored as it is (--crops) depends on none of these


def read_earlier_evaluation(out_dir: str | Path, resume: bool = True) -> dict[str, Any] | None:
    """The earlier evaluation's metrics.json in `out_dir` (read before the model loads); None when there is none.
    One ForgeryDetError line for something there that is not a file (a named pipe would hang the reading and the
    writing), for a file that is not an evaluation's, or one written by another version of forgerydet (or by one
    that did not keep the scores --resume needs). resume=False (an evaluation that starts over): None, or one line
    when it holds saved scores this one would replace (holds_scores)."""
    path = Path(out_dir) / METRICS
    if os.path.exists(path) and not os.path.isfile(path):
        raise ForgeryDetError(f"{path_text(path)} is not a file (a folder, a named pipe or a device): evaluate writes its "
                              f"metrics there; remove it or give another --out")
    try:
        doc = read_saved(path, {"checkpoint": dict, "files": list})
    except ValueError:
        if not resume:
            return None  # not an evaluation's: replaced, as before
        raise ForgeryDetError(f"--resume: {path_text(path)} is not the metrics.json of a forgerydet evaluation (give "
                              f"the --out an earlier evaluation wrote, or leave out --resume)") from None
    if doc is None:
        return None
    version = doc.get("forgerydet_version")
    by = f"forgerydet {version}" if isinstance(version, str) else "a forgerydet that did not keep each file's scores"
    if not resume:
        if held := holds_scores(doc):
            go_on = (resume_advice(doc) if version == __version__ else
                     f"it was written by forgerydet {version}, which can go on with it, not this forgerydet "
                     f"{__version__}" if isinstance(version, str) else
                     f"it was written by {by}: this forgerydet {__version__} cannot go on with it")
            raise ForgeryDetError(f"{path_text(path)} holds the saved scores of {held} file(s) of an "
                                  f"unfinished evaluation (or kept for a later --resume), which this one would replace: "
                                  f"{go_on}; to start over, remove it or give another --out")
        return None
    if version != __version__:
        raise ForgeryDetError(f"--resume: {path_text(path)} was written by {by}, this is forgerydet {__version__}: "
                              f"its scores may differ or cannot be taken over; "
                              + ("remove it or give another --out to start over" if holds_scores(doc)
                                 else "evaluate again without --resume"))
    return doc


def _records(doc: dict[str, Any], key: str) -> list:
    return doc[key] if isinstance(doc.get(key), list) else []


def holds_scores(doc: dict[str, Any]) -> int:
    """How many files' saved scores an evaluation's metrics.json holds that a rerun without --resume would lose: all
    of them (scored, found without a face, kept from before) for an unfinished evaluation (saved while it ran, or
    stopped by Ctrl-C or SIGTERM), else those kept for a later --resume (earlier_files); 0 when none."""
    keys = ("files", "skipped", "earlier_files") if doc.get("in_progress") is True or doc.get("interrupted") else (
        "earlier_files",)
    return sum(1 for k in keys for r in _records(doc, k) if _complete(r))  # what --resume can take over


def resume_advice(doc: dict[str, Any]) -> str:
    """What goes on with the evaluation of `doc`: its options with --resume, and the command that ran it (recorded by
    the CLI; its relative paths are from the folder it ran in, also named)."""
    command, folder = doc.get("command"), doc.get("working_directory")
    ran = (f" (it ran `{command}`" + (f" in {path_text(folder)}" if isinstance(folder, str) else "") + ")"
           if isinstance(command, str) else "")
    return f"its options with --resume go on with it{ran}"


def _probability(x: Any) -> bool:
    return finite_number(x) and 0.0 <= x <= 1.0


def _complete(r: Any) -> bool:
    """Whether an earlier record can be taken over: a path and the sha256 of the bytes scored, and either a file
    found to hold no face (status no_face, from the skipped list) or the file's score and every face's (as many as
    n_faces, at least one), probabilities; a score interval of two, in order, or none."""
    if not isinstance(r, dict) or not all(isinstance(r.get(k), str) for k in ("path", "sha256")):
        return False
    if r.get("status") == "no_face":
        return r.get("error") is None or isinstance(r["error"], str)
    faces = r.get("face_scores")
    if not (_probability(r.get("score")) and isinstance(faces, list) and faces and all(_probability(s) for s in faces)
            and r.get("n_faces") == len(faces) and not isinstance(r.get("n_faces"), bool)):
        return False
    iv = r.get("score_interval")
    return iv is None or (isinstance(iv, list) and len(iv) == 2 and all(_probability(x) for x in iv) and iv[0] <= iv[1])


def earlier_scores(doc: dict[str, Any] | None, path: Path, settings: dict[str, Any], crops: bool,
                   notes: list[str] | None = None) -> dict[str, dict]:
    """The earlier evaluation's file records (`doc`, read from `path`) that this one, of Scanner `settings` and
    `crops`, can take over, keyed by the file's place (resume.where): files scored, and files found to hold no face.
    Videos alone when --crops differs (it changes how images are scored), images alone when a setting only videos
    depend on differs (--frames; with --crops both times also --aggregation and the detector's, as a crop is scored
    without detection and alone), and then a line saying so is added to `notes`; one ForgeryDetError line, naming
    each difference, when both or anything else that decides a score differs."""
    if doc is None:
        return {}
    before = doc["checkpoint"]
    differ = [k for k in SCORE_DECIDING if before.get(k) != settings.get(k)]
    changed = [setting_difference(k, before.get(k), settings.get(k)) for k in differ]
    kinds = {"image", "video"}
    if differ:
        kinds.discard("video")
    if set(differ) - (CROP_FREE if crops and doc.get("crops") is True else VIDEO_ONLY):
        kinds.discard("image")
    if doc.get("crops") is not crops:
        kinds.discard("image")
        c = doc.get("crops")
        was = "given" if c is True else "not given" if c is False else f"{c!r} (not an evaluation's)"
        changed.append(f"--crops: {was} -> {'given' if crops else 'not given'}")
    saved = [r for k in ("files", "earlier_files", "skipped") for r in _records(doc, k) if _complete(r)]
    if saved and not any(file_kind(r["path"]) in kinds for r in saved):  # nothing of the kind still taken over: it
        kinds = set()  # would go on, take nothing over, and drop every saved score (--crops forgotten on a resume)
    if not kinds:
        how = (f"{resume_advice(doc)}; to start over, remove it or give another --out" if holds_scores(doc)
               else "resume with its options, or evaluate without --resume (or into another --out)")
        raise ForgeryDetError(f"--resume: {path_text(path)} was scored with other settings: {'; '.join(changed)}; "
                              f"{how}")
    if changed and notes is not None:
        other = "images" if kinds == {"video"} else "videos"
        notes.append(f"--resume: {path_text(path)} was scored with other settings ({'; '.join(changed)}): only its "
                     f"{next(iter(kinds))}s are taken over, its {other} are scored again (and the scores of its {other} "
                     f"that this evaluation does not list are not kept for a later --resume: they were made with the "
                     f"other settings)")
    # files scored, the scores of files not reached or not listed that the evaluation before had, files without a face
    return by_place([r for r in saved if file_kind(r["path"]) in kinds], doc.get("working_directory"))


def scored_record(earlier: dict[str, Any]) -> dict[str, Any]:
    """A taken-over file record in the shape a scored file's has (evaluate's `_score_item`), or a file found to hold
    no face."""
    if earlier.get("status") == "no_face":
        return {"status": "no_face", "error": earlier.get("error"), "sha256": earlier["sha256"], "resumed": True}
    return {"status": "ok", "score": earlier["score"], "score_interval": earlier.get("score_interval"),
            "sha256": earlier["sha256"], "faces": [{"score": s} for s in earlier["face_scores"]], "resumed": True}


def resumed_text(taken: int, path: Path, scored: int, left_out: int) -> str:
    """What `evaluate --resume` says: files taken over, files scored, earlier files not in this list."""
    return (f"{taken} file{'' if taken == 1 else 's'} taken over from the earlier evaluation in {path_text(path)} (the "
            f"same bytes, scored with the settings that decide their scores now), {scored} scored"
            + (f"; {left_out} file{'' if left_out == 1 else 's'} of the earlier evaluation not in this one "
               f"{'is' if left_out == 1 else 'are'} left out of the metrics (kept in {METRICS} as earlier_files, for a "
               f"later --resume)" if left_out else ""))
