"""Training data: reading and validating pairs.csv, and the datasets that feed training, validation and
the bank rebuild.

pairs.csv columns (see data/README.md): real, fake, group, split, method, landmarks.
Paths are relative to the folder of pairs.csv unless absolute. Rows of method 'sbi' whose real face has
landmarks get a NEW self-blended fake every epoch (the fake on disk is only the first draw), so the model
never memorises a fixed pool of pseudo-fakes.
"""

from __future__ import annotations

import csv
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import cv2
import numpy as np
import torch
from torch.utils.data import Dataset

from .errors import ForgeryDetError
from .video import read_image

REQUIRED_COLUMNS = ("real", "fake", "group", "split")
OPTIONAL_COLUMNS = ("method", "landmarks")
SPLITS = ("train", "val", "test")


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
    return vals.reshape(5, 2)


def read_pairs(path: str | Path, *, need_splits: tuple[str, ...] = ("train",), check_files: bool = True) -> PairsTable:
    """Read and validate pairs.csv; every problem is a ForgeryDetError naming the line and column."""
    path = Path(path)
    if not path.is_file():
        raise ForgeryDetError(f"pairs file not found: {path} (make one with `forgerydet pairs`)")
    base = path.parent
    table = PairsTable(path=path)
    try:
        with open(path, newline="", encoding="utf-8") as f:
            reader = csv.DictReader(f)
            cols = [c.strip() for c in (reader.fieldnames or [])]
            missing = [c for c in REQUIRED_COLUMNS if c not in cols]
            if missing:
                raise ForgeryDetError(
                    f"{path}: missing column(s) {', '.join(missing)}; needed: {', '.join(REQUIRED_COLUMNS)} "
                    f"(optional: {', '.join(OPTIONAL_COLUMNS)}); found: {', '.join(cols) or 'none'}"
                )
            for i, raw in enumerate(reader, start=2):
                rec = {(k or "").strip(): (v or "").strip() for k, v in raw.items()}
                online = rec.get("method") == "sbi" and rec.get("split") == "train" and bool(rec.get("landmarks"))
                for c in REQUIRED_COLUMNS:
                    if not rec.get(c) and not (c == "fake" and online):  # online self-blends need no fake file
                        raise ForgeryDetError(f"{path}:{i}: column {c!r} is empty"
                                              + (" (only 'sbi' train rows with landmarks may leave it empty)" if c == "fake" else ""))
                if rec["split"] not in SPLITS:
                    raise ForgeryDetError(
                        f"{path}:{i}: column 'split' is {rec['split']!r}; use one of {', '.join(SPLITS)}"
                    )
                real, fake = (Path(rec[c]) if Path(rec[c]).is_absolute() else base / rec[c] for c in ("real", "fake"))
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
                if p is not None and not p.is_file():
                    raise ForgeryDetError(f"{path}:{r.line}: column {c!r}: file not found: {p}")
    train_groups = {r.group for r in table.split("train")}
    for s in ("val", "test"):
        shared = train_groups & {r.group for r in table.split(s)}
        if shared:
            raise ForgeryDetError(
                f"{path}: group(s) {', '.join(sorted(shared)[:5])} appear in 'train' and {s!r}: "
                f"splits must be by source/identity (re-run `forgerydet pairs`)"
            )
    return table


def resize_face(img: np.ndarray, size: int) -> np.ndarray:
    """A face crop (H,W,3) to (size,size,3), the same way for training, validation and scanning."""
    if img.shape[0] != size or img.shape[1] != size:
        interp = cv2.INTER_AREA if img.shape[0] > size else cv2.INTER_LINEAR
        img = cv2.resize(img, (size, size), interpolation=interp)
    return img


def read_rgb(path: Path) -> np.ndarray:
    """The image as stored, RGB uint8 (H,W,3) (video.read_image: any file name, clear errors)."""
    return read_image(path)


def load_image(path: Path, size: int) -> np.ndarray:
    """RGB uint8 (size,size,3)."""
    return resize_face(read_rgb(path), size)


def to_tensor(img: np.ndarray) -> torch.Tensor:
    return torch.from_numpy(np.ascontiguousarray(img)).permute(2, 0, 1).float().div_(255.0)  # (3,S,S)


def sample_rng(seed: int, epoch: int, index: int) -> np.random.Generator:
    """Per-sample randomness that depends only on (seed, epoch, index): identical across workers, ranks
    and resumed runs."""
    return np.random.default_rng([seed, epoch, index])


