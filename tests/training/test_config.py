"""training/config.py: TrainConfig's defaults, its checks (each bad value named), and its dict form."""

from __future__ import annotations

import dataclasses
import json

import pytest

from forgerydet.errors import ForgeryDetError
from forgerydet.model.calibration import DEFAULT_FPR
from forgerydet.model.config import config_from_dict
from forgerydet.training.config import TUNE_MODES, TrainConfig


def test_defaults():
    c = TrainConfig()
    assert (c.epochs, c.batch_size, c.lr, c.weight_decay, c.warmup, c.workers, c.device, c.amp) == (
        10, 32, 3e-4, 0.05, 0.05, -1, "auto", "auto")
    assert c.steps_per_epoch is None and c.max_minutes is None and c.calibration_fpr == DEFAULT_FPR
    assert c.tune == "all" and TUNE_MODES == ("all", "norm", "none")
    assert c.watch is None and c.select == "val"


@pytest.mark.parametrize("name,bad", [
    ("epochs", 0), ("batch_size", 1), ("lr", 0.0), ("lr", -1e-3), ("single_share", 1.5), ("single_share", -0.1),
    ("warmup", 1.0), ("warmup", -0.01), ("workers", -2), ("amp", "fp8"), ("max_minutes", 0), ("calibration_fpr", 0.0),
    ("calibration_fpr", 1.0), ("tune", "some"), ("steps_per_epoch", 0), ("val_batch_size", 0), ("weight_decay", -0.1), ("select", "best"),
])
def test_each_bad_value_is_named(name, bad):
    with pytest.raises(ForgeryDetError) as e:
        TrainConfig(**{name: bad})
    assert str(e.value) == f"invalid training option {name}={bad!r}"


@pytest.mark.parametrize("name,ok", [
    ("epochs", 1), ("batch_size", 2), ("single_share", 0.0), ("single_share", 1.0), ("warmup", 0.0), ("workers", 0),
    ("amp", "off"), ("amp", "fp16"), ("amp", "bf16"), ("max_minutes", 0.5), ("tune", "norm"), ("steps_per_epoch", 1),
    ("weight_decay", 0.0),
])
def test_boundary_values_are_accepted(name, ok):
    assert getattr(TrainConfig(**{name: ok}), name) == ok


def test_dict_form_is_json_and_round_trips():
    c = TrainConfig(pairs="p/pairs.csv", out="runs/a", epochs=3, max_minutes=1.5, steps_per_epoch=4, tune="norm")
    d = c.to_dict()
    assert list(d) == [f.name for f in dataclasses.fields(TrainConfig)]
    assert config_from_dict(TrainConfig, json.loads(json.dumps(d))) == c  # as stored in, and read from, a checkpoint
    d["epochs"] = 0
    with pytest.raises(ForgeryDetError, match=r"invalid TrainConfig: invalid training option epochs=0"):
        config_from_dict(TrainConfig, d)
