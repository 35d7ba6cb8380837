"""Training data: reading and validating pairs.csv, and the datasets that feed training, validation and
the bank rebuild.

pairs.csv columns (see data/README.md): real, fake, group, split, method, landmarks.
Paths are relative to the folder of pairs.csv unless absolute. Rows of method 'sbi' whose real face has
landmarks get a NEW self-blended fake every epoch (the fake on disk is only the first draw), so the model
never memorises a fixed pool of pseudo-fakes.
"""

from __future__ import annotations

import os
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch.utils.data import Dataset

from forgerydet.errors import ForgeryDetError
from forgerydet.io import read_image
from forgerydet.model.inputs import load_image, resize_face, to_tensor
from forgerydet.pairs.table import PairsTable
from forgerydet.training.augment import AugmentConfig, augment_one, augment_pair
from forgerydet.training.config import PAIR_REFERENCES


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

    pair_reference chooses how references are drawn (PAIR_REFERENCES). 'source' is the above: a fake's
    reference lines up with it pixel for pixel outside the blend and a real's does not, so the alignment alone
    tells the classes apart (bench/pair_cue.py). 'other' gives both classes another real of the group (a fake:
    another frame or photo of the person it was made from), or the face's own source augmented again where the
    group has one real; 'reaugmented' gives both their own source image augmented a second time (a fake: the
    real it was blended from; a real: itself). Either way both classes' references are misaligned alike.
    """

    def __init__(self, table: PairsTable, size: int, seed: int = 0, augment: bool = True, sbi_online: bool = True,
                 sbi_local: float = 0.0, augment_cfg: AugmentConfig | None = None, swap_blends: float = 0.0,
                 pair_reference: str = "source"):
        from forgerydet.pairs.sbi import SBIConfig

        self.sbi_config = SBIConfig.with_local(sbi_local)  # how online self-blends are made (TrainConfig.sbi_local)
        self.path = table.path
        self.rows = table.fakes("train")
        self.reals = table.reals("train")
        self.by_group: dict[str, list[Path]] = {}
        for p, g in self.reals:
            self.by_group.setdefault(g, []).append(p)
        self.real_id = {p: i for i, (p, _) in enumerate(self.reals)}
        self.size, self.seed, self.augment, self.sbi_online = size, seed, augment, sbi_online
        self.augment_cfg = augment_cfg or AugmentConfig()
        if not sbi_online and any(r.fake is None for r in self.rows):
            raise ForgeryDetError(f"{table.path}: train rows without a fake file need self-blending online (drop --no-sbi-online, or make the pairs with `pairs --self-blend --all-fakes`)")
        if pair_reference not in PAIR_REFERENCES:
            raise ForgeryDetError(f"--pair-reference {pair_reference!r}: use one of {', '.join(PAIR_REFERENCES)}")
        self.pair_reference = pair_reference
        self.swap_blends = swap_blends  # share of online fakes blended from another person (TrainConfig.swap_blends)
        blended = [k for k, r in enumerate(self.rows) if r.method == "sbi" and r.landmarks is not None]  # online
        # the rows whose real face can be a donor (those that are self-blended online), and their poses and groups
        self._donors = blended if swap_blends > 0 else []
        if swap_blends > 0 and len({self.rows[k].group for k in self._donors}) < 2:  # else every fake a self-blend
            raise ForgeryDetError(
                f"{table.path}: --swap-blends blends another person's face into each pseudo-fake, but its train "
                f"rows self-blended online (method sbi, with landmarks) come from "
                f"{'one group' if self._donors else 'no group'}, so none could be made: train on faces of several "
                f"people (groups), or drop --swap-blends")
        if sbi_local > 0 and not blended:
            raise ForgeryDetError(f"{table.path}: --sbi-local shapes the self-blends made online, but no train row is "
                                  f"one (method sbi, with landmarks): drop --sbi-local")
        if self._donors:
            from forgerydet.pairs.swapblend import pose_key

            self._donor_keys = np.stack([pose_key(self.rows[k].landmarks) for k in self._donors])
            self._donor_groups = np.array([self.rows[k].group for k in self._donors])
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

    def _donor(self, row: Any, rng: np.random.Generator) -> Any:
        """The row whose real face, of another group and nearest in pose among random candidates, is blended
        into `row`'s (None when no other group has landmarks: a self-blend is made instead)."""
        if not self._donors:
            return None
        from forgerydet.pairs.swapblend import pick_donor, pose_key

        k = pick_donor(self._donor_keys, self._donor_groups, pose_key(row.landmarks), row.group, rng)
        return None if k is None else self.rows[self._donors[k]]

    def _working_face(self, row: Any) -> tuple[np.ndarray, np.ndarray | None]:
        """A row's real face at its working size (its own resolution, at most the model's; see __getitem__) and its
        landmarks, stored in the crop's own pixels, scaled to that size (None when it has none)."""
        raw = read_image(row.real)
        h, w = raw.shape[:2]
        if row.landmarks is not None and not ((row.landmarks > -1) & (row.landmarks < (w + 1, h + 1))).all(axis=1).any():
            raise ForgeryDetError(f"{self.path}:{row.line}: column 'landmarks' puts every point outside the {w}x{h} "
                                  f"face {row.real}: not its landmarks (in the crop's own pixels)")
        work = min(self.size, h, w)  # resized to work x work: a crop that is not square scales x and y apart
        lm = None if row.landmarks is None else row.landmarks * (work / np.array([w, h], np.float32))
        return resize_face(raw, work), lm

    def __getitem__(self, i: int) -> dict[str, Any]:
        label, j = self._order[i]
        rng = sample_rng(self.seed, self.epoch, i)
        # Self-blending and augmentation run at the crop's own resolution (at most the model's), and the
        # result is resized to the model's input at the end: at scan time, too, a face is compressed at its
        # native size in the footage and only then resized. (It is also several times cheaper for small crops.)
        if label == 1:
            row = self.rows[j]
            real, lm = self._working_face(row)
            if self.sbi_online and row.method == "sbi" and lm is not None:
                from forgerydet.pairs.sbi import self_blend

                donor = self._donor(row, rng) if self.swap_blends > 0 and rng.random() < self.swap_blends else None
                if donor is None:
                    fake, _ = self_blend(real, lm, rng, self.sbi_config)
                else:
                    from forgerydet.pairs.swapblend import swap_blend

                    fake, _ = swap_blend(real, lm, *self._working_face(donor), rng, self.sbi_config)
            else:
                fake = load_image(row.fake, real.shape[0])
            x, ref, real_path = fake, real, row.real
            if self.pair_reference == "other" and (other := self._other_real(row.real, row.group, rng)) != row.real:
                ref_raw = read_image(other)
                work = min(x.shape[0], *ref_raw.shape[:2])
                x, ref, real_path = resize_face(x, work), resize_face(ref_raw, work), other
            again = self.pair_reference != "source" and real_path == row.real
        else:
            real_path, group = self.reals[j]
            x_raw = read_image(real_path)
            ref_path = real_path if self.pair_reference == "reaugmented" else self._other_real(real_path, group, rng)
            ref_raw = x_raw if ref_path == real_path else read_image(ref_path)
            work = min(self.size, *x_raw.shape[:2], *ref_raw.shape[:2])
            x, ref = resize_face(x_raw, work), resize_face(ref_raw, work)
            again = ref_path == real_path  # same image as reference (with --no-augment too): the difference is never zero
            real_path = ref_path
        if self.augment:
            ref, x = augment_pair(ref, x, rng, self.augment_cfg)
        if again:
            ref = augment_one(ref, rng, self.augment_cfg)
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


def _unreadable(path: Path) -> str | None:
    try:
        read_image(path)
    except ForgeryDetError as e:
        return str(e)
    return None


def check_decodable(table: PairsTable) -> None:
    """Decode every face image a run reads (train and val, real and fake) before its first step: a corrupt file (a
    copy cut short, a disk error) otherwise ended the run at a random step, or at validation an epoch in, and in
    its first epoch with nothing saved to resume. Threads (OpenCV decodes without the GIL): 2.0 s for 6,000 LFW photos
    (250 px JPEGs) on the 2-core development machine, so ~8 s for 24,000 faces."""
    paths = list(dict.fromkeys(p for r in table.rows if r.split in ("train", "val") for p in (r.real, r.fake) if p))
    with ThreadPoolExecutor(max(1, min(4, os.cpu_count() or 1))) as pool:
        bad = [e for e in pool.map(_unreadable, paths, chunksize=64) if e]
    if bad:
        raise ForgeryDetError(f"{table.path}: {len(bad)} of its {len(paths)} face images cannot be read, so training "
                              f"would stop at the first it met; the first: {bad[0]}. Replace them, or remove their "
                              f"rows (nothing was trained)")
