"""Labelled lists: the CSV `evaluate LIST.csv` and `train --watch LIST.csv` read (columns path, label, optional
group; label 0/1 or real/fake, as well as pristine/original/manipulated; relative paths resolved against the
list's folder), and the check that a list holds both classes."""

from __future__ import annotations

import csv
import os
from dataclasses import dataclass
from pathlib import Path

from forgerydet.errors import ForgeryDetError
from forgerydet.io import check_fields

LABELS = {"0": 0, "1": 1, "real": 0, "fake": 1, "pristine": 0, "original": 0, "manipulated": 1}


@dataclass
class Item:
    """One labelled file: label 0 real, 1 fake; group: the dataset or method it is measured in; pool: where a
    group of one class finds the other class (metrics.grouped_metrics), '' for all of the set (FaceForensics++:
    DeepFakeDetection's fakes and the actors' originals are one pool, the other methods and the YouTube originals
    another)."""

    path: Path
    label: int
    group: str
    pool: str = ""


def read_list(path: str | Path, *, both_classes: bool = True) -> list[Item]:
    """The rows of a path,label[,group] CSV; every problem a ForgeryDetError naming the line. both_classes=False
    leaves `check_classes` to the caller (after it has checked the files, a more useful error first)."""
    path = Path(path)
    if not path.is_file():
        raise ForgeryDetError(f"{path} is a folder, not a list (a CSV with columns path,label[,group])" if path.is_dir()
                              else f"list not found: {path} (a CSV with columns path,label[,group])")
    try:
        items = _read_rows(path)
    except UnicodeDecodeError:
        raise ForgeryDetError(f"{path}: not a UTF-8 text CSV file") from None  # as io.read_csv_rows says it
    if not items:
        raise ForgeryDetError(f"{path} has a header but no rows")
    return check_classes(items, str(path)) if both_classes else items


def _read_rows(path: Path) -> list[Item]:
    items: list[Item] = []
    seen: dict[str, int] = {}
    with open(path, newline="", encoding="utf-8-sig") as f:
        reader = csv.DictReader(f)
        cols = [c.strip() for c in reader.fieldnames or []]
        missing = [c for c in ("path", "label") if c not in cols]
        if missing and {"real", "fake"} <= set(cols):  # a pairs.csv: what train reads, not a list of labelled files
            raise ForgeryDetError(f"{path} is a pairs.csv (real,fake,...), which train reads; a list here has columns "
                                  f"path,label[,group] (one row per file), or give the files as --real DIR --fake DIR")
        if missing:
            raise ForgeryDetError(f"{path}: missing column(s) {', '.join(missing)}; needed: path, label (optional: group); found: {', '.join(cols) or 'none'}")
        for i, raw in enumerate(reader, start=2):
            check_fields(path, i, raw, cols)
            rec = {(k or "").strip(): (v or "").strip() for k, v in raw.items()}
            lab = rec["label"].lower()
            if lab not in LABELS:
                raise ForgeryDetError(f"{path}:{i}: column 'label' is {rec['label']!r}; use 0/1 or real/fake")
            if not rec["path"]:
                raise ForgeryDetError(f"{path}:{i}: column 'path' is empty")
            p = Path(rec["path"])
            p = p if p.is_absolute() else path.parent / p
            key = os.path.realpath(p)  # a link to a listed file is that file
            if key in seen:  # scored twice it would count twice, and with both labels it would score against itself
                raise ForgeryDetError(f"{path}:{i}: {rec['path']} is already listed on line {seen[key]}"
                                      f"{'' if os.path.normpath(p) == key or not os.path.islink(p) else ' (through a link)'}"
                                      f": list each file once, with one label")
            seen[key] = i
            items.append(Item(p, LABELS[lab], rec.get("group") or "all"))
    return items


def check_classes(items: list[Item], what: str) -> list[Item]:
    """The items, if they hold both real and fake ones (else AUC, AP and EER are undefined)."""
    present = {it.label for it in items}
    if present != {0, 1}:
        only = "real" if present == {0} else "fake" if present == {1} else "no"
        raise ForgeryDetError(f"{what} holds only {only} samples: AUC, AP and EER need both real and fake ones; add the other class")
    return items
