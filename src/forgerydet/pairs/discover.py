"""Finding which real and fake files belong together, before any face is detected: a mapping CSV
(real,fake[,group,method]), two folders matched by file name, a FaceForensics++ tree (fake A_B made on real A),
and the group (split unit) of a file: its name, or a pattern's match in it (the person of LFW-style names)."""

from __future__ import annotations

import os
import re
import dataclasses
import functools
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterable, Sequence

import cv2
import numpy as np

from forgerydet.errors import ForgeryDetError, parse_json
from forgerydet.faces.media import expand_sources, iter_frames, media_kind
from forgerydet.io import apple_double, read_csv_rows
from forgerydet.runtime import Progress

MAPPING_COLUMNS = ["real", "fake"]  # optional: group, method


def unique_group_names(paths: Sequence[Path]) -> dict[Path, str]:
    """File stems as group ids; stems shared by different files get their parent folders prefixed."""
    names: dict[Path, str] = {}
    absp = {p: Path(os.path.abspath(p)) for p in paths}
    depth = {p: 1 for p in paths}
    while True:
        for p in paths:
            parts = absp[p].with_suffix("").parts
            names[p] = "/".join(parts[-depth[p] :])
        clash: dict[str, list[Path]] = {}
        for p in paths:
            clash.setdefault(names[p], []).append(p)
        grow = [p for ps in clash.values() if len({absp[q] for q in ps}) > 1 for p in ps]
        if not grow:
            return names
        for p in grow:
            depth[p] += 1


@dataclass
class MappingEntry:
    real: Path
    fake: Path
    group: str | None = None
    method: str = "mapping"


def read_mapping_csv(path: str | Path) -> list[MappingEntry]:
    """A CSV with columns real,fake (and optionally group, method): paths relative to the CSV's folder."""
    path = Path(path)
    if not path.is_file():
        raise ForgeryDetError(f"{path}: a folder, not a mapping CSV file" if path.is_dir() else f"{path}: no such mapping file")
    rows = read_csv_rows(path, MAPPING_COLUMNS)
    if not rows:
        raise ForgeryDetError(f"{path}: the mapping has no rows")
    out = []
    for line, r in enumerate(rows, start=2):  # line 1 is the header
        for col in ("real", "fake"):
            if not (r.get(col) or "").strip():
                raise ForgeryDetError(f"{path}:{line}: column '{col}' is empty")
        e = MappingEntry(real=path.parent / r["real"], fake=path.parent / r["fake"], group=(r.get("group") or None),
                         method=(r.get("method") or "mapping"))
        if _same(e.real, e.fake):
            raise ForgeryDetError(f"{path}:{line}: real and fake are the same file ({r['real']}); a fake is compared "
                                  "with the real it was made from, never with itself")
        out.append(e)
    return out


def _same(a: Path, b: Path) -> bool:
    """Whether two paths name one file (a link or another spelling of the path counts)."""
    try:
        return os.path.samefile(a, b)
    except OSError:
        return os.path.abspath(a) == os.path.abspath(b)


def match_dirs(real_dir: str | Path, fake_dir: str | Path, notes: list[str] | None = None) -> tuple[list[MappingEntry], list[Path]]:
    """Pair each fake with the real of the same stem, else the real whose stem is the fake stem's longest
    prefix (preferring a prefix followed by '_', '-' or '.'); returns (entries, fakes left unmatched). FF++'s
    masks/videos are left out; `notes` says so, and names the compression levels of a folder holding several."""
    if _same(Path(real_dir), Path(fake_dir)):
        raise ForgeryDetError(f"--real-dir and --fake-dir are the same folder ({fake_dir}): each real would be paired "
                              "with itself as its fake")
    reals, fakes = (_no_masks(Path(d), what, notes) for d, what in ((real_dir, "reals"), (fake_dir, "fakes")))
    by_stem: dict[str, Path] = {}
    for r in reals:
        if r.stem in by_stem:
            raise ForgeryDetError(f"two real files share the name '{r.stem}': {by_stem[r.stem]} and {r}; rename one")
        by_stem[r.stem] = r
    entries, unmatched = [], []
    for f in fakes:
        stem = f.stem
        real = by_stem.get(stem)
        if real is None:
            prefixes = [s for s in by_stem if stem.startswith(s)]
            if prefixes:
                sep = [s for s in prefixes if stem[len(s)] in "_-. "]
                real = by_stem[max(sep or prefixes, key=len)]
        if real is None:
            unmatched.append(f)
        elif _same(real, f):
            raise ForgeryDetError(f"{f} is in both --real-dir and --fake-dir: a fake is compared with the real it was "
                                  "made from, never with itself")
        else:
            entries.append(MappingEntry(real, f))
    return entries, unmatched


