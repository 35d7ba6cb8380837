"""The face encoder: a timm backbone by name, its last feature map projected to D and pooled to a small
grid of L2-normalised tokens (B, N, D) with N = grid**2."""

from __future__ import annotations

import copy
import math

import timm
import torch
import torch.nn as nn
import torch.nn.functional as F
from torch.nn.utils.fusion import fuse_conv_bn_weights

from forgerydet.errors import ForgeryDetError
from forgerydet.model.config import ModelConfig


def create_backbone(name: str, img_size: int | None = None) -> nn.Module:
    """A timm classifier by name, randomly initialised (weights are loaded separately, offline)."""
    if not timm.is_model(name):
        raise ForgeryDetError(
            f"backbone={name!r} must be a timm model name (see `python -m timm.models` or timm.list_models())"
        )
    kwargs = {}
    cfg = timm.get_pretrained_cfg(name)
    if img_size is not None and cfg is not None and getattr(cfg, "fixed_input_size", False):
        kwargs["img_size"] = img_size  # ViT-style models need their token grid sized at creation
    return timm.create_model(name, pretrained=False, **kwargs)


class Encoder(nn.Module):
    """Backbone + 1x1 projection + adaptive pooling: images (B,3,S,S), already normalised -> tokens (B,N,D).

    Tokens are L2-normalised per token so that face - reference differences live on a fixed scale.
    """

    def __init__(self, cfg: ModelConfig, pretrained: str = "none") -> None:
        super().__init__()
        self.backbone = create_backbone(cfg.backbone, cfg.img_size)
        self.pretrained_source = "none"
        if pretrained != "none":
            from forgerydet.model.weights import load_pretrained

            self.pretrained_source = load_pretrained(self.backbone, cfg.backbone, pretrained)
        self.data_config = timm.data.resolve_model_data_config(self.backbone)
        self.input_size = int(cfg.img_size or self.data_config["input_size"][-1])  # face crop side (Detector.img_size)
        self.num_prefix_tokens = int(getattr(self.backbone, "num_prefix_tokens", 0) or 0)
        self.backbone.reset_classifier(0)
        self.proj = nn.Conv2d(self.backbone.num_features, cfg.dim, kernel_size=1)
        self.pool = nn.AdaptiveAvgPool2d(cfg.grid)
        # Convolution weights channels-last (NHWC) and inputs made so in feature_map: PyTorch's CPU kernels
        # run faster on them (2-core Xeon, lite0 at 224 px, 2026-12-01: a 'pair' training step 1.39x,
        # encoder inference 1.22x, bench/train.py; a scan's model stage 1.31x, bench/scan.py); NVIDIA
        # documents the same for its tensor cores (not measured here: no GPU). Outputs agree with NCHW to
        # float rounding (~1e-6); gradients of the first layers differ by up to a few % of their largest
        # entry (NCHW's own error against float64 is ~10x smaller): noise far below a mini-batch's.
        # load_state_dict copies into these tensors, so checkpoints and EMA updates keep the layout.
        self.set_memory_format(torch.channels_last)

    def set_memory_format(self, fmt: torch.memory_format) -> "Encoder":
        """Store the convolution weights in `fmt` and feed the backbone inputs in it (torch.channels_last, the
        default, or torch.contiguous_format: NCHW, for comparisons; bench/train.py)."""
        self.memory_format = fmt
        return self.to(memory_format=fmt)

    def fold_batchnorm(self, tolerance: float = 1e-4) -> int:
        """For inference only: fold every BatchNorm that directly follows a convolution into that convolution
        (see fold_batchnorm). The folded encoder's tokens must agree with the original's to `tolerance` on a
        random batch, or it is left as it was. Returns the number of BatchNorms folded (0: none, or refused).
        A folded encoder has another state_dict: never save or train it."""
        if self.training:
            raise ValueError("fold_batchnorm is for inference: call .eval() first")
        if not any(isinstance(m, nn.BatchNorm2d) for m in self.backbone.modules()):
            return 0  # a ViT, say
        p = next(self.parameters())
        x = torch.rand(2, 3, self.input_size, self.input_size, generator=torch.Generator().manual_seed(0))
        x = x.to(p.device, p.dtype)
        folded = copy.deepcopy(self.backbone)
        with torch.no_grad():  # not inference_mode: the new weights must stay ordinary tensors
            before = self(x)
            n = fold_batchnorm(folded, x.contiguous(memory_format=self.memory_format))
            if n == 0:
                return 0
            original, self.backbone = self.backbone, folded
            self.set_memory_format(self.memory_format)
            if (self(x) - before).abs().max().item() > tolerance:  # a conv output also used elsewhere, say
                self.backbone = original
                return 0
        return n

    def feature_map(self, x: torch.Tensor) -> torch.Tensor:
        x = x.contiguous(memory_format=self.memory_format)
        f = self.backbone.forward_features(x)  # (B,C,h,w) for CNNs, (B,P+h*w,C) for ViTs
        if f.ndim == 3:
            f = f[:, self.num_prefix_tokens :]  # (B,h*w,C)
            side = math.isqrt(f.shape[1])
            if side * side != f.shape[1]:
                raise ForgeryDetError(f"backbone returned {f.shape[1]} tokens, not a square grid")
            f = f.transpose(1, 2).reshape(f.shape[0], -1, side, side)  # (B,C,h,w)
        elif f.ndim == 4 and f.shape[1] != self.backbone.num_features and f.shape[-1] == self.backbone.num_features:
            f = f.permute(0, 3, 1, 2)  # NHWC models -> (B,C,h,w)
        return f

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        f = self.pool(self.proj(self.feature_map(x)))  # (B,D,g,g)
        t = f.flatten(2).transpose(1, 2)  # (B,N,D)
        return F.normalize(t, dim=-1)


