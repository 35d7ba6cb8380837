"""A memory bank larger than RAM: entries on disk, memory-mapped, retrieval through faiss past ~100,000 entries.

The in-checkpoint MemoryBank holds K entries in RAM (65,536 x 7x7x64 fp16 tokens is about 400 MB). A platform
has millions of real faces. A DiskBank keeps them in a folder:

    DIR/bank.json    format, entries (M), tokens (N), dim (D), fingerprint (key encoder, 64 hex), index settings,
                     files: each file's size, modification time and sha256 at the build (model/bankfiles.py)
    DIR/values.f16   (M,N,D) fp16 token maps, raw: a query reads only the k rows it retrieves, by positioned
                     reads (os.pread), not a memory map: on this machine's kernel a page fault maps a whole
                     large folio, so a memory map's RSS grew by ~1.3 MB per 6 KB row read (measured)
    DIR/keys.f32     (M,D) fp32 L2-normalised pooled keys, raw, memory-mapped (exact scan / re-ranking: 4,096
                     scattered 256-byte rows per 64 queries, where Python-level preads would cost ~35 ms)
    DIR/keys.faiss   faiss IVF index of the keys, 8-bit codes (M >= exact_limit and faiss installed: `scale` extra)
    DIR/sources.txt  one line per entry: the real face it came from (optional); sources.idx: (M+1,) int64 offsets

Retrieval has MemoryBank.retrieve's contract (reference tokens, slot indices, similarities, best first), so
`Detector.forward(x, 'single', bank=DiskBank.open(DIR))` works unchanged. Up to `exact_limit` entries (or
without faiss) the keys are scanned exactly in chunks; past it faiss proposes `candidates` entries per query from
compressed codes (IVF, nprobe lists) and they are re-ranked exactly with the fp32 keys read from disk. RAM holds
the faiss codes (D + 8 bytes per entry with the default 8-bit codes) and the rows being read, not the bank.
Writing streams entries to the files (no memory map), so building does not hold the bank in RAM either.
"""

from __future__ import annotations

import json
import math
import os
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Iterable

import numpy as np
import torch
import torch.nn.functional as F

from forgerydet.errors import ForgeryDetError, parse_json
from forgerydet.io import close_all, write_text_atomic
from forgerydet.model.bankfiles import STREAMED, HashedFile, build_record, check_files
from forgerydet.model.config import check_bank_folder

FORMAT = "forgerydet-diskbank"
FORMAT_VERSION = 1
EXACT_LIMIT = 100_000
REBUILD = "`forgerydet rebuild-bank --checkpoint CK --pairs PAIRS.csv --disk-bank DIR`"


def faiss_available() -> bool:
    import importlib.util

    return importlib.util.find_spec("faiss") is not None


def _faiss():
    try:
        import faiss
    except ImportError:
        raise ForgeryDetError(
            "this bank needs faiss for its index: install the optional extra, `pip install 'forgerydet[scale]'` "
            "(faiss-cpu)"
        ) from None
    return faiss


@dataclass
class IndexConfig:
    """faiss settings. nlist: IVF lists (0: about sqrt(M)); codec: how the index stores the keys, a faiss
    index_factory code ('SQ8': 8-bit scalar quantizer, D bytes per key and trained in a blink; 'PQ16': 16-byte
    product quantizer, smaller but slow to train; 'Flat': fp32); nprobe: lists searched per query; candidates:
    entries proposed per query for exact re-ranking (at least k); train_size: keys sampled to train the
    quantizers; exact_limit: below this many entries no index is built and search is exact."""

    nlist: int = 0
    codec: str = "SQ8"
    nprobe: int = 32
    candidates: int = 64
    train_size: int = 65536
    exact_limit: int = EXACT_LIMIT


BANK_FILES = frozenset({"values.f16", "keys.f32", "sources.txt", "sources.idx", "keys.faiss", ".keys.faiss.tmp",
                        "bank.json"})  # what a writer makes (a killed build leaves them; a new build may replace them)


