"""Frame-aligned crops of real/fake media pairs: the same frame indices are sampled from the real and
the fake video, faces are detected on the REAL frame only, and that box crops both frames (rescaled when the
fake's size differs). On each real frame the largest face is used (the manipulated face of FF++ / DFDC-style
data is the main subject). Images: the real's largest face; a fake of the same size is cut with that box.
Each fake video is deinterlaced exactly when its real was (faces/playback.py decides on the real's frames): were
the two decided apart, a pair could differ by deinterlacing alone, a difference a detector would learn."""

from __future__ import annotations

import dataclasses
import os
from pathlib import Path
from typing import Sequence

import numpy as np

from forgerydet.errors import ForgeryDetError
from forgerydet.faces.detect import Face, FaceDetector, crop_faces
from forgerydet.faces.media import iter_frames, media_kind, sample_indices, video_info
from forgerydet.faces.pipeline import ExtractConfig, detect_source
from forgerydet.io import read_image, safe_name, source_key, write_png
from forgerydet.pairs.discover import (DFD_NAME, FFPP_SPLITS, MappingEntry, actor_fakes, find_ffpp, identity_groups,
                                      read_ffpp_splits, unique_group_names)
from forgerydet.pairs.table import (
    PAIRS_NAME,
    TEST_SHARE,
    VAL_SHARE,
    PairsSummary,
    assign_splits,
    finish_pairs,
    pair_row,
)
from forgerydet.runtime import Progress


def _area(face: Face) -> float:
    return float((face.box[2] - face.box[0]) * (face.box[3] - face.box[1]))


def _scale_boxes(boxes: np.ndarray, src_shape: tuple[int, int], dst_shape: tuple[int, int]) -> np.ndarray:
    sy, sx = dst_shape[0] / src_shape[0], dst_shape[1] / src_shape[1]
    return boxes * np.array([sx, sy, sx, sy], np.float32)  # (N,4)


def pairs_from_mapping(
    entries: Sequence[MappingEntry],
    out_dir: str | Path,
    config: ExtractConfig | None = None,
    *,
    val: float = VAL_SHARE,
    test: float = TEST_SHARE,
    seed: int = 0,
    detector: FaceDetector | None = None,
    progress: Progress | None = None,
    splits: dict[str, str] | None = None,
) -> PairsSummary:
    """Frame-aligned pairs for explicit (real, fake) files; writes crops and OUT/pairs.csv. `splits` (group ->
    'train' / 'val' / 'test') replaces the seeded val/test fractions.

    Videos: indices are sampled over the shortest of the real and all its fakes, faces detected on the
    real frames (the largest face of each), the same box crops each fake frame (rescaled if the fake's
    size differs). Images: the real's largest face; a fake of the same size is cut with that box, a fake of
    another size gets its own detection. A file that fails is recorded in `errors` and skipped.
    """
    config = config or ExtractConfig()
    out_dir = Path(out_dir)
    if not entries:
        raise ForgeryDetError("no real/fake pair to make: the mapping is empty")
    made_on: dict[str, Path] = {}
    for e in entries:  # its crops have one place: listed again, the second real's boxes overwrote the first's crops
        if (key := os.path.realpath(e.fake)) in made_on:
            raise ForgeryDetError(f"{e.fake} is listed twice as a fake (with real {made_on[key]}, and again with "
                                  f"{e.real}): a fake is made from one real; list it once")
        made_on[key] = e.real
    reals = list(dict.fromkeys(e.real for e in entries))
    auto_groups = unique_group_names(reals)
    groups = {e.real: e.group for e in entries if e.group}
    for e in entries:  # one real, two groups: the last row's won in silence, and the other group's person could leak
        if e.group and e.group != groups[e.real]:
            raise ForgeryDetError(f"{e.real} is given two groups ({e.group!r} and {groups[e.real]!r}): its faces are one "
                                  f"source, in one split; give all its rows one group (people a fake joins belong in one)")
    groups = {r: groups.get(r) or auto_groups[r] for r in reals}  # a row without a group: the real's from another row
    if not any(Path(r).is_file() for r in reals):  # said before the split count, which would hide it
        raise ForgeryDetError(f"none of the {len(reals)} real file(s) the mapping names exists (first: {reals[0]})")
    if splits is None:
        assign_splits(set(groups.values()), val, test, seed)  # fail before the slow part
    detector = detector or FaceDetector(config.detector)
    summary = PairsSummary(pairs_csv=out_dir / PAIRS_NAME)
    rows: list[dict] = []
    done = 0
    for real in reals:
        mine = [e for e in entries if e.real == real]
        try:
            rows.extend(_pairs_for_real(real, mine, groups[real], out_dir, config, detector, summary))
        except ForgeryDetError as e:  # its fakes make no pairs either: say how many, they are not counted elsewhere
            lost = f" (so its {len(mine)} fake(s) made no pairs)" if mine else ""
            summary.errors.append((str(real), str(e) + lost))
        done += len(mine)
        if progress is not None:
            progress(done, len(entries))
    return finish_pairs(rows, out_dir, val, test, seed, summary, splits=splits)


