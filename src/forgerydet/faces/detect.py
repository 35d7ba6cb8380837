"""Face detection (facenet-pytorch MTCNN, weights shipped in the package) and face cropping.

MTCNN runs on a downscaled copy of each frame (longest side `detect_side`); boxes and the 5 landmarks
are mapped back to full resolution and the crop is cut from the FULL-resolution frame: a square of side
`(1 + margin) * longer box side` centred on the box (margin 0.3 -> 1.3x, as in the FaceForensics++
paper), zero-padded where it leaves the frame, resized to `size` x `size`. Landmarks are kept in frame
coordinates and in crop pixel coordinates. `crop_faces` cuts given boxes out of another frame, which
is how a fake frame is cropped with the box found on its real frame.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Sequence

import cv2
import numpy as np

from forgerydet.errors import ForgeryDetError
from forgerydet.faces.media import Frame
from forgerydet.runtime import resolve_device

LANDMARK_NAMES = ("left_eye", "right_eye", "nose", "mouth_left", "mouth_right")


@dataclass
class DetectorConfig:
    """Face detection and cropping settings.

    detect_side:    MTCNN sees a copy of the frame downscaled so its longest side is at most this (pixels).
    min_confidence: faces with a lower MTCNN probability are dropped.
    min_face:       faces whose shorter box side (full-resolution pixels) is smaller are dropped.
    margin:         the crop square's side is (1 + margin) x the longer box side.
    size:           crop side in pixels after resizing.
    batch_size:     frames per MTCNN call (same-size frames are stacked).
    device:         torch device for MTCNN ('cpu', 'cuda', 'cuda:1', ...).
    """

    detect_side: int = 640
    min_confidence: float = 0.9
    min_face: int = 32
    margin: float = 0.3
    size: int = 224
    batch_size: int = 8
    device: str = "cpu"

    def __post_init__(self) -> None:
        checks = [
            (64 <= self.detect_side <= 8192, f"detect_side={self.detect_side} must be in [64, 8192]"),
            (0.0 <= self.min_confidence <= 1.0, f"min_confidence={self.min_confidence} must be in [0, 1]"),
            (self.min_face >= 1, f"min_face={self.min_face} must be >= 1"),
            (0.0 <= self.margin <= 4.0, f"margin={self.margin} must be in [0, 4] (the crop's side is 1 + margin box sides)"),
            (16 <= self.size <= 2048, f"size={self.size} must be in [16, 2048] pixels"),
            (self.batch_size >= 1, f"batch_size={self.batch_size} must be >= 1"),
        ]
        for ok, msg in checks:
            if not ok:
                raise ForgeryDetError(msg)


@dataclass
class Detections:
    """The faces MTCNN found on one frame, in full-resolution frame coordinates, most confident first."""

    boxes: np.ndarray  # (N,4) float32 x1,y1,x2,y2
    landmarks: np.ndarray  # (N,5,2) float32 x,y
    confidences: np.ndarray  # (N,) float32

    def __len__(self) -> int:
        return len(self.boxes)

    @classmethod
    def empty(cls) -> "Detections":
        return cls(np.zeros((0, 4), np.float32), np.zeros((0, 5, 2), np.float32), np.zeros((0,), np.float32))


@dataclass
class Face:
    """One face on one frame.

    box, landmarks:  frame pixel coordinates (full resolution); landmarks (5,2) in LANDMARK_NAMES order.
    landmarks_crop:  the same landmarks in crop pixel coordinates (0..size).
    crop_box:        the square region of the frame that was cut (may extend past the frame; padded black).
    crop:            RGB uint8 (size,size,3).
    track_id:        set by track.assign_tracks (-1 until then).
    """

    frame_index: int
    time: float
    box: np.ndarray
    landmarks: np.ndarray
    landmarks_crop: np.ndarray
    confidence: float
    crop: np.ndarray = field(repr=False)
    crop_box: np.ndarray
    track_id: int = -1


def square_box(box: np.ndarray, margin: float) -> np.ndarray:
    """The square (x1,y1,x2,y2), integer-aligned, of side (1+margin) x the longer side of `box`, same centre."""
    x1, y1, x2, y2 = (float(v) for v in box)
    side = max(1.0, round(max(x2 - x1, y2 - y1) * (1.0 + margin)))
    cx, cy = (x1 + x2) / 2, (y1 + y2) / 2
    left, top = round(cx - side / 2), round(cy - side / 2)
    return np.array([left, top, left + side, top + side], np.float32)


def crop_square(image: np.ndarray, square: np.ndarray, size: int) -> np.ndarray:
    """Cut the integer square (x1,y1,x2,y2) from image (H,W,3), black outside the frame, resize to size x size."""
    h, w = image.shape[:2]
    x1, y1, x2, y2 = (int(round(v)) for v in square)
    side = x2 - x1
    canvas = np.zeros((side, side, 3), np.uint8)  # (side,side,3)
    sx1, sy1, sx2, sy2 = max(x1, 0), max(y1, 0), min(x2, w), min(y2, h)
    if sx2 > sx1 and sy2 > sy1:
        canvas[sy1 - y1 : sy2 - y1, sx1 - x1 : sx2 - x1] = image[sy1:sy2, sx1:sx2]
    interp = cv2.INTER_AREA if side > size else cv2.INTER_LINEAR
    return cv2.resize(canvas, (size, size), interpolation=interp)  # (size,size,3)


def crop_face(
    image: np.ndarray, box: np.ndarray, margin: float, size: int, landmarks: np.ndarray | None = None
) -> tuple[np.ndarray, np.ndarray | None, np.ndarray]:
    """Crop one face from a full-resolution frame: (crop (size,size,3), landmarks in crop coords or None, crop_box)."""
    sq = square_box(box, margin)
    crop = crop_square(image, sq, size)
    lm_crop = None
    if landmarks is not None:
        scale = size / float(sq[2] - sq[0])
        lm_crop = ((np.asarray(landmarks, np.float32) - sq[:2]) * scale).astype(np.float32)  # (5,2)
    return crop, lm_crop, sq


def crop_faces(
    frame: Frame,
    boxes: np.ndarray,
    landmarks: np.ndarray | None = None,
    confidences: np.ndarray | None = None,
    margin: float = 0.3,
    size: int = 224,
    track_ids: Sequence[int] | None = None,
) -> list[Face]:
    """Cut the given boxes (N,4) from `frame` (e.g. boxes found on the real frame, applied to its fake).

    landmarks (N,5,2) and confidences (N,) are copied into the Faces (NaN / 0 when not given)."""
    boxes = np.asarray(boxes, np.float32).reshape(-1, 4)
    faces = []
    for k, box in enumerate(boxes):
        lm = None if landmarks is None else np.asarray(landmarks[k], np.float32).reshape(5, 2)
        crop, lm_crop, sq = crop_face(frame.image, box, margin, size, lm)
        faces.append(
            Face(
                frame_index=frame.index,
                time=frame.time,
                box=box.copy(),
                landmarks=lm if lm is not None else np.full((5, 2), np.nan, np.float32),
                landmarks_crop=lm_crop if lm_crop is not None else np.full((5, 2), np.nan, np.float32),
                confidence=float(confidences[k]) if confidences is not None else 0.0,
                crop=crop,
                crop_box=sq,
                track_id=int(track_ids[k]) if track_ids is not None else -1,
            )
        )
    return faces


POOL = 32  # images at most in one cascade call of batches smaller than batch_size (see FaceDetector.detect)
POOL_PIXELS = 4_000_000  # and detection-size pixels at most (ten 640x640 photos): bounds the tables' memory


def channels_last(mtcnn) -> None:
    """Store MTCNN's three nets' weights channels-last (NHWC), in place. On a CPU their convolutions then give
    channels-last outputs, and PyTorch's max_pool2d is vectorised for those but not for NCHW with
    ceil_mode, which the nets use: RNet and ONet run 3-4x faster, PNet 1.5-2x, the same numbers to float
    rounding (bench/pairs.py). facenet-pytorch's inputs stay NCHW; nothing else changes."""
    import torch

    for net in (mtcnn.pnet, mtcnn.rnet, mtcnn.onet):
        net.to(memory_format=torch.channels_last)


