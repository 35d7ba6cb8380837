"""io.py: atomic writes (all or nothing, no temp left, OS errors named by the user's path), leftovers of killed
writers, output checks before work, reading images, PNG and CSV round trips, hashes and folder-safe names."""

from __future__ import annotations

import errno
import hashlib
import os
import stat
import subprocess
import sys
import threading
from pathlib import Path

import cv2
import numpy as np
import pytest

from forgerydet.errors import ForgeryDetError, os_error_text
from forgerydet.io import (
    atomic_write,
    broken_link,
    file_sha256,
    file_state,
    is_stream,
    looks_like_safetensors,
    own_descriptor,
    read_csv_rows,
    read_image,
    remove_leftovers,
    safe_name,
    source_key,
    write_bytes_atomic,
    write_csv_atomic,
    write_png,
    write_text_atomic,
)  # fmt: skip
from forgerydet.paths import check_output


def _dead_pid() -> int:
    p = subprocess.Popen([sys.executable, "-c", "pass"])
    p.wait()
    return p.pid


# ----------------------------------------------------------------------------- atomic writes

def test_atomic_write_moves_the_finished_file_into_place(tmp_path):
    seen = []

    def writer(tmp: Path) -> None:
        seen.append(tmp)
        assert tmp.parent == tmp_path / "sub" and tmp.name.startswith(f".out.bin.{os.getpid()}.")
        assert tmp.name.endswith(".png")
        tmp.write_bytes(b"\x00\x01done")

    assert atomic_write(tmp_path / "sub" / "out.bin", writer, suffix=".png") == tmp_path / "sub" / "out.bin"
    assert (tmp_path / "sub" / "out.bin").read_bytes() == b"\x00\x01done"
    assert not seen[0].exists() and sorted(p.name for p in (tmp_path / "sub").iterdir()) == ["out.bin"]


def test_failed_writer_leaves_the_old_file_and_no_temp(tmp_path):
    target = tmp_path / "index.csv"
    target.write_text("old")

    def broken(tmp: Path) -> None:
        tmp.write_text("half")
        raise ValueError("boom")

    with pytest.raises(ValueError, match="boom"):
        atomic_write(target, broken)
    assert target.read_text() == "old" and [p.name for p in tmp_path.iterdir()] == ["index.csv"]


def test_os_error_becomes_one_error_naming_the_target(tmp_path):
    def full(tmp: Path) -> None:
        raise OSError(errno.ENOSPC, "No space left on device", str(tmp))

    with pytest.raises(ForgeryDetError) as e:
        atomic_write(tmp_path / "ck.safetensors", full)
    assert str(e.value) == f"cannot write {tmp_path / 'ck.safetensors'}: no space left on device: free some space or write elsewhere"
    assert list(tmp_path.iterdir()) == []


def test_a_file_where_a_folder_is_needed_is_named(tmp_path, monkeypatch):
    """`extract --out faces` over a folder that held a file `crops` (or `parts`) failed, after the detection, with
    mkdir's bare "Not a directory" / "File exists", naming no culprit; a report's `img` the same."""
    out = tmp_path / "faces"
    out.mkdir()
    (out / "crops").write_text("mine")
    (out / "parts").write_text("mine")
    with pytest.raises(ForgeryDetError) as e:  # below it: Not a directory
        write_bytes_atomic(out / "crops" / "clip-1234abcd" / "f000000_0.png", b"png")
    assert str(e.value) == (f"cannot write {out / 'crops' / 'clip-1234abcd' / 'f000000_0.png'}: {out / 'crops'} is a "
                            f"file where a folder is needed (move it away, or give another path)")
    with pytest.raises(ForgeryDetError) as e:  # it, as the folder to make: File exists
        write_bytes_atomic(out / "parts" / "clip-1234abcd.csv", b"rows")
    assert str(e.value).endswith(f": {out / 'parts'} is a file where a folder is needed (move it away, or give "
                                 f"another path)")
    monkeypatch.chdir(tmp_path)  # a relative path is named relative, as given
    with pytest.raises(OSError) as raw:
        Path("faces/parts").mkdir(exist_ok=True)
    assert os_error_text(raw.value) == ("faces/parts: faces/parts is a file where a folder is needed (move it away, "
                                        "or give another path)")
    assert (out / "crops").read_text() == (out / "parts").read_text() == "mine"


