"""Checkpoints: one safetensors file holding the weights, the bank, the config (JSON) and, for training
checkpoints, the optimizer/RNG state. Loading never unpickles anything; writes are atomic (temp + rename)."""

from __future__ import annotations

import json
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from safetensors import safe_open
from safetensors.torch import save

from . import __version__
from .atomic import write_bytes_atomic
from .bank import fingerprint_hex
from .config import ModelConfig
from .errors import ForgeryDetError
from .model import Detector

FORMAT = "forgerydet-checkpoint"
FORMAT_VERSION = 1
SUFFIX = ".safetensors"


@dataclass
class Checkpoint:
    model: Detector
    meta: dict[str, Any]
    path: Path
    train_tensors: dict[str, torch.Tensor] = field(default_factory=dict)
    train_json: dict[str, Any] = field(default_factory=dict)

    @property
    def fingerprint(self) -> str:
        return self.meta.get("fingerprint", "")


def _flatten_optimizer(sd: dict[str, Any]) -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
    tensors: dict[str, torch.Tensor] = {}
    plain_state: dict[str, dict[str, Any]] = {}
    for pid, st in sd["state"].items():
        plain_state[str(pid)] = {}
        for name, v in st.items():
            if torch.is_tensor(v):
                tensors[f"optim.{pid}.{name}"] = v
            else:
                plain_state[str(pid)][name] = v
    return tensors, {"param_groups": sd["param_groups"], "state": plain_state}


def _unflatten_optimizer(tensors: dict[str, torch.Tensor], meta: dict[str, Any]) -> dict[str, Any]:
    state: dict[int, dict[str, Any]] = {int(pid): dict(st) for pid, st in meta["state"].items()}
    for key, t in tensors.items():
        if key.startswith("optim."):
            _, pid, name = key.split(".", 2)
            state.setdefault(int(pid), {})[name] = t
    # JSON turned tuples (e.g. Adam's betas) into lists; give them back as the optimizer wrote them
    groups = [{k: (tuple(v) if isinstance(v, list) and k != "params" else v) for k, v in g.items()} for g in meta["param_groups"]]
    return {"state": state, "param_groups": groups}


def save_checkpoint(
    path: str | Path,
    model: Detector,
    *,
    bank_sources: list[str] | None = None,
    history: list[dict[str, Any]] | None = None,
    optimizer_state: dict[str, Any] | None = None,
    train_tensors: dict[str, torch.Tensor] | None = None,
    train_json: dict[str, Any] | None = None,
    extra: dict[str, Any] | None = None,
    half: bool = False,
) -> Path:
    """Write a checkpoint file atomically. `bank_sources[i]` names the real face whose id is i in bank.source.

    half=True stores the float weights (not the bank) as fp16, for a smaller file to ship; it is refused
    unless every weight is exactly representable in fp16 (so the loaded model, and the fingerprint its
    bank was made with, are unchanged). Loading casts them back to the model's fp32."""
    path = Path(path)
    tensors = {f"model.{k}": v.detach().to("cpu").contiguous() for k, v in model.state_dict().items()}
    if half:
        for k, v in tensors.items():
            if v.is_floating_point() and v.dtype == torch.float32 and not k.startswith("model.bank."):
                h = v.half()
                if not torch.equal(h.float(), v):
                    raise ForgeryDetError(f"{k} is not exactly representable in fp16: cannot store this model at half size")
                tensors[k] = h
    tjson: dict[str, Any] = dict(train_json or {})
    if optimizer_state is not None:
        otensors, ometa = _flatten_optimizer(optimizer_state)
        tensors.update({k: v.detach().to("cpu").contiguous() for k, v in otensors.items()})
        tjson["optimizer"] = ometa
    for k, v in (train_tensors or {}).items():
        tensors[f"train.{k}"] = v.detach().to("cpu").contiguous()
    meta = {
        "format": FORMAT,
        "format_version": str(FORMAT_VERSION),
        "forgerydet_version": __version__,
        "created": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        "config": json.dumps(model.cfg.to_dict()),
        "pretrained_source": model.pretrained_source,
        "fingerprint": fingerprint_hex(model.bank.fingerprint),
        "bank_fill": str(model.bank.filled),
        "bank_sources": json.dumps(bank_sources or []),
        "history": json.dumps(history or []),
        "train": json.dumps(tjson),
        "extra": json.dumps(extra or {}),
    }
    # serialised in memory, then ONE atomic write: safetensors' save_file would add its own hidden temp file,
    # and a kill mid-write would leave two; the next write of this file removes a killed writer's temp
    return write_bytes_atomic(path, save(tensors, metadata=meta), durable=True)


def resave_checkpoint(ck: Checkpoint, path: str | Path, model: Detector, *, extra: dict[str, Any],
                      bank_sources: list[str] | None = None) -> Path:
    """Write a changed model of a loaded checkpoint (a rebuilt bank, a new calibration) to `path`, keeping the
    checkpoint's history and training state (optimizer, RNG, schedule: `--resume` still works), its bank
    sources unless new ones are given, and its extra fields with `extra` merged over them."""
    tj = dict(ck.train_json)
    opt_state = tj.pop("optimizer_state", None)
    return save_checkpoint(path, model, bank_sources=ck.meta.get("bank_sources") if bank_sources is None else bank_sources,
                           history=ck.meta.get("history"), optimizer_state=opt_state, train_tensors=ck.train_tensors,
                           train_json=tj, extra={**(ck.meta.get("extra") or {}), **extra})


