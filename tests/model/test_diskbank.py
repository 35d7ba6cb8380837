"""The disk bank: exact search equals MemoryBank's, faiss + exact re-ranking agrees with exact search, the
Detector retrieves from it unchanged, and broken folders are clear errors."""

import shutil
import time

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from forgerydet.errors import ForgeryDetError
from forgerydet.model.bank import MemoryBank
from forgerydet.model.diskbank import DiskBank, IndexConfig, faiss_available, write_bank
from tests.helpers import tiny_model


def clustered_entries(m: int, n: int = 4, d: int = 16, clusters: int = 40, seed: int = 0) -> torch.Tensor:
    """(m,n,d) token maps around `clusters` centres (faces of the same video are alike)."""
    g = torch.Generator().manual_seed(seed)
    centres = torch.randn(clusters, n, d, generator=g)
    which = torch.randint(clusters, (m,), generator=g)
    return F.normalize(centres[which] + 0.5 * torch.randn(m, n, d, generator=g), dim=-1)


def test_exact_disk_bank_matches_memory_bank(tmp_path):
    e = clustered_entries(300)
    disk = write_bank(tmp_path / "b", [e[:128], e[128:]], 4, 16, "ab" * 32)
    assert disk.index is None and disk.filled == 300
    mem = MemoryBank(300, 4, 16)
    mem.enqueue(e)
    q = torch.randn(7, 16)
    r1, i1, s1 = mem.retrieve(q, 3)
    r2, i2, s2 = disk.retrieve(q, 3)
    assert torch.equal(i1, i2)
    torch.testing.assert_close(s1, s2)
    torch.testing.assert_close(r1, r2)
    # chunked scan equals one pass
    s3, i3 = disk.search_exact(F.normalize(q, dim=-1).numpy(), 3, chunk=17)
    assert np.array_equal(i3, i1.numpy())


def test_detector_retrieves_from_a_disk_bank(tmp_path):
    m = tiny_model().eval()
    x = torch.rand(5, 3, 64, 64)
    vals = m.encode_keys(torch.rand(20, 3, 64, 64))
    disk = write_bank(tmp_path / "b", [vals], m.bank.num_tokens, m.bank.dim, "00" * 32)
    mem = MemoryBank(20, m.bank.num_tokens, m.bank.dim)
    mem.enqueue(vals)
    a, b = m(x, "single", bank=mem), m(x, "single", bank=disk)
    assert torch.equal(a["neighbours"], b["neighbours"])
    torch.testing.assert_close(a["logits"], b["logits"])


@pytest.mark.skipif(not faiss_available(), reason="faiss-cpu not installed (the optional 'scale' extra)")
def test_faiss_candidates_reranked_agree_with_exact(tmp_path):
    m = 6000
    e = clustered_entries(m, n=2, d=32, clusters=150, seed=1)
    cfg = IndexConfig(nlist=32, nprobe=16, candidates=64, train_size=m, exact_limit=1000)
    disk = write_bank(tmp_path / "b", [e[i : i + 1000] for i in range(0, m, 1000)], 2, 32, "cd" * 32, cfg)
    assert disk.index is not None and (tmp_path / "b" / "keys.faiss").is_file()
    g = torch.Generator().manual_seed(2)
    q = F.normalize(e[torch.randint(m, (64,), generator=g)].mean(1) + 0.3 * torch.randn(64, 32, generator=g), dim=-1)
    es, ei = disk.search_exact(q.numpy(), 4)
    fs, fi = disk.search(q.numpy(), 4)
    recall = np.mean([len(set(a) & set(b)) / 4 for a, b in zip(ei, fi)])
    assert recall >= 0.95, recall
    # re-ranked similarities are exact cosines of the returned entries, best first
    keys = F.normalize(e.float().mean(1), dim=-1).numpy()
    np.testing.assert_allclose(fs, np.einsum("bd,bkd->bk", q.numpy(), keys[fi]), atol=2e-3)
    assert (np.diff(fs, axis=1) <= 1e-6).all()
    ref, idx, sims = disk.retrieve(q, 4)
    assert ref.shape == (64, 2, 32) and torch.equal(idx, torch.from_numpy(fi))


