"""Output paths checked before any work: a location the writers could not create later (check_output), a
checkpoint output onto a file that is not one, an output that is one of the command's inputs (check_not_input,
same_file). Each refusal is one ForgeryDetError naming the user's path; nothing is created."""

from __future__ import annotations

import contextlib
import errno
import fnmatch
import glob
import os
import re
import tempfile
from pathlib import Path
from typing import Iterable, Iterator

from forgerydet.errors import ForgeryDetError, file_needed, folder_needed, os_reason, parse_json, path_text
from forgerydet.io import is_stream, looks_like_safetensors, pid_running, remove_leftovers


@contextlib.contextmanager
def utf8_name(path: str | Path) -> Iterator[str]:
    """A name of `path` that a library taking only UTF-8 text opens (safetensors refused `ck\\xff.safetensors`: "not
    valid UTF-8", told as a corrupted checkpoint): the path itself, or, for a name holding bytes that are not UTF-8,
    /dev/fd/N of the file opened here, until the block ends."""
    name = os.fspath(path)
    try:
        name.encode("utf-8")
    except UnicodeEncodeError:
        fd = os.open(name, os.O_RDONLY)
        try:
            yield f"/dev/fd/{fd}"
        finally:
            os.close(fd)
        return
    yield name


def check_output(path: str | Path, option: str, *, folder: bool = False, inside: Iterable[str] = (),
                 writes: Iterable[str] = ()) -> Path:
    """Refuse now, before any work, an output the writers could not create later: a folder where a file is
    wanted (or the reverse), a parent that is a file, a location that is read-only or not writable; with
    `inside`, also a file named like one of the folders the command makes in the output folder (OUT/crops), and
    with `writes` a folder named like one of the files it writes there (OUT/last.safetensors).

    Probes by creating (and removing) an empty temp file in the nearest existing folder; nothing else is
    created. A full disk cannot be foreseen: atomic_write reports it when it happens."""
    p = Path(path)
    label = f"{option} {path_text(p)}"
    if not folder and is_stream(p):  # /dev/stdout, a named pipe: written in place, if it can be opened for writing
        if not os.access(p, os.W_OK):
            raise ForgeryDetError(f"{label}: cannot write there (no permission)")
        return p
    blocker = folder and next((q for q in (p, *(p / n for n in inside)) if os.path.lexists(q) and not q.is_dir()), None)
    if blocker:
        raise ForgeryDetError(f"{label}: {folder_needed(blocker)}")
    if folder and (blocker := next((p / n for n in writes if (p / n).is_dir()), None)):
        raise ForgeryDetError(f"{label}: {file_needed(blocker)}")
    if not folder and p.is_dir():
        raise ForgeryDetError(f"{label}: a folder, not a file: give a file path inside it")
    if not folder and p.is_file() and not os.access(p, os.W_OK):
        raise ForgeryDetError(f"{label}: the file is read-only (make it writable, or give another path)")
    d = p if folder else (Path(os.path.realpath(p)).parent if p.is_symlink() else p.parent)  # a link: its target's
    d = Path(os.path.abspath(d))
    while not d.exists() and d.parent != d:
        d = d.parent
    if not d.is_dir():  # named relative as the user's path is, as a write's error names it
        raise ForgeryDetError(f"{label}: {folder_needed(d if p.is_absolute() else os.path.relpath(d))}")
    try:
        fd, probe = tempfile.mkstemp(prefix=".forgerydet-probe.", dir=d)
        os.close(fd)
        os.unlink(probe)
    except OSError as e:
        raise ForgeryDetError(f"{label}: cannot write there ({os_reason(e)})") from None
    return p


CHECKPOINT_FORMAT = "forgerydet-checkpoint"  # model/meta.FORMAT (paths.py is a base module and cannot import it)


def check_checkpoint_out(path: str | Path, option: str) -> None:
    """Refuse now a checkpoint output onto an existing file that is not a forgerydet checkpoint (a list given by
    mistake, an enrolled people's reference file, exported weights)."""
    p = Path(path)
    if not p.is_file():
        return
    kind = safetensors_format(p) if looks_like_safetensors(p) else None
    if kind != CHECKPOINT_FORMAT:
        what = "not a safetensors file" if kind is None else f"a safetensors file of format {kind or 'unnamed'}"
        raise ForgeryDetError(f"{option} {path_text(p)} is an existing file that is not a forgerydet checkpoint "
                              f"({what}): writing the checkpoint there would replace it; give a new path")


def safetensors_metadata(path: str | Path) -> dict | None:
    """The `__metadata__` of a safetensors file's header ({} when it has none), read without torch; None when the
    header cannot be read."""
    try:
        with open(path, "rb") as f:
            n = int.from_bytes(f.read(8), "little")
            head = parse_json(f.read(n)) if 2 <= n <= 1 << 28 else None
    except (OSError, ValueError):
        return None
    if not isinstance(head, dict):
        return None
    meta = head.get("__metadata__") or {}
    return meta if isinstance(meta, dict) else None


def safetensors_format(path: Path) -> str | None:
    """The `format` its header's metadata names ('' when none; a forgerydet reference file says
    'forgerydet-references'), read without torch; None when the header cannot be read."""
    meta = safetensors_metadata(path)
    return None if meta is None else str(meta.get("format") or "")


def same_file(a: str | Path, b: str | Path) -> bool:
    """Whether two paths name one file (links and hard links included; a path that does not exist yet is compared
    by its resolved name)."""
    try:
        if os.path.exists(a) and os.path.exists(b):
            return os.path.samefile(a, b)
        return os.path.realpath(a) == os.path.realpath(b)
    except (OSError, ValueError):
        return False


