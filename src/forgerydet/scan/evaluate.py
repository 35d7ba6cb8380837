"""Evaluation: a labelled list of videos, images or face crops -> frame-level and video(file)-level AUC,
AP, EER and accuracy, per group and overall, with the same scanning code as `scan`.

LIST.csv columns: path, label (0/1 or real/fake), optional group (dataset/method). Relative paths are
resolved against the list's folder. scan/evalsets.py makes the same items from dataset layouts."""

from __future__ import annotations

import contextlib
import json
import os
from pathlib import Path
from typing import Any, Callable

import numpy as np

from forgerydet import __version__
from forgerydet.errors import ForgeryDetError, current_folder, json_safe, path_text
from forgerydet.faces.media import IMAGE_EXTS, is_media
from forgerydet.io import file_sha256, write_text_atomic
from forgerydet.metrics import group_samples, grouped_metrics, roc_plot
from forgerydet.model.inputs import load_image
from forgerydet.pairs.labels import Item, check_classes, read_list
from forgerydet.paths import check_output, folder_held, leftovers_text
from forgerydet.runtime import Progress
from forgerydet.scan.config import ScanConfig
from forgerydet.scan.evalnotes import evaluation_notes
from forgerydet.scan.evalresume import (METRICS, PLOT_NAMES, earlier_scores, read_earlier_evaluation, resumed_text,
                                        scored_record)
from forgerydet.scan.records import close_call_summary, json_record, settings_notes
from forgerydet.scan.resume import Checkpointer, Earlier
from forgerydet.scan.scanner import Scanner

def evaluate(
    source: str | Path | list[Item],
    checkpoint: str | Path | None,
    *,
    config: ScanConfig | None = None,
    crops: bool = False,
    out_dir: str | Path | None = None,
    progress: Progress | None = None,
    notes: list[str] | None = None,
    resume: bool = False,
    say: Callable[[str], None] | None = None,
    command: str | None = None,
) -> dict[str, Any]:
    """Score every file of `source` (a LIST.csv, or items from scan.evalsets) and compute metrics. crops=True:
    images are already face crops (scored as they are, no detection). Writes metrics.json and roc.png into out_dir when given: the folder is checked before
    any scanning, and each file is written on its own; a write that fails anyway (full disk) is listed in
    result["output_errors"] instead of losing the metrics. result["problems"] lists what makes the result
    incomplete (skipped files, a class left without scores): the CLI exits 1 when it is not empty. `notes` (what
    reading a dataset's layout found, e.g. a method left out) lead result["notes"], which metrics.json keeps.

    With out_dir, the files scored so far are saved into metrics.json while it runs (evalresume), the folder is
    held against a second evaluation at once (paths.folder_held), and resume=True takes over the files an
    earlier evaluation there scored with the same settings and bytes (result["resumed"]); without it, an unfinished
    evaluation's saved scores there are refused, not replaced. `say` gets what is worth saying before the scoring
    (the files --resume cannot take over for a changed setting). `command`, the command line that runs it, is kept
    in metrics.json, so that a refusal to replace it can name the command that goes on with it."""
    if resume and not out_dir:
        raise ForgeryDetError("--resume goes on with the evaluation whose --out folder is given")
    if not out_dir:
        return _evaluate(source, checkpoint, config, crops, None, progress, notes, False, None, say, command)
    check_output(out_dir, "--out", folder=True, writes=(METRICS, *PLOT_NAMES))  # a folder there: before the scoring
    with folder_held(out_dir, "--out", "evaluation") as removed:  # first: one running there is said as such, not as
        if removed and say:  # unfinished; the temp files that a killed evaluation left there are removed
            say(leftovers_text(removed, out_dir))
        earlier_doc = read_earlier_evaluation(out_dir, resume)  # a bad file is said before the model loads
        if resume and earlier_doc is None and say:  # a mistyped --out would score a night's set again
            say(f"--resume: no earlier evaluation in {path_text(out_dir)}: every file is scored")
        return _evaluate(source, checkpoint, config, crops, out_dir, progress, notes, resume, earlier_doc, say,
                         command)


