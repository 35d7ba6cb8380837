"""references.py: the reference file format (rows grouped by person, exact round trip), names, the file's
checks (format, version, shape, key encoder), one person's rows as a bank, removing and listing. (Enrolling
and `scan --reference` end to end: tests/scan/test_enroll.py.)"""

from __future__ import annotations

import hashlib

import dataclasses
import json
from pathlib import Path

import pytest
import torch
from safetensors import safe_open
from safetensors.torch import save_file

from forgerydet.errors import ForgeryDetError
from forgerydet.model.config import references_path
from forgerydet.model.references import (
    FORMAT,
    THUMB,
    ReferenceFile,
    check_fingerprint,
    check_name,
    fingerprint_full,
    list_people,
    load_person,
    person_sources,
    read_references,
    remove_person,
    remove_sources,
)  # fmt: skip
from tests.helpers import tiny_model

N, D = 16, 32  # tokens and dim of the tiny model


def entry(person: str, i: int, face: str = "main-track") -> dict:
    return {"person": person, "source": f"/v/{person}_{i // 2}.mp4", "frame_index": i, "time": i / 10,
            "track_id": 0, "box": [0, 0, 10, 10], "confidence": 0.99, "face": face}


def rows(b: int, start: float) -> tuple[torch.Tensor, torch.Tensor]:
    values = torch.arange(b * N * D, dtype=torch.float32).reshape(b, N, D) / 64 + start  # exact in fp16
    thumbs = torch.full((b, THUMB, THUMB, 3), int(start), dtype=torch.uint8)
    return values, thumbs


@pytest.fixture(scope="module")
def model():
    torch.manual_seed(0)
    return tiny_model(bank_size=16).eval()


def refs_for(model) -> ReferenceFile:
    fp = fingerprint_full(model.key_fingerprint())
    r = ReferenceFile.empty(fp, "test_efficientnet", N, D)
    r = r.plus(*rows(2, 1), [entry("A", 0), entry("A", 1)])
    r = r.plus(*rows(1, 2), [entry("B", 0, "all")])
    return r.plus(*rows(2, 3), [entry("A", 2), entry("A", 3, "largest")])  # A's new rows join A's old ones


def test_default_path_for_other_suffixes():
    assert references_path("/m/run.pt") == Path("/m/run.pt.refs.safetensors")
    assert references_path(Path("best.safetensors")) == Path("best.refs.safetensors")


def test_fingerprint_full_is_64_hex_digits():
    fp = torch.arange(32, dtype=torch.uint8)
    assert fingerprint_full(fp) == bytes(range(32)).hex() and len(fingerprint_full(fp)) == 64


def test_names():
    assert check_name("  Astro Naut ") == "Astro Naut"
    assert check_name("x" * 100) == "x" * 100
    for bad in ("", "   ", "x" * 101, "two\nlines", "tab\there", None):
        with pytest.raises(ForgeryDetError, match="is not usable: give 1 to 100 printable characters"):
            check_name(bad)
    with pytest.raises(ForgeryDetError) as e:  # a long name is not echoed in full
        check_name("y" * 5000)
    assert str(e.value) == ("person name of 5,000 characters ('yyyyyyyyyyyyyyyyyyyyyyyy'...) is not usable: give 1 to "
                            "100 printable characters")
    with pytest.raises(ForgeryDetError, match=r"^person name '   ' \(spaces only\) is not usable"):
        check_name("   ")
    with pytest.raises(ForgeryDetError, match=r"^person name '' \(empty\) is not usable"):
        check_name("")
    with pytest.raises(ForgeryDetError, match=r"^person name 'two\\nlines' is not usable"):
        check_name("two\nlines")


def test_a_name_is_one_person_however_its_accents_are_encoded(model, tmp_path):
    """'Jose' + a combining acute (a name pasted from a macOS file name) and the precomposed 'José' look the same but
    were two people: enrolling one and scanning with the other said "'José' is not enrolled (enrolled: José)"."""
    composed, combining = "Jos\u00e9", "Jose\u0301"
    assert check_name(combining) == check_name(composed) == composed
    fp = fingerprint_full(model.key_fingerprint())
    p = ReferenceFile.empty(fp, "test_efficientnet", N, D).plus(*rows(1, 1), [entry(check_name(composed), 0)]).save(
        tmp_path / "r.safetensors")
    assert load_person(p, combining, model).name == composed
    assert [r["faces"] for r in person_sources(p, combining)] == [1]


