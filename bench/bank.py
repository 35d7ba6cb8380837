"""Memory-bank retrieval speed and size: 64 queries against a full bank of 65,536 entries on this CPU.

Targets (issue 2): retrieve under 50 ms, bank memory under 600 MB.
Prints one line per figure; `--json` prints a JSON object for bench/run_all.py.
"""

from __future__ import annotations

import argparse
import json
import platform
import time

import torch
import torch.nn.functional as F

from forgerydet.bank import MemoryBank
from forgerydet.config import ModelConfig


def main() -> dict:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--size", type=int, default=65536)
    ap.add_argument("--queries", type=int, default=64)
    ap.add_argument("--repeats", type=int, default=20)
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--json", action="store_true")
    args = ap.parse_args()
    cfg = ModelConfig()
    N, D = cfg.grid * cfg.grid, cfg.dim
    bank = MemoryBank(args.size, N, D).to(args.device)
    g = torch.Generator().manual_seed(0)
    for start in range(0, args.size, 8192):  # fill in chunks (as a rebuild would)
        n = min(8192, args.size - start)
        bank.enqueue(F.normalize(torch.randn(n, N, D, generator=g), dim=-1).to(args.device))
    q = torch.randn(args.queries, D, generator=g).to(args.device)
    bank.retrieve(q, cfg.topk)  # warm-up
    times = []
    for _ in range(args.repeats):
        if args.device.startswith("cuda"):
            torch.cuda.synchronize()
        t0 = time.perf_counter()
        bank.retrieve(q, cfg.topk)
        if args.device.startswith("cuda"):
            torch.cuda.synchronize()
        times.append(time.perf_counter() - t0)
    times.sort()
    res = {
        "bank_entries": bank.filled,
        "tokens_per_entry": N,
        "dim": D,
        "topk": cfg.topk,
        "retrieve_ms_median": 1000 * times[len(times) // 2],
        "retrieve_ms_min": 1000 * times[0],
        "bank_mb": bank.nbytes() / 2**20,
        "device": args.device,
        "threads": torch.get_num_threads(),
        "machine": platform.processor() or platform.machine(),
    }
    if args.json:
        print(json.dumps(res))
    else:
        print(f"bank: {res['bank_entries']:,} entries x {N} tokens x D={D} (fp16 tokens, fp32 keys) on {args.device}")
        print(f"retrieve {args.queries} queries, top-{cfg.topk}: median {res['retrieve_ms_median']:.1f} ms "
              f"(min {res['retrieve_ms_min']:.1f} ms)   target < 50 ms")
        print(f"bank memory: {res['bank_mb']:.0f} MB   target < 600 MB")
    return res


if __name__ == "__main__":
    from forgerydet.runtime import tune_malloc

    tune_malloc()  # as the forgerydet CLI does at start-up
    main()