def test_broken_or_reused_folders_are_clear(tmp_path):
    e = clustered_entries(10)
    write_bank(tmp_path / "b", [e], 4, 16, "ef" * 32)
    with pytest.raises(ForgeryDetError, match="already holds a bank"):
        write_bank(tmp_path / "b", [e], 4, 16, "ef" * 32)
    vf = tmp_path / "b" / "values.f16"
    vf.write_bytes(vf.read_bytes()[:100])
    with pytest.raises(ForgeryDetError, match="truncated"):
        DiskBank.open(tmp_path / "b")
    with pytest.raises(ForgeryDetError, match="nothing: not found; give the folder"):
        DiskBank.open(tmp_path / "nothing")
    (tmp_path / "nothing").mkdir()
    with pytest.raises(ForgeryDetError, match="no finished disk bank"):
        DiskBank.open(tmp_path / "nothing")
    with pytest.raises(ForgeryDetError, match="values.f16: a file; give the folder"):
        DiskBank.open(tmp_path / "b" / "values.f16")
    (tmp_path / "keep").mkdir()
    (tmp_path / "keep" / "mine.txt").write_text("user file")
    with pytest.raises(ForgeryDetError, match=r"already holds other files \(mine.txt\): give a new or empty"):
        write_bank(tmp_path / "keep", [e], 4, 16, "ef" * 32)  # refused before writing next to a user's files
    assert [p.name for p in (tmp_path / "keep").iterdir()] == ["mine.txt"]
    with pytest.raises(ValueError):
        write_bank(tmp_path / "fresh", [e, torch.zeros(2, 3, 16)], 4, 16, "ef" * 32)
    assert not list((tmp_path / "fresh").glob("*"))  # the failed write's files removed
    write_bank(tmp_path / "fresh", [e], 4, 16, "ef" * 32)  # and the folder can be written again
    assert DiskBank.open(tmp_path / "fresh").size == 10
    first = DiskBank.open(tmp_path / "fresh").written  # a bank rebuilt in its folder (same fingerprint) is told apart
    shutil.rmtree(tmp_path / "fresh")
    time.sleep(0.01)
    write_bank(tmp_path / "fresh", [e], 4, 16, "ef" * 32)
    assert DiskBank.open(tmp_path / "fresh").written != first


def test_a_full_disk_leaves_no_half_written_bank(tmp_path, monkeypatch):
    """`rebuild-bank --disk-bank` onto a full disk left values.f16, keys.f32 and sources.txt behind (a megabyte on a
    disk that was full): the cleanup closed the files first, and closing flushed their last writes, which failed too."""
    import builtins
    import errno

    from forgerydet.model import diskbank

    class Full:
        def __init__(self, path, mode):
            self.f = builtins.open(path, mode)

        def write(self, data):
            self.f.write(data[:10])
            raise OSError(errno.ENOSPC, "No space left on device")

        def close(self):
            self.f.close()
            raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(diskbank, "open", Full, raising=False)
    with pytest.raises(OSError) as e:
        write_bank(tmp_path / "b", [clustered_entries(10)], 4, 16, "ef" * 32)
    assert e.value.errno == errno.ENOSPC
    assert list((tmp_path / "b").iterdir()) == []


def test_rebuild_to_disk_bank_and_scan_with_it(tmp_path, astronaut):
    import json

    import cv2
    from typer.testing import CliRunner

    from forgerydet.cli.app import app
    from forgerydet.model.checkpoint import save_checkpoint
    from tests._faces_util import face_frames
    from tests.helpers import make_synthetic_pairs

    pairs = make_synthetic_pairs(tmp_path / "pairs")  # 24 real training faces
    torch.manual_seed(0)
    ck = save_checkpoint(tmp_path / "ck.safetensors", tiny_model(bank_size=4))
    before = ck.read_bytes()
    r = CliRunner().invoke(app, ["rebuild-bank", "--checkpoint", str(ck), "--pairs", str(pairs), "--device", "cpu",
                                 "--disk-bank", str(tmp_path / "disk")])
    assert r.exit_code == 0 and "24 real faces" in r.output, r.output
    assert ck.read_bytes() == before
    out = tmp_path / "scan.json"
    img = tmp_path / "face.png"
    cv2.imwrite(str(img), cv2.cvtColor(face_frames(astronaut, 1)[0], cv2.COLOR_RGB2BGR))
    r = CliRunner().invoke(app, ["scan", str(img), "--checkpoint", str(ck), "--bank", str(tmp_path / "disk"),
                                 "--device", "cpu", "--json", str(out)])
    assert r.exit_code == 0, r.output
    doc = json.loads(out.read_text())
    assert doc["settings"]["bank_entries"] == 24 and doc["settings"]["bank"] == str(tmp_path / "disk")
    # the header names the disk bank, and the calibration is said to be the checkpoint bank's, not this one's
    assert f"disk bank {tmp_path / 'disk'}: 24 real faces" in " ".join(r.output.split())
    assert doc["settings"]["calibrated_against"] == "not calibrated"  # the tiny checkpoint: nothing to say more
    faces = doc["files"][0]["faces"]
    assert faces and all(nb["source"].endswith("_real.png") and "_f" in nb["source"] for f in faces for nb in f["neighbours"])
    torch.manual_seed(1)
    other = save_checkpoint(tmp_path / "other.safetensors", tiny_model(bank_size=4))
    r = CliRunner().invoke(app, ["scan", str(img), "--checkpoint", str(other), "--bank", str(tmp_path / "disk"), "--device", "cpu"])
    assert r.exit_code == 1 and "filled by another key encoder" in r.output and "Traceback" not in r.output