def test_plus_keeps_each_persons_rows_together(model):
    r = refs_for(model)
    assert [(e["person"], e["frame_index"]) for e in r.entries] == [("A", 0), ("A", 1), ("A", 2), ("A", 3), ("B", 0)]
    assert r.values.dtype == torch.float16 and r.values.shape == (5, N, D)
    assert r.thumbs[:, 0, 0, 0].tolist() == [1, 1, 3, 3, 2]  # the rows moved with their entries
    assert r.values[:, 0, 0].tolist() == [1.0, 1.0 + 512 / 64, 3.0, 3.0 + 512 / 64, 2.0]
    assert r.people() == {"A": 4, "B": 1} and r.rows_of("B") == [4]
    w = r.without("A")
    assert w.people() == {"B": 1} and w.values[:, 0, 0].tolist() == [2.0] and w.thumbs.shape == (1, THUMB, THUMB, 3)


def test_save_and_read_are_an_exact_round_trip(model, tmp_path):
    r = refs_for(model)
    p = r.save(tmp_path / "x.refs.safetensors")
    back = read_references(p)
    assert torch.equal(back.values, r.values) and torch.equal(back.thumbs, r.thumbs)
    assert back.entries == r.entries and (back.fingerprint, back.backbone, back.tokens, back.dim) == (
        r.fingerprint, "test_efficientnet", N, D)
    with safe_open(str(p), "pt") as f:
        meta = f.metadata()
    assert meta["format"] == FORMAT and meta["format_version"] == "1"
    assert json.loads(meta["people"]) == {"A": [0, 4], "B": [4, 1]}
    # no temp file left; the reader's lock file sits beside it (hidden)
    assert sorted(x.name for x in tmp_path.iterdir()) == [".x.refs.safetensors.lock", "x.refs.safetensors"]


def test_a_reference_file_whose_name_is_not_utf8_is_read(model, tmp_path):
    # `enroll --list --into 'refs\xff.safetensors'`, `scan --references ...`: refused as damaged before
    import os

    p = refs_for(model).save(tmp_path / os.fsdecode(b"x\xff.refs.safetensors"))
    assert read_references(p).entries == refs_for(model).entries
    assert load_person(p, "B", model).entries == [entry("B", 0, "all")]


def test_load_person_reads_only_that_persons_rows(model, tmp_path):
    p = refs_for(model).save(tmp_path / "r.safetensors")
    b = load_person(p, " B ", model)
    assert b.name == "B" and b.bank.filled == 1 and b.entries == [entry("B", 0, "all")]
    assert torch.equal(b.bank.values[0].float(), rows(1, 2)[0][0]) and b.thumbs.shape == (1, THUMB, THUMB, 3)
    nb = b.neighbour(0)
    assert {k: v for k, v in nb.items() if k != "thumb"} == {"person": "B", "source": "/v/B_0.mp4", "frame_index": 0}
    assert nb["thumb"].shape == (THUMB, THUMB, 3) and (nb["thumb"] == 2).all()
    a = load_person(p, "A", model)
    assert a.bank.filled == 4 and [e["frame_index"] for e in a.entries] == [0, 1, 2, 3]
    with pytest.raises(ForgeryDetError) as e:
        load_person(p, "C", model)
    assert str(e.value) == f"'C' is not enrolled in {p} (enrolled: A, B): enrol with `forgerydet enroll C VIDEO...`"


def test_another_models_file_is_refused(model, tmp_path):
    p = refs_for(model).save(tmp_path / "r.safetensors")
    torch.manual_seed(1)
    other = tiny_model(bank_size=16).eval()
    with pytest.raises(ForgeryDetError, match="was enrolled with another key encoder"):
        load_person(p, "A", other)
    with pytest.raises(ForgeryDetError) as e:
        check_fingerprint(p, "ab" * 32, "cd" * 32, "m.safetensors")
    assert f"(fingerprint {'ab' * 8}, this model's {'cd' * 8}, m.safetensors)" in str(e.value)
    check_fingerprint(p, "ab" * 32, "ab" * 32)  # the same key encoder: no error


