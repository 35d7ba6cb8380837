"""Faces from videos and images: detect, track, crop, and the `faces.csv` index of an extract folder.

Two levels:
- `detect_source(path, config, detector)` -> SourceFaces: the faces (crops in memory, track ids set)
  of every sampled frame of one file. This is what `scan` and `pairs` call.
- `extract(sources, out_dir, config, progress)` -> ExtractSummary: the batch job behind
  `forgerydet extract`, writing PNG crops and the index, resumable.

Extract folder layout:
    OUT/faces.csv               the index (INDEX_COLUMNS), rebuilt from the parts at the end of every run
    OUT/extract.json            the sampling/cropping settings; a re-run with other settings is refused
    OUT/parts/<key>.csv         one source's rows, written (temp + rename) after its crops: the done-marker
    OUT/crops/<key>/f<frame:06d>_<k>.png   face k (most confident first) of that frame
`<key>` is the file stem plus a short hash of its absolute path. A source whose part exists (and is not
an error) is skipped on a re-run; failed sources are tried again.

faces.csv rows: one per face (status `ok`), one per sampled frame without a face (`no_face`, empty box,
landmark, crop columns), one per unreadable file (`error`, with the message). Box and confidence are
in full-resolution frame pixels; the landmark columns are in crop pixels.
"""

from __future__ import annotations

import csv
import dataclasses
import hashlib
import io
import json
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Iterable, Sequence

import cv2
import numpy as np

from .atomic import check_output, write_bytes_atomic, write_text_atomic
from .detect import LANDMARK_NAMES, DetectorConfig, Face, FaceDetector
from .errors import ForgeryDetError, path_text
from .track import assign_tracks
from .video import MediaKind, expand_sources, iter_frames, media_kind

LANDMARK_COLUMNS = [f"{name}_{axis}" for name in LANDMARK_NAMES for axis in ("x", "y")]
INDEX_COLUMNS = [
    "source", "frame_index", "time", "track_id", "x1", "y1", "x2", "y2",
    *LANDMARK_COLUMNS, "confidence", "crop", "status", "message",
]  # fmt: skip
INDEX_NAME = "faces.csv"
SETTINGS_NAME = "extract.json"

Progress = Callable[[int, int], None]


@dataclass
class ExtractConfig:
    """Frame sampling, tracking and detection settings for one extraction.

    num_frames / every / fps: how frames are sampled (at most one set; none set = 32 evenly).
    iou_threshold:            least IoU for a face to continue a track from the previous sampled frame.
    detector:                 MTCNN and crop settings (size, margin, detect_side, device, ...).
    """

    num_frames: int | None = None
    every: int | None = None
    fps: float | None = None
    iou_threshold: float = 0.3
    detector: DetectorConfig = field(default_factory=DetectorConfig)

    def __post_init__(self) -> None:
        if sum(x is not None for x in (self.num_frames, self.every, self.fps)) > 1:
            raise ForgeryDetError("choose one way to sample frames: --frames, --every or --fps")
        if not 0.0 < self.iou_threshold <= 1.0:
            raise ForgeryDetError(f"iou_threshold={self.iou_threshold} must be in (0, 1]")

    def settings(self) -> dict:
        """What decides the written crops (device and batch size do not)."""
        d = self.detector
        return {
            "num_frames": self.num_frames, "every": self.every, "fps": self.fps,
            "iou_threshold": self.iou_threshold, "size": d.size, "margin": d.margin,
            "detect_side": d.detect_side, "min_confidence": d.min_confidence, "min_face": d.min_face,
        }  # fmt: skip


