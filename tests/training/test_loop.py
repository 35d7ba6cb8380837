"""Training: loss goes down, resume is bit-for-bit, the bank rebuild uses exactly the real training faces,
bad pairs.csv files are clear errors, and DDP (2 gloo processes) matches one process."""

from __future__ import annotations

import csv
from pathlib import Path

import pytest
import torch
from safetensors import safe_open
from typer.testing import CliRunner

from forgerydet.cli.app import app
from forgerydet.errors import ForgeryDetError
from forgerydet.model.checkpoint import load_checkpoint, save_checkpoint
from forgerydet.pairs.table import read_pairs
from forgerydet.scan.scanner import Scanner
from forgerydet.training.loop import cosine_lr, set_tuning, train
from tests.helpers import tcfg, tiny_config, tiny_model


def test_cosine_schedule_is_a_pure_function():
    assert cosine_lr(0, 100, 1.0, 0.1) == pytest.approx(0.1)
    assert cosine_lr(9, 100, 1.0, 0.1) == pytest.approx(1.0)
    assert cosine_lr(99, 100, 1.0, 0.1) == pytest.approx(0.01, abs=1e-3)
    assert cosine_lr(50, 100, 1.0, 0.1) > cosine_lr(60, 100, 1.0, 0.1)


@pytest.mark.slow
def test_loss_decreases_and_bank_rebuilt_every_epoch(pairs, tmp_path):
    events = []
    res = train(tcfg(pairs, tmp_path / "run", epochs=4), tiny_config(bank_size=64, drop=0.0), on_event=events.append)
    hist = res["history"]
    assert len(hist) == 4
    assert hist[-1]["train_loss"] < 0.8 * hist[0]["train_loss"], [h["train_loss"] for h in hist]
    assert hist[-1]["val_auc"] >= 0.9  # the patch is plainly visible
    rebuilds = [e for e in events if e["event"] == "rebuild"]
    assert [e["entries"] for e in rebuilds] == [24] * 4  # 6 train groups x 4 real frames, every epoch
    modes = {e["mode"] for e in events if e["event"] == "step"}
    assert modes == {"pair", "single"}  # the scan-time path is trained too
    for name in ("best.safetensors", "last.safetensors", "metrics.jsonl"):
        assert (tmp_path / "run" / name).is_file()
    r = CliRunner().invoke(app, ["info", str(tmp_path / "run" / "best.safetensors")])
    assert r.exit_code == 0 and "24 / 64" in r.output


def _model_tensors(path: Path) -> dict[str, torch.Tensor]:
    with safe_open(str(path), "pt") as f:
        return {k: f.get_tensor(k) for k in f.keys() if k.startswith(("model.", "optim."))}


@pytest.mark.slow
def test_resume_after_kill_is_bit_for_bit(pairs, tmp_path):
    cfg = tiny_config(bank_size=64, drop=0.2)
    train(tcfg(pairs, tmp_path / "a", epochs=3, augment=True), cfg)

    class Killed(Exception):
        pass

    def kill(e):
        if e["event"] == "step" and e["epoch"] == 3 and e["step"] == 2:
            raise Killed  # dies mid-epoch, after the epoch-2 checkpoint
    with pytest.raises(Killed):
        train(tcfg(pairs, tmp_path / "b", epochs=3, augment=True), cfg, on_event=kill)
    assert load_checkpoint(tmp_path / "b" / "last.safetensors").extra["epochs_done"] == 2
    train(tcfg(pairs, tmp_path / "b", epochs=3, augment=True), resume=True)
    a, b = _model_tensors(tmp_path / "a" / "last.safetensors"), _model_tensors(tmp_path / "b" / "last.safetensors")
    assert a.keys() == b.keys()
    different = [k for k in a if not torch.equal(a[k], b[k])]
    assert different == []
    la = (tmp_path / "a" / "metrics.jsonl").read_text().splitlines()
    lb = (tmp_path / "b" / "metrics.jsonl").read_text().splitlines()
    assert len(la) == len(lb) == 3


