"""The faces.csv index and the resumable batch job behind `forgerydet extract`.

Extract folder layout:
    OUT/faces.csv               the index (INDEX_COLUMNS), rebuilt from the parts at the end of every run
    OUT/extract.json            the sampling/cropping settings; a re-run with other settings is refused
    OUT/parts/<key>.csv         one source's rows, written (temp + rename) after its crops: the done-marker
    OUT/parts/<key>.stat        the source's stat key and sha256 when hashed: unchanged, the file is not read again
    OUT/crops/<key>/f<frame:06d>_<k>.png   face k (most confident first) of that frame
`<key>` is the file stem plus a short hash of its absolute path (io.source_key). A source whose part exists
(and is not an error) is skipped on a re-run unless the file's bytes changed since (its `sha256` column); failed and
changed sources are extracted again, their earlier crops removed first.

faces.csv rows: one per face (status `ok`), one per sampled frame without a face (`no_face`, empty box,
landmark, crop columns), one per unreadable file (`error`, with the message). Box and confidence are
in full-resolution frame pixels (upright, square pixels: faces/playback.py); the landmark columns are in crop
pixels. `pixel_aspect` is the stored frames' pixel aspect (to map a box back to stored pixels) and `deinterlaced`
1 when the video showed interlacing combing and its frames were deinterlaced. A folder written before those two
columns (2026-12-06) still reads; its rows leave them empty (read as 1.0 and False). `sha256` is the source file's
(since 2026-12-07; a part without it counts as done, as before)."""

from __future__ import annotations

import dataclasses
import json
import os
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

import numpy as np

from forgerydet.errors import ForgeryDetError, parse_json, path_text
from forgerydet.faces.detect import LANDMARK_NAMES, Face, FaceDetector
from forgerydet.faces.media import describe_skipped, expand_sources
from forgerydet.faces.pipeline import ExtractConfig, SourceFaces, detect_source
from forgerydet.faces.segment import clock
from forgerydet.faces.statcache import record_stat, source_digest
from forgerydet.io import read_csv_rows, source_key, write_csv_atomic, write_png, write_text_atomic
from forgerydet.paths import check_output
from forgerydet.runtime import Progress, resolve_device

LANDMARK_COLUMNS = [f"{name}_{axis}" for name in LANDMARK_NAMES for axis in ("x", "y")]


REQUIRED_COLUMNS = [
    "source", "frame_index", "time", "track_id", "x1", "y1", "x2", "y2",
    *LANDMARK_COLUMNS, "confidence", "crop", "status", "message",
]  # fmt: skip
INDEX_COLUMNS = [*REQUIRED_COLUMNS, "pixel_aspect", "deinterlaced", "sha256"]  # since 2026-12-06, sha256 2026-12-07


SOURCE_FOLDER = re.compile(r"(.+)-[0-9a-f]{8}")  # a source's crop folder, io.source_key: its stem and 8 hex digits


_FRAME_SUFFIX = re.compile(r"(?:[-_. ]*\d+)+$")  # 'clip-003-00', 'Person_Name_0001': the frame or photo number


def crop_source(path: Path) -> str:
    """The video or photo a face crop was most likely cut from, guessed from its name: the crop folder `extract`
    and `pairs` write per source (NAME-1234abcd/f000012_0.png), else the file name less its trailing numbers
    (a DFDC crop 'abarnvbtwb-003-00.png', an LFW photo 'Person_Name_0001.png')."""
    if SOURCE_FOLDER.fullmatch(path.parent.name):
        return str(path.parent)
    stem = _FRAME_SUFFIX.sub("", path.stem)
    return str(path.parent / stem) if stem else str(path.parent)


def frame_numbers(path: Path) -> list[str]:
    """The numbers that end a crop's name, which crop_source drops ('abarnvbtwb-003-00' -> ['003', '00'])."""
    end = _FRAME_SUFFIX.search(path.stem)
    return re.findall(r"\d+", end.group()) if end else []


INDEX_NAME = "faces.csv"


SETTINGS_NAME = "extract.json"


def _fmt(x: float, nd: int) -> str:
    return "" if not np.isfinite(x) else f"{x:.{nd}f}"


