"""The memory bank of real-face features: a MoCo ring queue stored as persistent buffers, so it saves with
the checkpoint and moves with `.to(device)`."""

from __future__ import annotations

import hashlib

import torch
import torch.nn as nn
import torch.nn.functional as F

from forgerydet.errors import ForgeryDetError
from forgerydet.model import coreset

FINGERPRINT_BYTES = 32


def encoder_fingerprint(module: nn.Module) -> torch.Tensor:
    """SHA-256 over a module's state (names, shapes, fp32 values), as a (32,) uint8 tensor.

    Identifies the key encoder that filled a bank: a bank is only valid with the encoder that wrote it.
    """
    h = hashlib.sha256()
    for name, t in module.state_dict().items():
        t = t.detach().to("cpu")
        h.update(name.encode())
        h.update(str(tuple(t.shape)).encode())
        h.update((t.float() if t.is_floating_point() else t).contiguous().numpy().tobytes())
    return torch.frombuffer(bytearray(h.digest()), dtype=torch.uint8).clone()  # (32,)


def fingerprint_hex(fp: torch.Tensor) -> str:
    return bytes(fp.to("cpu").tolist()).hex()[:16]


class MemoryBank(nn.Module):
    """Ring queue of K real-face entries; each entry is N spatial tokens of dimension D plus one
    L2-normalised pooled key used for retrieval.

    Args:
        size: K, number of entries.
        tokens: N, spatial tokens per entry.
        dim: D, token dimension.
        token_dtype: storage dtype of the tokens (fp16 halves memory; keys stay fp32 for exact cosine ranking).

    The bank only changes when asked: `enqueue`, `update_slots` and `rebuild` write; `retrieve` never does.
    Unfilled slots are never retrieved. No `K % B == 0` requirement: writes wrap around.
    """

    _ENTRY_BUFFERS = ("keys", "values", "source")  # one row per slot; stored for filled slots only

    def __init__(self, size: int, tokens: int, dim: int, token_dtype: torch.dtype = torch.float16) -> None:
        super().__init__()
        for name, v in (("size", size), ("tokens", tokens), ("dim", dim)):
            if int(v) < 1:
                raise ValueError(f"MemoryBank {name}={v} must be >= 1")
        self.size, self.num_tokens, self.dim = int(size), int(tokens), int(dim)
        self.register_buffer("keys", torch.zeros(size, dim))  # (K,D)
        self.register_buffer("values", torch.zeros(size, tokens, dim, dtype=token_dtype))  # (K,N,D)
        self.register_buffer("source", torch.full((size,), -1, dtype=torch.long))  # (K,) id of the real face, -1 unknown
        self.register_buffer("ptr", torch.zeros((), dtype=torch.long))
        self.register_buffer("fill", torch.zeros((), dtype=torch.long))
        self.register_buffer("fingerprint", torch.zeros(FINGERPRINT_BYTES, dtype=torch.uint8))  # (32,)

    # ---- reading -------------------------------------------------------------------------------------------
    @property
    def filled(self) -> int:
        return int(self.fill)

    def filled_keys(self) -> torch.Tensor:
        """The keys of filled slots only (F,D): the negatives for InfoNCE."""
        return self.keys[: self.filled]  # slots fill from 0 upwards and stay filled

    def nearest_other_similarity(self, chunk: int = 1024) -> torch.Tensor:
        """Each filled key's cosine similarity to its nearest other filled key (F,), fp32: computed `chunk` rows at a
        time, so memory grows with F, not F**2 (a person of 20,000 enrolled faces took a 1.6 GB matrix per scan)."""
        keys = self.filled_keys().float()  # (F,D), unit length
        out = torch.empty(keys.shape[0])
        for i in range(0, keys.shape[0], chunk):
            sims = keys[i : i + chunk] @ keys.T  # (C,F)
            rows = torch.arange(sims.shape[0])
            sims[rows, rows + i] = -2.0  # not itself
            out[i : i + sims.shape[0]] = sims.max(dim=1).values.cpu()
        return out

    def contents_digest(self) -> str:
        """16 hex digits of SHA-256 over the filled keys (fp32) in slot order: which real faces the bank holds,
        not only which encoder wrote them (`fingerprint`). A calibration records it, so a rebuilt bank is seen
        to differ from the one the threshold and the bank fusion were fitted against."""
        h = hashlib.sha256(str(self.filled).encode())
        h.update(self.filled_keys().detach().to("cpu", torch.float32).contiguous().numpy().tobytes())
        return h.hexdigest()[:16]

    @torch.no_grad()
    def retrieve(
        self, query: torch.Tensor, k: int = 1, exclude: torch.Tensor | None = None
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Cosine top-k among filled entries.

        query: (B,D) (normalised here). exclude: optional (B,F) bool mask over the filled slots, True = may not
        be retrieved for that query (training uses it to hide a face's own source video from it, as at scan time).
        Returns reference tokens (B,N,D) = the L2-normalised mean of the top-k entries' tokens, their slot
        indices (B,k) and cosine similarities (B,k), best first.
        """
        n = self.filled
        if n == 0:
            raise ForgeryDetError("the memory bank is empty: run `forgerydet rebuild-bank` (or train) to fill it")
        k = min(int(k), n)
        q = F.normalize(query.float(), dim=-1)  # (B,D)
        with torch.autocast(q.device.type, enabled=False):  # fp32 inside a bf16/fp16 step: bf16 cosines reordered
            sims = q @ self.keys[:n].T  # (B,F)                  18 % of top-1 neighbours (steps of ~0.004)
        if exclude is not None:
            sims = sims.masked_fill(exclude, -3.0)  # below any cosine: topk returns them only when nothing else is left
        top_sim, top_idx = sims.topk(k, dim=-1)  # (B,k), (B,k)
        entries = self.values[top_idx].float()  # (B,k,N,D)
        if exclude is None:
            ref = entries.mean(dim=1)  # (B,N,D)
        else:  # an excluded entry (the face's own source) never enters the reference; none left: a zero reference
            w = (top_sim > -2.0).float()[:, :, None, None]  # (B,k,1,1)
            ref = (entries * w).sum(dim=1) / w.sum(dim=1).clamp(min=1.0)
        return F.normalize(ref, dim=-1), top_idx, top_sim

    # ---- writing -------------------------------------------------------------------------------------------
    def _check(self, values: torch.Tensor) -> None:
        if values.ndim != 3 or values.shape[1:] != (self.num_tokens, self.dim):
            raise ValueError(f"bank entries must be (B,{self.num_tokens},{self.dim}), got {tuple(values.shape)}")

    @staticmethod
    def _keys_of(values: torch.Tensor) -> torch.Tensor:
        return F.normalize(values.float().mean(dim=1), dim=-1)  # (B,N,D) -> (B,D)

    @torch.no_grad()
    def enqueue(self, values: torch.Tensor, source: torch.Tensor | None = None) -> None:
        """Write B entries at the pointer, wrapping around; the oldest entries are overwritten."""
        self._check(values)
        B = values.shape[0]
        if B == 0:
            return
        if B > self.size:  # only the newest K can survive
            values = values[-self.size :]
            source = None if source is None else source[-self.size :]
            B = self.size
        idx = (self.ptr + torch.arange(B, device=self.keys.device)) % self.size  # (B,)
        self.values[idx] = values.to(self.values.dtype)
        self.keys[idx] = self._keys_of(values)
        self.source[idx] = -1 if source is None else source.to(self.source.device, torch.long)
        self.ptr.copy_((self.ptr + B) % self.size)
        self.fill.copy_(torch.clamp(self.fill + B, max=self.size))

    @torch.no_grad()
    def update_slots(self, slots: torch.Tensor, values: torch.Tensor, momentum: float) -> None:
        """EMA update of existing slots: entry <- normalise(m * entry + (1 - m) * value)."""
        self._check(values)
        if not 0.0 <= momentum < 1.0:
            raise ValueError(f"momentum={momentum} must be in [0, 1)")
        if bool((slots >= self.filled).any()) or bool((slots < 0).any()):
            raise ValueError("update_slots may only touch filled slots")
        new = momentum * self.values[slots].float() + (1.0 - momentum) * values.float()  # (B,N,D)
        new = F.normalize(new, dim=-1)
        self.values[slots] = new.to(self.values.dtype)
        self.keys[slots] = self._keys_of(new)

    @torch.no_grad()
    def rebuild(
        self,
        values: torch.Tensor,
        fingerprint: torch.Tensor,
        source: torch.Tensor | None = None,
        generator: torch.Generator | None = None,
        select: str = "random",
    ) -> int:
        """Replace the whole content with these entries (all real training faces, from one encoder).

        More entries than K: K are kept, chosen by `select`: 'random' (uniform) or 'coreset' (greedy k-center
        on the pooled keys, see coreset.py: the faces that cover the real distribution); seeded by `generator`.
        Returns the number of entries written.
        """
        self._check(values)
        n = values.shape[0]
        if n > self.size:
            keep = coreset.select(self._keys_of(values), self.size, select, generator).to(values.device)  # (K,)
            values = values[keep]
            source = None if source is None else source[keep.to(source.device)]
            n = self.size
        self.keys.zero_()
        self.values.zero_()
        self.source.fill_(-1)
        self.ptr.zero_()
        self.fill.zero_()
        self.enqueue(values, source)
        self.fingerprint.copy_(fingerprint)
        return n

    # ---- storage: filled entries only ---------------------------------------------------------------------------
    def _save_to_state_dict(self, destination, prefix, keep_vars):
        """Save only the filled entries (F rows of keys/values/source, fp16 token maps): a checkpoint does not
        carry K - F empty slots. Slots fill from 0 upwards and a wrapped queue is full, so [:F] is all of them."""
        super()._save_to_state_dict(destination, prefix, keep_vars)
        n = self.filled
        for name in self._ENTRY_BUFFERS:
            destination[prefix + name] = destination[prefix + name][:n]  # (K,...) -> (F,...)

    def _load_from_state_dict(self, state_dict, prefix, local_metadata, strict, missing_keys, unexpected_keys, error_msgs):
        """Accept F <= K filled rows (current format) or the whole K-row buffer (checkpoints written before
        filled-only storage): rows are placed at slots 0..F-1 and the rest of the K slots stay empty."""
        fill_key = prefix + "fill"
        present = [prefix + n for n in self._ENTRY_BUFFERS if prefix + n in state_dict]
        if present and fill_key in state_dict:
            fill = state_dict[fill_key]
            if fill.numel() != 1 or fill.is_floating_point() or fill.dtype == torch.bool or \
                    any(state_dict[k].dim() == 0 for k in present):  # int() of it raised, or read a float's bits
                error_msgs.append(f"bank fill of shape {list(fill.shape)} and type {fill.dtype} is not a count")
                return
            rows = {int(state_dict[k].shape[0]) for k in present}
            n = int(fill)
            if len(rows) != 1 or (rows != {n} and rows != {self.size}) or not 0 <= n <= self.size:
                error_msgs.append(
                    f"bank entries do not fit: {sorted(rows)} rows for fill={n} in a bank of {self.size} slots"
                )
                return
            for name in self._ENTRY_BUFFERS:
                key = prefix + name
                if key in state_dict:
                    full = getattr(self, name).detach().clone()  # (K,...) with this bank's empty-slot value
                    full.fill_(-1 if name == "source" else 0)
                    full[:n] = state_dict[key][:n].to(full.dtype)
                    state_dict[key] = full
        super()._load_from_state_dict(state_dict, prefix, local_metadata, strict, missing_keys, unexpected_keys, error_msgs)

    def extra_repr(self) -> str:
        return f"size={self.size}, tokens={self.num_tokens}, dim={self.dim}, fill={self.filled}"

    def nbytes(self) -> int:
        return sum(b.numel() * b.element_size() for b in self.buffers())