def _two_rank_worker(rank: int, ports: list[int], pairs: str, tmp: str) -> None:
    """One rank of 2-process gloo runs, as torchrun starts it: 2 epochs into a; 2 epochs into b stopped at the start of
    the second (a Ctrl-C on every rank, after epoch 1's checkpoint), then b resumed."""
    import os

    import torch.distributed as dist

    torch.set_num_threads(1)

    def stop(e):
        if e["event"] == "epoch_start" and e["epoch"] == 2:
            raise KeyboardInterrupt
    for port, out, resume, on_event in zip(ports, "abb", (False, False, True), (None, stop, None)):
        os.environ.update(RANK=str(rank), LOCAL_RANK=str(rank), WORLD_SIZE="2", LOCAL_WORLD_SIZE="2",
                          MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port))
        try:
            train(tcfg(Path(pairs), Path(tmp) / out, epochs=2, augment=True),
                  None if resume else tiny_config(bank_size=64, drop=0.2), resume=resume, on_event=on_event)
        except KeyboardInterrupt:
            assert load_checkpoint(Path(tmp) / out / "last.safetensors").extra["epochs_done"] == 1
        finally:
            if dist.is_initialized():
                dist.destroy_process_group()


@pytest.mark.slow
def test_a_two_process_run_resumed_is_bit_for_bit_the_uninterrupted_run(pairs, tmp_path):
    """Only rank 0's RNG state was stored, and rank 1 resumed with it: its dropout drew otherwise than in the
    uninterrupted run (rank 0's generators had also served its validation), so a torchrun run stopped and resumed
    trained other weights (measured: epoch-3 train loss 0.89957 uninterrupted, 0.89867 resumed). Each rank resumes its own."""
    import torch.distributed as dist

    if not dist.is_available() or not dist.is_gloo_available():
        pytest.skip("torch.distributed with gloo is not available here")
    import socket

    import torch.multiprocessing as mp

    ports = []
    for _ in range(3):
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            ports.append(s.getsockname()[1])
    mp.spawn(_two_rank_worker, args=(ports, str(pairs), str(tmp_path)), nprocs=2)
    la, lb = (load_checkpoint(tmp_path / r / "last.safetensors").history for r in "ab")
    assert [h["train_loss"] for h in lb] == [h["train_loss"] for h in la] and len(la) == 2
    a, b = _model_tensors(tmp_path / "a" / "last.safetensors"), _model_tensors(tmp_path / "b" / "last.safetensors")
    assert [k for k in a if not torch.equal(a[k], b[k])] == []


def _write_csv(path: Path, header: list[str], rows: list[list[str]]) -> Path:
    with open(path, "w", newline="") as fh:
        w = csv.writer(fh)
        w.writerow(header)
        w.writerows(rows)
    return path


