"""`forgerydet train` and `forgerydet rebuild-bank`."""

from __future__ import annotations

import contextlib
import shlex
import time
from pathlib import Path
from typing import Annotated, Callable, Optional

import typer
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn

from forgerydet.cli.common import (EXIT_INTERRUPTED, StartVoice, console, draws_bars, fail, minutes_text, note,
                                   output_held, progress_bar, said_if_stopped, say, shown, typed_options, user_errors)
from forgerydet.errors import ForgeryDetError, WriteError, option_error
from forgerydet.io import file_state
from forgerydet.model.calibration import DEFAULT_FPR, few_reals_note
from forgerydet.model.config import ModelConfig
from forgerydet.runtime import process_rank, resolve_device
from forgerydet.scan.html import threshold_text
from forgerydet.training.config import TrainConfig, augmentation_with


def _progress(lines: bool = False) -> Progress:
    """The bar of train (lines=False: off a terminal TrainView writes its own step lines), rebuild-bank and calibrate
    (lines=True: off a terminal a line a minute, as scan's; their encoding said nothing for an hour in a log)."""
    return progress_bar(TextColumn("[bold]{task.description}"), BarColumn(), MofNCompleteColumn(),
                        TextColumn("{task.fields[info]}"), TimeElapsedColumn(), TimeRemainingColumn(),
                        disable=process_rank() != 0, lines=lines)


LOG_EVERY_S = 60.0  # where the output is not a terminal (nohup, a job scheduler): a step line this often


