"""Reading videos and images as RGB frames: which files are media, and which frames to sample.

Frames are streamed (a generator), so memory does not grow with video length. Sampled frames are
reached without converting every frame: short gaps are skipped with `grab()` (demux + decode, no
colour conversion or copy), gaps longer than `seek_threshold` frames are jumped with a seek
(`CAP_PROP_POS_FRAMES`, which decodes forward from the previous keyframe). Measured on the 640x480
sample videos (32 of ~400 frames, keyframes far apart) grab-skipping took ~0.3 s where seeking to
every sampled frame took 2.4-4 s, because each seek re-decodes from a distant keyframe; seeking
only pays off when the gap is longer than the keyframe interval, hence the threshold.

Rotation metadata (phone videos) is honoured: OpenCV's FFmpeg backend applies the display matrix
when `CAP_PROP_ORIENTATION_AUTO` is on, which this module sets explicitly. Images are read as bytes and
decoded with `cv2.imdecode`, which applies EXIF orientation.

What a player does before showing a frame is done too (faces/playback.py): anamorphic video is stretched to
square pixels and interlaced video is deinterlaced, so faces are detected and scored as a viewer sees them.

OpenCV is never handed a file name that is not valid UTF-8 (on Linux a name is bytes, e.g. `bad\xff.png`):
OpenCV 5 crashes the process on such a name. Images are read by Python; a video is opened through a
temporary symbolic link with an ASCII name (`_cv_path`).
"""

from __future__ import annotations

import contextlib
import glob
import math
import os
import tempfile
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Iterable, Iterator, Literal, Sequence

import cv2
import numpy as np

from forgerydet.errors import ForgeryDetError, os_reason
from forgerydet.faces.playback import Frame, Playback, pixel_aspect, square_pixel_size
from forgerydet.io import apple_double, broken_link, check_readable_file, read_image
from forgerydet.runtime import quiet_native_stderr

VIDEO_EXTS = frozenset({".mp4", ".avi", ".mov", ".mkv", ".webm", ".m4v", ".mpg", ".mpeg", ".wmv", ".flv", ".3gp", ".ts"})
# what OpenCV's image codecs read (TIFF is common in forensic archives); a build without one of them still
# gives that file its one-line "cannot decode" error in a batch
IMAGE_EXTS = frozenset({".jpg", ".jpeg", ".jpe", ".jfif", ".png", ".webp", ".bmp", ".tif", ".tiff", ".jp2", ".avif",
                        ".ppm", ".pgm"})
DEFAULT_NUM_FRAMES = 32
EMPTY_PATH = "an empty path was given (an unset variable?): name a file, folder or pattern"  # Path("") is "."
DEFAULT_SEEK_THRESHOLD = 300  # frames; ~12 s at 25 fps, longer than most keyframe intervals

MediaKind = Literal["video", "image"]


@dataclass(frozen=True)
class VideoInfo:
    """`width` x `height` is the size of the frames `iter_frames` delivers: display-oriented, square pixels.
    `pixel_aspect` is the stored frames' sample aspect ratio (1.0 for square pixels)."""

    frame_count: int
    fps: float
    width: int
    height: int
    pixel_aspect: float = 1.0

    @property
    def duration(self) -> float:
        return self.frame_count / self.fps if self.fps > 0 else 0.0


def media_kind(path: str | Path) -> MediaKind:
    """'video' or 'image' by file extension; ForgeryDetError for anything else."""
    ext = Path(path).suffix.lower()
    if ext in VIDEO_EXTS:
        return "video"
    if ext in IMAGE_EXTS:
        return "image"
    if Path(path).is_dir():
        raise ForgeryDetError(f"{path}: a folder, where a video or image file is wanted")
    raise ForgeryDetError(
        f"{path}: unsupported file type '{ext or '(none)'}'; "
        f"give a video ({', '.join(sorted(VIDEO_EXTS))}) or an image ({', '.join(sorted(IMAGE_EXTS))})"
    )


def is_media(path: str | Path) -> bool:
    return Path(path).suffix.lower() in VIDEO_EXTS | IMAGE_EXTS


