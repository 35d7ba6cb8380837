"""Memory-bank retrieval speed and size.

1. The in-checkpoint MemoryBank (issue 2): 64 queries against a full bank of 65,536 entries on this CPU.
   Targets: retrieve under 50 ms, bank memory under 600 MB.
2. The bank at scale (issue 12): a DiskBank (forgerydet.model.diskbank) of 10^4, 10^5 and 10^6 synthetic entries
   (7x7 tokens x D=64, fp16 on disk). Each size is built in its own process (time, peak RSS), then opened and
   queried in another: 64 queries, top-4, median over repeats; the resident memory of that process after the
   queries (VmRSS: Python + torch + faiss + the pages read); recall@4 of the retrieval against an exact scan of
   all keys. Below 100,000 entries search is exact; from 100,000 on it goes through faiss (IVF, 8-bit codes,
   nprobe 32, 64 candidates re-ranked exactly). Targets at 10^6: query < 50 ms, RSS < 2 GB, recall@4 >= 0.95.
   The query figure's note gives the process CPU time too: on a machine shared with other jobs the wall time
   includes waiting for a core, the CPU time does not.
   Synthetic entries are clustered as real faces are (100 entries around each of M/100 centres, as frames of
   one video; queries are new entries around random centres): uniform random vectors would have no
   neighbours worth finding. The files go to a temp folder (6.3 GB at 10^6) and are deleted afterwards.

    .venv/bin/python bench/bank.py [--scale 10000,100000,1000000] [--no-scale] [--json]

Prints one line per figure; `--json` prints a JSON object (flat keys of part 1, and `figures`) for run_all.py.
"""

from __future__ import annotations

import argparse
import importlib
import json
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import torch
import torch.nn.functional as F

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import figure, finish, machine, print_figures  # noqa: E402

from forgerydet.model.bank import MemoryBank
from forgerydet.model.config import ModelConfig

QUERY_MS_TARGET, RSS_MB_TARGET, RECALL_TARGET = 50.0, 2048.0, 0.95
PER_CENTRE = 100


