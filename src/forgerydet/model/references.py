"""Reference banks: a known person's real faces, enrolled with `forgerydet enroll NAME VIDEO...` into a reference
file beside the model (never into the model checkpoint), and recalled by `scan --reference NAME`, which takes
the difference against that person's nearest enrolled faces instead of the global bank.

Reference file (safetensors, written atomically; rows grouped by person):
    tensors   values (M,N,D) fp16        the key encoder's token maps of every enrolled face
              thumbs (M,T,T,3) uint8     a small picture of each face, for the report
    metadata  format, format_version, fingerprint (SHA-256 hex of the key encoder that encoded the rows),
              backbone, tokens (N), dim (D), people (JSON: name -> [first row, rows]),
              entries (JSON list, one per row: person, source, frame_index, time, track_id, box, confidence, face, and since 2026-12-06 sha256)

A file is only valid with the key encoder that wrote it: another model's file is refused. Writers take an
exclusive lock (a hidden `.NAME.lock` file beside it) around read-merge-write, readers a shared one while
reading; the write itself is temp file + rename, so a reader never sees half a file.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterator

import numpy as np
import torch
from safetensors import safe_open
from safetensors.torch import save

from forgerydet import __version__
from forgerydet.errors import ForgeryDetError, parse_json
from forgerydet.io import file_sha256, write_bytes_atomic
from forgerydet.model.bank import MemoryBank
from forgerydet.model.config import (
    REFERENCES_FORMAT,
    check_name,
    check_references_file,
    damaged_references,
    index_problem,
    not_a_references_file,
    not_enrolled,
)
from forgerydet.paths import check_output, open_lock_file, safetensors_format, source_given, utf8_name

FORMAT = REFERENCES_FORMAT
FORMAT_VERSION = "1"
THUMB = 48  # side of the stored face thumbnails (px)

try:  # advisory locks; where fcntl is missing (Windows) writes are still atomic, only unserialised
    import fcntl
except ImportError:  # pragma: no cover
    fcntl = None  # type: ignore[assignment]


def fingerprint_full(fp: torch.Tensor) -> str:
    return bytes(fp.to("cpu").tolist()).hex()  # (32,) uint8 -> 64 hex digits


# ----------------------------------------------------------------------------- locking

@contextlib.contextmanager
def file_lock(path: Path, *, exclusive: bool, wait: float) -> Iterator[None]:
    """Hold a shared (readers) or exclusive (writers) advisory lock on `path` for the block, waiting at most
    `wait` seconds for other forgerydet processes; then a ForgeryDetError that says the file is in use."""
    if fcntl is None:  # pragma: no cover
        yield
        return
    if (not exclusive and not path.exists()) or (path.is_file() and safetensors_format(path) != FORMAT):
        yield  # nothing to read, or not ours: _open's error follows, and no lock file is left beside someone
        return  # else's file (`enroll --into clip.mp4` left one) or a missing one
    lock = path.parent / f".{path.name}.lock"
    if exclusive:  # a read-only place: said of the file, not of the hidden lock file (`enroll NAME --remove`)
        check_output(path, "the reference file")
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = open_lock_file(lock, shared=not exclusive)
    if fd is None:  # a reader where it may not write: writes are atomic renames, so it reads a whole file unlocked
        yield
        return
    try:
        deadline = time.monotonic() + max(0.0, wait)
        while True:
            try:
                fcntl.flock(fd, (fcntl.LOCK_EX if exclusive else fcntl.LOCK_SH) | fcntl.LOCK_NB)
                break
            except BlockingIOError:
                if time.monotonic() >= deadline:
                    raise ForgeryDetError(
                        f"{path} is in use by another forgerydet process (being "
                        f"{'read or written' if exclusive else 'written'}); nothing was changed: try again when it "
                        f"has finished (waited {wait:g} s; `enroll --wait SECONDS` waits longer)"
                    ) from None
                time.sleep(0.05)
        yield
    finally:
        os.close(fd)  # releases the lock


# ----------------------------------------------------------------------------- the file

@dataclass
class ReferenceFile:
    """A whole reference file in memory (enrol, list, remove). Rows are grouped by person."""

    fingerprint: str  # 64 hex digits
    backbone: str
    tokens: int
    dim: int
    values: torch.Tensor  # (M,N,D) fp16
    thumbs: torch.Tensor  # (M,T,T,3) uint8
    entries: list[dict[str, Any]] = field(default_factory=list)

    @classmethod
    def empty(cls, fingerprint: str, backbone: str, tokens: int, dim: int) -> "ReferenceFile":
        return cls(fingerprint, backbone, tokens, dim, torch.zeros(0, tokens, dim, dtype=torch.float16),
                   torch.zeros(0, THUMB, THUMB, 3, dtype=torch.uint8), [])

    def people(self) -> dict[str, int]:
        """name -> number of enrolled faces, in file order."""
        out: dict[str, int] = {}
        for e in self.entries:
            out[e["person"]] = out.get(e["person"], 0) + 1
        return out

    def rows_of(self, name: str) -> list[int]:
        return [i for i, e in enumerate(self.entries) if e["person"] == name]

    def without(self, name: str) -> "ReferenceFile":
        return self.without_rows({i for i, e in enumerate(self.entries) if e["person"] == name})

    def without_rows(self, rows: set[int]) -> "ReferenceFile":
        keep = [i for i in range(len(self.entries)) if i not in rows]
        idx = torch.tensor(keep, dtype=torch.long)
        return ReferenceFile(self.fingerprint, self.backbone, self.tokens, self.dim, self.values[idx],
                             self.thumbs[idx], [self.entries[i] for i in keep])

    def plus(self, values: torch.Tensor, thumbs: torch.Tensor, entries: list[dict[str, Any]]) -> "ReferenceFile":
        """Add rows, keeping every person's rows together (a person's new rows follow their old ones)."""
        vals = torch.cat([self.values, values.to(torch.float16)])  # (M+B,N,D)
        th = torch.cat([self.thumbs, thumbs])  # (M+B,T,T,3)
        ents = self.entries + entries
        order: list[str] = list(dict.fromkeys(e["person"] for e in ents))
        rank = {name: i for i, name in enumerate(order)}
        idx = sorted(range(len(ents)), key=lambda i: (rank[ents[i]["person"]], i))
        t = torch.tensor(idx, dtype=torch.long)
        return ReferenceFile(self.fingerprint, self.backbone, self.tokens, self.dim, vals[t], th[t], [ents[i] for i in idx])

    def save(self, path: Path) -> Path:
        people: dict[str, list[int]] = {}
        for i, e in enumerate(self.entries):
            people.setdefault(e["person"], [i, 0])[1] += 1
        meta = {
            "format": FORMAT, "format_version": FORMAT_VERSION, "forgerydet_version": __version__,
            "created": time.strftime("%Y-%m-%dT%H:%M:%S%z"), "fingerprint": self.fingerprint,
            "backbone": self.backbone, "tokens": str(self.tokens), "dim": str(self.dim),
            "people": json.dumps(people), "entries": json.dumps(self.entries),
        }  # fmt: skip
        tensors = {"values": self.values.contiguous(), "thumbs": self.thumbs.contiguous()}
        # serialised in memory: safetensors reports a full disk as its own error, not an OSError atomic_write names
        return write_bytes_atomic(path, save(tensors, metadata=meta), durable=True)


def _read_header(path: Path, f) -> dict[str, Any]:
    raw = f.metadata() or {}
    if raw.get("format") != FORMAT:
        raise not_a_references_file(path)
    if raw.get("format_version") != FORMAT_VERSION:
        raise ForgeryDetError(f"{path} is reference format {raw.get('format_version')}, this forgerydet reads "
                              f"format {FORMAT_VERSION}: enrol again")
    try:
        meta = dict(raw, people=parse_json(raw["people"]), entries=parse_json(raw["entries"]),
                    tokens=int(raw["tokens"]), dim=int(raw["dim"]))
    except (KeyError, ValueError) as e:
        raise damaged_references(path, f"bad metadata: {type(e).__name__}") from None
    problem = index_problem(meta.get("fingerprint"), meta["entries"], meta["people"])
    if problem:
        raise damaged_references(path, f"bad metadata: {problem}")
    try:
        shape, thumbs = f.get_slice("values").get_shape(), f.get_slice("thumbs").get_shape()
    except Exception as e:  # a tensor missing
        raise damaged_references(path, f"unreadable tensors: {type(e).__name__}") from None
    for what, got in (("values", shape), ("thumbs", thumbs[:1])):
        if list(got) != [len(meta["entries"]), meta["tokens"], meta["dim"]][: len(got)]:
            raise damaged_references(path, f"{what} of shape {got} do not match {len(meta['entries'])} entries")
    return meta


@contextlib.contextmanager
def _open(path: Path) -> Iterator[tuple[Any, dict[str, Any]]]:
    check_references_file(path)
    with utf8_name(path) as name:
        try:
            f = safe_open(name, framework="pt", device="cpu")
        except Exception as e:  # safetensors raises several types for broken headers
            if not path.name.endswith(".safetensors"):  # a video or a CSV given by mistake, not a damaged file of ours
                raise not_a_references_file(path, safetensors=False) from None
            raise damaged_references(path, f"truncated or corrupted? {type(e).__name__}") from None
        with f:
            yield f, _read_header(path, f)


def read_references(path: str | Path, *, wait: float = 30.0) -> ReferenceFile:
    """The whole reference file (under a shared lock)."""
    path = Path(path)
    with file_lock(path, exclusive=False, wait=wait):
        return read_unlocked(path)


def check_fingerprint(path: Path, fingerprint: str, model_fingerprint: str, checkpoint: str | Path | None = None) -> None:
    if fingerprint != model_fingerprint:
        raise ForgeryDetError(
            f"{path} was enrolled with another key encoder (fingerprint {fingerprint[:16]}, this model's "
            f"{model_fingerprint[:16]}{', ' + str(checkpoint) if checkpoint else ''}): its faces cannot be compared with "
            f"this model; enrol the person again for this model (into another file with --into)"
        )


# ----------------------------------------------------------------------------- one person, for scanning

@dataclass
class PersonReferences:
    """One person's enrolled faces as a small MemoryBank for 'single'-mode retrieval at scan time."""

    name: str
    path: Path
    fingerprint: str
    bank: MemoryBank
    entries: list[dict[str, Any]]
    thumbs: np.ndarray  # (R,T,T,3) uint8

    @property
    def content(self) -> str:
        """A digest of the enrolled faces compared with (their files, frames, tracks and boxes): it changes when the
        person is enrolled again from other faces, as the key encoder's fingerprint does not."""
        return hashlib.sha256(json.dumps(self.entries, sort_keys=True, default=str).encode()).hexdigest()[:16]

    def neighbour(self, slot: int) -> dict[str, Any]:
        e = self.entries[slot]
        return {"person": self.name, "source": e["source"], "frame_index": e["frame_index"],
                "thumb": self.thumbs[slot]}