def test_file_checks(model, tmp_path):
    with pytest.raises(ForgeryDetError, match=r"reference file not found: .*nope\.safetensors \(enrol a person first"):
        read_references(tmp_path / "nope.safetensors")
    with pytest.raises(ForgeryDetError, match="is a folder: give the reference file"):
        read_references(tmp_path)
    r = refs_for(model)
    p = r.save(tmp_path / "r.safetensors")
    with safe_open(str(p), "pt") as f:
        meta, tensors = dict(f.metadata()), {k: f.get_tensor(k) for k in f.keys()}
    save_file(tensors, str(tmp_path / "v2.safetensors"), metadata={**meta, "format_version": "2"})
    with pytest.raises(ForgeryDetError, match="is reference format 2, this forgerydet reads format 1: enrol again"):
        read_references(tmp_path / "v2.safetensors")
    save_file(tensors, str(tmp_path / "short.safetensors"), metadata={**meta, "entries": json.dumps(r.entries[:3])})
    with pytest.raises(ForgeryDetError, match=r"values of shape \[5, 16, 32\] do not match 3 entries\); it was left as it is"):
        read_references(tmp_path / "short.safetensors")
    save_file(tensors, str(tmp_path / "bad.safetensors"), metadata={**meta, "tokens": "many"})
    with pytest.raises(ForgeryDetError, match=r"not a readable forgerydet reference file \(bad metadata: ValueError\)"):
        read_references(tmp_path / "bad.safetensors")


def test_an_index_that_names_rows_past_the_end_is_one_error(model, tmp_path):
    """A hand-edited index ({"A": [0, 99]} over 5 rows) was a 53-line traceback in `scan --reference`."""
    p = refs_for(model).save(tmp_path / "r.safetensors")
    with safe_open(str(p), "pt") as f:
        meta, tensors = dict(f.metadata()), {k: f.get_tensor(k) for k in f.keys()}
    for people in ({"A": [0, 99], "B": [4, 1]}, {"A": [-1, 4], "B": [4, 1]}):
        save_file(tensors, str(tmp_path / "edited.safetensors"), metadata={**meta, "people": json.dumps(people)})
        with pytest.raises(ForgeryDetError, match="the rows of 'A' do not match its index"):
            load_person(tmp_path / "edited.safetensors", "A", model)


def test_a_hand_edited_index_is_one_error_in_every_command(model, tmp_path):
    """An entry without its person or source, a people index of another shape, too few thumbnails or no fingerprint
    were tracebacks (KeyError, TypeError, IndexError) in `enroll --list`, `enroll --remove` or `scan --reference`."""
    p = refs_for(model).save(tmp_path / "r.safetensors")
    with safe_open(str(p), "pt") as f:
        meta, tensors = dict(f.metadata()), {k: f.get_tensor(k) for k in f.keys()}
    entries = json.loads(meta["entries"])
    edits = {
        "entry 0 lacks a person": {"entries": json.dumps([{k: v for k, v in entries[0].items() if k != "person"}]
                                                         + entries[1:])},
        "entry 4 lacks a person, source": {"entries": json.dumps(entries[:4] + [dict(entries[4], source=None)])},
        "entry 0 lacks": {"entries": json.dumps(["x"] * 5)},
        "its people index is not": {"people": json.dumps(["A", "B"])},
        "no key-encoder fingerprint": {"fingerprint": "?"},
    }
    for why, change in edits.items():
        save_file(tensors, str(tmp_path / "edited.safetensors"), metadata={**meta, **change})
        for read in (read_references, lambda q: load_person(q, "A", model), lambda q: remove_person(q, "B")):
            with pytest.raises(ForgeryDetError, match=f"not a readable forgerydet reference file \\(bad metadata: {why}"):
                read(tmp_path / "edited.safetensors")
    save_file({**tensors, "thumbs": tensors["thumbs"][:3]}, str(tmp_path / "edited.safetensors"), metadata=meta)
    with pytest.raises(ForgeryDetError, match=r"thumbs of shape \[3\] do not match 5 entries"):
        remove_person(tmp_path / "edited.safetensors", "A")