@dataclass
class SourceFaces:
    """The sampled frames of one file and the faces found on each (track ids set)."""

    source: Path
    kind: MediaKind
    frames: list[tuple[int, float]]  # (frame_index, time) of every sampled frame
    faces: list[list[Face]]  # per sampled frame, most confident first

    @property
    def all_faces(self) -> list[Face]:
        return [f for fr in self.faces for f in fr]

    @property
    def num_tracks(self) -> int:
        return len({f.track_id for f in self.all_faces})

    def main_track(self) -> int | None:
        """The track seen on most frames (ties: larger mean box area); None without faces."""
        stats: dict[int, list[float]] = {}
        for f in self.all_faces:
            area = float((f.box[2] - f.box[0]) * (f.box[3] - f.box[1]))
            stats.setdefault(f.track_id, []).append(area)
        if not stats:
            return None
        return max(stats, key=lambda t: (len(stats[t]), float(np.mean(stats[t])), -t))


def detect_source(
    path: str | Path,
    config: ExtractConfig | None = None,
    detector: FaceDetector | None = None,
    indices: Sequence[int] | None = None,
) -> SourceFaces:
    """Sample frames of one video/image, detect and crop faces, assign track ids.

    Frames are decoded and detected in batches of `detector.config.batch_size` and dropped after
    cropping, so memory holds the crops only. `indices` overrides the sampling (frame-aligned pairs).
    Raises ForgeryDetError for a file that cannot be read.
    """
    config = config or ExtractConfig()
    detector = detector or FaceDetector(config.detector)
    path = Path(path)
    kind = media_kind(path)
    stream = iter_frames(path, config.num_frames, config.every, config.fps, indices=indices)
    frames: list[tuple[int, float]] = []
    faces: list[list[Face]] = []
    batch = []
    bs = detector.config.batch_size
    for frame in stream:
        batch.append(frame)
        if len(batch) == bs:
            faces.extend(detector.faces(batch))
            frames.extend((f.index, f.time) for f in batch)
            batch = []
    if batch:
        faces.extend(detector.faces(batch))
        frames.extend((f.index, f.time) for f in batch)
    ids = assign_tracks([np.array([f.box for f in fr]).reshape(-1, 4) for fr in faces], config.iou_threshold)
    for fr, fr_ids in zip(faces, ids):
        for face, tid in zip(fr, fr_ids):
            face.track_id = tid
    return SourceFaces(path, kind, frames, faces)


# ---------------------------------------------------------------- files


def source_key(path: str | Path) -> str:
    """A folder-safe, unique name for a source: stem + 8 hex digits of its absolute path."""
    p = Path(os.path.abspath(path))
    digest = hashlib.sha1(os.fsencode(p)).hexdigest()[:8]  # the name's bytes: any file name, same key as before
    stem = "".join(c if c.isalnum() or c in "-_." else "_" for c in p.stem)[:60] or "source"
    return f"{stem}-{digest}"


def write_png(path: Path, rgb: np.ndarray) -> None:
    """Write an RGB (H,W,3) or grey (H,W) uint8 image as PNG, atomically (temp file + rename). Encoded in
    memory and written by Python, so OpenCV never sees the (possibly non-UTF-8) folder name."""
    img = cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR) if rgb.ndim == 3 else rgb
    ok, buf = cv2.imencode(".png", img)
    if not ok:  # pragma: no cover - OpenCV encodes any uint8 image
        raise ForgeryDetError(f"cannot encode {path.name} as PNG")
    write_bytes_atomic(path, buf.tobytes())


def write_csv_atomic(path: Path, columns: Sequence[str], rows: Iterable[dict]) -> None:
    buf = io.StringIO()
    w = csv.DictWriter(buf, fieldnames=list(columns), lineterminator="\n")
    w.writeheader()
    for r in rows:
        w.writerow(r)
    write_text_atomic(path, buf.getvalue())


def read_csv_rows(path: Path, required: Sequence[str]) -> list[dict[str, str]]:
    """Rows of a CSV as dicts; ForgeryDetError naming the missing columns if any are absent."""
    try:
        with open(path, newline="", encoding="utf-8") as fh:
            reader = csv.DictReader(fh)
            missing = [c for c in required if c not in (reader.fieldnames or [])]
            if missing:
                raise ForgeryDetError(
                    f"{path}: missing column(s) {', '.join(missing)}; expected columns {', '.join(required)}"
                )
            return list(reader)
    except UnicodeDecodeError:
        raise ForgeryDetError(f"{path}: not a UTF-8 text CSV file") from None


