"""The scan-time configs: ScanConfig (scan, evaluate) and EnrollConfig (enroll), which checkpoint a scan uses by
default, and which files a scan's paths name. Light on purpose (no torch), so the CLI reads its defaults from
here and refuses a mistyped path or a missing model in a fraction of a second, not after the ~5 s of importing
torch and timm."""

from __future__ import annotations

import os
import site
import sys
import sysconfig
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterable

from forgerydet.errors import ForgeryDetError, current_folder, option_error, os_error_text, value_text
from forgerydet.faces.detect import DetectorConfig
from forgerydet.faces.media import DEFAULT_NUM_FRAMES, expand_sources, file_key
from forgerydet.faces.segment import check_segment
from forgerydet.io import looks_like_safetensors
from forgerydet.model.calibration import check_precision, check_tta
from forgerydet.model.config import (
    check_bank_folder,
    check_checkpoint_path,
    check_enrolled,
    check_name,
    check_references_file,
    enroll_command,
    references_path,
)
from forgerydet.scan.aggregate import STRATEGIES
from forgerydet.scan.records import empty_record

FACE_CHOICES = ("main-track", "largest", "all")  # which faces of a source `enroll` takes


@dataclass
class ScanConfig:
    """num_frames: frames sampled per video (evenly). aggregation: how face scores become a file score (see
    aggregate.STRATEGIES). threshold: fake-probability cut for the verdict (None: the checkpoint's).
    batch_size: faces per model call. device: 'auto' | 'cpu' | 'cuda[:N]'. keep_crops: faces per file whose
    crop/attention are kept for a report (0: none). detector: MTCNN settings. reference: a person enrolled with
    `forgerydet enroll`, whose faces replace the global bank; references: their file (default: beside the
    checkpoint, see model.config.references_path). bank: a disk bank folder (diskbank.py, written by
    `rebuild-bank --disk-bank`) to use instead of the checkpoint's bank. tta: 'flip' scores each face and its
    mirror image and averages the two logits (and nearest-bank similarities) before the calibrated probability:
    twice the model time; 'none' scores the face as it is; None: as the checkpoint was calibrated
    (`calibrate --tta`), else 'none'. deinterlace: video frames that show interlacing combing are deinterlaced
    before detection (faces/interlace.py); False scans frames as stored. precision: the model's arithmetic,
    'fp32', 'bf16' (faster on a CPU with AVX512-BF16 or AMX, and on a GPU) or 'fp16' (GPU); None: as the checkpoint
    was calibrated (`calibrate --precision`), else fp32. start / end: seconds: sample each video's frames in
    [start, end) only (faces/segment.py; None: from its start / to its end); images are read whole."""

    num_frames: int = DEFAULT_NUM_FRAMES
    aggregation: str = "max-then-mean"
    threshold: float | None = None
    batch_size: int = 32
    device: str = "auto"
    keep_crops: int = 0
    detector: DetectorConfig = field(default_factory=DetectorConfig)
    reference: str | None = None
    references: str | None = None
    bank: str | None = None
    tta: str | None = None
    deinterlace: bool = True
    precision: str | None = None
    start: float | None = None
    end: float | None = None

    def __post_init__(self) -> None:
        check_segment(self.start, self.end)
        if self.tta is not None:
            check_tta(self.tta)
        if self.precision is not None:
            check_precision(self.precision)
        if self.aggregation not in STRATEGIES:
            raise option_error("--aggregation", self.aggregation, f"use one of {', '.join(STRATEGIES)}")
        if self.num_frames < 1:
            raise option_error("--frames", self.num_frames, "must be >= 1")
        if self.references is not None and self.reference is None:
            raise ForgeryDetError("--references FILE needs --reference NAME: which enrolled person to compare with")
        if self.threshold is not None and not 0.0 < self.threshold < 1.0:
            raise option_error("--threshold", self.threshold, "must be in (0, 1)")
        if self.batch_size < 1:
            raise option_error("--batch-size", self.batch_size, "must be >= 1")
        if self.keep_crops < 0:
            raise ForgeryDetError(f"keep_crops must be >= 0 (faces kept for a report), got {self.keep_crops}")


@dataclass
class EnrollConfig:
    """num_frames: frames sampled evenly per video (as scan). face: which faces of a source to enrol:
    'main-track' (the face tracked over most frames), 'largest' (the largest face of each frame) or 'all'
    (every face, bystanders included). batch_size: faces per encoder call. wait: seconds to wait for another
    process using the reference file. detector: MTCNN settings (as scan). deinterlace, start, end: as scan's."""

    num_frames: int = DEFAULT_NUM_FRAMES
    face: str = "main-track"
    device: str = "auto"
    batch_size: int = 32
    wait: float = 10.0
    detector: DetectorConfig = field(default_factory=DetectorConfig)
    deinterlace: bool = True
    start: float | None = None
    end: float | None = None

    def __post_init__(self) -> None:
        check_segment(self.start, self.end)
        if self.face not in FACE_CHOICES:
            raise option_error("--face", self.face, f"use one of {', '.join(FACE_CHOICES)}")
        if self.num_frames < 1:
            raise option_error("--frames", self.num_frames, "must be >= 1")
        if not 0 <= self.wait < float("inf"):  # NaN fails too
            raise option_error("--wait", self.wait, "must be a number of seconds >= 0")


SHIPPED_MODEL = "forgerydet-base.safetensors"  # trained on ~15,600 real faces, see models/README.md
MODELS_ENV = "FORGERYDET_MODEL"