def _open_error(path: Path, e: Exception) -> ForgeryDetError:
    return ForgeryDetError(
        f"{path} is not a readable forgerydet checkpoint (truncated or corrupted? {type(e).__name__}: "
        f"{str(e)[:120]}); re-copy it or train a new one"
    )


def read_meta(path: str | Path) -> dict[str, Any]:
    """The checkpoint's metadata (decoded JSON fields), without building the model."""
    path = Path(path)
    if not path.exists():
        raise ForgeryDetError(f"checkpoint not found: {path}")
    if path.is_dir():
        raise ForgeryDetError(f"{path} is a folder: give the checkpoint file inside it (e.g. {path}/best{SUFFIX})")
    try:
        with safe_open(str(path), framework="pt") as f:
            raw = f.metadata() or {}
            keys = list(f.keys())
    except Exception as e:  # safetensors raises several types for broken headers
        raise _open_error(path, e) from None
    if raw.get("format") != FORMAT:
        raise ForgeryDetError(f"{path} is a safetensors file but not a forgerydet checkpoint")
    if raw.get("format_version") != str(FORMAT_VERSION):
        raise ForgeryDetError(
            f"{path} is checkpoint format {raw.get('format_version')}, this forgerydet "
            f"({__version__}) reads format {FORMAT_VERSION}: use a matching forgerydet version or retrain"
        )
    meta: dict[str, Any] = dict(raw)
    try:
        for k in ("config", "bank_sources", "history", "train", "extra"):
            meta[k] = json.loads(raw.get(k) or "null")
    except json.JSONDecodeError as e:
        raise _open_error(path, e) from None
    try:
        meta["bank_fill"] = int(raw.get("bank_fill", 0))
    except ValueError:
        raise ForgeryDetError(f"{path}: its metadata field bank_fill is {raw.get('bank_fill')!r}, not a whole number "
                              f"(was the file edited?): re-copy it or run `forgerydet rebuild-bank`") from None
    meta["tensor_names"] = keys
    return meta


def load_checkpoint(
    path: str | Path,
    device: str | torch.device = "cpu",
    *,
    expect_backbone: str | None = None,
    check_bank: bool = True,
) -> Checkpoint:
    """Rebuild the model from the stored config, load weights strictly, verify the bank's fingerprint."""
    path = Path(path)
    meta = read_meta(path)
    cfg = ModelConfig.from_dict(meta["config"])
    if expect_backbone is not None and expect_backbone != cfg.backbone:
        raise ForgeryDetError(
            f"{path} was trained with backbone {cfg.backbone!r}, not {expect_backbone!r}: "
            f"drop the backbone option or use a checkpoint of that backbone"
        )
    try:
        with safe_open(str(path), framework="pt", device="cpu") as f:
            tensors = {k: f.get_tensor(k) for k in f.keys()}
    except Exception as e:
        raise _open_error(path, e) from None
    bad = [k for k, v in tensors.items() if k.startswith("model.") and v.is_floating_point() and not torch.isfinite(v).all()]
    if bad:
        raise ForgeryDetError(f"{path}: {len(bad)} weight tensor(s) hold NaN or infinite values (e.g. {bad[0][6:]}): "
                              f"the training diverged or the file was damaged; use an earlier checkpoint or retrain "
                              f"with a lower --lr")
    model = Detector(cfg, pretrained="none")
    model.pretrained_source = meta.get("pretrained_source", "none")
    state = {k[len("model.") :]: v for k, v in tensors.items() if k.startswith("model.")}
    try:
        model.load_state_dict(state, strict=True)
    except RuntimeError as e:
        first = str(e).split("\n")[1:2]
        raise ForgeryDetError(
            f"{path}: weights do not fit backbone {cfg.backbone!r} of its config ({' '.join(first).strip()[:160]}); "
            f"the file was edited or written by another tool"
        ) from None
    if check_bank and model.bank.filled > 0:
        expected = model.key_fingerprint()
        if not torch.equal(expected, model.bank.fingerprint):
            raise ForgeryDetError(
                f"{path}: the memory bank was filled by another encoder (bank fingerprint "
                f"{fingerprint_hex(model.bank.fingerprint)}, key encoder {fingerprint_hex(expected)}): "
                f"run `forgerydet rebuild-bank --checkpoint {path} --pairs PAIRS.csv`"
            )
    model.to(device)
    train_json = meta.get("train") or {}
    train_tensors = {k[len("train.") :]: v for k, v in tensors.items() if k.startswith("train.")}
    if "optimizer" in train_json:
        train_json = dict(train_json)
        train_json["optimizer_state"] = _unflatten_optimizer(
            {k: v for k, v in tensors.items() if k.startswith("optim.")}, train_json.pop("optimizer")
        )
    return Checkpoint(model=model, meta=meta, path=path, train_tensors=train_tensors, train_json=train_json)
