"""The scan result record, one per file: its layout and its JSON form (the only owner of that format; the
CLI's --json/--csv and the report read it), and which faces keep their pictures for a report.

    path, kind ('video'|'image'), status ('ok'|'no_face'|'error'|'not_scanned'), error, verdict ('FAKE'|'REAL'),
    score (aggregated fake probability), score_interval ([low, high]: the score's central 90 % over resamplings of
    the sampled frames, aggregate.frame_interval; None for an image), threshold, frames_sampled, frames_with_face,
    frames_deinterlaced (sampled frames of an interlaced video, deinterlaced before detection: faces/playback.py),
    frames_unreadable (sampled frames of a damaged or cut-off video that could not be decoded and were skipped),
    pixel_aspect (the stored frames' sample aspect ratio; boxes are in frames stretched to square pixels), n_faces,
    n_tracks, fps and duration_s (a video's frame rate and length as its container states them; None for an image),
    width and height (of the decoded frames, square pixels), sha256 (of the file's bytes: which file was judged),
    tracks [{track_id, score, n_faces}], faces [{frame_index, time, track_id, box, confidence, score,
    neighbours [{slot, similarity, source | reference fields}], crop, attention}], notes [why a verdict deserves
    less trust], timing, reference, resumed (True: taken over from an earlier scan's JSON by `scan --resume`,
    scan/resume.py; absent otherwise); for a report only (never in the JSON): overview (a still image, shrunk, on
    which the report numbers its faces)"""

from __future__ import annotations

import csv
import io
import json
from collections import Counter
from pathlib import Path
from typing import Any

import numpy as np

from forgerydet import __version__
from forgerydet.errors import json_safe, path_text
from forgerydet.faces.pipeline import first_frame_only
from forgerydet.faces.segment import clock
from forgerydet.io import file_sha256
from forgerydet.scan.html import score_text, threshold_text

MAX_FACES = 24  # faces a report shows per file (and whose crops a scan keeps)
# Faces whose box's shorter side (frame pixels) is below this, as a file's median, get a note. bench/robustness.py
# (2026-12-01): DFDC crops of ~100 px (boxes ~75 px) scored AUC 0.909 as they are and 0.727 at half size, while
# FF++ crops at half size (boxes ~100 px) lost nothing; the line lies between.
SMALL_FACE_PX = 64


def empty_record(path: str | Path, threshold: float | None = None, status: str = "ok", error: str | None = None) -> dict[str, Any]:
    """A file's result record before anything is known (see scan/records.py for the layout). The path
    is stored as text (errors.path_text: a non-UTF-8 byte of a file name as \\xNN)."""
    return {"path": path_text(path), "kind": None, "status": status, "error": None if error is None else path_text(error),
            "verdict": None, "score": None, "score_interval": None, "threshold": threshold, "frames_sampled": 0,
            "frames_with_face": 0, "frames_deinterlaced": 0, "frames_unreadable": 0, "pixel_aspect": 1.0, "n_faces": 0, "n_tracks": 0, "fps": None, "duration_s": None,
            "width": None, "height": None, "sha256": None, "tracks": [], "faces": [], "notes": []}


def media_facts(path: Path, src: Any) -> dict[str, Any]:
    """What a record says of the scanned file itself (faces.pipeline.SourceFaces `src`): its frame rate and length
    (videos), the decoded frames' size and the sha256 of its bytes, so that a finding names the exact file."""
    info, still = src.info, src.still
    width, height = (info.width, info.height) if info is not None else \
        (int(still.shape[1]), int(still.shape[0])) if still is not None else (None, None)
    try:
        digest: str | None = file_sha256(path)
    except OSError:  # gone or unreadable since it was decoded a moment ago: the rest of the record stands
        digest = None
    return {"fps": info.fps if info is not None and info.fps > 0 else None,
            "duration_s": info.duration if info is not None and info.fps > 0 else None,
            "width": width, "height": height, "sha256": digest}


