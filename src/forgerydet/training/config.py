"""TrainConfig: every training hyper-parameter, stored in each training checkpoint (`--resume` reuses it)."""

from __future__ import annotations

import dataclasses
import math
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Sequence

from forgerydet.errors import ForgeryDetError, option_error, value_text
from forgerydet.model.calibration import DEFAULT_FPR
from forgerydet.model.config import config_from_dict
from forgerydet.paths import check_checkpoint_out, check_not_input, check_output
from forgerydet.training.augment import AugmentConfig


@dataclass
class TrainConfig:
    """Training hyper-parameters (stored in every training checkpoint; --resume reuses them).

    pairs: pairs.csv path. out: run folder (best/last checkpoints, metrics.jsonl).
    epochs, batch_size, lr (AdamW peak), weight_decay, warmup (fraction of all steps, linear), clip (grad norm),
    nce_weight (lambda of InfoNCE), single_share (share of batches in 'single' mode), workers (data loader
    processes; -1 = auto: none on machines of up to 4 cores, where a loader process costs the training
    more than it gives - measured on 2 cores: 25 img/s without, 10 img/s with one), seed, device ('auto' | 'cpu' | 'cuda' | 'cuda:N'), amp ('auto': bf16 on CUDA, off on CPU;
    'bf16' | 'fp16' | 'off'), augment, sbi_online (re-make self-blended fakes every epoch), sbi_local (share of
    those online self-blends whose mask is one facial part - eyes, nose, mouth or lower face - instead of the
    whole face: pseudo-fakes of local edits, see pairs/sbi.py; 0 = whole-face masks only), swap_blends (share of
    online pseudo-fakes blended from ANOTHER person's face, pose-matched, instead of the face itself: Face X-ray's
    blended images, see pairs/swapblend.py; 0 = self-blends only), pair_reference (how 'pair' steps' references are
    drawn, training/data.PAIR_REFERENCES: 'source' = a fake against the real it was blended from, aligned, a real
    against another frame; 'other' / 'reaugmented' misalign both classes' references alike, see TrainPairs),
    steps_per_epoch (cap, for quick runs; None = the whole epoch; 0 is refused), val_batch_size,
    max_minutes (wall-clock budget: the learning-rate schedule follows the larger of step/total and
    elapsed/budget, and training ends at the first epoch end past the budget; None = run all epochs),
    calibration_fpr (the stored threshold lets at most this share of held-out real validation faces be
    called FAKE; see model/calibration.py), tune ('all': the whole backbone is fine-tuned; 'norm': only its
    normalisation layers' affine parameters, as GenD / LN-tuning of foundation encoders, the projection,
    DifferenceAttention and head being trained in full; 'none': the backbone frozen whole, only the projection,
    DifferenceAttention and head trained, so no gradient runs through the backbone), init (a checkpoint whose
    weights, key encoder and bank a new run starts from, e.g. the shipped model fine-tuned on one's own faces;
    its model config is kept, the optimizer and schedule start afresh; None = a new model), watch (a CSV
    path,label[,group] of face crops never trained on, e.g. real forgeries of one's own: scored in 'single' mode
    at every epoch end, its AUC kept in the history), select ('val': best.safetensors is the epoch of the highest
    self-blend validation AUC; 'watch': of the highest watch-list AUC; ties go to the lower validation loss), augmentation (the AugmentConfig fields the
    run trains with, recorded when it starts, so `--resume` keeps them when forgerydet's defaults change between
    sessions; None = today's defaults, a dict of some fields (`train --aug`) = today's defaults for the rest; the
    run records every field at its start), workdir (the folder the run was started in: relative paths above are
    from there, so `--resume` finds the same files from any folder; None in runs started before 2026-12-06),
    data_sha256 (the sha256 of the pairs file and of the watch list when the run started: `--resume` refuses
    changed files, whose splits or faces would differ; and of the --init checkpoint, since 2026-12-07, shown by
    `info` and never checked; None likewise), processes (how many processes trained it: torchrun's WORLD_SIZE,
    1 without it; its steps and their schedule are counted in batches of all of them, so `--resume` refuses
    another number; None in runs started before 2026-12-08).
    """

    pairs: str = "pairs.csv"
    out: str = "models/run"
    epochs: int = 10
    batch_size: int = 32
    lr: float = 3e-4
    weight_decay: float = 0.05
    warmup: float = 0.05
    clip: float = 1.0
    nce_weight: float = 0.1
    single_share: float = 0.5
    workers: int = -1
    seed: int = 0
    device: str = "auto"
    amp: str = "auto"
    augment: bool = True
    sbi_online: bool = True
    sbi_local: float = 0.0
    swap_blends: float = 0.0
    pair_reference: str = "source"
    steps_per_epoch: int | None = None
    val_batch_size: int = 64
    max_minutes: float | None = None
    calibration_fpr: float = DEFAULT_FPR
    tune: str = "all"
    init: str | None = None
    watch: str | None = None
    select: str = "val"
    augmentation: dict[str, Any] | None = None
    workdir: str | None = None
    data_sha256: dict[str, str] | None = None
    processes: int | None = None

    def __post_init__(self) -> None:
        fin = math.isfinite
        for name, ok, rule in (
            ("epochs", self.epochs >= 1, "a whole number >= 1"), ("batch_size", self.batch_size >= 2, ">= 2"),
            ("lr", self.lr > 0 and fin(self.lr), "a number > 0"),
            ("single_share", 0.0 <= self.single_share <= 1.0, "a share in [0, 1]"),
            ("warmup", 0.0 <= self.warmup < 1.0, "a share in [0, 1)"),
            ("clip", self.clip > 0 and fin(self.clip), "a gradient norm > 0"),
            ("nce_weight", self.nce_weight >= 0 and fin(self.nce_weight), "a loss weight >= 0"),
            ("workers", self.workers >= -1, "-1 (auto), 0 (none) or a number of processes"),
            ("amp", self.amp in ("auto", "bf16", "fp16", "off"), "one of auto, bf16, fp16, off"),
            ("max_minutes", self.max_minutes is None or (self.max_minutes > 0 and fin(self.max_minutes)),
             "a number of minutes > 0"),
            ("calibration_fpr", 0.0 < self.calibration_fpr < 1.0, "a rate in (0, 1)"),
            ("tune", self.tune in TUNE_MODES, f"one of {', '.join(TUNE_MODES)}"),
            ("steps_per_epoch", self.steps_per_epoch is None or self.steps_per_epoch >= 1, ">= 1"),
            ("val_batch_size", self.val_batch_size >= 1, ">= 1"),
            ("weight_decay", self.weight_decay >= 0 and fin(self.weight_decay), "a number >= 0"),
            ("sbi_local", 0.0 <= self.sbi_local <= 1.0, "a share in [0, 1]"),
            ("swap_blends", 0.0 <= self.swap_blends <= 1.0, "a share in [0, 1]"),
            ("select", self.select in SELECT_BY, f"one of {', '.join(SELECT_BY)}"),
            ("pair_reference", self.pair_reference in PAIR_REFERENCES, f"one of {', '.join(PAIR_REFERENCES)}"),
            ("seed", 0 <= self.seed < 2**32, "a whole number from 0 to 2^32 - 1"),  # numpy's seeds
        ):
            if not ok:  # named as the option a user gives (a resumed run's stored settings use the same names)
                raise option_error(f"--{name.replace('_', '-')}", getattr(self, name), f"use {rule}")
        if self.select == "watch" and not self.watch:
            raise ForgeryDetError("--select watch picks the best epoch by the watch list: give --watch LIST.csv")
        augment_config(self.augmentation)  # a bad recorded value fails here, before any work
        if self.sbi_local > 0 and not self.sbi_online:
            raise ForgeryDetError("--sbi-local shapes the self-blends made during training: it needs --sbi-online")
        if self.swap_blends > 0 and not self.sbi_online:
            raise ForgeryDetError("--swap-blends makes pseudo-fakes during training: it needs --sbi-online")

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


