"""The checkpoint file and its typed contents (the only owner of that format).

One safetensors file holds: the weights (`model.*`), the memory bank inside them, and metadata (JSON strings):
the ModelConfig, the bank's encoder fingerprint and fill, the bank sources (the real face behind each bank
source id), the training history, the calibration (threshold, temperature) and other extras; a training
checkpoint (`last`) also holds its TrainState (optimizer tensors `optim.*`, RNG tensors `train.*`, position and
TrainConfig). A file may leave out backbone tensors that are still exactly their pretrained weights and name
them in `by_reference` (model/frozen.py); loading takes them from those weights again. Loading rebuilds the
Detector from the stored config and loads strictly; it never unpickles anything. Writes are atomic (one temp
file + rename), so a crash never leaves a broken checkpoint. Reading the metadata alone: model/meta.py."""

from __future__ import annotations

import json
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from safetensors import safe_open
from safetensors.torch import save

from forgerydet import __version__
from forgerydet.errors import ForgeryDetError
from forgerydet.io import file_sha256, file_state, write_bytes_atomic
from forgerydet.model import frozen
from forgerydet.model.bank import fingerprint_hex
from forgerydet.model.config import ModelConfig
from forgerydet.model.detector import Detector, available_bytes, estimate_train_bytes
from forgerydet.model.meta import (FORMAT, FORMAT_VERSION, calibration_bank, non_finite, open_error, read_meta,
                                   refuse_non_finite, training_faces)
from forgerydet.paths import utf8_name

DEFAULT_THRESHOLD = 0.5  # the verdict threshold of a checkpoint that was never calibrated
DEFAULT_TEMPERATURE = 1.0  # logits as they are


@dataclass
class TrainState:
    """What `train --resume` needs to continue bit for bit: the epochs and steps done, the best validation AUC so
    far, the run's TrainConfig (as stored), the optimizer state, and the RNG states (torch/CUDA generator
    tensors; Python's and NumPy's states as JSON)."""

    epoch: int
    step: int
    best: float
    train_config: dict[str, Any]
    optimizer_state: dict[str, Any] | None = None
    rng_tensors: dict[str, torch.Tensor] = field(default_factory=dict)
    rng: dict[str, Any] = field(default_factory=dict)