def _evaluate(source: str | Path | list[Item], checkpoint: str | Path | None, config: ScanConfig | None, crops: bool,
              out_dir: str | Path | None, progress: Progress | None, notes: list[str] | None, resume: bool,
              earlier_doc: dict[str, Any] | None, say: Callable[[str], None] | None,
              command: str | None) -> dict[str, Any]:
    if isinstance(source, list):
        if out_dir:  # an --out inside a --real folder: its roc.png was scored as a real face on the next run
            source = [it for it in source if not _written_here(Path(out_dir), it.path)]
        items, title = check_classes(source, "the evaluation set"), "the evaluation set"
    else:
        items, title = read_list(source), Path(source).name
        gone = [it.path for it in items if not os.path.lexists(it.path)]
        if gone:  # a bad path is said before the model loads, not after the other files were scored
            raise ForgeryDetError(f"{source}: {len(gone)} listed file(s) not found (e.g. {path_text(gone[0])}); relative "
                                  f"paths are taken from the list's folder: fix the list")
        if odd := [it.path for it in items if it.path.is_dir() or not is_media(it.path)]:  # else found after loading
            raise ForgeryDetError(f"{source}: {len(odd)} listed path(s) are not image or video files (e.g. "
                                  f"{path_text(odd[0])}): fix the list")
    clash = [it.path for it in items if out_dir and _written_here(Path(out_dir), it.path, any_file=True)]
    if clash:  # a face of the user's at roc.png: it would be replaced by the plot
        raise ForgeryDetError(f"{path_text(clash[0])} is to be scored and is where this evaluation writes its "
                              f"{clash[0].name}: it would be replaced; give another --out")
    try:
        scanner = Scanner(checkpoint, config or ScanConfig())
    except KeyboardInterrupt:
        raise _stopped(out_dir, "while the model loaded, before any file was scored") from None
    thr = scanner.threshold
    settings = scanner.settings()
    restricted: list[str] = []
    earlier = Earlier(earlier_scores(earlier_doc, Path(out_dir or ".") / METRICS, settings, crops, restricted)
                      if resume else {}, [it.path for it in items])
    for line in restricted:
        if say:
            say(line)
    head = {"forgerydet_version": __version__, "checkpoint": settings, "threshold": thr, "crops": crops,
            "working_directory": current_folder()} | ({"command": command} if command else {})
    taken, save_notes = 0, []
    face_y, face_s, face_g, face_p, face_f = [], [], [], [], []  # face_f: the file of each face (a bootstrap cluster)
    file_y, file_s, file_g, file_p = [], [], [], []
    records, skipped = [], []
    done, interrupted = 0, False
    keeper = (Checkpointer(lambda recs, _: _save_progress(Path(out_dir), head, recs, skipped, items, done, earlier))
              if out_dir else None)
    try:
        for i, it in enumerate(items):
            if progress:
                progress(i, len(items), it.path.name)
            was = earlier.take(it.path) if earlier else None
            rec = scored_record(was) if was is not None else _score_item(scanner, it, crops)
            taken += was is not None
            resumed = {"resumed": True} if was else {}
            if rec["status"] != "ok":  # (a file without a face keeps its sha256: --resume need not scan it again)
                skipped.append({"path": path_text(it.path), "status": rec["status"], "error": rec.get("error"),
                                "sha256": rec.get("sha256")} | resumed)
            else:
                n = len(rec["faces"])
                face_y += [it.label] * n
                face_s += [f["score"] for f in rec["faces"]]
                face_g += [it.group] * n
                face_p += [it.pool] * n
                face_f += [len(file_y)] * n
                file_y.append(it.label)
                file_s.append(rec["score"])
                file_g.append(it.group)
                file_p.append(it.pool)
                records.append({"path": path_text(it.path), "label": it.label, "group": it.group, "score": rec["score"],
                                "score_interval": rec.get("score_interval"), "n_faces": n, "sha256": rec.get("sha256"),
                                "face_scores": [f["score"] for f in rec["faces"]]} | resumed)
            done = i + 1
            if keeper is not None and keeper.due():  # what a crash would otherwise lose
                keeper = _save_so_far(keeper, records, save_notes)
    except KeyboardInterrupt:  # a long evaluation stopped by Ctrl-C still reports the files it scored
        done = len(records) + len(skipped)  # each file reached went to one of them, whole (`records` grows last)
        if not records:
            when = f"after {done} of {len(items)} listed file(s), before any got a score"
            if keeper is None or not keeper.writes:
                raise _stopped(out_dir, when) from None
            try:  # this run's saves already replaced an earlier evaluation's file: what it found is kept
                _save_progress(Path(out_dir), head, records, skipped, items, done, earlier)
            except (OSError, ForgeryDetError) as e:
                raise KeyboardInterrupt(f"interrupted {when}; saving what was found failed ({e})") from None
            raise KeyboardInterrupt(f"interrupted {when}: the {len(skipped)} file(s) without a face or unreadable are "
                                    f"saved in {path_text(Path(out_dir) / METRICS)}; the same command with --resume goes "
                                    f"on from there") from None
        interrupted = True
        k, m = len(records), sum(r["n_faces"] for r in records)  # drop the face scores of a half-added file
        file_y, file_s, file_g, file_p = file_y[:k], file_s[:k], file_g[:k], file_p[:k]
        face_y, face_s, face_g, face_p, face_f = face_y[:m], face_s[:m], face_g[:m], face_p[:m], face_f[:m]
    if progress and not interrupted:
        progress(len(items), len(items), "")
    if not records:
        raise ForgeryDetError("no listed file produced a score (all unreadable or without faces)")
    try:  # seconds on a large set (bootstrap intervals)
        result = {
            **head,
            "in_progress": False,
            "frame_level": grouped_metrics(face_y, face_s, face_g, thr, ci=True, pools=face_p, clusters=face_f),
            "video_level": grouped_metrics(file_y, file_s, file_g, thr, ci=True, pools=file_p),
            "close_calls": close_call_summary(records, thr),
            "files": records,
            "skipped": skipped,
        }
    except KeyboardInterrupt:
        when = f"while the metrics of the {len(records)} scored file(s) were computed"
        if not out_dir:
            raise KeyboardInterrupt(f"interrupted {when}") from None
        try:  # the scores are kept: --resume computes the metrics without scoring again
            _save_progress(Path(out_dir), head, records, skipped, items, done, earlier)
        except (OSError, ForgeryDetError) as e:
            raise KeyboardInterrupt(f"interrupted {when}; saving the scores failed too ({e})") from None
        rest = len(items) - done  # a second Ctrl-C, while the metrics of an interrupted evaluation were computed
        then = (f"scores the other {rest} listed file(s) and computes the metrics" if rest else
                "computes them without scoring again")
        raise KeyboardInterrupt(f"interrupted {when}: the scores are saved in {path_text(Path(out_dir) / METRICS)} "
                                f"without metrics; the same command with --resume {then}") from None
    problems = []
    if resume:
        result["resumed"] = {"from": path_text(Path(out_dir) / METRICS), "files_taken_over": taken}
        if earlier_doc is not None and not interrupted:
            result["resumed"]["line"] = resumed_text(taken, Path(out_dir) / METRICS, done - taken,
                                                     earlier.left_out())
    if interrupted:
        result["interrupted"] = {"done": done, "total": len(items)}
        result["not_scored"] = [path_text(it.path) for it in items[done:]]  # as scan marks them not_scanned
        problems.append(f"interrupted after {done} of {len(items)} listed file(s): the metrics use the files scored so far"
                        + ("; the same command with --resume scores the rest" if out_dir else ""))
    if skipped:
        problems.append(f"{len(skipped)} of {len(items)} listed file(s) were skipped (see above); the metrics use the rest")
    if len(set(file_y)) < 2:
        only = "real" if set(file_y) == {0} else "fake"
        why = ("the evaluation was interrupted before any other was scored" if interrupted and not skipped
               else "fix or replace the skipped files")
        problems.append(f"only {only} files got a score, so AUC, AP and EER are undefined: {why}")
    if earlier:  # for a later --resume: the earlier scores of files not reached, or not listed in this evaluation
        result["earlier_files"] = earlier.kept([it.path for it in items[done:]])
    result["problems"] = problems
    # what reading the layout found, how this scoring departs from the calibration, what the files are to the model
    result["notes"] = (list(notes or []) + settings_notes(result["checkpoint"], scanner.config.threshold)
                       + evaluation_notes(items, crops, scanner.checkpoint.meta) + restricted + save_notes)
    result["output_errors"] = []
    if out_dir:
        curves = {"frame level": (face_y, face_s), "video level": (file_y, file_s)}
        _write_outputs(result, Path(out_dir), title, {k: v for k, v in curves.items() if len(set(v[0])) == 2},
                       group_curves(file_y, file_s, file_g, file_p))
    return result


