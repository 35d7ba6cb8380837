"""training/bankfill.py: `rebuild-bank` fills the bank with exactly the training reals (one process and two), and says when the stored calibration was fitted against the bank it replaced."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from forgerydet.model.checkpoint import load_checkpoint
from forgerydet.pairs.table import read_pairs
from forgerydet.model.coreset import select
from forgerydet.model.inputs import load_image, to_tensor
from forgerydet.training.bankfill import rebuild_bank, rebuild_checkpoint_bank
from forgerydet.training.loop import train
from tests.helpers import tcfg, tiny_config, tiny_model


def test_rebuild_bank_holds_exactly_the_training_reals(pairs, tmp_path, monkeypatch):
    train(tcfg(pairs, tmp_path / "run", epochs=1, steps_per_epoch=2), tiny_config(bank_size=64))
    ck_path = tmp_path / "run" / "last.safetensors"
    monkeypatch.chdir(tmp_path)
    res = rebuild_checkpoint_bank(ck_path, pairs, device="cpu", out=tmp_path / "rebuilt.safetensors")
    # the folder its bank sources' paths are relative to, for the report's thumbnails from elsewhere
    assert load_checkpoint(tmp_path / "rebuilt.safetensors").extra["bank_sources_root"] == str(tmp_path)
    assert res["entries"] == 24
    model = load_checkpoint(tmp_path / "rebuilt.safetensors").model.eval()
    table = read_pairs(pairs)
    reals = [p for p, _ in table.reals("train")]
    x = torch.stack([to_tensor(load_image(p, model.img_size)) for p in reals])
    expected = model.encode_keys(x)
    bank = model.bank
    assert bank.filled == len(reals) == 24
    torch.testing.assert_close(bank.values[:24].float(), expected, atol=2e-3, rtol=0)  # fp16 storage
    assert bank.source[:24].tolist() == list(range(24))
    val_and_fakes = {r.fake for r in table.rows} | {p for p, _ in table.reals("val")}
    stored = load_checkpoint(tmp_path / "rebuilt.safetensors").bank_sources
    assert set(stored) == {str(p) for p in reals} and not (set(stored) & {str(p) for p in val_and_fakes})


def test_a_random_rebuild_encodes_only_the_faces_it_keeps_the_same_ones_as_selecting_after_encoding_all(pairs):
    torch.manual_seed(0)
    model = tiny_model(bank_size=8).eval()
    reals = [p for p, _ in read_pairs(pairs).reals("train")]
    with torch.no_grad():
        every = model.encode_keys(torch.stack([to_tensor(load_image(p, model.img_size)) for p in reals]))  # (24,N,D)
    want = select(every.mean(dim=1), 8, "random", torch.Generator().manual_seed(5))  # encode all, then select
    encoded = []
    encode = model.key_features
    model.key_features = lambda: (lambda x: encoded.append(len(x)) or encode()(x))
    n, _ = rebuild_bank(model, reals, batch_size=5, seed=5, select="random")
    assert n == 8 and sum(encoded) == 8  # 8 of 24 faces encoded
    assert model.bank.source[:8].tolist() == want.tolist()
    torch.testing.assert_close(model.bank.values[:8].float(), every[want], atol=2e-3, rtol=0)  # fp16 storage


@pytest.mark.slow
def test_two_process_gloo_torchrun_matches_one_process_fill(pairs, tmp_path):
    torchrun = Path(sys.executable).with_name("torchrun")
    if not torchrun.exists():
        pytest.skip("torchrun not installed beside this Python")
    common = ["--pairs", str(pairs), "--backbone", "test_efficientnet", "--pretrained", "none", "--img-size", "64",
              "--dim", "32", "--grid", "4", "--bank-size", "64", "--epochs", "1", "--batch-size", "4",
              "--workers", "0", "--device", "cpu", "--no-augment"]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    one = subprocess.run([sys.executable, "-m", "forgerydet", "train", "--out", str(tmp_path / "one"), *common],
                         capture_output=True, text=True, env=env, timeout=300)
    assert one.returncode == 0, one.stdout + one.stderr
    two = subprocess.run([str(torchrun), "--standalone", "--nproc_per_node=2", "-m", "forgerydet", "train",
                          "--out", str(tmp_path / "two"), *common], capture_output=True, text=True, env=env, timeout=300)
    assert two.returncode == 0, two.stdout + two.stderr
    assert "bank rebuilt from 24 real training faces -> 24 entries" in two.stdout
    b1 = load_checkpoint(tmp_path / "one" / "last.safetensors").model.bank
    b2 = load_checkpoint(tmp_path / "two" / "last.safetensors").model.bank
    assert b1.filled == b2.filled == 24
    assert b1.source[:24].tolist() == b2.source[:24].tolist() == list(range(24))


def test_rebuild_marks_a_calibration_fitted_against_the_bank_it_replaced(pairs, tmp_path):
    from forgerydet.model.checkpoint import save_checkpoint
    from forgerydet.training.validate import calibrate_checkpoint
    from tests.helpers import tiny_model

    torch.manual_seed(0)
    m = tiny_model(bank_size=64).eval()
    m.bank.rebuild(m.encode_keys(torch.rand(10, 3, 64, 64)), m.key_fingerprint(), source=torch.arange(10))
    ck = save_checkpoint(tmp_path / "m.safetensors", m, bank_sources=[f"/r/{i}.png" for i in range(10)])
    assert load_checkpoint(ck).calibration_bank == "not calibrated"
    calibrate_checkpoint(ck, pairs, fpr=0.25, device="cpu", batch_size=4, workers=0)
    calibrated = load_checkpoint(ck)
    assert calibrated.calibration_bank == "this bank"
    assert calibrated.extra["calibration"]["bank_contents"] == calibrated.model.bank.contents_digest()

    res = rebuild_checkpoint_bank(ck, pairs, device="cpu", out=tmp_path / "rebuilt.safetensors")
    assert res["calibration_stale"] and res["calibrated_on"] == str(pairs)
    assert res["calibrated_with"] == {"tta": "none", "precision": "fp32", "target_fpr": 0.25}  # for the refit line
    rebuilt = load_checkpoint(tmp_path / "rebuilt.safetensors")
    assert rebuilt.calibration_bank == "an earlier bank"
    assert rebuilt.threshold == calibrated.threshold  # kept, and said to be stale, not silently dropped
    calibrate_checkpoint(tmp_path / "rebuilt.safetensors", pairs, fpr=0.25, device="cpu", batch_size=4, workers=0)
    assert load_checkpoint(tmp_path / "rebuilt.safetensors").calibration_bank == "this bank"


def test_a_calibration_older_than_the_record_is_unknown_until_a_rebuild_replaces_its_bank(pairs, tmp_path):
    from forgerydet.model.checkpoint import save_checkpoint
    from tests.helpers import tiny_model

    torch.manual_seed(0)
    m = tiny_model(bank_size=64).eval()
    m.bank.rebuild(m.encode_keys(torch.rand(10, 3, 64, 64)), m.key_fingerprint(), source=torch.arange(10))
    old = {"threshold": 0.4, "temperature": 1.0, "calibrated_on": "calib.csv"}  # as calibrated before 2026-12-01
    ck = save_checkpoint(tmp_path / "m.safetensors", m, bank_sources=[f"/r/{i}.png" for i in range(10)],
                         extra={"threshold": 0.4, "temperature": 1.0, "calibration": old})
    assert load_checkpoint(ck).calibration_bank == "unknown"
    res = rebuild_checkpoint_bank(ck, pairs, device="cpu")
    assert res["calibration_stale"] and res["calibrated_on"] == "calib.csv"
    assert load_checkpoint(ck).calibration_bank == "an earlier bank"
    uncalibrated = save_checkpoint(tmp_path / "u.safetensors", m, bank_sources=[f"/r/{i}.png" for i in range(10)])
    assert not rebuild_checkpoint_bank(uncalibrated, pairs, device="cpu")["calibration_stale"]


def test_a_model_trained_without_a_bank_is_refused_before_any_encoding(pairs, tmp_path):
    """A --reference none model never reads its bank: rebuild-bank spent minutes encoding faces into it and said it
    had rebuilt it. It is now one line, before any encoding, and the file is not rewritten."""
    from forgerydet.errors import ForgeryDetError
    from forgerydet.model.checkpoint import save_checkpoint
    from forgerydet.training.bankfill import rebuild_disk_bank

    ck = save_checkpoint(tmp_path / "plain.safetensors", tiny_model(reference="none"))
    before = ck.read_bytes()
    for call in (lambda: rebuild_checkpoint_bank(ck, pairs, device="cpu"),
                 lambda: rebuild_disk_bank(ck, pairs, tmp_path / "disk", device="cpu")):
        with pytest.raises(ForgeryDetError, match="was trained with --reference none: it compares with no real faces"):
            call()
    assert ck.read_bytes() == before


def test_on_start_comes_after_every_check_and_before_the_encoding(pairs, tmp_path, monkeypatch):
    """The CLI agrees there, under torchrun, on who says an error met before the encoding (each process said it)."""
    from forgerydet.model.checkpoint import save_checkpoint
    from forgerydet.training import bankfill

    ck = save_checkpoint(tmp_path / "m.safetensors", tiny_model(bank_size=64))
    order: list = []
    real = bankfill.rebuild_bank
    monkeypatch.setattr(bankfill, "rebuild_bank", lambda *a, **kw: (order.append("encode"), real(*a, **kw))[1])
    rebuild_checkpoint_bank(ck, pairs, device="cpu", out=tmp_path / "o.safetensors", on_start=lambda: order.append("start"))
    assert order == ["start", "encode"]


def test_a_checkpoint_rewritten_by_another_command_meanwhile_is_not_overwritten(pairs, tmp_path, monkeypatch):
    """rebuild-bank and calibrate both read a checkpoint, work for minutes and write it back in place: run at once,
    the last one to finish wrote its result over the other's (a rebuilt bank silently gone, each saying it had
    written). Now the later one leaves the file as the other command wrote it and says so."""
    from forgerydet.errors import ForgeryDetError
    from forgerydet.model.checkpoint import save_checkpoint
    from forgerydet.training import bankfill

    torch.manual_seed(0)
    m = tiny_model(bank_size=64).eval()
    m.bank.rebuild(m.encode_keys(torch.rand(10, 3, 64, 64)), m.key_fingerprint(), source=torch.arange(10))
    ck = save_checkpoint(tmp_path / "m.safetensors", m, bank_sources=[f"/r/{i}.png" for i in range(10)])
    original = bankfill.rebuild_bank

    def meanwhile(*a, **kw):  # another command (calibrate) writes the file while the faces are encoded
        out = original(*a, **kw)
        save_checkpoint(ck, m, bank_sources=[f"/r/{i}.png" for i in range(10)], extra={"threshold": 0.3})
        return out

    monkeypatch.setattr(bankfill, "rebuild_bank", meanwhile)
    with pytest.raises(ForgeryDetError, match="rewritten by another command .* left as that one wrote it"):
        rebuild_checkpoint_bank(ck, pairs, device="cpu")
    assert load_checkpoint(ck).threshold == 0.3  # the other command's write is kept
    rebuild_checkpoint_bank(ck, pairs, device="cpu", out=tmp_path / "other.safetensors")  # another file: written
    monkeypatch.setattr(bankfill, "rebuild_bank", original)
    rebuild_checkpoint_bank(ck, pairs, device="cpu")  # run again alone: written in place
    assert load_checkpoint(ck).meta["extra"]["bank_rebuilt_from"] == str(pairs)


def test_a_disk_bank_under_torchrun_is_refused_before_any_encoding(pairs, tmp_path, monkeypatch):
    """Under torchrun every process encoded every face (no sharding) and wrote the same disk-bank folder at once,
    each truncating the files the other was writing, and each said it had written the bank."""
    from forgerydet.errors import ForgeryDetError
    from forgerydet.model.checkpoint import save_checkpoint
    from forgerydet.training.bankfill import rebuild_disk_bank

    ck = save_checkpoint(tmp_path / "m.safetensors", tiny_model(bank_size=4))
    monkeypatch.setenv("WORLD_SIZE", "2")
    with pytest.raises(ForgeryDetError, match="--disk-bank runs in one process, not under torchrun"):
        rebuild_disk_bank(ck, pairs, tmp_path / "disk", device="cpu")
    assert not (tmp_path / "disk").exists()
    monkeypatch.setenv("WORLD_SIZE", "1")
    assert rebuild_disk_bank(ck, pairs, tmp_path / "disk", device="cpu")["entries"] == 24


def test_a_disk_bank_onto_a_full_disk_is_one_line_naming_the_folder(pairs, tmp_path, monkeypatch):
    """It said "error: no space left on device: free some space or write elsewhere", naming nothing."""
    import errno

    from forgerydet.errors import ForgeryDetError
    from forgerydet.model.checkpoint import save_checkpoint
    from forgerydet.training import bankfill
    from forgerydet.training.bankfill import rebuild_disk_bank

    def full(*a, **kw):
        raise OSError(errno.ENOSPC, "No space left on device")

    ck = save_checkpoint(tmp_path / "m.safetensors", tiny_model(bank_size=4))
    monkeypatch.setattr(bankfill, "write_bank", full)
    with pytest.raises(ForgeryDetError) as e:
        rebuild_disk_bank(ck, pairs, tmp_path / "disk", device="cpu")
    assert str(e.value) == (f"--disk-bank: cannot write {tmp_path / 'disk'}: no space left on device: free some space "
                            f"or write elsewhere")
