"""Configuration dataclasses. They are stored (as JSON) in every checkpoint, and loading rebuilds the
model from them before loading weights strictly."""

from __future__ import annotations

import dataclasses
import os
import shlex
import unicodedata
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterable

from forgerydet.errors import ForgeryDetError, option_error, parse_json
from forgerydet.paths import safetensors_metadata

DEFAULT_BACKBONE = "tf_efficientnet_lite0"


@dataclass
class ModelConfig:
    """Everything needed to rebuild a Detector.

    backbone:        any timm model name.
    pretrained:      'auto' (packaged weights, else timm hub cache, else $FORGERYDET_WEIGHTS/<name>.*, else
                     random init), 'none', or a path to a weights file. Only used when a model is first built.
    img_size:        face crop side in pixels (None = the backbone's own default input size).
    dim:             token dimension D after projection.
    grid:            spatial tokens are pooled to grid x grid, so N = grid**2.
    heads:           DifferenceAttention heads (dim % heads == 0).
    bank_size:       K, memory-bank entries (65,536 suits a GPU; 16,384 is the CPU default).
    topk:            bank entries averaged into the reference in 'single' mode.
    momentum:        EMA momentum of the key encoder (m).
    temperature:     InfoNCE temperature (tau).
    slot_momentum:   optional EMA update of a full bank's nearest slot by real faces of its own source in training
                     (0 = off; other faces are enqueued).
    drop:            dropout before the head.
    reference:       'bank' (the method: the difference is taken against a real reference) or 'none' (the
                     ablation "plain classifier": the reference is zero, so the head sees the face's own
                     features; no bank is used or needed).
    """

    backbone: str = DEFAULT_BACKBONE
    pretrained: str = "auto"
    img_size: int | None = None
    dim: int = 64
    grid: int = 7
    heads: int = 4
    bank_size: int = 16384
    topk: int = 4
    momentum: float = 0.999
    temperature: float = 0.07
    slot_momentum: float = 0.0
    drop: float = 0.1
    reference: str = "bank"

    def __post_init__(self) -> None:
        checks = [
            # each message starts "FIELD=VALUE must": the CLI names the option typed (cli.common.fail: "--dim 30: must
            # ..."); heads and topk are no options of the CLI's, so they are said by what they are, not by name
            (self.dim > 0 and self.dim % self.heads == 0,
             f"dim={self.dim} must be a positive multiple of {self.heads}, the number of attention heads"),
            (self.grid >= 1, f"grid={self.grid} must be >= 1"),
            (self.bank_size >= 1, f"bank_size={self.bank_size} must be >= 1"),
            (self.topk >= 1, f"topk={self.topk} must be >= 1"),
            (self.bank_size >= self.topk, f"bank_size={self.bank_size} must be {self.topk} or more, the bank entries "
             f"a face's reference averages"),
            (0.0 <= self.momentum < 1.0, f"momentum={self.momentum} must be in [0, 1)"),
            (self.temperature > 0, f"temperature={self.temperature} must be > 0"),
            (0.0 <= self.slot_momentum < 1.0, f"slot_momentum={self.slot_momentum} must be in [0, 1)"),
            (self.img_size is None or self.img_size >= 16, f"img_size={self.img_size} must be >= 16"),
            (self.reference in ("bank", "none"), f"reference={self.reference!r} must be 'bank' or 'none'"),
        ]
        for ok, msg in checks:
            if not ok:
                raise ForgeryDetError(msg)

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> "ModelConfig":
        """The model settings a checkpoint stored (said as such when they do not fit together)."""
        return config_from_dict(cls, d, "the stored model settings are inconsistent")


def config_from_dict(cls, d: dict[str, Any], invalid: str = ""):
    names = {f.name for f in dataclasses.fields(cls)}
    unknown = set(d) - names
    if unknown:
        raise ForgeryDetError(
            f"config has unknown fields {sorted(unknown)}: it was written by another forgerydet version"
        )
    try:
        return cls(**d)
    except (TypeError, ForgeryDetError) as e:
        raise ForgeryDetError(f"{invalid}: {e}" if invalid else str(e)) from None  # never the class's name


