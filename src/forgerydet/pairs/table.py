"""The pairs.csv format: its only writer (rows, splits, the summary of a `forgerydet pairs` run) and its
only reader (read_pairs: every problem named by line and column, leaks between splits refused).

pairs.csv columns (PAIRS_COLUMNS), one row per (real face, fake face) pair:
    real       path of the real face crop (PNG), relative to the folder holding pairs.csv
    fake       path of the fake face crop (PNG), same convention
    group      source video / identity id (FF++: the real video id A); the unit of splitting, so no
               group is in two splits and no source leaks between training and validation
    split      train, val or test
    method     manipulation name: the FF++ method folder (Deepfakes, Face2Face, ...), `mapping`
               (or the mapping CSV's method column), or `sbi` for self-blended pseudo-fakes
    landmarks  the 5 landmarks of the REAL face in crop pixels, 10 space-separated numbers
               (x y for left eye, right eye, nose, mouth left, mouth right); empty when unknown.
               Training uses them to make fresh self-blended fakes every epoch.

Paths are relative to the folder holding pairs.csv unless absolute. Splits are by group (assign_splits):
no group is in two splits."""

from __future__ import annotations

import csv
import hashlib
import os
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterable, Sequence

import numpy as np

from forgerydet.errors import ForgeryDetError
from forgerydet.io import check_fields, write_csv_atomic

PAIRS_COLUMNS = ["real", "fake", "group", "split", "method", "landmarks"]


PAIRS_NAME = "pairs.csv"


SPLITS = ("train", "val", "test")

VAL_SHARE = 0.15  # default share of groups (source videos / identities) held out for validation
TEST_SHARE = 0.0  # and for test


def format_landmarks(lm: np.ndarray | None) -> str:
    if lm is None or not np.all(np.isfinite(lm)):
        return ""
    return " ".join(f"{v:.2f}" for v in np.asarray(lm, np.float64).reshape(-1))


def check_split_shares(val: float, test: float) -> None:
    """The --val and --test shares: each in [0, 1), and some share left to train on (checked before any work)."""
    for name, frac in (("val", val), ("test", test)):
        if not 0.0 <= frac < 1.0:
            raise ForgeryDetError(f"--{name} {frac}: a split fraction must be in [0, 1)")
    if val + test >= 1.0:
        raise ForgeryDetError(f"--val {val} + --test {test} leave no share to train on: keep their sum below 1")


def assign_splits(groups: Iterable[str], val: float = VAL_SHARE, test: float = TEST_SHARE, seed: int = 0) -> dict[str, str]:
    """Split groups (not frames) into train/val/test; deterministic for a seed and a set of groups.

    Each requested split (fraction > 0) gets round(fraction x groups) groups, at least one; train keeps
    the rest and must keep at least one. Too few groups raises ForgeryDetError. The groups are ranked by a seeded
    hash of their names (val first, then test, then train), so a set that gains or loses a few groups (a video
    that failed, a --methods subset, a second download) keeps almost every group in its split: 1,000 groups less
    one (four cases, --val 0.15 --test 0.15) moved 0-2 groups; the seeded shuffle of the groups present used
    before 2026-12-06 moved 206-380, 42-92 of them from test into train.
    """
    check_split_shares(val, test)
    uniq = sorted(set(groups))
    n = len(uniq)
    n_val = max(1, round(val * n)) if val > 0 else 0
    n_test = max(1, round(test * n)) if test > 0 else 0
    if n - n_val - n_test < 1:
        need = 1 + (val > 0) + (test > 0)
        raise ForgeryDetError(
            f"only {n} group(s) (source videos / identities) but --val {val} --test {test} need at least {need} "
            f"(no group may be in two splits); add sources, or set --val 0 / --test 0"
        )
    order = sorted(uniq, key=lambda g: hashlib.sha256(f"{seed}\0{g}".encode("utf-8", "surrogateescape")).digest())
    return {g: "val" if rank < n_val else "test" if rank < n_val + n_test else "train" for rank, g in enumerate(order)}


def write_pairs(rows: Sequence[dict], path: str | Path) -> Path:
    """Write pairs.csv atomically (rows are dicts with PAIRS_COLUMNS keys)."""
    path = Path(path)
    write_csv_atomic(path, PAIRS_COLUMNS, rows)
    return path