class TrainView:
    """Renders the training loop's events: a step bar per epoch on a terminal (a step line every LOG_EVERY_S
    elsewhere, where the bar is off: a log file of a run in the background shows it is alive and how far it is),
    one line per bank rebuild and epoch, and after each epoch the time the epochs left take at its pace."""

    def __init__(self, progress: Progress, clock=time.monotonic) -> None:
        self.p = progress
        self.task = None
        self.quiet = process_rank() != 0
        self.log_steps = not draws_bars(console)  # a file, a pipe, or a dumb terminal (no bar there)
        self.clock = clock
        self.epochs, self.max_minutes, self.epoch, self.steps = 0, None, 0, 0
        self.t_epoch = self.t_line = self.t_ending = 0.0
        self.ending_took = 0.0  # the last epoch end's bank rebuild, validation and checkpoints, in seconds

    def _step_line(self, e: dict) -> None:
        now = self.clock()
        if now - self.t_line < LOG_EVERY_S:
            return
        self.t_line = now
        left = (now - self.t_epoch) / e["step"] * (self.steps - e["step"])
        console.print(f"epoch {self.epoch}: step {e['step']}/{self.steps}, loss {e['loss']:.3f}, lr {e['lr']:.2e}, "
                      f"{e['img_s']:.0f} img/s; {minutes_text(left)} of this epoch's steps left", highlight=False)

    def _pace_line(self, epoch: int) -> None:
        left = self.epochs - epoch
        if left <= 0 or not self.t_epoch:
            return
        took = self.clock() - self.t_epoch  # steps, bank rebuild, validation and checkpoints
        line = (f"epoch {epoch} took {minutes_text(took)}; the {left} epoch{'' if left == 1 else 's'} left: about "
                f"{minutes_text(took * left)} at this pace")
        if self.max_minutes:
            line += f" (--max-minutes {self.max_minutes:g} ends the run at the first epoch end past it)"
        console.print(line, highlight=False)

    def __call__(self, e: dict) -> None:
        kind = e["event"]
        if self.quiet:
            return
        if kind == "start":
            self.epochs, self.max_minutes = e["epochs"], e.get("max_minutes")
            console.print(
                f"training [bold]{shown(e['backbone'])}[/] ({e['img_size']} px, weights: {shown(e['pretrained'])}) "
                f"on {e['device']}"
                f"{' x' + str(e['world']) + ' ranks' if e['world'] > 1 else ''}: {e['train_pairs']} training pairs, "
                f"{e['train_reals']} real training faces, {e['val_faces']} validation faces, "
                f"{e['steps_per_epoch']} steps/epoch, epochs {e['start_epoch'] + 1}..{e['epochs']}, "
                f"tuning {e['tune']} ({e['trainable']:,} trainable parameters)"
                + (f", starting from {shown(e['init'])}" if e.get("init") else "")
                + (f", watching {e['watch_faces']} held-out faces" if e.get("watch_faces") else ""),
                soft_wrap=True)  # one line in a log: the weights' and --init's paths not folded
            if not e["start_epoch"] and (few := few_reals_note(e.get("val_reals"), e.get("calibration_fpr"),
                                                                "--calibration-fpr", "the threshold every epoch stores")):
                console.print(f"[yellow]notice:[/] {few}")  # what `calibrate` says of the same faces, said before the epochs
            if e["pretrained"] == "none" and not e.get("init") and not e["start_epoch"]:  # said once, when it starts
                why = "--pretrained none" if e.get("asked") == "none" else "no ImageNet weights found"
                console.print(f"[yellow]notice:[/] backbone starts from RANDOM weights ({why}); "
                              'expect weak transfer to real forgeries (see README, "Pretrained backbones offline")')
        elif kind == "notice":
            console.print(f"[yellow]notice:[/] {shown(e['text'])}", soft_wrap=True)
        elif kind == "epoch_start":
            self.task = self.p.add_task(f"epoch {e['epoch']}", total=e["steps"], info="")
            self.epoch, self.steps = e["epoch"], e["steps"]
            self.t_epoch = self.t_line = self.clock()
        elif kind == "step" and self.task is not None:
            self.p.update(self.task, completed=e["step"],
                          info=f"loss {e['loss']:.3f} lr {e['lr']:.2e} {e['img_s']:.0f} img/s")
            if self.log_steps:
                self._step_line(e)
        elif kind == "epoch_ending":  # minutes without a line otherwise: the bar at 100 %, or nothing in a log
            if self.task is not None:
                self.p.remove_task(self.task)
                self.task = None
            self.t_ending = self.clock()
            work = f"rebuilding the bank from {e['bank_faces']} real faces, then " if e["bank_faces"] else ""
            console.print(f"epoch {e['epoch']}: steps done; {work}validating"
                          + (f" (the last epoch end took {minutes_text(self.ending_took)})" if self.ending_took else ""),
                          highlight=False, soft_wrap=True)
        elif kind == "rebuild":
            if self.task is not None:
                self.p.remove_task(self.task)
                self.task = None
            when = f"epoch {e['epoch']}" if e["epoch"] else "before epoch 1 (--init)"
            console.print(f"{when}: bank rebuilt from {e['real_faces']} real training faces -> "
                          f"{e['entries']} entries in {e['seconds']:.1f} s")
        elif kind == "epoch_end":
            trained = (f"train loss {e['train_loss']:.4f} ({e['train_img_s']:.0f} img/s)" if e.get("steps_done", 1) else
                       "no training step (the --max-minutes budget ran out before this epoch's first)")
            console.print(
                f"epoch {e['epoch']}: {trained} | val 'single' "
                f"AUC {e['val_auc']:.4f} AP {e['val_ap']:.4f} EER {e['val_eer']:.4f} acc {e['val_acc']:.4f} "
                f"loss {e['val_loss']:.4f} | val 'pair' AUC {e['val_auc_pair']:.4f} | "
                + (f"threshold {threshold_text(e['fusion_threshold'])} (bank fusion, as scan uses it; head {threshold_text(e['threshold'])} "
                   f"T {e['temperature']:.2f})" if "fusion_threshold" in e else
                   f"threshold {threshold_text(e['threshold'])} T {e['temperature']:.2f}"
                   + (" (head alone: the nearest-bank similarity was no evidence on the validation faces)"
                      if e.get("bank_entries") else ""))
                + (f" | watch AUC {e['watch_auc']:.4f} AP {e['watch_ap']:.4f}" if "watch_auc" in e else "")
                + (" [green]best[/]" if e["best"] else "")
            )
            self.ending_took = self.clock() - self.t_ending if self.t_ending else 0.0
            self._pace_line(e["epoch"])
        elif kind == "budget":
            console.print(f"time budget reached after epoch {e['epoch']} ({e['minutes']:.1f} min): stopping")