def _norm_act_tail(bn: nn.BatchNorm2d) -> nn.Module | None:
    """What is left of a BatchNorm2d once its affine map is folded away: nothing for nn.BatchNorm2d, the dropout
    and activation of timm's BatchNormAct2d; None for any other subclass (not folded)."""
    if type(bn) is nn.BatchNorm2d:
        return nn.Identity()
    if isinstance(bn, timm.layers.BatchNormAct2d) and type(bn).forward is timm.layers.BatchNormAct2d.forward:
        return nn.Sequential(bn.drop, bn.act)
    return None


def fold_batchnorm(module: nn.Module, example: torch.Tensor) -> int:
    """Fold each eval-mode BatchNorm2d whose input is a Conv2d's output tensor into that conv (PyTorch's
    fuse_conv_bn_weights), in place, and replace the BatchNorm by what follows its normalisation (timm's
    BatchNormAct2d: its activation). Which conv feeds which BatchNorm is seen on one forward pass of `example`.
    Inference only: the result has other parameters and no running statistics. It is exact only if each such
    conv output feeds nothing but its BatchNorm, which this cannot see: compare outputs (Encoder.fold_batchnorm).
    Returns the number folded. It saves the BatchNorm passes: lite0's encoder 1.18x faster on a 2-core CPU."""
    produced: dict[int, tuple[nn.Conv2d, torch.Tensor]] = {}
    pairs: list[tuple[nn.Conv2d, str]] = []
    names = {m: n for n, m in module.named_modules()}

    def after_conv(m, inputs, out):
        produced[id(out)] = (m, out)

    def before_norm(m, inputs):
        src = produced.get(id(inputs[0]))
        if src is not None and src[1] is inputs[0] and not m.training and m.track_running_stats:
            pairs.append((src[0], names[m]))

    hooks = [m.register_forward_hook(after_conv) for m in module.modules() if isinstance(m, nn.Conv2d)]
    hooks += [m.register_forward_pre_hook(before_norm) for m in module.modules()
              if isinstance(m, nn.BatchNorm2d) and _norm_act_tail(m) is not None]
    try:
        with torch.no_grad():
            module(example)
    finally:
        for h in hooks:
            h.remove()
        produced.clear()
    uses: dict[int, int] = {}
    for conv, _ in pairs:
        uses[id(conv)] = uses.get(id(conv), 0) + 1
    n = 0
    for conv, name in pairs:
        if uses[id(conv)] > 1:  # one conv feeding two BatchNorms (or one run twice): leave them
            continue
        bn = module.get_submodule(name)
        with torch.no_grad():
            w, b = fuse_conv_bn_weights(conv.weight, conv.bias, bn.running_mean, bn.running_var, bn.eps, bn.weight,
                                        bn.bias)
        conv.weight, conv.bias = w, b
        parent, _, child = name.rpartition(".")
        setattr(module.get_submodule(parent) if parent else module, child, _norm_act_tail(bn))
        n += 1
    return n


def pooled(tokens: torch.Tensor) -> torch.Tensor:
    """One L2-normalised vector per face: tokens (B,N,D) -> (B,D)."""
    return F.normalize(tokens.float().mean(dim=1), dim=-1)  # (B,D)