@dataclass
class PairsSummary:
    pairs_csv: Path
    rows: int = 0
    groups: int = 0
    split_rows: dict[str, int] = field(default_factory=dict)
    split_groups: dict[str, int] = field(default_factory=dict)
    methods: dict[str, int] = field(default_factory=dict)
    errors: list[tuple[str, str]] = field(default_factory=list)  # (file, message): the batch went on
    warnings: list[str] = field(default_factory=list)
    images: dict[str, int] = field(default_factory=dict)  # still images: ok / padded (tight crop) / no_face / error
    videos: dict[str, int] = field(default_factory=dict)  # self-blended videos: ok / no_face / error, and their faces
    blended_online: int = 0  # self-blend train rows written without a fake file: training blends them every epoch


def finish_pairs(rows: list[dict], out_dir: Path, val: float, test: float, seed: int, summary: PairsSummary,
            splits: dict[str, str] | None = None) -> PairsSummary:
    if not rows:
        raise ForgeryDetError(
            "no pair could be made (no face found or every file failed" + (f": {summary.errors[0][1]}" if summary.errors else "") + ")"
        )
    if splits is None:
        try:
            splits = assign_splits((r["group"] for r in rows), val, test, seed)
        except ForgeryDetError as e:  # enough groups before detection, too few after: say which files fell out
            if not summary.errors:
                raise
            raise ForgeryDetError(f"{e}; {len(summary.errors)} file(s) failed, which may have taken groups with them "
                                  f"(first: {summary.errors[0][1]})") from None
    drawn = set(splits.values())  # official split files: a split none of whose videos is here was said already
    present = {r["group"] for r in rows}
    splits = {g: s for g, s in splits.items() if g in present}
    for r in rows:
        r["split"] = splits[r["group"]]
    summary.pairs_csv = write_pairs(rows, out_dir / PAIRS_NAME)
    summary.rows = len(rows)
    summary.groups = len(splits)
    for s in SPLITS:
        summary.split_rows[s] = sum(r["split"] == s for r in rows)
        summary.split_groups[s] = sum(v == s for v in splits.values())
    for r in rows:
        summary.methods[r["method"]] = summary.methods.get(r["method"], 0) + 1
    empty = [s for s in SPLITS if s in drawn and not summary.split_rows[s]]
    if empty:  # splits are drawn over the groups found before detection: all of one split may then have failed
        summary.warnings.append(f"no {' or '.join(repr(s) for s in empty)} pairs: every group drawn for "
                                f"{'it' if len(empty) == 1 else 'them'} gave no face (no face found, or its files "
                                f"failed); `forgerydet train` needs 'train' and 'val' pairs: add sources")
    summary.warnings += _big_group(rows, splits)
    return summary


def _big_group(rows: list[dict], splits: dict[str, str]) -> list[str]:
    """A warning when, among three groups or more, one holds over a quarter of the pairs and over 1.5x a group's mean
    share (DeepFakeDetection's actors, whom its fakes join into one group): a group is never split, so its split
    is mostly its faces."""
    counts = Counter(r["group"] for r in rows)
    group, n = counts.most_common(1)[0]
    if len(counts) < 3 or n <= max(len(rows) / 4, 1.5 * len(rows) / len(counts)):
        return []
    name = group if len(group) <= 40 else group[:37] + "..."
    return [f"group {name} holds {n} of the {len(rows)} pairs ({n / len(rows):.0%}), all in {splits[group]}: a group is "
            f"never split (its faces share people), so that split is mostly this group; another --seed draws the "
            f"splits again"]


def pair_row(real_rel: str, fake_rel: str, group: str, method: str, landmarks: np.ndarray | None) -> dict:
    return {"real": real_rel, "fake": fake_rel, "group": group, "split": "", "method": method,
            "landmarks": format_landmarks(landmarks)}  # fmt: skip


REQUIRED_COLUMNS = ("real", "fake", "group", "split")


OPTIONAL_COLUMNS = ("method", "landmarks")