def test_write_bytes_and_text(tmp_path):
    write_bytes_atomic(tmp_path / "a.bin", b"\xff\x00", durable=True)
    assert (tmp_path / "a.bin").read_bytes() == b"\xff\x00"
    write_text_atomic(tmp_path / "t.txt", "vidéo " + os.fsdecode(b"bad\xff.png"))
    assert (tmp_path / "t.txt").read_bytes() == "vidéo bad\\xff.png".encode("utf-8")


def test_remove_leftovers_removes_only_dead_writers_temps(tmp_path):
    target = tmp_path / "last.safetensors"
    dead = tmp_path / f".last.safetensors.{_dead_pid()}.ab12.tmp"
    mine = tmp_path / f".last.safetensors.{os.getpid()}.cd34.tmp"
    odd = tmp_path / ".last.safetensors.notapid.tmp"
    other = tmp_path / f".best.safetensors.{_dead_pid()}.ef56.tmp"
    for p in (dead, mine, odd, other):
        p.write_bytes(b"x")
    assert remove_leftovers(target) == [dead]
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted([mine.name, odd.name, other.name])


def test_a_temp_like_name_with_a_number_no_pid_can_be_is_kept_not_a_traceback(tmp_path):
    """A file `.NAME.<20 digits>.x.tmp` beside a checkpoint (hostile material, a sync tool's copy) ended every durable
    write of NAME (calibrate, train's epoch end, scan's --json) in an OverflowError traceback from os.kill."""
    huge = tmp_path / ".m.bin.99999999999999999999.x.tmp"
    huge.write_bytes(b"x")
    write_bytes_atomic(tmp_path / "m.bin", b"1", durable=True)
    assert huge.exists() and (tmp_path / "m.bin").read_bytes() == b"1"


def test_durable_write_removes_leftovers_plain_write_does_not(tmp_path):
    target = tmp_path / "m.bin"
    dead = tmp_path / f".m.bin.{_dead_pid()}.zz.tmp"
    dead.write_bytes(b"x")
    write_bytes_atomic(target, b"1")
    assert dead.exists()
    write_bytes_atomic(target, b"2", durable=True)
    assert not dead.exists() and target.read_bytes() == b"2"


# ----------------------------------------------------------------------------- check_output

# ----------------------------------------------------------------------------- images

def test_png_round_trip_keeps_rgb_order_and_grey(tmp_path):
    rgb = np.zeros((5, 7, 3), np.uint8)
    rgb[..., 0] = 200  # red
    rgb[2, 3] = (1, 2, 3)
    write_png(tmp_path / "c.png", rgb)
    back = read_image(tmp_path / "c.png")
    assert back.shape == (5, 7, 3) and back.dtype == np.uint8 and np.array_equal(back, rgb)
    grey = np.arange(20, dtype=np.uint8).reshape(4, 5)
    write_png(tmp_path / "g.png", grey)
    g = read_image(tmp_path / "g.png")
    assert np.array_equal(g, np.repeat(grey[:, :, None], 3, axis=2))
    assert cv2.imread(str(tmp_path / "c.png"))[0, 0].tolist() == [0, 0, 200]  # stored BGR, as PNG readers expect
    noisy = np.random.default_rng(0).integers(0, 256, (64, 48, 3), dtype=np.uint8)  # every row filter path
    write_png(tmp_path / "n.png", noisy)
    assert np.array_equal(read_image(tmp_path / "n.png"), noisy)  # the faster encoder settings stay lossless


def test_read_image_with_a_name_that_is_not_utf8(tmp_path):
    raw = os.path.join(os.fsencode(tmp_path), b"bad\xff.png")
    ok, buf = cv2.imencode(".png", np.full((3, 4, 3), 9, np.uint8))
    with open(raw, "wb") as f:
        f.write(buf.tobytes())
    assert read_image(os.fsdecode(raw)).shape == (3, 4, 3)


