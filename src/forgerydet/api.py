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
`threshold`, `reference`, `bank`, ...). Bad settings or paths raise forgerydet.errors.ForgeryDetError with the
CLI's one-line message.

Like the CLI, opening a scanner sets glibc's malloc to keep large freed buffers (runtime.tune_malloc: a 32-frame scan
of anchor_real.mp4 through this module took 1.26-1.40 s with it and 2.09 s without, 2-core VM, 2026-12-06); set
FORGERYDET_MALLOC_TUNING=0 to leave the host process's allocator alone."""

from __future__ import annotations

from dataclasses import fields
from pathlib import Path
from typing import Any, Sequence

from forgerydet.errors import ForgeryDetError
from forgerydet.runtime import tune_malloc
from forgerydet.scan.config import ScanConfig
from forgerydet.scan.records import json_record

_ALIASES = {"frames": "num_frames"}  # CLI option name -> ScanConfig field
_tuned: list[bool] = []  # tune_malloc runs once per process


def scan_config(**settings: Any) -> ScanConfig:
    """A ScanConfig from CLI-style names (`frames=64`, `tta="flip"`); an unknown name is one ForgeryDetError."""
    known = {f.name for f in fields(ScanConfig)}
    kw = {_ALIASES.get(k, k): v for k, v in settings.items()}
    unknown = sorted(k for k in kw if k not in known)
    if unknown:
        names = sorted((known - set(_ALIASES.values())) | set(_ALIASES))
        raise ForgeryDetError(f"unknown scan setting(s) {', '.join(unknown)}: use {', '.join(names)}")
    return ScanConfig(**kw)


def open_scanner(checkpoint: str | Path | None = None, **settings: Any):
    """A loaded Scanner (scan/scanner.py): `.scan(paths)` yields one record per file, `.scan_file(path)` scores one,
    `.settings()` is what `scan --json` stores as settings. checkpoint None: $FORGERYDET_MODEL, else the shipped
    model."""
    cfg = scan_config(**settings)
    if not _tuned:
        _tuned.append(tune_malloc())
    from forgerydet.scan.scanner import Scanner  # torch: after the settings were checked

    return Scanner(checkpoint, cfg)


def scan(paths: str | Path | Sequence[str | Path], checkpoint: str | Path | None = None,
         **settings: Any) -> list[dict[str, Any]]:
    """Scan videos, images, folders or globs; one JSON-safe record per file: first one with status 'error' per path
    that names nothing scannable (as in the CLI's JSON), then the files in the order given."""
    items = [paths] if isinstance(paths, (str, Path)) else list(paths)
    return [json_record(r) for r in open_scanner(checkpoint, **settings).scan(items)]
