"""Training: one flat loop (nanoGPT style) that mixes 'pair' and 'single' batches, keeps the MoCo queue
of real keys, rebuilds the bank from every real training face at each epoch end, validates in 'single'
mode, and writes atomic best/last checkpoints that resume bit-for-bit. Runs as one process or under
`torchrun` (DDP: NCCL on GPUs, gloo on CPUs)."""

from __future__ import annotations

import dataclasses
import json
import math
import os
import random
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Collection

import numpy as np
import torch
import torch.distributed as dist
from torch.utils.data import DataLoader, Subset

from .atomic import check_output, write_text_atomic
from .backbone import pooled
from .calibrate import DEFAULT_FPR, calibrate, sigmoid
from .checkpoint import Checkpoint, load_checkpoint, resave_checkpoint, save_checkpoint
from .config import ModelConfig, _from_dict
from .data import FaceList, PairsTable, TrainPairs, read_pairs, validation_lists
from .errors import ForgeryDetError
from .losses import bce_loss, info_nce
from .metrics import binary_metrics
from .model import Detector, check_memory, check_tokens
from .runtime import resolve_device

Event = Callable[[dict[str, Any]], None]


@dataclass
class TrainConfig:
    """Training hyper-parameters (stored in every training checkpoint; --resume reuses them).

    pairs: pairs.csv path. out: run folder (best/last checkpoints, metrics.jsonl).
    epochs, batch_size, lr (AdamW peak), weight_decay, warmup (fraction of all steps, linear), clip (grad norm),
    nce_weight (lambda of InfoNCE), single_share (share of batches in 'single' mode), workers (data loader
    processes; -1 = auto: none on machines of up to 4 cores, where a loader process costs the training
    more than it gives - measured on 2 cores: 25 img/s without, 10 img/s with one), seed, device ('auto' | 'cpu' | 'cuda' | 'cuda:N'), amp ('auto': bf16 on CUDA, off on CPU;
    'bf16' | 'fp16' | 'off'), augment, sbi_online (re-make self-blended fakes every epoch),
    steps_per_epoch (cap, for quick runs; None = the whole epoch; 0 is refused), val_batch_size,
    max_minutes (wall-clock budget: the learning-rate schedule follows the larger of step/total and
    elapsed/budget, and training ends at the first epoch end past the budget; None = run all epochs),
    calibration_fpr (the stored threshold lets at most this share of held-out real validation faces be
    called FAKE; see calibrate.py), tune ('all': the whole backbone is fine-tuned; 'norm': only its
    normalisation layers' affine parameters, as GenD / LN-tuning of foundation encoders, the projection,
    DifferenceAttention and head being trained in full).
    """

    pairs: str = "pairs.csv"
    out: str = "models/run"
    epochs: int = 10
    batch_size: int = 32
    lr: float = 3e-4
    weight_decay: float = 0.05
    warmup: float = 0.05
    clip: float = 1.0
    nce_weight: float = 0.1
    single_share: float = 0.5
    workers: int = -1
    seed: int = 0
    device: str = "auto"
    amp: str = "auto"
    augment: bool = True
    sbi_online: bool = True
    steps_per_epoch: int | None = None
    val_batch_size: int = 64
    max_minutes: float | None = None
    calibration_fpr: float = DEFAULT_FPR
    tune: str = "all"

    def __post_init__(self) -> None:
        for name, ok in (
            ("epochs", self.epochs >= 1), ("batch_size", self.batch_size >= 2), ("lr", self.lr > 0),
            ("single_share", 0.0 <= self.single_share <= 1.0), ("warmup", 0.0 <= self.warmup < 1.0),
            ("workers", self.workers >= -1), ("amp", self.amp in ("auto", "bf16", "fp16", "off")),
            ("max_minutes", self.max_minutes is None or self.max_minutes > 0),
            ("calibration_fpr", 0.0 < self.calibration_fpr < 1.0), ("tune", self.tune in TUNE_MODES),
            ("steps_per_epoch", self.steps_per_epoch is None or self.steps_per_epoch >= 1),
            ("val_batch_size", self.val_batch_size >= 1), ("weight_decay", self.weight_decay >= 0),
        ):
            if not ok:
                raise ForgeryDetError(f"invalid training option {name}={getattr(self, name)!r}")

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


