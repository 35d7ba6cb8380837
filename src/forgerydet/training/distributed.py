"""Where training runs: one process or `torchrun` DDP (NCCL on GPUs, gloo on CPUs), gathering rows from
every rank, mixed precision on GPUs, and the data loaders (sharded per rank, one thread per loader process)."""

from __future__ import annotations

import inspect
import os
from dataclasses import dataclass
from typing import Any

import torch
import torch.distributed as dist
from torch.utils.data import DataLoader, Subset

from forgerydet.errors import ForgeryDetError, WriteError, os_error_text
from forgerydet.model.detector import precision_autocast
from forgerydet.runtime import ignore_stops, process_count, process_rank, resolve_device


@dataclass
class Dist:
    rank: int = 0
    world: int = 1
    device: torch.device = torch.device("cpu")

    @property
    def main(self) -> bool:
        return self.rank == 0

    @property
    def on(self) -> bool:
        return self.world > 1


def setup_distributed(device: str) -> Dist:
    """Use torchrun's environment when present (NCCL on GPUs, gloo on CPUs)."""
    world = process_count()
    dev = resolve_device(device)  # the one resolver: a bad name is a clear error, not a torch traceback
    if world <= 1:
        return Dist(0, 1, dev)
    rank, local = int(os.environ["RANK"]), int(os.environ.get("LOCAL_RANK", "0"))
    if dev.type == "cuda":
        torch.cuda.set_device(local)
        dev = torch.device("cuda", local)
    else:
        dev = torch.device("cpu")
    if not dist.is_initialized():
        dist.init_process_group(backend="nccl" if dev.type == "cuda" else "gloo")
    return Dist(rank, world, dev)


def resume_command(out: Path | str) -> str:
    """The command that continues the run in `out` as this process was started: under torchrun, torchrun with as
    many processes (a run resumed by another number is refused: training/state.check_same_processes)."""
    world, local = process_count(), int(os.environ.get("LOCAL_WORLD_SIZE", "0"))
    if world <= 1:
        return f"`forgerydet train --out {out} --resume`"
    if local == world:
        return f"`torchrun --nproc_per_node {world} -m forgerydet train --out {out} --resume`"
    return f"the same torchrun command ({world} processes) with `-m forgerydet train --out {out} --resume`"


def stop_cause(e: BaseException) -> str:
    """How a training process that stops on `e` says so under torchrun, where every rank stops: 'quiet' where rank 0
    speaks for the run (each rank gets the Ctrl-C or SIGTERM, and each printed the same line; another process's end
    seen from a peer, which printed a gloo traceback), 'peer' on rank 0 for another process ending (its error, if
    it gave one, is its own line), 'own' for this process's own error, 'other' for an error of no process's end.
    Under torchrun further Ctrl-C and SIGTERM are ignored from here on (runtime.ignore_stops): it is stopping."""
    world, rank = process_count(), process_rank()
    if world > 1:
        ignore_stops()
    lost = world > 1 and isinstance(e, RuntimeError) and (
        isinstance(e, dist.DistError) or any(s in str(e) for s in ("by peer", "gloo", "NCCL")))
    if isinstance(e, RuntimeError) and not lost:
        return "other"
    if rank != 0 and (lost or isinstance(e, KeyboardInterrupt)):
        return "quiet"
    return "peer" if lost else "own"


def stop_text(e: BaseException, cause: str) -> str | None:
    """What rank 0 says of a stop before how to go on: another process's end, an output that could not be written
    (a full disk: the epoch before is still whole, as writes are temp + rename) or an OS error; None for Ctrl-C."""
    if cause == "peer":
        return "another process of this torchrun run ended (its error, if it gave one, is above)"
    if isinstance(e, WriteError):
        return str(e)
    return os_error_text(e) if isinstance(e, OSError) else None


def gather_rows(t: torch.Tensor, d: Dist) -> torch.Tensor:
    """Concatenate a (B,...) tensor from every rank (B may differ per rank), in rank order."""
    if not d.on:
        return t
    n = torch.tensor([t.shape[0]], device=t.device)
    sizes = [torch.zeros_like(n) for _ in range(d.world)]
    dist.all_gather(sizes, n)
    m = int(max(s.item() for s in sizes))
    pad = torch.zeros((m - t.shape[0],) + tuple(t.shape[1:]), dtype=t.dtype, device=t.device)
    buf = [torch.zeros((m,) + tuple(t.shape[1:]), dtype=t.dtype, device=t.device) for _ in range(d.world)]
    dist.all_gather(buf, torch.cat([t, pad]).contiguous())
    return torch.cat([b[: int(s.item())] for b, s in zip(buf, sizes)])


