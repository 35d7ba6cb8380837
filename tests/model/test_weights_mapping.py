"""weights_mapping.py: tensor-only state dicts from files, mapped onto a model by name or (another library's
layout) by verified position, BN step counters, ViT position embeddings resampled, and errors that name the
first misfit. (The packaged files and the DINOv2 ONNX mapping are tested in test_weights.py.)"""

from __future__ import annotations

from types import SimpleNamespace

import pytest
import timm
import torch
from safetensors.torch import save_file
from torch import nn

from forgerydet.errors import ForgeryDetError
from forgerydet.model.weights_mapping import load_strict, read_state_dict, to_model_state


def small() -> nn.Module:
    torch.manual_seed(0)
    return nn.Sequential(nn.Conv2d(3, 4, 3), nn.BatchNorm2d(4), nn.Flatten(), nn.Linear(4, 2))


def other_library(model: nn.Module) -> dict[str, torch.Tensor]:
    """The same tensors under another library's names, in the same order (as a torchvision file)."""
    names = {"0.": "stem.conv.", "1.": "stem.bn.", "3.": "head.fc."}
    return {names[k[:2]] + k[2:]: v.clone() + 1 for k, v in model.state_dict().items()}


LAYOUT = SimpleNamespace(first_key="stem.conv.weight", about="OtherLib")


# ----------------------------------------------------------------------------- reading files

def test_reads_safetensors_and_torch_files_unwrapping(tmp_path):
    state = small().state_dict()
    save_file({k: v.contiguous() for k, v in state.items()}, str(tmp_path / "w.safetensors"))
    torch.save({"model": {f"module.{k}": v for k, v in state.items()}, "epoch": 3}, tmp_path / "w.pt")
    for name in ("w.safetensors", "w.pt"):
        got = read_state_dict(tmp_path / name, "weights file " + name)
        assert sorted(got) == sorted(state) and all(torch.equal(got[k], state[k]) for k in state)


@pytest.mark.parametrize("obj,msg", [
    ([torch.zeros(1)], "holds no state dict (got list): save model.state_dict()"),
    ({}, "holds no state dict (got dict)"),
    ({"w": torch.zeros(1), "lr": 0.1}, "is not a tensor state dict (entry 'lr')"),
])
def test_files_that_are_not_state_dicts(obj, msg, tmp_path):
    torch.save(obj, tmp_path / "w.pth")
    with pytest.raises(ForgeryDetError) as e:
        read_state_dict(tmp_path / "w.pth", "weights file w.pth")
    assert str(e.value).startswith("weights file w.pth ") and msg in str(e.value)


def test_a_file_that_is_no_weights_at_all(tmp_path):
    (tmp_path / "w.safetensors").write_bytes(b"hello, not tensors")
    with pytest.raises(ForgeryDetError, match=r"^could not read W: .*re-download or re-export it$"):
        read_state_dict(tmp_path / "w.safetensors", "W")


# ----------------------------------------------------------------------------- mapping

def test_same_keys_map_by_name_and_counters_come_from_the_file():
    m = small()
    src = {k: v.clone() + 1 if v.is_floating_point() else torch.tensor(7) for k, v in m.state_dict().items()}
    out = to_model_state(src, m, "small", "F")
    assert sorted(out) == sorted(m.state_dict())
    assert torch.equal(out["0.weight"], m.state_dict()["0.weight"] + 1) and out["1.num_batches_tracked"].item() == 7
    del src["1.num_batches_tracked"]  # a file without the counters keeps the model's
    assert to_model_state(src, m, "small", "F")["1.num_batches_tracked"].item() == 0


def test_other_layout_maps_in_order_and_loads_strictly():
    m = small()
    src = other_library(m)
    out = to_model_state(src, m, "small", "F", LAYOUT)
    assert torch.equal(out["3.bias"], src["head.fc.bias"]) and torch.equal(out["1.running_var"], src["stem.bn.running_var"])
    load_strict(m, out)
    assert torch.equal(m[0].weight, src["stem.conv.weight"])


def test_other_layout_with_a_swapped_tensor_is_refused():
    m = small()
    src = other_library(m)
    items = list(src.items())
    items[2], items[3] = items[3], items[2]  # stem.bn.weight <-> stem.bn.bias: same shapes, suffixes differ
    with pytest.raises(ForgeryDetError) as e:
        to_model_state(dict(items), m, "small", "F", LAYOUT)
    assert str(e.value) == ("F does not map onto timm model 'small': tensor #2 'stem.bn.bias' (4,) vs model "
                            "'1.weight' (4,); the file is not the expected OtherLib weights")


def test_other_layout_with_an_extra_tensor_is_refused():
    m = small()
    src = {**other_library(m), "head.extra.weight": torch.zeros(1)}
    with pytest.raises(ForgeryDetError, match=r"9 tensors vs 8 in the model \(first unmatched key 'head.extra.weight'\)"):
        to_model_state(src, m, "small", "F", LAYOUT)


def test_foreign_keys_without_a_layout_name_the_first_misfit():
    m = small()
    with pytest.raises(ForgeryDetError) as e:
        to_model_state(other_library(m), m, "small", "F")
    assert str(e.value) == ("F does not fit timm model 'small': missing key '0.weight', unexpected key "
                            "'stem.conv.weight' (8 tensors in the file, 8 in the model); use weights saved from "
                            "timm.create_model('small').state_dict()")