def reliability_notes(faces: list[dict[str, Any]], threshold: float | None = None, verdict: str = "",
                      small_px: float = SMALL_FACE_PX) -> list[str]:
    """Why a file's verdict deserves less trust, from its face records: small faces (the median shorter box
    side under small_px frame pixels), on which the detector is measurably weaker (SMALL_FACE_PX); for a FAKE
    verdict, also when the faces at or above the threshold are small while most of the file's are not (a face in
    the background deciding the verdict of a crowded scene)."""
    def note(group: list[dict[str, Any]], what: str) -> list[str]:
        median = float(np.median([min(f["box"][2] - f["box"][0], f["box"][3] - f["box"][1]) for f in group]))
        if median >= small_px:
            return []
        shown = f"{median:.0f}" if round(median) < small_px else f"{np.floor(median * 10) / 10:.1f}"  # not '64' under 64
        return [f"{what} (median {shown} px): less reliable"]

    if not faces:
        return []
    above = [f for f in faces if threshold is not None and verdict == "FAKE" and f["score"] >= threshold]
    return note(faces, "small faces") or (note(above, "the faces above the threshold are small") if above else [])


def segment_note(kind: str, start: float | None, end: float | None, duration: float | None) -> list[str]:
    """A video sampled in part (--start/--end): the verdict speaks for that part only."""
    start = start or 0.0
    if kind != "video" or start <= 0 and (end is None or duration and end >= duration):  # the whole video after all
        return []
    stop = min(end, duration) if end is not None and duration else end if end is not None else duration
    part = f"{clock(start)}-{clock(stop)}" if stop is not None else f"from {clock(start)} on"
    length = f" of {clock(duration)}" if duration else ""
    return [f"only {part}{length} was sampled (--start/--end): the verdict is about that part"]


def deinterlaced_note(deinterlaced: int, sampled: int) -> list[str]:
    """Say so when sampled frames showed interlacing combing and were deinterlaced before detection (one field
    kept, the other interpolated from it): interlaced broadcast or DVD footage."""
    if deinterlaced == 0:
        return []
    return [f"interlaced: {deinterlaced} of {sampled} frames deinterlaced"]


def unreadable_note(unreadable: int, decoded: int) -> list[str]:
    """Say so when sampled frames could not be decoded (a damaged or cut-off video): the verdict rests on the others."""
    if unreadable == 0:
        return []
    return [f"damaged video: {unreadable} of {unreadable + decoded} sampled frames could not be decoded and were "
            f"skipped; the verdict rests on the other {decoded}"]


def shortest_names(paths: list[str]) -> list[str]:
    """Each path's shortest ending that no other path ends with (its file name, unless two files share it:
    then 'x/face.png' and 'y/face.png'), so that the table's rows can be told apart."""
    parts = [Path(p).parts for p in paths]
    k = [1] * len(parts)  # each path's ending length; lengthened while another path's ending of that length matches
    while True:
        endings = Counter(ps[-n:] for ps, n in zip(parts, k))
        longer = [i for i, ps in enumerate(parts) if k[i] < len(ps) and endings[ps[-k[i]:]] > 1]
        if not longer:
            return [str(Path(*ps[-n:])) if ps else str(p) for p, ps, n in zip(paths, parts, k)]
        for i in longer:
            k[i] += 1


def few_frames_note(kind: str | None, frames: int, interval: Any) -> list[str]:
    """Say so when a video's verdict rests on a single frame with a face (a one-frame clip, or faces in one
    sampled frame only): no interval over frames can tell how much it depends on that frame."""
    if kind != "video" or interval is not None or frames != 1:
        return []
    return ["1 frame with a face: the verdict rests on that frame alone (no interval over frames)"]


UNLIKE_REFERENCE = 0.5  # a file's faces under this share of the enrolled faces' own likeness: likely someone else