def _shown(found: SourceFaces) -> dict:
    """The columns that say how a source's frames were shown (faces/playback.py)."""
    return {"pixel_aspect": f"{found.pixel_aspect:.6g}", "deinterlaced": int(found.deinterlaced > 0)}


def face_row(source: str, face: Face, crop_rel: str) -> dict:
    row = {
        "source": source, "frame_index": face.frame_index, "time": _fmt(face.time, 3),
        "track_id": face.track_id, "confidence": _fmt(face.confidence, 4), "crop": crop_rel,
        "status": "ok", "message": "",
    }  # fmt: skip
    row.update({k: _fmt(v, 1) for k, v in zip(("x1", "y1", "x2", "y2"), face.box)})
    row.update({k: _fmt(v, 2) for k, v in zip(LANDMARK_COLUMNS, face.landmarks_crop.reshape(-1))})
    return row


def empty_row(source: str, status: str, frame_index: int | str = "", time: float | None = None, message: str = "") -> dict:
    row = {c: "" for c in INDEX_COLUMNS}
    row.update(source=source, frame_index=frame_index, status=status, message=message)
    if time is not None:
        row["time"] = _fmt(time, 3)
    return row


@dataclass
class IndexRow:
    """One row of faces.csv, parsed. `crop` is an absolute path (None unless status is 'ok'). `pixel_aspect`: the
    stored frames' sample aspect ratio (the box is in frames stretched to square pixels, as
    faces/playback.square_pixel_size does); `deinterlaced`: its video was deinterlaced (both unknown in older
    folders: 1.0, False)."""

    source: str
    frame_index: int | None
    time: float | None
    track_id: int | None
    box: np.ndarray | None  # (4,)
    landmarks: np.ndarray | None  # (5,2) crop pixels
    confidence: float | None
    crop: Path | None
    status: str
    message: str
    pixel_aspect: float = 1.0
    deinterlaced: bool = False


def read_index(path: str | Path) -> list[IndexRow]:
    """Parse an extract index (faces.csv); crop paths are resolved against its folder."""
    path = Path(path)
    if not path.is_file():
        raise ForgeryDetError(f"{path}: no such index file; run `forgerydet extract` first")
    rows = read_csv_rows(path, REQUIRED_COLUMNS)

    def num(s: str, typ=float):
        return typ(s) if s not in ("", None) else None

    out = []
    for line, r in enumerate(rows, start=2):
        if r["status"] not in ("ok", "no_face", "error"):  # what extract writes; another would be dropped unseen
            raise ForgeryDetError(f"{path}:{line}: column 'status' is {r['status']!r}; an extract index has ok, "
                                  f"no_face or error")
        ok = r["status"] == "ok"
        try:
            lm = np.array([float(r[c]) for c in LANDMARK_COLUMNS], np.float32).reshape(5, 2) if ok and r[LANDMARK_COLUMNS[0]] else None
            out.append(
                IndexRow(
                    source=r["source"],
                    frame_index=num(r["frame_index"], int),
                    time=num(r["time"]),
                    track_id=num(r["track_id"], int),
                    box=np.array([float(r[c]) for c in ("x1", "y1", "x2", "y2")], np.float32) if ok else None,
                    landmarks=lm,
                    confidence=num(r["confidence"]),
                    crop=(path.parent / r["crop"]).resolve() if ok and r["crop"] else None,
                    status=r["status"],
                    message=r["message"],
                    pixel_aspect=num(r.get("pixel_aspect")) or 1.0,
                    deinterlaced=r.get("deinterlaced") == "1",
                )
            )
        except ValueError as e:
            raise ForgeryDetError(f"{path}: malformed row for {r.get('source')!r} ({e})") from None
    return out


@dataclass
class ExtractSummary:
    index: Path
    sources: int = 0
    processed: int = 0
    skipped: int = 0  # already complete from an earlier run
    faces: int = 0  # crops written by this run
    no_face_frames: int = 0  # sampled frames without a face, this run
    tracks: int = 0  # face tracks found by this run (summed over sources)
    errors: list[tuple[str, str]] = dataclasses.field(default_factory=list)  # (source, message)
    not_media: str = ""  # describe_skipped() of the folders' and globs' other files, "" when none
    warnings: list[str] = dataclasses.field(default_factory=list)  # e.g. a damaged video's frames skipped