def test_a_reference_file_in_a_folder_the_reader_may_not_write_is_read(model, tmp_path, monkeypatch):
    """A reference file on a read-only share: `scan --reference` and `enroll --list` failed with
    "error: .r.safetensors.lock: read-only file system: choose a writable location", though they only read it."""
    import errno
    import os

    p = refs_for(model).save(tmp_path / "r.safetensors")
    real = os.open

    def read_only_folder(path, flags, *args, **kw):
        if flags & os.O_CREAT:
            raise OSError(errno.EROFS, "Read-only file system", str(path))
        return real(path, flags, *args, **kw)

    monkeypatch.setattr(os, "open", read_only_folder)
    for lock_file_there in (False, True):  # none beside it: read unlocked; one there: locked through it, read-only
        if lock_file_there:
            monkeypatch.setattr(os, "open", real)
            (tmp_path / ".r.safetensors.lock").touch()
            monkeypatch.setattr(os, "open", read_only_folder)
        assert read_references(p).entries == refs_for(model).entries and load_person(p, "B", model).bank.filled == 1
        with pytest.raises(ForgeryDetError, match=r"^the reference file .*r.safetensors: cannot write there \(read-only"):
            remove_person(p, "B")  # a writer still needs its lock: said of the file, not of its hidden lock file


def test_remove_and_list(model, tmp_path):
    p = refs_for(model).save(tmp_path / "r.safetensors")
    refs, people = list_people(p)
    assert people == {"A": {"faces": 4, "sources": 2, "face": "largest, main-track"},
                      "B": {"faces": 1, "sources": 1, "face": "all"}}
    assert remove_person(p, "A") == 4
    assert read_references(p).people() == {"B": 1}
    with pytest.raises(ForgeryDetError) as e:
        remove_person(p, "A")
    assert str(e.value) == f"'A' is not enrolled in {p} (enrolled: B): nothing removed"
    assert remove_person(p, "B") == 1
    refs, people = list_people(p)
    assert people == {} and refs.values.shape == (0, N, D)


def test_removing_from_a_read_only_place_names_the_file_not_its_lock(model, tmp_path, monkeypatch):
    """`enroll NAME --remove` on a read-only mount said "error: DIR/.r.safetensors.lock: read-only file system", a
    hidden file the user never named, where enrolling said it of the reference file (checked before the lock)."""
    import errno
    import tempfile

    from forgerydet.model import references

    p = refs_for(model).save(tmp_path / "r.safetensors")
    before = p.read_bytes()

    def read_only(*a, **kw):
        raise OSError(errno.EROFS, "Read-only file system", str(tmp_path / ".r.safetensors.lock"))

    monkeypatch.setattr(references, "open_lock_file", read_only)
    monkeypatch.setattr(tempfile, "mkstemp", read_only)  # the location's probe
    for remove in (lambda: remove_person(p, "A"), lambda: remove_sources(p, "A", ["/v/A_0.mp4"])):
        with pytest.raises(ForgeryDetError) as e:
            remove()
        assert str(e.value) == f"the reference file {p}: cannot write there (read-only file system: choose a writable location)"
    assert p.read_bytes() == before


def test_one_persons_sources_are_listed_and_removed_one_at_a_time(model, tmp_path):
    p = refs_for(model).save(tmp_path / "r.safetensors")
    assert person_sources(p, "A") == [
        {"source": "/v/A_0.mp4", "faces": 2, "face": "main-track", "sha256": None},
        {"source": "/v/A_1.mp4", "faces": 2, "face": "main-track", "sha256": None},
    ]
    with pytest.raises(ForgeryDetError, match=r"'C' is not enrolled in .* \(enrolled: A, B\)$"):
        person_sources(p, "C")
    before = p.read_bytes()
    for bad, why in ((["/v/A_0.mp4", "/v/B_0.mp4"], "/v/B_0.mp4: not among the sources 'A' was enrolled with"),
                     (["/v/A_9.mp4"], "/v/A_9.mp4: not among")):
        with pytest.raises(ForgeryDetError, match=why + ".*nothing removed"):
            remove_sources(p, "A", bad)
        assert p.read_bytes() == before  # one unknown source: nothing removed
    with pytest.raises(ForgeryDetError, match="'C' is not enrolled .*: nothing removed"):
        remove_sources(p, "C", ["/v/A_0.mp4"])
    assert remove_sources(p, "A", ["/v/A_1.mp4"]) == (2, 2, [("/v/A_1.mp4", False)])
    f = read_references(p)
    assert f.people() == {"A": 2, "B": 1} and [e["frame_index"] for e in f.entries if e["person"] == "A"] == [0, 1]
    assert torch.equal(f.values[:2], refs_for(model).values[:2])  # the rows kept are the same faces
    assert remove_sources(p, "A", ["/v/A_0.mp4"]) == (2, 0, [("/v/A_0.mp4", False)]) and read_references(p).people() == {"B": 1}


