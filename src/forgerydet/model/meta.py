"""A checkpoint's metadata read without building its model (the format's name and version, the decoded JSON
fields, which faces it trained on, which bank it was calibrated against), and the one-line errors for a file that
is not a readable checkpoint or whose weights hold NaN or infinite values. model/checkpoint.py writes and loads
the whole file."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import torch
from safetensors import safe_open

from forgerydet import __version__
from forgerydet.errors import ForgeryDetError, current_folder, parse_json
from forgerydet.io import looks_like_safetensors
from forgerydet.model.config import REFERENCES_FORMAT, check_checkpoint_path
from forgerydet.paths import utf8_name

FORMAT = "forgerydet-checkpoint"
FORMAT_VERSION = 1


def open_error(path: Path, e: Exception) -> ForgeryDetError:
    """A file safetensors cannot open: a damaged checkpoint where it starts as one does, else another kind of file
    given by mistake (a photo, a CSV), said so."""
    if isinstance(e, MemoryError) or "os error 12" in str(e):  # ENOMEM: the file may be fine
        return ForgeryDetError(f"{path}: out of memory reading the checkpoint ({str(e)[:120]}): this process may use "
                               f"too little memory (a limit such as `ulimit -v`, or a container's); raise it, or free "
                               f"memory")
    if not looks_like_safetensors(path):
        renamed = " (damaged, or another kind of file renamed?)" if path.name.endswith(".safetensors") else ""
        return ForgeryDetError(f"{path} is not a forgerydet checkpoint: not a safetensors file{renamed}; give the "
                               f".safetensors file that `forgerydet train` wrote, or the shipped one")
    return ForgeryDetError(f"{path} is not a readable forgerydet checkpoint (truncated or corrupted? "
                           f"{type(e).__name__}: {str(e)[:120]}); re-copy it or train a new one")


def non_finite(key: str, v: torch.Tensor) -> bool:
    """Whether tensor `key` is a model weight holding NaN or infinite values."""
    return key.startswith("model.") and v.is_floating_point() and not bool(torch.isfinite(v).all())


def refuse_non_finite(path: Path, bad: list[str]) -> None:
    """The one-line error for a checkpoint whose weights `bad` hold NaN or infinite values, if any do."""
    if bad:
        raise ForgeryDetError(f"{path}: {len(bad)} weight tensor(s) hold NaN or infinite values (e.g. {bad[0][6:]}): "
                              f"the training diverged or the file was damaged; use an earlier checkpoint or retrain "
                              f"with a lower --lr")


def read_meta(path: str | Path, *, check_weights: bool = False) -> dict[str, Any]:
    """The checkpoint's metadata (decoded JSON fields), without building the model. check_weights: refuse weights
    holding NaN or infinite values too, as load_checkpoint does (for `info`; one tensor in memory at a time)."""
    path = check_checkpoint_path(path)
    try:
        with utf8_name(path) as name, safe_open(name, framework="pt") as f:
            raw = f.metadata() or {}
            keys = list(f.keys())
            bad = [k for k in keys if check_weights and raw.get("format") == FORMAT and non_finite(k, f.get_tensor(k))]
    except Exception as e:  # safetensors raises several types for broken headers
        raise open_error(path, e) from None
    if raw.get("format") == REFERENCES_FORMAT:
        raise ForgeryDetError(f"{path} is a file of enrolled people, not a checkpoint: `forgerydet enroll --list "
                              f"--into {path}` shows who is in it")
    if raw.get("format") != FORMAT:
        raise ForgeryDetError(f"{path} is a safetensors file but not a forgerydet checkpoint")
    if raw.get("format_version") != str(FORMAT_VERSION):
        raise ForgeryDetError(
            f"{path} is checkpoint format {raw.get('format_version')}, this forgerydet "
            f"({__version__}) reads format {FORMAT_VERSION}: use a matching forgerydet version or retrain"
        )
    meta: dict[str, Any] = dict(raw)
    try:
        for k in _KINDS:
            meta[k] = parse_json(raw.get(k) or "null")
    except ValueError as e:  # malformed, or nested too deep
        raise open_error(path, e) from None
    _check_kinds(path, meta)
    try:
        meta["bank_fill"] = int(raw.get("bank_fill", 0))
    except ValueError:
        raise ForgeryDetError(f"{path}: its metadata field bank_fill is {raw.get('bank_fill')!r}, not a whole number "
                              f"(was the file edited?): re-copy it or run `forgerydet rebuild-bank`") from None
    meta["tensor_names"] = keys
    refuse_non_finite(path, bad)
    return meta


# each JSON field: the kind of value it holds and that of its items (None: any); then fields inside two of them
_KINDS = {"config": (dict, None), "bank_sources": (list, str), "history": (list, dict), "train": (dict, None),
          "extra": (dict, None), "by_reference": (dict, None)}
_INNER_KINDS = {("extra", "calibration"): (dict, None), ("extra", "earlier_faces"): (list, str),
                ("train", "train_config"): (dict, None), ("train", "optimizer"): (dict, None)}
_NAMES = {dict: ("a JSON object", "objects"), list: ("a JSON list", "lists"), str: ("a string", "strings")}


def _check_kinds(path: Path, meta: dict[str, Any]) -> None:
    """Refuse a decoded field of another kind than its writer stores (a list where an object belongs, a number in the
    list of bank sources): every reader takes them as they are, so it was a traceback in `info`, `scan`, ..."""
    fields = [(k, meta[k], *kinds) for k, kinds in _KINDS.items()]
    fields += [(f"{outer}.{k}", meta[outer].get(k) if isinstance(meta[outer], dict) else None, *kinds)
               for (outer, k), kinds in _INNER_KINDS.items()]
    for name, value, kind, item in fields:
        if value is None and name != "config":
            continue
        if not isinstance(value, kind) or (item is not None and not all(isinstance(v, item) for v in value)):
            what = "missing" if value is None else f"not {_NAMES[kind][0]}" + (f" of {_NAMES[item][1]}" if item else "")
            raise ForgeryDetError(f"{path}: its metadata field {name} is {what} (was the file edited, or written by "
                                  f"another tool?): re-copy it or train a new one")


def training_faces(meta: dict[str, Any]) -> set[str]:
    """Checkpoint.training_faces from a checkpoint's metadata alone (tools/unseen_photos.py reads no tensors)."""
    return {Path(p).parent.name for p in meta.get("bank_sources") or []} | set((meta.get("extra") or {}).get("earlier_faces") or [])


def bank_faces(meta: dict[str, Any]) -> set[Path]:
    """The checkpoint's training faces (bank_sources), resolved from the bank's folder (extra 'bank_sources_root') and the current one."""
    here, recorded = current_folder(), (meta.get("extra") or {}).get("bank_sources_root")  # here: None if deleted
    roots = {Path(r).resolve() for r in {recorded or here, here} if r and (here or os.path.isabs(r))}  # one when equal
    return {(root / p).resolve() for root in roots for p in meta.get("bank_sources") or []}


def calibration_bank(meta: dict[str, Any]) -> str:
    """Checkpoint.calibration_bank from a checkpoint's metadata alone (`info` reads no tensors)."""
    cal = (meta.get("extra") or {}).get("calibration")
    if not isinstance(cal, dict):
        return "not calibrated"
    fitted, held = cal.get("bank_contents"), meta.get("bank_contents")
    if not fitted or not held:
        return "unknown"
    return "this bank" if fitted == held else "an earlier bank"