def test_wrong_shape_names_both_keys():
    m = small()
    src = dict(m.state_dict())
    src["3.weight"] = torch.zeros(3, 4)
    with pytest.raises(ForgeryDetError, match=r"'3.weight' has shape \(3, 4\) but the model's '3.weight' has \(2, 4\)"):
        to_model_state(src, m, "small", "F")


def test_load_strict_turns_a_misfit_into_one_error():
    m = small()
    with pytest.raises(ForgeryDetError, match="^weights do not load into the model: Error"):
        load_strict(m, {"0.weight": torch.zeros(4, 3, 3, 3)})


# ----------------------------------------------------------------------------- ViT position embeddings

def test_vit_position_embedding_is_resampled_to_the_models_grid():
    big = timm.create_model("test_vit", pretrained=False, img_size=64)  # 4x4 patches
    model = timm.create_model("test_vit", pretrained=False, img_size=32)  # 2x2 patches
    src = dict(big.state_dict())
    assert src["pos_embed"].shape == (1, 17, 64) and model.state_dict()["pos_embed"].shape == (1, 5, 64)
    out = to_model_state(src, model, "test_vit", "F")
    pos = out["pos_embed"]
    assert pos.shape == (1, 5, 64)
    assert torch.equal(pos[:, :1], src["pos_embed"][:, :1])  # the class token's embedding is kept as it is
    grid = src["pos_embed"][:, 1:].reshape(1, 4, 4, 64).permute(0, 3, 1, 2)  # (1,C,4,4)
    want = nn.functional.interpolate(grid, size=(2, 2), mode="bicubic", align_corners=False, antialias=False)
    torch.testing.assert_close(pos[:, 1:], want.permute(0, 2, 3, 1).reshape(1, 4, 64))
    load_strict(model, out)


def test_a_position_embedding_that_is_no_grid_is_reported_not_resampled():
    model = timm.create_model("test_vit", pretrained=False, img_size=32)
    src = dict(model.state_dict())
    src["pos_embed"] = torch.zeros(1, 7, 64)  # 6 patch tokens: not a square grid
    with pytest.raises(ForgeryDetError, match=r"'pos_embed' has shape \(1, 7, 64\) but the model's 'pos_embed' has \(1, 5, 64\)"):
        to_model_state(src, model, "test_vit", "F")


@pytest.mark.parametrize("head", ["missing", "two classes"])
def test_a_timm_state_dict_with_no_or_another_head_fits_the_backbone(head, tmp_path):
    # the classifier is reset to nothing once the weights are in (Encoder): a backbone saved headless
    # (num_classes=0) or fine-tuned to 2 classes was refused as "missing key" / "weights of another model size?"
    torch.manual_seed(0)
    model = timm.create_model("resnet10t", pretrained=False)
    saved = timm.create_model("resnet10t", pretrained=False, num_classes=0 if head == "missing" else 2).state_dict()
    out = to_model_state(saved, model, "resnet10t", "F")
    load_strict(model, out)
    assert torch.equal(model.conv1[0].weight, saved["conv1.0.weight"])
    assert torch.equal(out["fc.weight"], model.state_dict()["fc.weight"])  # the model's own head, unused


def test_a_file_of_only_a_head_or_another_body_is_still_refused():
    model = timm.create_model("resnet10t", pretrained=False)
    with pytest.raises(ForgeryDetError, match="does not fit timm model"):
        to_model_state({"fc.weight": torch.zeros(1000, 512), "fc.bias": torch.zeros(1000)}, model, "resnet10t", "F")
    body = dict(timm.create_model("resnet10t", pretrained=False, num_classes=0).state_dict())
    body["conv1.0.weight"] = torch.zeros(1, 3, 3, 3)
    with pytest.raises(ForgeryDetError, match=r"'conv1.0.weight' has shape \(1, 3, 3, 3\)"):
        to_model_state(body, model, "resnet10t", "F")


@pytest.mark.parametrize("suffix", [".pth", ".safetensors"])
@pytest.mark.parametrize("content, msg", [
    (b"", r"^W is empty \(0 bytes\)"),
    (b"version https://git-lfs.github.com/spec/v1\noid sha256:ab\nsize 9\n", r"^W is a Git LFS pointer .*git lfs pull"),
])
def test_an_empty_file_or_a_git_lfs_pointer_is_named(suffix, content, msg, tmp_path):
    # an LFS pointer given as .pth was "refused: it holds pickled Python objects besides tensors"
    (tmp_path / f"w{suffix}").write_bytes(content)
    with pytest.raises(ForgeryDetError, match=msg):
        read_state_dict(tmp_path / f"w{suffix}", "W")


def test_a_text_file_given_as_pth_is_not_a_pytorch_file(tmp_path):
    # torch.load's own error was "KeyError: 101", shown as "could not read W: 101"
    (tmp_path / "w.pth").write_text("hello\n")
    with pytest.raises(ForgeryDetError, match=r"^could not read W: it is not a PyTorch file"):
        read_state_dict(tmp_path / "w.pth", "W")
