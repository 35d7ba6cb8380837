"""Training: one flat loop (nanoGPT style) that mixes 'pair' and 'single' batches, keeps the MoCo queue
of real keys, rebuilds the bank from every real training face at each epoch end, validates in 'single'
mode, and writes atomic best/last checkpoints that resume bit-for-bit. Runs as one process or under `torchrun`
(DDP: NCCL on GPUs, gloo on CPUs; every rank's RNG state is stored, and each rank resumes its own)."""

from __future__ import annotations

import dataclasses
import json
import math
import random
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Collection

import numpy as np
import torch
import torch.distributed as dist

from forgerydet.errors import ForgeryDetError, current_folder
from forgerydet.model.backbone import pooled
from forgerydet.model.checkpoint import TrainState, load_checkpoint, save_checkpoint
from forgerydet.model.config import ModelConfig
from forgerydet.model.detector import Detector, check_memory, check_tokens
from forgerydet.model.losses import bce_loss, info_nce
from forgerydet.pairs.table import read_pairs
from forgerydet.paths import check_output
from forgerydet.runtime import signals_held
from forgerydet.training.bankfill import rebuild_bank
from forgerydet.training.augment import AugmentConfig
from forgerydet.training.config import TrainConfig, augment_config
from forgerydet.training.data import TrainPairs, check_decodable, validation_lists
from forgerydet.training.distributed import (Dist, autocast, gather_objects, gather_rows, make_loader, setup_distributed,
                                             shard, wrap_ddp)
from forgerydet.training.state import (catch_up, check_new_run, check_same_data, data_path, grad_scaler, improves,
                                      option_conflicts, resumed_config, rng_snapshot, rng_state, set_rng_state, spent,
                                      stamp_new_run, write_log)
from forgerydet.training.validate import calibration_extra, read_watch, score_watch, validate, watch_notice

Event = Callable[[dict[str, Any]], None]


_NORMS = (torch.nn.LayerNorm, torch.nn.GroupNorm, torch.nn.modules.batchnorm._BatchNorm)


def set_tuning(model: Detector, tune: str) -> int:
    """'norm': freeze the online backbone except its normalisation layers' affine parameters (LN-tuning);
    'none': freeze the online backbone whole (a frozen foundation encoder under a trained projection,
    DifferenceAttention and head; nothing is back-propagated through it, so a step costs about a forward pass);
    'all': train everything. The key encoder is never trained (it follows the EMA). Returns the number
    of trainable parameters."""
    if tune in ("norm", "none"):
        for p in model.encoder.backbone.parameters():
            p.requires_grad_(False)
    if tune == "norm":
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
    queue of real keys other than its own source's; this aligns the online query with the key space the bank
    is searched in. The
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
    # the filled slots of the face's own source group (a fake: its real's): a 'single' step may not recall them,
    # as a scan never can; a 'pair' step's InfoNCE does not count them as negatives of their own near-copy
    src = model.bank.source[: model.bank.filled]  # (F,)
    slot_group = torch.where(src >= 0, ctx.real_group[src.clamp(min=0)], torch.full_like(src, -1))  # (F,)
    own = ctx.real_group[batch["ref_id"].to(d.device)]  # (B,)
    own_slots = own[:, None] == slot_group[None, :]  # (B,F)
    with autocast(d.device, tcfg.amp):
        o = ctx.net(x, "single" if single else "pair", reference=None if single else ref,
                    exclude=own_slots if single else None)
        loss_bce = bce_loss(o["logits"], y)
        queue = model.bank.filled_keys()
        use_nce = not single and queue.shape[0] > 0 and tcfg.nce_weight > 0 and "reference_keys" in o
        loss_nce = (info_nce(pooled(o["tokens"]), pooled(o["reference_keys"]), queue, model.cfg.temperature,
                             exclude=own_slots) if use_nce else torch.zeros((), device=d.device))
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
        if model.cfg.slot_momentum > 0 and model.bank.filled == model.bank.size:  # full: the nearest slot moves
            slot = model.bank.retrieve(pooled(v_all), 1)[1][:, 0]  # toward a face of ITS source only (own-source
            same = model.bank.source[slot] == id_all  # exclusion must still hide it); the others are enqueued
            if bool(same.any()):
                model.bank.update_slots(slot[same], v_all[same], model.cfg.slot_momentum)
            model.bank.enqueue(v_all[~same], id_all[~same])
        else:  # the bank grows first (slot updates used to start at one entry and keep it at the batch's few)
            model.bank.enqueue(v_all, id_all)
    return {"loss": float(loss.detach()), "bce": float(loss_bce.detach()), "nce": float(loss_nce.detach()),
            "mode": "single" if single else "pair"}