def test_read_image_tells_the_failures_apart(tmp_path):
    (tmp_path / "empty.png").write_bytes(b"")
    (tmp_path / "junk.png").write_bytes(b"not an image at all")
    cases = {
        tmp_path / "none.png": "no such file",
        tmp_path: "not a file",
        tmp_path / "empty.png": "the file is empty (0 bytes)",
        tmp_path / "junk.png": "cannot decode the image (corrupt or not an image file)",
    }
    for path, why in cases.items():
        with pytest.raises(ForgeryDetError) as e:
            read_image(path)
        assert str(e.value) == f"{path}: {why}"


def test_an_image_over_opencvs_pixel_limit_is_one_line_not_a_cv2_error(tmp_path):
    bomb = tmp_path / "bomb.pgm"
    bomb.write_bytes(b"P5\n50000 50000\n255\n")  # 20 bytes whose header claims 2.5 gigapixels
    with pytest.raises(ForgeryDetError) as e:
        read_image(bomb)
    assert str(e.value) == f"{bomb}: the image is too large to decode (over 2^30 pixels, OpenCV's limit); scale it down first"


def test_a_float_tiff_is_named_for_its_sample_format_not_called_corrupt(tmp_path):
    path = tmp_path / "float.tiff"
    assert cv2.imwrite(str(path), np.random.default_rng(0).random((8, 8), np.float32))
    with pytest.raises(ForgeryDetError, match=r"float\.tiff: cannot decode the image \(its samples are 32-bit floats, "
                                              r"which are not read: save it with 8- or 16-bit samples\)$"):
        read_image(path)


def test_a_link_to_nothing_is_told_from_a_missing_file(tmp_path):
    (tmp_path / "dangling.png").symlink_to(tmp_path / "gone.png")
    (tmp_path / "loop.png").symlink_to(tmp_path / "loop.png")
    (tmp_path / "ok.png").write_bytes(b"x")
    assert broken_link(tmp_path / "dangling.png") and broken_link(tmp_path / "loop.png")
    assert not broken_link(tmp_path / "ok.png") and not broken_link(tmp_path / "none.png")
    for name in ("dangling.png", "loop.png"):
        with pytest.raises(ForgeryDetError, match="a symbolic link to nothing readable"):
            read_image(tmp_path / name)


# ----------------------------------------------------------------------------- CSV, hashes, names

def test_csv_round_trip_and_exact_contents(tmp_path):
    p = tmp_path / "t.csv"
    write_csv_atomic(p, ["path", "label"], [{"path": "a,b.png", "label": 1}, {"path": "c.png", "label": 0}])
    assert p.read_bytes() == b'path,label\n"a,b.png",1\nc.png,0\n'
    assert read_csv_rows(p, ["path"]) == [{"path": "a,b.png", "label": "1"}, {"path": "c.png", "label": "0"}]


def test_csv_keeps_a_row_whose_value_holds_a_carriage_return(tmp_path):
    # a file named "cr\rhere.png" (Linux allows it): its faces.csv row was written unquoted and read back as two
    # rows, one with the source ".../cr" and no status, one with the source "here.png"
    p = tmp_path / "t.csv"
    rows = [{"path": "cr\rhere.png", "label": 1}, {"path": "lf\nhere.png", "label": 0}, {"path": "c.png", "label": 0}]
    write_csv_atomic(p, ["path", "label"], rows)
    assert read_csv_rows(p, ["path"]) == [{"path": "cr\rhere.png", "label": "1"}, {"path": "lf\nhere.png", "label": "0"},
                                          {"path": "c.png", "label": "0"}]
    assert p.read_bytes().endswith(b"c.png,0\n")  # other rows as before


def test_read_csv_rows_reads_a_file_with_a_byte_order_mark_as_without(tmp_path):
    p = tmp_path / "t.csv"
    p.write_bytes(b"\xef\xbb\xbfreal,fake\nr.png,f.png\n")  # Excel's "CSV UTF-8" (pairs --mapping, faces.csv)
    assert read_csv_rows(p, ["real", "fake"]) == [{"real": "r.png", "fake": "f.png"}]


