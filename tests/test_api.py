"""api.py: scanning from Python with CLI-style settings, JSON-safe records like `scan --json`'s, one clear error for
a bad setting or path, and the malloc setting applied once."""

from __future__ import annotations

import json

import cv2
import pytest
import torch

from forgerydet import api
from forgerydet.errors import ForgeryDetError
from forgerydet.model.checkpoint import save_checkpoint
from tests._faces_util import head
from tests.helpers import tiny_model


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory):
    torch.manual_seed(0)
    m = tiny_model(bank_size=16).eval()
    m.bank.rebuild(m.encode_keys(torch.rand(10, 3, 64, 64)), m.key_fingerprint(), source=torch.arange(10))
    return save_checkpoint(tmp_path_factory.mktemp("ck") / "tiny.safetensors", m)


def test_scan_returns_the_clis_json_records(checkpoint, astronaut, tmp_path, monkeypatch):
    calls = []
    monkeypatch.setattr(api, "tune_malloc", lambda: calls.append(1) or True)
    monkeypatch.setattr(api, "_tuned", [])
    photo = tmp_path / "astro.png"
    cv2.imwrite(str(photo), cv2.cvtColor(head(astronaut), cv2.COLOR_RGB2BGR))
    recs = api.scan([photo, tmp_path / "gone.mp4"], checkpoint, frames=4, device="cpu", tta="flip")
    assert [r["status"] for r in recs] == ["error", "ok"]  # a bad path is a record, as in the CLI's JSON
    ok = recs[1]
    assert ok["verdict"] in ("REAL", "FAKE") and 0 <= ok["score"] <= 1 and ok["n_faces"] == 1
    json.dumps(recs)  # JSON-safe: no crops or arrays
    one = api.scan(str(photo), checkpoint, device="cpu", tta="flip")
    assert one[0]["score"] == pytest.approx(ok["score"])
    scanner = api.open_scanner(checkpoint, device="cpu", frames=8)
    assert scanner.config.num_frames == 8 and scanner.settings()["tta"] == "none"
    assert calls == [1]  # the malloc setting once per process


def test_a_bad_setting_is_one_error_before_any_model_loads():
    with pytest.raises(ForgeryDetError, match="unknown scan setting\\(s\\) frame: use .*frames.*tta"):
        api.scan_config(frame=4)
    with pytest.raises(ForgeryDetError, match="frames"):
        api.scan_config(frames=0)
    assert api.scan_config(frames=12, aggregation="mean").num_frames == 12
