"""forgerydet from Python: scan files with the CLI's defaults and speed, for notebooks and pipelines.

    from forgerydet.api import scan, open_scanner

    records = scan(["clip.mp4", "photos/"])                 # the shipped model, the CLI's defaults
    records[0]["verdict"], records[0]["score"]             # 'REAL' 0.183

    scanner = open_scanner("models/mine.safetensors", frames=64, device="cuda")   # load once, scan many
    for rec in scanner.scan(paths):
        ...

Each record is what `forgerydet scan --json` writes per file (`files` in that JSON): status, verdict, score and its
interval over resampled frames, tracks, faces with their scores and nearest real faces, notes, timings. Settings
are ScanConfig's fields, named like the CLI options (`frames` for --frames, `tta`, `precision`, `aggregation`,
`threshold`, `reference`, `bank`, `detect_side`, `start`/`end` as seconds or '1:30'...). A bad setting (unknown, of the wrong type or out of range) or
checkpoint raises forgerydet.errors.ForgeryDetError with the CLI's one-line message; a path that names nothing
scannable is a record with status 'error', as in the CLI's JSON. What the CLI prints as notes about the
calibration (a bank rebuilt since, another --tta or precision) comes as a UserWarning.

Like the CLI, opening a scanner sets glibc's malloc to keep large freed buffers (runtime.tune_malloc: a 32-frame scan
of anchor_real.mp4 through this module took 1.26-1.40 s with it and 2.09 s without, 2-core VM, 2026-12-06); set
FORGERYDET_MALLOC_TUNING=0 to leave the host process's allocator alone."""

from __future__ import annotations

import json
import typing
import warnings
from pathlib import Path
from typing import Any, Sequence

from forgerydet.errors import ForgeryDetError, os_error_text, value_text
from forgerydet.faces.detect import DetectorConfig
from forgerydet.faces.segment import parse_time
from forgerydet.runtime import tune_malloc
from forgerydet.scan.config import ScanConfig, check_scan_inputs, scan_paths
from forgerydet.scan.records import json_record, settings_notes

_ALIASES = {"frames": "num_frames"}  # CLI option name -> ScanConfig field
_DETECTOR = ("detect_side", "min_confidence")  # scan's face-detector options (DetectorConfig fields)
_PATHS = ("references", "bank")  # may be given as a Path
_TIMES = ("start", "end")  # seconds, or the CLI's time text
_tuned: list[bool] = []  # tune_malloc runs once per process


def _check_type(name: str, value: Any, hint: Any) -> None:
    """A setting of the wrong type is one ForgeryDetError here, not a TypeError from deep in the scan."""
    allowed = tuple(typing.get_args(hint)) or (hint,)
    if float in allowed:
        allowed += (int,)  # 1 for 1.0
    if (isinstance(value, bool) and bool not in allowed) or not isinstance(value, allowed):
        names = " or ".join("None" if t is type(None) else t.__name__ for t in allowed if t is not int or float not in allowed)
        raise ForgeryDetError(f"scan setting {name}={value_text(value)}: use {names}")


def scan_config(**settings: Any) -> ScanConfig:
    """A ScanConfig from CLI-style names (`frames=64`, `tta="flip"`, `detect_side=960`); an unknown name, a value of
    the wrong type or out of range is one ForgeryDetError."""
    hints = typing.get_type_hints(ScanConfig)
    det_hints = typing.get_type_hints(DetectorConfig)
    names = sorted((set(hints) - set(_ALIASES.values()) - {"detector"}) | set(_ALIASES) | set(_DETECTOR))
    unknown = sorted(k for k in settings if k not in names)
    if unknown:
        raise ForgeryDetError(f"unknown scan setting(s) {', '.join(unknown)}: use {', '.join(names)}")
    kw: dict[str, Any] = {}
    det: dict[str, Any] = {}
    for name, value in settings.items():
        if name in _PATHS and isinstance(value, Path):
            value = str(value)
        if name in _TIMES:  # as the CLI's --start/--end: 90.5, '1:30', '1:02:03.5'
            value = parse_time(value, name)
        if name in _DETECTOR:
            _check_type(name, value, det_hints[name])
            det[name] = value
        else:
            _check_type(name, value, hints[_ALIASES.get(name, name)])
            kw[_ALIASES.get(name, name)] = value
    return ScanConfig(**kw, detector=DetectorConfig(**det))


def open_scanner(checkpoint: str | Path | None = None, **settings: Any):
    """A loaded Scanner (scan/scanner.py): `.scan(paths)` yields one record per file, `.scan_file(path)` scores one,
    `.settings()` is what `scan --json` stores as settings. checkpoint: a path (str or Path); None:
    $FORGERYDET_MODEL, else the shipped model. settings: as scan_config's. Raises ForgeryDetError for a bad setting
    or checkpoint (most before the model loads); the CLI's calibration notes come as UserWarnings."""
    if checkpoint is not None and not isinstance(checkpoint, (str, Path)):
        raise ForgeryDetError(f"checkpoint={value_text(checkpoint)}: give a path (str or pathlib.Path), or None for the shipped model")
    cfg = scan_config(**settings)
    path = check_scan_inputs(checkpoint, cfg)  # the default checkpoint, looked up once
    if not _tuned:
        _tuned.append(tune_malloc())
    from forgerydet.scan.scanner import Scanner  # torch: after the settings were checked

    scanner = Scanner(path, cfg)
    for line in settings_notes(scanner.settings(), cfg.threshold):  # what the CLI prints as notes
        warnings.warn(f"forgerydet: {line}", UserWarning, stacklevel=2)
    return scanner


def scan(paths: str | Path | Sequence[str | Path], checkpoint: str | Path | None = None,
         **settings: Any) -> list[dict[str, Any]]:
    """Scan videos, images, folders or globs; one JSON-safe record per file: first one with status 'error' per path
    that names nothing scannable (as in the CLI's JSON), then the files in the order given. paths: a path (str or
    pathlib.Path) or a list of them; checkpoint and settings: as open_scanner's. Loads the model on every call: to
    scan again, keep an open_scanner. Raises ForgeryDetError for what is not a path, a bad setting or checkpoint,
    or a folder that cannot be listed."""
    listed = scan_paths(paths)
    scanner = open_scanner(checkpoint, **settings)
    try:  # the records as the JSON file holds them (lists, not tuples), so they compare equal to a loaded one
        return [json.loads(json.dumps(json_record(r))) for r in scanner.scan(listed)]
    except OSError as e:  # a folder that cannot be listed: the CLI's line
        raise ForgeryDetError(os_error_text(e)) from None
