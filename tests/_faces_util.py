"""Generated media for the face tests: small mp4v videos written with cv2.VideoWriter."""

from __future__ import annotations

import csv
import struct
from pathlib import Path
from typing import Callable

import cv2
import numpy as np


def write_video(path: Path, frames: list[np.ndarray], fps: float = 10.0) -> Path:
    """Write RGB uint8 frames (all the same size) as an mp4v .mp4 file."""
    h, w = frames[0].shape[:2]
    path.parent.mkdir(parents=True, exist_ok=True)
    vw = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"mp4v"), fps, (w, h))
    assert vw.isOpened(), "OpenCV cannot write mp4v here"
    for f in frames:
        vw.write(cv2.cvtColor(f, cv2.COLOR_RGB2BGR))
    vw.release()
    return path


def weave(first: np.ndarray, second: np.ndarray) -> np.ndarray:
    """An interlaced frame: even rows from the first field's instant, odd rows from the second's."""
    out = first.copy()
    out[1::2] = second[1::2]
    return out


def shifted(rgb: np.ndarray, dx: float) -> np.ndarray:
    h, w = rgb.shape[:2]
    return cv2.warpAffine(rgb, np.float32([[1, 0, dx], [0, 1, 0]]), (w, h), borderMode=cv2.BORDER_REFLECT_101)


def level_frames(n: int, size: tuple[int, int] = (48, 64), step: int = 4) -> list[np.ndarray]:
    """Frame i is flat grey level step*i: its index can be read back from the decoded mean."""
    h, w = size
    return [np.full((h, w, 3), step * i, np.uint8) for i in range(n)]


def head(astronaut: np.ndarray) -> np.ndarray:
    """The astronaut photo cropped around his face (220 x 220; the face box is about 87 x 110 of it)."""
    return astronaut[20:240, 115:335]


def tight_pair(astronaut: np.ndarray) -> list[np.ndarray]:
    """Two 150x150 tight crops of the astronaut's face, whose MTCNN boxes start above and left of the image:
    facenet-pytorch's batched suppression let the second's boxes change the first's face (by ~17 px) when the two
    shared a batch."""
    return [cv2.resize(head(astronaut)[110 - s - dy : 110 + s - dy, 110 - s : 110 + s], (150, 150))
            for s, dy in ((49, 20), (82, 0))]


def face_frames(
    astronaut: np.ndarray, n: int, size: int = 192, face: int = 128, shift: int = 4,
    change: Callable[[np.ndarray], np.ndarray] | None = None,
) -> list[np.ndarray]:  # fmt: skip
    """The astronaut's head (resized to face x face) on a grey frame, moving `shift` px right per frame."""
    photo = cv2.resize(head(astronaut), (face, face), interpolation=cv2.INTER_AREA)
    out = []
    for i in range(n):
        f = np.full((size, size, 3), 90, np.uint8)
        x = 8 + shift * i
        f[(size - face) // 2 : (size + face) // 2, x : x + face] = photo
        out.append(change(f) if change else f)
    return out


def rotate_90(path: Path, out: Path) -> Path:
    """Copy an OpenCV-written mp4 with its track's display matrix set to a 90-degree rotation."""
    data = path.read_bytes()
    identity = struct.pack(">9I", 0x10000, 0, 0, 0, 0x10000, 0, 0, 0, 0x40000000)
    rot90 = struct.pack(">9I", 0, 0x10000, 0, 0xFFFF0000, 0, 0, 0, 0, 0x40000000)
    k = data.rfind(identity)  # the last matrix is the track header's (the first is the movie header's)
    assert k > 0
    out.write_bytes(data[:k] + rot90 + data[k + len(identity) :])
    return out


def with_pixel_aspect(path: Path, out: Path, h_spacing: int, v_spacing: int) -> Path:
    """Copy an OpenCV-written mp4 with a `pasp` box (pixel aspect h_spacing:v_spacing) added to its video sample
    entry, as anamorphic DVD / broadcast files carry; FFmpeg reads it as the stream's sample aspect ratio. The
    sizes of the boxes that hold it grow by 16 bytes; the media data comes before them, so no offset moves."""
    data = bytearray(path.read_bytes())

    def child(start: int, end: int, name: str) -> tuple[int, int]:
        i = start
        while i < end:
            size, kind = struct.unpack(">I4s", data[i : i + 8])
            if kind == name.encode():
                return i, size
            i += size
        raise AssertionError(f"no {name} box")

    chain = [child(0, len(data), "moov")]
    assert child(0, len(data), "mdat")[0] < chain[0][0]
    for name in ("trak", "mdia", "minf", "stbl", "stsd"):
        o, s = chain[-1]
        chain.append(child(o + 8, o + s, name))
    o, _ = chain[-1]
    entry = (o + 16, struct.unpack(">I", data[o + 16 : o + 20])[0])  # stsd: header, version/flags, entry count
    chain.append(entry)
    data[entry[0] + entry[1] : entry[0] + entry[1]] = struct.pack(">I4sII", 16, b"pasp", h_spacing, v_spacing)
    for o, s in chain:
        data[o : o + 4] = struct.pack(">I", s + 16)
    out.write_bytes(bytes(data))
    return out


def read_csv(path: Path) -> list[dict[str, str]]:
    with open(path, newline="", encoding="utf-8") as fh:
        return list(csv.DictReader(fh))


class CountingCapture:
    """Wraps cv2.VideoCapture, counting grab/retrieve/read/set calls across all instances."""

    calls: dict[str, int] = {}
    real_cls = cv2.VideoCapture

    def __init__(self, *args):
        self._cap = CountingCapture.real_cls(*args)

    def _count(self, name: str) -> None:
        CountingCapture.calls[name] = CountingCapture.calls.get(name, 0) + 1

    def grab(self):
        self._count("grab")
        return self._cap.grab()

    def retrieve(self, *a):
        self._count("retrieve")
        return self._cap.retrieve(*a)

    def read(self, *a):
        self._count("read")
        return self._cap.read(*a)

    def set(self, prop, value):
        if prop == cv2.CAP_PROP_POS_FRAMES:
            self._count("seek")
        return self._cap.set(prop, value)

    def __getattr__(self, name):
        return getattr(self._cap, name)


class DamagedCapture:
    """A capture whose grab() fails at some frame positions without moving on: `once` fail one time (a damaged
    packet, after which FFmpeg decodes that frame), `dead` fail until a seek jumps past them (cut or torn data)."""

    once: set[int] = set()
    dead: range = range(0)
    real_cls = cv2.VideoCapture

    def __init__(self, *args):
        self._cap = DamagedCapture.real_cls(*args)
        self._failed: set[int] = set()

    def grab(self):
        p = int(self._cap.get(cv2.CAP_PROP_POS_FRAMES))
        if p in self.dead or (p in self.once and p not in self._failed):
            self._failed.add(p)
            return False
        return self._cap.grab()

    def __getattr__(self, name):
        return getattr(self._cap, name)
