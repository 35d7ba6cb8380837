"""Validation and calibration: score the validation split in 'single' mode (what scan sees) and 'pair'
mode, the metrics of both, and the calibration (temperature, threshold at a real-face FPR) that training stores
every epoch and `forgerydet calibrate` stores on demand."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import torch

from forgerydet.errors import ForgeryDetError
from forgerydet.faces.index import crop_source
from forgerydet.faces.media import IMAGE_EXTS
from forgerydet.metrics import binary_metrics
from forgerydet.model.calibration import DEFAULT_FPR, calibrate, check_precision, check_tta, fused_logits, sigmoid
from forgerydet.model.checkpoint import load_checkpoint, resave_checkpoint
from forgerydet.model.detector import Detector
from forgerydet.model.meta import bank_faces
from forgerydet.pairs.labels import Item, check_classes, read_list
from forgerydet.pairs.table import REQUIRED_COLUMNS, PairsTable, read_pairs
from forgerydet.runtime import Progress
from forgerydet.training.config import TrainConfig, check_checkpoint_rewrite, check_watch_path
from forgerydet.training.data import FaceList, validation_lists
from forgerydet.training.distributed import Dist, amp_precision, autocast, make_loader, setup_distributed


@torch.no_grad()
def score_faces(model: Detector, paths: list[Path], labels: list[int], refs: list[Path] | None, mode: str,
                device: torch.device, batch_size: int = 64, workers: int = 0, amp: str = "off",
                similarity: bool = False, tta: str = "none",
                precision: str | None = None, progress: Progress | None = None) -> np.ndarray | tuple[np.ndarray, np.ndarray]:
    """The logit of each face (sigmoid: fake probability), in 'single' (bank) or 'pair' (given references) mode;
    with similarity=True ('single' mode) also each face's cosine similarity to its nearest bank entry.
    tta='flip' ('single' mode): the mean over the face and its mirror image, as `scan --tta flip` scores.
    precision ('single' mode): the arithmetic, as `scan --precision`; None: what `amp` makes of it on `device`.
    progress(done, total) is called after every batch."""
    model.eval()
    ds = FaceList(paths, labels, model.img_size, refs=refs if mode == "pair" else None)
    out, sims = [], []
    for batch in make_loader(ds, batch_size, workers, Dist(device=device)):
        x = batch["x"].to(device)
        if mode == "single":  # in the precision a scan of this calibration scores in
            _, logits, s = model.single_scores(x, tta, precision=precision or amp_precision(device, amp))
            sims.append(s)
        else:
            with autocast(device, amp):
                logits = model(x, mode, reference=batch["ref"].to(device))["logits"].float().cpu().numpy()
        out.append(logits)
        if progress:
            progress(sum(len(o) for o in out), len(ds))
    logits = np.concatenate(out).astype(np.float32)
    return (logits, np.concatenate(sims)) if similarity else logits


def _fusion_input(sims: np.ndarray) -> np.ndarray | None:
    """The similarities the fusion is fitted on; None for a model without a bank (NaN: nothing retrieved)."""
    return sims if np.isfinite(sims).all() else None


def validate(model: Detector, table: PairsTable, device: torch.device, tcfg: TrainConfig) -> dict[str, float]:
    """'single'- and 'pair'-mode metrics on the validation split, and the calibration (temperature,
    threshold) of the 'single' scores, which is what `scan` uses."""
    paths, labels, refs, _ = validation_lists(table, "val")
    logits, sims = score_faces(model, paths, labels, refs, "single", device, tcfg.val_batch_size, tcfg.workers,
                               tcfg.amp, similarity=True)
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
            "calibration": {**calibrate(logits, np.asarray(labels), tcfg.calibration_fpr, _fusion_input(sims)),
                            "precision": amp_precision(device, tcfg.amp),
                            "calibrated_on": str(Path(tcfg.pairs)) if tcfg.pairs else None}}  # its val split, as calibrate


def read_watch(path: str | Path, table: PairsTable) -> tuple[list[Path], list[int]]:
    """The face crops and labels of a `--watch` list, checked before training starts (every file an image that
    exists, both classes present, none of them a training face): a CSV path,label[,group] as `evaluate` reads, or
    another pairs.csv, whose 'test' split's real and fake faces are taken (`pairs --ffpp ... --test 0.15`)."""
    check_watch_path(path)
    with open(path, newline="", encoding="utf-8", errors="replace") as f:
        header = {c.strip() for c in f.readline().split(",")}
    if set(REQUIRED_COLUMNS) <= header:
        rows = read_pairs(path, need_splits=("test",)).split("test")
        reals = dict.fromkeys(r.real for r in rows)  # a real face paired with several fakes counts once
        items = check_classes([Item(p, 0, "real") for p in reals] + [Item(r.fake, 1, "fake") for r in rows if r.fake],
                              f"the test split of {path}")
    else:
        items = read_list(path, both_classes=False)  # a missing file is the first thing to say
    for it in items:
        if it.path.suffix.lower() not in IMAGE_EXTS:
            raise ForgeryDetError(f"--watch {path}: {it.path} is not an image; the watch list holds face crops "
                                  "(make them from videos with `forgerydet extract`)")
        if not it.path.is_file():
            raise ForgeryDetError(f"--watch {path}: {it.path}: no such file")
    check_classes(items, str(path))
    trained = {p.resolve() for r in table.split("train") for p in (r.real, r.fake) if p is not None}
    seen = [it.path for it in items if it.path.resolve() in trained]
    if seen:
        raise ForgeryDetError(f"--watch {path}: {seen[0]} is a training face of {table.path} ({len(seen)} in all); "
                              "a watch list measures faces the model never trains on")
    return [it.path for it in items], [it.label for it in items]