def expand_sources(paths: Iterable[str | Path], skipped: list[Path] | None = None) -> list[Path]:
    """Files, folders (searched recursively for images and videos, sorted) and glob patterns -> file list.

    Order is kept and duplicates are dropped. A path that does not exist, a glob that matches nothing,
    or a folder without media raises ForgeryDetError before any work starts. A file given by name is
    kept whatever its extension, so that a batch records its error instead of skipping it silently.
    Files that a folder or glob holds but that are neither image nor video (hidden files aside) are
    appended to `skipped`, when given, for the caller to report (see `describe_skipped`).
    """
    out: list[Path] = []
    seen: set[Path] = set()
    start = len(skipped) if skipped is not None else 0

    def add(p: Path) -> None:
        key = file_key(p)
        if key not in seen:
            seen.add(key)
            out.append(p)

    for raw in paths:
        p = Path(raw)
        if not str(raw):  # Path("") is the current folder: `scan "$VIDEO"` with VIDEO unset scanned all of it
            raise ForgeryDetError(EMPTY_PATH)
        if p.is_dir():
            # a dangling link, a named pipe: listed, to get its error (check_readable_file's) or be counted as left out
            listed = sorted(f for f in p.rglob("*") if not f.is_dir())
            found = [f for f in listed if is_media(f) and not apple_double(f)]  # counted nowhere: hidden
            _note_skipped(listed, skipped)
            if not found:
                raise ForgeryDetError(f"folder {p} holds no image or video files")
            for f in found:
                add(f)
        elif p.exists():
            add(p)
        elif glob.has_magic(str(raw)):
            matches = sorted(Path(m) for m in glob.glob(str(raw), recursive=True))
            files = [m for m in matches if not m.is_dir() and is_media(m) and not apple_double(m)]
            _note_skipped([m for m in matches if not m.is_dir()], skipped)
            if not files:
                raise ForgeryDetError(f"no image or video file matches '{raw}'")
            for f in files:
                add(f)
        elif broken_link(p):
            raise ForgeryDetError(f"{p}: a symbolic link to nothing readable (dangling, or a loop)")
        else:
            raise ForgeryDetError(f"{p}: no such file or folder")
    if skipped is not None:  # a file also given by name is scanned (and gets its error), so it is not "left out"
        skipped[start:] = [f for f in skipped[start:] if file_key(f) not in seen]
    return out


def file_key(p: Path) -> Path:
    """A file's identity for dropping duplicates: its resolved path; a link loop's own absolute path."""
    try:
        return p.resolve()
    except (OSError, RuntimeError):  # a loop: Python 3.11 raises RuntimeError, 3.13 OSError
        return Path(os.path.abspath(p))


def _note_skipped(files: list[Path], skipped: list[Path] | None) -> None:
    if skipped is not None:
        skipped += [f for f in files if not is_media(f) and not f.name.startswith(".")]


def describe_skipped(skipped: Sequence[Path]) -> str:
    """One line for files a folder or glob held that are not scanned: how many, by extension (most first)."""
    unique = {file_key(Path(f)): Path(f) for f in skipped}.values()  # a file reached twice counts once
    counts = Counter(f.suffix.lower() or "(none)" for f in unique)
    kinds = ", ".join(f"{ext} {n}" for ext, n in sorted(counts.items(), key=lambda kv: (-kv[1], kv[0])))
    n = sum(counts.values())
    return f"{n} file{'s' if n != 1 else ''} neither image nor video ({kinds}); images are {', '.join(sorted(IMAGE_EXTS))}"


def check_sampling(num_frames: int | None = None, every: int | None = None, fps: float | None = None) -> None:
    """The frame-sampling settings, named as the options that set them: at most one set, each in range.
    ExtractConfig checks them when it is made (before any folder is written), sample_indices for direct callers."""
    if sum(m is not None for m in (num_frames, every, fps)) > 1:
        raise ForgeryDetError("choose one way to sample frames: --frames, --every or --fps")
    if num_frames is not None and num_frames < 1:
        raise ForgeryDetError(f"--frames {num_frames}: sample at least one frame")
    if every is not None and every < 1:
        raise ForgeryDetError(f"--every {every}: sample every n-th frame with n >= 1")
    if fps is not None and not 0 < fps < math.inf:  # NaN fails too
        raise ForgeryDetError(f"--fps {fps}: the sampling rate must be a number > 0")