class DiskBankWriter:
    """Stream entries into DIR (a new folder): `add(values)` per batch, then `close()` writes keys' index and
    bank.json. Nothing of the bank stays in RAM but the current batch."""

    def __init__(self, folder: str | Path, tokens: int, dim: int, fingerprint: str) -> None:
        self.dir = Path(folder)
        if (self.dir / "bank.json").exists():
            raise ForgeryDetError(f"{self.dir} already holds a bank: write a new one into another folder")
        others = sorted(p.name for p in self.dir.iterdir() if p.name not in BANK_FILES) if self.dir.is_dir() else []
        if others:  # a crashed write's own files may be overwritten, nobody else's
            raise ForgeryDetError(f"--disk-bank {self.dir} already holds other files ({', '.join(others[:3])}"
                                  f"{', ...' if len(others) > 3 else ''}): give a new or empty folder")
        self.dir.mkdir(parents=True, exist_ok=True)
        self.tokens, self.dim, self.fingerprint, self.count = int(tokens), int(dim), fingerprint, 0
        self._values = HashedFile(open(self.dir / "values.f16", "wb"))  # sha256 on the way: bank.json's `files`
        self._keys = HashedFile(open(self.dir / "keys.f32", "wb"))
        self._sources = HashedFile(open(self.dir / "sources.txt", "wb"))
        self._offsets, self.finite = [0], True  # finite: every key written so far (the open of the bank trusts it)

    @torch.no_grad()
    def add(self, values: torch.Tensor, sources: list[str] | None = None) -> None:
        """values: (B,N,D) token maps of real faces from the key encoder; sources: where each came from."""
        if values.ndim != 3 or values.shape[1:] != (self.tokens, self.dim):
            raise ValueError(f"bank entries must be (B,{self.tokens},{self.dim}), got {tuple(values.shape)}")
        if sources is not None and len(sources) != values.shape[0]:
            raise ValueError(f"{len(sources)} sources for {values.shape[0]} entries")
        for src in sources if sources is not None else [""] * values.shape[0]:
            line = src.replace("\n", " ").encode("utf-8") + b"\n"
            self._sources.write(line)
            self._offsets.append(self._offsets[-1] + len(line))
        k = F.normalize(values.detach().to("cpu").float().mean(dim=1), dim=-1)  # (B,D), as MemoryBank.enqueue
        v = values.detach().to("cpu", torch.float16)  # (B,N,D)
        self._values.write(v.contiguous().numpy().tobytes())
        self._keys.write(k.contiguous().numpy().tobytes())
        self.count += v.shape[0]
        self.finite = self.finite and bool(torch.isfinite(k).all())

    def _close_files(self, quiet: bool = False) -> None:
        close_all((self._values, self._keys, self._sources), quiet=quiet)  # one failed: the others still closed

    def close(self, index: IndexConfig | None = None, seed: int = 0, sources_root: str | None = None) -> "DiskBank":
        self._close_files()
        np.asarray(self._offsets, dtype=np.int64).tofile(self.dir / "sources.idx")
        cfg = index or IndexConfig()
        meta = {"format": FORMAT, "format_version": FORMAT_VERSION, "entries": self.count, "tokens": self.tokens,
                "dim": self.dim, "fingerprint": self.fingerprint, "index": asdict(cfg), "indexed": False,
                "sources_root": sources_root}  # the folder relative sources are taken from (the report's pictures)
        if self.count >= cfg.exact_limit and faiss_available():
            build_index(self.dir, self.count, self.dim, cfg, seed)
            meta["indexed"] = True
        hashes = {n: f.hash.hexdigest() for n, f in zip(STREAMED, (self._values, self._keys, self._sources))}
        meta["files"] = build_record(self.dir, hashes, STREAMED + ("sources.idx",) + ("keys.faiss",) * meta["indexed"],
                                     self.finite)  # so that an open reads the keys only where they may have changed
        write_text_atomic(self.dir / "bank.json", json.dumps(meta, indent=1) + "\n")  # written last: the done-marker
        return DiskBank.open(self.dir)


