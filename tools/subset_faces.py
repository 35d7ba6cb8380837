"""A seeded subset of the real training photos of ../shared/data/train, as symbolic links (nothing is copied).

    python tools/subset_faces.py OUT --lfw 1250 --utkface 1250 [--celeba N] [--rmfd_web N] [--seed 0]
                                 [--exclude OTHER_SUBSET ...] [--train DIR]

OUT/<source>/<file> links to DIR/<source>/<file>. LFW is drawn by whole person (people in a seeded order until
at least N photos), so a person is never split between two subsets; the other sources are drawn file by file.
--exclude leaves out every file (and every LFW person) of another subset, so a calibration set never shares a
face with the training set. `make model-data` uses it for the shipped model's training and calibration sets.
"""

from __future__ import annotations

import argparse
import os
import random
import re
from pathlib import Path

SOURCES = ("lfw", "utkface", "celeba", "rmfd_web")
PERSON = re.compile(r"^(.+)_\d{4}\.jpg$")


def person(name: str) -> str:
    m = PERSON.match(name)
    return m.group(1) if m else name


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("out", type=Path)
    for s in SOURCES:
        ap.add_argument(f"--{s}", type=int, default=0, help=f"photos from {s}")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--exclude", type=Path, action="append", default=[], help="another subset folder to leave out")
    ap.add_argument("--train", type=Path, default=Path(__file__).resolve().parents[2] / "shared" / "data" / "train")
    args = ap.parse_args(argv)
    for s in SOURCES:
        if getattr(args, s) < 0:
            ap.error(f"--{s} {getattr(args, s)}: give a number of photos, 0 or more")
        if getattr(args, s) and not (args.train / s).is_dir():
            raise SystemExit(f"--train {args.train}: no {s}/ folder there (give the train/ folder of the shared data)")
    for d in args.exclude:  # a mistyped one left nothing out in silence: training faces in the calibration set
        if not any((d / s).is_dir() for s in SOURCES):
            raise SystemExit(f"--exclude {d}: not a subset folder (it holds none of {', '.join(SOURCES)}/)")
    excluded = {(s, n) for d in args.exclude for s in SOURCES if (d / s).is_dir() for n in os.listdir(d / s)}
    excluded_people = {person(n) for s, n in excluded if s == "lfw"}
    rng = random.Random(args.seed)
    draws: dict[str, list[str]] = {}
    for s in SOURCES:
        want = getattr(args, s)
        if not want:
            continue
        files = sorted(n for n in os.listdir(args.train / s) if (s, n) not in excluded)
        if s == "lfw":
            by_person: dict[str, list[str]] = {}
            for n in files:
                if person(n) not in excluded_people:
                    by_person.setdefault(person(n), []).append(n)
            names: list[str] = []
            for p in rng.sample(sorted(by_person), len(by_person)):
                if len(names) >= want:
                    break
                names += by_person[p]
        else:
            names = rng.sample(files, min(want, len(files)))
        d = args.out / s
        if d.is_dir() and set(os.listdir(d)) - set(names):  # the same draw again (make model-data twice) is fine
            raise SystemExit(f"{d} already holds photos of another draw (another --seed, count, --exclude or "
                             f"--train): adding this one would mix the two; remove {args.out} or give a new folder")
        draws[s] = names
    for s, names in draws.items():
        d = args.out / s
        d.mkdir(parents=True, exist_ok=True)
        for n in names:
            if not (d / n).exists():
                (d / n).symlink_to((args.train / s / n).resolve())
        print(f"{s}: {len(names)} photos in {d}")


if __name__ == "__main__":
    main()
