"""One file -> its sampled frames -> tracked faces: `detect_source(path, config, detector)` returns
SourceFaces (crops in memory, track ids set) for every sampled frame of a video or image. This is what scan,
enroll, pairs and extract call; ExtractConfig (frame sampling, tracking, detection) is its config."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Sequence

import numpy as np

from forgerydet.errors import ForgeryDetError, path_text
from forgerydet.faces.detect import DetectorConfig, Face, FaceDetector
from forgerydet.faces.media import (
    EMPTY_PATH,
    MediaKind,
    VideoInfo,
    check_sampling,
    iter_frames,
    media_kind,
    sample_indices,
    video_info,
)
from forgerydet.faces.segment import check_segment, clock, frame_span, segment_text
from forgerydet.faces.track import assign_tracks


@dataclass
class ExtractConfig:
    """Frame sampling, tracking and detection settings for one extraction.

    num_frames / every / fps: how frames are sampled (at most one set; none set = 32 evenly).
    iou_threshold:            least IoU for a face to continue a track from the previous sampled frame.
    detector:                 MTCNN and crop settings (size, margin, detect_side, device, ...).
    deinterlace:              deinterlace video frames that show interlacing combing (faces/interlace.py).
    start / end:              seconds: sample a video's frames in [start, end) only (faces/segment.py; None: from
                              its start / to its end). Images are read whole.
    """

    num_frames: int | None = None
    every: int | None = None
    fps: float | None = None
    iou_threshold: float = 0.3
    detector: DetectorConfig = field(default_factory=DetectorConfig)
    deinterlace: bool = True
    start: float | None = None
    end: float | None = None

    def __post_init__(self) -> None:
        check_sampling(self.num_frames, self.every, self.fps)  # before any folder is written
        check_segment(self.start, self.end)
        if not 0.0 < self.iou_threshold <= 1.0:
            raise ForgeryDetError(f"iou_threshold={self.iou_threshold} must be in (0, 1]")

    def settings(self) -> dict:
        """What decides the written crops (device and batch size do not)."""
        d = self.detector
        return {
            "num_frames": self.num_frames, "every": self.every, "fps": self.fps,
            "iou_threshold": self.iou_threshold, "size": d.size, "margin": d.margin,
            "detect_side": d.detect_side, "min_confidence": d.min_confidence, "min_face": d.min_face,
            "deinterlace": self.deinterlace,
        } | ({"start": self.start, "end": self.end} if (self.start, self.end) != (None, None) else {})  # fmt: skip


# Sampled frames that fail only at a video's very end (after every frame that decoded, within the last 3 frames or
# 2 % of the stated count) are an overstated frame count (estimated from duration x rate, variable frame rate),
# not damage, and are not reported as unreadable.
TAIL_SLACK, TAIL_SLACK_SHARE = 3, 0.02


@dataclass
class SourceFaces:
    """The sampled frames of one file and the faces found on each (track ids set)."""

    source: Path
    kind: MediaKind
    frames: list[tuple[int, float]]  # (frame_index, time) of every sampled frame
    faces: list[list[Face]]  # per sampled frame, most confident first
    deinterlaced: int = 0  # sampled frames that showed interlacing combing and were deinterlaced
    pixel_aspect: float = 1.0  # the stored frames' pixel aspect; boxes are in frames stretched to square pixels
    info: VideoInfo | None = None  # a video's frame count, frame rate and size (that of its decoded frames)
    still: np.ndarray | None = field(default=None, repr=False)  # an image source's pixels (RGB), kept: it is one frame
    unreadable: list[int] = field(default_factory=list)  # sampled frame indices that could not be decoded (damaged video)
    image_frames: int = 1  # the frames or pages an image file holds (an animated WebP, a multi-page TIFF); one is read

    def first_frame_warning(self) -> list[str]:
        """A warning naming the image when it holds more frames or pages than the first, which alone is read."""
        return [f"{path_text(self.source)}: {first_frame_only(self.image_frames)}"] if self.image_frames > 1 else []

    def unreadable_warning(self) -> list[str]:
        """A warning naming the file when some of its sampled frames could not be decoded, else none."""
        if not self.unreadable:
            return []
        n = len(self.unreadable)
        return [f"{self.source}: {n} of {n + len(self.frames)} sampled frames could not be decoded (a damaged or cut-off "
                "video) and were skipped"]

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


def image_frame_count(path: Path) -> int:
    """How many frames (an animated WebP or PNG) or pages (a multi-page TIFF) an image file holds, of which
    io.read_image decodes the first alone; 1 where Pillow cannot tell."""
    import warnings

    from PIL import Image

    try:
        with warnings.catch_warnings():  # Pillow's DecompressionBombWarning on a large photo
            warnings.simplefilter("ignore")
            with Image.open(path) as im:
                return max(1, int(getattr(im, "n_frames", 1)))
    except Exception:  # noqa: BLE001 - a format Pillow cannot read: OpenCV's decoder says what is wrong
        return 1


def first_frame_only(frames: int) -> str:
    """What is said of an image file of several frames or pages: only the first was looked at."""
    return f"the file holds {frames} frames or pages (an animated image or a multi-page TIFF): only the first is read"


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
    if not str(path):  # not the current folder ("." is "a folder, where a video or image file is wanted")
        raise ForgeryDetError(EMPTY_PATH)
    config = config or ExtractConfig()
    detector = detector or FaceDetector(config.detector)
    path = Path(path)
    kind = media_kind(path)
    info = video_info(path) if kind == "video" else None
    if info is not None and indices is None and (config.start, config.end) != (None, None):
        first, stop = frame_span(info.frame_count, info.fps, config.start, config.end, path_text(path))
        indices = [first + i for i in sample_indices(stop - first, info.fps, config.num_frames, config.every, config.fps)]
    unreadable: list[int] = []
    stream = iter_frames(path, config.num_frames, config.every, config.fps, indices=indices,
                         deinterlace=config.deinterlace, info=info, unreadable=unreadable)
    frames: list[tuple[int, float]] = []
    faces: list[list[Face]] = []
    batch = []
    bs = detector.config.batch_size
    deinterlaced, pixel_aspect, still = 0, 1.0, None
    try:
        for frame in stream:
            deinterlaced += frame.deinterlaced
            pixel_aspect = frame.pixel_aspect
            still = frame.image if kind == "image" else None
            batch.append(frame)
            if len(batch) == bs:
                faces.extend(detector.faces(batch))
                frames.extend((f.index, f.time) for f in batch)
                batch = []
    except ForgeryDetError:
        if info is None or (config.start, config.end) == (None, None) or not unreadable:
            raise
        raise ForgeryDetError(  # a part asked for that the file does not hold: not "a corrupt video"
            f"{path_text(path)}: none of the {len(unreadable)} frames sampled in {segment_text(config.start, config.end)} "
            f"could be decoded: the video may be cut off or damaged before them (it states a length of "
            f"{clock(info.duration)})") from None
    if batch:
        faces.extend(detector.faces(batch))
        frames.extend((f.index, f.time) for f in batch)
    if info is not None and unreadable:  # a container that states a frame or two more than it holds is not damaged
        last = max((i for i, _ in frames), default=-1)
        slack = max(TAIL_SLACK, round(TAIL_SLACK_SHARE * info.frame_count))
        if min(unreadable) > last and min(unreadable) >= info.frame_count - slack:
            unreadable = []
    ids = assign_tracks([np.array([f.box for f in fr]).reshape(-1, 4) for fr in faces], config.iou_threshold)
    for fr, fr_ids in zip(faces, ids):
        for face, tid in zip(fr, fr_ids):
            face.track_id = tid
        if kind == "image":  # a photo's faces are numbered from the left, as a reader looks for them: scan's face k is
            for k, face in enumerate(sorted(fr, key=lambda f: (float(f.box[0]), float(f.box[1])))):  # extract's
                face.track_id = k  # track k and enroll's (the list keeps the detector's order, which crop names use)
    return SourceFaces(path, kind, frames, faces, deinterlaced, pixel_aspect, info, still, unreadable,
                       image_frame_count(path) if kind == "image" else 1)
