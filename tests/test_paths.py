"""Output paths checked before any work (paths.py): unwritable locations, a file for a folder, an output that is
an input."""

from __future__ import annotations

import json
import os

import pytest

from forgerydet.errors import ForgeryDetError
from forgerydet.paths import (check_checkpoint_out, check_not_input, check_output, folder_held, same_file, sweep_beside,
                              sweep_leftovers)


def test_check_output_accepts_new_paths_and_creates_nothing(tmp_path):
    assert check_output(tmp_path / "a" / "b" / "s.json", "--json") == tmp_path / "a" / "b" / "s.json"
    assert check_output(tmp_path / "rep", "--report", folder=True) == tmp_path / "rep"
    assert list(tmp_path.iterdir()) == []


def test_check_output_refuses_a_file_for_a_folder_and_the_reverse(tmp_path):
    f = tmp_path / "f.txt"
    f.write_text("keep")
    with pytest.raises(ForgeryDetError) as e:
        check_output(f, "--out", folder=True)
    assert str(e.value) == f"--out {f}: {f} is a file where a folder is needed (move it away, or give another path)"
    with pytest.raises(ForgeryDetError) as e:
        check_output(tmp_path, "--json")
    assert str(e.value) == f"--json {tmp_path}: a folder, not a file: give a file path inside it"
    with pytest.raises(ForgeryDetError) as e:
        check_output(f / "deeper" / "x.csv", "--csv")
    assert str(e.value) == f"--csv {f / 'deeper' / 'x.csv'}: {f} is a file where a folder is needed (move it away, or give another path)"
    assert f.read_text() == "keep"


def test_check_output_says_a_file_in_the_way_as_a_write_would_and_sees_the_folders_made_inside(tmp_path, monkeypatch):
    """A file where a folder is needed had two wordings, "a file, so nothing can be written below it" before the
    work and "a file where a folder is needed" from a write; and a file named like a folder the command makes in
    its --out (extract's crops/ or parts/, a report's img/) was met only by that write, after all the detection."""
    from forgerydet.errors import os_error_text

    out = tmp_path / "faces"
    out.mkdir()
    (out / "parts").write_text("mine")
    with pytest.raises(ForgeryDetError) as e:
        check_output(out, "--out", folder=True, inside=("crops", "parts"))
    assert str(e.value) == f"--out {out}: {out / 'parts'} is a file where a folder is needed (move it away, or give another path)"
    assert check_output(out, "--out", folder=True) == out  # not a folder the caller makes: not its business
    monkeypatch.chdir(tmp_path)  # named relative as the user's path is, as a write's error names it
    with pytest.raises(ForgeryDetError) as e:
        check_output("faces/parts/x/y", "--out", folder=True)
    with pytest.raises(OSError) as raw:
        os.makedirs("faces/parts/x/y")
    assert str(e.value) == "--out faces/parts/x/y: " + os_error_text(raw.value).split(": ", 1)[1]
    assert str(e.value) == "--out faces/parts/x/y: faces/parts is a file where a folder is needed (move it away, or give another path)"
    assert (out / "parts").read_text() == "mine" and sorted(p.name for p in out.iterdir()) == ["parts"]


def test_a_folder_where_a_file_is_written_is_refused_before_the_work_and_named_at_write_time(tmp_path, monkeypatch):
    """A folder named like a file a command writes in its output folder (a run's last.safetensors, OUT/pairs.csv)
    was met by the write, after the work (an epoch of training), as "cannot write OUT/last.safetensors: Is a
    directory"; `train --overwrite` then added that the folder "still holds the run --overwrite was to replace"."""
    from forgerydet.errors import os_error_text
    from forgerydet.io import write_text_atomic

    out = tmp_path / "run"
    (out / "last.safetensors").mkdir(parents=True)
    with pytest.raises(ForgeryDetError) as e:
        check_output(out, "--out", folder=True, writes=("last.safetensors", "best.safetensors"))
    assert str(e.value) == (f"--out {out}: {out / 'last.safetensors'} is a folder where a file is needed (move it "
                            f"away, or give another path)")
    assert check_output(out, "--out", folder=True, writes=("best.safetensors",)) == out
    with pytest.raises(ForgeryDetError) as e:
        write_text_atomic(out / "last.safetensors", "x")
    assert str(e.value).endswith(f"{out / 'last.safetensors'} is a folder where a file is needed (move it away, or "
                                 f"give another path)"), str(e.value)
    monkeypatch.chdir(tmp_path)
    with pytest.raises(OSError) as raw:
        open("run/last.safetensors", "w")
    assert os_error_text(raw.value) == ("run/last.safetensors: run/last.safetensors is a folder where a file is needed "
                                        "(move it away, or give another path)")
    assert [p.name for p in out.iterdir()] == ["last.safetensors"]