def gather_objects(obj: Any, d: Dist) -> list[Any]:
    """Every rank's `obj` (picklable), in rank order, on every rank; [obj] in one process."""
    if not d.on:
        return [obj]
    out: list[Any] = [None] * d.world
    dist.all_gather_object(out, obj)
    return out


def wrap_ddp(model: torch.nn.Module, d: Dist) -> torch.nn.Module:
    """`model` in DDP, its buffers (BatchNorm statistics, the bank) not synced at every forward: training/loop
    broadcasts rank 0's at each epoch end. Where torch has `forward_sync_buffers` (it deprecated
    `broadcast_buffers`, warning once per process at every start), that one: it also syncs them at the start, where
    every rank's are the same (one seed, or one checkpoint)."""
    ddp = torch.nn.parallel.DistributedDataParallel
    sync = "forward_sync_buffers" if "forward_sync_buffers" in inspect.signature(ddp).parameters else "broadcast_buffers"
    return ddp(model, device_ids=[d.device.index] if d.device.type == "cuda" else None, **{sync: False})


def start_outcomes(device: str, error: str | None) -> list[str | None]:
    """Under torchrun, every process's outcome of the checks before a run's first step, in rank order, on every
    process: None where they passed, else the line of its error. Each process calls it once: at its first error, or
    once its checks have passed (training/loop's 'start' event, which comes before DDP's first collective). The
    process group is made here where the error came before the loop made it (over gloo where the device was it)."""
    if not dist.is_initialized():
        try:
            setup_distributed(device)
        except ForgeryDetError:
            dist.init_process_group(backend="gloo")
    return gather_objects(error, Dist(process_rank(), process_count()))


def says_start_error(outcomes: list[str | None], rank: int) -> bool:
    """Whether process `rank` prints its error met before the run's first step (`outcomes`: start_outcomes'). Rank 0
    says its own for the run: it alone holds --out's lock, so where another run held it, the other ranks' check of
    the same folder said "already holds a training run: continue it with --resume". Another rank says its own only
    where rank 0 passed (a file or a memory of its own machine), and only the lowest rank with that line."""
    mine = outcomes[rank]
    return mine is not None and (rank == 0 or (outcomes[0] is None and outcomes.index(mine) == rank))


def amp_precision(device: torch.device, amp: str) -> str:
    """What `autocast(device, amp)` computes in, as a scan's --precision: 'fp32', 'bf16' or 'fp16'."""
    if device.type != "cuda" or amp == "off":
        return "fp32"
    return "fp16" if amp == "fp16" else "bf16"


def autocast(device: torch.device, amp: str) -> torch.autocast:
    """Training's mixed precision: `amp` on CUDA ('auto' is bf16), off on a CPU (bf16 steps measured no faster
    there: a lite0 encoder step on 32 faces 1.20-1.21 s in bf16 against 1.15-1.23 s in fp32, 2-core AMD EPYC VM with
    AVX512-BF16, 2026-12-06)."""
    return precision_autocast(device, amp_precision(device, amp))


def _worker_init(_: int) -> None:
    """Data workers decode and augment with OpenCV; one thread each, so they do not fight the training
    process's compute threads for the cores (oversubscribed OpenMP threads slow CPU training many-fold)."""
    import cv2

    cv2.setNumThreads(1)
    torch.set_num_threads(1)


def auto_workers(workers: int) -> int:
    """-1: no loader processes on small machines (<= 4 cores), else half the cores up to 8."""
    if workers >= 0:
        return workers
    cores = os.cpu_count() or 1
    return 0 if cores <= 4 else min(8, cores // 2)


def shard(n: int, rank: int, world: int, unit: int = 1) -> list[int]:
    """The sample indices of `rank`: every world-th run of `unit` consecutive samples of 0..n-1."""
    return [i for k in range(rank * unit, n, world * unit) for i in range(k, min(k + unit, n))]


def make_loader(ds, batch_size: int, workers: int, d: Dist, unit: int = 1) -> DataLoader:
    """The samples of `ds` in order, in batches; under DDP each rank takes every world-th run of `unit` samples of
    the (already seeded-shuffled) order. Training's order alternates a fake and a real (unit 2): sharded by sample,
    an even number of ranks gave each rank one class only, so BatchNorm normalised fakes and reals apart and rank
    0's buffers, shared at each epoch end, were the fakes' statistics."""
    workers = auto_workers(workers)
    if d.on:
        ds = Subset(ds, shard(len(ds), d.rank, d.world, unit))
    return DataLoader(ds, batch_size=batch_size, shuffle=False, num_workers=workers, drop_last=False,
                      persistent_workers=False, pin_memory=False, worker_init_fn=_worker_init if workers else None)