def _pairs_for_real(
    real: Path, entries: list[MappingEntry], group: str, out_dir: Path, config: ExtractConfig,
    detector: FaceDetector, summary: PairsSummary,
) -> list[dict]:  # fmt: skip
    size, margin = config.detector.size, config.detector.margin
    kind = media_kind(real)
    rkey = source_key(real)
    if kind == "image":
        image = read_image(real)
        faces = detector.faces([_as_frame(image)])[0]
        if not faces:
            summary.warnings.append(f"{real}: no face found; its {len(entries)} fake(s) were skipped")
            return []
        rface = max(faces, key=_area)
        real_rel = f"crops/real/{rkey}/f000000_0.png"
        write_png(out_dir / real_rel, rface.crop)
        rows = []
        for e in entries:
            try:
                if media_kind(e.fake) != "image":
                    raise ForgeryDetError(f"{e.fake}: the real {real.name} is an image but this fake is not")
                fimg = read_image(e.fake)
                if fimg.shape == image.shape:
                    fface = crop_faces(_as_frame(fimg), rface.box[None], None, None, margin, size)[0]
                else:
                    found = detector.faces([_as_frame(fimg)])[0]
                    if not found:
                        summary.warnings.append(f"{e.fake}: other size than its real and no face found; skipped")
                        continue
                    fface = max(found, key=_area)
            except ForgeryDetError as err:
                summary.errors.append((str(e.fake), str(err)))
                continue
            fake_rel = f"crops/{safe_name(e.method)}/{source_key(e.fake)}/f000000_0.png"
            write_png(out_dir / fake_rel, fface.crop)
            rows.append(pair_row(real_rel, fake_rel, group, e.method, rface.landmarks_crop))
        return rows

    # videos: sample over the shortest of the real and its readable fakes
    rinfo = video_info(real)
    counts = [rinfo.frame_count]
    fakes: list[tuple[MappingEntry, object]] = []
    for e in entries:
        try:
            if media_kind(e.fake) != "video":
                raise ForgeryDetError(f"{e.fake}: the real {real.name} is a video but this fake is not")
            finfo = video_info(e.fake)
        except ForgeryDetError as err:
            summary.errors.append((str(e.fake), str(err)))
            continue
        counts.append(finfo.frame_count)
        fakes.append((e, finfo))
    if not fakes:
        return []
    short, n_short = min(((e, fi.frame_count) for e, fi in fakes), key=lambda c: c[1])
    rest = min([rinfo.frame_count] + [fi.frame_count for e, fi in fakes if e is not short])
    if n_short < 0.9 * rest and len(fakes) > 1:  # one short fake (a cut download) shrinks every fake's sampling
        summary.warnings.append(f"{short.fake}: {n_short} frames, where its real {real.name} has {rinfo.frame_count}: the frames of "
                                f"{real.name} and of all its {len(fakes)} fakes are sampled from the first {n_short} only "
                                f"(the same frames in each); leave it out (with a --mapping) to sample the others over "
                                f"{rest} frames")
    indices = sample_indices(min(counts), rinfo.fps, config.num_frames, config.every, config.fps)
    found = detect_source(real, config, detector, indices=indices)
    summary.warnings += found.unreadable_warning()
    rfaces = [max(fr, key=_area) for fr in found.faces if fr]
    if not rfaces:
        summary.warnings.append(f"{real}: no face found on the sampled frames; its {len(fakes)} fake(s) were skipped")
        return []
    by_index = {f.frame_index: f for f in rfaces}
    real_shape = (rinfo.height, rinfo.width)
    real_rel = {}
    for f in rfaces:
        real_rel[f.frame_index] = f"crops/real/{rkey}/f{f.frame_index:06d}.png"
        write_png(out_dir / real_rel[f.frame_index], f.crop)
    interlaced = found.deinterlaced > 0  # each fake is decoded as its real was: deinterlaced or not, never one alone
    rows = []
    for e, finfo in fakes:
        fkey = source_key(e.fake)
        n_before = len(rows)
        if abs(finfo.width * rinfo.height - finfo.height * rinfo.width) > 0.02 * finfo.width * rinfo.height:
            summary.warnings.append(f"{e.fake}: {finfo.width}x{finfo.height}, another shape than its real {real.name} "
                                    f"({rinfo.width}x{rinfo.height}): the real's face boxes are stretched to fit it, so "
                                    f"its crops may not line up with the real's (a re-framed or cropped copy?)")
        try:
            for frame in iter_frames(e.fake, indices=sorted(by_index), deinterlace=config.deinterlace, interlaced=interlaced):
                rface = by_index[frame.index]
                box = _scale_boxes(rface.box[None], real_shape, frame.image.shape[:2])
                fface = crop_faces(frame, box, None, None, config.detector.margin, config.detector.size)[0]
                fake_rel = f"crops/{safe_name(e.method)}/{fkey}/f{frame.index:06d}.png"
                write_png(out_dir / fake_rel, fface.crop)
                rows.append(pair_row(real_rel[frame.index], fake_rel, group, e.method, rface.landmarks_crop))
        except ForgeryDetError as err:
            summary.errors.append((str(e.fake), str(err)))
        if len(rows) - n_before < len(by_index):
            summary.warnings.append(f"{e.fake}: {len(by_index) - (len(rows) - n_before)} of {len(by_index)} frames could not be read")
    return rows


