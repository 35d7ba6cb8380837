"""Files: atomic writes, reading images, PNG and CSV, and folder-safe names (the only copies of each).

Atomic writes go to a temp file `.NAME.PID.RANDOM.SUFFIX` beside the target, then are renamed into place, so a crash
never leaves a half-written file; a durable write removes temp files of killed writers (checks on output locations
before work starts: paths.py), and OS errors become one ForgeryDetError naming the user's path. Images are read as
bytes and decoded by OpenCV (read_image), so any file name works and an unreadable file is told from a corrupt one."""

from __future__ import annotations

import contextlib
import csv
import glob
import hashlib
import io
import os
import re
import stat
import sys
import tempfile
from pathlib import Path
from typing import Callable, Iterable, Iterator, Sequence

import cv2
import numpy as np

from forgerydet.errors import ForgeryDetError, WriteError, os_error_text, os_reason, path_text
from forgerydet.runtime import quiet_native_stderr


def _new_temp(directory: Path, prefix: str, suffix: str) -> tuple[int, str]:
    """Create a new empty file prefix<random>suffix in `directory`, open for writing: (fd, path); mode 0o666 less the
    umask, as any new file (mkstemp's 0o600 would need a chmod and a umask read per write: pairs writes thousands)."""
    for _ in range(100):
        tmp = os.path.join(directory, f"{prefix}{os.urandom(5).hex()}{suffix}")
        try:
            return os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_BINARY", 0), 0o666), tmp
        except FileExistsError:
            continue
    raise FileExistsError(f"no free temp file name in {directory}")