def train_cmd(
    ctx: typer.Context,
    pairs: Annotated[Path, typer.Option(readable=False, help="pairs.csv (from `forgerydet pairs`).")] = Path(TrainConfig.pairs),
    out: Annotated[Path, typer.Option(readable=False, help="Run folder: best.safetensors, last.safetensors, metrics.jsonl.")] = Path(TrainConfig.out),
    backbone: Annotated[str, typer.Option(help="timm model name.")] = ModelConfig.backbone,
    pretrained: Annotated[str, typer.Option(help="'auto' (packaged/hub-cache/$FORGERYDET_WEIGHTS), 'none', or a weights file.")] = ModelConfig.pretrained,
    img_size: Annotated[Optional[int], typer.Option(help="Face size in pixels (default: the backbone's).")] = None,
    epochs: Annotated[int, typer.Option(help="Epochs.")] = TrainConfig.epochs,
    batch_size: Annotated[int, typer.Option(help="Batch size per process.")] = TrainConfig.batch_size,
    lr: Annotated[float, typer.Option(help="Peak learning rate (AdamW, warm-up then cosine).")] = TrainConfig.lr,
    weight_decay: Annotated[float, typer.Option(help="AdamW weight decay.")] = TrainConfig.weight_decay,
    bank_size: Annotated[int, typer.Option(help="Memory-bank entries K (65536 suits a GPU).")] = ModelConfig.bank_size,
    momentum: Annotated[float, typer.Option(help="Key-encoder EMA momentum m.")] = ModelConfig.momentum,
    temperature: Annotated[float, typer.Option(help="InfoNCE temperature.")] = ModelConfig.temperature,
    nce_weight: Annotated[float, typer.Option(help="Weight of the InfoNCE loss.")] = TrainConfig.nce_weight,
    single_share: Annotated[float, typer.Option(help="Share of batches trained in 'single' (bank) mode.")] = TrainConfig.single_share,
    dim: Annotated[int, typer.Option(help="Token dimension D.")] = ModelConfig.dim,
    grid: Annotated[int, typer.Option(help="Token grid side (N = grid^2).")] = ModelConfig.grid,
    steps_per_epoch: Annotated[Optional[int], typer.Option(help="Cap on steps per epoch (quick runs).")] = None,
    workers: Annotated[int, typer.Option(help="Data-loading processes (-1: auto, none on <= 4 cores).")] = TrainConfig.workers,
    seed: Annotated[int, typer.Option(help="Random seed.")] = TrainConfig.seed,
    device: Annotated[str, typer.Option(help="'auto', 'cpu', 'cuda' or 'cuda:N'.")] = TrainConfig.device,
    amp: Annotated[str, typer.Option(help="'auto' (bf16 on GPU, off on CPU), 'bf16', 'fp16' (both on a GPU only: a CPU trains in fp32), 'off'.")] = TrainConfig.amp,
    augment: Annotated[bool, typer.Option(help="Forgery-suited augmentation (flip, scale, JPEG, blur, ...).")] = TrainConfig.augment,
    sbi_online: Annotated[bool, typer.Option(help="Re-make self-blended fakes every epoch.")] = TrainConfig.sbi_online,
    sbi_local: Annotated[float, typer.Option(help="Share of online self-blends whose mask is one facial part (eyes, nose, mouth or lower face) instead of the whole face: pseudo-fakes of local edits (reenactment, a re-rendered mouth).")] = TrainConfig.sbi_local,
    swap_blends: Annotated[float, typer.Option(help="Share of online pseudo-fakes blended from ANOTHER person's face (pose-matched, colour-matched; Face X-ray's blended images) instead of the face itself: the traces of a face swap.")] = TrainConfig.swap_blends,
    pair_reference: Annotated[str, typer.Option(help="How 'pair' steps draw references: 'source' (a fake against the real it was blended from, aligned; a real against another frame), 'other' (both against another frame or photo of the person) or 'reaugmented' (both against their own source augmented again). With 'source' the alignment alone tells fakes from reals (bench/pair_cue.py).")] = TrainConfig.pair_reference,
    augmentation: Annotated[Optional[list[str]], typer.Option("--aug", metavar="NAME=VALUE", help="Change one augmentation setting (repeatable), e.g. --aug noise_p=0.4 --aug blur_sigma=0.3,2.5 --aug quality=false: the fields of forgerydet.training.augment.AugmentConfig (probabilities *_p, LOW,HIGH ranges); the others keep today's defaults. Recorded in the run.")] = None,
    resume: Annotated[bool, typer.Option(help="Continue from OUT/last.safetensors with its stored settings; only "
                                         "--epochs (to extend the run), --device, --workers and --max-minutes (a new budget) may be given anew.")] = False,
    overwrite: Annotated[bool, typer.Option(help="Replace a run already in OUT (its checkpoints and log are rewritten at the first epoch end); without it such a folder is refused, so that repeating a command does not lose a run.")] = False,
    max_minutes: Annotated[Optional[float], typer.Option(help="Wall-clock budget: the LR schedule follows elapsed time and training stops at the first epoch end past it.")] = None,
    reference: Annotated[str, typer.Option(help="'bank' (the method) or 'none' (ablation: a plain classifier on the face's own features, no bank).")] = ModelConfig.reference,
    tune: Annotated[str, typer.Option(help="'all': fine-tune the whole backbone; 'norm': only its normalisation layers (LN-tuning, for foundation ViTs); 'none': keep it frozen and train the projection, DifferenceAttention and head only.")] = TrainConfig.tune,
    calibration_fpr: Annotated[float, typer.Option(help="The stored threshold lets at most this share of held-out real validation faces be called FAKE.")] = TrainConfig.calibration_fpr,
    init: Annotated[Optional[Path], typer.Option(readable=False, help="Start from this checkpoint's weights, key encoder and bank (fine-tune, e.g. models/forgerydet-base.safetensors on your own faces); its model settings are kept, optimizer and schedule start afresh.")] = None,
    watch: Annotated[Optional[Path], typer.Option(readable=False, help="Face crops never trained on (real forgeries of your own): a CSV path,label[,group], or another pairs.csv whose 'test' split is taken; scored at every epoch end, AUC in the log and history.")] = None,
    select: Annotated[str, typer.Option(help="Which AUC picks best.safetensors: 'val' (self-blend validation split) or 'watch' (the --watch list).")] = TrainConfig.select,
) -> None:
    """Train a detector on pairs.csv; the bank is rebuilt from every real training face at each epoch end."""
    voice = StartVoice(device)  # under torchrun, an error before the first step is said once
    with user_errors(voice.fail):
        mcfg = ModelConfig(backbone=backbone, pretrained=pretrained, img_size=img_size, dim=dim, grid=grid,
                           bank_size=bank_size, momentum=momentum, temperature=temperature, reference=reference)
        tcfg = TrainConfig(pairs=str(pairs), out=str(out), epochs=epochs, batch_size=batch_size, lr=lr,
                           weight_decay=weight_decay, nce_weight=nce_weight, single_share=single_share,
                           workers=workers, seed=seed, device=device, amp=amp, augment=augment,
                           sbi_online=sbi_online, sbi_local=sbi_local, swap_blends=swap_blends, pair_reference=pair_reference, steps_per_epoch=steps_per_epoch, max_minutes=max_minutes,
                           calibration_fpr=calibration_fpr, tune=tune, init=None if init is None else str(init),
                           watch=None if watch is None else str(watch), select=select,
                           augmentation=augmentation_with(augmentation, augment))
        given = typed_options(ctx)
        if resume and overwrite:
            raise ForgeryDetError("--resume continues the run in --out and --overwrite replaces it: give one of them")
        if not resume or "pairs" in given:  # a mistyped path: one line now, not after ~6 s of importing torch
            from forgerydet.pairs.table import check_pairs_path

            check_pairs_path(pairs)
        if init is not None:
            if "pretrained" in given:  # the backbone's weights are the checkpoint's: the file was never even read
                raise ForgeryDetError(f"--init starts from {init}'s weights, so --pretrained does not apply: drop it")
            from forgerydet.model.config import check_checkpoint_path

            check_checkpoint_path(init)
        if watch is not None:
            from forgerydet.training.config import check_watch_path

            check_watch_path(watch)
        from forgerydet.training.loop import train as run_train

        if "amp" in given and amp in ("bf16", "fp16") and resolve_device(device).type == "cpu":
            note("note:", f"--amp {amp} applies on a GPU: on a CPU training runs in fp32 (bf16 steps measured no "
                          f"faster there; README, \"Faster scans in bf16\")", style="yellow")
        last = Path(out) / "last.safetensors"
        replaced = file_state(last) if overwrite else None  # the run --overwrite replaces at its first epoch end
        try:  # --out held by rank 0 (which writes it): two runs into one at once left one's best beside the other's last
            with _progress() as p, output_held(out, "--out", "training run") if process_rank() == 0 \
                    else contextlib.nullcontext():
                res = run_train(tcfg, mcfg, resume=resume, on_event=voice.events(TrainView(p)), given=given - {"resume", "overwrite"},
                              overwrite=overwrite)
        except (KeyboardInterrupt, OSError, WriteError, RuntimeError) as e:  # Ctrl-C, SIGTERM, a full disk, a torchrun
            from forgerydet.training.distributed import resume_command, stop_cause, stop_text  # peer's end: go on
            if (cause := stop_cause(e)) in ("other", "quiet"):  # not a stop; or one that rank 0 says for the run
                raise (typer.Exit(EXIT_INTERRUPTED if isinstance(e, KeyboardInterrupt) else 1) if cause == "quiet" else e)
            hint = (f"last.safetensors holds the last finished epoch; {resume_command(out)} continues"  # (last holds them)
                    if last.is_file() else "no epoch had finished, so there is nothing to resume")
            if replaced is not None and file_state(last) == replaced:
                hint = (f"no epoch of this run had finished: {out} still holds the run --overwrite was to replace, "
                        f"which `--resume` would go on with")
            if (what := stop_text(e, cause)) is not None:
                raise voice.fail(f"{what}; {hint}", own=cause == "own") from None
            raise fail(f"interrupted: {hint}", EXIT_INTERRUPTED) from None
    if res["rank"] == 0:
        say(f"checkpoints: best {res['best']}  last {res['last']}  (inspect with `forgerydet info`)")


