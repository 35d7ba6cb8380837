import csv

import cv2
import numpy as np
import pytest
import torch

from forgerydet.model.checkpoint import save_checkpoint
from tests.helpers import tiny_model


@pytest.fixture
def setup(tmp_path):
    """A tiny checkpoint with a filled bank and a list.csv of 12 random 64 px crops (odd ones with a bright
    square: 'fake'), in groups A and B: (checkpoint, list, rows)."""
    torch.manual_seed(0)
    m = tiny_model(bank_size=16).eval()
    m.bank.rebuild(m.encode_keys(torch.rand(8, 3, 64, 64)), m.key_fingerprint())
    ck = save_checkpoint(tmp_path / "ck.safetensors", m)
    rng = np.random.default_rng(0)
    rows = []
    for i in range(12):
        img = rng.integers(0, 255, (64, 64, 3), dtype=np.uint8)
        if i % 2:
            img[20:40, 20:40] = 250
        p = tmp_path / f"face{i}.png"
        cv2.imwrite(str(p), img)
        rows.append({"path": p.name, "label": "fake" if i % 2 else "real", "group": "A" if i < 6 else "B"})
    lst = tmp_path / "list.csv"
    with open(lst, "w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=["path", "label", "group"])
        w.writeheader()
        w.writerows(rows)
    return ck, lst, rows


@pytest.fixture
def ctrl_c_at(monkeypatch):
    """ctrl_c_at(n): from now on Scanner._score raises KeyboardInterrupt (a Ctrl-C) at its n-th call, as a user
    stopping a long evaluation would; ctrl_c_at(None) scores as before. Returns the list the calls go to."""
    from forgerydet.scan.scanner import Scanner

    real = Scanner._score

    def arm(n: int | None) -> list:
        calls: list = []

        def score(self, crops):
            calls.append(1)
            if len(calls) == n:
                raise KeyboardInterrupt
            return real(self, crops)

        monkeypatch.setattr(Scanner, "_score", score)
        return calls

    return arm