def _checked_sizes(folder: Path, meta: dict) -> tuple[int, int, int]:
    """bank.json's entries, tokens and dim, every field checked: an edited one is one line, not a KeyError."""
    bad = [k for k in ("entries", "tokens", "dim") if type(meta.get(k)) is not int or meta[k] < (k != "entries")]
    fp, index = meta.get("fingerprint"), meta.get("index", {})
    ints = ("nlist", "nprobe", "candidates", "train_size", "exact_limit")
    if not (isinstance(index, dict) and set(index) <= set(IndexConfig.__dataclass_fields__) and isinstance(
            index.get("codec", ""), str) and all(type(index.get(k, 1)) is int and index.get(k, 1) >= 0 for k in ints)):
        bad.append("index")
    bad += [k for k, ok in (("fingerprint", isinstance(fp, str) and len(fp) == 64), ("indexed", isinstance(meta.get(
        "indexed", False), bool)), ("sources_root", isinstance(meta.get("sources_root") or "", str))) if not ok]
    if bad:
        raise ForgeryDetError(f"{folder}/bank.json: {', '.join(bad)} not as a build writes it (edited?): rebuild the bank")
    return meta["entries"], meta["tokens"], meta["dim"]


def _keys_map(folder: Path, m: int, d: int) -> np.memmap:
    return np.memmap(folder / "keys.f32", dtype=np.float32, mode="r", shape=(m, d))


def build_index(folder: Path, m: int, d: int, cfg: IndexConfig, seed: int = 0) -> None:
    """Train an IVF index (inner product, `cfg.codec` codes) on a sample of the keys and add all keys in chunks."""
    faiss = _faiss()
    keys = _keys_map(folder, m, d)
    nlist = cfg.nlist or max(16, int(round(math.sqrt(m))))
    rng = np.random.default_rng(seed)
    n_train = min(m, max(cfg.train_size, 39 * nlist))
    sample = np.ascontiguousarray(keys[np.sort(rng.choice(m, n_train, replace=False))])  # (S,D)
    try:
        index = faiss.index_factory(d, f"IVF{nlist},{cfg.codec}", faiss.METRIC_INNER_PRODUCT)
    except RuntimeError as e:
        raise ForgeryDetError(f"faiss cannot build IVF{nlist},{cfg.codec} for {d}-dim keys: {str(e)[:120]}") from None
    faiss.extract_index_ivf(index).cp.seed = seed
    index.train(sample)
    for s in range(0, m, 262144):
        index.add(np.ascontiguousarray(keys[s : s + 262144]))
    tmp = folder / ".keys.faiss.tmp"
    faiss.write_index(index, str(tmp))
    os.replace(tmp, folder / "keys.faiss")