def _check_settings(out_dir: Path, config: ExtractConfig) -> None:
    path = out_dir / SETTINGS_NAME
    wanted = config.settings()
    if path.is_file():
        try:
            have = parse_json(path.read_text(encoding="utf-8"))
        except ValueError:
            raise ForgeryDetError(f"{path} is corrupt; delete it or use another --out folder") from None
        if not isinstance(have, dict) or not {"num_frames", "size", "margin"} <= set(have):
            raise ForgeryDetError(f"{path} is not the settings file `forgerydet extract` writes (another program's "
                                  f"file of that name?): give another --out folder")
        have.setdefault("deinterlace", False)  # a folder written before frames were deinterlaced (2026-12-05)
        if have != wanted:
            shown = lambda k, v: clock(v) if k in ("start", "end") and isinstance(v, (int, float)) else v  # noqa: E731
            diff = ", ".join(f"{k}: {shown(k, have.get(k))} -> {shown(k, wanted.get(k))}"
                             for k in dict.fromkeys([*wanted, *have]) if have.get(k) != wanted.get(k))
            raise ForgeryDetError(
                f"{out_dir} was extracted with other settings ({diff}); use another --out folder or the same settings"
            )
    elif (out_dir / INDEX_NAME).exists():  # a faces.csv extract did not write: rebuilt from the parts, it would go
        raise ForgeryDetError(f"{out_dir / INDEX_NAME} is not an index `forgerydet extract` wrote there (the folder has "
                              f"no {SETTINGS_NAME}): it would be replaced; give another --out folder")
    else:
        write_text_atomic(path, json.dumps(wanted, indent=2) + "\n")


def _finished_rows(part: Path) -> list[dict[str, str]] | None:
    """A source's part as an earlier run finished it (rows, none an error), or None: missing, unreadable, failed."""
    if not part.is_file():
        return None
    try:
        rows = read_csv_rows(part, REQUIRED_COLUMNS)
    except ForgeryDetError:
        return None
    return rows if rows and all(r["status"] != "error" for r in rows) else None


def _of_bytes(rows: list[dict[str, str]], digest: str) -> bool:
    """Whether finished rows are of the file's present bytes (`digest`); a part written before the sha256 column,
    or a file that cannot be hashed, is taken as it is."""
    return all(r.get("sha256", "") in ("", digest) for r in rows)


def _forget(part: Path, crops: Path) -> None:
    """Remove a source's earlier part and crops before it is extracted again (part first: a stop midway redoes it)."""
    part.unlink(missing_ok=True)
    part.with_suffix(".stat").unlink(missing_ok=True)
    for old in crops.glob("f*_*.png") if crops.is_dir() else ():
        if re.fullmatch(r"f\d{6,}_\d+\.png", old.name):
            old.unlink(missing_ok=True)


def rebuild_index(out_dir: Path) -> Path:
    """Write OUT/faces.csv from every part (rows ordered by source, frame, then as written)."""
    rows: list[dict] = []
    for part in sorted((out_dir / "parts").glob("*.csv")):
        try:
            rows.extend(read_csv_rows(part, REQUIRED_COLUMNS))  # a part written before the last columns leaves them empty
        except ForgeryDetError:
            continue  # a part from an interrupted write of another version; its source is redone next run
    rows.sort(key=lambda r: (r["source"], int(r["frame_index"]) if r["frame_index"] else -1))
    index = out_dir / INDEX_NAME
    write_csv_atomic(index, INDEX_COLUMNS, rows)
    return index