def pid_running(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except OSError:  # exists, owned by someone else
        pass
    return True


def remove_leftovers(path: Path, suffix: str = ".tmp") -> list[Path]:
    """Delete temp files of `path` left by writers that were killed (their process is gone); returns them."""
    removed = []
    prefix = f".{path.name}."
    for tmp in glob.glob(os.path.join(glob.escape(str(path.parent)), glob.escape(prefix) + "*" + glob.escape(suffix))):
        pid = os.path.basename(tmp)[len(prefix):].split(".", 1)[0]
        if pid.isdigit() and len(pid) <= 9 and int(pid) != os.getpid() and not pid_running(int(pid)):  # (a pid_t)
            with contextlib.suppress(OSError):
                os.unlink(tmp)
                removed.append(Path(tmp))
    return removed


def atomic_write(path: str | Path, writer: Callable[[Path], object] | bytes, *, suffix: str = ".tmp",
                 durable: bool = False, named: str | Path | None = None) -> Path:
    """Call writer(tmp_path) (or write the bytes `writer` into the temp file), then move the finished file to
    `path`; on any failure the temp file is removed and `path` is untouched. suffix: the temp file's ending
    (e.g. '.png' where the writer picks the format from it). durable: fsync before the rename (checkpoints), so
    a power cut cannot leave an empty file; a durable write also removes temp files of `path` that killed
    writers left behind. A new file gets the umask's permissions, a replaced one keeps its own. An OSError (full
    disk, no permission) becomes a ForgeryDetError naming `path`, or `named` where `path` is a caller's own temp
    file (its final name, the user's). A symbolic link is written through (its target
    replaced); a device, a named pipe or /dev/stdout is written in place (`is_stream`)."""
    path = Path(path)
    if is_stream(path):
        return _write_stream(path, writer, suffix)
    if path.is_symlink():
        path = Path(os.path.realpath(path))
    mode = _kept_mode(path)
    tmp: str | None = None
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        if durable:
            remove_leftovers(path, suffix)
        fd, tmp = _new_temp(path.parent, f".{path.name}.{os.getpid()}.", suffix)
        if isinstance(writer, bytes):
            with open(fd, "wb") as f:
                f.write(writer)
                if durable:
                    f.flush()
                    os.fsync(f.fileno())
        else:
            os.close(fd)
            writer(Path(tmp))
            if durable:
                with open(tmp, "rb+") as f:
                    os.fsync(f.fileno())
        if mode is not None:  # a replaced file keeps its permissions (a private model stays private)
            os.chmod(tmp, mode)
        os.replace(tmp, path)
    except OSError as e:
        _discard(tmp)
        raise WriteError(f"cannot write {os_error_text(e, named or path)}") from None
    except BaseException:
        _discard(tmp)
        raise
    return path


def _kept_mode(path: Path) -> int | None:
    """The permission bits of the regular file `path` replaces (None when there is none); a file its owner made
    read-only is refused, as `check_output` refuses it before any work (a rename would replace it regardless)."""
    if not os.path.isfile(path):
        return None
    if not os.access(path, os.W_OK):
        raise ForgeryDetError(f"cannot write {path_text(path)}: the file is read-only (make it writable, or give "
                              f"another path)")
    return stat.S_IMODE(os.stat(path).st_mode)


def is_stream(path: str | Path) -> bool:
    """Whether `path` is written in place, never renamed over: it is there and is no regular file or folder (a terminal,
    a named pipe), or it names an open descriptor (/dev/stdout, /dev/fd/N: maybe a file, `--json /dev/stdout > log`)."""
    if re.fullmatch(r"/dev/(stdout|stderr|fd/\d+)|/proc/[^/]+/fd/\d+", _absolute(path)):
        return True
    try:
        mode = os.stat(path).st_mode
    except OSError:
        return False
    return not (stat.S_ISREG(mode) or stat.S_ISDIR(mode))


def own_descriptor(path: str | Path) -> int | None:
    """The descriptor of this process that `path` names (/dev/stdout 1, /dev/stderr 2, /dev/fd/N, /proc/self/fd/N)."""
    m = re.fullmatch(r"/dev/(stdout|stderr)|/dev/fd/(\d+)|/proc/self/fd/(\d+)", _absolute(path))
    return None if m is None else {"stdout": 1, "stderr": 2}.get(m[1] or "") or int(m[2] or m[3])


def _absolute(path: str | Path) -> str:
    """os.path.abspath, or the path as given where the current folder was deleted (a relative path names no
    device then; opening it says why)."""
    try:
        return os.path.abspath(path)
    except OSError:
        return os.fspath(path)


def _write_stream(path: Path, writer: Callable[[Path], object] | bytes, suffix: str) -> Path:
    """atomic_write's way for a stream: the bytes (a callable writer's through a temp file) in one go; this
    process's own descriptor (/dev/stdout: 1) through that descriptor, so they land where its next line will."""
    data, tmp = writer, None
    own = own_descriptor(path)
    try:
        if not isinstance(data, bytes):
            fd, tmp = tempfile.mkstemp(prefix=".forgerydet.", suffix=suffix)
            os.close(fd)
            writer(Path(tmp))
            data = Path(tmp).read_bytes()
        if own is not None:
            for stream in (sys.stdout, sys.stderr):  # what Python buffered for it goes first
                with contextlib.suppress(Exception):
                    stream.flush()
            view = memoryview(data)
            while view:
                view = view[os.write(own, view):]
            return path
        with open(path, "wb") as f:
            f.write(data)
    except OSError as e:
        raise WriteError(f"cannot write {os_error_text(e, path)}") from None
    finally:
        _discard(tmp)
    return path


def _discard(tmp: str | None) -> None:
    if tmp is not None:
        with contextlib.suppress(OSError):
            os.unlink(tmp)


def close_all(files: Iterable[io.IOBase], *, quiet: bool = False) -> None:
    """Close every file, each even where closing another failed (a full disk fails the flush of its last writes),
    then raise the first OSError, unless `quiet` (a writer that failed already, cleaning up)."""
    failed = None
    for f in files:
        try:
            f.close()
        except OSError as e:
            failed = failed or e
    if failed is not None and not quiet:
        raise failed


def write_bytes_atomic(path: str | Path, data: bytes, *, durable: bool = False,
                       named: str | Path | None = None) -> Path:
    return atomic_write(path, bytes(data), durable=durable, named=named)


def write_text_atomic(path: str | Path, text: str, *, durable: bool = False) -> Path:
    """UTF-8 text; a file name with bytes that are not UTF-8 is written as `\\xNN` (errors.path_text)."""
    return write_bytes_atomic(path, path_text(text).encode("utf-8"), durable=durable)


def read_image(path: str | Path) -> np.ndarray:
    """An image file as RGB uint8 (H,W,3), EXIF orientation applied. Read as bytes by Python, then
    decoded by OpenCV, so any file name works and an unreadable file is told apart from a corrupt one."""
    path = Path(path)
    check_readable_file(path)
    try:
        data = np.fromfile(path, np.uint8)
    except OSError as e:
        raise ForgeryDetError(f"{path}: cannot read the file ({os_reason(e)})") from None
    try:
        with quiet_native_stderr():  # libpng/libjpeg print their own warnings; our one line says it better
            bgr = cv2.imdecode(data, cv2.IMREAD_COLOR) if data.size else None
    except cv2.error as e:  # OpenCV refuses, rather than decodes, an image over its pixel limit
        if "CV_IO_MAX_IMAGE_PIXELS" in str(e):
            raise ForgeryDetError(f"{path}: the image is too large to decode (over 2^30 pixels, OpenCV's limit); "
                                  f"scale it down first") from None
        raise ForgeryDetError(f"{path}: cannot decode the image ({cv2_reason(e)})") from None
    if bgr is None or bgr.size == 0:
        raise ForgeryDetError(f"{path}: cannot decode the image ({undecodable_reason(data)})")
    return cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB)