def test_same_file_and_check_not_input_see_through_links(tmp_path):
    a = tmp_path / "a.png"
    a.write_bytes(b"x")
    (tmp_path / "link.png").symlink_to(a)
    os.link(a, tmp_path / "hard.png")
    assert same_file(a, tmp_path / "link.png") and same_file(a, tmp_path / "hard.png")
    assert same_file(tmp_path / "new.json", tmp_path / "sub" / ".." / "new.json")  # neither exists yet
    assert not same_file(a, tmp_path / "b.png")
    check_not_input(tmp_path / "out.json", "--json", [("the photo", a), ("nothing", None)])
    with pytest.raises(ForgeryDetError, match=r"^--json .*hard.png is the photo: writing there would replace it"):
        check_not_input(tmp_path / "hard.png", "--json", [("the photo", a)])


def test_a_checkpoint_output_onto_a_file_that_is_not_one_is_refused(tmp_path):
    from safetensors.torch import save_file
    import torch

    listing = tmp_path / "faces.csv"
    listing.write_text("path,label\n")
    with pytest.raises(ForgeryDetError, match=r"^--out .*faces.csv is an existing file that is not a forgerydet "
                                              r"checkpoint \(not a safetensors file\)"):
        check_checkpoint_out(listing, "--out")
    save_file({"w": torch.zeros(1)}, str(tmp_path / "old.safetensors"), metadata={"format": "forgerydet-checkpoint"})
    check_checkpoint_out(tmp_path / "old.safetensors", "--out")  # an earlier checkpoint may be replaced
    check_checkpoint_out(tmp_path / "new.safetensors", "--out")
    assert listing.read_text() == "path,label\n"
    # `calibrate --out people.refs.safetensors` replaced every enrolled person with a checkpoint; plain weights too
    save_file({"w": torch.zeros(1)}, str(tmp_path / "people.refs.safetensors"), metadata={"format": "forgerydet-references"})
    save_file({"w": torch.zeros(1)}, str(tmp_path / "plain.safetensors"))
    for name, kind in (("people.refs.safetensors", "of format forgerydet-references"), ("plain.safetensors", "of format unnamed")):
        with pytest.raises(ForgeryDetError, match=f"is an existing file that is not a forgerydet checkpoint \\(a safetensors file {kind}\\)"):
            check_checkpoint_out(tmp_path / name, "--out")


def _safetensors_header(path, header) -> None:
    raw = json.dumps(header).encode()
    path.write_bytes(len(raw).to_bytes(8, "little") + raw)


def test_safetensors_metadata_is_read_from_the_header_alone(tmp_path):
    from forgerydet.paths import safetensors_format, safetensors_metadata

    f = tmp_path / "a.safetensors"
    _safetensors_header(f, {"__metadata__": {"format": "forgerydet-references", "people": "{}"}})
    assert safetensors_metadata(f) == {"format": "forgerydet-references", "people": "{}"}
    assert safetensors_format(f) == "forgerydet-references"
    _safetensors_header(f, {"x": {"dtype": "F32", "shape": [1], "data_offsets": [0, 4]}})
    assert safetensors_metadata(f) == {} and safetensors_format(f) == ""
    for bad in (b"", b"\x05\x00\x00\x00\x00\x00\x00\x00[1,2]", b"\xff" * 8 + b"{}", b"\x02\x00\x00\x00\x00\x00\x00\x00{"):
        f.write_bytes(bad)
        assert safetensors_metadata(f) is None and safetensors_format(f) is None, bad
    assert safetensors_metadata(tmp_path / "missing.safetensors") is None