def _stopped(out_dir: str | Path | None, when: str) -> KeyboardInterrupt:
    """Ctrl-C or SIGTERM before this run wrote anything: an earlier evaluation's outputs in --out are left as they
    are (they may be hours of scores that --resume takes up) and the message says whose they are, for the CLI's
    error line."""
    there = [n for n in (METRICS, *PLOT_NAMES) if out_dir and (Path(out_dir) / n).is_file()]
    return KeyboardInterrupt(f"interrupted {when}: nothing written" + (
        f"; {', '.join(there)} in {out_dir} {'is' if len(there) == 1 else 'are'} an earlier evaluation's, left as "
        f"{'it was' if len(there) == 1 else 'they were'}" if there else ""))


def _save_progress(out: Path, head: dict[str, Any], records: list[dict], skipped: list[dict], items: list[Item],
                   done: int, earlier: Earlier) -> None:
    """The files scored so far (of `items`, the first `done` reached) into metrics.json (in_progress, no metrics),
    fsynced, for --resume after a crash, with the files not reached yet and the earlier evaluation's scores that
    this one has not taken over (resume.Earlier.kept: a resumed evaluation that crashes again keeps them); an
    earlier evaluation's plots are removed, as they are not of these scores."""
    rest = items[done:]
    doc = {**head, "in_progress": True, "files": records, "skipped": skipped,
           "not_scored": [path_text(it.path) for it in rest],
           "earlier_files": earlier.kept([it.path for it in rest])}
    write_text_atomic(out / METRICS, json.dumps(json_safe(doc), indent=1), durable=True)
    for name in PLOT_NAMES:
        (out / name).unlink(missing_ok=True)


