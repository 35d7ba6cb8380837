"""Shared by the faces tests: a small extract config and a folder of face / faceless / broken media."""

from __future__ import annotations

import numpy as np
import pytest

from forgerydet.faces.detect import DetectorConfig
from forgerydet.faces.pipeline import ExtractConfig
from tests._faces_util import face_frames, write_video

CFG = ExtractConfig(num_frames=3, detector=DetectorConfig(size=64, detect_side=192, batch_size=4))


@pytest.fixture(scope="module")
def media(tmp_path_factory, astronaut):
    """A face video, a faceless video, a corrupt video and a text file named .mp4."""
    d = tmp_path_factory.mktemp("media")
    write_video(d / "face.mp4", face_frames(astronaut, 8))
    rng = np.random.default_rng(0)
    write_video(d / "noface.mp4", [np.full((96, 96, 3), 40 + 10 * i, np.uint8) for i in range(6)])
    (d / "corrupt.mp4").write_bytes(rng.integers(0, 256, 4096, dtype=np.uint8).tobytes())
    (d / "notes.mp4").write_text("meeting notes, not a video\n" * 20)
    return d