TUNE_MODES = ("all", "norm")
_NORMS = (torch.nn.LayerNorm, torch.nn.GroupNorm, torch.nn.modules.batchnorm._BatchNorm)


def set_tuning(model: Detector, tune: str) -> int:
    """'norm': freeze the online backbone except its normalisation layers' affine parameters (LN-tuning);
    'all': train everything. The key encoder is never trained (it follows the EMA). Returns the number
    of trainable parameters."""
    if tune == "norm":
        for p in model.encoder.backbone.parameters():
            p.requires_grad_(False)
        for m in model.encoder.backbone.modules():
            if isinstance(m, _NORMS):
                for p in m.parameters(recurse=False):
                    p.requires_grad_(True)
    return sum(p.numel() for p in model.trainable_parameters())


# ---- schedule (pure functions of the step) ----------------------------------------------------------------
def cosine_lr(step: int, total: int, base: float, warmup: float) -> float:
    """Linear warm-up over the first `warmup` fraction of steps, then cosine decay to 1% of base."""
    w = max(1, int(round(warmup * total)))
    if step < w:
        return base * (step + 1) / w
    t = min(1.0, (step - w) / max(1, total - w))
    return base * (0.01 + 0.99 * 0.5 * (1.0 + math.cos(math.pi * t)))


# ---- distributed helpers -----------------------------------------------------------------------------------
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
    world = int(os.environ.get("WORLD_SIZE", "1"))
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


def _autocast(device: torch.device, amp: str):
    if device.type != "cuda" or amp == "off":
        return torch.autocast(device_type=device.type, enabled=False)
    dtype = torch.float16 if amp == "fp16" else torch.bfloat16
    return torch.autocast(device_type="cuda", dtype=dtype)


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


def _loader(ds, batch_size: int, workers: int, d: Dist) -> DataLoader:
    workers = auto_workers(workers)
    if d.on:  # each rank takes every world-th sample of the (already seeded-shuffled) order
        ds = Subset(ds, list(range(d.rank, len(ds), d.world)))
    return DataLoader(ds, batch_size=batch_size, shuffle=False, num_workers=workers, drop_last=False,
                      persistent_workers=False, pin_memory=False, worker_init_fn=_worker_init if workers else None)


# ---- bank rebuild (shared by the epoch end and `forgerydet rebuild-bank`) -----------------------------------
@torch.no_grad()
def rebuild_bank(
    model: Detector,
    real_paths: list[Path],
    *,
    batch_size: int = 64,
    workers: int = 0,
    dist_ctx: Dist | None = None,
    seed: int = 0,
    progress: Callable[[int, int], None] | None = None,
    select: str = "random",
) -> tuple[int, float]:
    """Replace the bank with the key encoder's features of exactly these real faces (more than K: K chosen by
    `select`, 'random' or 'coreset', see MemoryBank.rebuild).

    Under DDP each rank encodes a shard and all ranks gather the same full set, so every rank holds an
    identical bank. Returns (entries written, seconds)."""
    d = dist_ctx or Dist(device=next(model.parameters()).device)
    t0 = time.perf_counter()
    if not real_paths:
        raise ForgeryDetError("no real training faces to build the bank from")
    model.eval()
    ds = FaceList(real_paths, [0] * len(real_paths), model.img_size)
    loader = _loader(ds, batch_size, workers, d)
    values, ids = [], []
    done = 0
    for batch in loader:
        values.append(model.encode_keys(batch["x"].to(d.device)))  # (B,N,D)
        ids.append(batch["index"].to(d.device))
        done += len(batch["index"]) * d.world
        if progress:
            progress(min(done, len(ds)), len(ds))
    v = gather_rows(torch.cat(values), d)  # (M,N,D)
    i = gather_rows(torch.cat(ids), d)  # (M,)
    order = i.argsort()
    n = model.bank.rebuild(v[order], model.key_fingerprint().to(v.device), source=i[order],
                           generator=torch.Generator().manual_seed(seed), select=select)
    return n, time.perf_counter() - t0


