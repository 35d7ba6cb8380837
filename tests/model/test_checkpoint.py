import json
import re

import pytest
import torch
from safetensors.torch import save_file
from typer.testing import CliRunner

from forgerydet.cli.app import app
from forgerydet.errors import ForgeryDetError
from forgerydet.model.checkpoint import TrainState, load_checkpoint, read_meta, save_checkpoint
from tests.helpers import tiny_model


def filled_model():
    m = tiny_model().eval()
    keys = m.encode_keys(torch.rand(9, 3, 64, 64))
    m.bank.rebuild(keys, m.key_fingerprint(), source=torch.arange(9))
    return m


def test_round_trip_identical_outputs(tmp_path):
    m = filled_model()
    x = torch.rand(2, 3, 64, 64)
    ref = m(x, "single")
    opt = torch.optim.AdamW(m.trainable_parameters(), lr=1e-3)
    m(x, "pair", reference=x.flip(0))["logits"].sum().backward()
    opt.step()
    ref = m(x, "single")
    rng = torch.get_rng_state()
    p = save_checkpoint(tmp_path / "m.safetensors", m, bank_sources=[f"f{i}.png" for i in range(9)],
                        train_state=TrainState(3, 30, 0.75, {"epochs": 5}, opt.state_dict(),
                                               {"rng_torch": rng}, {"rng_python": [3, [1, 2], None]}),
                        history=[{"epoch": 1, "val_auc": 0.5}], extra={"threshold": 0.25, "temperature": 2.0})
    ck = load_checkpoint(p)
    got = ck.model.eval()(x, "single")
    for k in ("logits", "attention", "neighbours", "similarities"):
        assert torch.equal(got[k], ref[k]), k
    assert ck.bank_sources[3] == "f3.png" and ck.history[0]["epoch"] == 1
    assert (ck.threshold, ck.temperature) == (0.25, 2.0)
    ts = ck.train_state
    assert (ts.epoch, ts.step, ts.best, ts.train_config) == (3, 30, 0.75, {"epochs": 5})
    assert torch.equal(ts.rng_tensors["rng_torch"], rng) and ts.rng == {"rng_python": [3, [1, 2], None]}
    opt2 = torch.optim.AdamW(ck.model.trainable_parameters(), lr=1e-3)
    opt2.load_state_dict(ts.optimizer_state)
    s1, s2 = opt.state_dict(), opt2.state_dict()
    assert s1["param_groups"] == s2["param_groups"]
    for pid in s1["state"]:
        for name in s1["state"][pid]:
            assert torch.equal(torch.as_tensor(s1["state"][pid][name]), torch.as_tensor(s2["state"][pid][name]))


def test_a_checkpoint_whose_name_is_not_utf8_loads(tmp_path):
    # `scan --checkpoint 'ck\xff.safetensors'` (and info, calibrate, rebuild-bank): safetensors takes only UTF-8
    # names, and the file was refused as "truncated or corrupted? ... not valid UTF-8"
    import os

    folder = tmp_path / os.fsdecode(b"run\xfe")
    folder.mkdir()
    m = filled_model()
    p = save_checkpoint(folder / os.fsdecode(b"ck\xff.safetensors"), m)
    assert read_meta(p)["format"] == "forgerydet-checkpoint"
    back = load_checkpoint(p).model
    assert all(torch.equal(a, b) for a, b in zip(back.state_dict().values(), m.state_dict().values()))


def test_another_backbone_refused(tmp_path):
    p = save_checkpoint(tmp_path / "m.safetensors", filled_model())
    with pytest.raises(ForgeryDetError, match="backbone 'test_efficientnet', not 'resnet10t'"):
        load_checkpoint(p, expect_backbone="resnet10t")


def test_config_edited_to_another_backbone_refused(tmp_path):
    p = save_checkpoint(tmp_path / "m.safetensors", filled_model())
    from safetensors import safe_open

    with safe_open(str(p), "pt") as f:
        meta = f.metadata()
        tensors = {k: f.get_tensor(k) for k in f.keys()}
    cfg = json.loads(meta["config"])
    cfg["backbone"] = "resnet10t"
    meta["config"] = json.dumps(cfg)
    save_file(tensors, str(p), metadata=meta)
    with pytest.raises(ForgeryDetError, match="do not fit backbone 'resnet10t'"):
        load_checkpoint(p)