def watch_notice(path: str | Path, paths: list[Path], labels: list[int]) -> str | None:
    """A warning when the real or the fake faces of a watch list (three or more) all look cut from one source:
    their AUC then measures that one video, and `--select watch` picks epochs by it (an untrained model has been
    seen to reach 1.0 on such a list)."""
    said = []
    for label, name in ((0, "real"), (1, "fake")):
        faces = [p for p, y in zip(paths, labels) if y == label]
        sources = {crop_source(p) for p in faces}
        if len(faces) >= 3 and len(sources) == 1:
            said.append(f"its {len(faces)} {name} faces look cut from one source ({Path(next(iter(sources))).name})")
    if not said:
        return None
    return (f"--watch {path}: {' and '.join(said)}; its AUC then tells that one source from the rest more than real "
            f"from fake, and --select watch would pick epochs by it: add faces of other videos or photos")


def score_watch(model: Detector, paths: list[Path], labels: list[int], device: torch.device,
                tcfg: TrainConfig) -> dict[str, float]:
    """AUC and AP of the watch list, scored in 'single' mode against the freshly rebuilt bank (as `scan` scores)."""
    logits = score_faces(model, paths, labels, None, "single", device, tcfg.val_batch_size, tcfg.workers, tcfg.amp)
    m = binary_metrics(labels, sigmoid(logits))
    return {"watch_auc": m["auc"], "watch_ap": m["ap"], "watch_n": len(labels)}


