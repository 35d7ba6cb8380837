"""`forgerydet pairs`: the one entry point that picks how pairs are made.

- from a FaceForensics++ tree (aligned.pairs_from_ffpp): fake video A_B is paired with real video A;
- from explicit real/fake files (aligned.pairs_from_mapping, with discover.read_mapping_csv or match_dirs);
- from real faces alone (selfblend.pairs_from_self_blend): one self-blended pseudo-fake per real face.

Output folder: OUT/pairs.csv (table.py), OUT/crops/real/<key>/..., OUT/crops/<method>/<key>/... (sbi masks
beside their fakes as *_mask.png)."""

from __future__ import annotations

import csv
import os
from pathlib import Path
from typing import Sequence

from forgerydet.errors import ForgeryDetError, path_text
from forgerydet.faces.pipeline import ExtractConfig
from forgerydet.pairs.aligned import pairs_from_ffpp, pairs_from_mapping
from forgerydet.pairs.discover import MappingEntry, match_dirs, read_mapping_csv
from forgerydet.pairs.selfblend import BlendOptions, pairs_from_self_blend
from forgerydet.pairs.table import TEST_SHARE, VAL_SHARE, PairsSummary, check_split_shares
from forgerydet.paths import check_not_input, check_output, folder_held, leftovers_text
from forgerydet.runtime import Progress


def make_pairs(
    out_dir: str | Path,
    config: ExtractConfig | None = None,
    *,
    ffpp: str | Path | None = None,
    compression: str | None = None,
    methods: str | Sequence[str] | None = None,
    mapping: str | Path | None = None,
    real_dir: str | Path | None = None,
    fake_dir: str | Path | None = None,
    self_blend: bool = False,
    sources: Sequence[str | Path] | None = None,
    val: float = VAL_SHARE,
    test: float = TEST_SHARE,
    seed: int = 0,
    progress: Progress | None = None,
    blend: BlendOptions | None = None,
    splits: str | Path | None = None,
    overwrite: bool = False,
) -> PairsSummary:
    """The `forgerydet pairs` command: exactly one of ffpp / mapping / real_dir+fake_dir / self_blend
    (which uses `sources`). methods may be a comma-separated string. Returns the summary: files that
    failed are listed in its `errors`, not raised. An OUT that holds a pairs.csv is refused unless `overwrite`
    (FF++ pairs were silently replaced by a DFDC mapping's)."""
    modes = [m for m, on in (("--ffpp", ffpp), ("--mapping", mapping), ("--real-dir/--fake-dir", real_dir or fake_dir),
                             ("--self-blend", self_blend)) if on]  # fmt: skip
    if len(modes) != 1:
        raise ForgeryDetError(
            "choose exactly one of --ffpp ROOT, --mapping FILE.csv, --real-dir D --fake-dir D, --self-blend SRC..."
            + (f" (got {', '.join(modes)})" if modes else "")
        )
    if blend is not None and blend != BlendOptions() and not self_blend:
        raise ForgeryDetError("--group-pattern, --online/--all-fakes, --format, --jpeg-quality and --workers apply to --self-blend only")
    if sources and not self_blend:
        raise ForgeryDetError("source paths are only used with --self-blend; the other modes take --ffpp, --mapping or --real-dir/--fake-dir")
    check_split_shares(val, test)
    if splits is not None and not ffpp:
        raise ForgeryDetError("--splits (FaceForensics++'s official split files) goes with --ffpp")
    if splits is not None and (val, test) != (VAL_SHARE, TEST_SHARE):
        raise ForgeryDetError("--splits decides the splits: leave out --val and --test")
    check_output(out_dir, "--out", folder=True, inside=("crops", "crops/real", "crops/sbi"), writes=("pairs.csv",))
    if mapping:  # OUT/pairs.csv must not be the mapping being read
        check_not_input(Path(out_dir) / "pairs.csv", "--out", [("the --mapping file", mapping)])
    # held while it writes: two runs into one --out at once each said "wrote pairs.csv", the last one's replaced
    # the first's, and each one's crops could be the other's (a fake blended with the other seed)
    with folder_held(out_dir, "--out", "`forgerydet pairs`", "crops/*", "crops/*/*") as removed:
        _check_new_pairs(Path(out_dir) / "pairs.csv", overwrite)
        kw = dict(val=val, test=test, seed=seed, progress=progress)
        summary = _pairs(out_dir, config, ffpp, compression, methods, mapping, real_dir, fake_dir, self_blend, sources,
                         blend, kw, splits)
    if removed:  # the temp files that a killed run left (a crop's, pairs.csv's)
        summary.warnings.insert(0, leftovers_text(removed, out_dir))
    stale = _stale_crops(Path(out_dir), summary.pairs_csv)
    if stale:
        summary.warnings.append(f"{Path(out_dir) / 'crops'} also holds {stale} file(s) of an earlier run that "
                                f"pairs.csv does not name (delete that folder first for a clean one)")
    return summary


