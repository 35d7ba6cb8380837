"""training/state.py: the stored RNG states put back bit for bit, and which options `--resume` takes anew
(where to run, more epochs) and which must match the stored run; a new run refused over an existing one; a resumed
run's files found from the folder it started in, and refused when they changed."""

from __future__ import annotations

import dataclasses
import hashlib
import json
import os
import random
import shutil
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
import torch

from forgerydet.errors import ForgeryDetError
from forgerydet.training.augment import AugmentConfig
from forgerydet.training.config import TrainConfig
from forgerydet.model.checkpoint import load_checkpoint, save_checkpoint
from forgerydet.model.detector import Detector
from forgerydet.training.state import (check_new_run, check_same_data, data_path, grad_scaler, resumed_config,
                                      rng_state, set_rng_state, stamp_new_run)
from tests.helpers import tiny_config

LAST = Path("/runs/a/last.safetensors")


def _draws() -> tuple:
    return torch.rand(3).tolist(), random.random(), np.random.rand(2).tolist()


def test_rng_states_round_trip_through_json():
    torch.manual_seed(1)
    random.seed(2)
    np.random.seed(3)
    st = rng_state(2, 40, 0.75, {"lr": 1e-3}, {"state": {}})
    assert (st.epoch, st.step, st.best, st.train_config, st.optimizer_state) == (2, 40, 0.75, {"lr": 1e-3}, {"state": {}})
    assert st.rng_tensors["rng_torch"].dtype == torch.uint8
    st.rng = json.loads(json.dumps(st.rng))  # as stored in the checkpoint's metadata
    first = _draws()
    _draws()  # the run moves on (or a new process starts elsewhere)
    set_rng_state(st)
    assert _draws() == first


def test_each_torchrun_rank_resumes_its_own_rng_state_and_an_older_run_rank_0s(tmp_path):
    """Only rank 0's RNG state was stored and every rank resumed with it, so rank 1's dropout drew otherwise than in
    the run that went on (its generators had served no validation): a resumed torchrun run was not bit for bit.
    Each rank's state is stored and taken back by that rank; a run stored with rank 0's alone is resumed as before."""
    from forgerydet.training.state import rng_snapshot

    def seeded(seed: int) -> None:
        torch.manual_seed(seed)
        random.seed(seed)
        np.random.seed(seed)

    def at(seed: int):  # a rank's state, and what it draws next
        seeded(seed)
        return rng_snapshot(), _draws()

    (one, one_draws), (two, two_draws), (_, zero_draws) = at(11), at(12), at(10)
    seeded(10)
    st = rng_state(1, 5, 0.5, {}, None, others=[one, two])  # rank 0's own, now
    ck = save_checkpoint(tmp_path / "last.safetensors", Detector(tiny_config()), train_state=st)
    stored = load_checkpoint(ck).train_state  # through the file: tensors and JSON as read back
    for rank, want in enumerate((zero_draws, one_draws, two_draws)):
        _draws()
        set_rng_state(stored, rank)
        assert _draws() == want, rank
    older = rng_state(1, 5, 0.5, {}, {})  # rank 0's state alone, as every run stored it before
    older_draws = _draws()
    _draws()
    set_rng_state(older, 1)
    assert _draws() == older_draws


def test_cuda_generators_are_put_back_on_their_own_devices(monkeypatch):
    """Stored as rng_cuda_0..rng_cuda_N, they were put back in text order: on a machine of more than ten GPUs device
    2 got device 10's state."""
    st = rng_state(1, 5, 0.5, {}, {})
    st.rng_tensors.update({f"rng_cuda_{i}": torch.tensor([i], dtype=torch.uint8) for i in range(12)})
    got = []
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "set_rng_state_all", lambda states: got.extend(int(s) for s in states))
    set_rng_state(st)
    assert got == list(range(12))


