"""training/config.py: TrainConfig's defaults, its checks (each bad value named), and its dict form."""

from __future__ import annotations

import dataclasses
import json

import pytest

from forgerydet.errors import ForgeryDetError
from forgerydet.model.calibration import DEFAULT_FPR
from forgerydet.model.config import config_from_dict
from forgerydet.training.augment import AugmentConfig
from forgerydet.training.config import PAIR_REFERENCES, TUNE_MODES, TrainConfig, augment_config, augmentation_with, check_checkpoint_rewrite


def test_defaults():
    c = TrainConfig()
    assert (c.epochs, c.batch_size, c.lr, c.weight_decay, c.warmup, c.workers, c.device, c.amp) == (
        10, 32, 3e-4, 0.05, 0.05, -1, "auto", "auto")
    assert c.steps_per_epoch is None and c.max_minutes is None and c.calibration_fpr == DEFAULT_FPR
    assert c.tune == "all" and TUNE_MODES == ("all", "norm", "none")
    assert c.watch is None and c.select == "val"
    assert c.sbi_local == 0.0 and c.swap_blends == 0.0
    assert c.pair_reference == "source" and PAIR_REFERENCES == ("source", "other", "reaugmented")


def test_pseudo_fakes_made_in_training_need_online_blending():
    for option in ({"sbi_local": 0.2}, {"swap_blends": 0.3}):
        with pytest.raises(ForgeryDetError, match="needs --sbi-online"):
            TrainConfig(sbi_online=False, **option)


@pytest.mark.parametrize("name,bad", [
    ("epochs", 0), ("batch_size", 1), ("lr", 0.0), ("lr", -1e-3), ("single_share", 1.5), ("single_share", -0.1),
    ("warmup", 1.0), ("warmup", -0.01), ("workers", -2), ("amp", "fp8"), ("max_minutes", 0), ("calibration_fpr", 0.0),
    ("calibration_fpr", 1.0), ("tune", "some"), ("steps_per_epoch", 0), ("val_batch_size", 0), ("weight_decay", -0.1), ("select", "best"),
    ("swap_blends", 1.5), ("swap_blends", -0.1), ("lr", float("inf")), ("lr", float("nan")), ("nce_weight", -1.0),
    ("max_minutes", float("nan")), ("clip", 0.0), ("weight_decay", float("nan")), ("pair_reference", "self"),
    ("seed", -1), ("seed", 2**32),  # np.random.seed raised ValueError (a traceback) after the model was built
])
def test_each_bad_value_is_named(name, bad):
    with pytest.raises(ForgeryDetError) as e:
        TrainConfig(**{name: bad})
    assert str(e.value).startswith(f"--{name.replace('_', '-')} {bad!r}: use ")


@pytest.mark.parametrize("name,ok", [
    ("epochs", 1), ("batch_size", 2), ("single_share", 0.0), ("single_share", 1.0), ("warmup", 0.0), ("workers", 0),
    ("amp", "off"), ("amp", "fp16"), ("amp", "bf16"), ("max_minutes", 0.5), ("tune", "norm"), ("steps_per_epoch", 1),
    ("weight_decay", 0.0), ("swap_blends", 0.0), ("swap_blends", 1.0), ("pair_reference", "other"),
    ("pair_reference", "reaugmented"),
])
def test_boundary_values_are_accepted(name, ok):
    assert getattr(TrainConfig(**{name: ok}), name) == ok


def test_dict_form_is_json_and_round_trips():
    c = TrainConfig(pairs="p/pairs.csv", out="runs/a", epochs=3, max_minutes=1.5, steps_per_epoch=4, tune="norm")
    d = c.to_dict()
    assert list(d) == [f.name for f in dataclasses.fields(TrainConfig)]
    assert config_from_dict(TrainConfig, json.loads(json.dumps(d))) == c  # as stored in, and read from, a checkpoint
    d["epochs"] = 0
    with pytest.raises(ForgeryDetError, match=r"^--epochs 0: use a whole number >= 1$"):
        config_from_dict(TrainConfig, d)


def test_a_recorded_augmentation_comes_back_from_json_and_bad_ones_are_refused():
    recorded = json.loads(json.dumps(dataclasses.asdict(AugmentConfig(noise_std=(2.0, 9.0)))))
    assert recorded["noise_std"] == [2.0, 9.0]
    assert augment_config(recorded) == AugmentConfig(noise_std=(2.0, 9.0))
    assert augment_config(None) == AugmentConfig()
    assert TrainConfig(augmentation=recorded).augmentation == recorded
    with pytest.raises(ForgeryDetError, match=r"unknown fields \['sparkle_p'\]"):
        TrainConfig(augmentation={"sparkle_p": 0.5})
    with pytest.raises(ForgeryDetError, match="noise_p=2"):
        TrainConfig(augmentation={"noise_p": 2})
    with pytest.raises(ForgeryDetError, match="a dict of --aug settings"):
        TrainConfig(augmentation=[1, 2])