def _save_so_far(keeper: Checkpointer, records: list[dict], notes: list[str]) -> Checkpointer | None:
    """keeper.write, where a failed write (full disk) stops the saving, said in `notes`, but not the evaluation,
    whose outputs are still written at its end."""
    try:
        keeper.write(records, {})
    except (OSError, ForgeryDetError) as e:
        notes.append(f"the scores so far could not be saved while the evaluation ran ({e}); a crash would have lost "
                     f"them (the outputs are written at its end)")
        return None
    return keeper


def _write_outputs(result: dict[str, Any], out: Path, title: str, curves: dict, per_group: dict) -> None:
    """metrics.json, then the plots, each on its own: a write that fails (full disk) goes to result["output_errors"]
    and the others are still written. Ctrl-C or SIGTERM while writing stops the rest; what was not written is named
    there (and in metrics.json when it was written: it is written again, best-effort) and result["output_interrupted"]
    is set. An earlier evaluation's plots are removed first: they would sit beside these metrics as if they were
    theirs."""
    jobs = [("metrics.json", "metrics_json", lambda p: write_text_atomic(p, json.dumps(json_safe(result), indent=1)))]
    if curves:
        jobs.append(("roc.png", "roc_png", lambda p: roc_plot(curves, p, f"ROC: {title}")))
    if len(per_group) > 1:
        jobs.append(("roc_groups.png", "roc_groups_png",
                     lambda p: roc_plot(per_group, p, f"ROC per group (video level): {title}")))
    for name in PLOT_NAMES:  # first: killed between metrics.json and a plot, an earlier evaluation's would be left beside
        (out / name).unlink(missing_ok=True)  # these metrics as if it were theirs
    written: list[str] = []
    try:
        for name, key, write in jobs:
            try:
                result[key] = str(write(out / name))
                written.append(name)
            except ForgeryDetError as e:
                result["output_errors"].append(str(e))
    except KeyboardInterrupt:
        left = [name for name, _, _ in jobs if name not in written]
        result["output_errors"].append(f"interrupted while writing the outputs: {', '.join(left)} not written")
        result["output_interrupted"] = True
    if "metrics.json" in written and result["output_errors"]:  # written first: it says what went missing after it
        with contextlib.suppress(ForgeryDetError, KeyboardInterrupt):
            write_text_atomic(out / "metrics.json", json.dumps(json_safe(result), indent=1))


def _written_here(out_dir: Path, path: Path, any_file: bool = False) -> bool:
    """Whether `path` is a plot evaluate writes into out_dir: one an earlier evaluation wrote (any_file: any file)."""
    if path.name not in PLOT_NAMES or os.path.realpath(path.parent) != os.path.realpath(out_dir):
        return False
    try:
        with open(path, "rb") as f:
            return any_file or b"Matplotlib" in f.read(4096)  # the PNG's Software text chunk
    except OSError:
        return any_file


def group_curves(y: list[int], s: list[float], g: list[str], p: list[str]) -> dict[str, tuple[Any, Any]]:
    """Each group's file-level (labels, scores) with both classes, as grouped_metrics measures it: a group of
    fakes against the reals it borrows (FF++ methods against the originals); groups of reals alone are left out."""
    ya, sa = np.asarray(y), np.asarray(s)
    out = {}
    for name, (sel, against) in group_samples(ya, np.asarray(g, dtype=object), np.asarray(p, dtype=object)).items():
        # a group of reals against every fake repeats the overall curve (and, beside one fake folder, that folder's)
        if len(set(ya[sel])) == 2 and against != "fake":
            out[name if against is None else f"{name} vs {against}"] = (ya[sel], sa[sel])
    return out


def _score_item(scanner: Scanner, it: Item, crops: bool) -> dict[str, Any]:
    """One listed file's record: a face crop scored as it is (crops=True), else scanned as `scan` does."""
    if crops and it.path.suffix.lower() in IMAGE_EXTS:
        try:
            img = load_image(it.path, scanner.model.img_size)
            digest = file_sha256(it.path)  # which bytes were scored: --resume takes the score over only for these
        except ForgeryDetError as e:
            return {"path": path_text(it.path), "status": "error", "error": path_text(e)}
        except OSError as e:
            return {"path": path_text(it.path), "status": "error", "error": f"{path_text(it.path)}: {e.strerror}"}
        s = float(scanner._score([img])["p"][0])
        return {"path": path_text(it.path), "status": "ok", "score": s, "faces": [{"score": s}], "sha256": digest}
    return json_record(scanner.scan_file(it.path))