def test_bad_pairs_files_are_clear_errors(pairs, tmp_path):
    d = pairs.parent
    cases = {
        "missing column": (_write_csv(tmp_path / "a.csv", ["real", "fake", "split"], [["x", "y", "train"]]), "missing column(s) group"),
        "missing file": (_write_csv(tmp_path / "b.csv", ["real", "fake", "group", "split"],
                                    [[str(d / "g0_f0_real.png"), str(d / "nope.png"), "g0", "train"],
                                     [str(d / "g5_f0_real.png"), str(d / "g5_f0_fake.png"), "g5", "val"]]), "b.csv:2: column 'fake': file not found"),
        "bad split": (_write_csv(tmp_path / "c.csv", ["real", "fake", "group", "split"],
                                 [[str(d / "g0_f0_real.png"), str(d / "g0_f0_fake.png"), "g0", "training"]]), "c.csv:2: column 'split' is 'training'"),
        "empty val": (_write_csv(tmp_path / "e.csv", ["real", "fake", "group", "split"],
                                 [[str(d / "g0_f0_real.png"), str(d / "g0_f0_fake.png"), "g0", "train"]]), "'val' split is empty"),
        "leak": (_write_csv(tmp_path / "f.csv", ["real", "fake", "group", "split"],
                            [[str(d / "g0_f0_real.png"), str(d / "g0_f0_fake.png"), "g0", "train"],
                             [str(d / "g0_f1_real.png"), str(d / "g0_f1_fake.png"), "g0", "val"]]), "appear in 'train' and 'val'"),
        "bad landmarks": (_write_csv(tmp_path / "g.csv", ["real", "fake", "group", "split", "landmarks"],
                                     [[str(d / "g0_f0_real.png"), str(d / "g0_f0_fake.png"), "g0", "train", "1 2 3"]]), "g.csv:2: column 'landmarks'"),
        # NaN or collapsed landmarks used to pass here and stop training mid-epoch (or never, were the row not drawn)
        "NaN landmarks": (_write_csv(tmp_path / "h.csv", ["real", "fake", "group", "split", "method", "landmarks"],
                                     [[str(d / "g0_f0_real.png"), "", "g0", "train", "sbi", " ".join(["nan"] * 10)]]),
                          "h.csv:2: column 'landmarks' holds NaN or infinite values"),
        "one point": (_write_csv(tmp_path / "i.csv", ["real", "fake", "group", "split", "method", "landmarks"],
                                 [[str(d / "g0_f0_real.png"), "", "g0", "train", "sbi", " ".join(["1e9"] * 10)]]),
                      "i.csv:2: column 'landmarks' puts the 5 points within 2 px of each other"),
        "bad split, online row": (_write_csv(tmp_path / "j.csv", ["real", "fake", "group", "split", "method", "landmarks"],
                                             [[str(d / "g0_f0_real.png"), "", "g0", "bogus", "sbi", "1 2 3 4 5 6 7 8 9 10"]]),
                                  "j.csv:2: column 'split' is 'bogus'"),  # not "column 'fake' is empty"
    }
    for name, (path, msg) in cases.items():
        with pytest.raises(ForgeryDetError, match=None) as ei:
            read_pairs(path, need_splits=("train", "val"))
        assert msg in str(ei.value), (name, str(ei.value))
    out = tmp_path / "run"
    out.mkdir()
    (out / "last.safetensors").write_bytes(b"precious")
    r = CliRunner().invoke(app, ["train", "--pairs", str(cases["missing file"][0]), "--out", str(out), "--device", "cpu",
                                 "--overwrite"])  # even when told to replace the run
    assert r.exit_code == 1 and "file not found" in r.output and "Traceback" not in r.output
    assert (out / "last.safetensors").read_bytes() == b"precious"  # nothing already written is lost


def test_a_corrupt_face_image_stops_the_run_before_its_first_step(pairs, tmp_path):
    """A pairs file whose val fake is a PNG cut short: the run trained a whole epoch and then died at validation
    with nothing saved (h4's pass). Now it stops in one line before the model trains a step."""
    d = pairs.parent
    bad = tmp_path / "cut.png"
    bad.write_bytes((d / "g5_f0_fake.png").read_bytes()[:200])
    path = _write_csv(tmp_path / "p.csv", ["real", "fake", "group", "split"],
                      [[str(d / "g0_f0_real.png"), str(d / "g0_f0_fake.png"), "g0", "train"],
                       [str(d / "g1_f0_real.png"), str(d / "g1_f0_fake.png"), "g1", "train"],
                       [str(d / "g5_f0_real.png"), str(bad), "g5", "val"]])
    events = []
    with pytest.raises(ForgeryDetError, match=r"1 of its 6 face images cannot be read.*cut.png"):
        train(tcfg(path, tmp_path / "run", epochs=1), tiny_config(), on_event=events.append)
    assert not any(e["event"] in ("start", "step") for e in events)
    assert not (tmp_path / "run").exists() or not any((tmp_path / "run").iterdir())


def test_a_resumed_run_keeps_to_the_budget_it_started_with(pairs, tmp_path):
    """Resumed without --max-minutes, a run used to get its whole budget again (a killed 0.4-minute run trained 50
    epochs where the uninterrupted one stopped at 31); with its budget spent it is refused, not run for no steps."""
    res = train(tcfg(pairs, tmp_path / "run", epochs=50, max_minutes=0.001), tiny_config(bank_size=64))
    assert len(res["history"]) == 1 and res["history"][0]["run_seconds"] >= 0.06
    with pytest.raises(ForgeryDetError, match="has used its whole --max-minutes budget"):
        train(tcfg(pairs, tmp_path / "run", epochs=50, max_minutes=0.001), resume=True)
    res = train(tcfg(pairs, tmp_path / "run", epochs=50, max_minutes=0.001), resume=True, given={"max_minutes"})
    assert len(res["history"]) == 2  # a new budget, given: one more epoch