def test_aug_changes_parse_as_each_fields_type_and_leave_the_rest_to_the_defaults():
    assert augmentation_with(None) is None and augmentation_with([]) is None
    got = augmentation_with(["noise_p=0.4", "blur-sigma = 0.5, 3", "jpeg_quality=40,90", "quality=on"])
    assert got == {"noise_p": 0.4, "blur_sigma": (0.5, 3.0), "jpeg_quality": (40, 90), "quality": True}
    assert isinstance(got["jpeg_quality"][0], int) and isinstance(got["blur_sigma"][0], float)
    assert augment_config(got) == AugmentConfig(noise_p=0.4, blur_sigma=(0.5, 3.0), jpeg_quality=(40, 90))
    assert augmentation_with(["quality=FALSE", "hflip_p=0"]) == {"quality": False, "hflip_p": 0.0}
    assert TrainConfig(augmentation=got).augmentation == got  # a partial dict is a valid TrainConfig


@pytest.mark.parametrize("items, message", [
    (["noise_p"], "--aug 'noise_p': expected NAME=VALUE, e.g. --aug noise_p=0.4"),
    (["=0.4"], "--aug '=0.4': expected NAME=VALUE"),
    (["noise_p="], "--aug 'noise_p=': expected NAME=VALUE"),
    (["sparkle_p=0.5"], "--aug sparkle_p: no such augmentation setting; use one of hflip_p, affine_p,"),
    (["noise_p=0.3", "noise-p=0.4"], "--aug noise_p is given twice"),
    (["noise_p=lots"], "--aug noise_p=lots: expected a number (today: 0.2)"),
    (["noise_p=nan"], "--aug noise_p=nan: expected a number"),
    (["noise_p=1.5"], "--aug noise_p=1.5: must be in [0, 1]"),
    (["noise_std=3"], "--aug noise_std=3: expected two numbers LOW,HIGH (today: 1.0,12.0)"),
    (["noise_std=1,2,3"], "--aug noise_std=1,2,3: expected two numbers"),
    (["noise_std=1,inf"], "--aug noise_std=1,inf: expected two numbers"),
    (["jpeg_quality=30.5,90"], "--aug jpeg_quality=30.5,90: expected two whole numbers LOW,HIGH (today: 30,95)"),
    (["blur_sigma=3,1"], "--aug blur_sigma=(3.0, 1.0): must be a (low, high) pair with 0 <= low <= high"),
    (["jpeg_quality=30,101"], "--aug jpeg_quality=(30, 101): must lie in [1, 100]"),
    (["quality=maybe"], "--aug quality=maybe: expected true or false"),
])
def test_a_bad_aug_change_is_named(items, message):
    with pytest.raises(ForgeryDetError) as e:
        augmentation_with(items)
    assert str(e.value).startswith(message), str(e.value)


def test_aug_changes_need_augmentation_on():
    with pytest.raises(ForgeryDetError, match="--aug changes the augmentation that --no-augment turns off"):
        augmentation_with(["noise_p=0.4"], augment=False)
    assert augmentation_with(None, augment=False) is None


def test_aug_changes_to_the_quality_transforms_that_quality_false_turns_off_are_refused():
    """--aug quality=false --aug noise_p=0.9 trained with no noise at all while the run recorded, and info showed,
    noise_p=0.9 as one of its changes."""
    with pytest.raises(ForgeryDetError, match="--aug noise_p, jpeg_quality changes a per-image quality transform"):
        augmentation_with(["quality=false", "noise_p=0.9", "hflip_p=0", "jpeg_quality=40,50"])
    assert augmentation_with(["quality=true", "noise_p=0.9"]) == {"quality": True, "noise_p": 0.9}


def test_a_checkpoint_rewrite_is_checked_before_any_work(tmp_path):
    pairs = tmp_path / "pairs.csv"
    pairs.write_text("real,fake\n")
    ck = tmp_path / "m.safetensors"
    ck.write_bytes(b"\x02\x00\x00\x00\x00\x00\x00\x00{}")
    check_checkpoint_rewrite(ck, None, pairs, 8)  # in place: fine
    check_checkpoint_rewrite(ck, tmp_path / "new.safetensors", pairs, 8)
    with pytest.raises(ForgeryDetError, match="^--batch-size 0: must be >= 1$"):
        check_checkpoint_rewrite(ck, None, pairs, 0)
    with pytest.raises(ForgeryDetError, match="--out .*pairs.csv is the --pairs file"):
        check_checkpoint_rewrite(ck, pairs, pairs, 8)
    notes = tmp_path / "notes.txt"
    notes.write_text("mine")
    with pytest.raises(ForgeryDetError, match="--out .*notes.txt is an existing file that is not a forgerydet checkpoint"):
        check_checkpoint_rewrite(ck, notes, pairs, 8)