def sample_indices(
    frame_count: int,
    video_fps: float = 0.0,
    num_frames: int | None = None,
    every: int | None = None,
    fps: float | None = None,
) -> list[int]:
    """Which frame indices to read: `num_frames` spread evenly over the video (first and last included),
    or every `every`-th frame, or `fps` frames per second of video. Exactly one of the three may be set;
    none set means DEFAULT_NUM_FRAMES evenly."""
    check_sampling(num_frames, every, fps)
    if frame_count <= 0:
        return []
    if every is not None:
        return list(range(0, frame_count, every))
    if fps is not None:
        if video_fps <= 0:
            raise ForgeryDetError("the video does not state its frame rate; sample by number of frames instead of fps")
        step = max(1.0, video_fps / fps)  # faster than the video's own rate: every frame
        return sorted({min(frame_count - 1, int(round(k * step))) for k in range(int(math.ceil(frame_count / step)))})
    t = DEFAULT_NUM_FRAMES if num_frames is None else num_frames
    if t >= frame_count:
        return list(range(frame_count))
    return sorted({int(round(x)) for x in np.linspace(0, frame_count - 1, t)})


@contextlib.contextmanager
def _cv_path(path: Path) -> Iterator[str]:
    """A name OpenCV can open for `path`: the path itself when it is valid UTF-8, else a temporary ASCII
    symbolic link to it (removed on exit; an opened capture keeps its file open)."""
    name = str(path)
    try:
        name.encode("utf-8")
    except UnicodeEncodeError:
        name = ""
    if name:
        yield name
        return
    with tempfile.TemporaryDirectory(prefix="forgerydet-") as d:
        link = os.path.join(d, "media" + "".join(c for c in path.suffix if c.isascii()))
        try:
            os.symlink(os.path.abspath(path), link)
        except OSError as e:
            raise ForgeryDetError(f"{path}: cannot open a file of this name ({os_reason(e)}): rename it to valid UTF-8") from None
        yield link


def _open_video(path: Path) -> cv2.VideoCapture:
    check_readable_file(path)
    # FFmpeg's and OpenCV's own log lines ("moov atom not found") would duplicate our one-line error.
    os.environ.setdefault("OPENCV_FFMPEG_LOGLEVEL", "-8")  # (fd 2 silenced: no log level to set and restore,
    with _cv_path(path) as name, quiet_native_stderr():  # which threads opening videos at once left at ERROR)
        cap = cv2.VideoCapture(name, cv2.CAP_FFMPEG)
    if not cap.isOpened():
        cap.release()
        raise ForgeryDetError(f"{path}: cannot open the video (corrupt, truncated, or not a video file)")
    cap.set(cv2.CAP_PROP_ORIENTATION_AUTO, 1)
    return cap


def _count_by_grabbing(path: Path) -> int:
    cap = _open_video(path)
    try:
        n = 0
        while cap.grab():
            n += 1
        return n
    finally:
        cap.release()


def video_info(path: str | Path) -> VideoInfo:
    """Frame count, fps and (display-oriented) size of a video. The count comes from the container,
    or from grabbing through the video once when the container does not state it."""
    path = Path(path)
    cap = _open_video(path)
    try:
        n = int(cap.get(cv2.CAP_PROP_FRAME_COUNT))
        fps = float(cap.get(cv2.CAP_PROP_FPS))
        w, h = int(cap.get(cv2.CAP_PROP_FRAME_WIDTH)), int(cap.get(cv2.CAP_PROP_FRAME_HEIGHT))
        sar, turned = pixel_aspect(cap)
    finally:
        cap.release()
    if n <= 0:
        n = _count_by_grabbing(path)
    if n <= 0:
        raise ForgeryDetError(f"{path}: the video holds no frames")
    if not math.isfinite(fps):
        fps = 0.0
    w, h = square_pixel_size(w, h, sar, turned)
    return VideoInfo(frame_count=n, fps=fps, width=w, height=h, pixel_aspect=sar)