def augment_config(recorded: dict[str, Any] | None) -> AugmentConfig:
    """The AugmentConfig of a recorded `augmentation` (JSON turned its ranges into lists), or today's defaults."""
    if recorded is None:
        return AugmentConfig()
    if not isinstance(recorded, dict):
        raise ForgeryDetError(f"augmentation={value_text(recorded)} must be a dict of --aug settings (NAME: VALUE)")
    try:
        return config_from_dict(AugmentConfig, {k: tuple(v) if isinstance(v, list) else v for k, v in recorded.items()},
                                "--aug")
    except ForgeryDetError as e:
        raise aug_error(str(e).removeprefix("--aug: ")) from None


_AUG_FIELD = re.compile(r"(\w+=.+?) must ")


def aug_error(message: str) -> ForgeryDetError:
    """An AugmentConfig check's "noise_p=2.0 must be in [0, 1]" as the option says it: "--aug noise_p=2.0: must be
    in [0, 1]" (as every option's error, errors.option_error); one of two settings together after "--aug: "."""
    field = _AUG_FIELD.match(message)
    return ForgeryDetError(f"--aug {field.group(1)}: must {message[field.end():]}" if field else f"--aug: {message}")


_TRUE, _FALSE = ("true", "yes", "on", "1"), ("false", "no", "off", "0")


