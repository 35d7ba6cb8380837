"""Coreset selection for the memory bank: which K of many real faces to keep.

Greedy k-center (Gonzalez 1985; the coreset of PatchCore, Roth et al. CVPR 2022): start from one point, then
repeatedly add the point farthest from everything chosen so far. The chosen set's coverage radius (the
largest distance from any face to its nearest chosen face) is at most twice the best possible, so the bank
keeps faces that cover the whole real distribution (rare poses, lighting, people) instead of a random subset
dominated by whatever is most common.

Distances are Euclidean between L2-normalised pooled keys (D dims): ||a - b||^2 = 2 - 2 a.b.
Cost: K passes over the M keys, O(M K D); memory O(M).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

SELECTIONS = ("coreset", "random")


@torch.no_grad()
def kcenter_greedy(keys: torch.Tensor, k: int, generator: torch.Generator | None = None) -> torch.Tensor:
    """Indices (k,) of k of the M keys (M,D) chosen greedily to minimise the coverage radius.

    The first point is drawn with `generator` (seeded: same keys, same seed, same selection). k >= M returns
    every index. Keys are normalised here."""
    m = keys.shape[0]
    if k <= 0:
        raise ValueError(f"k={k} must be >= 1")
    if k >= m:
        return torch.arange(m, device=keys.device)
    x = F.normalize(keys.float(), dim=-1)  # (M,D)
    chosen = torch.empty(k, dtype=torch.long, device=keys.device)  # (K,)
    nearest = torch.full((m,), float("inf"), device=keys.device)  # (M,) squared distance to the chosen set
    cur = int(torch.randint(m, (1,), generator=generator))
    for i in range(k):
        chosen[i] = cur
        d = (2.0 - 2.0 * (x @ x[cur])).clamp_(min=0.0)  # (M,)
        torch.minimum(nearest, d, out=nearest)
        nearest[cur] = -1.0  # never again: once the rest are all at 0 (duplicates), argmax picked a chosen one
        cur = int(nearest.argmax())
    return chosen


@torch.no_grad()
def coverage_radius(keys: torch.Tensor, chosen: torch.Tensor, chunk: int = 65536) -> float:
    """The largest Euclidean distance from any of the keys (M,D) to its nearest chosen key (normalised)."""
    x = F.normalize(keys.float(), dim=-1)  # (M,D)
    c = x[chosen]  # (K,D)
    worst = 0.0
    for s in range(0, x.shape[0], chunk):
        d = (2.0 - 2.0 * (x[s : s + chunk] @ c.T)).clamp_(min=0.0)  # (m,K)
        worst = max(worst, float(d.min(dim=1).values.max()))
    return worst**0.5


def select(keys: torch.Tensor, k: int, how: str = "random", generator: torch.Generator | None = None) -> torch.Tensor:
    """Sorted indices of k of the M keys (M,D): 'coreset' (greedy k-center) or 'random' (uniform)."""
    if how not in SELECTIONS:
        raise ValueError(f"unknown selection {how!r}: use one of {', '.join(SELECTIONS)}")
    m = keys.shape[0]
    if k >= m:
        return torch.arange(m, device=keys.device)
    if how == "coreset":
        return kcenter_greedy(keys, k, generator).sort().values
    return random_subset(m, k, generator).to(keys.device)


def random_subset(m: int, k: int, generator: torch.Generator | None = None) -> torch.Tensor:
    """Sorted indices (k,) of k of m items drawn uniformly without replacement ('random' selection). It needs
    no keys, so a caller can draw first and encode only the k chosen faces: the same draw as select(keys, k,
    'random', generator) with an equally seeded generator. k >= m returns every index."""
    if k >= m:
        return torch.arange(m)
    return torch.randperm(m, generator=generator)[:k].sort().values
