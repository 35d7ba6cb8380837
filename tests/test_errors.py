"""errors.py: the one exception type, file names as valid text (path_text), one-line names (printable), and
OS errors as one readable line (os_reason, os_error_text)."""

from __future__ import annotations

import errno
import os

import pytest

from forgerydet.errors import ForgeryDetError, current_folder, no_bidi, os_error_text, os_reason, path_text, printable


def test_forgerydet_error_is_a_plain_exception_with_its_message():
    with pytest.raises(Exception, match="^what was wrong: what to do$"):
        raise ForgeryDetError("what was wrong: what to do")
    assert not issubclass(ForgeryDetError, (OSError, ValueError))  # the CLI catches it on its own


@pytest.mark.parametrize("name", ["clip.mp4", "vidéo 1.mp4", "写真.png", ""])
def test_path_text_keeps_valid_unicode(name):
    assert path_text(name) == name


def test_path_text_spells_undecodable_bytes_as_backslash_x_losslessly():
    name = os.fsdecode(b"/data/bad\xff\xfe.png")  # Python's surrogate-escaped str of a non-UTF-8 name
    text = path_text(name)
    assert text == "/data/bad\\xff\\xfe.png"
    text.encode("utf-8")  # writable as UTF-8 now
    back = text.encode("ascii").decode("unicode_escape").encode("latin-1")  # the documented way back
    assert back == b"/data/bad\xff\xfe.png"


def test_path_text_of_a_lone_surrogate_and_of_non_strings():
    assert path_text("a\ud800b") == "a\\ud800b"  # not an escaped byte (those are U+DC80..U+DCFF)
    assert path_text(os.fsdecode(b"x\xff")) == "x\\xff"
    from pathlib import Path

    assert path_text(Path("/a/b.png")) == "/a/b.png"
    assert path_text(3) == "3"


def test_printable_escapes_control_and_line_separators_only():
    assert printable("two\nlines\t.png") == "two\\nlines\\t.png"
    assert printable("a\u2028b\u2029c\x00d\x7f") == "a\\u2028b\\u2029c\\x00d\\x7f"
    assert printable("vidéo 写真 ok.png") == "vidéo 写真 ok.png"
    assert printable(os.fsdecode(b"bad\xff\n.png")) == "bad\\xff\\n.png"  # both helpers at once
    assert "\n" not in printable("x\r\ny")


@pytest.mark.parametrize("code,text", [
    (errno.ENOSPC, "no space left on device: free some space or write elsewhere"),
    (errno.EDQUOT, "disk quota exceeded: free some space or write elsewhere"),
    (errno.EROFS, "read-only file system: choose a writable location"),
    (errno.EACCES, "permission denied"),
    (errno.EPERM, "operation not permitted"),
])
def test_os_reason_gives_advice_for_known_errors(code, text):
    assert os_reason(OSError(code, os.strerror(code))) == text


def test_os_reason_falls_back_to_strerror_message_then_type():
    assert os_reason(OSError(errno.EIO, "Input/output error")) == "Input/output error"
    assert os_reason(OSError("something odd")) == "something odd"
    assert os_reason(OSError()) == "OSError"
    assert os_reason(FileNotFoundError()) == "FileNotFoundError"


def test_os_error_text_names_the_users_path_not_the_temp_file():
    e = OSError(errno.ENOSPC, "No space left on device", "/out/.s.json.123.abc.tmp")
    assert os_error_text(e, "/out/s.json") == "/out/s.json: no space left on device: free some space or write elsewhere"
    assert os_error_text(e) == "/out/.s.json.123.abc.tmp: no space left on device: free some space or write elsewhere"
    assert os_error_text(OSError(errno.EIO, "Input/output error")) == "Input/output error"  # no path known
    assert os_error_text(OSError(errno.EACCES, "x"), os.fsdecode(b"/d/\xff")) == "/d/\\xff: permission denied"


def test_parse_json_says_too_deep_as_a_value_error():
    """json.loads raises RecursionError on 100,000 '[' (a hand-edited or hostile file): no `except ValueError`
    around it caught that, so a checkpoint, reference file, disk bank or split file nested so deep ended in a
    traceback."""
    from forgerydet.errors import parse_json

    assert parse_json('{"a": [1, NaN]}')["a"][0] == 1
    with pytest.raises(ValueError, match="nested too deep"):
        parse_json("[" * 100_000 + "]" * 100_000)
    with pytest.raises(ValueError):
        parse_json("{")


def test_out_of_memory_is_told_by_kind_or_by_the_allocators_words():
    from forgerydet.errors import out_of_memory

    assert out_of_memory(MemoryError())
    assert out_of_memory(ImportError("libtorch_cpu.so: failed to map segment from shared object"))
    assert out_of_memory(RuntimeError("DefaultCPUAllocator: can't allocate memory: you tried to allocate 4010112 bytes"))
    assert out_of_memory(RuntimeError("CUDA out of memory. Tried to allocate 2.00 GiB"))
    assert not out_of_memory(RuntimeError("mat1 and mat2 shapes cannot be multiplied"))
    assert not out_of_memory(ImportError("No module named 'onnx'"))
    assert not out_of_memory(ValueError("out of memory"))  # only the kinds the loader and torch raise


def test_bidirectional_controls_are_shown_as_escapes_so_no_name_reads_reordered():
    """A right-to-left override (U+202E) in a file name reached the table and the report as it is: a file named
    "invoice<RLO>gpj.exe" read as "invoiceexe.jpg". Joiners that scripts and emoji need are kept."""
    spoof = "invoice\u202egpj.exe"
    assert printable(spoof) == no_bidi(spoof) == "invoice\\u202egpj.exe"
    assert printable("isolate\u2066x\u2069") == "isolate\\u2066x\\u2069" and printable("a\u200db\u200cc") == "a\u200db\u200cc"
    assert path_text(spoof) == spoof  # the JSON and CSV keep the exact name a program matches the file by


def test_current_folder(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    assert current_folder() == os.getcwd()
    gone = tmp_path / "gone"
    gone.mkdir()
    monkeypatch.chdir(gone)
    gone.rmdir()
    assert current_folder() is None  # deleted under the process
