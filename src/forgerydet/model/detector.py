"""The detector: online encoder, momentum key encoder, memory bank, DifferenceAttention and head.

Modes:
    'pair'   - the difference is taken against a given real reference face (training pairs), encoded by the
               key encoder;
    'single' - the reference is recalled from the bank: the top-k real entries nearest (cosine) to the key
               encoder's view of the face. This is what `scan` uses, and what training mixes in.
"""

from __future__ import annotations

import copy
import os
from typing import Any, Callable

import numpy as np
import torch
import torch.nn as nn

from forgerydet.errors import ForgeryDetError
from forgerydet.model.attention import DifferenceAttention
from forgerydet.model.backbone import Encoder, pooled
from forgerydet.model.bank import MemoryBank, encoder_fingerprint
from forgerydet.model.calibration import check_precision, nearest_similarity
from forgerydet.model.config import ModelConfig

MODES = ("pair", "single")


def precision_autocast(device: torch.device, precision: str) -> torch.autocast:
    """The autocast context that scores faces in `precision` (model/calibration.PRECISION_CHOICES) on `device`:
    fp32 turns autocast off (also inside an outer one), bf16 works on a CPU or CUDA, fp16 needs CUDA."""
    check_precision(precision, device.type)
    if precision == "fp32":
        return torch.autocast(device_type=device.type, enabled=False)
    return torch.autocast(device_type=device.type, dtype=torch.bfloat16 if precision == "bf16" else torch.float16)


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
        self.img_size = self.encoder.input_size
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

    def key_features(self) -> Callable[[torch.Tensor], torch.Tensor]:
        """encode_keys for encoding many faces (bank rebuilds, enrolment): a copy of the key encoder with its
        BatchNorms folded into the convolutions (Encoder.fold_batchnorm; tokens equal to ~1e-6). Take a new one
        after the key encoder changes. Fingerprints still come from the key encoder itself. 2-core AVX2 EPYC,
        shipped model, rebuild_bank over 384 real faces in calls of 64, with the CLI's malloc setting,
        2026-12-04, three runs each alternated: median 6.19 s as stored, 5.40 s folded."""
        keys = copy.deepcopy(self.key_encoder).eval()
        keys.fold_batchnorm()

        @torch.no_grad()
        def encode(x: torch.Tensor) -> torch.Tensor:
            return keys(self.normalize(x))

        return encode

    @torch.no_grad()
    def momentum_update(self, momentum: float | None = None) -> None:
        """key <- m * key + (1 - m) * online, for parameters and float buffers (BN statistics).

        Computed as key + (1 - m) * (online - key) (lerp), which leaves a key tensor equal to its online tensor
        bit-identical: the form m * key + (1 - m) * online rounded every frozen backbone weight of an LN-tuned
        DINOv2 away from the online one (all 124 frozen ViT-S tensors, up to 1.3e-5 relative after 800 steps), so
        the key encoder drifted from weights it should equal and could not be stored by reference (model/frozen.py)."""
        w = 1.0 - (self.cfg.momentum if momentum is None else momentum)
        for pk, pq in zip(self.key_encoder.parameters(), self.encoder.parameters()):
            pk.lerp_(pq.detach(), w)
        for bk, bq in zip(self.key_encoder.buffers(), self.encoder.buffers()):
            if bk.is_floating_point():
                bk.lerp_(bq, w)
            else:
                bk.copy_(bq)

    @property
    def uses_bank(self) -> bool:
        """Whether 'single' mode needs the bank: False for the reference='none' ablation."""
        return self.cfg.reference == "bank"

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
        if not self.uses_bank:  # ablation: no reference at all, the head sees q itself
            ref = torch.zeros_like(q)  # (B,N,D)
            out["neighbours"] = torch.zeros((B, 0), dtype=torch.long, device=q.device)  # (B,0)
            out["similarities"] = torch.zeros((B, 0), device=q.device)  # (B,0)
        elif mode == "pair":
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

    @torch.no_grad()
    def single_scores(self, x: torch.Tensor, tta: str = "none", bank: MemoryBank | None = None,
                      precision: str = "fp32") -> tuple[dict[str, Any], np.ndarray, np.ndarray]:
        """'single' mode as calibration and scan score it: the forward outputs for x (B,3,S,S), and the logits (B,)
        and nearest-bank similarities (B,) (model/calibration.py), both the means over x and its mirror image with
        tta='flip'. The outputs (attention, neighbours) stay those of x as it is. precision: the arithmetic of the
        forward passes (precision_autocast)."""
        with precision_autocast(x.device, precision):
            o = self(x, "single", bank=bank)
            of = self(x.flip(-1), "single", bank=bank) if tta == "flip" else None
        logits = o["logits"].float().cpu().numpy()
        sims = nearest_similarity(o["similarities"].float().cpu().numpy())
        if of is not None:
            logits = (logits + of["logits"].float().cpu().numpy()) / 2
            sims = (sims + nearest_similarity(of["similarities"].float().cpu().numpy())) / 2
        return o, logits, sims

    def trainable_parameters(self) -> list[nn.Parameter]:
        return [p for p in self.parameters() if p.requires_grad]


