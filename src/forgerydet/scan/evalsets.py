"""Labelled lists for `evaluate`, read from the layouts datasets ship in, so that no list has to be written by hand:

- a FaceForensics++ tree: the originals are real (group 'original'), each manipulation method's videos are fake
  (group = the method), optionally only the videos of an official split file (FF++'s `splits/test.json`: pairs
  of video ids [A, B]; it keeps A, B, A_B and B_A);
- a DFDC folder: `metadata.json` (training parts: {"x.mp4": {"label": "REAL" | "FAKE", ...}}) or `labels.csv`
  (the public test set: filename,label with 1 = fake); group = the folder's name;
- a Celeb-DF (v1 or v2) root: the videos of its official test list `List_of_testing_videos.txt` (lines
  "1 YouTube-real/00170.mp4": 1 = real, 0 = fake, the other way round from DFDC), or, with `everything`, every
  video of `Celeb-real` and `YouTube-real` (real) and `Celeb-synthesis` (fake); group = that folder;
- folders (or files, globs) of real and of fake files: group = the last parts of the path given, as many as it
  takes to tell the paths apart (at least two).

Each group can be cut to a seeded random sample of each class (`per_group`), for a quick figure on a laptop. A group that
holds one class is measured against all of the other class (`metrics.grouped_metrics`)."""

from __future__ import annotations

import random
from pathlib import Path
from typing import Sequence

from forgerydet.errors import ForgeryDetError, option_error, parse_json, path_text
from forgerydet.faces.media import expand_sources, file_key
from forgerydet.io import read_csv_rows
from forgerydet.pairs.discover import find_ffpp, read_ffpp_split, split_ffpp_masks
from forgerydet.pairs.labels import Item

REAL_GROUP = "original"  # the FF++ originals


ACTORS_GROUP = "actors"  # original_sequences/actors: the originals of DeepFakeDetection's fakes


def ffpp_items(root: str | Path, compression: str | None = None, methods: Sequence[str] | None = None,
               split: str | Path | None = None, notes: list[str] | None = None) -> list[Item]:
    """Originals (real, group 'original') and each method's fakes (group = method) of a FaceForensics++ tree.
    DeepFakeDetection's fakes (named after no youtube original) are fakes too, and where they are scored the
    actors' originals they were made from are reals (group 'actors'). With a split file every video it names is
    listed, so one not on disk is reported as skipped (as a DFDC or Celeb-DF list's are), not silently left
    out. `notes` collects what the user should hear (methods present only at another compression level)."""
    tree = find_ffpp(root, compression, methods)
    if notes is not None:
        notes += tree.notes()
    reals = dict(tree.reals)
    # a fake named after no original (DeepFakeDetection's, made on original_sequences/actors) is still a fake
    fakes = sorted([(e.fake, e.method) for e in tree.fakes] + [(p, tree.method_of(p)) for p in tree.unmatched],
                   key=lambda f: (f[1], f[0].name))
    actors = tree.actors if tree.actors_methods else {}  # not for a stray fake of another method (its original missing)
    if split is not None:
        dirs = {m: p.parent for p, m in fakes}  # every method found, also one without a video of the split here
        named_after_actors = tree.actors_methods  # DeepFakeDetection's fakes are named after actors, never after a split's ids
        pairs = read_ffpp_split(Path(split))
        ids = {i for pair in pairs for i in pair}
        names = {f"{a}_{b}" for a, b in pairs} | {f"{b}_{a}" for a, b in pairs}
        reals = {k: v for k, v in reals.items() if k in ids}
        fakes = [(p, m) for p, m in fakes if p.stem in names]
        actors = {}
        if reals and not fakes and named_after_actors and not tree.fakes:  # --methods DeepFakeDetection alone
            raise ForgeryDetError(f"{split} lists YouTube ids only: {', '.join(sorted(named_after_actors))}'s fakes, made "
                                  f"on original_sequences/actors, are in no official split (leave out --split)")
        if not reals or not fakes:
            raise ForgeryDetError(f"{split}: none of its video ids is in {root} (for {tree.compression})")
        real_dir = next(iter(tree.reals.values())).parent
        reals.update({i: real_dir / f"{i}.mp4" for i in ids if i not in reals})  # missing: skipped, and said
        have = {(m, p.stem) for p, m in fakes}
        for method, fake_dir in sorted(dirs.items()):
            if method in named_after_actors:
                continue
            fakes += [(fake_dir / f"{n}.mp4", method) for n in sorted(names) if (method, n) not in have]
        fakes.sort(key=lambda f: (f[1], f[0].name))
    # the fakes of a method named after no YouTube id (DeepFakeDetection's) were made on the actors' videos: those
    # are their reals, where they are here; every other method is measured against the YouTube originals
    on_actors = tree.actors_methods if actors else set()
    if tree.unmatched and not tree.actors and notes is not None and split is None:
        notes.append(f"{', '.join(sorted({tree.method_of(p) for p in tree.unmatched}))}: fakes named after no YouTube "
                     f"original (DeepFakeDetection's are made on original_sequences/actors, which is not here for "
                     f"{tree.compression}): measured against the YouTube originals")
    return ([Item(p, 0, REAL_GROUP, "youtube") for _, p in sorted(reals.items())]
            + [Item(p, 0, ACTORS_GROUP, "actors") for _, p in sorted(actors.items())]
            + [Item(p, 1, m, "actors" if m in on_actors else "youtube") for p, m in fakes])


