"""Starting and resuming a run: a new run never replaces one already in its folder unasked, and records where it
was started and what its data files held; the TrainState stored at every epoch end (position, best AUC, optimizer,
every RNG) and the stored TrainConfig, with the options `--resume` may change taken from the new call, the
run's relative paths taken from the folder it was started in, and its data files checked unchanged."""

from __future__ import annotations

import dataclasses
import json
import os
import random
from pathlib import Path
from typing import Any, Callable, Collection, Sequence

import numpy as np
import torch

from forgerydet.errors import ForgeryDetError, current_folder, path_text
from forgerydet.io import file_sha256, write_text_atomic
from forgerydet.model.checkpoint import Checkpoint, TrainState, save_checkpoint
from forgerydet.model.meta import read_meta
from forgerydet.model.config import ModelConfig, config_from_dict
from forgerydet.training.config import TrainConfig, aug_text, augment_config


def rng_snapshot() -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
    """This process's RNG states: torch's and every CUDA device's as tensors, Python's and NumPy's as JSON."""
    tensors = {"rng_torch": torch.get_rng_state()}
    if torch.cuda.is_available():
        for i, s in enumerate(torch.cuda.get_rng_state_all()):
            tensors[f"rng_cuda_{i}"] = s
    py = random.getstate()
    nps = np.random.get_state(legacy=False)
    nps["state"] = {"key": nps["state"]["key"].tolist(), "pos": int(nps["state"]["pos"])}
    return tensors, {"rng_python": [py[0], list(py[1]), py[2]], "rng_numpy": nps}


def rng_state(epoch: int, step: int, best: float, train_config: dict[str, Any],
              optimizer_state: dict[str, Any], scaler_state: dict[str, Any] | None = None,
              others: Sequence[tuple[dict[str, torch.Tensor], dict[str, Any]]] = ()) -> TrainState:
    """The TrainState to store after `epoch` epochs: position, best AUC, config, optimizer, every RNG's state and
    the fp16 loss scaler's (its scale and growth count; empty when no scaler is in use). `others`: under torchrun,
    the rng_snapshot of ranks 1.. in order, stored beside this process's (rank 0's, as a one-process run stores
    it) so that every rank resumes its own generators (set_rng_state): each draws its own dropout."""
    tensors, js = rng_snapshot()
    for r, (t, _) in enumerate(others, 1):
        tensors.update({f"rank{r}.{k}": v for k, v in t.items()})
    if others:
        js["rank_rng"] = [j for _, j in others]
    if scaler_state:  # plain numbers (GradScaler.state_dict)
        js["grad_scaler"] = dict(scaler_state)
    return TrainState(epoch, step, best, train_config, optimizer_state, tensors, js)


def set_rng_state(state: TrainState, rank: int = 0) -> None:
    """Put every RNG of process `rank` back where a stored run left it (bit-for-bit resume). A run stored before
    forgerydet kept each rank's state (or a one-process run) has rank 0's alone, which every rank then takes."""
    tensors, js = state.rng_tensors, state.rng
    ranks = js.get("rank_rng") or []
    if 0 < rank <= len(ranks) and f"rank{rank}.rng_torch" in tensors:
        tensors = {k[len(f"rank{rank}."):]: v for k, v in tensors.items() if k.startswith(f"rank{rank}.")}
        js = ranks[rank - 1]
    torch.set_rng_state(tensors["rng_torch"])
    if torch.cuda.is_available():
        cuda = [k for k in tensors if k.startswith("rng_cuda_")]
        states = [tensors[k] for k in sorted(cuda, key=lambda k: int(k[len("rng_cuda_"):]))]  # cuda_10 after cuda_9
        if states:
            torch.cuda.set_rng_state_all(states)
    a, b, c = js["rng_python"]
    random.setstate((a, tuple(b), c))
    nps = dict(js["rng_numpy"])
    nps["state"] = {"key": np.array(nps["state"]["key"], dtype=np.uint32), "pos": nps["state"]["pos"]}
    np.random.set_state(nps)


