"""Shared by the CLI tests: a tiny checkpoint with a filled bank, a face photo, and a small pairs.csv."""

from __future__ import annotations

from pathlib import Path

import cv2
import pytest
import torch

from forgerydet.model.checkpoint import save_checkpoint
from tests._faces_util import head
from tests.helpers import make_synthetic_pairs, tiny_model


@pytest.fixture
def stand_in_checkpoint(tmp_path) -> Path:
    """tmp_path/c.safetensors: the file the tests that replace the library pass as --checkpoint (the commands
    check that it exists before loading anything)."""
    (tmp_path / "c.safetensors").write_bytes(b"stand-in")
    return tmp_path / "c.safetensors"


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory) -> Path:
    torch.manual_seed(0)
    m = tiny_model(bank_size=16).eval()
    m.bank.rebuild(m.encode_keys(torch.rand(10, 3, 64, 64)), m.key_fingerprint(), source=torch.arange(10))
    return save_checkpoint(tmp_path_factory.mktemp("ck") / "tiny.safetensors", m,
                           bank_sources=[f"/nowhere/real_{i}.png" for i in range(10)])


@pytest.fixture(scope="module")
def face_png(tmp_path_factory, astronaut) -> Path:
    p = tmp_path_factory.mktemp("img") / "face.png"
    cv2.imwrite(str(p), cv2.cvtColor(head(astronaut), cv2.COLOR_RGB2BGR))
    return p


@pytest.fixture(scope="module")
def small_pairs(tmp_path_factory) -> Path:
    return make_synthetic_pairs(tmp_path_factory.mktemp("pairs"), groups=4, frames=2, val_groups=2)