def test_a_missing_or_cut_sources_file_is_said_when_the_bank_opens(tmp_path):
    """`scan --bank` of a folder without sources.txt ended in a FileNotFoundError traceback and wrote no JSON; a
    cut one made every neighbour's source silently None."""
    e = clustered_entries(10)
    write_bank(tmp_path / "b", [e], 4, 16, "ef" * 32)
    assert DiskBank.open(tmp_path / "b").size == 10
    src = tmp_path / "b" / "sources.txt"
    whole = src.read_bytes()
    for damaged in (whole[:-1], None):
        if damaged is None:
            src.unlink()
        else:
            src.write_bytes(damaged)
        with pytest.raises(ForgeryDetError, match=r"b/sources.txt is missing or truncated: rebuild the bank"):
            DiskBank.open(tmp_path / "b")


def test_a_build_killed_before_its_bank_json_can_be_built_again_in_its_folder(tmp_path):
    """The leftovers of a killed build (sources.idx among them) were called 'other files' and the folder refused."""
    e = clustered_entries(10)
    write_bank(tmp_path / "b", [e], 4, 16, "ef" * 32)
    (tmp_path / "b" / "bank.json").unlink()  # as a kill -9 before the last write leaves it
    (tmp_path / "b" / ".keys.faiss.tmp").write_bytes(b"half")
    assert write_bank(tmp_path / "b", [e], 4, 16, "ef" * 32).size == 10


@pytest.mark.parametrize("edit", [{"entries": None}, {"entries": "10"}, {"dim": 1.5}, {"tokens": -4}, {"fingerprint": None},
                                  {"index": {"nprobe": "all"}}, {"index": {"foo": 1}}, {"index": [1]}, {"indexed": "no"},
                                  {"files": [1]}, {"files": {"keys.f32": {"size": "1"}}}, {"files": {"other": {}}}])
def test_a_hand_edited_bank_json_is_one_line_not_a_traceback(tmp_path, edit):
    """A bank.json missing a field, or with a string, list or unknown index setting, ended in KeyError, ValueError,
    TypeError or AttributeError tracebacks from `scan --bank`."""
    import json

    write_bank(tmp_path / "b", [clustered_entries(10)], 4, 16, "ef" * 32)
    meta = json.loads((tmp_path / "b" / "bank.json").read_text())
    for k, v in edit.items():
        meta.pop(k) if v is None else meta.__setitem__(k, v)
    (tmp_path / "b" / "bank.json").write_text(json.dumps(meta))
    with pytest.raises(ForgeryDetError, match=r"b/bank.json: \w+ not as a build writes it \(edited\?\): rebuild the bank"):
        DiskBank.open(tmp_path / "b")
    (tmp_path / "b" / "bank.json").write_text("[1, 2]")
    with pytest.raises(ForgeryDetError, match="is not a forgerydet disk bank"):
        DiskBank.open(tmp_path / "b")


