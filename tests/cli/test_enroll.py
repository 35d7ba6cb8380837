"""cli/enroll.py: defaults from EnrollConfig, the options reaching `enroll`, its summary, --list of an empty file,
and the missing NAME / SOURCES messages. (Enrolling for real, --remove and the file's errors:
tests/scan/test_enroll.py.)"""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest

from forgerydet.cli.enroll import enroll_cmd
from forgerydet.faces.detect import DetectorConfig
from forgerydet.model.references import ReferenceFile
from forgerydet.scan import enroll
from forgerydet.scan.config import EnrollConfig
from forgerydet.scan.enroll import EnrollResult
from tests.cli._cli_util import cli, defaults, one_error


def test_defaults_are_enroll_configs():
    got = defaults(enroll_cmd)
    cfg = {f.name: f.default for f in dataclasses.fields(EnrollConfig) if f.default is not dataclasses.MISSING}
    assert (got["face"], got["frames"], got["wait"], got["device"]) == (
        cfg["face"], cfg["num_frames"], cfg["wait"], cfg["device"])
    assert (got["detect_side"], got["min_confidence"]) == (DetectorConfig.detect_side, DetectorConfig.min_confidence)
    assert got["list_"] is got["remove"] is False and got["into"] is got["checkpoint"] is None
    assert got["deinterlace"] is cfg["deinterlace"] is True


@pytest.fixture
def fake_enroll(monkeypatch):
    calls = []

    def run(name, sources, *, checkpoint, into, config, progress):
        calls.append({"name": name, "sources": sources, "checkpoint": checkpoint, "into": into, "config": config})
        progress(0, 2, "/v/a.mp4")
        return EnrollResult(name, Path("/m/x.refs.safetensors"), Path("/m/x.safetensors"), added=3, duplicates=2,
                            total=5, people=2, sources=[("/v/a.mp4", 3, "main track 0, on 3 of 3 sampled frame(s)"),
                                                        ("/v/b.png", 0, "no face found")])

    monkeypatch.setattr(enroll, "enroll", run)
    return calls


def test_options_reach_enroll_and_the_summary_is_printed(fake_enroll, tmp_path):
    r = cli("enroll", "Ann Lee", "/v/a.mp4", "/v/b.png", "--checkpoint", tmp_path / "x.safetensors", "--into",
            tmp_path / "r.safetensors", "--face", "all", "--frames", 5, "--wait", "2.5", "--device", "cpu",
            "--detect-side", 320, "--min-confidence", "0.8", "--no-deinterlace")
    assert r.exit_code == 0, r.output
    (call,) = fake_enroll
    assert (call["name"], call["sources"], call["checkpoint"], call["into"]) == (
        "Ann Lee", ["/v/a.mp4", "/v/b.png"], tmp_path / "x.safetensors", tmp_path / "r.safetensors")
    c = call["config"]
    assert (c.face, c.num_frames, c.wait, c.device, c.batch_size) == ("all", 5, 2.5, "cpu", EnrollConfig.batch_size)
    assert (c.detector.detect_side, c.detector.min_confidence, c.detector.size) == (320, 0.8, DetectorConfig.size)
    assert c.deinterlace is False
    assert [line for line in r.stdout.splitlines() if line] == [
        "  a.mp4: main track 0, on 3 of 3 sampled frame(s)",
        "  b.png: no face found",
        "enrolled 3 faces of 'Ann Lee' (2 already enrolled, skipped): 5 in all; 2 people in /m/x.refs.safetensors "
        "(key encoder of /m/x.safetensors)",
    ]


def test_the_name_is_passed_and_named_as_it_is_stored(fake_enroll, tmp_path):
    """`enroll "Ann Lee " ...` said "enrolled 3 faces of 'Ann Lee '" of a person stored (and scanned) as 'Ann Lee'."""
    r = cli("enroll", " Ann Lee ", "/v/a.mp4", "--into", tmp_path / "r.safetensors")
    assert r.exit_code == 0, r.output
    assert fake_enroll[0]["name"] == "Ann Lee" and "enrolled 3 faces of 'Ann Lee' (2 already" in r.flat