# ---- validation ---------------------------------------------------------------------------------------------
@torch.no_grad()
def score_faces(model: Detector, paths: list[Path], labels: list[int], refs: list[Path] | None, mode: str,
                device: torch.device, batch_size: int = 64, workers: int = 0, amp: str = "off") -> np.ndarray:
    """The logit of each face (sigmoid: fake probability), in 'single' (bank) or 'pair' (given references) mode."""
    model.eval()
    ds = FaceList(paths, labels, model.img_size, refs=refs if mode == "pair" else None)
    out = []
    for batch in _loader(ds, batch_size, workers, Dist(device=device)):
        x = batch["x"].to(device)
        with _autocast(device, amp):
            o = model(x, mode, reference=batch["ref"].to(device) if mode == "pair" else None)
        out.append(o["logits"].float().cpu())
    return torch.cat(out).numpy()


def validate(model: Detector, table: PairsTable, device: torch.device, tcfg: TrainConfig) -> dict[str, float]:
    """'single'- and 'pair'-mode metrics on the validation split, and the calibration (temperature,
    threshold) of the 'single' scores, which is what `scan` uses."""
    paths, labels, refs, _ = validation_lists(table, "val")
    logits = score_faces(model, paths, labels, refs, "single", device, tcfg.val_batch_size, tcfg.workers, tcfg.amp)
    pair = score_faces(model, paths, labels, refs, "pair", device, tcfg.val_batch_size, tcfg.workers, tcfg.amp)
    if not (np.isfinite(logits).all() and np.isfinite(pair).all()):
        raise ForgeryDetError(f"training diverged: the model's outputs became NaN or infinite (learning rate "
                              f"{tcfg.lr:g}): lower --lr (the default is {TrainConfig.lr:g}) and train again into a new --out")
    single = sigmoid(logits)
    m = binary_metrics(labels, single)
    mp = binary_metrics(labels, sigmoid(pair))
    lab = torch.tensor(labels, dtype=torch.float32)
    loss = float(torch.nn.functional.binary_cross_entropy(torch.tensor(single, dtype=torch.float32).clamp(1e-6, 1 - 1e-6), lab))
    return {"val_auc": m["auc"], "val_ap": m["ap"], "val_eer": m["eer"], "val_acc": m["accuracy"], "val_loss": loss,
            "val_auc_pair": mp["auc"], "val_n": len(labels),
            "calibration": calibrate(logits, np.asarray(labels), tcfg.calibration_fpr)}


# ---- state for bit-for-bit resume ---------------------------------------------------------------------------
def _rng_state() -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
    tensors = {"rng_torch": torch.get_rng_state()}
    if torch.cuda.is_available():
        for i, s in enumerate(torch.cuda.get_rng_state_all()):
            tensors[f"rng_cuda_{i}"] = s
    py = random.getstate()
    nps = np.random.get_state(legacy=False)
    nps["state"] = {"key": nps["state"]["key"].tolist(), "pos": int(nps["state"]["pos"])}
    return tensors, {"rng_python": [py[0], list(py[1]), py[2]], "rng_numpy": nps}


def _set_rng_state(tensors: dict[str, torch.Tensor], js: dict[str, Any]) -> None:
    torch.set_rng_state(tensors["rng_torch"])
    if torch.cuda.is_available():
        states = [tensors[k] for k in sorted(k for k in tensors if k.startswith("rng_cuda_"))]
        if states:
            torch.cuda.set_rng_state_all(states)
    a, b, c = js["rng_python"]
    random.setstate((a, tuple(b), c))
    nps = dict(js["rng_numpy"])
    nps["state"] = {"key": np.array(nps["state"]["key"], dtype=np.uint32), "pos": nps["state"]["pos"]}
    np.random.set_state(nps)


def _json_safe(obj: Any) -> Any:
    return json.loads(json.dumps(obj, default=lambda o: o.item() if hasattr(o, "item") else str(o)))


# ---- one optimisation step (also timed by bench/train.py) --------------------------------------------------
@dataclass
class StepContext:
    model: Detector
    net: torch.nn.Module  # the model, or its DDP wrapper
    opt: torch.optim.Optimizer
    scaler: torch.amp.GradScaler
    params: list[torch.nn.Parameter]
    real_group: torch.Tensor  # (R,) group id of every real training face
    tcfg: TrainConfig
    dist: Dist