def cv2_reason(e: Exception) -> str:
    """OpenCV's own words from a cv2.error, without its source file and line: "(-215:Assertion failed) ..."."""
    text = " ".join(str(e).split())
    return text[text.find("error: ") + 7:] if "error: " in text else text


def undecodable_reason(data: np.ndarray) -> str:
    """Why OpenCV decoded no colour image from `data`: a sample format it reads but cannot convert to 8-bit
    colour (a float TIFF), else a corrupt or unknown file."""
    try:
        with quiet_native_stderr():
            raw = cv2.imdecode(data, cv2.IMREAD_UNCHANGED | cv2.IMREAD_ANYDEPTH)
    except cv2.error:
        raw = None
    if raw is not None and raw.dtype.kind == "f":
        return f"its samples are {raw.dtype.itemsize * 8}-bit floats, which are not read: save it with 8- or 16-bit samples"
    return "corrupt or not an image file"


def file_state(path: str | Path) -> tuple[int, int, int] | None:
    """A file's inode, size and modification time (None when there is none): compared later, whether anything has
    written it since."""
    try:
        st = os.stat(path)
    except OSError:
        return None
    return st.st_ino, st.st_size, st.st_mtime_ns


def broken_link(p: Path) -> bool:
    """A symbolic link that leads to no file (dangling, or a loop: exists() follows the link)."""
    return p.is_symlink() and not p.exists()


def apple_double(p: Path) -> bool:
    """A macOS AppleDouble file (`._photo.jpg`, the metadata a Mac leaves on USB sticks and shares), not media."""
    if not (p.name.startswith("._") and p.is_file()):  # is_file: never open a named pipe
        return False
    with contextlib.suppress(OSError), p.open("rb") as f:
        return f.read(4) == b"\x00\x05\x16\x07"
    return False


def check_readable_file(path: Path) -> None:
    if broken_link(path):
        raise ForgeryDetError(f"{path}: a symbolic link to nothing readable (dangling, or a loop)")
    if not path.exists():
        raise ForgeryDetError(f"{path}: no such file")
    if not path.is_file():
        raise ForgeryDetError(f"{path}: not a file")
    if path.stat().st_size == 0:
        raise ForgeryDetError(f"{path}: the file is empty (0 bytes)")
    if not os.access(path, os.R_OK):
        raise ForgeryDetError(f"{path}: cannot read the file (permission denied)")


