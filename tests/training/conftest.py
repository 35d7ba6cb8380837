"""Shared by the training tests: one synthetic pairs.csv (8 groups, 2 for validation) per module."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.helpers import make_synthetic_pairs


@pytest.fixture(scope="module")
def pairs(tmp_path_factory) -> Path:
    return make_synthetic_pairs(tmp_path_factory.mktemp("synthetic"))