def source_given(stored: str, given: str | Path) -> bool:
    """Whether an enrolled file (its absolute path as recorded) is what a path given to name it means, as SOURCES were
    expanded when enrolling: the same file (links resolved either side), a file inside a given folder, or one a
    given glob pattern matches; by path alone, so a folder or file since moved away still names what it held."""
    given = str(given)
    forms, mine = {os.path.abspath(given), os.path.realpath(given)}, {stored, os.path.realpath(stored)}
    return bool(forms & mine) or any(m.startswith(os.path.join(f, "")) for m in mine for f in forms) or (
        glob.has_magic(given) and not os.path.exists(given) and any(fnmatch.fnmatchcase(m, f) for m in mine for f in forms))


def open_lock_file(lock: Path, *, shared: bool) -> int | None:
    """A descriptor of a lock file, created where missing; for a reader (`shared`) in a folder it may not write (a
    read-only share, another user's folder), an existing lock file opened read-only, else None: such a reader goes
    on unlocked rather than failing on a file it would only have read."""
    try:
        return os.open(lock, os.O_RDWR | os.O_CREAT, 0o644)
    except OSError as e:
        if not shared or e.errno not in (errno.EROFS, errno.EACCES, errno.EPERM):
            raise
    try:
        return os.open(lock, os.O_RDONLY)  # flock takes a shared lock on a read-only descriptor
    except OSError:
        return None


def check_not_input(path: str | Path, option: str, inputs: Iterable[tuple[str, str | Path | None]]) -> None:
    """Refuse now an output file that is one of the command's inputs (`inputs`: (what it is, path) pairs, None
    skipped): writing it would replace that input, the data loss the atomic writes exist to prevent."""
    for what, src in inputs:
        if src is not None and same_file(path, src):
            raise ForgeryDetError(f"{option} {path_text(Path(path))} is {what}: writing there would replace it; "
                                  f"give another path")


TEMP_NAME = re.compile(r"\..+\.(\d{1,9})\.[0-9a-f]{10}\.[A-Za-z0-9]+", re.S)  # io.atomic_write's .NAME.PID.RANDOM.SUFFIX


def sweep_leftovers(folder: str | Path, *below: str) -> list[Path]:
    """Remove the temp files of atomic writes (io.atomic_write's `.NAME.PID.RANDOM.SUFFIX`) that a writer killed
    midway (`kill -9`, the OOM killer, a power cut) left in `folder` and in its subfolders that match a glob pattern
    of `below` ("parts", "crops/*"): those whose process is gone, never this process's or a running one's. A checkpoint's
    stayed until the next write of that checkpoint, the others (a face crop, metrics.jsonl, roc.png) for good. Returns
    what it removed; a folder that is missing or cannot be listed gives nothing."""
    folder = Path(folder)
    removed: list[Path] = []
    for d in [folder, *(sub for pattern in below for sub in sorted(folder.glob(pattern)))]:
        try:
            entries = list(os.scandir(d))
        except OSError:
            continue
        for entry in entries:
            m = TEMP_NAME.fullmatch(entry.name)
            if m is None or int(m[1]) == os.getpid() or pid_running(int(m[1])):
                continue
            with contextlib.suppress(OSError):
                if entry.is_file(follow_symlinks=False):
                    os.unlink(entry.path)
                    removed.append(Path(entry.path))
    return removed


def sweep_beside(path: str | Path) -> list[Path]:
    """Remove the temp files of atomic writes of the file `path` (through a link: of its target) that a killed writer
    left beside it (io.remove_leftovers: a killed scan's saves of its --json and --csv), for the command to say so as
    it does for its output folders; the first durable write of `path` removed them in silence."""
    path = Path(path)
    return remove_leftovers(Path(os.path.realpath(path)) if path.is_symlink() else path)


def leftovers_text(removed: list[Path], folder: str | Path) -> str:
    """The one notice line that says what sweep_leftovers removed."""
    return (f"removed {len(removed)} temp file(s) of unfinished writes that a killed earlier run left in "
            f"{path_text(folder)} (e.g. {path_text(removed[0].name)})")


@contextlib.contextmanager
def folder_held(out_dir: str | Path, option: str, what: str, *below: str) -> Iterator[list[Path]]:
    """An output folder held by this run while it writes (an exclusive flock on the folder itself: no file is
    added): a second run into it at once (an evaluation's --out, a scan's --report: `what` names it) is refused with
    one line instead of replacing what this one writes in silence. The folder (and its parents) are made if need be,
    and removed again if still empty at the end. Where the file system has no locks (some network mounts) or the
    platform none, it is not held. Held, the temp files that killed writers left in it (and in its subfolders
    matching `below`) are removed (sweep_leftovers) and yielded, for the command to say so."""
    out = check_output(out_dir, option, folder=True)  # a file there is said as such, not as mkdir's "File exists"
    made = [d for d in (out, *out.parents) if not d.exists()]  # the folders this makes, deepest first
    out.mkdir(parents=True, exist_ok=True)
    fd = None
    try:
        import fcntl

        fd = os.open(out, os.O_RDONLY)
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        os.close(fd)
        raise ForgeryDetError(f"{option} {path_text(out)}: another {what} is writing there now: wait for it to end, or "
                              f"give another {option}") from None
    except (ImportError, OSError):
        if fd is not None:
            os.close(fd)
        fd = None
    try:
        yield sweep_leftovers(out, *below) if fd is not None else []
    finally:
        if fd is not None:
            os.close(fd)
        for d in made:  # only while empty: nothing was written
            try:
                d.rmdir()
            except OSError:
                break
