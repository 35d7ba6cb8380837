"""What a disk bank's files (model/diskbank.py) held when it was built, so that opening it reads only what may have
changed since, and `forgerydet info DIR --verify` can tell whether every byte is as built.

A build records in bank.json's `files`, for values.f16, keys.f32, sources.txt, sources.idx and (where built)
keys.faiss: the size, the modification time (ns) and the sha256 (the three large files hashed as the writer
streams them, without a second read; the two small ones read back), and for keys.f32 `finite`: every key written
was finite. Opening the bank reads keys.f32 whole (a NaN key was every query's neighbour) only where its size or
modification time is not the recorded one, or was recorded in the same clock tick as bank.json was written (an
edit then could keep it, as in git's "racy" index entries); it then compares the key file's sha256 with the
recorded one in the same pass, and refuses a key file changed since the build. Before, every `scan --bank` read
all keys: 256 MB per million entries. sources.idx (the offsets of the sources' lines) is read whole, to check that
they are in order, under the same rule. A bank built before 2026-12-08 has no `files` and is checked as then
(keys read whole at each open, no hash to compare). The token maps (6.3 GB per million entries) are too large to
hash at every open: `verify` reads them.
"""

from __future__ import annotations

import hashlib
from pathlib import Path
from typing import Callable

import numpy as np

from forgerydet.errors import ForgeryDetError
from forgerydet.io import file_sha256

RECORDED = ("values.f16", "keys.f32", "sources.txt", "sources.idx", "keys.faiss")  # in bank.json's `files`
STREAMED = ("values.f16", "keys.f32", "sources.txt")  # hashed while written


class HashedFile:
    """A binary file being written whose bytes are hashed (sha256) on their way to it."""

    def __init__(self, f) -> None:  # noqa: ANN001 - an open binary file, or a test's stand-in
        self.f, self.hash = f, hashlib.sha256()

    def write(self, data: bytes) -> int:
        self.hash.update(data)
        return self.f.write(data)

    def close(self) -> None:
        self.f.close()


def build_record(folder: Path, hashes: dict[str, str], names: tuple[str, ...], keys_finite: bool) -> dict:
    """bank.json's `files` for a finished build: `hashes` of the streamed files, the others hashed here."""
    out = {}
    for name in names:
        st = (folder / name).stat()
        out[name] = {"size": st.st_size, "mtime_ns": st.st_mtime_ns,
                     "sha256": hashes.get(name) or file_sha256(folder / name)}
    out["keys.f32"]["finite"] = bool(keys_finite)
    return out


def checked_record(folder: Path, meta: dict) -> dict:
    """bank.json's `files` ({} for a bank built before 2026-12-08), every field as a build writes it: an edited one
    is one line, not a KeyError."""
    files = meta.get("files", {})
    if not (isinstance(files, dict) and set(files) <= set(RECORDED) and all(
            isinstance(r, dict) and type(r.get("size")) is int and type(r.get("mtime_ns")) is int
            and isinstance(r.get("sha256"), str) and len(r["sha256"]) == 64 and type(r.get("finite", False)) is bool
            for r in files.values())):
        raise ForgeryDetError(f"{folder}/bank.json: files not as a build writes it (edited?): rebuild the bank")
    return files


def as_built(path: Path, record: dict | None, written_ns: int) -> bool:
    """Whether a file's size and modification time are those recorded, recorded before bank.json was written (in
    its clock tick, a later edit could keep the time)."""
    if record is None or record["mtime_ns"] >= written_ns:
        return False
    st = path.stat()
    return (st.st_size, st.st_mtime_ns) == (record["size"], record["mtime_ns"])


def check_files(folder: Path, meta: dict, m: int, n: int, d: int) -> None:
    """A bank's files as its bank.json (entries m, tokens n, dim d) says: each of its size, the sources' offsets
    in order, the keys finite and as built (check_keys). One line naming the file otherwise."""
    for name, nbytes in (("values.f16", m * n * d * 2), ("keys.f32", m * d * 4), ("sources.idx", (m + 1) * 8)):
        if not (folder / name).is_file() or (folder / name).stat().st_size != nbytes:
            raise ForgeryDetError(f"{folder}/{name} is missing or truncated: rebuild the bank")
    files, written_ns = checked_record(folder, meta), (folder / "bank.json").stat().st_mtime_ns
    if as_built(folder / "sources.idx", files.get("sources.idx"), written_ns):  # in order as built: its end only
        end = np.fromfile(folder / "sources.idx", np.int64, count=1, offset=m * 8)  # (8 MB per million entries)
    else:
        offsets = np.fromfile(folder / "sources.idx", np.int64)  # (M+1,): where each entry's line starts, then the end
        if offsets[0] != 0 or (np.diff(offsets) < 0).any():  # a line read from them could ask for terabytes
            raise ForgeryDetError(f"{folder}/sources.idx is damaged: rebuild the bank")
        end = offsets[-1:]
    if not (folder / "sources.txt").is_file() or (folder / "sources.txt").stat().st_size != int(end[0]):
        raise ForgeryDetError(f"{folder}/sources.txt is missing or truncated: rebuild the bank")
    check_keys(folder, files, written_ns)


def check_keys(folder: Path, files: dict, written_ns: int) -> None:
    """Refuse a keys.f32 that holds NaN or infinite keys, or was changed since the build; read only when it may
    have changed (see the module docstring)."""
    path, record = folder / "keys.f32", files.get("keys.f32")
    if record is not None and record.get("finite") and as_built(path, record, written_ns):
        return
    h = hashlib.sha256()
    with open(path, "rb") as f:  # in chunks, not mapped
        while chunk := f.read(1 << 24):
            if not np.isfinite(np.frombuffer(chunk, np.float32)).all():
                raise ForgeryDetError(f"{folder}/keys.f32 holds NaN or infinite keys: rebuild the bank")
            h.update(chunk)
    if record is not None and h.hexdigest() != record["sha256"]:  # same size, other keys: other neighbours, in silence
        raise ForgeryDetError(f"{folder}/keys.f32 was changed since the bank was built (its sha256 is not the one "
                              f"bank.json recorded): rebuild the bank")


def verify(folder: Path, files: dict, progress: Callable[[int, int], None] | None = None) -> dict[str, str]:
    """Every recorded file read whole and its sha256 compared with the build's: {name: 'as built' | what differs}.
    progress(bytes done, bytes in all) after each file."""
    total, done, out = sum(r["size"] for r in files.values()), 0, {}
    for name, record in files.items():
        path = folder / name
        if not path.is_file():
            out[name] = "missing"
        elif path.stat().st_size != record["size"]:
            out[name] = f"{path.stat().st_size:,} bytes, built with {record['size']:,}"
        else:
            out[name] = "as built" if file_sha256(path) == record["sha256"] else "changed since the build (sha256 differs)"
        done += record["size"]
        if progress:
            progress(done, total)
    return out


def record_state(files: dict) -> str:
    """What the record allows, in words (for `info`)."""
    if not files:
        return "not recorded (a bank built before 2026-12-08): its keys are read whole at each open, and nothing else is hashed"
    return f"sha256 of {', '.join(files)} recorded at the build (`forgerydet info DIR --verify` compares them)"