def test_damaged_keys_and_source_offsets_are_said_when_the_bank_opens(tmp_path):
    """A NaN key (a damaged keys.f32) was retrieved as a neighbour of EVERY query (torch's topk ranks NaN first),
    its similarity written as NaN into the JSON; a damaged sources.idx had one neighbour's name read as a
    terabyte-long line (MemoryError); a sources line that is not UTF-8 was a UnicodeDecodeError."""
    e = clustered_entries(10)
    write_bank(tmp_path / "b", [e], 4, 16, "ef" * 32)
    b = tmp_path / "b"
    keys, idx, src = (b / n for n in ("keys.f32", "sources.idx", "sources.txt"))
    good_keys, good_idx = keys.read_bytes(), idx.read_bytes()
    for bad in (np.nan, np.inf):
        k = np.frombuffer(good_keys, np.float32).copy()
        k[16 * 3] = bad
        keys.write_bytes(k.tobytes())
        with pytest.raises(ForgeryDetError, match="keys.f32 holds NaN or infinite keys: rebuild the bank"):
            DiskBank.open(b)
    keys.write_bytes(good_keys)
    offs = np.frombuffer(good_idx, np.int64).copy()
    offs[4] = 10**12
    idx.write_bytes(offs.tobytes())
    with pytest.raises(ForgeryDetError, match="sources.idx is damaged: rebuild the bank"):
        DiskBank.open(b)
    idx.write_bytes(good_idx)
    src.write_bytes(b"\xff" + src.read_bytes()[1:])
    assert DiskBank.open(b).source_of(0).startswith("\ufffd")


@pytest.mark.skipif(not faiss_available(), reason="faiss-cpu not installed (the optional 'scale' extra)")
def test_a_damaged_or_another_banks_faiss_index_is_refused(tmp_path):
    """A cut or garbage keys.faiss was a faiss RuntimeError traceback; another bank's index was used in silence, and
    never proposed the entries past its own count."""
    cfg = IndexConfig(nlist=16, nprobe=4, train_size=2000, exact_limit=500)
    write_bank(tmp_path / "a", [clustered_entries(1200)], 4, 16, "ef" * 32, cfg)
    write_bank(tmp_path / "b", [clustered_entries(1000)], 4, 16, "ef" * 32, cfg)
    index = tmp_path / "a" / "keys.faiss"
    whole = index.read_bytes()
    shutil.copy(tmp_path / "b" / "keys.faiss", index)
    with pytest.raises(ForgeryDetError, match="keys.faiss indexes 1000 keys of 16 dims, the bank holds 1200 of 16: it is "
                                              "another bank's"):
        DiskBank.open(tmp_path / "a")
    for damaged in (whole[:200], b"\x00" * 300):
        index.write_bytes(damaged)
        with pytest.raises(ForgeryDetError, match="keys.faiss is missing or damaged: rebuild the bank"):
            DiskBank.open(tmp_path / "a")


def test_a_disk_banks_neighbour_pictures_are_found_from_another_folder(tmp_path, astronaut, monkeypatch):
    """The sources a disk bank records are relative to the folder rebuild-bank ran in, which it did not record: a
    `scan --report` run from any other folder showed no neighbour picture, though the crops were on this machine
    (a checkpoint's own bank records that folder, and its report shows them)."""
    import csv
    import json

    import cv2
    from typer.testing import CliRunner

    from forgerydet.cli.app import app
    from forgerydet.model.checkpoint import save_checkpoint
    from tests._faces_util import face_frames
    from tests.helpers import make_synthetic_pairs

    project = tmp_path / "project"
    synthetic = make_synthetic_pairs(project / "synthetic")
    rows = list(csv.DictReader(open(synthetic)))
    for i, r in enumerate(rows):  # in the layout `pairs` writes its crops in: the report shows only those
        r["real"] = f"crops/face{i}-0123abcd/f000000_0.png"
        (project / r["real"]).parent.mkdir(parents=True)
        (project / r["real"]).write_bytes((project / "synthetic" / f"g{i // 4}_f{i % 4}_real.png").read_bytes())
        r["fake"] = f"synthetic/{r['fake']}"
    with open(project / "pairs.csv", "w", newline="") as fh:
        w = csv.DictWriter(fh, fieldnames=list(rows[0]))
        w.writeheader()
        w.writerows(rows)
    torch.manual_seed(0)
    ck = save_checkpoint(tmp_path / "ck.safetensors", tiny_model(bank_size=4))
    monkeypatch.chdir(project)
    r = CliRunner().invoke(app, ["rebuild-bank", "--checkpoint", str(ck), "--pairs", "pairs.csv", "--device", "cpu",
                                 "--disk-bank", "disk"])
    assert r.exit_code == 0, r.output
    img = tmp_path / "face.png"
    cv2.imwrite(str(img), cv2.cvtColor(face_frames(astronaut, 1)[0], cv2.COLOR_RGB2BGR))
    (tmp_path / "elsewhere").mkdir()
    monkeypatch.chdir(tmp_path / "elsewhere")
    r = CliRunner().invoke(app, ["scan", str(img), "--checkpoint", str(ck), "--bank", str(project / "disk"),
                                 "--device", "cpu", "--json", "s.json", "--report", "rep"])
    assert r.exit_code == 0, r.output
    doc = json.loads(open("s.json").read())
    assert doc["settings"]["bank_sources_root"] == str(project)
    assert list((tmp_path / "elsewhere" / "rep" / "img").rglob("bank/n*.png"))  # the neighbours' pictures


