"""The detector: online encoder, momentum key encoder, memory bank, DifferenceAttention and head.

Modes:
    'pair'   - the difference is taken against a given real reference face (training pairs), encoded by the
               key encoder;
    'single' - the reference is recalled from the bank: the top-k real entries nearest (cosine) to the key
               encoder's view of the face. This is what `scan` uses, and what training mixes in.
"""

from __future__ import annotations

import copy
from typing import Any

import torch
import torch.nn as nn

from .attention import DifferenceAttention
from .backbone import Encoder, pooled
from .bank import MemoryBank, encoder_fingerprint
from .config import ModelConfig
from .errors import ForgeryDetError

MODES = ("pair", "single")


class Detector(nn.Module):
    """Face-forgery detector (see module docstring).

    Args:
        cfg: ModelConfig (backbone, dim, grid, heads, bank_size, topk, momentum, temperature, ...).
        pretrained: 'none' to skip loading weights (e.g. when a checkpoint's weights follow), else as
            cfg.pretrained ('auto', 'packaged', 'hub', or a file path).
    Input images are float (B,3,S,S) in [0,1], RGB; the model normalises with its backbone's mean/std.
    """

    def __init__(self, cfg: ModelConfig, pretrained: str | None = None) -> None:
        super().__init__()
        self.cfg = cfg
        self.encoder = Encoder(cfg, pretrained=cfg.pretrained if pretrained is None else pretrained)
        self.pretrained_source = self.encoder.pretrained_source
        self.key_encoder = copy.deepcopy(self.encoder)
        for p in self.key_encoder.parameters():
            p.requires_grad_(False)
        self.attention = DifferenceAttention(cfg.dim, cfg.heads, proj_drop=0.0)
        self.head = nn.Sequential(nn.LayerNorm(cfg.dim), nn.Dropout(cfg.drop), nn.Linear(cfg.dim, 1))
        self.bank = MemoryBank(cfg.bank_size, cfg.grid * cfg.grid, cfg.dim)
        dc = self.encoder.data_config
        self.img_size = int(cfg.img_size or dc["input_size"][-1])
        self.register_buffer("mean", torch.tensor(dc["mean"]).view(1, 3, 1, 1), persistent=False)
        self.register_buffer("std", torch.tensor(dc["std"]).view(1, 3, 1, 1), persistent=False)
        self.key_encoder.eval()

    # ---- encoders ------------------------------------------------------------------------------------------
    def train(self, mode: bool = True) -> "Detector":
        super().train(mode)
        self.key_encoder.eval()  # the key encoder never updates BN statistics: its features must be stable
        return self

    def normalize(self, x: torch.Tensor) -> torch.Tensor:
        return (x - self.mean) / self.std  # (B,3,S,S)

    def encode(self, x: torch.Tensor) -> torch.Tensor:
        """Online encoder: images (B,3,S,S) in [0,1] -> tokens (B,N,D)."""
        return self.encoder(self.normalize(x))

    @torch.no_grad()
    def encode_keys(self, x: torch.Tensor) -> torch.Tensor:
        """Key (momentum) encoder, no gradients: images (B,3,S,S) in [0,1] -> tokens (B,N,D)."""
        return self.key_encoder(self.normalize(x))

    @torch.no_grad()
    def momentum_update(self, momentum: float | None = None) -> None:
        """key <- m * key + (1 - m) * online, for parameters and float buffers (BN statistics)."""
        m = self.cfg.momentum if momentum is None else momentum
        for pk, pq in zip(self.key_encoder.parameters(), self.encoder.parameters()):
            pk.mul_(m).add_(pq.detach(), alpha=1.0 - m)
        for bk, bq in zip(self.key_encoder.buffers(), self.encoder.buffers()):
            if bk.is_floating_point():
                bk.mul_(m).add_(bq, alpha=1.0 - m)
            else:
                bk.copy_(bq)

    def key_fingerprint(self) -> torch.Tensor:
        return encoder_fingerprint(self.key_encoder)

    # ---- the method ----------------------------------------------------------------------------------------
    def classify(self, q: torch.Tensor, ref: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """q: face tokens (B,N,D); ref: reference tokens (B,N,D). Returns logits (B,) and attention (B,h,N,N)."""
        diff = q - ref.to(q.dtype)  # (B,N,D)
        fused, attn = self.attention(q, diff)  # (B,N,D), (B,h,N,N)
        logits = self.head(fused.mean(dim=1)).squeeze(-1)  # (B,D) -> (B,)
        return logits, attn

    def forward(
        self,
        x: torch.Tensor,
        mode: str = "single",
        reference: torch.Tensor | None = None,
        reference_tokens: torch.Tensor | None = None,
        topk: int | None = None,
        exclude: torch.Tensor | None = None,
        bank: MemoryBank | None = None,
    ) -> dict[str, Any]:
        """x: faces (B,3,S,S) in [0,1].

        mode='pair' needs `reference` images (B,3,S,S) or `reference_tokens` (B,N,D) from the key encoder.
        mode='single' retrieves the reference from the bank (`exclude`: (B,F) bool mask of slots each face may
        not retrieve, see MemoryBank.retrieve); `bank` retrieves from another bank of this key encoder instead of
        the model's own (e.g. one person's enrolled faces, see references.py).
        Returns a dict: logits (B,), attention (B,h,N,N), saliency (B,g,g), tokens (B,N,D) online,
        reference (B,N,D); in 'single' mode also neighbours (B,k) slot indices and similarities (B,k); in
        'pair' mode with reference images, reference_keys (B,N,D) (the key encoder's view of the references).
        The key encoder only ever sees the reference (real) faces: 'single' mode is one backbone pass.
        """
        if mode not in MODES:
            raise ForgeryDetError(f"unknown mode {mode!r}: use one of {MODES}")
        B = x.shape[0]
        out: dict[str, Any] = {}
        q = self.encode(x)  # (B,N,D)
        if mode == "pair":
            if reference is not None:
                ref = self.encode_keys(reference)  # (B,N,D)
                out["reference_keys"] = ref
            elif reference_tokens is not None:
                ref = reference_tokens  # (B,N,D)
            else:
                raise ForgeryDetError("mode 'pair' needs a reference face for every input")
        else:
            # The bank holds key-encoder features; the query is the online encoder's, as in MoCo (InfoNCE
            # trains q to match the keys). This keeps 'single' mode at ONE backbone pass, at scan time too.
            bank = self.bank if bank is None else bank
            ref, idx, sims = bank.retrieve(pooled(q.detach()), topk or self.cfg.topk, exclude)  # (B,N,D), (B,k), (B,k)
            out["neighbours"], out["similarities"] = idx, sims
        logits, attn = self.classify(q, ref)
        g = self.cfg.grid
        out.update(
            logits=logits,
            attention=attn,
            saliency=DifferenceAttention.saliency(attn).reshape(B, g, g),  # (B,g,g)
            tokens=q,
            reference=ref,
        )
        return out

    def trainable_parameters(self) -> list[nn.Parameter]:
        return [p for p in self.parameters() if p.requires_grad]
