"""Decoded video frames as a player shows them: square pixels and deinterlaced.

OpenCV hands over each frame as stored (upright, since faces/media.py turns on `CAP_PROP_ORIENTATION_AUTO`).
A player does two more things, and faces must be detected and scored on what a viewer sees:

- **Non-square pixels** (anamorphic video: DVD and broadcast SD at 720x576 or 720x480, HDV at 1440x1080). Stored
  as they are, a face in a 16:9 PAL frame is squeezed to 71 % of its width. The stream's sample aspect ratio
  (`CAP_PROP_SAR_NUM` / `_DEN`: the container's `pasp` box or the codec's own field) stretches each frame along its
  short axis, never shrinking it, so no detail is lost. Face boxes and crops are in those square-pixel frames.
- **Interlacing** (faces/interlace.py). It is a property of the stream, so it is decided once per video: the
  first `INTERLACE_PROBE_FRAMES` sampled frames are held until one of them shows combing (the video is
  interlaced: all of its frames are deinterlaced) or none does (it is not, and no later frame is tested: the test
  costs ~8 ms on a 1920x1080 frame, which `extract --every 1` would pay on every frame). Deinterlacing comes
  first, before any resize mixes the two fields' rows; a turned frame's fields are its columns.
"""

from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np

from forgerydet.faces.interlace import deinterlace, is_combed

# 8 of scan's 32 frames: a quarter of the video's length, at most 8 frames held in memory
INTERLACE_PROBE_FRAMES = 8


@dataclass(frozen=True)
class Frame:
    """One decoded frame: its index in the video (0 for an image), time in seconds, RGB uint8 (H,W,3), whether
    it was deinterlaced (its video showed interlacing combing), and the stored frames' pixel aspect (the image is
    already stretched to square pixels; 1.0 for square-pixel video and images)."""

    index: int
    time: float
    image: np.ndarray
    deinterlaced: bool = False
    pixel_aspect: float = 1.0


def pixel_aspect(cap: cv2.VideoCapture) -> tuple[float, bool]:
    """(the stored frames' sample aspect ratio, whether the display matrix turns them by 90 or 270 degrees).
    An unknown (0/1) or implausible ratio (beyond 4:1) counts as square pixels."""
    num, den = cap.get(cv2.CAP_PROP_SAR_NUM), cap.get(cv2.CAP_PROP_SAR_DEN)
    sar = num / den if num > 0 and den > 0 else 1.0
    if not 0.25 <= sar <= 4.0 or abs(sar - 1.0) < 1e-3:
        sar = 1.0
    return sar, int(round(cap.get(cv2.CAP_PROP_ORIENTATION_META))) % 180 == 90


def square_pixel_size(width: int, height: int, sar: float, turned: bool) -> tuple[int, int]:
    """The (width, height) a delivered frame of `width` x `height` (already turned upright) takes with square
    pixels: stretched along one axis, never shrunk. A turned frame's stored width is its height now."""
    stretch_x = sar if not turned else 1.0 / sar  # how much wider the displayed frame is than delivered
    if stretch_x >= 1.0:
        return max(1, round(width * stretch_x)), height
    return width, max(1, round(height / stretch_x))


class Playback:
    """Frames of one video in, frames as shown out: `push` each decoded frame (in order) and deliver what it
    returns, then deliver `flush()`. `sar`, `turned`: from `pixel_aspect`. `deinterlace`: False leaves the
    fields as stored. `interlaced`: the decision when it was made elsewhere (a pair's fake is decoded as its real
    was, so the two never differ by deinterlacing alone); None: decided here, on the first frames."""

    def __init__(self, sar: float = 1.0, turned: bool = False, deinterlace: bool = True,
                 interlaced: bool | None = None) -> None:
        self.sar, self.turned = sar, turned
        self.interlaced: bool | None = interlaced if deinterlace else False  # None: not decided yet
        self._held: list[tuple[int, float, np.ndarray]] = []

    def _fields_as_rows(self, rgb: np.ndarray) -> np.ndarray:
        """A turned frame transposed so its fields are rows (and, applied again, back)."""
        return np.ascontiguousarray(rgb.transpose(1, 0, 2)) if self.turned else rgb

    def push(self, index: int, time: float, rgb: np.ndarray) -> list[Frame]:
        """The frames ready to deliver after this one (none while the first frames are held)."""
        if self.interlaced is None and is_combed(self._fields_as_rows(rgb)):
            self.interlaced = True
        self._held.append((index, time, rgb))
        if self.interlaced is None and len(self._held) < INTERLACE_PROBE_FRAMES:
            return []
        return self.flush()

    def flush(self) -> list[Frame]:
        """The frames held (a video shorter than the probe, or its end)."""
        if self.interlaced is None:
            self.interlaced = False
        out = [self._show(*h) for h in self._held]
        self._held = []
        return out

    def _show(self, index: int, time: float, rgb: np.ndarray) -> Frame:
        if self.interlaced:
            rgb = self._fields_as_rows(deinterlace(self._fields_as_rows(rgb)))
        if self.sar != 1.0:  # stretch to square pixels (linear along one axis, as players do)
            rgb = cv2.resize(rgb, square_pixel_size(rgb.shape[1], rgb.shape[0], self.sar, self.turned),
                             interpolation=cv2.INTER_LINEAR)
        return Frame(index, time, rgb, bool(self.interlaced), self.sar)
