"""A report's pictures kept on disk while a long scan runs. `scan --report` keeps each file's shown face crops and,
for a photo, a copy to number its faces on, until the report is written at the end: ~3 MB a file (a phone photo,
a video's 24 crops), so 1,500 photos held 4 GB more than 5 did. Spilled into a temporary folder, each becomes a
`Spilled` stand-in that numpy reads back (`np.asarray`) when the report draws it."""

from __future__ import annotations

import shutil
import tempfile
from pathlib import Path
from typing import Any

import numpy as np

SPILL_BYTES = 16 * 1024  # smaller arrays (a 7x7 attention map) stay in memory


class Spilled:
    """An array saved in a .npy file: `np.asarray(s)` loads it (every time: the report reads each once)."""

    __slots__ = ("path", "shape", "dtype")

    def __init__(self, path: Path, array: np.ndarray) -> None:
        self.path, self.shape, self.dtype = path, array.shape, array.dtype

    def __array__(self, dtype: Any = None, copy: Any = None) -> np.ndarray:
        a = np.load(self.path, allow_pickle=False)
        return a if dtype is None else a.astype(dtype, copy=False)


class PictureSpill:
    """Moves the large arrays of scan records (faces' `crop`, a photo's `overview`) into files of a temporary
    folder, removed by `close()`. Where that folder cannot be made or written (a full disk), records keep their
    arrays in memory, as before: the scan goes on."""

    def __init__(self) -> None:
        try:
            self.root: Path | None = Path(tempfile.mkdtemp(prefix="forgerydet-report-"))
        except OSError:
            self.root = None
        self.folder = self.root  # None once a write failed: the arrays that follow stay in memory
        self.count = 0

    def __call__(self, rec: dict[str, Any]) -> dict[str, Any]:
        """`rec` with its large arrays replaced by Spilled stand-ins (the same dict, changed in place)."""
        if rec.get("overview") is not None:
            rec["overview"] = self._keep(rec["overview"])
        for face in rec.get("faces") or []:
            if face.get("crop") is not None:
                face["crop"] = self._keep(face["crop"])
        return rec

    def _keep(self, array: Any) -> Any:
        if self.folder is None or not isinstance(array, np.ndarray) or array.nbytes < SPILL_BYTES:
            return array
        path = self.folder / f"{self.count:08d}.npy"
        self.count += 1
        try:
            np.save(path, array, allow_pickle=False)
        except OSError:  # a full disk: keep this one and the rest in memory
            path.unlink(missing_ok=True)
            self.folder = None
            return array
        return Spilled(path, array)

    def close(self) -> None:
        """Remove the folder (after the report is written)."""
        if self.root is not None:
            shutil.rmtree(self.root, ignore_errors=True)