def test_training_stores_calibration_and_keeps_to_the_time_budget(pairs, tmp_path):
    res = train(tcfg(pairs, tmp_path / "run", epochs=50, max_minutes=0.001), tiny_config(bank_size=64))
    assert len(res["history"]) == 1  # the budget ended the run at the first epoch end
    ck = load_checkpoint(res["best"])
    extra = ck.extra
    cal = extra["calibration"]
    assert 0 < extra["threshold"] < 1 and extra["temperature"] > 0 and cal["target_fpr"] == 0.05
    assert cal["val_fpr"] <= 0.05 + 1e-9
    assert cal["calibrated_on"] == str(pairs)  # its val split: what rebuild-bank's refit line names (was PAIRS.csv)
    scanner = Scanner(res["best"])
    assert scanner.threshold == extra["threshold"] and scanner.temperature == extra["temperature"]
    r = CliRunner().invoke(app, ["calibrate", "--checkpoint", res["best"], "--pairs", str(pairs), "--fpr", "0.2",
                                 "--device", "cpu"])
    assert r.exit_code == 0, r.output
    again = load_checkpoint(res["best"]).extra["calibration"]
    assert again["target_fpr"] == 0.2 and again["val_fpr"] <= 0.2 + 1e-9
    r = CliRunner().invoke(app, ["calibrate", "--checkpoint", res["best"], "--pairs", str(pairs), "--fpr", "1.5"])
    assert r.exit_code == 1 and "Traceback" not in r.output


def _watch_list(pairs: Path, split: str, out: Path, swapped: bool = False) -> Path:
    """path,label rows of a split's real and fake faces (the synthetic pairs store both); `swapped` labels them
    the other way round, so that its AUC is 1 - the validation AUC and the two pick different epochs."""
    table = read_pairs(pairs)
    real, fake = ("fake", "real") if swapped else ("real", "fake")
    rows = [[str(r.real), real] for r in table.split(split)] + [[str(r.fake), fake] for r in table.split(split)]
    return _write_csv(out, ["path", "label"], rows)


def test_a_watch_list_is_scored_every_epoch_and_can_pick_the_best(pairs, tmp_path):
    """--watch: held-out faces scored at each epoch end (AUC in the history); --select watch: best.safetensors is
    the epoch of the highest watch AUC, not of the highest validation AUC."""
    watch = _watch_list(pairs, "val", tmp_path / "watch.csv", swapped=True)
    events = []
    res = train(tcfg(pairs, tmp_path / "run", epochs=3, steps_per_epoch=2, watch=str(watch), select="watch"),
                tiny_config(bank_size=64), on_event=events.append)
    hist = res["history"]
    n = len(read_pairs(pairs).split("val"))
    assert [h["watch_n"] for h in hist] == [2 * n] * 3 and all(0 <= h["watch_auc"] <= 1 for h in hist)
    assert next(e for e in events if e["event"] == "start")["watch_faces"] == 2 * n
    assert not any("look cut from one source" in e.get("text", "") for e in events)  # faces of several sources
    aucs = [h["watch_auc"] for h in hist]
    assert aucs == pytest.approx([1 - h["val_auc"] for h in hist])
    best_epoch = aucs.index(max(aucs)) + 1
    val = [h["val_auc"] for h in hist]
    assert best_epoch != val.index(max(val)) + 1  # the two rules disagree here, and the watch list's won
    assert load_checkpoint(res["best"]).extra["epochs_done"] == best_epoch
    marked = [e["epoch"] for e in events if e["event"] == "epoch_end" and e["best"]]
    assert marked[-1] == best_epoch and marked == sorted(set(marked))


def test_a_watch_list_of_one_source_is_noticed_when_training_starts(pairs, tmp_path):
    table = read_pairs(pairs)
    one = tmp_path / "clip-1234abcd"
    one.mkdir()
    rows = []
    for i, r in enumerate(table.split("val")):
        (one / f"f{i:06d}_0.png").write_bytes(r.real.read_bytes())
        rows += [[str(one / f"f{i:06d}_0.png"), "real"], [str(r.fake), "fake"]]
    watch = _write_csv(tmp_path / "watch.csv", ["path", "label"], rows)
    events = []
    train(tcfg(pairs, tmp_path / "run", epochs=1, steps_per_epoch=1, watch=str(watch)), tiny_config(bank_size=64),
          on_event=events.append)
    said = [e["text"] for e in events if e["event"] == "notice"]
    assert len(said) == 1 and "real faces look cut from one source (clip-1234abcd)" in said[0]