def test_a_folder_or_pattern_enrolled_is_removed_as_it_was_given(model, tmp_path):
    """`enroll A clips/` then `enroll A clips/ --remove` said "clips/: not among the sources 'A' was enrolled with":
    --remove took files only, though enrolling takes folders and patterns (also once the folder has gone)."""
    p = refs_for(model).save(tmp_path / "r.safetensors")
    assert remove_sources(p, "A", ["/v/A_*.mp4"]) == (4, 0, [("/v/A_0.mp4", False), ("/v/A_1.mp4", False)])
    p = refs_for(model).save(tmp_path / "r.safetensors")
    assert remove_sources(p, "A", ["/v/"])[:2] == (4, 0)  # a folder that is not on this machine (any more)
    assert remove_sources(p, "B", ["/v"])[:2] == (1, 0) and read_references(p).people() == {}
    p = refs_for(model).save(tmp_path / "r.safetensors")
    with pytest.raises(ForgeryDetError, match="/v/A: not among the sources"):  # a name's prefix is no folder
        remove_sources(p, "A", ["/v/A"])


def test_a_source_is_found_by_its_content_after_a_move(model, tmp_path):
    clip = tmp_path / "clip.mp4"
    clip.write_bytes(b"video bytes")
    r = ReferenceFile.empty(fingerprint_full(model.key_fingerprint()), "test_efficientnet", N, D)
    r = r.plus(*rows(2, 1), [{**entry("A", i), "source": str(clip), "sha256": hashlib.sha256(b"video bytes").hexdigest()}
                             for i in (0, 1)])
    p = r.save(tmp_path / "r.safetensors")
    moved = tmp_path / "kept" / "renamed.mp4"
    moved.parent.mkdir()
    clip.rename(moved)
    assert remove_sources(p, "A", [str(moved)]) == (2, 0, [(str(clip), True)])  # the file enrolled is named


def test_a_file_of_another_kind_is_not_called_a_damaged_reference_file(tmp_path):
    from forgerydet.model.references import read_references

    video = tmp_path / "clip.mp4"
    video.write_bytes(b"\x00\x00\x00\x18ftypmp42" + bytes(100))
    with pytest.raises(ForgeryDetError, match=r"clip.mp4 is not a forgerydet reference file \(give the file"):
        read_references(video)
    broken = tmp_path / "ann.refs.safetensors"
    broken.write_bytes(b"\x00\x00\x00\x18ftypmp42" + bytes(100))
    with pytest.raises(ForgeryDetError, match="not a readable forgerydet reference file .truncated or corrupted"):
        read_references(broken)


def test_no_lock_file_is_left_beside_a_file_that_is_not_a_reference_file(tmp_path):
    """`enroll NAME photo --into clip.mp4` was refused but left .clip.mp4.lock in the user's folder (and a later
    disk bank built from that folder listed it among its other files)."""
    from forgerydet.model.references import file_lock, read_references

    clip = tmp_path / "clip.mp4"
    clip.write_bytes(b"\x00\x00\x00\x18ftypmp42 not a reference file")
    with pytest.raises(ForgeryDetError, match="not a forgerydet reference file"):
        read_references(clip, wait=0)
    with file_lock(clip, exclusive=True, wait=0):
        pass
    with pytest.raises(ForgeryDetError, match="reference file not found"):
        read_references(tmp_path / "none.refs.safetensors", wait=0)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["clip.mp4"]
    with file_lock(tmp_path / "new.refs.safetensors", exclusive=True, wait=0):  # a file to be written: locked
        assert (tmp_path / ".new.refs.safetensors.lock").exists()


def test_the_content_digest_changes_with_the_enrolled_faces_not_only_their_count(model, tmp_path):
    """scan --resume compared the key encoder's fingerprint and the face count: a person enrolled again from other
    faces, as many, kept the earlier scores."""
    p = refs_for(model).save(tmp_path / "r.safetensors")
    b = load_person(p, "B", model)
    assert b.content == load_person(p, "B", model).content and len(b.content) == 16
    other = dataclasses.replace(b, entries=[dict(b.entries[0], source="/v/other.mp4")])
    assert other.content != b.content and other.bank.filled == b.bank.filled