def test_a_bad_face_choice_is_one_line_before_enrolling(fake_enroll, tmp_path):
    one_error(cli("enroll", "A", "/v/a.mp4", "--into", tmp_path / "r.safetensors", "--face", "biggest"),
              "--face 'biggest': use one of main-track, largest, all")
    assert fake_enroll == []


def test_missing_name_or_sources(tmp_path):
    into = ["--into", tmp_path / "r.safetensors"]
    one_error(cli("enroll", *into), "give the person's NAME (or --list)")
    one_error(cli("enroll", "Ann", *into), "give real videos or images of 'Ann' to enrol (or --remove / --list)")
    assert list(tmp_path.iterdir()) == []


def test_list_of_an_empty_file_and_of_no_file(tmp_path):
    p = ReferenceFile.empty("ab" * 32, "test_efficientnet", 16, 32).save(tmp_path / "r.refs.safetensors")
    r = cli("enroll", "--list", "--into", p)
    assert r.exit_code == 0, r.output
    assert r.stdout == f"nobody enrolled in {p} (key encoder abababababababab, test_efficientnet)\n"  # no empty table
    ck = tmp_path / "m.safetensors"  # the default file is beside the checkpoint
    one_error(cli("enroll", "--list", "--checkpoint", ck), f"reference file not found: {tmp_path / 'm.refs.safetensors'}")


def test_list_prints_names_as_text_not_rich_markup(tmp_path, monkeypatch):
    """A person or folder named "[x]" is listed as it is (rich read it as a markup tag and dropped it)."""
    from forgerydet.model import references

    (tmp_path / "[refs]").mkdir()
    p = ReferenceFile.empty("ab" * 32, "test_efficientnet", 16, 32).save(tmp_path / "[refs]" / "r.refs.safetensors")
    refs = ReferenceFile.empty("ab" * 32, "test_efficientnet", 16, 32)
    people = {"[bold]Ann[/bold]": {"faces": 3, "sources": 1, "face": "largest"}}
    monkeypatch.setattr(references, "list_people", lambda path: (refs, people))
    r = cli("enroll", "--list", "--into", p)
    assert r.exit_code == 0, r.output
    assert "[bold]Ann[/bold]" in r.stdout and "[refs]" in r.stdout


def test_piped_output_holds_only_the_results(fake_enroll, tmp_path):
    r = cli("enroll", "A", "/v/a.mp4", "--into", tmp_path / "r.safetensors")
    assert r.exit_code == 0, r.output
    assert r.stdout.splitlines()[0] == "  a.mp4: main track 0, on 3 of 3 sampled frame(s)"


def test_one_persons_files_are_listed_and_removed_by_name(tmp_path):
    import torch

    a, b = tmp_path / "a.mp4", tmp_path / "b.mp4"
    a.write_bytes(b"a")
    b.write_bytes(b"b")
    entries = [{"person": "Ann", "source": str(src), "frame_index": i, "time": 0.0, "track_id": 0, "box": [0, 0, 9, 9],
                "confidence": 0.99, "face": "main-track", "sha256": "ab" * 32} for src, i in ((a, 0), (a, 1), (b, 0))]
    refs = ReferenceFile.empty("ab" * 32, "test_efficientnet", 16, 32)
    p = refs.plus(torch.zeros(3, 16, 32), torch.zeros(3, 48, 48, 3, dtype=torch.uint8), entries).save(tmp_path / "r.refs.safetensors")
    r = cli("enroll", "--list", "Ann", "--into", p, COLUMNS="200")
    assert r.exit_code == 0, r.output
    assert f"Ann in {p}" in r.flat and f"{a} │ 2 │ main-track │ abababababababab" in r.flat and f"{b} │ 1 │" in r.flat
    one_error(cli("enroll", "--list", "Bob", "--into", p), f"'Bob' is not enrolled in {p} (enrolled: Ann)")
    one_error(cli("enroll", "--list", "Ann", a, "--into", p), "--list lists the reference file (with NAME, one "
              "person's files): it takes no sources or --remove")
    one_error(cli("enroll", "Ann", tmp_path / "c.mp4", "--remove", "--into", p), "c.mp4: not among the sources 'Ann' "
              "was enrolled with (see `forgerydet enroll --list 'Ann'`): nothing removed")
    r = cli("enroll", " Ann ", a, "--remove", "--into", p)  # the name as stored, not as typed ('Ann ' was echoed)
    assert r.exit_code == 0 and f"removed 2 faces of 'Ann' enrolled from 1 file, from {p} (1 left)" in r.flat, r.output
    assert r.stdout.splitlines()[1:] == [f"  {a}"], r.output
    copy = tmp_path / "copy_of_b.mp4"  # the same bytes under another name: the file enrolled is named
    copy.write_bytes(b"b")
    import hashlib

    digest = hashlib.sha256(b"b").hexdigest()
    refs = ReferenceFile.empty("ab" * 32, "test_efficientnet", 16, 32)
    entries = [{**entries[2], "sha256": digest}, {**entries[2], "frame_index": 1, "sha256": digest}]
    p = refs.plus(torch.zeros(2, 16, 32), torch.zeros(2, 48, 48, 3, dtype=torch.uint8), entries).save(p)
    r = cli("enroll", "Ann", copy, "--remove", "--into", p)
    assert r.exit_code == 0 and "(none left: 'Ann' is no longer enrolled)" in r.flat, r.output
    assert r.stdout.splitlines()[1:] == [f"  {b} (not a path given: found by its content, the same bytes as a file "
                                         "given)"], r.output