def test_a_watch_list_of_training_faces_or_videos_is_refused_before_training(pairs, tmp_path):
    with pytest.raises(ForgeryDetError, match="is a training face of"):
        train(tcfg(pairs, tmp_path / "a", watch=str(_watch_list(pairs, "train", tmp_path / "w.csv"))), tiny_config())
    clip = tmp_path / "clip.mp4"
    clip.write_bytes(b"x")
    table = read_pairs(pairs)
    bad = _write_csv(tmp_path / "v.csv", ["path", "label"], [[str(table.split("val")[0].real), "0"], [str(clip), "1"]])
    with pytest.raises(ForgeryDetError, match="is not an image; the watch list holds face crops"):
        train(tcfg(pairs, tmp_path / "b", watch=str(bad)), tiny_config())
    with pytest.raises(ForgeryDetError, match="give --watch LIST.csv"):
        tcfg(pairs, tmp_path / "c", select="watch")
    assert not (tmp_path / "a" / "last.safetensors").exists() and not (tmp_path / "b" / "last.safetensors").exists()


def test_norm_tuning_trains_only_normalisation_in_the_backbone():
    m = tiny_model()
    total = sum(p.numel() for p in m.trainable_parameters())
    n = set_tuning(m, "norm")
    assert 0 < n < total
    trainable = {k for k, p in m.named_parameters() if p.requires_grad}
    assert any(k.startswith("attention.") for k in trainable) and any(k.startswith("head.") for k in trainable)
    assert not any(k.startswith("key_encoder.") for k in trainable)
    backbone = [k for k in trainable if k.startswith("encoder.backbone.")]
    assert backbone and all(".bn" in k or "norm" in k for k in backbone), backbone


def test_frozen_backbone_trains_everything_but_the_backbone_and_leaves_it_unchanged(pairs, tmp_path):
    m = tiny_model()
    n = set_tuning(m, "none")
    trainable = {k for k, p in m.named_parameters() if p.requires_grad}
    assert n == sum(p.numel() for k, p in m.named_parameters() if k in trainable) > 0
    assert any(k.startswith("attention.") for k in trainable) and any(k.startswith("head.") for k in trainable)
    assert not any(k.startswith(("encoder.backbone.", "key_encoder.")) for k in trainable)
    assert any(k.startswith("encoder.") for k in trainable)  # the projection after the backbone is trained
    torch.manual_seed(0)  # the run below builds its model after the same seed
    start = tiny_model(bank_size=64).state_dict()
    before = {k: v.clone() for k, v in start.items() if k.startswith("encoder.") and v.is_floating_point()}
    res = train(tcfg(pairs, tmp_path / "run", epochs=1, tune="none"), tiny_config(bank_size=64))
    after = load_checkpoint(res["last"]).model.state_dict()
    moved = {k for k, v in before.items() if not torch.equal(v, after[k])}
    assert moved and all(not k.startswith("encoder.backbone.") for k in moved), moved  # the projection learnt;
    # the frozen backbone is untouched, its BatchNorm running statistics too (in 'norm' they move with training)
    assert any("running_" in k for k in before if k.startswith("encoder.backbone."))


def test_no_reference_ablation_ignores_bank_and_mode():
    m = tiny_model(reference="none").eval()
    x = torch.rand(3, 3, 64, 64)
    a, b = m(x, "single"), m(x, "pair", reference=x.flip(0))
    assert torch.equal(a["logits"], b["logits"]) and a["neighbours"].shape == (3, 0)
    assert m.bank.filled == 0  # it never needed one


def test_no_reference_training_has_no_bank_to_rebuild_or_fuse(pairs, tmp_path):
    events = []
    train(tcfg(pairs, tmp_path / "run", epochs=1), tiny_config(bank_size=64, reference="none"), on_event=events.append)
    assert not [e for e in events if e["event"] == "rebuild"]  # nothing to rebuild, nothing to report
    ck = load_checkpoint(tmp_path / "run" / "best.safetensors")
    assert ck.bank_fusion is None and ck.model.bank.filled == 0  # no similarity to fuse: the temperature alone