def dfdc_items(folder: str | Path) -> list[Item]:
    """The videos of a DFDC folder, labelled by its metadata.json (REAL/FAKE) or labels.csv (filename,label)."""
    folder = Path(folder)
    meta, labels = folder / "metadata.json", folder / "labels.csv"
    if meta.is_file():
        try:
            entries = parse_json(meta.read_text(encoding="utf-8"))
            named = {name: str(m["label"]).upper() for name, m in entries.items()}
        except (ValueError, TypeError, KeyError, AttributeError, UnicodeDecodeError):
            raise ForgeryDetError(f"{meta}: not DFDC metadata (a JSON object of file name -> {{\"label\": "
                                  "\"REAL\" or \"FAKE\", ...})") from None
        bad = sorted(n for n, lab in named.items() if lab not in ("REAL", "FAKE"))
        if bad:
            raise ForgeryDetError(f"{meta}: label of {bad[0]} is neither REAL nor FAKE")
        found = {n: int(lab == "FAKE") for n, lab in named.items()}
    elif labels.is_file():
        rows = read_csv_rows(labels, ["filename", "label"])
        bad = [r["filename"] for r in rows if r["label"].strip() not in ("0", "1")]
        if bad:
            raise ForgeryDetError(f"{labels}: label of {bad[0]} is not 0 (real) or 1 (fake)")
        found = {r["filename"].strip(): int(r["label"].strip()) for r in rows}
    else:
        try:  # a folder above the parts: name them
            parts = sorted(d.name for d in folder.iterdir() if (d / "metadata.json").is_file() or (d / "labels.csv").is_file())
        except OSError:
            parts = []
        hint = f"; it holds {len(parts)} that do (e.g. {folder / parts[0]}): give one of them" if parts else ""
        raise ForgeryDetError(f"{folder}: neither metadata.json nor labels.csv found (a DFDC part or test folder){hint}")
    if not found:
        raise ForgeryDetError(f"{meta if meta.is_file() else labels}: lists no videos")
    missing = [n for n in found if not (folder / n).is_file()]
    if len(missing) == len(found):
        raise ForgeryDetError(f"{folder}: none of the {len(found)} videos its labels name is there (e.g. {missing[0]})")
    group = folder.resolve().name
    return [Item(folder / n, lab, group) for n, lab in sorted(found.items())]  # a missing one is skipped, and said


CELEBDF_TEST_LIST = "List_of_testing_videos.txt"
CELEBDF_FOLDERS = {"celeb-real": 0, "youtube-real": 0, "celeb-synthesis": 1}


def _holds_celebdf(folder: Path) -> bool:
    try:
        return any((c.is_dir() and c.name.lower() in CELEBDF_FOLDERS) or c.name == CELEBDF_TEST_LIST
                   for c in folder.iterdir())
    except OSError:
        return False