@dataclass
class PairRow:
    real: Path
    fake: Path | None  # None: an 'sbi' train row whose fake is made afresh every epoch from the landmarks
    group: str
    split: str
    method: str = ""
    landmarks: np.ndarray | None = None  # (5,2) in real-crop pixels
    line: int = 0  # line number in pairs.csv, for messages


@dataclass
class PairsTable:
    path: Path
    rows: list[PairRow] = field(default_factory=list)

    def split(self, name: str) -> list[PairRow]:
        return [r for r in self.rows if r.split == name]

    def reals(self, split: str) -> list[tuple[Path, str]]:
        """Unique real faces of a split with their group, in first-seen order."""
        seen: dict[Path, str] = {}
        for r in self.split(split):
            seen.setdefault(r.real, r.group)
        return list(seen.items())

    def fakes(self, split: str) -> list[PairRow]:
        return self.split(split)


def _parse_landmarks(text: str, line: int, path: Path) -> np.ndarray | None:
    text = (text or "").strip()
    if not text:
        return None
    try:
        vals = np.array([float(v) for v in text.replace(",", " ").split()], dtype=np.float32)
    except ValueError:
        raise ForgeryDetError(f"{path}:{line}: column 'landmarks' must be 10 numbers, got {text[:40]!r}") from None
    if vals.size != 10:
        raise ForgeryDetError(f"{path}:{line}: column 'landmarks' must be 10 numbers (5 x,y points), got {vals.size}")
    lm = vals.reshape(5, 2)
    if not np.isfinite(lm).all():  # what `pairs` writes for a face without landmarks is an empty cell, never NaN
        raise ForgeryDetError(f"{path}:{line}: column 'landmarks' holds NaN or infinite values; leave it empty for a "
                              "face without landmarks")
    if float(np.ptp(lm, axis=0).max()) < 2.0:  # the self-blend mask needs a face (pairs/outline.face_frame)
        raise ForgeryDetError(f"{path}:{line}: column 'landmarks' puts the 5 points within 2 px of each other: not a face")
    if float(np.abs(lm).max()) > 1e5:  # crops are at most a few thousand px; such a mask would not fit in memory
        raise ForgeryDetError(f"{path}:{line}: column 'landmarks' holds a coordinate of {float(np.abs(lm).max()):.3g} "
                              f"px, far outside any face crop: landmarks are in the crop's own pixels")
    return lm


def check_pairs_path(path: str | Path) -> None:
    """A pairs CSV that is not there (or is the folder holding it) is one ForgeryDetError; cheap, so commands call
    it before loading torch."""
    path = Path(path)
    if not path.is_file():
        if path.is_dir():  # the folder `forgerydet pairs --out` wrote: the file is inside it
            hint = f" (did you mean {path / 'pairs.csv'}?)" if (path / "pairs.csv").is_file() else ""
            raise ForgeryDetError(f"{path} is a folder, not a pairs CSV file{hint}")
        raise ForgeryDetError(f"pairs file not found: {path} (make one with `forgerydet pairs`)")