def _fmt(x: float, nd: int) -> str:
    return "" if not np.isfinite(x) else f"{x:.{nd}f}"


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
    """One row of faces.csv, parsed. `crop` is an absolute path (None unless status is 'ok')."""

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


def read_index(path: str | Path) -> list[IndexRow]:
    """Parse an extract index (faces.csv); crop paths are resolved against its folder."""
    path = Path(path)
    if not path.is_file():
        raise ForgeryDetError(f"{path}: no such index file; run `forgerydet extract` first")
    rows = read_csv_rows(path, INDEX_COLUMNS)

    def num(s: str, typ=float):
        return typ(s) if s not in ("", None) else None

    out = []
    for r in rows:
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
                )
            )
        except ValueError as e:
            raise ForgeryDetError(f"{path}: malformed row for {r.get('source')!r} ({e})") from None
    return out


# ---------------------------------------------------------------- the batch job


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


def _check_settings(out_dir: Path, config: ExtractConfig) -> None:
    path = out_dir / SETTINGS_NAME
    wanted = config.settings()
    if path.is_file():
        try:
            have = json.loads(path.read_text(encoding="utf-8"))
        except ValueError:
            raise ForgeryDetError(f"{path} is corrupt; delete it or use another --out folder") from None
        if have != wanted:
            diff = ", ".join(f"{k}: {have.get(k)} -> {v}" for k, v in wanted.items() if have.get(k) != v)
            raise ForgeryDetError(
                f"{out_dir} was extracted with other settings ({diff}); use another --out folder or the same settings"
            )
    else:
        write_text_atomic(path, json.dumps(wanted, indent=2) + "\n")


def _part_done(part: Path) -> bool:
    if not part.is_file():
        return False
    try:
        rows = read_csv_rows(part, INDEX_COLUMNS)
    except ForgeryDetError:
        return False
    return bool(rows) and all(r["status"] != "error" for r in rows)


def rebuild_index(out_dir: Path) -> Path:
    """Write OUT/faces.csv from every part (rows ordered by source, frame, then as written)."""
    rows: list[dict] = []
    for part in sorted((out_dir / "parts").glob("*.csv")):
        try:
            rows.extend(read_csv_rows(part, INDEX_COLUMNS))
        except ForgeryDetError:
            continue  # a part from an interrupted write of another version; its source is redone next run
    rows.sort(key=lambda r: (r["source"], int(r["frame_index"]) if r["frame_index"] else -1))
    index = out_dir / INDEX_NAME
    write_csv_atomic(index, INDEX_COLUMNS, rows)
    return index


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
    files = expand_sources(sources)
    check_output(out_dir, "--out", folder=True)  # before any face is detected
    out_dir.mkdir(parents=True, exist_ok=True)
    _check_settings(out_dir, config)
    detector = detector or FaceDetector(config.detector)
    summary = ExtractSummary(index=out_dir / INDEX_NAME, sources=len(files))
    try:
        for n, path in enumerate(files, 1):
            key = source_key(path)
            part = out_dir / "parts" / f"{key}.csv"
            if _part_done(part):
                summary.skipped += 1
            else:
                rows = _extract_one(path, key, out_dir, config, detector, summary)
                write_csv_atomic(part, INDEX_COLUMNS, rows)
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
    for (index, time), faces in zip(found.frames, found.faces):
        if not faces:
            rows.append(empty_row(source, "no_face", index, time))
            summary.no_face_frames += 1
            continue
        for k, face in enumerate(faces):
            rel = f"crops/{key}/f{index:06d}_{k}.png"
            write_png(out_dir / rel, face.crop)
            rows.append(face_row(source, face, rel))
            summary.faces += 1
    summary.tracks += found.num_tracks
    return rows
