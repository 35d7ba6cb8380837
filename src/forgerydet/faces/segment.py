"""A part of a video to sample from (`scan/extract/enroll --start T --end T`): the suspect minutes of a long
interview or broadcast, which 32 frames spread over the whole file would mostly miss. Times are seconds of the
video's own clock (90, 90.5, 1:30, 01:02:03.5); frames are sampled inside [start, end) as they would be over a
whole video, and keep their indices and times in the whole file (the report's timeline shows where they lie).
"""

from __future__ import annotations

import math
import re

from forgerydet.errors import ForgeryDetError

MAX_SECONDS = 366 * 24 * 3600.0  # no video is a year long; larger numbers are typos (and overflow as floats)
_TIME = re.compile(r"^(?:(\d+):)??(?:(\d+):)?(\d+(?:\.\d*)?|\.\d+)$", re.ASCII)  # ASCII digits only (float() took '١')


def parse_time(text: str | float | int | None, option: str) -> float | None:
    """Seconds from '90', '90.5', '1:30' or '1:02:03.5' (minutes and seconds under 60 after the first field); a
    number is taken as seconds; None stays None. Anything else, negative or not finite, is one ForgeryDetError."""
    if text is None:
        return None
    if isinstance(text, bool):
        raise ForgeryDetError(f"{option} {text!r}: give a time as seconds (90.5), MM:SS or HH:MM:SS")
    shown = repr(text) if len(str(text)) <= 40 else f"{str(text)[:20]!r}... ({len(str(text)):,} characters)"
    if isinstance(text, (int, float)):
        seconds = float(text)
    else:
        m = _TIME.match(str(text).strip()) if len(str(text)) <= 40 else None  # no time is 40 characters long
        if not m:
            raise ForgeryDetError(f"{option} {shown}: give a time as seconds (90.5), MM:SS or HH:MM:SS")
        hours, minutes, secs = m.group(1), m.group(2), float(m.group(3))
        if minutes is not None and secs >= 60 or hours is not None and int(minutes) >= 60:
            raise ForgeryDetError(f"{option} {shown}: minutes and seconds after the first field must be under 60")
        seconds = int(hours or 0) * 3600 + int(minutes or 0) * 60 + secs
    if not 0 <= seconds < MAX_SECONDS:  # NaN fails too
        raise ForgeryDetError(f"{option} {shown}: a time must be a number of seconds >= 0 (and under a year)")
    return seconds


def check_segment(start: float | None, end: float | None) -> None:
    """--start and --end as numbers (parse_time made them): each >= 0 and finite, end after start."""
    for option, t in (("--start", start), ("--end", end)):
        if t is not None and (isinstance(t, bool) or not isinstance(t, (int, float)) or not 0 <= t < MAX_SECONDS):
            raise ForgeryDetError(f"{option} {t!r}: a time must be a number of seconds >= 0 (and under a year)")
    if end is not None and end <= (start or 0.0):
        raise ForgeryDetError(f"--end {clock(end)} is not after --start {clock(start or 0.0)}: give a later --end")


def clock(seconds: float) -> str:
    """1:02:03.5, 2:03, 0:07.25: as a player shows a time (fractions only when there are any)."""
    ms = int(round(seconds * 1000))  # 59.9996 is 1:00, not 0:59
    whole = ms // 1000
    frac = f".{ms % 1000:03d}".rstrip("0").rstrip(".")  # '.5', '' for whole seconds
    h, rest = divmod(whole, 3600)
    m, s = divmod(rest, 60)
    return f"{h}:{m:02d}:{s:02d}{frac}" if h else f"{m}:{s:02d}{frac}"


def frame_span(frame_count: int, fps: float, start: float | None, end: float | None, name: str) -> tuple[int, int]:
    """The frames [first, stop) of a video shown during [start, end): from the one on screen at `start` to the last
    that begins before `end` (end None: to the video's end; an end past it is the end, as a player clamps it). A video without a frame rate, or a start past its last frame, is one
    ForgeryDetError naming the file."""
    if fps <= 0 or not math.isfinite(fps):
        raise ForgeryDetError(f"{name}: the video does not state its frame rate, so --start/--end cannot be placed in it")
    first = math.floor((start or 0.0) * fps + 1e-6)  # the frame on screen at `start`, as a player seeks
    stop = frame_count if end is None else min(frame_count, math.ceil(end * fps - 1e-6))
    if first >= frame_count:
        raise ForgeryDetError(f"{name}: --start {clock(start or 0.0)} is past the video's end (it is "
                              f"{clock(frame_count / fps)} long)")
    if stop <= first:
        raise ForgeryDetError(f"{name}: no frame lies between --start {clock(start or 0.0)} and --end {clock(end or 0.0)}")
    return first, stop


def segment_text(start: float | None, end: float | None) -> str | None:
    """'0:12:00-0:14:30' style, for settings and notes; None when the whole video is sampled (`--start 0` alone
    included: the same scan as none, so `scan --resume` takes it as one)."""
    if not start and end is None:
        return None
    return f"{clock(start or 0.0)}-{clock(end) if end is not None else 'end'}"