def test_folder_held_refuses_a_second_holder_and_removes_only_the_folders_it_made_while_empty(tmp_path):
    from forgerydet.paths import folder_held

    out = tmp_path / "new" / "out"
    with folder_held(out, "--report", "scan"):
        assert out.is_dir()
        with pytest.raises(ForgeryDetError) as e, folder_held(out, "--report", "scan"):
            pass
        assert str(e.value) == f"--report {out}: another scan is writing there now: wait for it to end, or give another --report"
    assert not (tmp_path / "new").exists()  # made by it, and still empty
    with folder_held(out, "--out", "evaluation"):
        (out / "metrics.json").write_text("{}")
    assert (out / "metrics.json").is_file()
    with folder_held(out, "--out", "evaluation"):  # released: held again
        pass


def test_folder_held_says_a_file_in_the_way_as_check_output_does(tmp_path):
    """`train --out FILE` said "error: FILE: File exists" (mkdir's words) once train held its --out, where it had
    said that FILE is a file, not a folder: the holder checks the folder as check_output does, before making it."""
    from forgerydet.paths import folder_held

    (tmp_path / "f").write_text("x")
    with pytest.raises(ForgeryDetError, match=r"^--out (.*f): \1 is a file where a folder is needed \(move it away, or give another path\)$"), \
            folder_held(tmp_path / "f", "--out", "training run"):
        pass
    with pytest.raises(ForgeryDetError, match=r"f is a file where a folder is needed \(move it away, or give another path\)$"), \
            folder_held(tmp_path / "f" / "sub", "--out", "training run"):
        pass


def _gone_pid() -> int:
    """The pid of a process that has ended (a writer killed with `kill -9`)."""
    import subprocess
    import sys

    p = subprocess.Popen([sys.executable, "-c", "pass"])
    p.wait()
    return p.pid


def test_the_temp_files_of_killed_writers_are_removed_and_never_a_live_ones(tmp_path):
    """`kill -9` during an atomic write left `.NAME.PID.RANDOM.SUFFIX` beside NAME: a checkpoint's until its next
    write, a face crop's, metrics.jsonl's or roc.png's for good (80 MB each for a checkpoint)."""
    import subprocess
    import sys

    dead, live = _gone_pid(), subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    try:
        (tmp_path / "crops" / "a-12345678").mkdir(parents=True)
        (tmp_path / "deep" / "er").mkdir(parents=True)
        stale = [tmp_path / f".last.safetensors.{dead}.0123456789.tmp", tmp_path / f".metrics.jsonl.{dead}.abcdef0123.tmp",
                 tmp_path / "crops" / "a-12345678" / f".f000007_0.png.{dead}.563f05eca1.tmp"]
        kept = [tmp_path / f".best.safetensors.{live.pid}.0123456789.tmp",  # a running writer's
                tmp_path / f".best.safetensors.{os.getpid()}.0123456789.tmp",  # this process's own
                tmp_path / f"last.safetensors.{dead}.0123456789.tmp",  # not hidden: not ours
                tmp_path / f".notes.{dead}.txt", tmp_path / "deep" / "er" / f".x.{dead}.0123456789.tmp"]  # not below
        for p in stale + kept:
            p.write_bytes(b"half")
        removed = sweep_leftovers(tmp_path, "crops/*", "deep")
        assert sorted(removed) == sorted(stale) and not any(p.exists() for p in stale)
        assert all(p.exists() for p in kept)
        (tmp_path / f".metrics.json.{dead}.0123456789.tmp").write_bytes(b"half")
        with folder_held(tmp_path, "--out", "evaluation") as held_removed:  # a held output folder is swept
            assert [p.name for p in held_removed] == [f".metrics.json.{dead}.0123456789.tmp"]
        assert sweep_leftovers(tmp_path / "missing") == []
    finally:
        live.kill()
        live.wait()


def test_sweep_beside_removes_a_killed_writers_temp_files_of_one_file_through_its_link(tmp_path):
    dead = 4_000_000  # beyond pid_max: no process has it
    (tmp_path / "real").mkdir()
    (tmp_path / "s.json").symlink_to(tmp_path / "real" / "s.json")  # written through: its temp files lie by the target
    left = tmp_path / "real" / f".s.json.{dead}.ab12.tmp"
    others = [tmp_path / "real" / f".s.json.{os.getpid()}.cd34.tmp", tmp_path / "real" / f".t.json.{dead}.ef56.tmp"]
    for f in [left, *others]:
        f.write_text("half")
    assert sweep_beside(tmp_path / "s.json") == [left]
    assert all(f.exists() for f in others) and sweep_beside(tmp_path / "none.json") == []
