"""Losses: BCE on the head's logit, and InfoNCE against the queue of real-face keys."""

from __future__ import annotations

import torch
import torch.nn.functional as F


def bce_loss(logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """logits (B,), labels (B,) with 1 = fake."""
    return F.binary_cross_entropy_with_logits(logits.float(), labels.float())


def info_nce(q: torch.Tensor, k: torch.Tensor, queue: torch.Tensor, temperature: float = 0.07,
             exclude: torch.Tensor | None = None) -> torch.Tensor:
    """MoCo InfoNCE: each query's positive is its key (the key encoder's view of its real reference); the
    negatives are the queue of real-face keys, less those `exclude` marks: the entries of the query's own source,
    near-copies of the positive (the bank is rebuilt from every training real, the positive's own face included),
    which as negatives would push the query away from its positive (MoCo's false negatives).

    q: (B,D) online features, k: (B,D) keys, queue: (K,D) real keys (filled slots only), exclude: (B,K) bool or
    None. All L2-normalised here.
    """
    q = F.normalize(q.float(), dim=-1)  # (B,D)
    k = F.normalize(k.float(), dim=-1)  # (B,D)
    l_pos = (q * k).sum(dim=-1, keepdim=True)  # (B,1)
    with torch.autocast(q.device.type, enabled=False):  # fp32 inside a bf16/fp16 step, as the bank's retrieval
        l_neg = q @ F.normalize(queue.float(), dim=-1).T  # (B,K)
    if exclude is not None:
        l_neg = l_neg.masked_fill(exclude, float("-inf"))
    logits = torch.cat([l_pos, l_neg], dim=1) / temperature  # (B,1+K)
    labels = torch.zeros(q.shape[0], dtype=torch.long, device=q.device)  # the positive is column 0
    return F.cross_entropy(logits, labels)
