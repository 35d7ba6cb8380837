"""Every write of the memory bank outside a training step: the rebuild at each epoch end from all real
training faces, `forgerydet rebuild-bank` on a checkpoint (same code), and `rebuild-bank --disk-bank` (every
real face into a disk bank, model.diskbank). Under torchrun each rank encodes a shard and all ranks gather."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any, Callable

import torch
import torch.distributed as dist

from forgerydet.errors import ForgeryDetError, current_folder, os_error_text, path_text
from forgerydet.model.checkpoint import load_checkpoint, resave_checkpoint
from forgerydet.model.coreset import random_subset
from forgerydet.model.detector import Detector
from forgerydet.model.diskbank import IndexConfig, write_bank
from forgerydet.pairs.table import read_pairs
from forgerydet.paths import check_output
from forgerydet.runtime import Progress, process_count
from forgerydet.training.config import TrainConfig, check_checkpoint_rewrite
from forgerydet.training.data import FaceList
from forgerydet.training.distributed import Dist, auto_workers, gather_rows, make_loader, setup_distributed


@torch.no_grad()
def rebuild_bank(
    model: Detector,
    real_paths: list[Path],
    *,
    batch_size: int = 64,
    workers: int = 0,
    dist_ctx: Dist | None = None,
    seed: int = 0,
    progress: Progress | None = None,
    select: str = "random",
) -> tuple[int, float]:
    """Replace the bank with the key encoder's features of exactly these real faces (more than K: K chosen by
    `select`, 'random' or 'coreset', see MemoryBank.rebuild; 'random' draws its K before encoding and encodes
    only those).

    Under DDP each rank encodes a shard and all ranks gather the same full set, so every rank holds an
    identical bank. Returns (entries written, seconds)."""
    d = dist_ctx or Dist(device=next(model.parameters()).device)
    t0 = time.perf_counter()
    if not real_paths:
        raise ForgeryDetError("no real training faces to build the bank from")
    model.eval()
    generator = torch.Generator().manual_seed(seed)
    # 'random' keeps K faces drawn uniformly whatever their features: draw them first and encode only those,
    # the same K faces (same generator) as encoding all and selecting afterwards, at K/M of the cost
    keep = random_subset(len(real_paths), model.bank.size, generator) if select == "random" else None
    paths = real_paths if keep is None else [real_paths[j] for j in keep.tolist()]
    ds = FaceList(paths, [0] * len(paths), model.img_size)
    loader = make_loader(ds, batch_size, workers, d)
    values, ids = [], []
    done = 0
    encode = model.key_features()
    for batch in loader:
        values.append(encode(batch["x"].to(d.device)))  # (B,N,D)
        ids.append(batch["index"].to(d.device))
        done += len(batch["index"]) * d.world
        if progress:
            progress(min(done, len(ds)), len(ds))
    v = gather_rows(torch.cat(values), d)  # (M,N,D)
    i = gather_rows(torch.cat(ids), d)  # (M,)
    order = i.argsort()
    source = i[order] if keep is None else keep.to(i.device)[i[order]]  # index into real_paths
    n = model.bank.rebuild(v[order], model.key_fingerprint().to(v.device), source=source, generator=generator,
                           select=select)
    return n, time.perf_counter() - t0


def _check_uses_bank(model: Detector, checkpoint: str | Path) -> None:
    if not model.uses_bank:  # the minutes of encoding would fill a bank its scans never read
        raise ForgeryDetError(f"{path_text(checkpoint)} was trained with --reference none: it compares with no real "
                              f"faces, so it has no bank to rebuild")


def rebuild_checkpoint_bank(
    checkpoint: str | Path,
    pairs: str | Path,
    *,
    device: str = TrainConfig.device,
    batch_size: int = TrainConfig.val_batch_size,
    workers: int = TrainConfig.workers,
    out: str | Path | None = None,
    progress: Progress | None = None,
    select: str = "coreset",
    on_start: Callable[[], None] | None = None,
) -> dict[str, Any]:
    """`forgerydet rebuild-bank`: refill a checkpoint's bank from all real training faces of pairs.csv with
    its own key encoder (the same code as the epoch-end rebuild) and store it back atomically, keeping
    weights, history and training state. Under torchrun the encoding is sharded across ranks. `on_start` is called
    once every check has passed, before the encoding's first collective (the CLI agrees there on who says an error
    met before it: cli.common.StartVoice)."""
    check_checkpoint_rewrite(checkpoint, out, pairs, batch_size)  # before the scoring, not after it
    d = setup_distributed(device)
    ck = load_checkpoint(checkpoint, "cpu", check_bank=False)
    _check_uses_bank(ck.model, checkpoint)
    table = read_pairs(pairs, need_splits=("train",))
    reals = [p for p, _ in table.reals("train")]
    if on_start is not None:
        on_start()
    model = ck.model.to(d.device)
    # a calibration made before forgerydet recorded its bank was made against the bank being replaced
    cal = ck.extra.get("calibration") if isinstance(ck.extra.get("calibration"), dict) else None
    if cal is not None and not cal.get("bank_contents"):
        cal = {**cal, "bank_contents": model.bank.contents_digest()}
    n, secs = rebuild_bank(model, reals, batch_size=batch_size, workers=workers, dist_ctx=d, progress=progress,
                           select=select)
    target = Path(out or checkpoint)
    if d.main:
        extra = {"bank_rebuilt_from": str(Path(pairs)), "bank_sources_root": current_folder(),
                 "bank_selection": select if len(reals) > model.cfg.bank_size else "all"}
        resave_checkpoint(ck, target, model, bank_sources=[str(p) for p in reals],
                          extra=extra if cal is None else {**extra, "calibration": cal})
    if d.on:
        dist.barrier()
        dist.destroy_process_group()
    return {"entries": n, "seconds": secs, "real_faces": len(reals), "checkpoint": str(target),
            "bank_size": model.cfg.bank_size, "select": select,
            # the stored threshold and bank fusion were fitted against the bank just replaced
            "calibration_stale": cal is not None and cal["bank_contents"] != model.bank.contents_digest(),
            "calibrated_on": None if cal is None else cal.get("calibrated_on"),
            # how it was fitted, so that refitting it keeps that (`calibrate` defaults to --tta none, fp32, 5 %)
            "calibrated_with": {} if cal is None else {k: cal[k] for k in ("tta", "precision", "target_fpr") if k in cal}}


@torch.no_grad()
def rebuild_disk_bank(
    checkpoint: str | Path,
    pairs: str | Path,
    folder: str | Path,
    *,
    device: str = TrainConfig.device,
    batch_size: int = TrainConfig.val_batch_size,
    workers: int = TrainConfig.workers,
    index: IndexConfig | None = None,
    progress=None,
) -> dict:
    """`forgerydet rebuild-bank --disk-bank DIR`: EVERY real training face of pairs.csv, encoded by the
    checkpoint's key encoder, into a new disk bank (no selection, no K limit). The checkpoint is not written."""
    import time

    from torch.utils.data import DataLoader

    from forgerydet.model.checkpoint import load_checkpoint
    from forgerydet.model.references import fingerprint_full
    from forgerydet.pairs.table import read_pairs
    from forgerydet.runtime import resolve_device
    from forgerydet.training.data import FaceList

    t0 = time.perf_counter()
    if process_count() > 1:  # each process encoded every face and wrote the same files at once
        raise ForgeryDetError("--disk-bank runs in one process, not under torchrun: every process would encode all the "
                              "faces and write the same folder at once; run it as a plain `forgerydet rebuild-bank`")
    check_output(folder, "--disk-bank", folder=True)  # before the encoding, in the option's words
    dev = resolve_device(device)
    model = load_checkpoint(checkpoint, dev, check_bank=False).model.eval()
    _check_uses_bank(model, checkpoint)
    reals = [p for p, _ in read_pairs(pairs, need_splits=("train",)).reals("train")]
    if not reals:
        raise ForgeryDetError(f"{pairs} has no real training faces to build the bank from")
    loader = DataLoader(FaceList(reals, [0] * len(reals), model.img_size), batch_size=batch_size, num_workers=auto_workers(workers))

    encode = model.key_features()

    def batches():
        done = 0
        for b in loader:
            v = encode(b["x"].to(dev))  # (B,N,D)
            yield v, [str(reals[int(i)]) for i in b["index"]]
            done += len(b["index"])
            if progress:
                progress(done, len(reals))

    try:  # the sources are relative to current_folder(), as a checkpoint's
        bank = write_bank(folder, batches(), model.bank.num_tokens, model.bank.dim,
                          fingerprint_full(model.key_fingerprint()), index, sources_root=current_folder())
    except OSError as e:  # a full disk: one line naming the folder (write_bank removed what it had written)
        raise ForgeryDetError(f"--disk-bank: cannot write {os_error_text(e, folder)}") from None
    return {"entries": bank.filled, "indexed": bank.index is not None, "folder": str(folder),
            "disk_mb": bank.nbytes_on_disk() / 2**20, "seconds": time.perf_counter() - t0}