def _as_frame(image: np.ndarray):
    from forgerydet.faces.media import Frame

    return Frame(0, 0.0, image)


def pairs_from_ffpp(
    root: str | Path,
    out_dir: str | Path,
    config: ExtractConfig | None = None,
    *,
    compression: str | None = None,
    methods: Sequence[str] | None = None,
    val: float = VAL_SHARE,
    test: float = TEST_SHARE,
    seed: int = 0,
    detector: FaceDetector | None = None,
    progress: Progress | None = None,
    splits: str | Path | None = None,
) -> PairsSummary:
    """Pairs from a FaceForensics++ tree (see find_ffpp): fake A_B with real A, frame-aligned, group 'A+B' (the ids
    the fakes join: discover.identity_groups); DeepFakeDetection's with the actors' video they were made on
    (discover.actor_fakes). `splits`:
    a folder of FF++'s official split files (read_ffpp_splits), which then decide each group's split."""
    tree = find_ffpp(root, compression, methods)
    # DeepFakeDetection's fakes, made on the actors' videos (the official splits list YouTube ids only)
    on_actors, left = actor_fakes(tree, progress) if splits is None else ([], tree.unmatched)
    if not tree.fakes and splits is not None and tree.actors_methods:  # DeepFakeDetection alone (--methods)
        raise ForgeryDetError(f"--splits: the official split files list YouTube ids only, so {', '.join(sorted(tree.actors_methods))}'s "
                              f"fakes (made on original_sequences/actors) are left out, and no other method's are here")
    if not tree.fakes and not on_actors:
        raise ForgeryDetError(f"{root}: no fake video matches a real video id (fakes are named A_B.mp4 after real A.mp4, "
                              f"DeepFakeDetection's A_B__SCENE__CODE.mp4 after original_sequences/actors' A__SCENE.mp4)")
    # A real without fakes still makes no pair; fakes that match no real are reported.
    summary_extra = []
    if left and splits is not None:  # DeepFakeDetection's are not in the files; any other lacks its original here
        dfd, gone = [p for p in left if DFD_NAME.fullmatch(p.stem)], [p for p in left if not DFD_NAME.fullmatch(p.stem)]
        if dfd:
            summary_extra.append(f"{len(dfd)} DeepFakeDetection fake video(s) were left out: the official split files "
                                 f"list YouTube ids only (e.g. {dfd[0].name})")
        if gone:
            summary_extra.append(f"{len(gone)} fake video(s) were skipped: no YouTube original of their name is under "
                                 f"original_sequences/youtube/{tree.compression}/videos (e.g. {gone[0].name})")
    elif left:
        summary_extra.append(f"{len(left)} fake video(s) are named after no YouTube original and no actors' video here "
                             f"and were skipped (e.g. {left[0].name}; DeepFakeDetection's A_B__SCENE__CODE is paired with "
                             f"original_sequences/actors/{tree.compression}/videos/A__SCENE or B__SCENE; a --mapping "
                             f"pairs any other)")
    if on_actors:
        summary_extra.append(f"{len(on_actors)} DeepFakeDetection fake(s) paired with the actors' videos they were made "
                             f"on, in {len({e.group for e in on_actors})} group(s) (the actors their fakes join: each "
                             f"group stays in one split)")
    summary_extra += tree.notes()  # methods downloaded only at another compression level
    entries, of = tree.fakes + on_actors, None
    if splits is not None:
        split_of = read_ffpp_splits(splits)
        entries = [e for e in tree.fakes if e.real.stem in split_of]
        ids = identity_groups(e.fake.stem for e in entries)  # joined by the fakes kept, not by those left out
        entries = [dataclasses.replace(e, group=ids[e.real.stem]) for e in entries]
        if not entries:
            raise ForgeryDetError(f"--splits {splits}: none of its video ids is in {root} (for {tree.compression})")
        left = len(tree.fakes) - len(entries)
        if left:
            summary_extra.append(f"{left} fake video(s) of ids that no split file lists were left out "
                                 f"(e.g. {next(e.fake.name for e in tree.fakes if e.real.stem not in split_of)})")
        of = {}
        for e in entries:  # the official files keep both ids of a pair in one split: a group is in one
            if of.setdefault(e.group, split_of[e.real.stem]) != split_of[e.real.stem]:
                raise ForgeryDetError(f"--splits {splits}: the ids of {e.group} (joined by their fakes) are in "
                                      f"different split files, so a face would be in two splits")
        for split in FFPP_SPLITS:  # what a partly downloaded FF++ (or ids written as numbers) leaves out
            listed = {i for i, sp in split_of.items() if sp == split}
            absent = sorted(listed - set(tree.reals))
            if not listed:
                summary_extra.append(f"no {split}.json in {splits}: the {split} split is empty")
            elif absent:
                summary_extra.append(f"{split}.json: {len(absent)} of {len(listed)} listed video ids are not under "
                                     f"{root} for {tree.compression} (e.g. {absent[0]})")
    s = pairs_from_mapping(entries, out_dir, config, val=val, test=test, seed=seed, detector=detector,
                           progress=progress, splits=of)
    s.warnings[:0] = summary_extra
    return s