def rebuild_bank_cmd(
    checkpoint: Annotated[Path, typer.Option(readable=False, help="Checkpoint whose bank to rebuild (written back in place).")],
    pairs: Annotated[Path, typer.Option(readable=False, help="pairs.csv: its 'train' real faces fill the bank.")] = Path("pairs.csv"),
    out: Annotated[Optional[Path], typer.Option(readable=False, help="Write to this file instead of in place.")] = None,
    batch_size: Annotated[int, typer.Option(help="Batch size.")] = TrainConfig.val_batch_size,
    workers: Annotated[int, typer.Option(help="Data-loading processes (-1: auto, none on <= 4 cores).")] = TrainConfig.workers,
    device: Annotated[str, typer.Option(help="'auto', 'cpu', 'cuda' or 'cuda:N'.")] = TrainConfig.device,
    select: Annotated[Optional[str], typer.Option(help="More real faces than bank slots: keep a 'coreset' (greedy k-center on the pooled keys: faces that cover the real distribution; the default) or a 'random' subset.")] = None,
    disk_bank: Annotated[Optional[Path], typer.Option(help="Write EVERY real face to this new disk-bank folder (memory-mapped, faiss past 100,000 entries; for `scan --bank`) instead of the checkpoint's bank.")] = None,
) -> None:
    """Recompute the memory bank from all real training faces with the checkpoint's key encoder."""
    voice = StartVoice(device)  # under torchrun (the encoding is sharded), an error before it is said once
    if workers < -1:
        raise voice.fail(f"--workers {workers}: use -1 (auto), 0 (none) or a number of processes")
    _check_inputs_first(checkpoint, pairs, voice.fail)
    if disk_bank is not None:
        from forgerydet.training.bankfill import rebuild_disk_bank

        if out is not None:  # it was ignored: the checkpoint is never written with --disk-bank
            raise voice.fail(f"--out goes with the checkpoint's own bank; --disk-bank writes every face to {disk_bank} and "
                       f"leaves {checkpoint} unchanged: drop one of them")
        if select is not None:
            raise voice.fail("--select chooses which faces fit the checkpoint's bank; a disk bank keeps every face: drop it")

        stopped = said_if_stopped(disk_bank / "bank.json", f"the disk bank {disk_bank}", checkpoint)
        with user_errors(voice.fail), stopped, _progress(lines=True) as p:
            task = p.add_task("encoding real faces", total=None, info="")
            res = rebuild_disk_bank(checkpoint, pairs, disk_bank, device=device, batch_size=batch_size, workers=workers,
                                    progress=lambda a, b, item="": p.update(task, completed=a, total=b))
        say(f"disk bank written: {res['entries']} real faces, {res['disk_mb']:.1f} MB, "
            f"{'faiss index' if res['indexed'] else 'exact search'}, in {res['seconds']:.1f} s -> {res['folder']} "
            f"(use it with `forgerydet scan --bank {res['folder']}`; {checkpoint} is unchanged)")
        return
    from forgerydet.training.bankfill import rebuild_checkpoint_bank

    with user_errors(voice.fail), said_if_stopped(out or checkpoint, spared=out and checkpoint), \
            _progress(lines=True) as p:
        from forgerydet.model.coreset import SELECTIONS

        if select is not None and select not in SELECTIONS:
            raise option_error("--select", select, f"use one of {', '.join(SELECTIONS)}")
        task = p.add_task("encoding real faces", total=None, info="")
        chosen = {} if select is None else {"select": select}  # none given: the library's default (coreset)
        res = rebuild_checkpoint_bank(checkpoint, pairs, device=device, batch_size=batch_size, workers=workers, out=out,
                                      progress=lambda a, b, item="": p.update(task, completed=a, total=b), on_start=voice.started, **chosen)
    if process_rank() == 0:
        say(f"bank rebuilt: {res['entries']} entries written (from {res['real_faces']} real training faces, "
            f"bank size {res['bank_size']}{', ' + res['select'] + ' selection' if res['real_faces'] > res['bank_size'] else ''}) "
            f"in {res['seconds']:.1f} s -> {res['checkpoint']}")
        if res["calibration_stale"]:
            note("note:", "its threshold and bank fusion were fitted against the bank this replaced; scans still "
                          f"use them until you refit them: {_recalibrate_line(res)}", style="yellow")