def _overflowed_scaler() -> torch.amp.GradScaler:
    """An fp16 loss scaler after one overflowing step (scale halved) and two good ones (growth count 2)."""
    scaler = torch.amp.GradScaler("cpu", init_scale=1024.0, growth_interval=5)
    w = torch.nn.Parameter(torch.ones(2))
    opt = torch.optim.SGD([w], lr=0.1)
    for bad in (True, False, False):
        opt.zero_grad()
        scaler.scale((w * (float("inf") if bad else 1.0)).sum()).backward()
        scaler.step(opt)
        scaler.update()
    return scaler


def test_the_fp16_loss_scale_survives_a_checkpoint_and_is_put_back(tmp_path):
    before = _overflowed_scaler()
    assert (before.get_scale(), before.state_dict()["_growth_tracker"]) == (512.0, 2)
    st = rng_state(1, 3, 0.5, {"lr": 1e-3}, None, before.state_dict())
    save_checkpoint(tmp_path / "last.safetensors", Detector(tiny_config()), train_state=st)
    stored = load_checkpoint(tmp_path / "last.safetensors").train_state
    said: list = []
    after = grad_scaler("cpu", True, stored, said.append)
    assert after.state_dict() == before.state_dict() and said == []
    fresh = grad_scaler("cpu", True, None, said.append)  # a new run starts at the default scale
    assert fresh.get_scale() == 65536.0 and said == []


def test_a_resumed_fp16_run_without_a_stored_scale_says_it_starts_afresh():
    said: list = []
    scaler = grad_scaler("cpu", True, rng_state(1, 3, 0.5, {}, {}), said.append)  # stored with no scaler in use
    assert scaler.get_scale() == 65536.0
    assert [e["text"] for e in said] == ["the run stored no fp16 loss-scale state: its loss scale starts afresh"]
    assert grad_scaler("cpu", False, rng_state(1, 3, 0.5, {}, {}), said.append).state_dict() == {}
    assert len(said) == 1  # bf16/fp32 runs have no scaler to miss


def _stored(**kw) -> tuple:
    stored = TrainConfig(pairs="data/pairs.csv", out="/runs/a", epochs=3, lr=1e-3, device="cpu", **kw)
    state = rng_state(2, 20, 0.9, stored.to_dict(), None)
    ck = SimpleNamespace(model=SimpleNamespace(cfg=tiny_config()))
    return stored, state, ck


def test_where_to_run_and_more_epochs_come_from_the_new_call():
    stored, state, ck = _stored()
    call = TrainConfig(pairs="other.csv", out="/runs/b", epochs=5, lr=0.5, device="auto", workers=2)
    got = resumed_config(call, None, state, ck, {"out", "epochs", "device", "workers"}, LAST)
    assert (got.out, got.epochs, got.device, got.workers) == ("/runs/b", 5, "auto", 2)
    assert (got.pairs, got.lr, got.batch_size) == ("data/pairs.csv", 1e-3, stored.batch_size)  # not given: stored