def test_stale_bank_fingerprint_refused(tmp_path):
    m = filled_model()
    with torch.no_grad():
        next(m.key_encoder.parameters()).add_(0.01)  # encoder moved on, bank not rebuilt
    p = save_checkpoint(tmp_path / "m.safetensors", m)
    with pytest.raises(ForgeryDetError, match="rebuild-bank"):
        load_checkpoint(p)


@pytest.mark.parametrize("damage", ["truncate", "garbage", "empty"])
def test_corrupted_checkpoint_is_a_clear_error(tmp_path, damage):
    p = save_checkpoint(tmp_path / "m.safetensors", filled_model())
    data = p.read_bytes()
    p.write_bytes({"truncate": data[: len(data) // 2], "garbage": b"\x00garbage" * 10, "empty": b""}[damage])
    said = ("not a readable forgerydet checkpoint (truncated or corrupted?" if damage == "truncate" else
            "is empty (0 bytes), not a checkpoint: an interrupted copy or download?" if damage == "empty" else
            "is not a forgerydet checkpoint: not a safetensors file (damaged, or another kind of file renamed?)")
    with pytest.raises(ForgeryDetError, match=re.escape(said)):
        load_checkpoint(p)
    r = CliRunner().invoke(app, ["info", str(p)])
    assert r.exit_code == 1 and said in " ".join(r.output.split())
    assert "Traceback" not in r.output


def test_a_file_of_another_kind_is_not_called_a_damaged_checkpoint(tmp_path):
    import cv2
    import numpy as np

    photo = tmp_path / "face.png"
    cv2.imwrite(str(photo), np.zeros((8, 8, 3), np.uint8))
    csv = tmp_path / "pairs.csv"
    csv.write_text("real,fake,group,split\n")
    for p in (photo, csv):
        with pytest.raises(ForgeryDetError, match=re.escape(f"{p} is not a forgerydet checkpoint: not a safetensors "
                                                            f"file; give the .safetensors file")):
            read_meta(p)


def test_other_format_version_refused(tmp_path):
    save_file({"x": torch.zeros(1)}, str(tmp_path / "v9.safetensors"),
              metadata={"format": "forgerydet-checkpoint", "format_version": "9"})
    with pytest.raises(ForgeryDetError, match="format 9"):
        read_meta(tmp_path / "v9.safetensors")


def test_save_is_atomic_on_crash(tmp_path, monkeypatch):
    p = save_checkpoint(tmp_path / "m.safetensors", filled_model())
    before = p.read_bytes()
    import errno

    import forgerydet.io as atomic_mod

    def boom(*a, **k):  # the temp file is written, then the disk fills before it is safe
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(atomic_mod.os, "fsync", boom)
    with pytest.raises(ForgeryDetError, match=f"cannot write {p}: no space left on device"):
        save_checkpoint(p, filled_model())
    assert p.read_bytes() == before
    assert [f.name for f in tmp_path.iterdir()] == ["m.safetensors"]  # no temp file left behind


def test_info_command(tmp_path):
    p = save_checkpoint(tmp_path / "m.safetensors", filled_model(), history=[{"epoch": 1, "val_auc": 0.75}])
    r = CliRunner().invoke(app, ["info", str(p)])
    assert r.exit_code == 0, r.output
    assert "test_efficientnet" in r.output and "9 / 37" in r.output and "0.7500" in r.output
    r = CliRunner().invoke(app, ["info", str(tmp_path / "missing.safetensors")])
    assert r.exit_code == 1 and "not found" in r.output


def test_half_size_checkpoint_is_lossless_or_refused(tmp_path):
    m = tiny_model().eval()
    with pytest.raises(ForgeryDetError, match="fp16"):  # fp32 weights that fp16 cannot hold exactly
        save_checkpoint(tmp_path / "no.safetensors", m, half=True)
    with torch.no_grad():
        for t in list(m.parameters()) + [b for b in m.buffers() if b.is_floating_point()]:
            t.copy_(t.half().float())  # what a model shipped at fp16 holds
    keys = m.encode_keys(torch.rand(5, 3, 64, 64))
    m.bank.rebuild(keys, m.key_fingerprint(), source=torch.arange(5))
    full = save_checkpoint(tmp_path / "full.safetensors", m)
    half = save_checkpoint(tmp_path / "half.safetensors", m, half=True)
    assert half.stat().st_size < 0.8 * full.stat().st_size
    x = torch.rand(2, 3, 64, 64)
    a, b = load_checkpoint(full).model.eval()(x, "single"), load_checkpoint(half).model.eval()(x, "single")
    assert torch.equal(a["logits"], b["logits"]) and torch.equal(a["neighbours"], b["neighbours"])


def test_checkpoint_stores_filled_bank_only_and_loads_older_full_buffers(tmp_path):
    from safetensors import safe_open

    m = filled_model()  # 9 of 37 slots filled
    p = save_checkpoint(tmp_path / "m.safetensors", m)
    with safe_open(str(p), "pt") as f:
        assert f.get_slice("model.bank.values").get_shape() == [9, 16, 32]
        meta = f.metadata()
        tensors = {k: f.get_tensor(k) for k in f.keys()}
    assert tensors["model.bank.values"].dtype == torch.float16
    ck = load_checkpoint(p)
    assert ck.model.bank.values.shape[0] == 37 and ck.model.bank.filled == 9
    assert torch.equal(ck.model.bank.values, m.bank.values) and torch.equal(ck.model.bank.keys, m.bank.keys)
    # a checkpoint written before filled-only storage holds all 37 slots
    for name in ("keys", "values", "source"):
        tensors[f"model.bank.{name}"] = getattr(m.bank, name).clone()
    old = tmp_path / "old.safetensors"
    save_file(tensors, str(old), metadata=meta)
    assert old.stat().st_size > p.stat().st_size
    x = torch.rand(2, 3, 64, 64)
    assert torch.equal(load_checkpoint(old).model.eval()(x)["logits"], ck.model.eval()(x)["logits"])


def test_uncalibrated_checkpoint_defaults_and_no_train_state(tmp_path):
    """A checkpoint saved without calibration or training state reads as threshold 0.5, temperature 1, and no
    TrainState (resume refuses it); a stored threshold outside (0, 1) is one clear error."""
    ck = load_checkpoint(save_checkpoint(tmp_path / "m.safetensors", filled_model()))
    assert (ck.threshold, ck.temperature, ck.train_state, ck.bank_sources, ck.history) == (0.5, 1.0, None, [], [])
    bad = load_checkpoint(save_checkpoint(tmp_path / "b.safetensors", filled_model(), extra={"threshold": 1.5}))
    with pytest.raises(ForgeryDetError, match="stored threshold 1.5 is not a number in"):
        bad.threshold


def test_training_faces_are_this_runs_face_folders_and_the_earlier_runs_ones(tmp_path):
    m = tiny_model()
    sources = ["/abs/pairs/crops/real/Ann_0001-0123abcd/f000000_0.jpg", "Bob_0002-89abcdef/f000003_1.jpg"]
    path = save_checkpoint(tmp_path / "m.safetensors", m, bank_sources=sources,
                           extra={"earlier_faces": ["Cid_0001-00112233"]})
    assert load_checkpoint(path, check_bank=False).training_faces == {
        "Ann_0001-0123abcd", "Bob_0002-89abcdef", "Cid_0001-00112233"}
    plain = save_checkpoint(tmp_path / "p.safetensors", m)
    assert load_checkpoint(plain, check_bank=False).training_faces == set()


def test_the_hash_of_a_checkpoint_is_of_the_file_loaded_not_one_written_over_it_since(tmp_path):
    """scan records the checkpoint's sha256, hashed after the model loaded: a rebuild-bank finishing in between
    had the scan name the new file while it scored with the old bank (and `--resume` then took those verdicts over
    for the new one)."""
    import hashlib

    p = save_checkpoint(tmp_path / "m.safetensors", filled_model())
    ck = load_checkpoint(p)
    assert ck.sha256() == hashlib.sha256(p.read_bytes()).hexdigest()
    save_checkpoint(p, filled_model(), extra={"threshold": 0.3})  # another command rewrites it
    with pytest.raises(ForgeryDetError, match="rewritten by another command while it loaded"):
        ck.sha256()