def source_key(path: str | Path) -> str:
    """A folder-safe, unique name for a source: stem + 8 hex digits of its absolute path."""
    p = Path(os.path.abspath(path))
    digest = hashlib.sha1(os.fsencode(p)).hexdigest()[:8]  # the name's bytes: any file name, same key as before
    stem = safe_name(p.stem, "source", 60)
    return f"{stem}-{digest}"


def write_png(path: Path, rgb: np.ndarray) -> None:
    """Write an RGB (H,W,3) or grey (H,W) uint8 image as PNG, atomically (temp file + rename). Encoded in
    memory and written by Python, so OpenCV never sees the (possibly non-UTF-8) folder name."""
    img = cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR) if rgb.ndim == 3 else rgb
    ok, buf = cv2.imencode(".png", img)
    if not ok:  # pragma: no cover - OpenCV encodes any uint8 image
        raise ForgeryDetError(f"cannot encode {path.name} as PNG")
    write_bytes_atomic(path, buf.tobytes())


def write_csv_atomic(path: Path, columns: Sequence[str], rows: Iterable[dict]) -> None:
    """Lines end in \n; a row with a carriage return in a value (a file name may hold one) is quoted whole, since
    the writer quotes only the line ending's characters and a reader ends a line at a bare \r too."""
    buf = io.StringIO()
    w = csv.DictWriter(buf, fieldnames=list(columns), lineterminator="\n")
    quoted = csv.DictWriter(buf, fieldnames=list(columns), lineterminator="\n", quoting=csv.QUOTE_ALL)
    w.writeheader()
    for row in rows:
        (quoted if any("\r" in str(v) for v in row.values()) else w).writerow(row)
    write_text_atomic(path, buf.getvalue())


def read_csv_rows(path: Path, required: Sequence[str]) -> list[dict[str, str]]:
    """Rows of a CSV as dicts; ForgeryDetError naming the missing columns if any are absent."""
    try:
        with open(path, newline="", encoding="utf-8-sig") as fh:
            reader = csv.DictReader(fh)
            missing = [c for c in required if c not in (reader.fieldnames or [])]
            if missing:
                raise ForgeryDetError(
                    f"{path}: missing column(s) {', '.join(missing)}; expected columns {', '.join(required)}"
                )
            rows = list(reader)
    except UnicodeDecodeError:
        raise ForgeryDetError(f"{path}: not a UTF-8 text CSV file") from None
    for i, row in enumerate(rows, start=2):
        check_fields(path, i, row, reader.fieldnames or [])
    return rows


def check_fields(path: Path, line: int, row: dict, header: Sequence[str]) -> None:
    """A csv.DictReader row with more fields than the header (kept under the key None) is one line naming it, not
    a traceback further on: an unquoted comma in a name ('Smith, John') does it."""
    if None in row:
        raise ForgeryDetError(f"{path}:{line}: {len(header) + len(row[None])} fields where the header has {len(header)} "
                              f"(a comma in a value that is not quoted?)")


def looks_like_safetensors(path: Path) -> bool:
    """Whether a file starts as a safetensors file does: an 8-byte header length, then its JSON header's '{' (tells
    a damaged checkpoint from a photo or a CSV given by mistake)."""
    try:
        with open(path, "rb") as f:
            return f.read(9)[8:9] == b"{"
    except OSError:
        return False


def file_sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def safe_name(name: str, default: str = "method", limit: int | None = None) -> str:
    """`name` as a folder-safe file name: characters other than letters, digits and -_. become '_'."""
    return "".join(c if c.isalnum() or c in "-_." else "_" for c in name)[:limit] or default