def train_step(ctx: StepContext, batch: dict[str, torch.Tensor], single: bool, lr: float, step: int = 0) -> dict[str, Any]:
    """One step on one batch, in 'single' (bank) or 'pair' mode; returns the losses and the mode used.

    'pair': difference against the paired real faces (key encoder); loss = BCE + lambda * InfoNCE whose
    positive is the key of that real reference (for a real face: another frame of its source, a second
    view of the same real face; for a fake: the real face it was made from) and whose negatives are the
    queue of real keys; this aligns the online query with the key space the bank is searched in. The
    references' keys are gathered from every rank and enqueued. 'single': difference against the bank's
    nearest real faces, never of the face's own source group; loss = BCE. The key encoder follows the
    EMA after every step.
    """
    model, tcfg, d = ctx.model, ctx.tcfg, ctx.dist
    for g in ctx.opt.param_groups:
        g["lr"] = lr
    x, ref = batch["x"].to(d.device), batch["ref"].to(d.device)
    y = batch["label"].to(d.device)
    single = single and model.bank.filled >= 1
    exclude = None
    if single:  # a face may not recall its own source video: at scan time it never can
        src = model.bank.source[: model.bank.filled]  # (F,)
        slot_group = torch.where(src >= 0, ctx.real_group[src.clamp(min=0)], torch.full_like(src, -1))  # (F,)
        own = ctx.real_group[batch["ref_id"].to(d.device)]  # (B,) group of the face (a fake: of its real)
        exclude = own[:, None] == slot_group[None, :]  # (B,F)
    with _autocast(d.device, tcfg.amp):
        o = ctx.net(x, "single" if single else "pair", reference=None if single else ref, exclude=exclude)
        loss_bce = bce_loss(o["logits"], y)
        queue = model.bank.filled_keys()
        use_nce = not single and queue.shape[0] > 0 and tcfg.nce_weight > 0 and "reference_keys" in o
        loss_nce = (info_nce(pooled(o["tokens"]), pooled(o["reference_keys"]), queue, model.cfg.temperature)
                    if use_nce else torch.zeros((), device=d.device))
        loss = loss_bce + tcfg.nce_weight * loss_nce
    if not torch.isfinite(loss):
        raise ForgeryDetError(f"loss became {loss.item()} at step {step}: lower --lr or check the data")
    ctx.opt.zero_grad(set_to_none=True)
    ctx.scaler.scale(loss).backward()
    ctx.scaler.unscale_(ctx.opt)
    torch.nn.utils.clip_grad_norm_(ctx.params, tcfg.clip)
    ctx.scaler.step(ctx.opt)
    ctx.scaler.update()
    model.momentum_update()
    if not single and "reference_keys" in o:  # ---- enqueue the real references' keys, from every rank ----
        v_all = gather_rows(o["reference_keys"].float(), d)  # (M,N,D)
        id_all = gather_rows(batch["ref_id"].to(d.device), d)  # (M,)
        if model.cfg.slot_momentum > 0 and model.bank.filled > 0:
            _, nearest, _ = model.bank.retrieve(pooled(v_all), 1)
            model.bank.update_slots(nearest[:, 0], v_all, model.cfg.slot_momentum)
        else:
            model.bank.enqueue(v_all, id_all)
    return {"loss": float(loss.detach()), "bce": float(loss_bce.detach()), "nce": float(loss_nce.detach()),
            "mode": "single" if single else "pair"}