def grad_scaler(device: str, enabled: bool, state: TrainState | None,
                emit: Callable[[dict[str, Any]], None]) -> torch.amp.GradScaler:
    """The fp16 loss scaler (the loop enables it for CUDA fp16 training only) with a resumed run's scale and growth
    count put back, so a resumed fp16 run does not probe its loss scale again from 65,536, skipping steps."""
    scaler = torch.amp.GradScaler(device, enabled=enabled)
    if enabled and state is not None:
        stored = state.rng.get("grad_scaler")
        if stored:
            scaler.load_state_dict(dict(stored))
        else:  # a run stored before forgerydet kept it, or one that ran without fp16 until now
            emit({"event": "notice", "text": "the run stored no fp16 loss-scale state: its loss scale starts afresh"})
    return scaler


RUN_FILES = ("last.safetensors", "best.safetensors", "metrics.jsonl")
PATH_FIELDS = ("pairs", "watch", "init")  # TrainConfig fields that name files, relative to the run's workdir


def check_new_run(out: Path, overwrite: bool) -> None:
    """A run started without --resume into a folder that holds one would replace its checkpoints and log at its
    first epoch end: refused (a repeated command after Ctrl-C is the usual way there) unless `overwrite`."""
    found = [n for n in RUN_FILES if (out / n).exists()]
    if not found or overwrite:
        return
    try:
        logged = sum(1 for line in (out / "metrics.jsonl").read_text(errors="replace").splitlines() if line.strip())
    except OSError:
        logged = 0
    what = f"{logged} epoch{'' if logged == 1 else 's'} logged" if logged else ", ".join(found)
    raise ForgeryDetError(f"--out {path_text(out)} already holds a training run ({what}): continue it with --resume, "
                          f"train into another --out, or give --overwrite to replace it")


def stamp_new_run(tcfg: TrainConfig, processes: int = 1) -> TrainConfig:
    """`tcfg` with the folder it starts in, the number of processes training it, and the sha256 of its pairs file,
    watch list and --init checkpoint recorded (the last for provenance alone: `info` shows it, as a later run may
    rewrite the file the path names)."""
    digests = {name: file_sha256(Path(getattr(tcfg, name))) for name in ("pairs", "watch", "init") if getattr(tcfg, name)}
    return dataclasses.replace(tcfg, workdir=current_folder(), data_sha256=digests, processes=processes)


def check_same_processes(stored: dict[str, Any], world: int, last_path: Path) -> None:
    """A run is resumed by as many processes as trained it: its steps are batches of all of them, so another number
    changed the batch per step and, counted in steps, its learning-rate schedule (a 2-process run resumed by one
    ended half-way down its cosine; a 1-process run resumed by two trained its remaining epochs at the floor rate)."""
    before = stored.get("processes")
    if isinstance(before, int) and before != world:
        how = "one process (no torchrun)" if before == 1 else f"{before} processes (torchrun --nproc_per_node {before})"
        raise ForgeryDetError(
            f"--resume: {last_path.parent} was trained by {how}, and this resume runs {world} process{'es' if world > 1 else ''}: its batch per step and its "
            f"learning-rate schedule are counted in steps of all of them, so resume it with as many, or start a new run "
            f"from it with `forgerydet train --init {path_text(last_path)} --out NEW_FOLDER ...`")


def _found(stored: dict[str, Any], name: str) -> str | None:
    """Where a run's file `name` (a path as typed when it started) is now: from the current folder where it is there
    with the content the run recorded (the folder it started in, a moved project, a copy), else from the folder the
    run started in (a resume from elsewhere), else as typed (its absence is said later)."""
    path, workdir = stored.get(name), stored.get("workdir")
    if not path or os.path.isabs(path) or not workdir:
        return path
    digest = (stored.get("data_sha256") or {}).get(name)
    if os.path.isfile(path) and (digest is None or file_sha256(Path(path)) == digest):
        return path
    there = os.path.join(workdir, path)
    return there if os.path.exists(there) else path


def data_path(tcfg: TrainConfig, name: str) -> str | None:
    """The file a run reads for its option `name` ('pairs', 'watch'): see _found. The config keeps the path as typed,
    so that a run resumed from elsewhere and then moved still finds its files."""
    return _found(dataclasses.asdict(tcfg), name)


def _same_files(tcfg: TrainConfig, stored: dict[str, Any], given: Collection[str]) -> dict[str, Any]:
    """`stored` with a data file given again on --resume under another name (from another folder, a copy) taken as
    the run's own where its sha256 is the one the run recorded."""
    digests = stored.get("data_sha256") or {}
    same = {name: getattr(tcfg, name) for name in ("pairs", "watch") if name in given and name in digests
            and getattr(tcfg, name) and Path(getattr(tcfg, name)).is_file()
            and file_sha256(Path(getattr(tcfg, name))) == digests[name]}
    return {**stored, **same}