def test_list_on_80_columns_shows_a_long_source_path_and_name_whole(tmp_path):
    """`enroll --list NAME` on 80 columns (a terminal, a log) cut a source path to "/data/people_of_interest…": the
    file enrolled, which `--remove` needs, could not be read; so for a long person's name in `enroll --list`. The
    title line, which names the reference file, is one line, not folded."""
    import torch

    folder = tmp_path / "people_of_interest" / "alice_long_surname" / "interviews"
    src = folder / "interview_2024_full_take_02.mp4"
    name = "Alice Long-Surname-With-A-Second-Family-Name-Of-Her-Mothers-Side"
    entry = {"person": name, "source": str(src), "frame_index": 0, "time": 0.0, "track_id": 0, "box": [0, 0, 9, 9],
             "confidence": 0.99, "face": "main-track", "sha256": "ab" * 32}
    refs = ReferenceFile.empty("ab" * 32, "test_efficientnet", 16, 32)
    p = refs.plus(torch.zeros(1, 16, 32), torch.zeros(1, 48, 48, 3, dtype=torch.uint8), [entry]).save(tmp_path / "r.refs.safetensors")
    for args in (["--list", name], ["--list"]):
        r = cli("enroll", *args, "--into", p, COLUMNS="80")
        assert r.exit_code == 0, r.output
        cells = "".join(line.split("│")[1].strip() for line in r.stdout.splitlines() if line.startswith("│"))
        assert "…" not in r.stdout and cells == (str(src) if len(args) == 2 else name.replace(" ", "")), r.stdout
        assert r.stdout.splitlines()[0] in (f"{name} in {p}", f"{p} (key encoder abababababababab, test_efficientnet)")


def test_a_name_that_differs_from_an_enrolled_one_by_case_only_is_warned_of(monkeypatch, tmp_path):
    """`enroll anchor ...` beside an enrolled 'Anchor' made a second person without a word; scans against either name
    then compare with half of one person's faces."""
    def run(name, sources, *, checkpoint, into, config, progress):
        return EnrollResult(name, Path("/m/r.safetensors"), Path("/m/x.safetensors"), added=1, duplicates=0, total=1,
                            people=2, sources=[("/v/a.png", 1, "largest face")], case_twins=["Anchor"])

    monkeypatch.setattr(enroll, "enroll", run)
    r = cli("enroll", "anchor", "/v/a.png", "--into", tmp_path / "r.safetensors")
    assert r.exit_code == 0, r.output
    assert ("warning: 'Anchor' is enrolled too, a name that differs from 'anchor' only by case: they are two people "
            "to forgerydet") in " ".join(r.stderr.split())