# ---- the loop -----------------------------------------------------------------------------------------------
def train(tcfg: TrainConfig, mcfg: ModelConfig | None = None, *, resume: bool = False,
          on_event: Event | None = None, given: Collection[str] = ()) -> dict[str, Any]:
    """Train a detector; returns a summary (paths of best/last checkpoints, history).

    resume: continue OUT/last.safetensors with its stored settings. `given` names the TrainConfig/ModelConfig
    fields the user set explicitly: with resume, `epochs` may raise the stored count (extending a finished
    run; the cosine schedule is stretched to the new total), `device`/`workers` may change, and any other
    given field that differs from the stored run is refused."""
    emit = on_event or (lambda e: None)
    out = Path(tcfg.out)
    last_path, best_path, log_path = out / "last.safetensors", out / "best.safetensors", out / "metrics.jsonl"
    check_output(out, "--out", folder=True)  # before an epoch of work, not after it
    d = setup_distributed(tcfg.device)

    # -- model, optimizer, state (fresh or resumed) --
    history: list[dict[str, Any]] = []
    start_epoch, step, best = 0, 0, -1.0
    ck = None
    if resume:
        if not last_path.is_file():
            raise ForgeryDetError(f"nothing to resume: {last_path} does not exist (train without --resume first)")
        ck = load_checkpoint(last_path, "cpu")
        stored = ck.train_json.get("train_config")
        if not stored:
            raise ForgeryDetError(f"{last_path} holds no training state (was it written by rebuild-bank only?)")
        tcfg = _resumed_config(tcfg, mcfg, stored, ck, given, last_path)
        model = ck.model
        mcfg = model.cfg
        history = list(ck.meta.get("history") or [])
        start_epoch, step, best = ck.train_json["epoch"], ck.train_json["step"], ck.train_json["best"]
    else:
        mcfg = mcfg or ModelConfig()
        check_memory(mcfg, tcfg.batch_size, d.device)  # before the bank is allocated
        torch.manual_seed(tcfg.seed)
        model = Detector(mcfg)
        check_tokens(model)
    table = read_pairs(tcfg.pairs, need_splits=("train", "val"))
    train_reals = [p for p, _ in table.reals("train")]
    groups = {g: i for i, g in enumerate(sorted({g for _, g in table.reals("train")}))}
    real_group = torch.tensor([groups[g] for _, g in table.reals("train")], dtype=torch.long)  # (R,)
    n_trainable = set_tuning(model, tcfg.tune)
    model.to(d.device)
    real_group = real_group.to(d.device)
    params = model.trainable_parameters()
    decay = [p for p in params if p.ndim >= 2]
    no_decay = [p for p in params if p.ndim < 2]
    opt = torch.optim.AdamW([{"params": decay, "weight_decay": tcfg.weight_decay},
                             {"params": no_decay, "weight_decay": 0.0}], lr=tcfg.lr)
    if ck is not None:
        opt.load_state_dict(ck.train_json["optimizer_state"])
        _set_rng_state(ck.train_tensors, ck.train_json)
    else:
        random.seed(tcfg.seed)
        np.random.seed(tcfg.seed)
    net = model
    if d.on:
        net = torch.nn.parallel.DistributedDataParallel(
            model, device_ids=[d.device.index] if d.device.type == "cuda" else None, broadcast_buffers=False)
    use_scaler = d.device.type == "cuda" and tcfg.amp == "fp16"
    scaler = torch.amp.GradScaler("cuda", enabled=use_scaler)

    ctx = StepContext(model, net, opt, scaler, params, real_group, tcfg, d)
    ds = TrainPairs(table, model.img_size, seed=tcfg.seed, augment=tcfg.augment, sbi_online=tcfg.sbi_online)
    steps_full = math.ceil(len(ds) / d.world / tcfg.batch_size)
    steps_epoch = min(steps_full, tcfg.steps_per_epoch or steps_full)
    total = steps_epoch * tcfg.epochs
    t_start = time.perf_counter()
    budget = tcfg.max_minutes * 60.0 if tcfg.max_minutes else None
    emit({"event": "start", "rank": d.rank, "world": d.world, "device": str(d.device),
          "train_pairs": len(table.split("train")), "train_reals": len(train_reals),
          "val_faces": len(validation_lists(table, "val")[0]), "steps_per_epoch": steps_epoch, "epochs": tcfg.epochs,
          "start_epoch": start_epoch, "pretrained": model.pretrained_source, "backbone": mcfg.backbone,
          "img_size": model.img_size, "bank_size": mcfg.bank_size, "tune": tcfg.tune, "trainable": n_trainable})

    for epoch in range(start_epoch, tcfg.epochs):
        # ---- train one epoch ----
        model.train()
        ds.set_epoch(epoch)
        mode_rng = np.random.default_rng([tcfg.seed, epoch, 11])  # same sequence on every rank
        loader = _loader(ds, tcfg.batch_size, tcfg.workers, d)
        emit({"event": "epoch_start", "epoch": epoch + 1, "steps": steps_epoch})
        t_epoch, seen, loss_sum, done = time.perf_counter(), 0, 0.0, 0
        for i, batch in enumerate(loader):
            if i >= steps_epoch:
                break
            t0 = time.perf_counter()
            if budget is not None and t0 - t_start >= budget:
                break  # out of time: finish this epoch's end (bank, validation, checkpoints) and stop
            at = step if budget is None else max(step, int(total * (t0 - t_start) / budget))
            lr = cosine_lr(at, total, tcfg.lr, tcfg.warmup)
            single = bool(mode_rng.random() < tcfg.single_share)
            r = train_step(ctx, batch, single, lr, step)
            x = batch["x"]
            step += 1
            done += 1
            seen += x.shape[0] * d.world
            loss_sum += r["loss"]
            emit({"event": "step", "epoch": epoch + 1, "step": i + 1, "steps": steps_epoch, **r, "lr": lr,
                  "img_s": x.shape[0] * d.world / max(1e-9, time.perf_counter() - t0)})
        train_time = time.perf_counter() - t_epoch

        # ---- epoch end: sync BN statistics, rebuild the bank from ALL real training faces ----
        if d.on:
            for b in list(model.encoder.buffers()) + list(model.key_encoder.buffers()):
                dist.broadcast(b, 0)
        n_bank, t_bank = 0, 0.0
        if model.uses_bank:
            n_bank, t_bank = rebuild_bank(model, train_reals, batch_size=tcfg.val_batch_size, workers=tcfg.workers,
                                          dist_ctx=d, seed=tcfg.seed + epoch)
        emit({"event": "rebuild", "epoch": epoch + 1, "entries": n_bank, "seconds": t_bank, "real_faces": len(train_reals)})

        # ---- validation ('single' mode is the headline) and checkpoints, rank 0 only ----
        record: dict[str, Any] = {"epoch": epoch + 1, "step": step, "train_loss": loss_sum / max(1, done),
                                  "train_img_s": seen / max(1e-9, train_time), "bank_entries": n_bank,
                                  "bank_seconds": t_bank}
        if d.main:
            record.update(validate(model, table, d.device, tcfg))
            cal = record.pop("calibration")
            record.update(threshold=cal["threshold"], temperature=cal["temperature"])
            history.append(_json_safe(record))
            improved = record["val_auc"] > best
            best = max(best, record["val_auc"])
            rng_t, rng_j = _rng_state()
            common = dict(bank_sources=[str(p) for p in train_reals], history=history,
                          extra={"threshold": cal["threshold"], "temperature": cal["temperature"], "calibration": cal,
                                 "trained_on": str(Path(tcfg.pairs)), "epochs_done": epoch + 1})
            save_checkpoint(last_path, model, optimizer_state=opt.state_dict(), train_tensors=rng_t,
                            train_json={**rng_j, "epoch": epoch + 1, "step": step, "best": best,
                                        "train_config": tcfg.to_dict()}, **common)
            if improved:
                save_checkpoint(best_path, model, **common)
            _write_jsonl(log_path, history)
            emit({"event": "epoch_end", **record, "best": improved, "last_path": str(last_path),
                  "best_path": str(best_path)})
        if d.on:
            dist.barrier()
        if budget is not None and time.perf_counter() - t_start >= budget:
            emit({"event": "budget", "epoch": epoch + 1, "minutes": (time.perf_counter() - t_start) / 60})
            break
    if d.on and dist.is_initialized():
        dist.destroy_process_group()
    return {"best": str(best_path), "last": str(last_path), "history": history, "rank": d.rank}