def test_init_fine_tunes_a_checkpoint_with_its_settings(pairs, tmp_path):
    train(tcfg(pairs, tmp_path / "a", epochs=1), tiny_config(bank_size=64))
    start = tmp_path / "a" / "best.safetensors"
    base = load_checkpoint(start).model
    events = []
    # no model config given: the checkpoint's is used, its weights are the start (not a fresh init)
    train(tcfg(pairs, tmp_path / "b", epochs=1, lr=1e-12, init=str(start)), on_event=events.append)
    began = next(e for e in events if e["event"] == "start")
    assert began["init"] == str(start) and began["bank_size"] == 64
    # the inherited bank is refilled from this run's reals before the first step, so that a 'single' step never
    # recalls a face's own source (the inherited entries' sources are unknown)
    kinds = [(e["event"], e.get("epoch")) for e in events if e["event"] in ("rebuild", "step")]
    assert kinds[0] == ("rebuild", 0) and kinds[1][0] == "step"
    tuned = load_checkpoint(tmp_path / "b" / "last.safetensors")
    assert tuned.model.cfg.to_dict() == base.cfg.to_dict()
    a, b = base.state_dict(), tuned.model.state_dict()
    w = next(k for k in a if k.startswith("encoder.") and k.endswith("weight") and a[k].ndim == 4)
    assert torch.allclose(a[w], b[w], atol=1e-6)  # lr ~0: still the checkpoint's weights
    assert tuned.train_state.train_config["init"] == str(start)  # recorded, so --resume continues it
    # the start's training faces stay counted as seen (tools/unseen_photos.py), though this run's bank lists its own
    seen_before = load_checkpoint(start).training_faces
    assert seen_before and tuned.extra["earlier_faces"] == sorted(seen_before)
    assert seen_before <= tuned.training_faces
    train(tcfg(pairs, tmp_path / "b", epochs=2), resume=True, given={"epochs"})  # and a resumed run too
    assert load_checkpoint(tmp_path / "b" / "last.safetensors").extra["earlier_faces"] == sorted(seen_before)
    # a model option that contradicts the checkpoint is refused, not ignored; so is a file that is not there
    # a bank filled from another run's faces (the shipped file's: ~12,000) names sources this run does not have
    ck = load_checkpoint(start)
    ck.model.bank.source[: ck.model.bank.filled] = 10_000
    save_checkpoint(tmp_path / "other_run.safetensors", ck.model)
    res = train(tcfg(pairs, tmp_path / "e", epochs=1, steps_per_epoch=2, single_share=1.0,
                     init=str(tmp_path / "other_run.safetensors")))
    assert len(res["history"]) == 1  # it trained in 'single' mode (it raised an IndexError before)
    with pytest.raises(ForgeryDetError, match="--init .* keeps that model's settings.*--bank-size 128"):
        train(tcfg(pairs, tmp_path / "c", epochs=1, init=str(start)), tiny_config(bank_size=128), given={"bank_size"})
    with pytest.raises(ForgeryDetError):
        train(tcfg(pairs, tmp_path / "d", epochs=1, init=str(tmp_path / "missing.safetensors")))


