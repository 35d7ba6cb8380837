"""Shared fixtures: seeded, CPU-only, offline."""

from __future__ import annotations

import os
import random
from pathlib import Path

import numpy as np
import pytest
import torch

REPO = Path(__file__).resolve().parents[1]
SHARED_DATA = Path(os.environ.get("FORGERYDET_SHARED_DATA", REPO.parent / "shared" / "data"))

# Tests never reach a hub: any accidental download fails fast instead of hanging.
os.environ.setdefault("HF_HUB_OFFLINE", "1")
torch.set_num_threads(min(2, os.cpu_count() or 1))


@pytest.fixture(autouse=True)
def _seed() -> None:
    random.seed(0)
    np.random.seed(0)
    torch.manual_seed(0)


@pytest.fixture
def shared_data() -> Path:
    """../shared/data (real public samples); the test skips where it is absent."""
    if not SHARED_DATA.is_dir():
        pytest.skip(f"shared sample data not found at {SHARED_DATA}")
    return SHARED_DATA


@pytest.fixture(scope="session")
def astronaut() -> np.ndarray:
    """A real face photo (512x512 RGB uint8) that ships inside scikit-image."""
    from skimage.data import astronaut as _astronaut

    return _astronaut()
