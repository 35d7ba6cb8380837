"""Atomic file writes: write into a temp file in the target's folder, then rename it into place, so a crash
never leaves a half-written checkpoint, index, report or log. The one implementation every writer uses."""

from __future__ import annotations

import os
import tempfile
from pathlib import Path
from typing import Callable


def atomic_write(path: str | Path, writer: Callable[[Path], object], *, suffix: str = ".tmp", durable: bool = False) -> Path:
    """Call writer(tmp_path), then move the finished file to `path`; on any failure the temp file is removed
    and `path` is untouched. suffix: the temp file's ending (e.g. '.png' where the writer picks the format
    from it). durable: fsync before the rename (checkpoints), so a power cut cannot leave an empty file."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=suffix, dir=path.parent)
    os.close(fd)
    try:
        writer(Path(tmp))
        if durable:
            with open(tmp, "rb+") as f:
                os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return path


def write_bytes_atomic(path: str | Path, data: bytes) -> Path:
    return atomic_write(path, lambda tmp: tmp.write_bytes(data))


def write_text_atomic(path: str | Path, text: str) -> Path:
    return atomic_write(path, lambda tmp: tmp.write_text(text, encoding="utf-8"))