def _check_new_pairs(pairs_csv: Path, overwrite: bool) -> None:
    if overwrite or not pairs_csv.exists():
        return
    try:
        with open(pairs_csv, newline="", encoding="utf-8", errors="replace") as f:
            rows = f" ({max(0, sum(1 for _ in f) - 1):,} rows)"
    except OSError:
        rows = ""
    raise ForgeryDetError(f"--out {path_text(pairs_csv.parent)} already holds a pairs.csv{rows}: give another --out, or "
                          f"--overwrite to replace it (a training run started on it refuses to resume if its content "
                          f"changes)")


def _stale_crops(out_dir: Path, pairs_csv: Path) -> int:
    """Files under OUT/crops that the pairs.csv just written names neither as a crop nor as a fake's mask: what an
    earlier run into the same folder left (they cost disk space and confuse a look at the folder, nothing else)."""
    crops = out_dir / "crops"
    if not crops.is_dir():
        return 0
    named = set()
    with open(pairs_csv, newline="", encoding="utf-8-sig") as f:
        for row in csv.DictReader(f):
            for rel in (row.get("real"), row.get("fake")):
                if rel:
                    p = Path(os.path.abspath(pairs_csv.parent / rel))  # an absolute path stays itself
                    named |= {p, p.with_name(p.stem + "_mask.png")}
    return sum(1 for p in crops.rglob("*") if p.is_file() and Path(os.path.abspath(p)) not in named)


def _pairs(out_dir, config, ffpp, compression, methods, mapping, real_dir, fake_dir, self_blend, sources, blend,
           kw, splits) -> PairsSummary:
    if ffpp:
        if isinstance(methods, str):
            methods = [m.strip() for m in methods.split(",") if m.strip()]
        return pairs_from_ffpp(ffpp, out_dir, config, compression=compression, methods=methods, splits=splits, **kw)
    if compression or methods:
        raise ForgeryDetError("--compression and --methods apply to --ffpp only")
    if mapping:
        return pairs_from_mapping(read_mapping_csv(mapping), out_dir, config, **kw)
    if self_blend:
        if not sources:
            raise ForgeryDetError("--self-blend needs real sources: videos, images, folders or a faces.csv index")
        return pairs_from_self_blend(sources, out_dir, config, **kw, options=blend)
    if not (real_dir and fake_dir):
        raise ForgeryDetError("give both --real-dir and --fake-dir")
    notes: list[str] = []  # FaceForensics++'s masks/videos left out, several compression levels in one folder
    entries, unmatched = match_dirs(real_dir, fake_dir, notes)
    if not entries:
        raise ForgeryDetError(f"no fake in {fake_dir} is named after a real in {real_dir} (same stem, or real stem + suffix)")
    two = two_person_fakes(entries)
    s = pairs_from_mapping(entries, out_dir, config, **kw)
    if unmatched:
        notes.insert(0, f"{len(unmatched)} fake(s) named after no real were skipped (e.g. {unmatched[0].name})")
    if two:
        notes.append(f"{len(two)} fake(s) are named after two of the real videos (e.g. {two[0].name}: FaceForensics++ "
                     f"puts B's face on A's video as A_B); each is grouped with A alone, so B's face can be in another "
                     f"split: for FaceForensics++ give --ffpp ROOT, which groups them, or --mapping with a group column")
    s.warnings[:0] = notes
    return s


def two_person_fakes(entries: Sequence[MappingEntry]) -> list[Path]:
    """The fakes named A_B where A is their real and B another real of the set (FaceForensics++'s naming: B's face
    on A's video). --real-dir/--fake-dir groups a fake with its real A only, so B's face may land in another split."""
    reals = {e.real.stem for e in entries}
    return [e.fake for e in entries
            if e.fake.stem.startswith(e.real.stem + "_") and e.fake.stem[len(e.real.stem) + 1:] in reals - {e.real.stem}]