def celebdf_items(root: str | Path, everything: bool = False) -> list[Item]:
    """Celeb-DF's official test videos (or, with `everything`, all its videos), group = the source folder."""
    root = Path(root)
    if not root.is_dir():
        raise ForgeryDetError(f"{root}: no such folder (a Celeb-DF root, holding Celeb-real, YouTube-real, "
                              f"Celeb-synthesis and {CELEBDF_TEST_LIST})")
    # copies differ in the folder's case ('Youtube-real') and some keep the videos one level down ('videos/')
    folders = {d.name.lower(): d for d in root.iterdir() if d.is_dir() and d.name.lower() in CELEBDF_FOLDERS}
    listed = root / CELEBDF_TEST_LIST
    if not folders and not listed.is_file():  # the wrong level: say where the root is rather than suggest options
        if root.resolve().name.lower() in CELEBDF_FOLDERS:
            raise ForgeryDetError(f"{root} is one of Celeb-DF's video folders: give --celebdf the folder that holds "
                                  f"it ({root.resolve().parent})")
        below = sorted(d for d in root.iterdir() if d.is_dir() and _holds_celebdf(d))
        raise ForgeryDetError(f"{root}: not a Celeb-DF root (no Celeb-real, YouTube-real, Celeb-synthesis or "
                              f"{CELEBDF_TEST_LIST})" + (f"; {below[0]} looks like one" if below else ""))
    if everything:
        if not folders:
            raise ForgeryDetError(f"{root}: none of Celeb-real, YouTube-real, Celeb-synthesis is there")
        return [Item(p, CELEBDF_FOLDERS[key], d.name) for key, d in sorted(folders.items())
                for p in expand_sources([d]) if p.suffix.lower() == ".mp4"]
    if not listed.is_file():
        raise ForgeryDetError(f"{root}: no {CELEBDF_TEST_LIST} (Celeb-DF's official test list); "
                              "--celebdf-all scores every video instead")
    items = []
    # utf-8-sig: a list saved on Windows starts with a byte-order mark; '#' lines are comments
    for n, line in enumerate(listed.read_text(encoding="utf-8-sig", errors="replace").splitlines(), 1):
        parts = line.split(maxsplit=1)
        if not parts or parts[0].startswith("#"):
            continue
        folder, _, name = parts[-1].strip().partition("/")
        if len(parts) != 2 or parts[0] not in ("0", "1") or folder.lower() not in CELEBDF_FOLDERS or not name:
            raise ForgeryDetError(f"{listed}, line {n}: not '1 Celeb-real/NAME.mp4' or '0 Celeb-synthesis/NAME.mp4' "
                                  f"(got {line.strip()[:60]!r})")
        d = folders.get(folder.lower(), root / folder)
        path = d / name if (d / name).is_file() or not (d / "videos" / name).is_file() else d / "videos" / name
        items.append(Item(path, 1 - int(parts[0]), d.name))  # the list's 1 is real
    if not items:
        raise ForgeryDetError(f"{listed}: lists no videos")
    if not any(it.path.is_file() for it in items):
        raise ForgeryDetError(f"{root}: none of the {len(items)} videos {CELEBDF_TEST_LIST} names is there "
                              f"(e.g. {items[0].path})")
    return items  # a missing one is skipped, and said


def folder_items(real: Sequence[str | Path], fake: Sequence[str | Path],
                 notes: list[str] | None = None) -> list[Item]:
    """Every image and video of the real and of the fake paths (folders searched recursively, globs); each
    path given is a group, named by its last two parts as given ('dfdc/real', 'ffpp/*_fake.png'), so that
    folders called real and fake in two datasets stay apart, or by as many more as it takes to tell it from the
    other paths (FaceForensics++'s 'Deepfakes/c23/videos' and 'Face2Face/c23/videos', not both 'c23/videos').

    A folder inside a FaceForensics++ tree (a method's folder) also holds its `masks/videos`, the manipulation
    masks, which are not videos to score: they are left out, and `notes` says so, as it does for a folder that
    holds the same videos at several compression levels (each is scored as a video of its own)."""
    names = _group_names([*real, *fake])
    items: list[Item] = []
    for label, paths in ((0, real), (1, fake)):
        for p in paths:
            files = expand_sources([p])
            if Path(p).is_dir():
                files = _without_ffpp_masks(Path(p), files, notes)
            items += [Item(f, label, names[str(p)]) for f in files]
    keys = [file_key(it.path) for it in items]  # each file resolved once
    real_keys = {k for it, k in zip(items, keys) if it.label == 0}
    both = next((it.path for it, k in zip(items, keys) if it.label == 1 and k in real_keys), None)
    if both is not None:  # scored with both labels it would count against itself
        raise ForgeryDetError(f"{path_text(both)} is given as real (--real) and as fake (--fake): give each file one label")
    seen: set[Path] = set()
    for it, k in zip(items, keys):  # a folder and a file in it, or a file twice: it would count twice in the metrics
        if k in seen:
            raise ForgeryDetError(f"{path_text(it.path)} is given twice (in two of the paths given, or through a link): "
                                  f"give each file once")
        seen.add(k)
    return items