def _check_inputs_first(checkpoint: Path, pairs: Path, say: Callable[[str], typer.Exit] = fail) -> None:
    """A mistyped --checkpoint or --pairs is one line before torch loads (~6 s), not after."""
    from forgerydet.model.config import check_checkpoint_path
    from forgerydet.pairs.table import check_pairs_path

    with user_errors(say):
        check_checkpoint_path(checkpoint)
        check_pairs_path(pairs)


def _recalibrate_line(res: dict) -> str:
    """The `calibrate` command that refits a rebuilt bank's calibration as it was fitted (its --tta, --precision
    and --fpr, which a bare `calibrate` would reset), ready to paste."""
    how = res.get("calibrated_with") or {}
    on = res["calibrated_on"]
    here = bool(on) and Path(on).is_file()  # a path recorded on another machine, or relative to another folder
    args = ["forgerydet", "calibrate", "--checkpoint", str(res["checkpoint"]), "--pairs", on if here else "PAIRS.csv"]
    if how.get("tta", "none") != "none":
        args += ["--tta", str(how["tta"])]
    if how.get("precision", "fp32") != "fp32":
        args += ["--precision", str(how["precision"])]
    if how.get("target_fpr") is not None and float(how["target_fpr"]) != DEFAULT_FPR:
        args += ["--fpr", f"{float(how['target_fpr']):g}"]
    line = " ".join(a if a == "PAIRS.csv" else shlex.quote(a) for a in args)
    return line + (f" (it was fitted on {on}, which is not here: give held-out real faces of your own)" if on and not here
                   else "")