def _a_file(path: str | Path, missing: str, folder: str) -> Path:
    """`path` as a Path when it names a file; else one ForgeryDetError: `missing` or `folder`, with {path} filled."""
    path = Path(path)
    if not path.exists():
        if os.path.lexists(path):  # a link to nothing, or a loop of links
            raise ForgeryDetError(f"{path} is a symbolic link to no file (broken, or a loop)")
        raise ForgeryDetError(missing.format(path=path))
    if path.is_dir():
        raise ForgeryDetError(folder.format(path=path))
    if not path.is_file():  # reading a named pipe would wait for a writer, forever
        raise ForgeryDetError(f"{path} is a pipe or a device, not a file")
    return path


def check_checkpoint_path(path: str | Path) -> Path:
    """A checkpoint path that is missing or a folder is one ForgeryDetError. Light (no torch), so commands call it
    before loading anything; model/checkpoint.py's read_meta starts with it. A disk bank's folder is named as one."""
    if not str(path):  # Path("") is the current folder, which the messages below would call "" or "."
        raise ForgeryDetError("an empty checkpoint path was given (an unset variable?): name a checkpoint file")
    if os.path.isfile(Path(path) / "bank.json"):  # (False for a name too long: said as the path's, not bank.json's)
        raise ForgeryDetError(f"{path} is a disk bank (from `rebuild-bank --disk-bank`), not a checkpoint: use it with "
                              f"`forgerydet scan --bank {path} --checkpoint MODEL` (MODEL: the checkpoint that wrote it)")
    if Path(path).is_dir():  # answered with a checkpoint it holds
        inside = sorted(Path(path).glob("*.safetensors"))
        raise ForgeryDetError(f"{path} is a folder: give the checkpoint file inside it (e.g. {inside[0]})" if inside
                              else f"{path} is a folder that holds no .safetensors file: give a checkpoint file")
    found = _a_file(path, "checkpoint not found: {path}", "{path} is a folder")
    if found.stat().st_size == 0:
        raise ForgeryDetError(f"{path} is empty (0 bytes), not a checkpoint: an interrupted copy or download?")
    return found


def check_bank_folder(folder: str | Path) -> Path:
    """`--bank`: the folder `rebuild-bank --disk-bank` wrote must be there (light; the disk bank's own checks of its
    files follow in model/diskbank.py)."""
    folder = Path(folder)
    if not folder.is_dir():
        what = "a file" if folder.exists() else "not found"
        raise ForgeryDetError(f"--bank {folder}: {what}; give the folder that `forgerydet rebuild-bank --disk-bank` "
                              f"wrote")
    if not (folder / "bank.json").is_file():  # written last by the bank's writer: checked before torch loads
        raise option_error("--bank", folder, "holds no finished disk bank (no bank.json); give the folder that "
                                               "`forgerydet rebuild-bank --disk-bank` wrote")
    return folder


REFERENCES_SUFFIX = ".refs.safetensors"  # the file `enroll` writes beside a model (model/references.py)


def check_references_file(path: str | Path) -> Path:
    """A person's reference file (model/references.py) must be there and not be a folder (light; model/references.py
    opens it with this check, and `scan --references` runs it before torch loads)."""
    return _a_file(path, "reference file not found: {path} (enrol a person first: `forgerydet enroll NAME VIDEO...`)",
                   f"{{path}} is a folder: give the reference file (*{REFERENCES_SUFFIX})")


REFERENCES_FORMAT = "forgerydet-references"  # the `format` of a reference file's header (model/references.py)
MAX_NAME = 100  # longest enrolled person's name (check_name)


def references_path(checkpoint: str | Path) -> Path:
    """The default reference file of a checkpoint: models/default.safetensors -> models/default.refs.safetensors."""
    p = Path(checkpoint)
    stem = p.name[: -len(".safetensors")] if p.name.endswith(".safetensors") else p.name
    return p.with_name(stem + REFERENCES_SUFFIX)