class DiskBank:
    """A read-only bank in a folder (see the module docstring); `retrieve` as MemoryBank.retrieve."""

    def __init__(self, folder: Path, meta: dict) -> None:
        self.dir, self.meta = folder, meta
        self.size = m = int(meta["entries"])
        self.num_tokens, self.dim = int(meta["tokens"]), int(meta["dim"])
        self.keys = _keys_map(folder, m, self.dim) if m else np.zeros((0, self.dim), np.float32)  # (M,D)
        self._values_path = folder / "values.f16"  # (M,N,D) fp16, read row by row (read_values)
        self._src_offsets = np.memmap(folder / "sources.idx", dtype=np.int64, mode="r") if m else None  # (M+1,)
        self.index_cfg, self.index = IndexConfig(**meta.get("index", {})), None  # the index: read below when built
        # without faiss an indexed bank is searched exactly: keys.f32 holds every key (the index only proposes them)
        self.index_unused = bool(meta.get("indexed")) and not faiss_available()
        if meta.get("indexed") and not self.index_unused:
            faiss = _faiss()
            try:
                self.index = faiss.read_index(str(folder / "keys.faiss"))
                faiss.extract_index_ivf(self.index).nprobe = self.index_cfg.nprobe
            except RuntimeError:
                raise ForgeryDetError(f"{folder}/keys.faiss is missing or damaged: rebuild the bank") from None
            if (self.index.ntotal, self.index.d) != (m, self.dim):  # another bank's index: it never proposes the rest
                raise ForgeryDetError(f"{folder}/keys.faiss indexes {self.index.ntotal} keys of {self.index.d} dims, "
                                      f"the bank holds {m} of {self.dim}: it is another bank's; rebuild the bank")

    @classmethod
    def open(cls, folder: str | Path) -> "DiskBank":
        folder = check_bank_folder(folder)
        try:
            meta = parse_json((folder / "bank.json").read_text(encoding="utf-8"))
        except FileNotFoundError:
            raise ForgeryDetError(f"{folder} holds no finished disk bank (no bank.json)") from None
        except ValueError:
            raise ForgeryDetError(f"{folder}/bank.json is corrupt: rebuild the bank") from None
        if not isinstance(meta, dict) or meta.get("format") != FORMAT or meta.get("format_version") != FORMAT_VERSION:
            raise ForgeryDetError(f"{folder} is not a forgerydet disk bank of format {FORMAT_VERSION}")
        check_files(folder, meta, *_checked_sizes(folder, meta))  # cut or damaged files, NaN keys, edited keys
        return cls(folder, meta)

    @property
    def filled(self) -> int:
        return self.size

    @property
    def fingerprint(self) -> str:
        return self.meta["fingerprint"]

    @property
    def written(self) -> int:
        """When bank.json, written last by each build, was written (ns): a bank rebuilt in its folder, which keeps
        the key encoder's fingerprint, gets another."""
        return (self.dir / "bank.json").stat().st_mtime_ns

    def search_text(self) -> str:
        """How `search` finds the neighbours, in words (for `info`)."""
        return "faiss + exact re-ranking" if self.index is not None else \
            "exact (faiss is not installed here: its index is not used)" if self.index_unused else "exact"

    def read_values(self, rows: np.ndarray) -> np.ndarray:
        """Token maps (U,N,D) fp16 of the given sorted distinct rows, read from disk (consecutive rows at once)."""
        row = self.num_tokens * self.dim * 2
        out = np.empty((len(rows), self.num_tokens, self.dim), np.float16)  # (U,N,D)
        fd = os.open(self._values_path, os.O_RDONLY)
        try:
            i = 0
            while i < len(rows):
                j = i + 1
                while j < len(rows) and rows[j] == rows[j - 1] + 1:
                    j += 1
                buf = os.pread(fd, row * (j - i), int(rows[i]) * row)
                out[i:j] = np.frombuffer(buf, np.float16).reshape(j - i, self.num_tokens, self.dim)
                i = j
        finally:
            os.close(fd)
        return out

    def source_of(self, slot: int) -> str | None:
        """The real face entry `slot` came from (None when not recorded); reads one line of sources.txt."""
        if self._src_offsets is None or not 0 <= slot < self.size:
            return None
        a, b = int(self._src_offsets[slot]), int(self._src_offsets[slot + 1])
        with open(self.dir / "sources.txt", "rb") as f:
            f.seek(a)
            line = f.read(b - a).decode("utf-8", "replace").rstrip("\n")
        return line or None

    def to(self, device) -> "DiskBank":  # rows are read to the query's device at retrieval
        return self

    # ---- search ---------------------------------------------------------------------------------------------
    def search_exact(self, q: np.ndarray, k: int, chunk: int = 131072) -> tuple[np.ndarray, np.ndarray]:
        """Exact top-k inner products of normalised queries (B,D) over all keys, in chunks: (B,k) sims, ids."""
        b = q.shape[0]
        best_s = np.full((b, 0), -np.inf, np.float32)
        best_i = np.zeros((b, 0), np.int64)
        qt = torch.from_numpy(q)
        for s in range(0, self.size, chunk):
            sims = qt @ torch.from_numpy(np.array(self.keys[s : s + chunk])).T  # (B,c), a copy of the chunk
            ts, ti = sims.topk(min(k, sims.shape[1]), dim=1)  # (B,k)
            cat_s = np.concatenate([best_s, ts.numpy()], 1)
            cat_i = np.concatenate([best_i, ti.numpy() + s], 1)
            order = np.argsort(-cat_s, axis=1, kind="stable")[:, :k]
            best_s, best_i = np.take_along_axis(cat_s, order, 1), np.take_along_axis(cat_i, order, 1)
        return best_s, best_i

    def search(self, q: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
        """Top-k (B,k) sims and ids: exact below the limit, else faiss candidates re-ranked exactly."""
        if self.index is None:
            return self.search_exact(q, k)
        c = max(k, self.index_cfg.candidates)
        _, cand = self.index.search(q, c)  # (B,C) ids, -1 where a list ran short
        valid = cand >= 0
        safe = np.where(valid, cand, 0)
        rows = np.sort(np.unique(safe))  # read each candidate key once, in file order
        pos = np.searchsorted(rows, safe)  # (B,C)
        ck = np.asarray(self.keys[rows])  # (U,D)
        sims = np.einsum("bd,bcd->bc", q, ck[pos])  # (B,C) exact re-ranking
        sims = np.where(valid, sims, -np.inf)
        order = np.argsort(-sims, axis=1, kind="stable")[:, :k]  # (B,k)
        return np.take_along_axis(sims, order, 1).astype(np.float32), np.take_along_axis(cand, order, 1)

    @torch.no_grad()
    def retrieve(
        self, query: torch.Tensor, k: int = 1, exclude: torch.Tensor | None = None
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """query (B,D) -> reference tokens (B,N,D) (normalised mean of the top-k entries' tokens), slot indices
        (B,k) and cosine similarities (B,k), best first. `exclude` is not supported (training uses MemoryBank)."""
        if exclude is not None:
            raise ValueError("DiskBank does not take exclude masks")
        if self.size == 0:
            raise ForgeryDetError(f"the disk bank {self.dir} is empty")
        k = min(int(k), self.size)
        q = F.normalize(query.float(), dim=-1).cpu().numpy()  # (B,D)
        sims, idx = self.search(q, k)  # (B,k), (B,k)
        rows = np.sort(np.unique(idx))
        tok = self.read_values(rows)  # (U,N,D) fp16, read from disk
        # numpy, single-threaded: these arrays are small, and torch's intra-op threads cost more than they
        # save here (measured: 2 threads 8x the CPU time of 1 on a busy 2-core machine)
        ref = tok[np.searchsorted(rows, idx)].astype(np.float32).mean(axis=1)  # (B,k,N,D) -> (B,N,D)
        ref /= np.maximum(np.linalg.norm(ref, axis=-1, keepdims=True), 1e-12)
        dev = query.device
        return torch.from_numpy(ref).to(dev), torch.from_numpy(idx).to(dev), torch.from_numpy(sims).to(dev)

    def nbytes_on_disk(self) -> int:
        return sum(p.stat().st_size for p in self.dir.iterdir() if p.is_file())


def write_bank(folder: str | Path, batches: Iterable[torch.Tensor | tuple[torch.Tensor, list[str]]], tokens: int,
               dim: int, fingerprint: str, index: IndexConfig | None = None, seed: int = 0,
               sources_root: str | None = None) -> DiskBank:
    """Write a DiskBank from batches of (B,N,D) key-encoder token maps (or (values, sources) pairs, relative ones
    taken from `sources_root`); a failed write leaves no bank behind."""
    folder = Path(folder)
    w = DiskBankWriter(folder, tokens, dim, fingerprint)
    try:
        for b in batches:
            w.add(*b) if isinstance(b, tuple) else w.add(b)
        return w.close(index, seed, sources_root)
    except BaseException:
        w._close_files(quiet=True)  # a full disk fails their last flush too: the files are removed regardless
        if not (folder / "bank.json").exists():  # remove only what this write created
            for name in BANK_FILES - {"bank.json"}:
                (folder / name).unlink(missing_ok=True)
        raise


# ---- for the CLI --------------------------------------------------------------------------------------------
def open_for(folder: str | Path, model) -> DiskBank:
    """Open a disk bank for scanning with `model`, refusing one written by another key encoder."""
    from forgerydet.model.references import fingerprint_full

    bank = DiskBank.open(folder)
    want = fingerprint_full(model.key_fingerprint())
    if bank.fingerprint != want:
        raise ForgeryDetError(f"{folder} was filled by another key encoder (fingerprint {bank.fingerprint[:16]}, this "
                              f"model's {want[:16]}): rebuild it with {REBUILD}")
    if bank.num_tokens != model.bank.num_tokens or bank.dim != model.bank.dim or not bank.size:  # (empty: mid-scan)
        raise ForgeryDetError(f"{folder} holds {bank.size} real faces of {bank.num_tokens}x{bank.dim} tokens, the model "
                              f"needs some of {model.bank.num_tokens}x{model.bank.dim}: rebuild it with {REBUILD}")
    return bank
