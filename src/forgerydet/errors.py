"""The one exception type the library raises for problems a user can cause or fix, the text helpers
that keep file names and OS errors readable in messages and outputs, and parse_json, whose every failure on
malformed JSON is a ValueError."""

from __future__ import annotations

import errno
import json
import os
import unicodedata
from typing import Any


class ForgeryDetError(Exception):
    """A user-facing error: its message says what was wrong and what to do.

    The CLI prints it as one red line and exits with code 1; library code never prints.
    """


class WriteError(ForgeryDetError):
    """An output that could not be written (a full disk, a read-only place): the file it was to replace, if any, is
    as it was (writes are temp + rename), which a caller may say (train: the last finished epoch is still there)."""


def path_text(s: object) -> str:
    """A file name (or a message holding one) as valid Unicode text, for JSON, CSV, HTML and messages.

    On Linux a file name is bytes; Python keeps bytes that are not UTF-8 as surrogate escapes, which cannot
    be written as UTF-8 (and crash OpenCV). Each such byte becomes the four characters `\\xNN` (bad\\xff.png),
    the documented spelling. It is not lossless: a valid name that holds those four characters itself is written
    the same way (scan's records also carry each file's sha256, which tells the two apart). Names that are valid
    UTF-8 pass unchanged."""
    s = str(s)
    try:
        s.encode("utf-8")
        return s
    except UnicodeEncodeError:
        pass
    try:
        return s.encode("utf-8", "surrogateescape").decode("utf-8", "backslashreplace")
    except UnicodeEncodeError:  # a lone surrogate that is not an escaped byte
        return s.encode("utf-8", "backslashreplace").decode("utf-8")