def check_name(name: str) -> str:
    """An enrolled person's name, stripped; one ForgeryDetError for an empty, too long or control-character name
    (shown as typed, a long one cut short). Unicode NFC: 'José' typed or pasted with a combining accent is the same
    person as 'José' with a precomposed one (they look alike, and were two people, neither found by the other)."""
    given = name or ""
    name = unicodedata.normalize("NFC", given).strip()
    if not name or len(name) > MAX_NAME or any(ord(c) < 32 for c in name):
        shown = (f"of {len(name):,} characters ({name[:24]!r}...)" if len(name) > MAX_NAME else
                 f"{given!r}" + (" (empty)" if not given else " (spaces only)" if not name else ""))
        raise ForgeryDetError(f"person name {shown} is not usable: give 1 to {MAX_NAME} printable characters")
    return name


def not_a_references_file(path: str | Path, *, safetensors: bool = True) -> ForgeryDetError:
    """A file of another kind given as a reference file: a safetensors file (a checkpoint?) or another file (a video
    or a CSV given by mistake)."""
    fix = f"give the file that `forgerydet enroll` wrote, e.g. *{REFERENCES_SUFFIX}"
    return ForgeryDetError(f"{path} is not a forgerydet reference file " + (f"(a checkpoint? {fix})" if safetensors
                                                                          else f"({fix})"))


def damaged_references(path: str | Path, why: str) -> ForgeryDetError:
    """A reference file of ours that cannot be read: said so, and that it was left as it is."""
    return ForgeryDetError(f"{path} is not a readable forgerydet reference file ({why}); it was left as it is: "
                           f"restore it, or move it away and enrol again (or enrol into another file with --into)")


def index_problem(fingerprint: Any, entries: Any, people: Any) -> str | None:
    """What makes a reference file's index unusable (a hand-edited or damaged header), or None: a fingerprint, one
    entry per row naming its person, source, frame and track, and a people index of name -> [first row, rows]."""
    if not isinstance(fingerprint, str) or len(fingerprint) != 64:
        return "no key-encoder fingerprint"
    if not isinstance(entries, list):
        return "its entries are not a list"
    for i, e in enumerate(entries):
        if not (isinstance(e, dict) and isinstance(e.get("person"), str) and isinstance(e.get("source"), str)
                and all(isinstance(e.get(k), int) for k in ("frame_index", "track_id"))):
            return f"entry {i} lacks a person, source, frame_index or track_id"
    if not (isinstance(people, dict) and all(isinstance(v, list) and len(v) == 2 and all(type(x) is int for x in v)
                                             for v in people.values())):
        return "its people index is not name -> [first row, rows]"
    return None


def enroll_command(name: str, checkpoint: str | Path | None = None, into: str | Path | None = None) -> str:
    """The `forgerydet enroll` line that enrols `name` for this model into this file, quoted for a shell (O'Brien)."""
    opts = "".join(f" {o} {shlex.quote(str(v))}" for o, v in (("--checkpoint", checkpoint), ("--into", into)) if v)
    return f"forgerydet enroll {shlex.quote(name)} VIDEO...{opts}"


def not_enrolled(name: str, path: str | Path, people: Iterable[str], *, command: str | None = None) -> ForgeryDetError:
    known = ", ".join(sorted(people)) or "nobody yet"
    return ForgeryDetError(f"{name!r} is not enrolled in {path} (enrolled: {known}): enrol with "
                           f"`{command or enroll_command(name)}`")


def check_enrolled(path: str | Path, name: str, command: str | None = None) -> None:
    """`scan --reference NAME`: refuse a name the reference file does not hold, a file of another kind or one whose
    header cannot be read, from its header alone (light: before torch loads). What only reading it shows (its
    tensors) model/references.py says."""
    meta = safetensors_metadata(path)
    if meta is None:  # a damaged file of ours (by its name), else another kind of file, as model/references.py says
        if not Path(path).name.endswith(".safetensors"):
            raise not_a_references_file(path, safetensors=False)
        raise damaged_references(path, "its header cannot be read: truncated or corrupted?")
    if meta.get("format") != REFERENCES_FORMAT:
        raise not_a_references_file(path)
    try:
        people = parse_json(meta["people"])
    except (KeyError, TypeError, ValueError):
        return
    name = check_name(name)
    if isinstance(people, dict) and name not in people:
        raise not_enrolled(name, path, people, command=command)