def install_bases() -> list[str]:
    """Where pip puts an install's data files (pyproject's data-files): this scheme's data path (/usr/local under
    Debian's system Python, whose sys.prefix is /usr), sys.prefix (a venv) and the user scheme (`pip install --user`)."""
    return [b for b in dict.fromkeys([sysconfig.get_path("data"), sys.prefix, site.USER_BASE]) if b]


def find_default_checkpoint() -> Path:
    """$FORGERYDET_MODEL, else the shipped model models/forgerydet-base.safetensors (in the current folder, else in
    the forgerydet source checkout, else where an install put it: <prefix>/share/forgerydet/models)."""
    env = os.environ.get(MODELS_ENV)
    if env:
        if not os.path.lexists(env):
            raise ForgeryDetError(f"${MODELS_ENV} points to {env}, which does not exist")
        try:
            found = check_checkpoint_path(env)
        except ForgeryDetError as e:  # a folder, a pipe, an empty file: said as --checkpoint says it
            raise ForgeryDetError(f"${MODELS_ENV}: {e}") from None
        if not looks_like_safetensors(found):  # a text file or a photo: else the load's error forgot the variable
            raise ForgeryDetError(f"${MODELS_ENV} points to {env}, which is not a checkpoint (a .safetensors file)")
        return found
    here = current_folder()  # None: the current folder was deleted under the process
    checkout = Path(__file__).resolve().parents[3]  # the repository, where forgerydet runs from its src/ folder
    installed = [Path(base) / "share" / "forgerydet" / "models" for base in install_bases()]
    for root in ([Path(here) / "models"] if here else []) + [checkout / "models", *installed]:
        if (root / SHIPPED_MODEL).is_file():
            return root / SHIPPED_MODEL
    if (checkout / "pyproject.toml").is_file():
        where = f"not in {checkout / 'models'} (a copy of the repository without its models/ folder?)"
    else:  # an install that lost its data file, or was built from a copy of the repository without models/
        where = (f"not in the current folder's models/ nor where an install puts it ({installed[0]}); forgerydet "
                 f"runs from an installed package ({Path(__file__).resolve().parents[1]}) that came without it")
    raise ForgeryDetError(
        f"no checkpoint given and the shipped model models/{SHIPPED_MODEL} is {where}: pass --checkpoint FILE, "
        f"set ${MODELS_ENV}, or train one (`make demo` trains a small one, `make model` the shipped one)"
    )


def scan_paths(paths: object) -> list[str | Path]:
    """What a scan from Python was given, as a list of paths: one path (str or pathlib.Path) alone, or an iterable
    of them. Anything else is one ForgeryDetError (None, an image array or bytes were TypeErrors from deep in)."""
    if isinstance(paths, (str, Path)):
        return [paths]  # not a list of one-character paths
    what = f"paths={value_text(paths)}"
    if isinstance(paths, Iterable) and not isinstance(paths, (bytes, bytearray)) and not hasattr(paths, "__array__"):
        listed = list(paths)  # (bytes iterate as numbers, an image array as rows)
        wrong = [(i, p) for i, p in enumerate(listed) if not isinstance(p, (str, Path))]
        if not wrong:
            return listed
        what = f"paths[{wrong[0][0]}]={value_text(wrong[0][1])}"
    raise ForgeryDetError(f"{what}: give a path (str or pathlib.Path) or a list of them")


def expand_scan_paths(paths: list[str | Path], threshold: float | None = None,
                      skipped: list[Path] | None = None) -> tuple[list[Path], list[dict[str, Any]]]:
    """The files to scan (folders and globs expanded, duplicates dropped, order kept) and an error record per
    path that names nothing scannable; files of other types inside folders and globs go to `skipped` when
    given. Cheap: call it before loading a model."""
    files: list[Path] = []
    seen: set[Path] = set()
    bad = []
    left: list[Path] = []
    for p in paths:
        try:
            found = expand_sources([p], left)
        except ForgeryDetError as e:
            bad.append(empty_record(p, threshold, "error", str(e)))
            continue
        except OSError as e:  # a name too long for the file system, a folder that cannot be read
            bad.append(empty_record(p, threshold, "error", os_error_text(e, p)))
            continue
        for f in found:
            key = file_key(f)
            if key not in seen:
                seen.add(key)
                files.append(f)
    if skipped is not None:  # a file one argument leaves out but another names is scanned, so not "left out"
        skipped += [f for f in left if file_key(f) not in seen]
    return files, bad


def check_scan_inputs(checkpoint: str | Path | None, cfg: ScanConfig) -> Path:
    """The files a scan reads besides its media, checked before torch loads (~5 s): the checkpoint (None: the
    default one, which must be found), a --bank folder and a --references file. Returns the checkpoint to load (the
    default one found here: give it to the Scanner, which would otherwise look it up again)."""
    if checkpoint is not None:
        check_checkpoint_path(checkpoint)
    # (a missing shipped model was said only after torch and timm had loaded)
    model = checkpoint if checkpoint is not None else find_default_checkpoint()
    if cfg.bank is not None:
        check_bank_folder(cfg.bank)
    if cfg.reference is not None:  # (--references needs it) a bad name, a missing or foreign file, a name not
        name = check_name(cfg.reference)  # enrolled: said now, not after the model loads
        # the enroll line that fixes it names the scan's own model and file (pasted, it enrols where the scan looks)
        command = enroll_command(name, checkpoint, cfg.references)
        refs = cfg.references
        if refs is None:
            refs = references_path(model)
        if not Path(refs).exists():
            raise ForgeryDetError(f"reference file not found: {refs} (enrol {name!r} first: `{command}`)")
        check_enrolled(check_references_file(refs), name, command)
    return Path(model)