def json_safe(obj: Any) -> Any:
    """obj (dicts, lists, tuples, scalars) with every string path_text'ed, for a JSON output: a file name taken from
    elsewhere than the command's paths (an enrolled face's source, a checkpoint's or reference file's path) kept
    its surrogate escapes, which json.dumps writes as "\\udcff", a lone surrogate that strict parsers refuse."""
    if isinstance(obj, str):
        return path_text(obj)
    if isinstance(obj, dict):
        return {json_safe(k): json_safe(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [json_safe(v) for v in obj]
    return obj


# Bidirectional controls reorder the text around them on screen: a file named "invoice<U+202E>gpj.exe" reads as
# "invoiceexe.jpg". Shown to a person (terminal, report), they are written as escapes (\u202e).
BIDI_CONTROLS = frozenset("\u061c\u200e\u200f\u202a\u202b\u202c\u202d\u202e\u2066\u2067\u2068\u2069")


def no_bidi(s: str) -> str:
    """`s` with every bidirectional control written as its \\uXXXX escape (for what a person reads)."""
    return "".join(f"\\u{ord(c):04x}" if c in BIDI_CONTROLS else c for c in s)


def printable(s: object) -> str:
    """path_text(s) with control characters (a newline or tab in a file name) and bidirectional controls written as
    escapes, so that a name stays on its table row, an error stays one line, and no name shows reordered."""
    return "".join(c.encode("unicode_escape").decode("ascii")
                   if unicodedata.category(c) in ("Cc", "Zl", "Zp") or c in BIDI_CONTROLS else c for c in path_text(s))


def value_text(value: object, limit: int = 80) -> str:
    """A value a caller passed, for a one-line message: its repr where that is one short line, else its type (an
    image array's or a long list's repr is hundreds of lines)."""
    text = repr(value)
    return text if len(text) <= limit and "\n" not in text else f"<{type(value).__name__}>"


def option_error(option: str, value: object, rule: str) -> ForgeryDetError:
    """The one wording of a bad option value, whichever command or config finds it: "--frames 0: must be >= 1",
    "--tta 'foo': use one of none, flip" (the option, the value as typed, then what is wrong or what to give). A
    checkpoint's stored settings are said otherwise: "PATH: the stored model settings ...", in the fields' names."""
    shown = path_text(value) if isinstance(value, os.PathLike) else value_text(value)
    return ForgeryDetError(f"{option} {shown}: {rule}")


def parse_json(text: str | bytes) -> Any:
    """json.loads, where a document nested too deep for Python's parser (a hand-edited or hostile file of 100,000
    '[') is a ValueError like any other malformed JSON, not a RecursionError that a caller's `except ValueError`
    lets through as a traceback."""
    try:
        return json.loads(text)
    except RecursionError:
        raise ValueError("JSON nested too deep") from None


_OS_ADVICE = {
    errno.ENOSPC: "no space left on device: free some space or write elsewhere",
    errno.EDQUOT: "disk quota exceeded: free some space or write elsewhere",
    errno.EROFS: "read-only file system: choose a writable location",
    errno.EACCES: "permission denied",
    errno.EPERM: "operation not permitted",
}


def os_reason(e: OSError) -> str:
    """What went wrong, and what to do where that is clear (full disk, read-only file system)."""
    return _OS_ADVICE.get(e.errno or -1) or e.strerror or str(e) or type(e).__name__


def os_error_text(e: OSError, path: object | None = None) -> str:
    """One line for an OSError: the user's path (not a temp file's), what went wrong, what to do."""
    what = os_reason(e)
    where = path if path is not None else e.filename
    if e.errno == errno.ENOENT and (where is None or not os.path.isabs(os.fsdecode(where))) and current_folder() is None:
        what += (" (the current folder was deleted while the command was in it, so relative paths name nothing: "
                 "cd into a folder that exists, or give absolute paths)")
    blocker = _file_in_the_way(where) if e.errno in (errno.EEXIST, errno.ENOTDIR) else None
    if blocker is not None:  # mkdir's bare "File exists" / "Not a directory" named no culprit
        what = folder_needed(blocker)
    if e.errno == errno.EISDIR and where is not None and os.path.isdir(os.fsdecode(where)):  # "Is a directory"
        what = file_needed(where)
    return f"{path_text(where)}: {what}" if where is not None else what


def folder_needed(blocker: object) -> str:
    """The one wording of a file standing where a command must make or write into a folder, whether found before
    the work (paths.check_output) or by a write (os_error_text)."""
    return f"{path_text(blocker)} is a file where a folder is needed (move it away, or give another path)"


def file_needed(blocker: object) -> str:
    """The reverse: a folder standing where a command writes a file (a run's last.safetensors, OUT/pairs.csv)."""
    return f"{path_text(blocker)} is a folder where a file is needed (move it away, or give another path)"


def _file_in_the_way(where: object) -> str | None:
    """The deepest existing one of `where` and its parents when it is not a folder (a file named like the folder a
    command writes into: OUT/crops, a report's img), relative as `where` is; None when it is a folder, or unknown."""
    if not isinstance(where, (str, bytes, os.PathLike)):
        return None
    given = os.fsdecode(where)
    try:
        path = os.path.abspath(given)
        while not os.path.lexists(path) and os.path.dirname(path) != path:
            path = os.path.dirname(path)
        if not os.path.lexists(path) or os.path.isdir(path):
            return None
        return path if os.path.isabs(given) else os.path.relpath(path)
    except (OSError, ValueError):  # the current folder deleted: nothing to tell
        return None


def current_folder() -> str | None:
    """The process's working folder, as relative paths written now are from; None when it was deleted under it
    (here, the base module, for the hint above; io and runtime use it too)."""
    try:
        return os.getcwd()
    except OSError:
        return None


def out_of_memory(e: BaseException) -> bool:
    """Whether an exception says memory could not be had: MemoryError, or the loader's "failed to map segment"
    (ImportError) and torch's allocator ("DefaultCPUAllocator: can't allocate memory", CUDA "out of memory"), which
    raise RuntimeError and name it only in their text."""
    return isinstance(e, MemoryError) or (isinstance(e, (ImportError, RuntimeError)) and any(
        m in str(e).lower() for m in ("failed to map segment", "allocate memory", "out of memory")))