def read_pairs(path: str | Path, *, need_splits: tuple[str, ...] = ("train",), check_files: bool = True) -> PairsTable:
    """Read and validate pairs.csv; every problem is a ForgeryDetError naming the line and column."""
    path = Path(path)
    check_pairs_path(path)
    base = path.parent
    table = PairsTable(path=path)
    relative: set[tuple[int, str]] = set()  # (line, column) of the paths written relative to the file's folder
    try:
        with open(path, newline="", encoding="utf-8-sig") as f:
            reader = csv.DictReader(f)
            cols = [c.strip() for c in (reader.fieldnames or [])]
            missing = [c for c in REQUIRED_COLUMNS if c not in cols]
            if missing:
                raise ForgeryDetError(
                    f"{path}: missing column(s) {', '.join(missing)}; needed: {', '.join(REQUIRED_COLUMNS)} "
                    f"(optional: {', '.join(OPTIONAL_COLUMNS)}); found: {', '.join(cols) or 'none'}"
                )
            for i, raw in enumerate(reader, start=2):
                check_fields(path, i, raw, cols)
                rec = {(k or "").strip(): (v or "").strip() for k, v in raw.items()}
                if rec.get("split") and rec["split"] not in SPLITS:  # first: a mistyped split, not an empty fake, is the mistake
                    raise ForgeryDetError(
                        f"{path}:{i}: column 'split' is {rec['split']!r}; use one of {', '.join(SPLITS)}"
                    )
                online = rec.get("method") == "sbi" and rec.get("split") == "train" and bool(rec.get("landmarks"))
                for c in REQUIRED_COLUMNS:
                    if not rec.get(c) and not (c == "fake" and online):  # online self-blends need no fake file
                        raise ForgeryDetError(f"{path}:{i}: column {c!r} is empty"
                                              + (" (only 'sbi' train rows with landmarks may leave it empty)" if c == "fake" else ""))
                real, fake = (Path(rec[c]) if Path(rec[c]).is_absolute() else base / rec[c] for c in ("real", "fake"))
                relative.update((i, c) for c in ("real", "fake") if not Path(rec[c]).is_absolute())
                fake = fake if rec["fake"] else None
                table.rows.append(
                    PairRow(real, fake, rec["group"], rec["split"], rec.get("method", ""),
                            _parse_landmarks(rec.get("landmarks", ""), i, path), i)
                )
    except UnicodeDecodeError:
        raise ForgeryDetError(f"{path} is not a UTF-8 CSV file") from None
    except csv.Error as e:
        raise ForgeryDetError(f"{path}: not a valid CSV ({e})") from None
    if not table.rows:
        raise ForgeryDetError(f"{path} has a header but no rows")
    for s in need_splits:
        if not table.split(s):
            raise ForgeryDetError(
                f"{path}: the {s!r} split is empty; re-run `forgerydet pairs` with a split that leaves faces for {s!r}"
            )
    if check_files:
        for r in table.rows:
            for c, p in (("real", r.real), ("fake", r.fake)):
                if p is not None and p.is_dir():
                    raise ForgeryDetError(f"{path}:{r.line}: column {c!r}: a folder, where a face image is wanted: {p}")
                if p is not None and p.exists() and not p.is_file():  # not "not found": it is there
                    raise ForgeryDetError(f"{path}:{r.line}: column {c!r}: a pipe or a device, not a face image file: {p}")
                if p is not None and not p.is_file():
                    moved = (f" (relative paths in a pairs file are taken from its folder, {base}: was it moved or "
                             f"copied away from its crops?)" if (r.line, c) in relative else "")
                    raise ForgeryDetError(f"{path}:{r.line}: column {c!r}: file not found: {p}{moved}")
    seen: dict[tuple[str, str], int] = {}
    for r in table.rows:  # listed twice, a pair would weigh twice (and a real would be blended twice an epoch)
        key = (os.path.normpath(r.real), os.path.normpath(r.fake) if r.fake else "")
        if key in seen:
            raise ForgeryDetError(f"{path}:{r.line}: the pair of line {seen[key]} again: list each pair once")
        seen[key] = r.line
    val_test = {r.group for r in table.split("val")} & {r.group for r in table.split("test")}
    if val_test:  # the test figures would be of people validation chose the epoch on
        raise ForgeryDetError(f"{path}: group(s) {', '.join(sorted(val_test)[:5])} appear in 'val' and 'test': "
                              f"splits must be by source/identity (re-run `forgerydet pairs`)")
    train_groups = {r.group for r in table.split("train")}
    trained = {os.path.normpath(p): r.line for r in table.split("train") for p in (r.real, r.fake) if p is not None}
    for s in ("val", "test"):
        shared = train_groups & {r.group for r in table.split(s)}
        if shared:
            raise ForgeryDetError(
                f"{path}: group(s) {', '.join(sorted(shared)[:5])} appear in 'train' and {s!r}: "
                f"splits must be by source/identity (re-run `forgerydet pairs`)"
            )
        # the same crop under another group label: its validation would score a training face
        both = [(r.line, trained[k]) for r in table.split(s) for p in (r.real, r.fake)
                if p is not None and (k := os.path.normpath(p)) in trained]
        if both:
            raise ForgeryDetError(f"{path}: {len(both)} face file(s) of {s!r} are 'train' files too (e.g. line "
                                  f"{both[0][0]}, the file of line {both[0][1]}), under another group: {s!r} would "
                                  f"score faces it trained on; list each file in one split")
    return table
