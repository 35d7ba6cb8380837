"""DifferenceAttention: the face's own tokens (query) attend to difference tokens (key/value)."""

from __future__ import annotations

import torch
import torch.nn as nn
from timm.layers import Mlp


class DifferenceAttention(nn.Module):
    """Multi-head cross-attention, Q from the face tokens x, K/V from the difference tokens d = x - reference,
    added back residually, followed by a residual MLP (pre-norm transformer block).

    Args:
        dim: token dimension D (dim % heads == 0).
        heads: attention heads.
        mlp_ratio: hidden size of the MLP relative to dim (0 turns the MLP off).
        attn_drop, proj_drop: dropout on attention weights / outputs.
        norm_layer: normalisation of the query stream.
        kv_norm_layer: normalisation of the difference stream. Identity by default on purpose: a LayerNorm there
            would rescale every difference token to unit variance and erase its magnitude, which is the signal
            ("how far is this face from real faces").
    """

    def __init__(
        self,
        dim: int,
        heads: int = 4,
        mlp_ratio: float = 2.0,
        attn_drop: float = 0.0,
        proj_drop: float = 0.0,
        norm_layer: type[nn.Module] = nn.LayerNorm,
        kv_norm_layer: type[nn.Module] = nn.Identity,
    ) -> None:
        super().__init__()
        if dim % heads:
            raise ValueError(f"dim={dim} is not divisible by heads={heads}")
        self.heads = heads
        self.scale = (dim // heads) ** -0.5
        self.norm_q = norm_layer(dim)
        self.norm_kv = kv_norm_layer(dim) if kv_norm_layer is not nn.Identity else nn.Identity()
        self.q = nn.Linear(dim, dim)
        self.kv = nn.Linear(dim, 2 * dim)
        self.attn_drop = nn.Dropout(attn_drop)
        self.proj = nn.Linear(dim, dim)
        self.proj_drop = nn.Dropout(proj_drop)
        if mlp_ratio > 0:
            self.norm_mlp = norm_layer(dim)
            self.mlp = Mlp(dim, int(dim * mlp_ratio), drop=proj_drop)
        else:
            self.norm_mlp = nn.Identity()
            self.mlp = None

    def forward(self, x: torch.Tensor, diff: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """x: face tokens (B,N,D); diff: difference tokens (B,M,D). Returns (fused (B,N,D), attn (B,h,N,M))."""
        B, N, D = x.shape
        M = diff.shape[1]
        h = self.heads
        q = self.q(self.norm_q(x)).reshape(B, N, h, D // h).transpose(1, 2)  # (B,h,N,d)
        kv = self.kv(self.norm_kv(diff)).reshape(B, M, 2, h, D // h).permute(2, 0, 3, 1, 4)  # (2,B,h,M,d)
        k, v = kv[0], kv[1]  # (B,h,M,d) each
        attn = (q @ k.transpose(-2, -1)) * self.scale  # (B,h,N,M)
        attn = attn.softmax(dim=-1)
        out = self.attn_drop(attn) @ v  # (B,h,N,d)
        out = out.transpose(1, 2).reshape(B, N, D)  # (B,N,D)
        x = x + self.proj_drop(self.proj(out))  # (B,N,D)
        if self.mlp is not None:
            x = x + self.mlp(self.norm_mlp(x))  # (B,N,D)
        return x, attn

    @staticmethod
    def saliency(attn: torch.Tensor) -> torch.Tensor:
        """Where the face looked in the difference map: attn (B,h,N,M) -> (B,M), averaged over heads and queries."""
        return attn.mean(dim=(1, 2))  # (B,M)