def test_read_csv_rows_names_missing_columns_and_bad_encoding(tmp_path):
    p = tmp_path / "t.csv"
    p.write_text("path,score\nx,1\n")
    with pytest.raises(ForgeryDetError) as e:
        read_csv_rows(p, ["path", "label", "group"])
    assert str(e.value) == f"{p}: missing column(s) label, group; expected columns path, label, group"
    p.write_bytes(b"path,label\n\xff\xfe,1\n")
    with pytest.raises(ForgeryDetError, match="not a UTF-8 text CSV file"):
        read_csv_rows(p, ["path"])


def test_file_sha256(tmp_path):
    (tmp_path / "abc").write_bytes(b"abc")
    assert file_sha256(tmp_path / "abc") == "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
    big = os.urandom(3 * (1 << 20) + 5)  # several read chunks
    (tmp_path / "big").write_bytes(big)
    assert file_sha256(tmp_path / "big") == hashlib.sha256(big).hexdigest()


def test_looks_like_safetensors(tmp_path):
    import torch
    from safetensors.torch import save_file

    save_file({"x": torch.zeros(2)}, str(tmp_path / "a.safetensors"))
    (tmp_path / "cut.safetensors").write_bytes((tmp_path / "a.safetensors").read_bytes()[:12])  # a damaged one
    (tmp_path / "p.csv").write_text("real,fake,group,split\n")
    (tmp_path / "empty").write_bytes(b"")
    assert looks_like_safetensors(tmp_path / "a.safetensors") and looks_like_safetensors(tmp_path / "cut.safetensors")
    assert not any(looks_like_safetensors(tmp_path / n) for n in ("p.csv", "empty", "missing"))


def test_safe_name():
    assert safe_name("Deep Fakes/v2 (c23)") == "Deep_Fakes_v2__c23_"
    assert safe_name("Face2Face-x_1.0") == "Face2Face-x_1.0"
    assert safe_name("") == "method" and safe_name("", "source") == "source"
    assert safe_name("abcdef", limit=3) == "abc"