class TrainPairs(Dataset):
    """One epoch of balanced training samples: every fake row once, and as many real faces (cycled in a
    seeded order), interleaved. Each sample carries a reference face for 'pair' mode:
    a fake's reference is the real face it was made from; a real face's reference is ANOTHER real face of
    its group (another frame) or, when the group has only one, a differently augmented copy of itself —
    never the identical image, so a zero difference can never mean 'real'.
    """

    def __init__(self, table: PairsTable, size: int, seed: int = 0, augment: bool = True, sbi_online: bool = True):
        self.rows = table.fakes("train")
        self.reals = table.reals("train")
        self.by_group: dict[str, list[Path]] = {}
        for p, g in self.reals:
            self.by_group.setdefault(g, []).append(p)
        self.real_id = {p: i for i, (p, _) in enumerate(self.reals)}
        self.size, self.seed, self.augment, self.sbi_online = size, seed, augment, sbi_online
        if not sbi_online and any(r.fake is None for r in self.rows):
            raise ForgeryDetError(f"{table.path}: train rows without a fake file need self-blending online (drop --no-sbi-online)")
        self.epoch = 0
        self._order: list[tuple[int, int]] = []
        self.set_epoch(0)

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch
        rng = np.random.default_rng([self.seed, epoch, 7])
        n = len(self.rows)
        reals = np.concatenate([rng.permutation(len(self.reals)) for _ in range(n // max(1, len(self.reals)) + 1)])[:n]
        fakes = rng.permutation(n)
        order: list[tuple[int, int]] = []
        for f, r in zip(fakes, reals):
            order += [(1, int(f)), (0, int(r))]
        self._order = order

    def __len__(self) -> int:
        return len(self._order)

    def _other_real(self, path: Path, group: str, rng: np.random.Generator) -> Path:
        others = [p for p in self.by_group[group] if p != path]
        return others[int(rng.integers(len(others)))] if others else path

    def __getitem__(self, i: int) -> dict[str, Any]:
        label, j = self._order[i]
        rng = sample_rng(self.seed, self.epoch, i)
        # Self-blending and augmentation run at the crop's own resolution (at most the model's), and the
        # result is resized to the model's input at the end: at scan time, too, a face is compressed at its
        # native size in the footage and only then resized. (It is also several times cheaper for small crops.)
        if label == 1:
            row = self.rows[j]
            raw = read_rgb(row.real)
            work = min(self.size, *raw.shape[:2])
            real = resize_face(raw, work)
            if self.sbi_online and row.method == "sbi" and row.landmarks is not None:
                from .sbi import self_blend

                lm = row.landmarks * (work / raw.shape[1])  # stored in the crop's own pixels
                fake, _ = self_blend(real, lm, rng)
            else:
                fake = load_image(row.fake, work)
            x, ref, real_path = fake, real, row.real
        else:
            real_path, group = self.reals[j]
            x_raw = read_rgb(real_path)
            ref_path = self._other_real(real_path, group, rng)
            ref_raw = x_raw if ref_path == real_path else read_rgb(ref_path)
            work = min(self.size, *x_raw.shape[:2], *ref_raw.shape[:2])
            x, ref = resize_face(x_raw, work), resize_face(ref_raw, work)
            real_path = ref_path
        if self.augment:
            from .augment import augment_one, augment_pair

            ref, x = augment_pair(ref, x, rng)
            if label == 0 and real_path == self.reals[j][0]:
                ref = augment_one(ref, rng)  # same image as reference: make sure the difference is not zero
        x, ref = resize_face(x, self.size), resize_face(ref, self.size)
        return {
            "x": to_tensor(x),
            "ref": to_tensor(ref),
            "label": torch.tensor(float(label)),
            "ref_id": torch.tensor(self.real_id[real_path], dtype=torch.long),
        }


class FaceList(Dataset):
    """Plain images with labels, no augmentation (validation, bank rebuild, evaluation of crops)."""

    def __init__(self, paths: list[Path], labels: list[int], size: int, refs: list[Path] | None = None):
        self.paths, self.labels, self.size, self.refs = paths, labels, size, refs

    def __len__(self) -> int:
        return len(self.paths)

    def __getitem__(self, i: int) -> dict[str, Any]:
        item = {
            "x": to_tensor(load_image(self.paths[i], self.size)),
            "label": torch.tensor(float(self.labels[i])),
            "index": torch.tensor(i, dtype=torch.long),
        }
        if self.refs is not None:
            item["ref"] = to_tensor(load_image(self.refs[i], self.size))
        return item


def validation_lists(table: PairsTable, split: str = "val") -> tuple[list[Path], list[int], list[Path], list[str]]:
    """Unique faces of a split: (paths, labels, pair-mode references, groups). A fake's reference is its
    real face; a real face's reference is another real of its group (itself when it is alone: that real
    then gets a zero difference in the 'pair' figure only, which is why 'single' is the headline)."""
    paths: list[Path] = []
    labels: list[int] = []
    refs: list[Path] = []
    groups: list[str] = []
    reals = table.reals(split)
    by_group: dict[str, list[Path]] = {}
    for p, g in reals:
        by_group.setdefault(g, []).append(p)
    for p, g in reals:
        members = by_group[g]
        paths.append(p)
        labels.append(0)
        refs.append(members[(members.index(p) + 1) % len(members)])
        groups.append(g)
    seen: set[Path] = set()
    for r in table.fakes(split):
        if r.fake in seen:
            continue
        seen.add(r.fake)
        paths.append(r.fake)
        labels.append(1)
        refs.append(r.real)
        groups.append(r.group)
    return paths, labels, refs, groups