def track_likeness(faces: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Per track (a still image's face), the median similarity of its faces to their nearest enrolled face."""
    near: dict[int, list[float]] = {}
    for f in faces:
        if f["neighbours"]:
            near.setdefault(int(f["track_id"]), []).append(f["neighbours"][0]["similarity"])
    return [{"track_id": t, "nearest_similarity_median": round(float(np.median(v)), 4)} for t, v in sorted(near.items())]


def unlike_reference_note(summary: dict[str, Any], kind: str | None = "video") -> list[str]:
    """Say so when a file's faces are far less like the enrolled person's faces (median nearest similarity) than
    those are like one another: the face may be someone else's, and a comparison with that person says little. In a
    file of several faces, judged per track (summary["tracks"]): a bystander beside the person is named, not hidden
    in (or, outnumbering the person, turning) the file's median."""
    mine, theirs = summary.get("nearest_similarity_median"), summary.get("enrolled_similarity_median")
    if mine is None or theirs is None or theirs <= 0:
        return []
    tracks = summary.get("tracks") or []
    unlike = [t for t in tracks if t["nearest_similarity_median"] < UNLIKE_REFERENCE * theirs]
    if (not unlike) if len(tracks) > 1 else (mine >= UNLIKE_REFERENCE * theirs):  # per track, or the file's median
        return []
    if len(tracks) > 1 and len(unlike) < len(tracks):
        one = len(unlike) == 1
        word = ("face" if kind == "image" else "track") + ("" if one else "s")
        return [f"{word} {', '.join(str(t['track_id']) for t in unlike)} unlike {summary['name']!r}: "
                f"{'its' if one else 'their'} faces' nearest enrolled similarity (median "
                f"{', '.join(format(t['nearest_similarity_median'], '.2f') for t in unlike)}) is far below the enrolled "
                f"faces' to one another ({theirs:.2f}); {'it' if one else 'they'} may be someone else, compared with "
                f"{summary['name']!r} all the same, and {'its' if one else 'their'} score says little"]
    return [f"unlike {summary['name']!r}: its faces' nearest enrolled similarity (median {mine:.2f}) is far below "
            f"the enrolled faces' to one another ({theirs:.2f}); it may be someone else, and the comparison says little"]


def self_reference_note(summary: dict[str, Any]) -> list[str]:
    """Say so when the file scanned is one the person was enrolled from (by its bytes): its faces are compared with
    their own enrolled copies, as a face the bank holds recalls itself, which says nothing about the file."""
    n = summary.get("enrolled_from_this_file") or 0
    if not n:
        return []
    return [f"this file is one {summary['name']!r} was enrolled from ({n} enrolled face{'' if n == 1 else 's'}): its "
            f"faces are compared with frames of itself, so the comparison says nothing about this file; scan it against "
            f"the bank (without --reference), or enrol {summary['name']!r} from other footage"]


NO_FACE_BELOW_PX = 32  # a frame whose shorter side is smaller holds no face the detector keeps (DetectorConfig.min_face)


def no_face_error(kind: str | None, sampled: int, width: int | None, height: int | None, detect_side: int,
                  image_frames: int = 1) -> str:
    """The error of a file without a face; where MTCNN saw the frame shrunk by more than half, the hint that a
    small face may need a larger --detect-side; where the frame is smaller than any face it keeps, that; for an
    image of several frames or pages, that only one was read."""
    text = "no face found" + (f" in {sampled} sampled frames" if kind == "video" else "")
    text += f"; {first_frame_only(image_frames)}" if image_frames > 1 else ""
    longest, shortest = max(width or 0, height or 0), min(width or 0, height or 0)
    if longest > 2 * detect_side and shortest >= NO_FACE_BELOW_PX:  # a 20000x2 strip holds no face at any size
        text += (f" (the detector saw the {width}x{height} frame shrunk to {detect_side} px on its longest side: a "
                 f"small face may be found with --detect-side {min(longest, 4 * detect_side)})")
    elif 0 < shortest < NO_FACE_BELOW_PX:  # a thumbnail: said why, not left to look like a missed face
        text += f" (the {width}x{height} frame is smaller than the smallest face the detector keeps, {NO_FACE_BELOW_PX} px)"
    return text


INTERVAL_LEVEL = 0.9  # the share of frame resamplings a file's score_interval holds


def is_close_call(interval: tuple[float, float] | list[float] | None, threshold: float) -> bool:
    """Whether the threshold lies inside a score's frame-resampling interval (close_call_note's test)."""
    return interval is not None and interval[0] < threshold <= interval[1]


def close_call_note(interval: tuple[float, float] | None, threshold: float, frames: int, sampled: int,
                    got: int | None = None) -> list[str]:
    """Say so when the verdict depends on which frames were sampled: the threshold lies inside the score's
    frame-resampling interval (over the `frames` with a face of `sampled` asked for). More frames narrow it (about
    as 1 / sqrt(frames)), so the note suggests four times as many; where the video gave fewer than were asked for
    (`got`: it has no more), it says that more cannot be had."""
    if not is_close_call(interval, threshold):
        return []
    head = (f"close call: resampling its {frames} frames with faces moves the score over "
            f"{score_text(interval[0], threshold)}-{score_text(interval[1], threshold)} ({INTERVAL_LEVEL:.0%}), across "
            f"the threshold {threshold_text(threshold)}; ")
    if got is not None and got < sampled:
        return [head + f"only {got} frames of the video could be read, all scanned, so more frames cannot settle it"]
    return [head + f"scan more frames (--frames {4 * sampled}) to settle it"]


def close_call_summary(files: list[dict[str, Any]], threshold: float) -> dict[str, Any] | None:
    """`evaluate`: of the scored files with a score_interval (videos), how many were close calls, and the
    accuracy at the threshold on those and on the others (label 1: fake). None when no file has an interval."""
    videos = [f for f in files if f.get("score_interval") is not None]
    if not videos:
        return None
    close = [is_close_call(f["score_interval"], threshold) for f in videos]

    def accuracy(rows: list[dict[str, Any]]) -> float | None:
        return sum((r["score"] >= threshold) == bool(r["label"]) for r in rows) / len(rows) if rows else None

    return {"videos": len(videos), "close_calls": sum(close),
            "accuracy_close_calls": accuracy([f for f, c in zip(videos, close) if c]),
            "accuracy_others": accuracy([f for f, c in zip(videos, close) if not c])}


def many_faces_note(tracks: list[dict[str, Any]], verdict: str | None, threshold: float, kind: str = "video") -> list[str]:
    """Which faces a FAKE verdict on a file of several faces comes from (a video's tracks; a still image's faces,
    numbered as its track ids). The threshold holds per face (at most its false-positive rate of real faces above
    it), so a file of many real faces is called FAKE more often."""
    if verdict != "FAKE" or len(tracks) < 2:
        return []
    above = [str(t["track_id"]) for t in tracks if t["score"] >= threshold]
    word = "face" if kind == "image" else "track"
    which = f" ({word}{'s' if len(above) > 1 else ''} {', '.join(above)})" if above else ""
    return [f"{len(above)} of {len(tracks)} faces above the threshold{which}; the threshold is set per face, so a "
            f"file of {len(tracks)} real faces is called FAKE more often than one of a single face"]


def json_record(rec: dict[str, Any]) -> dict[str, Any]:
    """The JSON-able part of a result record (no crops, attention arrays or overview picture)."""
    out = {k: v for k, v in rec.items() if k not in ("faces", "overview")}
    out["faces"] = [{k: v for k, v in f.items() if k not in ("crop", "attention")} for f in rec["faces"]]
    for f in out["faces"]:
        if "neighbours" in f:
            f["neighbours"] = [{k: v for k, v in nb.items() if k != "thumb"} for nb in f["neighbours"]]
    return json_safe(out)


def select_faces(faces: list[dict], max_faces: int = MAX_FACES) -> list[int]:
    """Indices of at most `max_faces` faces, in time order: the highest-scoring quarter and, where there is room for
    every track's, each track's highest-scoring face (a person on a few frames of a crowded video, whom a note may
    name as above the threshold, was left without a picture while the persistent tracks filled the spread), the rest
    spread evenly over time."""
    n = len(faces)
    order = sorted(range(n), key=lambda i: (faces[i].get("frame_index", 0), faces[i].get("track_id", 0)))
    if n <= max_faces:
        return order
    by_score = sorted(range(n), key=lambda i: -float(faces[i].get("score") or 0.0))
    top = set(by_score[:max(1, max_faces // 4)])
    best: dict[Any, int] = {}
    for i in by_score:
        best.setdefault(faces[i].get("track_id", 0), i)
    if len(top | set(best.values())) <= max_faces:
        top |= set(best.values())
    rest = [i for i in order if i not in top]
    picks = np.unique(np.round(np.linspace(0, len(rest) - 1, max_faces - len(top))).astype(int))
    chosen = top | {rest[p] for p in picks}
    return [i for i in order if i in chosen]


# `scan --csv`: one row per file (notes joined by '; '); new columns go at the end, so older readers keep working
CSV_COLUMNS = ["path", "status", "verdict", "score", "threshold", "n_faces", "n_tracks", "frames_sampled",
               "frames_with_face", "error", "notes", "score_low", "score_high", "sha256", "reference"]


def json_text(results: list[dict[str, Any]], settings: dict[str, Any]) -> str:
    """`scan --json`: the version, the scan's settings and every file's record (without pictures)."""
    doc = {"forgerydet_version": __version__, "settings": json_safe(settings), "files": [json_record(r) for r in results]}
    return json.dumps(doc, indent=1)


def csv_text(results: list[dict[str, Any]]) -> str:
    """`scan --csv`: CSV_COLUMNS of every file's record."""
    buf = io.StringIO()
    w = csv.DictWriter(buf, fieldnames=CSV_COLUMNS, extrasaction="ignore")
    w.writeheader()
    for r in results:
        low, high = r.get("score_interval") or (None, None)
        w.writerow({**r, "notes": "; ".join(r.get("notes") or []), "score_low": low, "score_high": high,
                    "reference": (r.get("reference") or {}).get("name", "")})  # the enrolled person compared with
    return buf.getvalue()


WEAK_CATCH = 0.5  # a calibration that caught fewer of its pseudo-fakes than this: a model that detects little


def settings_notes(settings: dict, threshold: float | None) -> list[str]:
    """Why a scan's (or evaluation's) probabilities and verdicts are less calibrated than the checkpoint says, from
    Scanner.settings(): a bank rebuilt since the calibration, another --tta or --precision than it was fitted with
    (none of these when a --threshold was given), a checkpoint whose calibration caught under WEAK_CATCH of its
    pseudo-fakes, and bf16 on a CPU that only emulates it."""
    from forgerydet.runtime import native_bf16

    out = []
    calibrated = settings["calibrated_against"] != "not calibrated" and threshold is None
    if settings["calibrated_against"] == "an earlier bank" and "reference" not in settings and "bank" not in settings \
            and threshold is None:
        out.append("the checkpoint's threshold and bank fusion were fitted against an earlier bank (it was rebuilt "
                   "since): refit them with `forgerydet calibrate`")
    if "bank" in settings and calibrated:
        out.append(f"the threshold was fitted against the checkpoint's own bank, not the disk bank {settings['bank']} "
                   f"({settings['bank_entries']} faces): its similarities differ in scale, so the head's threshold "
                   f"applies (no bank fusion), only approximately calibrated for this bank")
    if settings.get("bank_indexed") and settings.get("bank_search") == "exact":
        out.append(f"the disk bank {settings['bank']} was built with a faiss index, but faiss is not installed here: "
                   f"its {settings['bank_entries']:,} keys are searched exactly (the true nearest faces, more slowly; "
                   f"`pip install 'forgerydet[scale]'` for the index)")
    if "reference" in settings:
        out.append(f"compared with the enrolled faces of {settings['reference']!r}, not the bank: the model reads the "
                   f"difference to its reference only weakly (README, 'Does the head use the bank?') and how it fares "
                   f"against face swaps of the enrolled person is unmeasured, so such a verdict is no surer than a "
                   f"plain scan's" + ("; the head's threshold applies (no bank fusion)" if threshold is None else ""))
    if settings["tta"] != settings["calibrated_tta"] and calibrated:
        out.append(f"the checkpoint was calibrated with --tta {settings['calibrated_tta']}; scored with --tta "
                   f"{settings['tta']}, its threshold and probabilities are only approximately calibrated")
    if settings["precision"] != settings["calibrated_precision"] and calibrated:
        out.append(f"the checkpoint was calibrated in {settings['calibrated_precision']}; scored in "
                   f"{settings['precision']}, its threshold and probabilities are only approximately calibrated")
    caught = settings.get("calibration_caught")
    if caught is not None and caught < WEAK_CATCH and threshold is None:
        out.append(f"at its threshold this checkpoint caught only {100 * caught:.0f} % of the validation fakes it "
                   f"was calibrated on: it detects little yet, so a REAL verdict from it means little (train it "
                   f"longer, or on more faces)")
    if settings["precision"] == "bf16" and settings["device"] == "cpu" and not native_bf16():
        out.append("this CPU has no bf16 instructions (AVX512-BF16 or AMX): --precision fp32 is likely faster")
    return out