FFPP_LEVELS = ("raw", "c0", "c23", "c40")  # FaceForensics++'s compression folders, each holding videos/


def split_ffpp_masks(folder: Path, files: Sequence[Path]) -> tuple[list[Path], int, list[str]]:
    """`files` found in `folder` less those under a `masks/videos` below it (FaceForensics++'s manipulation masks, no
    faces), how many those were, and the compression levels (FFPP_LEVELS) of the files kept."""
    dirs = [f.relative_to(folder).parts[:-1] for f in files]  # below: the folders right above a `videos`: c23, masks
    over = [{a for a, b in zip(d, d[1:]) if b == "videos"} for d in dirs]
    kept = [f for f, o in zip(files, over) if "masks" not in o]
    levels = sorted({d for o in over if "masks" not in o for d in o if d in FFPP_LEVELS}, key=FFPP_LEVELS.index)
    return kept, len(files) - len(kept), levels


def _no_masks(folder: Path, what: str, notes: list[str] | None) -> list[Path]:
    files = expand_sources([folder])
    kept, masks, levels = split_ffpp_masks(folder, files) if folder.is_dir() else (files, 0, [])
    if notes is not None and masks:
        notes.append(f"{folder}: left out {masks} files under masks/videos (FaceForensics++'s manipulation masks, not {what})")
    if notes is not None and len(levels) > 1:
        notes.append(f"{folder}: holds {what} at {', '.join(levels)}, each one a file of its own (give {folder}/{levels[0]}/videos)")
    return kept


@dataclass
class FFppTree:
    """What was found in a FaceForensics++ root for one compression level."""

    compression: str
    reals: dict[str, Path]  # video id A -> original_sequences/youtube/<comp>/videos/A.mp4
    fakes: list[MappingEntry]  # A_B of each method, group = identity_groups' (A+B), method = the method folder
    unmatched: list[Path]  # fake videos whose name does not start with a known real id
    # methods left out because they have no videos at this compression, with the levels they do have
    elsewhere: dict[str, list[str]] = field(default_factory=dict)
    actors: dict[str, Path] = field(default_factory=dict)  # original_sequences/actors/<comp>/videos (DeepFakeDetection's originals)

    @staticmethod
    def method_of(fake: Path) -> str:
        """The method folder of a fake video: manipulated_sequences/<METHOD>/<comp>/videos/<name>."""
        return fake.parents[2].name

    @property
    def actors_methods(self) -> set[str]:
        """The methods none of whose fakes is named after a YouTube id (DeepFakeDetection's, made on the actors')."""
        return {self.method_of(p) for p in self.unmatched} - {e.method for e in self.fakes}

    def notes(self) -> list[str]:
        """What a user should hear about this tree: methods downloaded only at other compression levels."""
        return [f"{m} has no {self.compression}/videos (it has {', '.join(c)}): not used; choose that level with "
                f"--compression to use it" for m, c in sorted(self.elsewhere.items())]