def test_a_run_keeps_its_recorded_augmentation_when_resumed(pairs, tmp_path, monkeypatch):
    import dataclasses
    import json

    from forgerydet.training import data as data_mod
    from forgerydet.training.augment import AugmentConfig

    seen = []
    real_init = data_mod.TrainPairs.__init__

    def spy(self, *a, **kw):
        seen.append(kw["augment_cfg"])
        real_init(self, *a, **kw)
    monkeypatch.setattr(data_mod.TrainPairs, "__init__", spy)
    out = tmp_path / "run"
    train(tcfg(pairs, out, epochs=1, augment=True, steps_per_epoch=2), tiny_config(bank_size=64))
    stored = load_checkpoint(out / "last.safetensors").train_state.train_config["augmentation"]
    assert stored["blur_sigma"] == list(AugmentConfig().blur_sigma) and seen[0] == AugmentConfig()  # today's, recorded

    # the run is resumed by a forgerydet whose defaults changed: it keeps what it recorded
    with safe_open(str(out / "last.safetensors"), "pt") as f:
        meta, tensors = f.metadata(), {k: f.get_tensor(k) for k in f.keys()}
    tj = json.loads(meta["train"])
    tj["train_config"]["augmentation"]["blur_sigma"] = [0.5, 3.5]
    meta["train"] = json.dumps(tj)
    from safetensors.torch import save_file

    save_file(tensors, str(out / "last.safetensors"), metadata=meta)
    events = []
    train(tcfg(pairs, out, epochs=2), resume=True, on_event=events.append, given={"epochs"})
    assert seen[1].blur_sigma == (0.5, 3.5) and seen[1].noise_std == AugmentConfig().noise_std
    assert not [e for e in events if e["event"] == "notice"]

    # a run started before the augmentation was recorded continues with today's defaults, and says so
    del tj["train_config"]["augmentation"]
    tj["train_config"]["epochs"] = 2
    meta["train"] = json.dumps(tj)
    save_file(tensors, str(out / "last.safetensors"), metadata=meta)
    events = []
    train(tcfg(pairs, out, epochs=2), resume=True, on_event=events.append, given={"epochs"})
    notices = [e["text"] for e in events if e["event"] == "notice"]
    assert len(notices) == 1 and "recorded no augmentation setting for affine_p, blur_p" in notices[0]
    assert seen[2] == AugmentConfig()

    # `train --aug noise_p=0.4`: the change trains, and the run records every field with it
    out2 = tmp_path / "run2"
    train(tcfg(pairs, out2, epochs=1, augment=True, steps_per_epoch=2, augmentation={"noise_p": 0.4}),
          tiny_config(bank_size=64))
    assert seen[3] == AugmentConfig(noise_p=0.4)
    stored = load_checkpoint(out2 / "last.safetensors").train_state.train_config["augmentation"]
    assert stored == json.loads(json.dumps(dataclasses.asdict(AugmentConfig(noise_p=0.4))))


def test_a_run_folder_is_never_replaced_unasked_and_resumes_from_anywhere(pairs, tmp_path, monkeypatch):
    import shutil

    monkeypatch.chdir(pairs.parent.parent)
    rel = str(pairs.relative_to(pairs.parent.parent))  # typed relative to the folder the run starts in
    out = tmp_path / "run"
    train(tcfg(rel, out, epochs=1, steps_per_epoch=2), tiny_config(bank_size=64))
    before = {n: (out / n).read_bytes() for n in ("best.safetensors", "last.safetensors", "metrics.jsonl")}
    with pytest.raises(ForgeryDetError, match=r"already holds a training run \(1 epoch logged\)"):
        train(tcfg(rel, out, epochs=1, steps_per_epoch=2), tiny_config(bank_size=64))  # the same command again
    assert {n: (out / n).read_bytes() for n in before} == before

    # best.safetensors records how it was trained (not the optimizer or RNG states, which only resuming needs)
    best = load_checkpoint(out / "best.safetensors").train_state
    assert best.train_config["steps_per_epoch"] == 2 and best.train_config["pairs"] == rel
    assert best.optimizer_state is None and best.epoch == 1
    assert load_checkpoint(out / "best.safetensors").extra["bank_sources_root"] == str(pairs.parent.parent)

    # resumed from another folder: the run's own pairs file, found from the folder it started in
    monkeypatch.chdir(tmp_path)
    res = train(tcfg("unused.csv", out, epochs=2), resume=True, given={"epochs"})
    assert [h["epoch"] for h in res["history"]] == [1, 2]

    # a copy of best.safetensors as last cannot be continued
    other = tmp_path / "copied"
    other.mkdir()
    shutil.copy(out / "best.safetensors", other / "last.safetensors")
    with pytest.raises(ForgeryDetError, match="holds no training state to continue .* with --init instead"):
        train(tcfg(rel, other, epochs=3), resume=True, given={"epochs"})
    train(tcfg(str(pairs), out, epochs=1, steps_per_epoch=2), tiny_config(bank_size=64), overwrite=True)
    assert len(load_checkpoint(out / "last.safetensors").history) == 1  # replaced, as asked