def calibrate_checkpoint(
    checkpoint: str | Path,
    pairs: str | Path,
    *,
    fpr: float = DEFAULT_FPR,
    device: str = TrainConfig.device,
    batch_size: int = TrainConfig.val_batch_size,
    workers: int = TrainConfig.workers,
    out: str | Path | None = None,
    tta: str = "none",
    precision: str = "fp32",
    progress: Progress | None = None,
) -> dict[str, Any]:
    """`forgerydet calibrate`: score the validation split of pairs.csv in 'single' mode (the scan's mode)
    and store a temperature and a threshold (at most `fpr` of its real faces called FAKE), and the bank fusion
    (model/calibration.py) with its own threshold, in the checkpoint, atomically, keeping everything else.
    tta='flip' scores as `scan --tta flip` does, and the record's 'tta' makes that the checkpoint's scan default;
    precision likewise ('fp32', 'bf16', 'fp16': model/calibration.PRECISION_CHOICES). Returns the calibration record."""
    check_tta(tta)
    check_precision(precision)
    if not 0.0 < fpr < 1.0:
        raise ForgeryDetError(f"--fpr {fpr}: use a rate in (0, 1)")
    check_checkpoint_rewrite(checkpoint, out, pairs, batch_size)  # before the scoring, not after it
    d = setup_distributed(device)
    ck = load_checkpoint(checkpoint, "cpu")
    if ck.model.bank.filled == 0 and ck.model.uses_bank:
        raise ForgeryDetError(f"{checkpoint}: the bank is empty; run `forgerydet rebuild-bank` first")
    table = read_pairs(pairs, need_splits=("val",))
    if ck.model.uses_bank:  # before the scoring, and before its threshold replaces the checkpoint's own
        check_held_out(table, ck.meta, checkpoint)
    model = ck.model.to(d.device)
    paths, labels, refs, _ = validation_lists(table, "val")
    check_precision(precision, d.device.type)  # fp16 on a CPU: refused before the scoring
    logits, sims = score_faces(model, paths, labels, refs, "single", d.device, batch_size, workers,
                               similarity=True, tta=tta, precision=precision, progress=progress)
    cal = calibrate(logits, np.asarray(labels), fpr, _fusion_input(sims))
    cal["tta"] = tta
    cal["precision"] = precision
    cal["val_auc"] = binary_metrics(labels, sigmoid(logits, cal["temperature"]))["auc"]
    if cal.get("bank_fusion"):
        cal["bank_fusion"]["val_auc"] = binary_metrics(labels, fused_logits(logits, sims, cal["bank_fusion"]))["auc"]
    cal["calibrated_on"] = str(Path(pairs))
    cal["val_fakes_self_blended"] = all(r.method == "sbi" for r in table.split("val"))  # else real forgeries too
    target = Path(out or checkpoint)
    resave_checkpoint(ck, target, model, extra=calibration_extra(cal, model))
    return {**cal, "checkpoint": str(target)}


def check_held_out(table: PairsTable, meta: dict[str, Any], checkpoint: str | Path) -> None:
    """Refuse, before any scoring, a 'val' split whose real faces are the checkpoint's bank faces (its training reals,
    or those `rebuild-bank --pairs` filled it from): the bank recalls each as its own nearest real face, so the
    threshold and bank fusion fitted on them were far too low for faces it never saw (all 20 unseen real photos
    called FAKE, at a fusion threshold of 0.03 instead of 0.63), and were written over the checkpoint's own."""
    held = bank_faces(meta)
    inside = [p for p, _ in table.reals("val") if p.resolve() in held]
    if inside:
        raise ForgeryDetError(f"{table.path}: {len(inside)} of its {len(table.reals('val'))} 'val' real faces are faces "
                              f"{checkpoint}'s bank was filled from (e.g. {inside[0]}): the bank recalls each as its "
                              f"own nearest real face, so a threshold fitted on them would call unseen real faces FAKE; "
                              f"calibrate on a pairs file whose 'val' faces it never trained on")


def calibration_extra(cal: dict[str, Any], model: Detector) -> dict[str, Any]:
    """The checkpoint fields a calibration sets: threshold and temperature, the bank fusion (None clears a stale
    one) and the whole record, which names the bank it was fitted against (`MemoryBank.contents_digest`)."""
    cal = {**cal, "bank_contents": model.bank.contents_digest()}
    return {"threshold": cal["threshold"], "temperature": cal["temperature"], "bank_fusion": cal.get("bank_fusion"),
            "calibration": cal}