def test_source_key_is_the_stem_and_the_absolute_paths_hash(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    key = source_key("clips/my clip.mp4")
    digest = hashlib.sha1(os.fsencode(str(tmp_path / "clips" / "my clip.mp4"))).hexdigest()[:8]
    assert key == f"my_clip-{digest}"
    assert source_key(tmp_path / "clips" / "my clip.mp4") == key  # relative and absolute: the same source
    assert source_key(tmp_path / "other" / "my clip.mp4") != key  # same name elsewhere: another source
    assert source_key("/x/" + "a" * 100 + ".mp4").startswith("a" * 60 + "-")
    assert len(source_key("/x/" + "a" * 100 + ".mp4")) == 69
    assert source_key(os.fsdecode(b"/x/\xff.mp4")).startswith("_-")  # folder-safe whatever the bytes


def test_an_output_that_is_a_link_is_written_through_and_a_stream_in_place(tmp_path):
    """`--json link.json` replaces the link's target and keeps the link; `--json /dev/stdout` or a named pipe is
    written into, never replaced by a regular file (as root, replacing /dev/stdout broke the machine's)."""
    target = tmp_path / "real" / "target.json"
    target.parent.mkdir()
    target.write_text('{"old": 1}')
    link = tmp_path / "link.json"
    link.symlink_to(target)
    assert check_output(link, "--json") == link
    write_text_atomic(link, "new")
    assert link.is_symlink() and target.read_text() == "new"
    dangling = tmp_path / "dangling.json"
    dangling.symlink_to(tmp_path / "real" / "later.json")
    write_text_atomic(dangling, "made")
    assert dangling.is_symlink() and (tmp_path / "real" / "later.json").read_text() == "made"
    # a stream: /dev/null and a FIFO with a reader
    assert is_stream("/dev/null") and not is_stream(target) and not is_stream(tmp_path) and not is_stream(tmp_path / "x")
    assert check_output("/dev/null", "--csv") == Path("/dev/null")
    write_text_atomic("/dev/null", "gone")
    atomic_write("/dev/null", lambda p: p.write_bytes(b"via a temp file"), suffix=".png")
    assert Path("/dev/null").is_char_device()
    fifo = tmp_path / "pipe.csv"
    os.mkfifo(fifo)
    got = []
    reader = threading.Thread(target=lambda: got.append(fifo.read_text()))
    reader.start()
    write_text_atomic(fifo, "a,b\n")
    reader.join(10)
    assert got == ["a,b\n"] and stat.S_ISFIFO(os.stat(fifo).st_mode)
    assert not list(tmp_path.glob(".*"))  # no temp file left anywhere


def test_dev_stdout_redirected_to_a_file_is_appended_to_not_replaced(tmp_path):
    """`scan --json /dev/stdout > out.log`: /dev/stdout leads to the user's regular file; a rename replaced it
    (the lines printed before were lost, and those after went to the deleted file)."""
    log = tmp_path / "out.log"
    code = ("import sys; from forgerydet.io import write_text_atomic; print('table', flush=True); "
            "write_text_atomic('/dev/stdout', '{\"json\": 1}\\n'); print('after', flush=True)")
    with open(log, "w") as f:
        r = subprocess.run([sys.executable, "-c", code], stdout=f, stderr=subprocess.PIPE, text=True)
    assert r.returncode == 0, r.stderr
    assert log.read_text() == 'table\n{"json": 1}\nafter\n'
    assert is_stream("/dev/stdout") and is_stream("/proc/self/fd/1") and is_stream("/dev/fd/2")
    assert not is_stream("/dev/shm/model.safetensors")  # a file on /dev/shm is a file: replaced, never appended to
    assert [own_descriptor(p) for p in ("/dev/stdout", "/dev/stderr", "/dev/fd/0", "/proc/self/fd/1", "/dev/fd/7")] \
        == [1, 2, 0, 1, 7]
    assert own_descriptor("/proc/1/fd/1") is None and own_descriptor("/dev/null") is None  # another process's; a device


def test_a_replaced_file_keeps_its_permissions_and_a_read_only_one_is_refused(tmp_path, monkeypatch):
    private = tmp_path / "model.safetensors"
    private.write_bytes(b"old")
    private.chmod(0o600)
    write_bytes_atomic(private, b"new", durable=True)
    assert private.read_bytes() == b"new" and stat.S_IMODE(private.stat().st_mode) == 0o600  # not widened to 0644
    shared = tmp_path / "shared.json"
    shared.write_text("{}")
    shared.chmod(0o664)
    write_text_atomic(shared, "[]")
    assert stat.S_IMODE(shared.stat().st_mode) == 0o664
    # read-only to the user (root may write anything, so the test asks os.access as a user would be answered)
    locked = tmp_path / "locked.safetensors"
    locked.write_bytes(b"keep")
    locked.chmod(0o444)
    real_access = os.access
    monkeypatch.setattr(os, "access", lambda p, m: False if Path(p) == locked and m == os.W_OK else real_access(p, m))
    with pytest.raises(ForgeryDetError, match="locked.safetensors: the file is read-only"):
        check_output(locked, "--checkpoint")
    with pytest.raises(ForgeryDetError, match="cannot write .*locked.safetensors: the file is read-only"):
        write_bytes_atomic(locked, b"gone", durable=True)
    assert locked.read_bytes() == b"keep" and not list(tmp_path.glob(".*"))


def test_read_csv_rows_names_a_row_with_more_fields_than_the_header(tmp_path):
    p = tmp_path / "faces.csv"
    p.write_text("source,crop\nv.mp4,c.png\nw.mp4,d.png,x\n")
    with pytest.raises(ForgeryDetError) as e:
        read_csv_rows(p, ["source", "crop"])
    assert str(e.value) == f"{p}:3: 3 fields where the header has 2 (a comma in a value that is not quoted?)"


def test_file_state_changes_when_a_file_is_written_and_is_none_without_one(tmp_path):
    p = tmp_path / "f.json"
    assert file_state(p) is None
    write_text_atomic(p, "{}")
    before = file_state(p)
    assert before is not None and file_state(p) == before
    write_text_atomic(p, "{}")  # the same bytes written again (another file replaces it): another state
    assert file_state(p) != before