def iter_frames(
    path: str | Path,
    num_frames: int | None = None,
    every: int | None = None,
    fps: float | None = None,
    indices: Sequence[int] | None = None,
    seek_threshold: int = DEFAULT_SEEK_THRESHOLD,
    deinterlace: bool = True,
    interlaced: bool | None = None,
    info: VideoInfo | None = None,
    unreadable: list[int] | None = None,
) -> Iterator[Frame]:
    """Stream the sampled frames of a video (or the one frame of an image) as Frame(index, time, RGB).

    Sampling: `num_frames` evenly (default 32), or `every` n-th frame, or `fps` per second, or explicit
    `indices` (e.g. the frames sampled from the real video of a pair; indices past the end are dropped).
    The file is opened and checked now, so a missing, empty, corrupt or non-media file raises
    ForgeryDetError at the call, not at the first `next()`. A video whose sampled frames cannot be
    decoded at all raises ForgeryDetError while iterating. One that cannot (a damaged or cut-off video) is skipped,
    its index appended to `unreadable` if given, and the next reached by a seek that must land on it.
    `deinterlace`: an interlaced video (combing on its frames) is deinterlaced (faces/playback.py; Frame.deinterlaced).
    `interlaced`: that decision when it is already made (a pair's fake follows its real); None: made on the frames.
    `info`: the video's video_info(path) when the caller already has it (not read again).
    """
    path = Path(path)
    if media_kind(path) == "image":
        image = read_image(path)
        return iter([Frame(0, 0.0, image)])
    info = info or video_info(path)
    if indices is not None:
        wanted = sorted({int(i) for i in indices if 0 <= int(i) < info.frame_count})
    else:
        wanted = sample_indices(info.frame_count, info.fps, num_frames, every, fps)
    cap = _open_video(path)
    return _stream(cap, path, wanted, info.fps, seek_threshold, Playback(*pixel_aspect(cap), deinterlace, interlaced),
                   unreadable)


def _stream(
    cap: cv2.VideoCapture, path: Path, wanted: list[int], fps: float, seek_threshold: int, shown: Playback,
    unreadable: list[int] | None = None,
) -> Iterator[Frame]:
    try:
        pos = 0  # index of the frame the next grab() returns
        delivered = 0
        lost = False  # the stream broke: reach the next sampled frame by a seek, and check that it landed
        for i in wanted:
            if lost or i - pos > seek_threshold:
                cap.set(cv2.CAP_PROP_POS_FRAMES, i)
                pos = i
            ok, pos = _grab_through(cap, pos, i)
            if ok and lost and int(cap.get(cv2.CAP_PROP_POS_FRAMES)) != i + 1:
                ok = False  # a seek into damaged data "succeeds" at another frame: not frame i
            bgr = cap.retrieve()[1] if ok else None
            if bgr is None:
                lost = True
                if unreadable is not None:
                    unreadable.append(i)
                continue
            lost = False
            t = i / fps if fps > 0 else cap.get(cv2.CAP_PROP_POS_MSEC) / 1000.0
            for frame in shown.push(i, float(t), cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB)):
                yield frame
                delivered += 1
        for frame in shown.flush():
            yield frame
            delivered += 1
        if wanted and delivered == 0:
            raise ForgeryDetError(f"{path}: no frame could be decoded (corrupt video or unsupported codec)")
    finally:
        cap.release()


GRAB_RETRIES = 3  # failed grabs in a row before a frame counts as lost (one damaged packet fails one grab)


def _grab_through(cap: cv2.VideoCapture, pos: int, i: int) -> tuple[bool, int]:
    """Grab frames pos..i, the last left for retrieve(): (frame i grabbed?, next position). A failed grab is tried
    again (FFmpeg skips a damaged packet; the next grab returns that frame): the position is read back, not counted."""
    failed = 0
    while pos <= i:
        if cap.grab():
            pos, failed = pos + 1, 0
            continue
        failed += 1
        if failed > GRAB_RETRIES:
            return False, pos
        pos = max(pos, int(cap.get(cv2.CAP_PROP_POS_FRAMES)))
    return True, pos