class FaceDetector:
    """MTCNN over batches of frames; boxes and landmarks in full-resolution coordinates.

    >>> det = FaceDetector(DetectorConfig(device="cpu"))
    >>> faces_per_frame = det.faces(frames)        # list[list[Face]], crops included
    """

    def __init__(self, config: DetectorConfig | None = None) -> None:
        self.config = config or DetectorConfig()
        self._mtcnn = None

    @property
    def mtcnn(self):
        if self._mtcnn is None:
            from facenet_pytorch import MTCNN

            device = resolve_device(self.config.device)  # a name torch does not know, a GPU that is not there
            mtcnn = MTCNN(keep_all=True, select_largest=False, device=device)
            if device.type == "cpu":
                channels_last(mtcnn)
            self._mtcnn = mtcnn
        return self._mtcnn

    def detect(self, images: Sequence[np.ndarray]) -> list[Detections]:
        """Detections for each RGB uint8 image (H,W,3); same-size images are batched through MTCNN."""
        cfg = self.config
        out: list[Detections | None] = [None] * len(images)
        small: list[np.ndarray] = []
        scales: list[float] = []
        for img in images:
            h, w = img.shape[:2]
            s = min(1.0, cfg.detect_side / max(h, w))
            small.append(img if s == 1.0 else cv2.resize(img, (max(1, round(w * s)), max(1, round(h * s))), interpolation=cv2.INTER_AREA))
            scales.append(s)
        by_shape: dict[tuple, list[int]] = {}  # (shape, MTCNN min face size) -> images
        for i, img in enumerate(small):
            # MTCNN's own min_face_size is in detection pixels; smaller faces are filtered below anyway.
            min_size = max(12, int(cfg.min_face * scales[i]))
            if min(img.shape[:2]) >= min_size:  # else no face this large fits (and MTCNN fails on an empty pyramid)
                by_shape.setdefault((img.shape, min_size), []).append(i)
        batches = [(idx[b : b + cfg.batch_size], min_size) for (_, min_size), idx in by_shape.items()
                   for b in range(0, len(idx), cfg.batch_size)]
        # A full batch goes through the cascade alone. Smaller ones (a shape with few images: a folder of photos of
        # many sizes, where each photo was a batch of its own) share one call, up to POOL images: R-Net and O-Net
        # then run once over all their boxes instead of once per photo. Full batches gain nothing from sharing
        # (measured: 8 LFW photos already give R-Net hundreds of boxes).
        full = [[b] for b in batches if len(b[0]) == cfg.batch_size]
        pools: list[list[tuple[list[int], int]]] = []
        images = pixels = 0  # in the last pool: its summed-area tables (12 bytes a pixel) live until its call ends
        for b in (b for b in batches if len(b[0]) < cfg.batch_size):
            more = len(b[0]) * small[b[0][0]].shape[0] * small[b[0][0]].shape[1]
            if not pools or images + len(b[0]) > POOL or pixels + more > POOL_PIXELS:
                pools.append([])
                images = pixels = 0
            pools[-1].append(b)
            images, pixels = images + len(b[0]), pixels + more
        for pool in full + pools:
            chunks = [c for c, _ in pool]
            found = self._cascade([np.stack([small[i] for i in c]) for c in chunks], [m for _, m in pool])
            for i, (boxes, probs, points) in zip((i for c in chunks for i in c), found):
                out[i] = self._filter(boxes, probs, points, scales[i])
        return [d if d is not None else Detections.empty() for d in out]

    def _cascade(self, batches: list[np.ndarray], min_sizes: list[int]) -> list[tuple]:
        """MTCNN on (B,h,w,3) uint8 batches (each of one size) with their minimum face sizes: per image, in order,
        (boxes (N,4), probs (N,), landmarks (N,5,2)), or Nones. On a CPU, faces/cascade.py's copy of
        facenet-pytorch's cascade (the same numbers, its area resampling from summed-area tables, R-Net and O-Net
        over the boxes of every batch at once); elsewhere, or for a box too large for it, facenet-pytorch's own,
        batch by batch, with the same per-image suppression."""
        import torch

        from forgerydet.faces.cascade import WindowTooLarge, detect_faces, facenet_suppressing_per_image

        mtcnn = self.mtcnn
        if torch.device(mtcnn.device).type == "cpu":
            try:
                found = detect_faces(batches, min_sizes, mtcnn.pnet, mtcnn.rnet, mtcnn.onet, mtcnn.thresholds,
                                     mtcnn.factor)
                return [(b[:, :4], b[:, 4], p) if len(b) else (None, None, None) for b, p in found]
            except WindowTooLarge:
                pass
        out = []
        with facenet_suppressing_per_image():
            for batch, min_size in zip(batches, min_sizes):
                mtcnn.min_face_size = min_size
                boxes, probs, points = mtcnn.detect(batch, landmarks=True)
                out += list(zip(boxes, probs, points))
        return out

    def _filter(self, boxes, probs, points, scale: float) -> Detections:
        if boxes is None:
            return Detections.empty()
        boxes = np.asarray(boxes, np.float32).reshape(-1, 4) / scale  # (N,4)
        points = np.asarray(points, np.float32).reshape(-1, 5, 2) / scale  # (N,5,2)
        probs = np.asarray(probs, np.float32).reshape(-1)  # (N,)
        sides = np.minimum(boxes[:, 2] - boxes[:, 0], boxes[:, 3] - boxes[:, 1])
        keep = (probs >= self.config.min_confidence) & (sides >= self.config.min_face)
        order = np.argsort(-probs[keep], kind="stable")
        return Detections(boxes[keep][order], points[keep][order], probs[keep][order])

    def faces(self, frames: Sequence[Frame]) -> list[list[Face]]:
        """Detect and crop: the Faces of each frame (most confident first), crops cut at full resolution."""
        dets = self.detect([f.image for f in frames])
        return [
            crop_faces(f, d.boxes, d.landmarks, d.confidences, self.config.margin, self.config.size)
            for f, d in zip(frames, dets)
        ]