def load_person(path: str | Path, name: str, model, *, wait: float = 30.0) -> PersonReferences:
    """Read only `name`'s rows of a reference file, checked against the model's key encoder."""
    path = Path(path)
    name = check_name(name)
    with file_lock(path, exclusive=False, wait=wait), _open(path) as (f, meta):
        check_fingerprint(path, meta["fingerprint"], fingerprint_full(model.key_fingerprint()))
        people = meta["people"]
        if name not in people:
            raise not_enrolled(name, path, people)
        start, count = int(people[name][0]), int(people[name][1])
        try:
            values = f.get_slice("values")[start : start + count]  # (R,N,D)
            thumbs = f.get_slice("thumbs")[start : start + count].numpy()  # (R,T,T,3)
        except Exception as e:
            raise damaged_references(path, f"unreadable tensors: {type(e).__name__}") from None
    entries = meta["entries"][start : start + count]
    if count <= 0 or start < 0 or values.shape[0] != count or len(entries) != count or thumbs.shape[0] != count \
            or any(e.get("person") != name for e in entries) or values.shape[1:] != model.bank.values.shape[1:]:
        raise damaged_references(path, f"the rows of {name!r} do not match its index")
    bank = MemoryBank(count, values.shape[1], values.shape[2])
    bank.rebuild(values, model.key_fingerprint(), source=torch.arange(count))
    return PersonReferences(name, path, meta["fingerprint"], bank, entries, thumbs)