def _resumed_config(tcfg: TrainConfig, mcfg: ModelConfig | None, stored: dict[str, Any], ck: Checkpoint, given: Collection[str],
                    last_path: Path) -> TrainConfig:
    """The stored training config, with where-to-run options and a raised epoch count taken from this call;
    a ForgeryDetError for any other explicitly given option that differs from the stored run."""
    may_change = {"out", "device", "workers", "epochs", "max_minutes"}
    model_cfg = ck.model.cfg.to_dict()
    conflicts = []
    for name in sorted(set(given) - may_change):
        if name in stored:
            now, before = getattr(tcfg, name), stored[name]
            same = now == before or (name == "pairs" and Path(now).resolve() == Path(before).resolve())
        elif mcfg is not None and name in model_cfg:
            now, before = getattr(mcfg, name), model_cfg[name]
            same = now == before
        else:
            continue
        if not same:
            conflicts.append(f"--{name.replace('_', '-')} {now} (the run has {before})")
    if conflicts:
        raise ForgeryDetError(f"--resume continues {last_path.parent} with its stored settings, but "
                              f"{', '.join(conflicts)}: drop these options, or train into a new --out")
    done = int(ck.train_json["epoch"])
    epochs = tcfg.epochs if "epochs" in given else int(stored["epochs"])
    if epochs <= done:
        raise ForgeryDetError(
            f"{last_path} has finished {done} epoch(s)" + (f", so --epochs {epochs} leaves nothing to train" if "epochs" in given
                                                          else " (all it was asked for)")
            + f": pass --epochs N with N > {done} to train more")
    return _from_dict(TrainConfig, {**stored, "out": tcfg.out, "device": tcfg.device, "workers": tcfg.workers,
                                    "epochs": epochs})


