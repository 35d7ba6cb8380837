"""Training: loss goes down, resume is bit-for-bit, the bank rebuild uses exactly the real training faces,
bad pairs.csv files are clear errors, and DDP (2 gloo processes) matches one process."""

from __future__ import annotations

import csv
import os
import subprocess
import sys
from pathlib import Path

import cv2
import numpy as np
import pytest
import torch
from safetensors import safe_open
from typer.testing import CliRunner

from forgerydet.checkpoint import load_checkpoint
from forgerydet.cli import app
from forgerydet.data import read_pairs
from forgerydet.errors import ForgeryDetError
from forgerydet.train import TrainConfig, cosine_lr, rebuild_checkpoint_bank, train
from tests.helpers import tiny_config

S = 64


def make_synthetic_pairs(root: Path, groups: int = 8, frames: int = 4, val_groups: int = 2, seed: int = 0) -> Path:
    """Smooth random 'faces'; each fake is its real frame with a visible bright patch blended in."""
    rng = np.random.default_rng(seed)
    root.mkdir(parents=True, exist_ok=True)
    rows = []
    yy, xx = np.mgrid[0:S, 0:S] / S
    for g in range(groups):
        base = rng.uniform(40, 200, size=3)
        for f in range(frames):
            img = np.stack([base[c] + 40 * np.sin(3 * xx + c + f * 0.3) + 30 * yy for c in range(3)], -1)
            img = np.clip(img + rng.normal(0, 4, img.shape), 0, 255).astype(np.uint8)
            fake = img.copy()
            cy, cx = rng.integers(16, 40, size=2)
            patch = fake[cy : cy + 14, cx : cx + 14].astype(float)
            fake[cy : cy + 14, cx : cx + 14] = np.clip(0.3 * patch + 0.7 * np.array([255, 230, 40]), 0, 255).astype(np.uint8)
            rp, fp = root / f"g{g}_f{f}_real.png", root / f"g{g}_f{f}_fake.png"
            cv2.imwrite(str(rp), img[:, :, ::-1])
            cv2.imwrite(str(fp), fake[:, :, ::-1])
            rows.append({"real": rp.name, "fake": fp.name, "group": f"g{g}",
                         "split": "val" if g >= groups - val_groups else "train", "method": "patch", "landmarks": ""})
    path = root / "pairs.csv"
    with open(path, "w", newline="") as fh:
        w = csv.DictWriter(fh, fieldnames=list(rows[0]))
        w.writeheader()
        w.writerows(rows)
    return path


def tcfg(pairs: Path, out: Path, **kw) -> TrainConfig:
    base = dict(pairs=str(pairs), out=str(out), epochs=2, batch_size=6, lr=2e-3, workers=0, seed=0, device="cpu",
                augment=False, warmup=0.1)
    return TrainConfig(**{**base, **kw})


@pytest.fixture(scope="module")
def pairs(tmp_path_factory) -> Path:
    return make_synthetic_pairs(tmp_path_factory.mktemp("synthetic"))


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
    assert load_checkpoint(tmp_path / "b" / "last.safetensors").meta["extra"]["epochs_done"] == 2
    train(tcfg(pairs, tmp_path / "b", epochs=3, augment=True), resume=True)
    a, b = _model_tensors(tmp_path / "a" / "last.safetensors"), _model_tensors(tmp_path / "b" / "last.safetensors")
    assert a.keys() == b.keys()
    different = [k for k in a if not torch.equal(a[k], b[k])]
    assert different == []
    la = (tmp_path / "a" / "metrics.jsonl").read_text().splitlines()
    lb = (tmp_path / "b" / "metrics.jsonl").read_text().splitlines()
    assert len(la) == len(lb) == 3


def test_rebuild_bank_holds_exactly_the_training_reals(pairs, tmp_path):
    train(tcfg(pairs, tmp_path / "run", epochs=1, steps_per_epoch=2), tiny_config(bank_size=64))
    ck_path = tmp_path / "run" / "last.safetensors"
    res = rebuild_checkpoint_bank(ck_path, pairs, device="cpu", out=tmp_path / "rebuilt.safetensors")
    assert res["entries"] == 24
    model = load_checkpoint(tmp_path / "rebuilt.safetensors").model.eval()
    table = read_pairs(pairs)
    reals = [p for p, _ in table.reals("train")]
    from forgerydet.data import load_image, to_tensor

    x = torch.stack([to_tensor(load_image(p, model.img_size)) for p in reals])
    expected = model.encode_keys(x)
    bank = model.bank
    assert bank.filled == len(reals) == 24
    torch.testing.assert_close(bank.values[:24].float(), expected, atol=2e-3, rtol=0)  # fp16 storage
    assert bank.source[:24].tolist() == list(range(24))
    val_and_fakes = {r.fake for r in table.rows} | {p for p, _ in table.reals("val")}
    stored = load_checkpoint(tmp_path / "rebuilt.safetensors").meta["bank_sources"]
    assert set(stored) == {str(p) for p in reals} and not (set(stored) & {str(p) for p in val_and_fakes})


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
    }
    for name, (path, msg) in cases.items():
        with pytest.raises(ForgeryDetError, match=None) as ei:
            read_pairs(path, need_splits=("train", "val"))
        assert msg in str(ei.value), (name, str(ei.value))
    out = tmp_path / "run"
    out.mkdir()
    (out / "last.safetensors").write_bytes(b"precious")
    r = CliRunner().invoke(app, ["train", "--pairs", str(cases["missing file"][0]), "--out", str(out), "--device", "cpu"])
    assert r.exit_code == 1 and "file not found" in r.output and "Traceback" not in r.output
    assert (out / "last.safetensors").read_bytes() == b"precious"  # nothing already written is lost


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