# ----------------------------------------------------------------------------- whole-file reads and edits (enroll writes through these)


def read_unlocked(path: Path) -> ReferenceFile:
    """The whole file, for a caller that holds the lock."""
    with _open(path) as (f, meta):
        try:
            values, thumbs = f.get_tensor("values"), f.get_tensor("thumbs")
        except Exception as e:
            raise damaged_references(path, f"unreadable tensors: {type(e).__name__}") from None
    return ReferenceFile(meta["fingerprint"], meta.get("backbone", "?"), meta["tokens"], meta["dim"], values, thumbs,
                         meta["entries"])


def remove_person(path: str | Path, name: str, *, wait: float = 10.0) -> int:
    """Remove a person's faces from a reference file; returns how many were removed."""
    path = Path(path)
    name = check_name(name)
    with file_lock(path, exclusive=True, wait=wait):
        refs = read_unlocked(path)
        n = refs.people().get(name, 0)
        if n == 0:
            raise _not_enrolled(refs, name, path, ": nothing removed")
        refs.without(name).save(path)
    return n


def _not_enrolled(refs: ReferenceFile, name: str, path: Path, tail: str = "") -> ForgeryDetError:
    return ForgeryDetError(f"{name!r} is not enrolled in {path} (enrolled: {', '.join(refs.people()) or 'nobody'}){tail}")


