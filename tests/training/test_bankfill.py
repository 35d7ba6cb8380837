"""TODO docstring."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from forgerydet.model.checkpoint import load_checkpoint
from forgerydet.pairs.table import read_pairs
from forgerydet.training.bankfill import rebuild_checkpoint_bank
from forgerydet.training.loop import train
from tests.helpers import tcfg, tiny_config


def test_rebuild_bank_holds_exactly_the_training_reals(pairs, tmp_path):
    train(tcfg(pairs, tmp_path / "run", epochs=1, steps_per_epoch=2), tiny_config(bank_size=64))
    ck_path = tmp_path / "run" / "last.safetensors"
    res = rebuild_checkpoint_bank(ck_path, pairs, device="cpu", out=tmp_path / "rebuilt.safetensors")
    assert res["entries"] == 24
    model = load_checkpoint(tmp_path / "rebuilt.safetensors").model.eval()
    table = read_pairs(pairs)
    reals = [p for p, _ in table.reals("train")]
    from forgerydet.model.inputs import load_image, to_tensor

    x = torch.stack([to_tensor(load_image(p, model.img_size)) for p in reals])
    expected = model.encode_keys(x)
    bank = model.bank
    assert bank.filled == len(reals) == 24
    torch.testing.assert_close(bank.values[:24].float(), expected, atol=2e-3, rtol=0)  # fp16 storage
    assert bank.source[:24].tolist() == list(range(24))
    val_and_fakes = {r.fake for r in table.rows} | {p for p, _ in table.reals("val")}
    stored = load_checkpoint(tmp_path / "rebuilt.safetensors").bank_sources
    assert set(stored) == {str(p) for p in reals} and not (set(stored) & {str(p) for p in val_and_fakes})


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
