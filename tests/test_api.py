"""api.py: scanning from Python with CLI-style settings, JSON-safe records like `scan --json`'s, one clear error for
a bad setting or path, and the malloc setting applied once."""

from __future__ import annotations

import json
import re
from pathlib import Path

import cv2
import numpy as np
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
    # the wrong type is one line too (they were TypeErrors from deep in the scan, or accepted: "no" was True)
    for kw, said in [({"frames": "abc"}, "frames='abc': use int"), ({"frames": 2.5}, "frames=2.5: use int"),
                     ({"frames": True}, "frames=True: use int"), ({"threshold": "0.5"}, "use float or None"),
                     ({"deinterlace": "no"}, "deinterlace='no': use bool"), ({"bank": 123}, "use str or None"),
                     ({"detect_side": "x"}, "detect_side='x': use int"), ({"keep_crops": -1}, "keep_crops must be >= 0")]:
        with pytest.raises(ForgeryDetError, match=re.escape(said)):
            api.scan_config(**kw)
    c = api.scan_config(frames=12, aggregation="mean", threshold=1 / 3, detect_side=960, min_confidence=0.95,
                        bank=Path("/banks/b"))
    assert (c.num_frames, c.detector.detect_side, c.detector.min_confidence, c.bank) == (12, 960, 0.95, "/banks/b")
    c = api.scan_config(start="1:30", end=120)  # times as the CLI takes them, or seconds
    assert (c.start, c.end) == (90.0, 120.0)
    for kw, said in [({"start": "soon"}, "start 'soon': give a time"), ({"end": -1}, "end -1: a time must be"),
                     ({"start": 5, "end": 2}, "--end 0:02 is not after --start 0:05")]:
        with pytest.raises(ForgeryDetError, match=re.escape(said)):
            api.scan_config(**kw)


def test_one_path_alone_is_one_path_and_notes_are_warnings(checkpoint, tmp_path, astronaut, monkeypatch):
    """scanner.scan("a.jpg") read the string as five one-character paths, '.' (the whole folder) among them; and
    what the CLI prints as notes (a calibration fitted on another bank) reached a script as nothing."""
    monkeypatch.chdir(tmp_path)
    cv2.imwrite("a.png", cv2.cvtColor(head(astronaut), cv2.COLOR_RGB2BGR))
    (tmp_path / "sub").mkdir()
    cv2.imwrite("sub/b.png", cv2.cvtColor(head(astronaut), cv2.COLOR_RGB2BGR))
    scanner = api.open_scanner(checkpoint, device="cpu")
    assert [r["path"] for r in scanner.scan("a.png")] == ["a.png"]
    torch.manual_seed(0)
    m = tiny_model(bank_size=16).eval()
    m.bank.rebuild(m.encode_keys(torch.rand(10, 3, 64, 64)), m.key_fingerprint(), source=torch.arange(10))
    calibrated = save_checkpoint(tmp_path / "cal.safetensors", m, extra={
        "threshold": 0.5, "temperature": 1.0, "calibration": {"threshold": 0.5, "temperature": 1.0, "tta": "none"}})
    with pytest.warns(UserWarning, match="calibrated with --tta none; scored with --tta flip"):
        api.open_scanner(calibrated, device="cpu", tta="flip")
    with pytest.raises(ForgeryDetError, match=r"paths=5: give a path \(str or pathlib.Path\) or a list of them"):
        api.scan(5, checkpoint, device="cpu")
    # these reached deep code as a TypeError with a traceback (bytes were iterated as numbers)
    for bad in ([123], b"a.png", ["a.png", None]):
        with pytest.raises(ForgeryDetError, match=r"give a path \(str or pathlib.Path\) or a list of them"):
            api.scan(bad, checkpoint, device="cpu")
    with pytest.raises(ForgeryDetError, match=r"checkpoint=123: give a path"):
        api.scan("a.png", 123, device="cpu")


def test_what_is_not_a_path_is_one_short_line_from_the_scanner_too(checkpoint, tmp_path):
    """open_scanner's Scanner raised TypeError for scan(None), scan(image array) and scan_file(None) (api.scan
    checked, the scanner it returns did not); an image array's repr made api.scan's message hundreds of lines;
    and a name too long for the file system was an OSError ending the whole scan, not that path's error record."""
    scanner = api.open_scanner(checkpoint, device="cpu")
    image = np.zeros((480, 640, 3), np.uint8)
    for call, said in [(lambda: list(scanner.scan(None)), "paths=None: give a path"),
                       (lambda: list(scanner.scan(image)), "paths=<ndarray>: give a path"),
                       (lambda: scanner.scan_file(None), "path=None: give a path"),
                       (lambda: scanner.scan_file(image), "path=<ndarray>: give a path"),
                       (lambda: api.scan(image, checkpoint), "paths=<ndarray>: give a path"),
                       (lambda: api.scan(["a.png", image], checkpoint), "paths[1]=<ndarray>: give a path")]:
        with pytest.raises(ForgeryDetError, match=re.escape(said)) as e:
            call()
        assert "\n" not in str(e.value)
    long = tmp_path / ("x" * 300 + ".mp4")
    for recs in (list(scanner.scan([long])), api.scan(long, checkpoint, device="cpu")):
        assert [(r["status"], r["error"].endswith("File name too long")) for r in recs] == [("error", True)]