# ---- what a configuration can hold and costs (checked before training starts) -----------------------------
ACTIVATION_FLOATS_PER_PIXEL = 64  # rough training activations of a timm CNN per input pixel (forward + backward)


def estimate_train_bytes(cfg: ModelConfig, batch_size: int, img_size: int, num_params: int = 0) -> int:
    """A rough lower bound of the memory one training step needs: the bank (fp32 keys, fp16 token maps), the
    attention maps of a batch (B,h,N,N; forward, softmax and gradients, 'pair' and 'single' batches), the
    retrieved references (B,k,N,D) and backbone activations; plus weights, gradients and AdamW state when
    num_params is given. Good to refuse a run that cannot fit (a --grid of 100 needs ~200 GB), not to plan one."""
    n = cfg.grid * cfg.grid
    bank = cfg.bank_size * (cfg.dim * 4 + n * cfg.dim * 2 + 8)
    attention = batch_size * cfg.heads * n * n * 4 * 4
    references = batch_size * cfg.topk * n * cfg.dim * 4 * 2
    activations = batch_size * img_size * img_size * ACTIVATION_FLOATS_PER_PIXEL * 4
    weights = num_params * 4 * 5  # online + key encoder, gradients, two AdamW moments
    return bank + attention + references + activations + weights


def available_bytes(device: torch.device) -> int | None:
    """Free memory of the device: the GPU's free memory, or MemAvailable of the machine; None if unknown."""
    if device.type == "cuda":
        try:
            return int(torch.cuda.mem_get_info(device)[0])
        except RuntimeError:
            return None
    try:
        with open("/proc/meminfo", encoding="ascii") as f:
            for line in f:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except (OSError, ValueError):
        pass
    try:
        return os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
    except (ValueError, OSError, AttributeError):
        return None


def check_memory(cfg: ModelConfig, batch_size: int, device: torch.device, kept_from: str = "") -> None:
    """Refuse, before anything is allocated, a configuration whose estimated memory exceeds what is free. `kept_from`:
    the option whose checkpoint's model settings are kept (--init), so that only --batch-size is left to lower."""
    img = cfg.img_size or 224
    need, free = estimate_train_bytes(cfg, batch_size, img), available_bytes(device)
    if free is not None and need > free:
        lower = (f"--batch-size ({kept_from} keeps its checkpoint's model settings)" if kept_from else
                 "--grid, --dim, --bank-size, --batch-size or --img-size")
        raise ForgeryDetError(
            f"this configuration needs at least ~{need / 2**30:.1f} GiB ({cfg.grid}x{cfg.grid} tokens of D={cfg.dim}, "
            f"bank {cfg.bank_size:,}, batch {batch_size}, {img} px) but {device} has {free / 2**30:.1f} GiB free: "
            f"lower {lower}")


def check_tokens(model: Detector) -> None:
    """Refuse a token grid or dimension the backbone cannot fill: grid at most twice the side of the backbone's
    last feature map at this image size (beyond that the pooled tokens are only repeats of feature cells), and
    dim at most its channels (a wider projection adds no information)."""
    cfg, bb = model.cfg, model.encoder.backbone
    info = getattr(bb, "feature_info", None)
    reduction = None
    try:
        reduction = int(info[-1]["reduction"]) if info else None
    except (KeyError, TypeError, IndexError):
        reduction = None
    if reduction:
        side = -(-model.img_size // reduction)
    else:
        with torch.no_grad():
            side = int(min(model.encoder.feature_map(torch.zeros(1, 3, model.img_size, model.img_size)).shape[-2:]))
    channels = int(bb.num_features)
    if cfg.grid > 2 * side:
        raise ForgeryDetError(
            f"--grid {cfg.grid}: more than the backbone can fill ({cfg.backbone} gives a {side}x{side} feature map at "
            f"{model.img_size} px, and the token grid's side may be at most twice the map's); use --grid {2 * side} or "
            f"less (or a larger --img-size)")
    if cfg.dim > channels:
        raise ForgeryDetError(f"--dim {cfg.dim}: more than the {channels} channels {cfg.backbone} produces; use --dim <= {channels}")