def memory_bank_part(size: int, queries: int, repeats: int, device: str) -> dict:
    cfg = ModelConfig()
    N, D = cfg.grid * cfg.grid, cfg.dim
    bank = MemoryBank(size, N, D).to(device)
    g = torch.Generator().manual_seed(0)
    for start in range(0, size, 8192):  # fill in chunks (as a rebuild would)
        n = min(8192, size - start)
        bank.enqueue(F.normalize(torch.randn(n, N, D, generator=g), dim=-1).to(device))
    q = torch.randn(queries, D, generator=g).to(device)
    bank.retrieve(q, cfg.topk)  # warm-up
    times = []
    for _ in range(repeats):
        if device.startswith("cuda"):
            torch.cuda.synchronize()
        t0 = time.perf_counter()
        bank.retrieve(q, cfg.topk)
        if device.startswith("cuda"):
            torch.cuda.synchronize()
        times.append(time.perf_counter() - t0)
    times.sort()
    return {"bank_entries": bank.filled, "tokens_per_entry": N, "dim": D, "topk": cfg.topk,
            "retrieve_ms_median": 1000 * times[len(times) // 2], "retrieve_ms_min": 1000 * times[0],
            "bank_mb": bank.nbytes() / 2**20}


# ---- part 2: one size, in child processes ---------------------------------------------------------------------
def _centres(m: int, n: int, d: int) -> torch.Tensor:
    return torch.randn(max(1, m // PER_CENTRE), n, d, generator=torch.Generator().manual_seed(1))  # (J,N,D)


def _entries(centres: torch.Tensor, count: int, g: torch.Generator) -> torch.Tensor:
    which = torch.randint(centres.shape[0], (count,), generator=g)
    return F.normalize(centres[which] + 0.6 * torch.randn(count, *centres.shape[1:], generator=g), dim=-1)  # (B,N,D)


def child_build(folder: Path, m: int) -> dict:
    from forgerydet.model.diskbank import write_bank

    cfg = ModelConfig()
    n, d = cfg.grid * cfg.grid, cfg.dim
    centres = _centres(m, n, d)
    g = torch.Generator().manual_seed(2)
    t0 = time.perf_counter()
    batches = (_entries(centres, min(8192, m - s), g) for s in range(0, m, 8192))
    bank = write_bank(folder, batches, n, d, "00" * 32)
    return {"build_s": time.perf_counter() - t0, "build_peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
            "indexed": bank.index is not None, "disk_mb": bank.nbytes_on_disk() / 2**20}


def _rss_mb() -> float:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def child_query(folder: Path, m: int, queries: int, repeats: int, k: int) -> dict:
    import numpy as np

    from forgerydet.model.diskbank import DiskBank, faiss_available

    cfg = ModelConfig()
    if faiss_available():
        importlib.import_module("faiss")  # loaded before the baseline, as by any user of the bank
    base = _rss_mb()  # Python + torch + numpy (+ faiss): what any forgerydet process holds before a bank
    t0 = time.perf_counter()
    bank = DiskBank.open(folder)
    open_s = time.perf_counter() - t0
    q = _entries(_centres(m, cfg.grid * cfg.grid, cfg.dim), queries, torch.Generator().manual_seed(3)).mean(dim=1)  # (B,D)
    bank.retrieve(q, k)  # warm-up
    times, cpu = [], []
    for _ in range(repeats):
        t0, c0 = time.perf_counter(), time.process_time()
        _, idx, _ = bank.retrieve(q, k)
        times.append(time.perf_counter() - t0)
        cpu.append(time.process_time() - c0)
    rss = _rss_mb()  # before the exact scan below reads every key
    t0 = time.perf_counter()
    _, exact = bank.search_exact(F.normalize(q, dim=-1).numpy(), k)
    exact_ms = 1000 * (time.perf_counter() - t0)
    recall = float(np.mean([len(set(a.tolist()) & set(b.tolist())) / k for a, b in zip(idx.numpy(), exact)]))
    return {"query_ms": 1000 * sorted(times)[len(times) // 2], "query_cpu_ms": 1000 * sorted(cpu)[len(cpu) // 2], "rss_mb": rss, "rss_baseline_mb": base,
            "recall": recall, "open_s": open_s,
            "exact_query_ms": exact_ms, "path": "faiss + exact re-ranking" if bank.index is not None else "exact scan"}


def _run_child(args: list[str]) -> dict:
    p = subprocess.run([sys.executable, __file__, *args], capture_output=True, text=True)
    if p.returncode != 0:
        raise RuntimeError(f"bench/bank.py {' '.join(args)} failed: {(p.stderr or p.stdout).strip().splitlines()[-1:]}")
    return json.loads([ln for ln in p.stdout.splitlines() if ln.startswith("{")][-1])


def scale_part(sizes: list[int], queries: int, repeats: int, k: int, tmp: str | None) -> list[dict]:
    out = []
    for m in sizes:
        folder = Path(tempfile.mkdtemp(prefix=f"bank{m}-", dir=tmp))
        try:
            b = _run_child(["--_build", str(folder), str(m)])
            q = _run_child(["--_query", str(folder), str(m), str(queries), str(repeats), str(k)])
        finally:
            shutil.rmtree(folder, ignore_errors=True)
        out.append({"entries": m, **b, **q})
    return out


def main() -> dict:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--size", type=int, default=65536)
    ap.add_argument("--queries", type=int, default=64)
    ap.add_argument("--repeats", type=int, default=20)
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--scale", default="10000,100000,1000000", help="disk-bank sizes (comma-separated)")
    ap.add_argument("--no-scale", action="store_true", help="only part 1")
    ap.add_argument("--tmp", default=None, help="folder for the disk banks (default: the system temp folder)")
    ap.add_argument("--json", action="store_true")
    args = ap.parse_args()
    res = memory_bank_part(args.size, args.queries, args.repeats, args.device)
    res.update(device=args.device, threads=torch.get_num_threads(), machine=machine(args.device))
    n, N, D = res["bank_entries"], res["tokens_per_entry"], res["dim"]
    figures = [
        figure(f"bank retrieve, 64 queries top-{res['topk']} of {n:,} entries", res["retrieve_ms_median"], "ms", "< 50 ms",
               res["retrieve_ms_median"] < 50),
        figure(f"bank memory, {n:,} entries", res["bank_mb"], "MB", "< 600 MB", res["bank_mb"] < 600),
    ]
    if not args.no_scale:
        from forgerydet.model.diskbank import faiss_available

        res["faiss"] = faiss_available()
        res["scale"] = scale_part([int(s) for s in args.scale.split(",") if s], args.queries, max(5, args.repeats // 2),
                                  res["topk"], args.tmp)
        for r in res["scale"]:
            m, big = r["entries"], r["entries"] >= 10**6
            figures += [
                figure(f"disk bank {m:,}: build ({r['disk_mb']:,.0f} MB on disk)", r["build_s"], "s",
                       note=f"peak RSS {r['build_peak_rss_mb']:,.0f} MB"),
                figure(f"disk bank {m:,}: 64 queries top-{res['topk']}, {r['path']}", r["query_ms"], "ms",
                       "< 50 ms" if big else "", r["query_ms"] < QUERY_MS_TARGET if big else None,
                       note=f"process CPU time {r['query_cpu_ms']:,.1f} ms; exact scan {r['exact_query_ms']:,.0f} ms"),
                figure(f"disk bank {m:,}: resident memory after queries", r["rss_mb"], "MB", "< 2 GB" if big else "",
                       r["rss_mb"] < RSS_MB_TARGET if big else None,
                       note=f"{r['rss_mb'] - r['rss_baseline_mb']:,.0f} MB over the process before opening the bank"),
                figure(f"disk bank {m:,}: recall@{res['topk']} vs exact", r["recall"], "", "≥ 0.95", r["recall"] >= RECALL_TARGET),
            ]
    if not args.json:
        print(f"bank: {n:,} entries x {N} tokens x D={D} (fp16 tokens, fp32 keys) on {args.device}")
        print_figures(figures)
    return finish(res, figures, args.json, args.device)


if __name__ == "__main__":
    if len(sys.argv) > 1 and sys.argv[1] == "--_build":
        print(json.dumps(child_build(Path(sys.argv[2]), int(sys.argv[3]))))
    elif len(sys.argv) > 1 and sys.argv[1] == "--_query":
        a = sys.argv[2:]
        print(json.dumps(child_query(Path(a[0]), int(a[1]), int(a[2]), int(a[3]), int(a[4]))))
    else:
        main()