def find_ffpp(root: str | Path, compression: str | None = None, methods: Sequence[str] | None = None) -> FFppTree:
    """Parse original_sequences/youtube/<comp>/videos/A.mp4 and manipulated_sequences/<METHOD>/<comp>/videos/A_B.mp4."""
    root = Path(root)
    real_base = root / "original_sequences" / "youtube"
    if not root.is_dir():
        raise ForgeryDetError(f"{root}: no such folder (a FaceForensics++ root, holding original_sequences and "
                              f"manipulated_sequences)")
    if not real_base.is_dir():
        raise ForgeryDetError(
            f"{root}: not a FaceForensics++ folder (no original_sequences/youtube){_ffpp_root_hint(root)}; see "
            f"data/README.md for the layout"
        )
    comps = sorted(d.name for d in real_base.iterdir() if (d / "videos").is_dir())
    if not comps:
        raise ForgeryDetError(f"{real_base}: no <compression>/videos folder (expected e.g. c23/videos)")
    if compression is None:
        if len(comps) > 1:
            raise ForgeryDetError(f"{root} holds several compression levels ({', '.join(comps)}); choose one with --compression")
        compression = comps[0]
    elif compression not in comps:
        raise ForgeryDetError(f"compression '{compression}' not found under {real_base}; found {', '.join(comps)}")
    reals = {p.stem: p for p in sorted((real_base / compression / "videos").glob("*")) if p.is_file() and media_kind_ok(p)}
    if not reals:
        raise ForgeryDetError(f"{real_base / compression / 'videos'} holds no videos")
    man_base = root / "manipulated_sequences"
    found = sorted(d.name for d in man_base.iterdir() if (d / compression / "videos").is_dir()) if man_base.is_dir() else []
    elsewhere = {d.name: levels for d in sorted(man_base.iterdir()) if d.is_dir() and d.name not in found
                 and (levels := sorted(c.name for c in d.iterdir() if c.name != "masks" and (c / "videos").is_dir()))} if man_base.is_dir() else {}
    if methods is not None and not methods:  # `--methods ,` named none; it used to mean all of them
        raise ForgeryDetError("--methods names no method: give method folder names separated by commas, e.g. "
                              "--methods Deepfakes,Face2Face")
    if methods:
        missing = [m for m in methods if m not in found]
        if missing:
            raise ForgeryDetError(f"method(s) {', '.join(missing)} not found under {man_base} for {compression}; found {', '.join(found) or 'none'}")
        found = [m for m in found if m in methods]
        elsewhere = {}  # the methods asked for are all there
    if not found:
        raise ForgeryDetError(f"{man_base}: no <METHOD>/{compression}/videos folder with fakes")
    fakes, unmatched = [], []
    for method in found:
        for p in sorted((man_base / method / compression / "videos").glob("*")):
            if not (p.is_file() and media_kind_ok(p)):
                continue
            a = p.stem.split("_")[0]
            if a in reals:
                fakes.append(MappingEntry(reals[a], p, group=a, method=method))
            else:
                unmatched.append(p)
    ids = identity_groups(e.fake.stem for e in fakes)
    fakes = [dataclasses.replace(e, group=ids[e.group]) for e in fakes]
    actors_dir = root / "original_sequences" / "actors" / compression / "videos"
    actors = {p.stem: p for p in sorted(actors_dir.glob("*")) if p.is_file() and media_kind_ok(p)} if actors_dir.is_dir() else {}
    return FFppTree(compression, reals, fakes, unmatched, elsewhere, actors)


DFD_NAME = re.compile(r"(\d+)_(\d+)__(.+)__[^_]+")  # DeepFakeDetection's 01_02__exit_phone_room__YVGY8LOK


def actor_fakes(tree: FFppTree, progress: Progress | None = None) -> tuple[list[MappingEntry], list[Path]]:
    """DeepFakeDetection's fakes (tree.unmatched named A_B__SCENE__CODE) paired with the actors' video they were
    made on: A__SCENE or B__SCENE, whichever the fake's first frames match (its background is that video's; the
    name's order is not documented), or the one of them that is here. Group: the actors the fakes join
    (identity_groups, ids 'actorA'), method: the fake's folder. Returns (entries, fakes left unpaired). Reads the
    first two frames of each video concerned once; `progress(done, total)` after each fake."""
    entries, left, joined = [], [], []
    frames = functools.cache(_first_frames)  # each video read once, however many fakes name it
    for k, p in enumerate(tree.unmatched):
        if progress is not None:
            progress(k, len(tree.unmatched))
        m = DFD_NAME.fullmatch(p.stem)
        here = [(a, tree.actors[f"{a}__{m[3]}"]) for a in (m[1], m[2]) if f"{a}__{m[3]}" in tree.actors] if m else []
        if not here:
            left.append(p)
            continue
        a, real = min(here, key=lambda c: _distance(frames(p), frames(c[1]))) if len(here) == 2 else here[0]
        entries.append(MappingEntry(real, p, group=f"actor{a}", method=tree.method_of(p)))
        joined.append(f"actor{m[1]}_actor{m[2]}")
    ids = identity_groups(joined)
    return [dataclasses.replace(e, group=ids[e.group]) for e in entries], left


def _first_frames(path: Path, indices: Sequence[int] = (0, 5)) -> list[np.ndarray]:
    """A video's frames at `indices` as 64x64 grey images less their own mean (a fake's colour shift does not count;
    another recording does); none if it cannot be read."""
    try:
        small = [cv2.resize(f.image, (64, 64), interpolation=cv2.INTER_AREA) for f in iter_frames(path, indices=indices)]
    except ForgeryDetError:
        return []
    grey = [cv2.cvtColor(f, cv2.COLOR_RGB2GRAY).astype(np.float32) for f in small]
    return [g - g.mean() for g in grey]


def _distance(a: list[np.ndarray], b: list[np.ndarray]) -> float:
    """Mean absolute difference of two videos' first frames (_first_frames); infinity when either has none."""
    n = min(len(a), len(b))
    return float(np.mean([np.abs(x - y).mean() for x, y in zip(a[:n], b[:n])])) if n else float("inf")


