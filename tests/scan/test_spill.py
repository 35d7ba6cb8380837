"""scan/spill.py: a report's pictures moved out of memory into a temporary folder while a scan runs, read back
whole by numpy, small arrays kept, and everything kept in memory where the folder cannot be written."""

from __future__ import annotations

import numpy as np

from forgerydet.scan import spill
from forgerydet.scan.figures import as_rgb, overview_picture
from forgerydet.scan.spill import PictureSpill, Spilled


def _record(rng) -> dict:
    return {"overview": rng.integers(0, 256, (64, 96, 3), dtype=np.uint8),
            "faces": [{"crop": rng.integers(0, 256, (224, 224, 3), dtype=np.uint8), "attention": rng.random((7, 7)),
                       "box": [10, 10, 40, 40], "score": 0.7, "track_id": 0},
                      {"crop": None, "attention": None}]}


def test_large_arrays_go_to_files_and_read_back_exactly(tmp_path, monkeypatch):
    monkeypatch.setattr(spill.tempfile, "tempdir", str(tmp_path))
    rng = np.random.default_rng(0)
    rec = _record(rng)
    crop, overview, attention = rec["faces"][0]["crop"], rec["overview"], rec["faces"][0]["attention"]
    keep = PictureSpill()
    assert keep(rec) is rec
    assert isinstance(rec["faces"][0]["crop"], Spilled) and isinstance(rec["overview"], Spilled)
    assert rec["faces"][0]["attention"] is attention and rec["faces"][1]["crop"] is None  # small, or none: as they were
    assert np.array_equal(np.asarray(rec["faces"][0]["crop"]), crop) and np.array_equal(as_rgb(rec["overview"]), overview)
    assert np.asarray(rec["overview"]).dtype == np.uint8 and rec["overview"].shape == overview.shape
    assert np.array_equal(overview_picture(rec["overview"], rec["faces"][:1], 96, 0.5),
                          overview_picture(overview, rec["faces"][:1], 96, 0.5))  # as the report draws it
    assert len(list(keep.root.iterdir())) == 2
    keep.close()
    assert list(tmp_path.iterdir()) == []


def test_a_folder_that_cannot_be_written_keeps_the_arrays_in_memory(tmp_path, monkeypatch):
    monkeypatch.setattr(spill.tempfile, "tempdir", str(tmp_path / "missing"))
    rec = _record(np.random.default_rng(1))
    crop = rec["faces"][0]["crop"]
    keep = PictureSpill()
    assert keep.root is None and keep(rec)["faces"][0]["crop"] is crop
    keep.close()

    monkeypatch.setattr(spill.tempfile, "tempdir", str(tmp_path))
    keep = PictureSpill()
    first = keep(_record(np.random.default_rng(2)))

    def full(*args, **kwargs):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(spill.np, "save", full)
    second = _record(np.random.default_rng(3))
    crop = second["faces"][0]["crop"]
    assert keep(second)["faces"][0]["crop"] is crop and keep.folder is None  # kept, and no more tries
    assert np.asarray(first["faces"][0]["crop"]).shape == (224, 224, 3)  # the ones already spilled still read
    keep.close()
    assert list(tmp_path.iterdir()) == []
