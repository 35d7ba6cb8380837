"""model/bankfiles.py: a disk bank's record of its files. The build records each file's size, time and sha256 as
written; a file is trusted unread only while its size and time are the recorded ones, recorded before bank.json;
`verify` reads every byte."""

import json
import os

import numpy as np
import torch
import torch.nn.functional as F

from forgerydet.io import file_sha256
from forgerydet.model.bankfiles import as_built, record_state, verify
from forgerydet.model.diskbank import write_bank


def _bank(folder):
    e = F.normalize(torch.randn(30, 4, 16, generator=torch.Generator().manual_seed(0)), dim=-1)
    write_bank(folder, [e[:10], e[10:]], 4, 16, "ef" * 32, sources_root=None)
    return json.loads((folder / "bank.json").read_text())


def test_the_build_records_each_file_as_written(tmp_path):
    meta = _bank(tmp_path / "b")
    files = meta["files"]
    assert set(files) == {"values.f16", "keys.f32", "sources.txt", "sources.idx"}  # no index below exact_limit
    for name, rec in files.items():  # hashed on the way equals hashed from the disk
        assert rec["sha256"] == file_sha256(tmp_path / "b" / name) and rec["size"] == (tmp_path / "b" / name).stat().st_size
    assert files["keys.f32"]["finite"] is True
    assert verify(tmp_path / "b", files) == {name: "as built" for name in files}
    assert "recorded at the build" in record_state(files) and "not recorded" in record_state({})


def test_a_file_is_trusted_unread_only_as_recorded_and_before_bank_json(tmp_path):
    files = _bank(tmp_path / "b")["files"]
    keys, rec = tmp_path / "b" / "keys.f32", files["keys.f32"]
    assert as_built(keys, rec, rec["mtime_ns"] + 1)
    assert not as_built(keys, rec, rec["mtime_ns"])  # bank.json written in the keys' clock tick: an edit could keep it
    assert not as_built(keys, None, rec["mtime_ns"] + 1)  # a bank built before the record
    os.utime(keys, ns=(rec["mtime_ns"], rec["mtime_ns"] + 1))  # copied without its times, or edited
    assert not as_built(keys, rec, rec["mtime_ns"] + 10)


def test_verify_names_every_file_changed_cut_or_missing(tmp_path):
    files = _bank(tmp_path / "b")["files"]
    b = tmp_path / "b"
    v = np.memmap(b / "values.f16", np.float16, "r+")
    v[:] = 0  # zeroed token maps: the open checks sizes only, and scans would compare with nothing
    v.flush()
    del v
    (b / "sources.txt").write_bytes((b / "sources.txt").read_bytes()[:-1])
    (b / "sources.idx").unlink()
    seen = []
    got = verify(b, files, progress=lambda done, total: seen.append((done, total)))
    assert got == {"values.f16": "changed since the build (sha256 differs)", "keys.f32": "as built",
                   "sources.txt": f"{files['sources.txt']['size'] - 1:,} bytes, built with {files['sources.txt']['size']:,}",
                   "sources.idx": "missing"}
    assert seen[-1][0] == seen[-1][1] == sum(r["size"] for r in files.values()) and len(seen) == 4