# ---- the loop -----------------------------------------------------------------------------------------------
def train(tcfg: TrainConfig, mcfg: ModelConfig | None = None, *, resume: bool = False,
          on_event: Event | None = None, given: Collection[str] = (), overwrite: bool = False) -> dict[str, Any]:
    """Train a detector; returns a summary (paths of best/last checkpoints, history).

    A new run into a folder that holds one is refused unless `overwrite` (state.check_new_run).
    resume: continue OUT/last.safetensors with its stored settings (its files found from the folder it started in,
    and refused if they changed: state.check_same_data). `given` names the TrainConfig/ModelConfig
    fields the user set explicitly: with resume, `epochs` may raise the stored count (extending a finished
    run; the cosine schedule is stretched to the new total), `device`/`workers` may change, and any other
    given field that differs from the stored run is refused (`max_minutes` given sets a new budget)."""
    emit = on_event or (lambda e: None)
    out = Path(tcfg.out)
    last_path, best_path, log_path = out / "last.safetensors", out / "best.safetensors", out / "metrics.jsonl"
    check_output(out, "--out", folder=True, writes=(last_path.name, best_path.name, log_path.name))  # before an epoch
    if not resume:
        check_new_run(out, overwrite)
    d = setup_distributed(tcfg.device)

    # -- model, optimizer, state (fresh or resumed) --
    history: list[dict[str, Any]] = []
    start_epoch, step, best = 0, 0, -1.0
    state = None  # the stored TrainState when resuming
    if resume:
        if not last_path.is_file():
            raise ForgeryDetError(f"nothing to resume: {last_path} does not exist (train without --resume first)")
        ck = load_checkpoint(last_path, "cpu")
        state = ck.train_state
        if state is None or state.optimizer_state is None:
            raise ForgeryDetError(f"{last_path} holds no training state to continue (a best.safetensors or a "
                                  f"shipped file copied there?): start a new run from it with --init instead")
        if caught := catch_up(ck, best_path, log_path):  # a crash between the epoch-end writes, finished run or not
            emit({"event": "notice", "text": caught})
        tcfg = resumed_config(tcfg, mcfg, state, ck, given, last_path, d.world)
        unchecked = check_same_data(tcfg, last_path)
        if unchecked:
            emit({"event": "notice", "text": f"the run recorded no sha256 of its {' and '.join(unchecked)} file: "
                                             f"it cannot check that they are unchanged since it started"})
        model = ck.model
        mcfg = model.cfg
        history = ck.history
        earlier = list(ck.extra.get("earlier_faces") or [])
        start_epoch, step, best = state.epoch, state.step, state.best
    elif tcfg.init:
        model, earlier = init_model(tcfg.init, mcfg, given)
        mcfg = model.cfg
        check_memory(mcfg, tcfg.batch_size, d.device, kept_from="--init")
        torch.manual_seed(tcfg.seed)
    else:
        mcfg = mcfg or ModelConfig()
        check_memory(mcfg, tcfg.batch_size, d.device)  # before the bank is allocated
        torch.manual_seed(tcfg.seed)
        model = Detector(mcfg)
        earlier = []
        check_tokens(model)
    unrecorded = sorted({f.name for f in dataclasses.fields(AugmentConfig)} - set(tcfg.augmentation or {}))
    if state is not None and unrecorded:  # a run started before forgerydet recorded (all of) its augmentation
        emit({"event": "notice", "text": f"the run recorded no augmentation setting for {', '.join(unrecorded)}: "
                                         f"it continues with today's defaults for them"})
    augmentation = augment_config(tcfg.augmentation)
    tcfg = dataclasses.replace(tcfg, augmentation=dataclasses.asdict(augmentation))
    table = read_pairs(data_path(tcfg, "pairs"), need_splits=("train", "val"))
    check_decodable(table)  # seconds, before any step: not a random step or an epoch's end, with nothing saved
    watch = read_watch(data_path(tcfg, "watch"), table) if tcfg.watch else None
    if watch and (said := watch_notice(tcfg.watch, *watch)):
        emit({"event": "notice", "text": said})
    if state is None:
        tcfg = stamp_new_run(tcfg, d.world)
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
    if state is not None:
        opt.load_state_dict(state.optimizer_state)
        set_rng_state(state, d.rank)
    else:
        random.seed(tcfg.seed)
        np.random.seed(tcfg.seed)
    scaler = grad_scaler(d.device.type, d.device.type == "cuda" and tcfg.amp == "fp16", state, emit)

    ds = TrainPairs(table, model.img_size, seed=tcfg.seed, augment=tcfg.augment, sbi_online=tcfg.sbi_online,
                    sbi_local=tcfg.sbi_local, augment_cfg=augmentation, swap_blends=tcfg.swap_blends,
                    pair_reference=tcfg.pair_reference)
    # every rank runs the same number of steps (DDP's all-reduce waits for all): the smallest shard's batches
    steps_full = math.ceil(min(len(shard(len(ds), r, d.world, 2)) for r in range(d.world)) / tcfg.batch_size)
    steps_epoch = min(steps_full, tcfg.steps_per_epoch or steps_full)
    total = steps_epoch * tcfg.epochs
    budget = tcfg.max_minutes * 60.0 if tcfg.max_minutes else None
    t_start = time.perf_counter() - spent(history, budget if state is not None and "max_minutes" not in given else None)
    emit({"event": "start", "rank": d.rank, "world": d.world, "device": str(d.device),
          "train_pairs": len(table.split("train")), "train_reals": len(train_reals),
          "val_faces": len(validation_lists(table, "val")[0]), "val_reals": len(table.reals("val")),
          "calibration_fpr": tcfg.calibration_fpr, "steps_per_epoch": steps_epoch, "epochs": tcfg.epochs,
          "max_minutes": tcfg.max_minutes,
          "start_epoch": start_epoch, "pretrained": model.pretrained_source, "asked": mcfg.pretrained, "init": tcfg.init, "backbone": mcfg.backbone,
          "img_size": model.img_size, "bank_size": mcfg.bank_size, "tune": tcfg.tune, "trainable": n_trainable,
          "watch_faces": len(watch[0]) if watch else 0})
    net = wrap_ddp(model, d) if d.on else model  # DDP's first collective after 'start', where the CLI's processes agree
    ctx = StepContext(model, net, opt, scaler, params, real_group, tcfg, d)

    if tcfg.init and state is None and model.uses_bank:
        # the bank --init brings may hold this run's own faces under unknown sources, and a 'single' step would then
        # recall a face's own source (its difference ~0), which a scan never can: refill it from this run's reals
        n_bank, t_bank = rebuild_bank(model, train_reals, batch_size=tcfg.val_batch_size, workers=tcfg.workers,
                                      dist_ctx=d, seed=tcfg.seed - 1)
        emit({"event": "rebuild", "epoch": 0, "entries": n_bank, "seconds": t_bank, "real_faces": len(train_reals)})

    for epoch in range(start_epoch, tcfg.epochs):
        # ---- train one epoch ----
        model.train()
        if tcfg.tune == "none":  # frozen whole: its BatchNorm keeps its statistics and normalises as at scan time
            model.encoder.backbone.eval()
        ds.set_epoch(epoch)
        mode_rng = np.random.default_rng([tcfg.seed, epoch, 11])  # same sequence on every rank
        loader = make_loader(ds, tcfg.batch_size, tcfg.workers, d, unit=2)  # a (fake, real) pair stays on one rank
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
            step, done = step + 1, done + 1
            seen += x.shape[0] * d.world
            loss_sum += r["loss"]
            emit({"event": "step", "epoch": epoch + 1, "step": i + 1, "steps": steps_epoch, **r, "lr": lr,
                  "img_s": x.shape[0] * d.world / max(1e-9, time.perf_counter() - t0)})
        train_time = time.perf_counter() - t_epoch
        emit({"event": "epoch_ending", "epoch": epoch + 1, "bank_faces": len(train_reals) if model.uses_bank else 0})

        # ---- epoch end: sync BN statistics, rebuild the bank from ALL real training faces ----
        if d.on:
            for b in list(model.encoder.buffers()) + list(model.key_encoder.buffers()):
                dist.broadcast(b, 0)
        n_bank, t_bank = 0, 0.0
        if model.uses_bank:  # the reference='none' ablation has no bank: nothing to rebuild or to report
            n_bank, t_bank = rebuild_bank(model, train_reals, batch_size=tcfg.val_batch_size, workers=tcfg.workers,
                                          dist_ctx=d, seed=tcfg.seed + epoch)
            emit({"event": "rebuild", "epoch": epoch + 1, "entries": n_bank, "seconds": t_bank,
                  "real_faces": len(train_reals)})

        # ---- validation ('single' mode is the headline) and checkpoints, rank 0 only ----
        others = gather_objects(rng_snapshot(), d)[1:]  # ranks 1.. draw nothing more this epoch: each resumes its own
        record: dict[str, Any] = {"epoch": epoch + 1, "step": step, "train_loss": loss_sum / max(1, done),
                                  "train_img_s": seen / max(1e-9, train_time), "bank_entries": n_bank,
                                  "bank_seconds": t_bank, "steps_done": done,  # 0: the budget ended before one
                                  "run_seconds": time.perf_counter() - t_start}  # what --max-minutes counts
        if d.main:
            record.update(validate(model, table, d.device, tcfg))
            cal = record.pop("calibration")
            record.update(threshold=cal["threshold"], temperature=cal["temperature"])
            if isinstance(cal.get("bank_fusion"), dict):  # what a scan of this checkpoint uses (scan/scanner.py)
                record["fusion_threshold"] = cal["bank_fusion"]["threshold"]
            if watch:
                record.update(score_watch(model, *watch, d.device, tcfg))
            history.append(_json_safe(record))
            key = record["watch_auc" if tcfg.select == "watch" else "val_auc"]
            # a new run's first epoch is its best so far (never a replaced run's best), as is one where best is gone
            first = state is None and epoch == start_epoch
            improved = improves(record, history[:-1], best, tcfg.select) or first or not best_path.is_file()
            best = max(best, key)
            common = dict(bank_sources=[str(p) for p in train_reals], history=history,
                          extra={**calibration_extra(cal, model), "trained_on": str(Path(tcfg.pairs)), "epochs_done": epoch + 1,
                                 "bank_sources_root": current_folder(), **({"earlier_faces": earlier} if earlier else {})})
            to_resume = rng_state(epoch + 1, step, best, tcfg.to_dict(), opt.state_dict(), scaler.state_dict(), others)
            with signals_held():  # a stop between the two would leave a best of another epoch, or of a replaced run
                save_checkpoint(last_path, model, train_state=to_resume, **common)
                if improved:  # how it was trained, without what only resuming needs (optimizer, RNG states)
                    save_checkpoint(best_path, model, train_state=TrainState(epoch + 1, step, best, tcfg.to_dict()), **common)
                write_log(log_path, history)
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


def init_model(path: str, mcfg: ModelConfig | None, given: Collection[str]) -> tuple[Detector, list[str]]:
    """The model of checkpoint `path` (weights, key encoder, bank), to fine-tune in a new run, and the real faces
    its weights have seen (Checkpoint.training_faces), which the new run's checkpoints carry on as 'earlier_faces'
    so that tools/unseen_photos.py never offers them as unseen. Its model config is kept: a model option given
    explicitly that differs from it is a ForgeryDetError, not silently ignored."""
    ck = load_checkpoint(Path(path), "cpu")
    conflicts = option_conflicts(set(given) - {"pretrained"}, [(mcfg, ck.model.cfg.to_dict())], "it has")
    if conflicts:
        raise ForgeryDetError(f"--init {path} keeps that model's settings, but {', '.join(conflicts)}: drop these "
                              f"options, or train a new model without --init")
    # the bank's source ids number the real faces of the run that filled it, not this run's: used as this run's,
    # they excluded the wrong faces and, past this run's count, crashed the first 'single' step; unknown (-1)
    # until `train` refills it from this run's faces before the first step
    ck.model.bank.source.fill_(-1)
    return ck.model, sorted(ck.training_faces)