def _write_jsonl(path: Path, records: list[dict[str, Any]]) -> None:
    """The per-epoch metrics log, rewritten whole and atomically from the checkpoint's history, so it always
    agrees with the last checkpoint (also after a crash and --resume)."""
    write_text_atomic(path, "".join(json.dumps(r) + "\n" for r in records))


def rebuild_checkpoint_bank(
    checkpoint: str | Path,
    pairs: str | Path,
    *,
    device: str = "auto",
    batch_size: int = 64,
    workers: int = 0,
    out: str | Path | None = None,
    progress: Callable[[int, int], None] | None = None,
    select: str = "coreset",
) -> dict[str, Any]:
    """`forgerydet rebuild-bank`: refill a checkpoint's bank from all real training faces of pairs.csv with
    its own key encoder (the same code as the epoch-end rebuild) and store it back atomically, keeping
    weights, history and training state. Under torchrun the encoding is sharded across ranks."""
    if batch_size < 1:
        raise ForgeryDetError(f"--batch-size must be >= 1, got {batch_size}")
    check_output(out or checkpoint, "--out" if out else "--checkpoint")
    d = setup_distributed(device)
    ck = load_checkpoint(checkpoint, "cpu", check_bank=False)
    table = read_pairs(pairs, need_splits=("train",))
    reals = [p for p, _ in table.reals("train")]
    model = ck.model.to(d.device)
    n, secs = rebuild_bank(model, reals, batch_size=batch_size, workers=workers, dist_ctx=d, progress=progress,
                           select=select)
    target = Path(out or checkpoint)
    if d.main:
        resave_checkpoint(ck, target, model, bank_sources=[str(p) for p in reals],
                          extra={"bank_rebuilt_from": str(Path(pairs)),
                                 "bank_selection": select if len(reals) > model.cfg.bank_size else "all"})
    if d.on:
        dist.barrier()
        dist.destroy_process_group()
    return {"entries": n, "seconds": secs, "real_faces": len(reals), "checkpoint": str(target),
            "bank_size": model.cfg.bank_size, "select": select}


def calibrate_checkpoint(
    checkpoint: str | Path,
    pairs: str | Path,
    *,
    fpr: float = DEFAULT_FPR,
    device: str = "auto",
    batch_size: int = 64,
    workers: int = 0,
    out: str | Path | None = None,
) -> dict[str, Any]:
    """`forgerydet calibrate`: score the validation split of pairs.csv in 'single' mode (the scan's mode)
    and store a temperature and a threshold (at most `fpr` of its real faces called FAKE) in the
    checkpoint, atomically, keeping everything else. Returns the calibration record."""
    if not 0.0 < fpr < 1.0:
        raise ForgeryDetError(f"--fpr {fpr}: use a rate in (0, 1)")
    if batch_size < 1:
        raise ForgeryDetError(f"--batch-size must be >= 1, got {batch_size}")
    check_output(out or checkpoint, "--out" if out else "--checkpoint")  # before the scoring, not after it
    d = setup_distributed(device)
    ck = load_checkpoint(checkpoint, "cpu")
    if ck.model.bank.filled == 0 and ck.model.uses_bank:
        raise ForgeryDetError(f"{checkpoint}: the bank is empty; run `forgerydet rebuild-bank` first")
    table = read_pairs(pairs, need_splits=("val",))
    model = ck.model.to(d.device)
    paths, labels, refs, _ = validation_lists(table, "val")
    amp = "auto" if d.device.type == "cuda" else "off"
    logits = score_faces(model, paths, labels, refs, "single", d.device, batch_size, workers, amp)
    cal = calibrate(logits, np.asarray(labels), fpr)
    cal["val_auc"] = binary_metrics(labels, sigmoid(logits, cal["temperature"]))["auc"]
    cal["calibrated_on"] = str(Path(pairs))
    target = Path(out or checkpoint)
    resave_checkpoint(ck, target, model, extra={"threshold": cal["threshold"], "temperature": cal["temperature"],
                                                "calibration": cal})
    return {**cal, "checkpoint": str(target)}

