"""Atomic file writes: write into a temp file in the target's folder, then rename it into place, so a crash
never leaves a half-written checkpoint, index, report or log. The one implementation every writer uses; it
also checks output locations before work starts (check_output), so a bad --out/--json fails in a second
instead of after the work, and turns OS errors into one ForgeryDetError naming the user's path.

Files get the permissions `open()` would give (0o666 minus the umask), not mkstemp's 0o600. Temp files are
named `.NAME.PID.XXXXXXXX.SUFFIX`; one left behind by a killed process (the process id no longer runs) is
removed by the next durable write of the same file (checkpoints are ~100 MB each)."""

from __future__ import annotations

import glob
import os
import tempfile
from pathlib import Path
from typing import Callable

from .errors import ForgeryDetError, os_error_text, os_reason, path_text


def _umask() -> int:
    try:
        with open("/proc/self/status", encoding="ascii") as f:
            for line in f:
                if line.startswith("Umask:"):
                    return int(line.split()[1], 8)
    except (OSError, ValueError):
        pass
    mask = os.umask(0o022)  # no /proc: read it the only portable way (set and restore)
    os.umask(mask)
    return mask


def _pid_running(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except OSError:  # exists, owned by someone else
        return True
    return True


def remove_leftovers(path: Path, suffix: str = ".tmp") -> list[Path]:
    """Delete temp files of `path` left by writers that were killed (their process is gone); returns them."""
    removed = []
    prefix = f".{path.name}."
    for tmp in glob.glob(os.path.join(glob.escape(str(path.parent)), glob.escape(prefix) + "*" + glob.escape(suffix))):
        pid = os.path.basename(tmp)[len(prefix):].split(".", 1)[0]
        if pid.isdigit() and int(pid) != os.getpid() and not _pid_running(int(pid)):
            try:
                os.unlink(tmp)
                removed.append(Path(tmp))
            except OSError:
                pass
    return removed


def atomic_write(path: str | Path, writer: Callable[[Path], object], *, suffix: str = ".tmp", durable: bool = False) -> Path:
    """Call writer(tmp_path), then move the finished file to `path`; on any failure the temp file is removed
    and `path` is untouched. suffix: the temp file's ending (e.g. '.png' where the writer picks the format
    from it). durable: fsync before the rename (checkpoints), so a power cut cannot leave an empty file; a
    durable write also removes temp files of `path` that killed writers left behind.
    An OSError (read-only file system, full disk, no permission) becomes a ForgeryDetError naming `path`."""
    path = Path(path)
    tmp: str | None = None
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        if durable:
            remove_leftovers(path, suffix)
        fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.{os.getpid()}.", suffix=suffix, dir=path.parent)
        os.close(fd)
        os.chmod(tmp, 0o666 & ~_umask())
        writer(Path(tmp))
        if durable:
            with open(tmp, "rb+") as f:
                os.fsync(f.fileno())
        os.replace(tmp, path)
    except OSError as e:
        _discard(tmp)
        raise ForgeryDetError(f"cannot write {os_error_text(e, path)}") from None
    except BaseException:
        _discard(tmp)
        raise
    return path


def _discard(tmp: str | None) -> None:
    if tmp is not None:
        try:
            os.unlink(tmp)
        except OSError:
            pass


def write_bytes_atomic(path: str | Path, data: bytes, *, durable: bool = False) -> Path:
    return atomic_write(path, lambda tmp: tmp.write_bytes(data), durable=durable)


def write_text_atomic(path: str | Path, text: str) -> Path:
    """UTF-8 text; a file name with bytes that are not UTF-8 is written as `\\xNN` (errors.path_text)."""
    return write_bytes_atomic(path, path_text(text).encode("utf-8"))


def check_output(path: str | Path, option: str, *, folder: bool = False) -> Path:
    """Refuse now, before any work, an output the writers could not create later: a folder where a file is
    wanted (or the reverse), a parent that is a file, a location that is read-only or not writable.

    Probes by creating (and removing) an empty temp file in the nearest existing folder; nothing else is
    created. A full disk cannot be foreseen: atomic_write reports it when it happens."""
    p = Path(path)
    label = f"{option} {path_text(p)}"
    if folder and p.exists() and not p.is_dir():
        raise ForgeryDetError(f"{label}: an existing file, not a folder: give a folder path")
    if not folder and p.is_dir():
        raise ForgeryDetError(f"{label}: a folder, not a file: give a file path inside it")
    d = p if folder else p.parent
    d = Path(os.path.abspath(d))
    while not d.exists() and d.parent != d:
        d = d.parent
    if not d.is_dir():
        raise ForgeryDetError(f"{label}: {path_text(d)} is a file, so nothing can be written below it")
    try:
        fd, probe = tempfile.mkstemp(prefix=".forgerydet-probe.", dir=d)
        os.close(fd)
        os.unlink(probe)
    except OSError as e:
        raise ForgeryDetError(f"{label}: cannot write there ({os_reason(e)})") from None
    return p