@dataclass
class Checkpoint:
    """A loaded checkpoint: the model (bank included), where it came from, and what it stores, read and checked
    here (a hand-edited value is a ForgeryDetError naming the file, not a traceback later)."""

    model: Detector
    meta: dict[str, Any]  # the decoded metadata, as read_meta returns it
    path: Path
    train_state: TrainState | None = None
    identity: tuple[int, ...] | None = None  # io.file_state(path) when it was read

    def replaced(self) -> bool:
        """Whether the file at `path` is no longer the one this was read from: another command (rebuild-bank,
        calibrate, train) wrote it since, by an atomic rename."""
        now = file_state(self.path)
        return self.identity is not None and now is not None and now != self.identity

    def sha256(self) -> str:
        """The SHA-256 of the file this was loaded from: a file replaced since is an error, not the other's hash."""
        digest = file_sha256(self.path)
        if self.replaced():
            raise ForgeryDetError(f"{self.path} was rewritten by another command while it loaded: run this one again")
        return digest

    @property
    def fingerprint(self) -> str:
        return self.meta.get("fingerprint", "")

    @property
    def extra(self) -> dict[str, Any]:
        """Calibration, provenance (trained_on, bank_rebuilt_from, bank_selection, epochs_done) and notes."""
        return dict(self.meta.get("extra") or {})

    @property
    def bank_sources(self) -> list[str]:
        """bank_sources[i]: the real face whose id is i in the bank's `source` buffer."""
        return list(self.meta.get("bank_sources") or [])

    @property
    def training_faces(self) -> set[str]:
        """The real faces to count as seen by these weights, as face folder names (`<stem>-<hash>`): this run's
        (bank_sources) and those of every run it was fine-tuned (--init) or averaged from (extra 'earlier_faces')."""
        return training_faces(self.meta)

    @property
    def history(self) -> list[dict[str, Any]]:
        """One record per trained epoch (losses, validation metrics, calibration)."""
        return list(self.meta.get("history") or [])

    @property
    def calibration_bank(self) -> str:
        """Whether the stored calibration was fitted against the bank this file holds: 'this bank', 'an
        earlier bank' (the bank was rebuilt since: refit with `forgerydet calibrate`), 'unknown' (calibrated before
        forgerydet recorded it) or 'not calibrated'."""
        return calibration_bank(self.meta)

    @property
    def threshold(self) -> float:
        """The verdict threshold on the calibrated fake probability (DEFAULT_THRESHOLD when never calibrated)."""
        return _stored_number(self.path, self.meta, "threshold", DEFAULT_THRESHOLD, 1.0,
                              "pass --threshold, or re-save the checkpoint")

    @property
    def temperature(self) -> float:
        """The logit temperature fitted on validation faces (DEFAULT_TEMPERATURE: uncalibrated)."""
        return _stored_number(self.path, self.meta, "temperature", DEFAULT_TEMPERATURE, 1e3,
                              "re-calibrate with `forgerydet calibrate`")

    @property
    def bank_fusion(self) -> dict[str, float] | None:
        """The calibration's bank fusion (model/calibration.py): logit, similarity and bias weights and its own
        threshold, checked; None when the checkpoint has none (never calibrated, or the similarity was no
        evidence)."""
        raw = (self.meta.get("extra") or {}).get("bank_fusion")
        if raw is None:
            return None
        keys = ("logit", "similarity", "bias", "threshold")
        try:
            fusion = {k: float(raw[k]) for k in keys}
            ok = all(not isinstance(raw[k], bool) for k in keys) and all(abs(v) < 1e6 for v in fusion.values())
        except (TypeError, ValueError, KeyError):
            ok = False
        if not ok or not 0.0 < fusion["threshold"] < 1.0:
            raise ForgeryDetError(f"{self.path}: its stored bank_fusion {raw!r} is not four numbers (logit, similarity, "
                                  f"bias, threshold in (0, 1)) (was the metadata edited?): re-calibrate with "
                                  f"`forgerydet calibrate`")
        return fusion


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
    train_state: TrainState | None = None,
    extra: dict[str, Any] | None = None,
    half: bool = False,
    by_reference: bool = False,
) -> Path:
    """Write a checkpoint file atomically. `bank_sources[i]` names the real face whose id is i in bank.source.

    half=True stores the float weights (not the bank) as fp16, for a smaller file to ship; it is refused
    unless every weight is exactly representable in fp16 (so the loaded model, and the fingerprint its
    bank was made with, are unchanged). Loading casts them back to the model's fp32.

    by_reference=True leaves out the backbone tensors that are still exactly the pretrained weights the model
    was built from (model/frozen.py: a frozen or LN-tuned backbone); loading needs those weights installed."""
    path = Path(path)
    state, record = frozen.split(model) if by_reference else (model.state_dict(), None)
    tensors = {f"model.{k}": v.detach().to("cpu").contiguous() for k, v in state.items()}
    if half:
        for k, v in tensors.items():
            if v.is_floating_point() and v.dtype == torch.float32 and not k.startswith("model.bank."):
                h = v.half()
                if not torch.equal(h.float(), v):
                    raise ForgeryDetError(f"{k} is not exactly representable in fp16: cannot store this model at half size")
                tensors[k] = h
    tjson: dict[str, Any] = {}
    if train_state is not None:
        ts = train_state
        tjson = {**ts.rng, "epoch": ts.epoch, "step": ts.step, "best": ts.best, "train_config": ts.train_config}
        if ts.optimizer_state is not None:
            otensors, ometa = _flatten_optimizer(ts.optimizer_state)
            tensors.update({k: v.detach().to("cpu").contiguous() for k, v in otensors.items()})
            tjson["optimizer"] = ometa
        for k, v in ts.rng_tensors.items():
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
        "bank_contents": model.bank.contents_digest(),
        "bank_sources": json.dumps(bank_sources or []),
        "history": json.dumps(history or []),
        "train": json.dumps(tjson),
        "extra": json.dumps(extra or {}),
    }
    if record is not None and record["keys"]:
        meta["by_reference"] = json.dumps(record)
    # serialised in memory, then ONE atomic write: safetensors' save_file would add its own hidden temp file,
    # and a kill mid-write would leave two; the next write of this file removes a killed writer's temp
    return write_bytes_atomic(path, save(tensors, metadata=meta), durable=True)


def resave_checkpoint(ck: Checkpoint, path: str | Path, model: Detector, *, extra: dict[str, Any],
                      bank_sources: list[str] | None = None) -> Path:
    """Write a changed model of a loaded checkpoint (a rebuilt bank, a new calibration) to `path`, keeping the
    checkpoint's history and training state (optimizer, RNG, schedule: `--resume` still works), its bank
    sources unless new ones are given, and its extra fields with `extra` merged over them. In place, a file that
    another command rewrote meanwhile is refused: writing would silently undo that command's change."""
    if Path(path).resolve() == ck.path.resolve() and ck.replaced():
        raise ForgeryDetError(f"{path} was rewritten by another command (rebuild-bank, calibrate, train) while this one "
                              f"ran: left as that one wrote it, since this result would undo its change; run this "
                              f"command again")
    return save_checkpoint(path, model, bank_sources=ck.bank_sources if bank_sources is None else bank_sources,
                           history=ck.history, train_state=ck.train_state, extra={**ck.extra, **extra},
                           by_reference=bool(ck.meta.get("by_reference")))