def _without_ffpp_masks(folder: Path, files: list[Path], notes: list[str] | None) -> list[Path]:
    """files less those under a `masks/videos` folder below `folder`; notes name what was left out, and the
    compression levels when `folder` holds videos at more than one."""
    kept, masks, levels = split_ffpp_masks(folder, files)
    if files and not kept:
        raise ForgeryDetError(f"{folder}: holds only FaceForensics++ manipulation masks (masks/videos), no videos "
                              f"to score")
    if notes is not None and masks:
        notes.append(f"{folder}: left out {masks} files under masks/videos (FaceForensics++'s "
                     f"manipulation masks, not videos to score)")
    if notes is not None and len(levels) > 1:
        notes.append(f"{folder}: holds videos at {', '.join(levels)}; each copy is scored as a video of its own "
                     f"(give {folder}/{levels[0]}/videos for one level, or --ffpp ROOT --compression LEVEL)")
    return kept


def _group_names(paths: Sequence[str | Path]) -> dict[str, str]:
    """Each path's shortest ending of two or more parts that no other path given ends with."""
    parts = {str(p): [x for x in Path(p).parts if x not in (".", "..", "/")] for p in paths}
    names = {}
    for p, ps in parts.items():
        k = 2
        while k < len(ps) and any(q[-k:] == ps[-k:] for o, q in parts.items() if o != p):
            k += 1
        names[p] = "/".join(ps[-k:]) or p
    for p, name in names.items():  # '../data/real' and 'data/real' end alike however far back: the path as given
        if any(o != p and other == name for o, other in names.items()):
            names[p] = p
    return names


def sample_per_group(items: list[Item], n: int, seed: int = 0) -> list[Item]:
    """At most n items of each group and class, a seeded random draw (the list's order kept): a group of both
    classes (a DFDC part, ~80 % fakes) keeps some of each."""
    if n < 1:
        raise option_error("--per-group", n, "must be >= 1")
    rng = random.Random(seed)
    by_group: dict[tuple[str, int], list[int]] = {}
    for i, it in enumerate(items):
        by_group.setdefault((it.group, it.label), []).append(i)
    keep = {i for idx in by_group.values() for i in (idx if len(idx) <= n else rng.sample(idx, n))}
    return [it for i, it in enumerate(items) if i in keep]


def evaluation_source(list_csv: str | Path | None = None, *, ffpp: str | Path | None = None,
                      compression: str | None = None, methods: Sequence[str] | None = None,
                      split: str | Path | None = None, dfdc: str | Path | None = None,
                      celebdf: str | Path | None = None, celebdf_all: bool = False,
                      real: Sequence[str | Path] = (), fake: Sequence[str | Path] = (),
                      per_group: int | None = None, notes: list[str] | None = None) -> str | Path | list[Item]:
    """What `evaluate` scores: LIST.csv as given, or the items of exactly one dataset layout (see the module);
    `notes` collects what the user should hear about the layout."""
    if (compression or methods or split) and not ffpp:  # before "give one evaluation set", which hides it
        raise ForgeryDetError("--compression, --methods and --split go with --ffpp")
    if celebdf_all and not celebdf:  # likewise
        raise ForgeryDetError("--celebdf-all goes with --celebdf")
    given = [name for name, v in (("LIST.csv", list_csv), ("--ffpp", ffpp), ("--dfdc", dfdc),
                                  ("--celebdf", celebdf), ("--real/--fake", real or fake)) if v]
    if len(given) != 1:
        raise ForgeryDetError("give one evaluation set: LIST.csv, --ffpp ROOT, --dfdc FOLDER, --celebdf ROOT or "
                              "--real PATH --fake PATH"
                              + (f" (got {' and '.join(given)})" if given else ""))
    if per_group is not None and list_csv:
        raise ForgeryDetError("--per-group goes with --ffpp, --dfdc, --celebdf or --real/--fake, not with LIST.csv")
    if list_csv:
        return list_csv
    if ffpp:
        items = ffpp_items(ffpp, compression, methods, split, notes)
    elif dfdc:
        items = dfdc_items(dfdc)
    elif celebdf:
        items = celebdf_items(celebdf, celebdf_all)
    else:
        if not (real and fake):
            raise ForgeryDetError("--real and --fake go together: give at least one path of each")
        items = folder_items(real, fake, notes)
    return interleaved(sample_per_group(items, per_group) if per_group is not None else items)


def interleaved(items: list[Item]) -> list[Item]:
    """The items in a scoring order that mixes the classes evenly (each class keeps its own order): an evaluation
    stopped partway has scored reals and fakes alike and still gets metrics (all reals first left it none)."""
    by_class = [[it for it in items if it.label == c] for c in (0, 1)]
    keyed = [((k + 0.5) / len(group), c, it) for c, group in enumerate(by_class) for k, it in enumerate(group)]
    return [it for _, _, it in sorted(keyed, key=lambda t: (t[0], t[1]))]