def _written_here(out_dir: Path, path: Path) -> bool:
    """Whether `path` is one of the files extract writes into out_dir (its crops, parts, index or settings): a source
    folder that holds --out would otherwise give crops of crops, and more each re-run."""
    root, p = os.path.realpath(out_dir), os.path.realpath(path)
    rel = Path(os.path.relpath(p, root)).parts
    if not rel or rel[0] == "..":
        return False
    if rel[0] == "crops":  # crops/<key>/f<frame>_<k>.png only: a photo of the user's own crops/ folder is a source
        return len(rel) == 3 and re.fullmatch(r"f\d{6,}_\d+\.png", rel[2]) is not None
    return (len(rel) == 2 and rel[0] == "parts" and rel[1].endswith((".csv", ".stat"))) or (len(rel) == 1 and rel[0] in (INDEX_NAME, SETTINGS_NAME))


def extract(
    sources: Sequence[str | Path],
    out_dir: str | Path,
    config: ExtractConfig | None = None,
    progress: Progress | None = None,
    detector: FaceDetector | None = None,
) -> ExtractSummary:
    """Extract face crops and the faces.csv index for every source (files, folders, globs).

    An unreadable file gets an `error` row and the batch goes on; sources completed by an earlier run
    into the same folder are skipped. `progress(done, total)` is called after every source.
    Returns the summary; the caller decides what a non-empty `errors` means (the CLI exits 1).
    """
    config = config or ExtractConfig()
    out_dir = Path(out_dir)
    others: list[Path] = []
    files = [f for f in expand_sources(sources, others) if not _written_here(out_dir, f)]
    others = [f for f in others if not _written_here(out_dir, f)]
    check_output(out_dir, "--out", folder=True, inside=("crops", "parts"), writes=(INDEX_NAME, SETTINGS_NAME))  # first
    resolve_device(config.detector.device)  # and the device: every file failed on it, into a new folder
    out_dir.mkdir(parents=True, exist_ok=True)
    _check_settings(out_dir, config)
    detector = detector or FaceDetector(config.detector)
    summary = ExtractSummary(index=out_dir / INDEX_NAME, sources=len(files),
                             not_media=describe_skipped(others) if others else "")
    try:
        for n, path in enumerate(files, 1):
            key = source_key(path)
            part = out_dir / "parts" / f"{key}.csv"
            digest, stat, recorded = source_digest(path, part)
            done = _finished_rows(part)
            if done is not None and _of_bytes(done, digest):
                if not recorded:  # a part of a run before .stat files, or a file touched: hashed once more
                    record_stat(part, stat, digest)
                summary.skipped += 1
            else:
                if part.is_file():  # an error, or a file whose bytes changed since: its old crops must not linger
                    if done is not None:  # finished, but of other bytes: said, as a replaced file is a surprise
                        summary.warnings.append(f"{path}: its bytes changed since the earlier run: extracted again, "
                                                f"its earlier crops removed")
                    _forget(part, out_dir / "crops" / key)
                rows = [r | {"sha256": digest} for r in _extract_one(path, key, out_dir, config, detector, summary)]
                write_csv_atomic(part, INDEX_COLUMNS, rows)
                record_stat(part, stat, digest)
                summary.processed += 1
            if progress is not None:
                progress(n, len(files))
    finally:
        if (out_dir / "parts").is_dir():
            rebuild_index(out_dir)
    return summary


def _extract_one(
    path: Path, key: str, out_dir: Path, config: ExtractConfig, detector: FaceDetector, summary: ExtractSummary
) -> list[dict]:
    source = path_text(os.path.abspath(path))  # a non-UTF-8 name is stored as \xNN (errors.path_text)
    try:
        found = detect_source(path, config, detector)
    except ForgeryDetError as e:
        summary.errors.append((source, path_text(e)))
        return [empty_row(source, "error", message=path_text(e))]
    rows: list[dict] = []
    summary.warnings += found.unreadable_warning() + found.first_frame_warning()
    shown = _shown(found)
    for (index, time), faces in zip(found.frames, found.faces):
        if not faces:
            rows.append(empty_row(source, "no_face", index, time) | shown)
            summary.no_face_frames += 1
            continue
        for k, face in enumerate(faces):
            rel = f"crops/{key}/f{index:06d}_{k}.png"
            write_png(out_dir / rel, face.crop)
            rows.append(face_row(source, face, rel) | shown)
            summary.faces += 1
    summary.tracks += found.num_tracks
    return rows