def test_given_options_equal_to_the_stored_run_are_fine(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    _, state, ck = _stored()
    call = TrainConfig(pairs=str(tmp_path / "data" / "pairs.csv"), lr=1e-3, epochs=4)  # the same file, absolute
    got = resumed_config(call, tiny_config(), state, ck, {"pairs", "lr", "epochs", "dim"}, LAST)
    assert got.epochs == 4 and got.pairs == "data/pairs.csv"


def test_conflicting_options_are_all_named():
    _, state, ck = _stored()
    call = TrainConfig(lr=0.5, batch_size=8, epochs=4)
    with pytest.raises(ForgeryDetError) as e:
        resumed_config(call, tiny_config(dim=64), state, ck, {"lr", "batch_size", "dim", "epochs"}, LAST)
    assert str(e.value) == ("--resume continues /runs/a with its stored settings, but --batch-size 8 (the run has 32), "
                            "--dim 64 (the run has 32), --lr 0.5 (the run has 0.001): drop these options, or train "
                            "into a new --out")


def test_a_resumed_run_takes_an_aug_change_only_when_the_run_has_it():
    """`--aug` given again on --resume: the settings typed are compared with those the run recorded (JSON lists
    read as pairs); a differing one is named as the other options are, the ones not typed are not compared."""
    recorded = json.loads(json.dumps({**dataclasses.asdict(AugmentConfig(blur_sigma=(0.3, 1.5))), "noise_p": 0.4}))
    _, state, ck = _stored(augmentation=recorded)
    same = TrainConfig(augmentation={"noise_p": 0.4}, epochs=4)
    assert resumed_config(same, None, state, ck, {"augmentation", "epochs"}, LAST).augmentation == recorded
    other = TrainConfig(augmentation={"noise_p": 0.2, "noise_std": (1.0, 12.0), "blur_sigma": (0.3, 2.5)}, epochs=4)
    with pytest.raises(ForgeryDetError) as e:
        resumed_config(other, None, state, ck, {"augmentation", "epochs"}, LAST)
    assert str(e.value) == ("--resume continues /runs/a with its stored settings, but --aug blur_sigma=0.3,2.5 (the run "
                            "has 0.3,1.5), --aug noise_p=0.2 (the run has 0.4): drop these options, or train into a "
                            "new --out")
    _, old, ck = _stored()  # a run that recorded no augmentation: today's defaults
    with pytest.raises(ForgeryDetError, match=r"but --aug noise_p=0.4 \(the run has 0.2\)"):
        resumed_config(same, None, old, ck, {"augmentation", "epochs"}, LAST)


def test_hand_edited_stored_settings_are_said_as_the_files_not_as_a_class():
    """A run whose stored settings were edited said "invalid TrainConfig: invalid training option --lr -1.0 ..." on
    --resume (a class name, and no file); and "invalid AugmentConfig: ..." for its augmentation."""
    _, state, ck = _stored()
    state.train_config["lr"] = -1.0
    with pytest.raises(ForgeryDetError) as e:
        resumed_config(TrainConfig(epochs=4), None, state, ck, {"epochs"}, LAST)
    assert str(e.value) == (f"{LAST}: the stored training settings are invalid: --lr -1.0: use a number > 0; was the "
                            f"metadata edited?")
    _, state, ck = _stored()
    state.train_config["augmentation"] = {"noise_p": 2.0}
    with pytest.raises(ForgeryDetError) as e:
        resumed_config(TrainConfig(epochs=4), None, state, ck, {"epochs"}, LAST)
    assert str(e.value) == (f"{LAST}: the stored training settings are invalid: --aug noise_p=2.0: must be in [0, 1]; "
                            f"was the metadata edited?")
    assert "Config" not in str(e.value)


def test_nothing_left_to_train():
    _, state, ck = _stored()
    state.epoch = 3
    with pytest.raises(ForgeryDetError) as e:
        resumed_config(TrainConfig(), None, state, ck, set(), LAST)
    assert str(e.value) == f"{LAST} has finished 3 epoch(s) (all it was asked for): pass --epochs N with N > 3 to train more"
    with pytest.raises(ForgeryDetError, match=r"so --epochs 2 leaves nothing to train: pass --epochs N with N > 3"):
        resumed_config(TrainConfig(epochs=2), None, state, ck, {"epochs"}, LAST)
    assert resumed_config(TrainConfig(), None, _stored()[1], ck, set(), LAST).epochs == 3  # 2 of 3 done: go on


def test_an_unfinished_run_is_not_cut_short_by_a_smaller_epoch_count():
    """`--resume --epochs 5` on an 8-epoch run stopped after 3 used to train epochs 4-5 on a schedule recomputed
    for 5; the run keeps its length (or is extended)."""
    _, state, ck = _stored()
    state.epoch, state.train_config["epochs"] = 3, 8
    with pytest.raises(ForgeryDetError) as e:
        resumed_config(TrainConfig(epochs=5), None, state, ck, {"epochs"}, LAST)
    assert str(e.value).startswith("--epochs 5 would cut /runs/a, a run of 8 epochs with 3 done, short")
    assert resumed_config(TrainConfig(epochs=8), None, state, ck, {"epochs"}, LAST).epochs == 8
    assert resumed_config(TrainConfig(epochs=10), None, state, ck, {"epochs"}, LAST).epochs == 10
    assert resumed_config(TrainConfig(), None, state, ck, set(), LAST).epochs == 8


def test_a_stored_none_reads_as_none_not_pythons_none():
    from types import SimpleNamespace

    from forgerydet.training.state import option_conflicts

    got = option_conflicts(["init"], [(SimpleNamespace(init="run1/best.safetensors"), {"init": None})], "the run has")
    assert got == ["--init run1/best.safetensors (the run has none)"]


def test_a_new_run_is_refused_over_an_existing_one_unless_told(tmp_path):
    out = tmp_path / "run"
    check_new_run(out, overwrite=False)  # no folder yet
    out.mkdir()
    check_new_run(out, overwrite=False)  # an empty folder
    (out / "best.safetensors").write_bytes(b"x")
    with pytest.raises(ForgeryDetError, match=r"already holds a training run \(best.safetensors\): continue it with "
                                              r"--resume, train into another --out, or give --overwrite"):
        check_new_run(out, overwrite=False)
    (out / "metrics.jsonl").write_text('{"epoch": 1}\n{"epoch": 2}\n{"epoch": 3}\n')
    with pytest.raises(ForgeryDetError, match=r"\(3 epochs logged\)"):
        check_new_run(out, overwrite=False)
    check_new_run(out, overwrite=True)
    assert (out / "best.safetensors").read_bytes() == b"x"  # nothing is removed before the new run writes


def _started_in(start: Path, pairs: str = "sbi/pairs.csv", **kw) -> TrainConfig:
    """A run started in folder `start` with a relative pairs path, as training stamps it."""
    f = start / pairs
    f.parent.mkdir(parents=True, exist_ok=True)
    if not f.exists():
        f.write_text("real,fake,group,split\n")
    cwd = Path.cwd()
    try:
        os.chdir(start)
        return stamp_new_run(TrainConfig(pairs=pairs, out=str(start / "run"), epochs=3, device="cpu", **kw))
    finally:
        os.chdir(cwd)


def test_a_run_records_the_bytes_it_was_initialised_from_and_a_rewritten_init_file_does_not_stop_its_resume(tmp_path):
    """`--init t1/best.safetensors` was recorded by path alone: once a continued t1 run rewrote that file, `info`
    named a model the run never started from. Its sha256 is recorded now, and only shown: the resume reads `last`."""
    start = tmp_path / "project"
    (start / "t1").mkdir(parents=True)
    (start / "t1" / "best.safetensors").write_bytes(b"weights of epoch 3")
    stored = _started_in(start, init="t1/best.safetensors")
    assert stored.data_sha256["init"] == hashlib.sha256(b"weights of epoch 3").hexdigest()
    (start / "t1" / "best.safetensors").write_bytes(b"weights of epoch 5")
    assert check_same_data(stored, LAST) == []


def test_a_resumed_run_finds_its_files_from_any_folder(tmp_path, monkeypatch):
    start = tmp_path / "project"
    stored = _started_in(start)
    assert stored.workdir == str(start) and set(stored.data_sha256) == {"pairs"}
    state = rng_state(1, 10, 0.9, stored.to_dict(), None)
    ck = SimpleNamespace(model=SimpleNamespace(cfg=tiny_config()))
    elsewhere = tmp_path / "elsewhere"
    (elsewhere / "sbi").mkdir(parents=True)
    (elsewhere / "sbi" / "pairs.csv").write_text("real,fake,group,split\nother\n")  # the same relative name
    monkeypatch.chdir(elsewhere)
    call = TrainConfig(out=str(start / "run"), epochs=4)
    got = resumed_config(call, None, state, ck, {"out", "epochs"}, LAST)
    assert got.pairs == "sbi/pairs.csv"  # kept as typed, so that a later move of the project still finds it
    assert Path(data_path(got, "pairs")) == start / "sbi" / "pairs.csv"  # the run's file, not this folder's namesake
    assert check_same_data(got, LAST) == []
    # the same file named from here is no conflict; this folder's namesake is
    resumed_config(TrainConfig(pairs=str(start / "sbi" / "pairs.csv"), epochs=4), None, state, ck, {"pairs"}, LAST)
    with pytest.raises(ForgeryDetError, match=r"--pairs sbi/pairs.csv \(the run has .*project/sbi/pairs.csv\)"):
        resumed_config(TrainConfig(pairs="sbi/pairs.csv", epochs=4), None, state, ck, {"pairs"}, LAST)
    # from the folder it started in, the stored relative path is kept as it was typed
    monkeypatch.chdir(start)
    assert resumed_config(call, None, state, ck, {"out", "epochs"}, LAST).pairs == "sbi/pairs.csv"
    # resumed from elsewhere, then the project moved: still found (the resumed run stored the path as typed)
    state2 = rng_state(2, 20, 0.9, got.to_dict(), None)
    start.rename(tmp_path / "moved")
    monkeypatch.chdir(tmp_path / "moved")
    again = resumed_config(TrainConfig(epochs=5), None, state2, ck, {"epochs"}, LAST)
    assert data_path(again, "pairs") == "sbi/pairs.csv" and check_same_data(again, LAST) == []


def test_a_resumed_run_refuses_changed_or_missing_data(tmp_path, monkeypatch):
    start = tmp_path / "project"
    (start / "watch.csv").parent.mkdir(parents=True)
    (start / "watch.csv").write_text("path,label\n")
    stored = _started_in(start, watch="watch.csv")
    monkeypatch.chdir(start)
    assert set(stored.data_sha256) == {"pairs", "watch"} and check_same_data(stored, LAST) == []
    (start / "watch.csv").write_text("path,label\na.png,0\n")
    with pytest.raises(ForgeryDetError, match=r"watch.csv has changed since the run started .*so its faces may differ"):
        check_same_data(stored, LAST)
    (start / "sbi" / "pairs.csv").write_text("real,fake,group,split\nnew split\n")
    with pytest.raises(ForgeryDetError, match=r"sbi/pairs.csv has changed since the run started \(another sha256\), so "
                                              r"its splits and faces may differ: restore that file, or start a new run "
                                              r"from this one with `forgerydet train --init /runs/a/last.safetensors"):
        check_same_data(stored, LAST)
    (start / "sbi" / "pairs.csv").unlink()
    with pytest.raises(ForgeryDetError, match=r"the run's --pairs file sbi/pairs.csv is gone \(the run started in "):
        check_same_data(stored, LAST)
    # a run stored before the digests were recorded is not checked, and says which files it could not check
    old = dataclasses.replace(stored, data_sha256=None, workdir=None)
    assert check_same_data(old, LAST) == ["pairs", "watch"]


def test_a_moved_project_resumes_from_where_it_is_now(tmp_path, monkeypatch):
    start = tmp_path / "project"
    stored = _started_in(start)
    state = rng_state(1, 10, 0.9, stored.to_dict(), None)
    ck = SimpleNamespace(model=SimpleNamespace(cfg=tiny_config()))
    start.rename(tmp_path / "moved")  # or copied back from the GPU machine
    monkeypatch.chdir(tmp_path / "moved")
    got = resumed_config(TrainConfig(out="run", epochs=4), None, state, ck, {"out", "epochs"}, LAST)
    assert got.pairs == data_path(got, "pairs") == "sbi/pairs.csv" and check_same_data(got, LAST) == []  # from here
    # the same file given again, by another name: its recorded sha256 says it is the run's
    again = resumed_config(TrainConfig(pairs=str(tmp_path / "moved" / "sbi" / "pairs.csv"), epochs=4), None, state, ck,
                           {"pairs", "epochs"}, LAST)
    assert Path(again.pairs) == tmp_path / "moved" / "sbi" / "pairs.csv"
    (tmp_path / "other.csv").write_text("real,fake,group,split\nx\n")
    with pytest.raises(ForgeryDetError, match="--pairs .*other.csv \\(the run has sbi/pairs.csv\\)"):
        resumed_config(TrainConfig(pairs=str(tmp_path / "other.csv"), epochs=4), None, state, ck, {"pairs"}, LAST)
    # a copy beside the original: its own file, while that has the recorded content (the original's may change)
    shutil.copytree(tmp_path / "moved", tmp_path / "copy")
    (tmp_path / "moved" / "sbi" / "pairs.csv").write_text("real,fake,group,split\nchanged\n")
    monkeypatch.chdir(tmp_path / "copy")
    assert check_same_data(resumed_config(TrainConfig(epochs=4), None, state, ck, {"epochs"}, LAST), LAST) == []


def test_a_new_time_budget_on_resume_is_taken():
    stored, state, ck = _stored(max_minutes=58)
    got = resumed_config(TrainConfig(epochs=7, max_minutes=95), None, state, ck, {"epochs", "max_minutes"}, LAST)
    assert got.max_minutes == 95  # make model's second step stretches the budget so (it was accepted, then ignored)
    assert resumed_config(TrainConfig(epochs=7), None, state, ck, {"epochs"}, LAST).max_minutes == 58


def test_the_best_epoch_is_the_highest_auc_then_the_lowest_validation_loss():
    from forgerydet.training.state import improves

    h = [{"val_auc": 0.9, "val_loss": 0.6}, {"val_auc": 1.0, "val_loss": 0.66}]  # AUC 1.0 first at epoch 2
    assert improves({"val_auc": 1.0, "val_loss": 0.43}, h, 1.0, "val")  # the same AUC, surer: the better epoch
    assert not improves({"val_auc": 1.0, "val_loss": 0.70}, h, 1.0, "val")
    assert not improves({"val_auc": 0.95, "val_loss": 0.1}, h, 1.0, "val")  # the AUC decides first
    assert improves({"val_auc": 0.8, "val_loss": 0.9}, [], -1.0, "val")
    w = [{"val_auc": 0.7, "watch_auc": 0.8, "val_loss": 0.5}]
    assert improves({"val_auc": 0.6, "watch_auc": 0.8, "val_loss": 0.4}, w, 0.8, "watch")
    assert not improves({"val_auc": 0.9, "watch_auc": 0.79, "val_loss": 0.1}, w, 0.8, "watch")


def _run_files(tmp_path, aucs, best_held):
    """A run's last.safetensors after len(aucs) epochs (their validation AUCs), and a best.safetensors of epoch
    `best_held` (0: none), as a kill -9 between the epoch-end writes leaves them."""
    from forgerydet.model.checkpoint import TrainState

    history = [{"epoch": k + 1, "val_auc": a, "val_loss": 0.5} for k, a in enumerate(aucs)]
    model = Detector(tiny_config())
    cfg = TrainConfig().to_dict()
    last = save_checkpoint(tmp_path / "last.safetensors", model, history=history, extra={"epochs_done": len(aucs)},
                           train_state=TrainState(len(aucs), 4 * len(aucs), max(aucs), cfg,
                                                              optimizer_state={"state": {}, "param_groups": []}))
    if best_held:
        save_checkpoint(tmp_path / "best.safetensors", model, history=history[:best_held],
                        extra={"epochs_done": best_held}, train_state=TrainState(best_held, 4, aucs[0], cfg))
    return load_checkpoint(last, "cpu")


@pytest.mark.parametrize("aucs,held,rewritten", [
    ([0.53, 0.55], 1, True),  # epoch 2 was the best: its best write was the one stopped
    ([0.53, 0.55], 0, True),  # stopped before the first best write ended (none there)
    ([0.53, 0.55], 2, False),  # all written
    ([0.55, 0.53], 1, False),  # epoch 2 was no better: best is right as it is
])
def test_a_resume_catches_best_and_the_log_up_with_last(tmp_path, aucs, held, rewritten):
    """`kill -9` between writing last and best lost the best epoch for good: a finished run was never resumed, and
    an unfinished one rewrote best only for an epoch better still."""
    from forgerydet.model.meta import read_meta
    from forgerydet.training.state import catch_up

    ck = _run_files(tmp_path, aucs, held)
    (tmp_path / "metrics.jsonl").write_text(json.dumps({"epoch": 1}) + "\n")  # the log of epoch 1 only
    said = catch_up(ck, tmp_path / "best.safetensors", tmp_path / "metrics.jsonl")
    assert bool(said) == rewritten and (not said or "written again from last.safetensors" in said)
    if held or rewritten:
        assert read_meta(tmp_path / "best.safetensors")["extra"]["epochs_done"] == (2 if rewritten else held)
    assert [json.loads(line)["epoch"] for line in (tmp_path / "metrics.jsonl").read_text().splitlines()] == [1, 2]


def test_a_resumed_run_goes_on_with_the_budget_it_had_left():
    """A run killed and resumed got a whole new --max-minutes budget (and its time-based schedule started again):
    50 epochs where the uninterrupted run stopped at 31."""
    from forgerydet.training.state import spent

    history = [{"epoch": 1, "run_seconds": 40.0}, {"epoch": 2, "run_seconds": 95.5}]
    assert spent(history, 300.0) == 95.5  # goes on from its last finished epoch
    assert spent(history, None) == 0.0  # --max-minutes given again (a new budget), or none
    assert spent([{"epoch": 1}], 300.0) == 0.0  # stored before runs recorded it
    with pytest.raises(ForgeryDetError, match=r"^the run has used its whole --max-minutes budget \(1.5 min\): to train "
                                              r"on, give --max-minutes M with --resume for a new budget of M minutes$"):
        spent(history, 90.0)


def test_a_run_is_resumed_by_as_many_processes_as_trained_it(tmp_path, monkeypatch):
    """A run of 2 torchrun processes resumed by one went on with its stored step count against a schedule of twice
    the steps per epoch: it ended half-way down its cosine, never at the floor rate; a 1-process run resumed by two
    trained its remaining epochs at the floor rate. Both were silent."""
    monkeypatch.chdir(tmp_path)
    (tmp_path / "pairs.csv").write_text("real,fake,group,split\n")
    assert stamp_new_run(TrainConfig(), 2).processes == 2 and stamp_new_run(TrainConfig()).processes == 1
    for trained, now in ((2, 1), (1, 2), (4, 2)):
        _, state, ck = _stored(processes=trained)
        with pytest.raises(ForgeryDetError) as e:
            resumed_config(TrainConfig(), None, state, ck, set(), LAST, now)
        assert str(e.value).startswith(f"--resume: /runs/a was trained by "
                                       + ("one process (no torchrun)" if trained == 1 else
                                          f"{trained} processes (torchrun --nproc_per_node {trained})")
                                       + f", and this resume runs {now} process{'es' if now > 1 else ''}"), e.value
        assert resumed_config(TrainConfig(), None, state, ck, set(), LAST, trained).processes == trained
    _, state, ck = _stored()  # a run started before the number was recorded: not checked
    assert resumed_config(TrainConfig(), None, state, ck, set(), LAST, 2).processes is None