def check_same_data(tcfg: TrainConfig, last_path: Path) -> list[str]:
    """A ForgeryDetError where a data file of a resumed run is gone or has changed since the run started (new splits
    would mix validation faces into training and break the history's comparison across epochs); the names of the
    files the run recorded no sha256 for (runs started before it was recorded), to say they were not checked."""
    digests = tcfg.data_sha256 or {}
    unchecked = []
    for name in ("pairs", "watch"):
        path = data_path(tcfg, name)
        if not path:
            continue
        if name not in digests:
            unchecked.append(name)
            continue
        if not Path(path).is_file():
            raise ForgeryDetError(f"--resume: the run's --{name} file {path_text(path)} is gone"
                                  + (f" (the run started in {path_text(tcfg.workdir)})" if tcfg.workdir else ""))
        if file_sha256(Path(path)) != digests[name]:
            raise ForgeryDetError(
                f"--resume: {path_text(path)} has changed since the run started (another sha256), so its "
                f"{'splits and faces' if name == 'pairs' else 'faces'} may differ: restore that file, or start a new "
                f"run from this one with `forgerydet train --init {path_text(last_path)} --out NEW_FOLDER ...`")
    return unchecked


def improves(record: dict[str, Any], earlier: list[dict[str, Any]], best: float, select: str) -> bool:
    """Whether an epoch's record beats the best so far (`earlier`: the records before it): a higher validation AUC
    (the watch list's with select='watch'), or the same AUC at a lower validation loss. A small validation set
    reaches AUC 1.0 within a few epochs, and the first epoch that does, kept until then, was seldom the best."""
    name = "watch_auc" if select == "watch" else "val_auc"
    if record[name] > best:
        return True
    tied = [h["val_loss"] for h in earlier if h.get(name) == best and isinstance(h.get("val_loss"), float)]
    return record[name] == best and bool(tied) and record["val_loss"] < min(tied)


def _augmentation_conflicts(now: dict[str, Any] | None, before: dict[str, Any] | None, has: str) -> list[str]:
    """'--aug name=NOW (HAS BEFORE)' for each setting given now that differs from the stored one (JSON's lists
    read as pairs; a setting the stored run did not record is today's default)."""
    a, b = augment_config(now), augment_config(before)
    return [f"--aug {k}={aug_text(getattr(a, k))} ({has} {aug_text(getattr(b, k))})" for k in sorted(now or {})
            if getattr(a, k) != getattr(b, k)]


def option_conflicts(names: Collection[str], sources: list[tuple[Any, dict[str, Any]]], has: str) -> list[str]:
    """'--name NOW (HAS BEFORE)' for each option in `names` whose value in a config differs from the stored one;
    `sources` pairs a config object (None: not given) with its stored dict, the first holding the name decides."""
    conflicts = []
    for name in sorted(names):
        for cfg, stored in sources:
            if cfg is None or name not in stored:
                continue
            now, before = getattr(cfg, name), stored[name]
            if name == "augmentation":
                conflicts += _augmentation_conflicts(now, before, has)
            elif not (now == before or (name in PATH_FIELDS and now is not None and before is not None
                                        and Path(now).resolve() == Path(before).resolve())):
                was = "none" if before is None else before  # not Python's `None`
                conflicts.append(f"--{name.replace('_', '-')} {now} ({has} {was})")
            break
    return conflicts