def _source_rows(refs: ReferenceFile, name: str, source: str | Path) -> set[int]:
    """The rows of `name` enrolled from `source`: by its path as enrolled (links resolved; a folder or a pattern: the
    files it held, as enrolling expanded it) or, where the file is still there, by its content (the sha256 recorded
    since 2026-12-06: a copy or a renamed file)."""
    digest = file_sha256(Path(source)) if os.path.isfile(source) else None
    return {i for i in refs.rows_of(name) if source_given(refs.entries[i]["source"], source)
            or (digest is not None and refs.entries[i].get("sha256") == digest)}


def remove_sources(path: str | Path, name: str, sources: list[str], *,
                   wait: float = 10.0) -> tuple[int, int, list[tuple[str, bool]]]:
    """Remove the faces `name` was enrolled with from `sources` only; returns (removed, left for `name`, the enrolled
    sources they came from, each with whether it was found by its content alone: another file of the same bytes).
    A source that matches none of them is refused, and then nothing is removed."""
    path = Path(path)
    name = check_name(name)
    with file_lock(path, exclusive=True, wait=wait):
        refs = read_unlocked(path)
        if name not in refs.people():
            raise _not_enrolled(refs, name, path, ": nothing removed")
        rows: set[int] = set()
        for src in sources:
            found = _source_rows(refs, name, src)
            if not found:
                raise ForgeryDetError(f"{src}: not among the sources {name!r} was enrolled with (see `forgerydet "
                                      f"enroll --list {name!r}`): nothing removed")
            rows |= found
        refs.without_rows(rows).save(path)
    enrolled = dict.fromkeys(refs.entries[i]["source"] for i in sorted(rows))
    matched = [(src, not any(source_given(src, given) for given in sources)) for src in enrolled]
    return len(rows), refs.people()[name] - len(rows), matched


def person_sources(path: str | Path, name: str) -> list[dict[str, Any]]:
    """One row per file `name` was enrolled from, in enrolment order: source, faces, face (the choice), sha256
    (None for faces enrolled before 2026-12-06)."""
    refs = read_references(path)
    name = check_name(name)
    if name not in refs.people():
        raise _not_enrolled(refs, name, path)
    out: dict[str, dict[str, Any]] = {}
    for i in refs.rows_of(name):
        e = refs.entries[i]
        row = out.setdefault(e["source"], {"source": e["source"], "faces": 0, "face": e.get("face", "?"),
                                           "sha256": e.get("sha256")})
        row["faces"] += 1
    return list(out.values())


def list_people(path: str | Path) -> tuple[ReferenceFile, dict[str, dict[str, Any]]]:
    """The file and, per person: faces, sources (distinct files) and the face choice used."""
    refs = read_references(path)
    out: dict[str, dict[str, Any]] = {}
    for e in refs.entries:
        p = out.setdefault(e["person"], {"faces": 0, "sources": set(), "face": set()})
        p["faces"] += 1
        p["sources"].add(e["source"])
        p["face"].add(e.get("face", "?"))
    return refs, {k: {"faces": v["faces"], "sources": len(v["sources"]), "face": ", ".join(sorted(v["face"]))}
                  for k, v in out.items()}