def test_scanning_with_an_empty_disk_bank_is_one_line_before_any_file(tmp_path, astronaut):
    """A disk bank of no entries (written through the API, or bank.json and the files emptied by hand) passed every
    check when it opened, and the first face's retrieval raised mid-scan: a traceback, and no --json written."""
    import cv2
    from typer.testing import CliRunner

    from forgerydet.cli.app import app
    from forgerydet.model.checkpoint import save_checkpoint
    from forgerydet.model.references import fingerprint_full
    from tests._faces_util import face_frames

    torch.manual_seed(0)
    m = tiny_model(bank_size=4)
    ck = save_checkpoint(tmp_path / "ck.safetensors", m)
    write_bank(tmp_path / "empty", [], m.bank.num_tokens, m.bank.dim, fingerprint_full(m.key_fingerprint()))
    img = tmp_path / "face.png"
    cv2.imwrite(str(img), cv2.cvtColor(face_frames(astronaut, 1)[0], cv2.COLOR_RGB2BGR))
    r = CliRunner().invoke(app, ["scan", str(img), "--checkpoint", str(ck), "--bank", str(tmp_path / "empty"),
                                 "--device", "cpu"])
    assert r.exit_code == 1 and "holds 0 real faces" in r.output and "rebuild it with" in r.output, r.output
    assert r.exception is None or isinstance(r.exception, SystemExit)


def _bytes_read() -> int:
    return int(next(line for line in open("/proc/self/io") if line.startswith("rchar:")).split()[1])


@pytest.mark.skipif(not __import__("os").path.exists("/proc/self/io"), reason="reads counted by Linux's /proc/self/io")
def test_opening_a_bank_does_not_read_its_keys_again(tmp_path):
    """Every open (every `scan --bank`) read the whole keys.f32 to look for NaN: 256 MB per million entries. The
    build records that its keys were finite, with the file's size and time, so an open of an unchanged bank reads
    none of them; one whose keys were changed since is still read and refused."""
    import os

    write_bank(tmp_path / "b", [clustered_entries(20000, n=1, d=64)], 1, 64, "ef" * 32)  # keys.f32: 5 MB
    bank_json = tmp_path / "b" / "bank.json"
    t = bank_json.stat().st_mtime_ns + 10**9
    os.utime(bank_json, ns=(t, t))  # written in a later clock tick than the keys (as any but the tiniest build)
    before = _bytes_read()
    DiskBank.open(tmp_path / "b")
    assert _bytes_read() - before < 1 << 20
    keys = tmp_path / "b" / "keys.f32"
    k = np.fromfile(keys, np.float32).reshape(20000, 64)
    k[[0, 1]] = k[[1, 0]]  # finite, the same size: two entries' keys swapped, so each finds the other's tokens
    k.tofile(keys)
    with pytest.raises(ForgeryDetError, match="keys.f32 was changed since the bank was built .*: rebuild the bank"):
        DiskBank.open(tmp_path / "b")


@pytest.mark.skipif(not __import__("os").path.exists("/proc/self/io"), reason="reads counted by Linux's /proc/self/io")
def test_opening_a_bank_does_not_read_its_sources_index_again(tmp_path):
    """sources.idx (8 MB per million entries) was still read whole at every open, to check that its offsets are in
    order; as built (its recorded size and time), it is trusted as the keys are, and one changed since is read and
    a damaged one refused."""
    import os

    write_bank(tmp_path / "b", [torch.ones(250_000, 1, 2)], 1, 2, "ef" * 32,  # sources.idx: 2 MB, keys 2 MB
               IndexConfig(exact_limit=10**6))  # no faiss index (an open reads it whole)
    bank_json, idx = tmp_path / "b" / "bank.json", tmp_path / "b" / "sources.idx"
    t = bank_json.stat().st_mtime_ns + 10**9
    os.utime(bank_json, ns=(t, t))  # written in a later clock tick than the files (as any but the tiniest build)
    before = _bytes_read()
    assert DiskBank.open(tmp_path / "b").size == 250_000
    assert _bytes_read() - before < 1 << 20
    offsets = np.fromfile(idx, np.int64)
    offsets[4] = 10**12
    offsets.tofile(idx)
    with pytest.raises(ForgeryDetError, match="sources.idx is damaged: rebuild the bank"):
        DiskBank.open(tmp_path / "b")