def calibrate_cmd(
    checkpoint: Annotated[Path, typer.Option(help="Checkpoint to calibrate (written back in place).")],
    pairs: Annotated[Path, typer.Option(help="pairs.csv: its 'val' split (real faces held out from training) is scored.")] = Path("pairs.csv"),
    fpr: Annotated[float, typer.Option(help="Share of held-out real faces the threshold may call FAKE.")] = DEFAULT_FPR,
    out: Annotated[Optional[Path], typer.Option(help="Write to this file instead of in place.")] = None,
    batch_size: Annotated[int, typer.Option(help="Batch size.")] = TrainConfig.val_batch_size,
    device: Annotated[str, typer.Option(help="'auto', 'cpu', 'cuda' or 'cuda:N'.")] = TrainConfig.device,
    tta: Annotated[str, typer.Option(help="'flip': score each face averaged with its mirror image, as `scan --tta flip`; scans of this checkpoint then do so by default. 'none': as it is.")] = "none",
    precision: Annotated[str, typer.Option(help="'fp32'; 'bf16' (CPU or GPU) or 'fp16' (GPU): score in that arithmetic, as `scan --precision`; scans of this checkpoint then do so by default.")] = "fp32",
) -> None:
    """Store a threshold (at a false-positive rate on held-out real faces), a temperature and the bank fusion
    (the nearest real face's similarity as a second input) in a checkpoint."""
    _check_inputs_first(checkpoint, pairs)
    from forgerydet.training.validate import calibrate_checkpoint

    with user_errors(), said_if_stopped(out or checkpoint, spared=out and checkpoint), _progress(lines=True) as p:
        task = p.add_task("scoring validation faces", total=None, info="")
        r = calibrate_checkpoint(checkpoint, pairs, fpr=fpr, device=device, batch_size=batch_size, out=out, tta=tta,
                                 precision=precision, progress=lambda a, b, item="": p.update(task, completed=a, total=b))
    caught = "pseudo-fakes caught" if r.get("val_fakes_self_blended", True) else "fakes caught"  # real forgeries
    say(
        f"calibrated on {r['val_reals']} real / {r['val_fakes']} fake validation faces"
        f"{' (each face averaged with its mirror image)' if r['tta'] == 'flip' else ''}"
        f"{' in ' + r['precision'] if r['precision'] != 'fp32' else ''}: temperature {r['temperature']:.3f}, "
        f"threshold {threshold_text(r['threshold'])} (real faces called FAKE: {r['val_fpr']:.3f}, {caught}: "
        f"{r['val_tpr']:.3f}, AUC {r['val_auc']:.4f}) -> {r['checkpoint']}")
    f = r.get("bank_fusion")
    console.print(
        f"bank fusion: p = sigmoid({f['logit']:.3f} * logit {f['similarity']:+.3f} * nearest similarity {f['bias']:+.3f}), "
        f"threshold {threshold_text(f['threshold'])} (real faces called FAKE: {f['val_fpr']:.3f}, {caught}: "
        f"{f['val_tpr']:.3f}, AUC {f['val_auc']:.4f}); scans against this bank use it" if f else
        "bank fusion: none (the nearest-bank similarity was no evidence on these faces, or the model has no bank): "
        "scans use the temperature alone", highlight=False, soft_wrap=True)
    if few := few_reals_note(r["val_reals"], fpr, "--fpr", "the threshold"):
        note("note:", few, style="yellow")