def aug_text(value: Any) -> str:
    """An augmentation setting's value as `train --aug` takes it: LOW,HIGH for a range, else the value."""
    return ",".join(map(str, value)) if isinstance(value, tuple) else str(value)


def _aug_value(name: str, text: str, default: Any) -> Any:
    """One `--aug NAME=TEXT` value, parsed as the type of the field's default (bool, float, or a LOW,HIGH pair)."""
    if isinstance(default, bool):
        if text.lower() in _TRUE + _FALSE:
            return text.lower() in _TRUE
        raise ForgeryDetError(f"--aug {name}={text}: expected true or false")
    if isinstance(default, tuple):
        parts = [t.strip() for t in text.split(",")]
        kind, what = (int, "whole numbers") if isinstance(default[0], int) else (float, "numbers")
        try:
            pair = tuple(kind(t) for t in parts)
            if len(pair) == 2 and all(math.isfinite(v) for v in pair):
                return pair
        except ValueError:
            pass
        raise ForgeryDetError(f"--aug {name}={text}: expected two {what} LOW,HIGH (today: {aug_text(default)})")
    try:
        value = float(text)
    except ValueError:
        value = math.nan
    if not math.isfinite(value):
        raise ForgeryDetError(f"--aug {name}={text}: expected a number (today: {default})")
    return value


def augmentation_with(changes: Sequence[str] | None, augment: bool = True) -> dict[str, Any] | None:
    """The `augmentation` of a run whose `train --aug NAME=VALUE ...` changes some of today's AugmentConfig
    defaults: the changed fields only (the run records every field when it starts). None when nothing is changed.
    A ForgeryDetError for an unknown or repeated field, a value that does not parse or is out of range, or changes
    to the augmentation that --no-augment turns off."""
    if not changes:
        return None
    if not augment:
        raise ForgeryDetError("--aug changes the augmentation that --no-augment turns off: give one or the other")
    base = dataclasses.asdict(AugmentConfig())
    new: dict[str, Any] = {}
    for item in changes:
        name, eq, text = item.partition("=")
        name = name.strip().replace("-", "_")
        if not eq or not name or not text.strip():
            raise ForgeryDetError(f"--aug {item!r}: expected NAME=VALUE, e.g. --aug noise_p=0.4")
        if name not in base:
            raise ForgeryDetError(f"--aug {name}: no such augmentation setting; use one of {', '.join(base)}")
        if name in new:
            raise ForgeryDetError(f"--aug {name} is given twice")
        new[name] = _aug_value(name, text.strip(), base[name])
    moot = [k for k in new if k.startswith(QUALITY_TRANSFORMS)] if new.get("quality") is False else []
    if moot:  # as --aug with --no-augment: a change that would be recorded and never applied
        raise ForgeryDetError(f"--aug {', '.join(moot)} changes a per-image quality transform that --aug quality=false "
                              f"turns off: give one or the other")
    try:
        AugmentConfig(**{**base, **new})
    except ForgeryDetError as e:
        raise aug_error(str(e)) from None
    return new


# the AugmentConfig fields of the per-image quality transforms, which quality=False turns off together
QUALITY_TRANSFORMS = ("blur_", "motion_", "sharpen_", "smooth_", "rescale", "noise_", "video_", "jpeg_")
TUNE_MODES = ("all", "norm", "none")
SELECT_BY = ("val", "watch")
PAIR_REFERENCES = ("source", "other", "reaugmented")  # how 'pair' steps draw references (training/data.TrainPairs)


def check_watch_path(path: str | Path) -> None:
    """A --watch list that is not there is one ForgeryDetError (light: `train` calls it before loading torch)."""
    if not Path(path).is_file():
        raise ForgeryDetError(f"--watch {path}: no such file (a CSV path,label or a pairs.csv with a test split)")


def check_checkpoint_rewrite(checkpoint: str | Path, out: str | Path | None, pairs: str | Path, batch_size: int) -> None:
    """`calibrate`'s and `rebuild-bank`'s checks before any scoring: the batch size, and the file the checkpoint is
    rewritten into (--out, else itself in place): writable, not the --pairs file, and an --out not a file of
    another kind."""
    if batch_size < 1:
        raise option_error("--batch-size", batch_size, "must be >= 1")
    target, option = (out, "--out") if out else (checkpoint, "--checkpoint")
    check_output(target, option)
    check_not_input(target, option, [("the --pairs file", pairs)])
    if out:
        check_checkpoint_out(out, option)