def test_a_bank_built_before_its_files_were_recorded_still_opens_and_is_checked_in_full(tmp_path):
    import json

    write_bank(tmp_path / "b", [clustered_entries(10)], 4, 16, "ef" * 32)
    meta = json.loads((tmp_path / "b" / "bank.json").read_text())
    del meta["files"]
    (tmp_path / "b" / "bank.json").write_text(json.dumps(meta))
    assert DiskBank.open(tmp_path / "b").size == 10
    k = np.fromfile(tmp_path / "b" / "keys.f32", np.float32)
    k[5] = np.nan
    k.tofile(tmp_path / "b" / "keys.f32")
    with pytest.raises(ForgeryDetError, match="keys.f32 holds NaN or infinite keys"):
        DiskBank.open(tmp_path / "b")


@pytest.mark.skipif(not faiss_available(), reason="faiss-cpu not installed (the optional 'scale' extra)")
def test_a_bank_built_with_a_faiss_index_is_searched_exactly_where_faiss_is_missing(tmp_path, monkeypatch):
    """A bank built where faiss was installed was refused on a machine without it ("this bank needs faiss"), though
    keys.f32 holds every key the index only proposes."""
    import sys

    cfg = IndexConfig(nlist=16, nprobe=4, train_size=2000, exact_limit=500)
    e = clustered_entries(1200)
    write_bank(tmp_path / "b", [e], 4, 16, "ef" * 32, cfg)
    assert DiskBank.open(tmp_path / "b").index is not None
    monkeypatch.setitem(sys.modules, "faiss", None)  # as where faiss-cpu is not installed
    bank = DiskBank.open(tmp_path / "b")
    assert bank.index is None and bank.search_text().startswith("exact (faiss is not installed")
    q = torch.randn(5, 16)
    ref, idx, sims = bank.retrieve(q, 3)
    s, i = bank.search_exact(F.normalize(q, dim=-1).numpy(), 3)
    assert np.array_equal(idx.numpy(), i) and ref.shape == (5, 4, 16)


@pytest.mark.skipif(not faiss_available(), reason="faiss-cpu not installed (the optional 'scale' extra)")
def test_scanning_with_an_indexed_bank_where_faiss_is_missing_says_so_and_scans(tmp_path, astronaut, monkeypatch):
    import json
    import sys

    import cv2
    from typer.testing import CliRunner

    from forgerydet.cli.app import app
    from forgerydet.model.checkpoint import save_checkpoint
    from forgerydet.model.references import fingerprint_full
    from tests._faces_util import face_frames

    torch.manual_seed(0)
    m = tiny_model(bank_size=4).eval()
    ck = save_checkpoint(tmp_path / "ck.safetensors", m)
    with torch.no_grad():
        vals = m.encode_keys(torch.rand(600, 3, 64, 64))
    write_bank(tmp_path / "disk", [vals], m.bank.num_tokens, m.bank.dim, fingerprint_full(m.key_fingerprint()),
               IndexConfig(nlist=8, exact_limit=500))
    img = tmp_path / "face.png"
    cv2.imwrite(str(img), cv2.cvtColor(face_frames(astronaut, 1)[0], cv2.COLOR_RGB2BGR))
    monkeypatch.setitem(sys.modules, "faiss", None)
    r = CliRunner().invoke(app, ["scan", str(img), "--checkpoint", str(ck), "--bank", str(tmp_path / "disk"),
                                 "--device", "cpu", "--json", str(tmp_path / "s.json")])
    assert r.exit_code == 0, r.output
    assert "faiss is not installed here: its 600 keys are searched exactly" in " ".join(r.output.split())
    settings = json.loads((tmp_path / "s.json").read_text())["settings"]
    assert settings["bank_search"] == "exact" and settings["bank_indexed"] is True
    assert any("searched exactly" in n for n in settings["notes"])
