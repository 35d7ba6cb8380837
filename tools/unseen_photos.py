"""The real photos of ../shared/data/train that a checkpoint never trained on, to calibrate or probe THAT model.

    python tools/unseen_photos.py CHECKPOINT OUT [--train ../shared/data/train] [--per-source 600] [--seed 1]
                                  [--rest]

A checkpoint's `bank_sources` lists every real training face of its run (folder `<photo stem>-<hash>`), and its
extra `earlier_faces` those of the runs it was fine-tuned or averaged from (recorded since 2026-12-05 evening);
photos whose stem is not there were never trained on (they were validation faces, calibration faces, or had no
face). OUT/<source>/ gets up to `--per-source` of them per source (LFW: whole people, none of whom was trained
on, so no one is on both sides), as symlinks (copies where links cannot be made); `--rest` also links every
other photo into OUT/rest/<source>/ (a training pool disjoint from OUT/<source>/).

Why: `make model-data` draws its calibration photos against ITS OWN seeded base subset, which is not the one the
shipped file was trained from; measured 2026-12-01, 1,798 of its 2,400 calibration photos (75 %) were training
photos of models/forgerydet-base.safetensors. Anything run on the shipped file (calibrate, bench/shortcuts.py)
needs photos from here instead; `make shipped-calib` makes them and their self-blended pairs.
"""

from __future__ import annotations

import argparse
import os
import random
import re
import shutil
import sys
from collections import Counter
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from subset_faces import SOURCES, person  # noqa: E402  (LFW people as tools/subset_faces.py parses them)

HASHED = re.compile(r"-[0-9a-f]{8}$")  # io.source_key's suffix on a training face's folder name


def key_stem(path: Path) -> str:
    """A photo's stem as it appears in a training face's folder name (io.source_key: safe_name of the stem)."""
    from forgerydet.io import safe_name

    return safe_name(path.stem, "source", 60)


def trained_stems(checkpoint: str) -> set[str]:
    """The photo stems of every face the checkpoint's weights saw: its own run's (bank_sources) and, for a
    fine-tune (--init) or a weight average, those of the runs before it (extra 'earlier_faces')."""
    from forgerydet.model.checkpoint import read_meta, training_faces

    meta = read_meta(checkpoint)
    if not meta.get("bank_sources"):
        raise SystemExit(f"{checkpoint} lists no training faces (bank_sources): cannot tell which photos it saw")
    return {HASHED.sub("", f) for f in training_faces(meta)}


def _link(src: Path, dst: Path) -> None:
    dst.parent.mkdir(parents=True, exist_ok=True)
    try:
        os.symlink(src.resolve(), dst)
    except OSError:
        shutil.copy2(src, dst)


def split(checkpoint: str, out: str, train: str, per_source: int, seed: int, rest: bool) -> dict[str, tuple[int, int]]:
    seen = trained_stems(checkpoint)
    people_seen = {person(f"{s}.jpg") for s in seen}
    rng = random.Random(seed)
    counts = {}
    for src in SOURCES:
        folder = Path(train) / src
        if not folder.is_dir():
            continue
        files = sorted(p for p in folder.iterdir() if p.is_file())
        unseen = [p for p in files if key_stem(p) not in seen]
        if src == "lfw":  # whole people, none of them trained on
            who_is = {p: person(p.name) for p in files}
            unseen_of = Counter(who_is[p] for p in unseen)  # each person's photos never trained on
            people = sorted(set(unseen_of) - people_seen)
            rng.shuffle(people)
            chosen_people: set[str] = set()
            n = 0
            for who in people:
                if n >= per_source:
                    break
                chosen_people.add(who)
                n += unseen_of[who]
            chosen = [p for p in unseen if who_is[p] in chosen_people]
            others = [p for p in files if who_is[p] not in chosen_people]
        else:
            chosen = rng.sample(unseen, min(per_source, len(unseen)))
            picked = set(chosen)
            others = [p for p in files if p not in picked]
        for p in chosen:
            _link(p, Path(out) / src / p.name)
        if rest:
            for p in others:
                _link(p, Path(out) / "rest" / src / p.name)
        counts[src] = (len(chosen), len(unseen))
        print(f"{src}: {len(chosen)} photos never trained on (of {len(unseen)} unseen, {len(files)} in all) -> {Path(out) / src}")
    if not counts:
        raise SystemExit(f"no photo folders ({', '.join(SOURCES)}) under {train}")
    return counts


if __name__ == "__main__":
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("checkpoint")
    ap.add_argument("out")
    ap.add_argument("--train", default="../shared/data/train")
    ap.add_argument("--per-source", type=int, default=600)
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--rest", action="store_true", help="also link every other photo into OUT/rest/")
    a = ap.parse_args()
    if Path(a.out).exists() and any(Path(a.out).iterdir()):
        sys.exit(f"{a.out} is not empty: choose a new folder")
    from forgerydet.errors import ForgeryDetError

    try:
        split(a.checkpoint, a.out, a.train, a.per_source, a.seed, a.rest)
    except ForgeryDetError as e:  # a checkpoint not found or not one: one line, not a traceback
        sys.exit(f"Error: {e}")