def load_checkpoint(
    path: str | Path,
    device: str | torch.device = "cpu",
    *,
    expect_backbone: str | None = None,
    check_bank: bool = True,
) -> Checkpoint:
    """Rebuild the model from the stored config, load weights strictly, verify the bank's fingerprint."""
    path = Path(path)
    identity = file_state(path)  # before anything is read: a file replaced later is seen to differ
    meta = read_meta(path)
    try:
        cfg = ModelConfig.from_dict(meta["config"])
    except ForgeryDetError as e:  # said without the file: "the stored model settings are inconsistent: grid=-1 must ..."
        raise ForgeryDetError(f"{path}: {e}; was the metadata edited?") from None
    if expect_backbone is not None and expect_backbone != cfg.backbone:
        raise ForgeryDetError(
            f"{path} was trained with backbone {cfg.backbone!r}, not {expect_backbone!r}: "
            f"drop the backbone option or use a checkpoint of that backbone"
        )
    try:
        with utf8_name(path) as name, safe_open(name, framework="pt", device="cpu") as f:
            tensors = {k: f.get_tensor(k) for k in f.keys()}
    except Exception as e:
        raise open_error(path, e) from None
    refuse_non_finite(path, [k for k, v in tensors.items() if non_finite(k, v)])
    _check_size(path, cfg)
    try:
        model = Detector(cfg, pretrained="none")
    except ForgeryDetError as e:  # "backbone='...' must be a timm model name", of a config the user never typed
        raise ForgeryDetError(f"{path}: the stored model settings do not build a model: {e}; was the metadata "
                              f"edited?") from None
    model.pretrained_source = meta.get("pretrained_source", "none")
    state = {k[len("model.") :]: v for k, v in tensors.items() if k.startswith("model.")}
    if meta.get("by_reference"):
        state = frozen.restore(cfg, meta["by_reference"], state, path)
    try:
        model.load_state_dict(state, strict=True)
    except RuntimeError as e:
        first = str(e).split("\n")[1:2]
        raise ForgeryDetError(
            f"{path}: weights do not fit backbone {cfg.backbone!r} of the stored model settings "
            f"({' '.join(first).strip()[:160]}); the file was edited or written by another tool"
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
    try:
        train_state = _train_state(meta.get("train") or {}, tensors)
    except (KeyError, TypeError, ValueError, AttributeError) as e:
        raise ForgeryDetError(f"{path}: its metadata field train is not a training state ({type(e).__name__}: {e}; "
                              f"was the file edited?): re-copy it") from None
    return Checkpoint(model=model, meta=meta, path=path, train_state=train_state, identity=identity)


def _check_size(path: Path, cfg: ModelConfig) -> None:
    """Refuse, before anything is allocated, a stored config whose model would not fit in this machine's free memory:
    an edited bank_size of 10**12 or img_size of 10**9 ended in a traceback from the allocator, and one a little
    smaller would have been allocated, swapping or killed, before the weights were found not to fit."""
    img = cfg.img_size or 224
    need, free = estimate_train_bytes(cfg, 1, img), available_bytes(torch.device("cpu"))
    if free is not None and need > free:
        raise ForgeryDetError(f"{path}: the stored model settings need at least ~{need / 2**30:.1f} GiB to build the model (bank "
                              f"{cfg.bank_size:,}, {cfg.grid}x{cfg.grid} tokens of D={cfg.dim}, {img} px) but this "
                              f"machine has {free / 2**30:.1f} GiB free; was the metadata edited?")


_POSITION = ("epoch", "step", "best", "train_config", "optimizer")


def _train_state(tj: dict[str, Any], tensors: dict[str, torch.Tensor]) -> TrainState | None:
    """The TrainState stored in a training checkpoint; None in one written without it (a shipped model)."""
    if "train_config" not in tj:
        return None
    optimizer = None
    if "optimizer" in tj:
        optimizer = _unflatten_optimizer({k: v for k, v in tensors.items() if k.startswith("optim.")}, tj["optimizer"])
    return TrainState(epoch=int(tj["epoch"]), step=int(tj["step"]), best=float(tj["best"]),
                      train_config=tj["train_config"], optimizer_state=optimizer,
                      rng_tensors={k[len("train.") :]: v for k, v in tensors.items() if k.startswith("train.")},
                      rng={k: v for k, v in tj.items() if k not in _POSITION})


def _stored_number(path: Path, meta: dict[str, Any], key: str, default: float, high: float, advice: str) -> float:
    """extra[key] of a checkpoint as a number in (0, high), checked: a hand-edited value is a clear error, not
    a traceback at the first verdict."""
    raw = (meta.get("extra") or {}).get(key, default)
    try:
        value = float(raw)
    except (TypeError, ValueError):
        value = float("nan")
    if isinstance(raw, bool) or not 0.0 < value < high:
        raise ForgeryDetError(f"{path}: its stored {key} {raw!r} is not a number in (0, {high:g}) (was the metadata "
                              f"edited?): {advice}")
    return value
