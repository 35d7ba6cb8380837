"""The face encoder: a timm backbone by name, its last feature map projected to D and pooled to a small
grid of L2-normalised tokens (B, N, D) with N = grid**2."""

from __future__ import annotations

import math

import timm
import torch
import torch.nn as nn
import torch.nn.functional as F

from forgerydet.errors import ForgeryDetError
from forgerydet.model.config import ModelConfig


def create_backbone(name: str, img_size: int | None = None) -> nn.Module:
    """A timm classifier by name, randomly initialised (weights are loaded separately, offline)."""
    if not timm.is_model(name):
        raise ForgeryDetError(
            f"unknown backbone {name!r}: use a timm model name (see `python -m timm.models` or timm.list_models())"
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


def pooled(tokens: torch.Tensor) -> torch.Tensor:
    """One L2-normalised vector per face: tokens (B,N,D) -> (B,D)."""
    return F.normalize(tokens.float().mean(dim=1), dim=-1)  # (B,D)