def test_infonce_negatives_leave_out_the_queries_own_source(pairs, tmp_path, monkeypatch):
    """After an epoch-end rebuild the bank holds every training real, so each 'pair' query's own source (its
    positive's near-copy) is in the queue: those slots are excluded from its negatives, and only those."""
    import forgerydet.training.loop as loop

    seen = []
    real = loop.info_nce

    def recording(q, k, queue, temperature, exclude=None):
        seen.append((queue.shape[0], exclude.clone()))
        return real(q, k, queue, temperature, exclude=exclude)

    monkeypatch.setattr(loop, "info_nce", recording)
    train(tcfg(pairs, tmp_path / "run", epochs=2, steps_per_epoch=2, single_share=0.0), tiny_config(bank_size=64))
    assert seen and all(ex.shape == (ex.shape[0], n) for n, ex in seen)
    assert any(ex.any() for _, ex in seen[2:])  # epoch 2, after the rebuild: own-source slots are there, excluded
    assert all(not ex.all(dim=1).any() for _, ex in seen)  # never every negative of a query


def test_slot_updates_grow_the_bank_first_and_keep_each_slot_to_one_source(pairs, tmp_path, monkeypatch):
    """slot_momentum > 0 (Python API): the bank used to stay at its first few entries, updated by any face, each
    slot keeping its first source's label (own-source exclusion then hid the wrong slots). Now a bank that is not
    full grows, and a full one moves only a slot of the face's own source."""
    import forgerydet.model.bank as bank_mod

    updates = []
    real_update = bank_mod.MemoryBank.update_slots

    def recording(self, slots, values, momentum):
        updates.append((self.source[slots].clone(), values))
        return real_update(self, slots, values, momentum)

    monkeypatch.setattr(bank_mod.MemoryBank, "update_slots", recording)
    sizes = []
    real_enqueue = bank_mod.MemoryBank.enqueue

    def enqueue(self, values, source=None):
        real_enqueue(self, values, source)
        sizes.append(self.filled)

    monkeypatch.setattr(bank_mod.MemoryBank, "enqueue", enqueue)
    cfg = tiny_config(bank_size=16)
    cfg.slot_momentum = 0.9
    train(tcfg(pairs, tmp_path / "run", epochs=1, steps_per_epoch=6, single_share=0.0), cfg)
    assert sizes[:3] == [6, 12, 16]  # it grew by each batch of 6 until full (it stayed at 6, updating those)
    assert updates  # and then moved slots
    assert all((src >= 0).all() for src, _ in updates)  # labelled ones, each by faces of that source (train_step)


def test_a_stop_while_an_epochs_checkpoints_are_written_leaves_both_or_neither(pairs, tmp_path, monkeypatch):
    """The hostile pass stopped a run between its last and best writes: last counted the epoch as the best, best was
    never written, and the resumed run ended naming a best.safetensors that did not exist."""
    import os
    import signal

    import forgerydet.training.loop as loop

    real_save = loop.save_checkpoint

    def save(path, *a, **k):
        out = real_save(path, *a, **k)
        if Path(path).name == "last.safetensors":
            os.kill(os.getpid(), signal.SIGINT)  # Ctrl-C right after last, before best
        return out

    monkeypatch.setattr(loop, "save_checkpoint", save)
    run = tmp_path / "run"
    with pytest.raises(KeyboardInterrupt):
        train(tcfg(pairs, run, epochs=2), tiny_config(bank_size=64))
    assert load_checkpoint(run / "best.safetensors").extra["epochs_done"] == 1  # written before the stop took effect
    assert len((run / "metrics.jsonl").read_text().splitlines()) == 1
    monkeypatch.setattr(loop, "save_checkpoint", real_save)
    (run / "best.safetensors").unlink()  # gone (deleted by hand): the next epoch's is saved, so the run names a file
    res = train(tcfg(pairs, run, epochs=2), resume=True)
    assert Path(res["best"]).is_file() and load_checkpoint(res["best"]).extra["epochs_done"] == 2


def test_the_start_event_counts_the_held_out_reals_the_epochs_calibrate_on(pairs, tmp_path):
    """Every epoch end stores a threshold fitted on the 'val' split's real faces; a run on a folder of a few photos
    fitted it on one or two of them, and nothing said so (`calibrate` warns of the same faces): the start event
    carries their count and the rate, for the CLI's note."""
    events = []
    train(tcfg(pairs, tmp_path / "run", epochs=1, steps_per_epoch=1, calibration_fpr=0.1), tiny_config(bank_size=16),
          on_event=events.append)
    began = next(e for e in events if e["event"] == "start")
    assert began["val_reals"] == len(read_pairs(pairs, need_splits=("val",)).reals("val")) > 0
    assert began["calibration_fpr"] == 0.1