def resumed_config(tcfg: TrainConfig, mcfg: ModelConfig | None, state: TrainState, ck: Checkpoint, given: Collection[str],
                   last_path: Path, processes: int = 1) -> TrainConfig:
    """The stored training config, with where-to-run options and a raised epoch count taken from this call;
    a ForgeryDetError for any other explicitly given option that differs from the stored run, or for another
    number of `processes` than trained it."""
    stored = _same_files(tcfg, state.train_config, given)
    check_same_processes(stored, processes, last_path)
    here = {**stored, **{name: _found(stored, name) for name in PATH_FIELDS}}  # its files as found now, to compare
    may_change = {"out", "device", "workers", "epochs", "max_minutes"}
    conflicts = option_conflicts(set(given) - may_change, [(tcfg, here), (mcfg, ck.model.cfg.to_dict())], "the run has")
    if conflicts:
        raise ForgeryDetError(f"--resume continues {last_path.parent} with its stored settings, but "
                              f"{', '.join(conflicts)}: drop these options, or train into a new --out")
    done = state.epoch
    epochs = tcfg.epochs if "epochs" in given else int(stored["epochs"])
    if epochs <= done:
        raise ForgeryDetError(
            f"{last_path} has finished {done} epoch(s)" + (f", so --epochs {epochs} leaves nothing to train" if "epochs" in given
                                                          else " (all it was asked for)")
            + f": pass --epochs N with N > {done} to train more")
    if epochs < int(stored["epochs"]) and done < int(stored["epochs"]):
        raise ForgeryDetError(
            f"--epochs {epochs} would cut {last_path.parent}, a run of {stored['epochs']} epochs with {done} done, short "
            f"and change its learning-rate schedule midway: resume without --epochs (best.safetensors already holds "
            f"its best epoch so far), or train a shorter run into a new --out")
    try:  # a hand-edited value is said as the file's, not as the class's ("invalid TrainConfig: ...")
        return config_from_dict(TrainConfig, {**stored, "out": tcfg.out, "device": tcfg.device, "workers": tcfg.workers,
                                              "epochs": epochs,  # and a new budget, which was accepted and then ignored
                                              **({"max_minutes": tcfg.max_minutes} if "max_minutes" in given else {})},
                                "the stored training settings are invalid")
    except ForgeryDetError as e:
        raise ForgeryDetError(f"{path_text(last_path)}: {e}; was the metadata edited?") from None


def write_log(path: Path, records: list[dict[str, Any]]) -> None:
    """The per-epoch metrics log, rewritten whole and atomically from the checkpoint's history, so it always
    agrees with the last checkpoint (also after a crash and --resume)."""
    write_text_atomic(path, "".join(json.dumps(r) + "\n" for r in records))


def catch_up(ck: Checkpoint, best_path: Path, log_path: Path) -> str | None:
    """After a stop between an epoch's writes (last, then best, then the log; a kill -9 is not held off), bring
    best and the log level with last, the run's loaded state `ck`: the log from its history, and best from its
    weights when its last epoch was the best one and best holds an earlier one (or none). Returns a notice then."""
    history, st = ck.history, ck.train_state
    write_log(log_path, history)
    name = "watch_auc" if st is not None and st.train_config.get("select") == "watch" else "val_auc"
    if st is None or not history or not all(isinstance(h.get(name), (int, float)) for h in history):
        return None
    best_epoch, best = 1, float(history[0][name])  # a run's first epoch is its first best
    for k in range(1, len(history)):
        if improves(history[k], history[:k], best, name.removesuffix("_auc")):
            best_epoch = k + 1
        best = max(best, float(history[k][name]))
    try:
        held = int((read_meta(best_path).get("extra") or {}).get("epochs_done") or 0)
    except ForgeryDetError:  # missing or damaged: the write that was stopped
        held = 0
    if best_epoch != len(history) or held >= best_epoch:
        return None
    save_checkpoint(best_path, ck.model, train_state=TrainState(st.epoch, st.step, st.best, st.train_config),
                    bank_sources=ck.bank_sources, history=history, extra=ck.extra)
    return (f"{best_path.name} held epoch {held or 'none'} though the run's best is its last finished epoch, {best_epoch} "
            f"(the run was stopped between writing the two): written again from {ck.path.name}")


def spent(history: list[dict[str, Any]], budget: float | None) -> float:
    """The seconds of its --max-minutes `budget` (None: a new one, or none) a resumed run had used at its last
    finished epoch, which it goes on from (a run stored before 2026-12-07 recorded none: 0). Refused when nothing is
    left: it would run an epoch of no steps."""
    value = history[-1].get("run_seconds") if history and budget else None
    used = float(value) if isinstance(value, (int, float)) and 0 <= value < float("inf") else 0.0
    if budget and used >= budget:
        raise ForgeryDetError(f"the run has used its whole --max-minutes budget ({budget / 60:g} min): to train on, "
                              f"give --max-minutes M with --resume for a new budget of M minutes")
    return used