def identity_groups(stems: Iterable[str]) -> dict[str, str]:
    """The split unit of each id of FaceForensics++ fakes named A_B (B's face on A's video): ids joined by a fake,
    directly or through others, are one group, named by its ids joined with '+' ('000+003'), so that no face is
    in two splits (group A alone put fake 000_003 in test while real 003 and fake 003_000 trained)."""
    parent: dict[str, str] = {}

    def root(x: str) -> str:
        while parent.setdefault(x, x) != x:
            parent[x] = parent[parent[x]]  # halve the path
            x = parent[x]
        return x
    for stem in stems:
        a, _, rest = stem.partition("_")
        b = rest.split("_")[0]
        ra, rb = root(a), root(b or a)
        parent[max(ra, rb)] = min(ra, rb)
    members: dict[str, list[str]] = {}
    for x in parent:
        members.setdefault(root(x), []).append(x)
    return {x: "+".join(sorted(m)) for m in members.values() for x in m}


def _ffpp_root_hint(root: Path) -> str:
    """Where the FaceForensics++ root is, when `root` is one level off: a folder inside it, or the folder holding it."""
    for up in (root, *root.parents[:3]):
        if (up / "original_sequences" / "youtube").is_dir() and up != root:
            return f" (give the folder that holds it: {up})"
    try:
        inside = sorted(d for d in root.iterdir() if (d / "original_sequences" / "youtube").is_dir())
    except OSError:
        inside = []
    return f" ({inside[0]} looks like one)" if inside else ""


def media_kind_ok(p: Path) -> bool:  # a Mac's `._000.mp4` beside a copied video is metadata, as everywhere
    try:
        return media_kind(p) == "video" and not apple_double(p)
    except ForgeryDetError:
        return False


def group_of(path: Path, default: str, pattern: "re.Pattern[str] | None") -> str:
    """The group (split unit) of a source: the pattern's first capture group (or whole match) searched in
    the file stem, e.g. r'^(.+)_\\d{4}$' for LFW's Person_Name_0001; else `default` (the file)."""
    if pattern is None:
        return default
    m = pattern.search(Path(path).stem)
    if not m:
        return default
    return m.group(1) if m.groups() else m.group(0)


def read_ffpp_split(path: Path) -> list[tuple[str, str]]:
    """The [target, source] video-id pairs of one FaceForensics++ split file (its dataset/splits/*.json)."""
    try:
        data = parse_json(path.read_text(encoding="utf-8"))
        if not isinstance(data, list) or any(not isinstance(p, list) or len(p) != 2 for p in data):
            raise ValueError("not a list of pairs")
        # ids as the repository writes them ("000"); written as numbers (0), the three digits of the file names
        pairs = [tuple(f"{v:03d}" if isinstance(v, int) and not isinstance(v, bool) else str(v) for v in pair)
                 for pair in data]
    except FileNotFoundError:
        raise ForgeryDetError(f"{path}: no such split file") from None
    except IsADirectoryError:
        raise ForgeryDetError(f"{path} is a folder: give one split file in it, e.g. {Path(path) / 'test.json'}") from None
    except (ValueError, TypeError, UnicodeDecodeError):
        raise ForgeryDetError(f"{path}: not a FaceForensics++ split file (a JSON list of [id, id] pairs, like "
                              "splits/test.json of the FaceForensics repository)") from None
    if not pairs:
        raise ForgeryDetError(f"{path}: the split lists no pairs")
    return pairs


FFPP_SPLITS = ("train", "val", "test")  # dataset/splits/train.json, val.json, test.json of the FaceForensics repository


def read_ffpp_splits(folder: str | Path) -> dict[str, str]:
    """Video id -> 'train' / 'val' / 'test' from a folder of FaceForensics++'s official split files (the ones
    present; both ids of a listed pair go to its split, as fakes A_B and B_A are made from them)."""
    folder = Path(folder)
    if folder.is_file():
        raise ForgeryDetError(f"--splits {folder} is a file: give the folder that holds "
                              f"{', '.join(s + '.json' for s in FFPP_SPLITS)} ({folder.parent})")
    if not folder.is_dir():
        raise ForgeryDetError(f"--splits {folder}: no such folder (the FaceForensics repository's dataset/splits, "
                              f"holding {', '.join(s + '.json' for s in FFPP_SPLITS)})")
    found = [s for s in FFPP_SPLITS if (folder / f"{s}.json").is_file()]
    if not found:
        raise ForgeryDetError(f"--splits {folder}: none of {', '.join(s + '.json' for s in FFPP_SPLITS)} is there")
    of: dict[str, str] = {}
    for split in found:
        for pair in read_ffpp_split(folder / f"{split}.json"):
            for vid in pair:
                if of.setdefault(vid, split) != split:
                    raise ForgeryDetError(f"--splits {folder}: video {vid} is in both {of[vid]}.json and {split}.json")
    return of
