"""Self-blended pairs from real faces alone (`forgerydet pairs --self-blend`): one pseudo-fake per real
face (sbi.self_blend), deterministic for a seed; still images go through faces.stills' process pool, videos
and faces.csv indexes through faces.pipeline. With `online`, train rows carry no fake file: training blends
a new one every epoch from the stored landmarks."""

from __future__ import annotations

import os
import re
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

import cv2
import numpy as np

from forgerydet.errors import ForgeryDetError, option_error
from forgerydet.faces.detect import FaceDetector
from forgerydet.faces.index import read_index
from forgerydet.faces.media import IMAGE_EXTS, describe_skipped, expand_sources, media_kind
from forgerydet.faces.pipeline import ExtractConfig
from forgerydet.io import read_image, source_key, write_bytes_atomic, write_png
from forgerydet.pairs.discover import group_of, unique_group_names
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


def _rel(path: Path, out_dir: Path) -> str:
    return Path(os.path.relpath(os.path.abspath(path), os.path.abspath(out_dir))).as_posix()


@dataclass
class BlendOptions:
    """How `pairs --self-blend` groups and stores its faces.

    group_pattern: a regex searched in each file stem; its first group (or the match) is the split group (e.g.
                   r'^(.+)_\\d{4}$' keeps LFW's photos of one person together); None: the group is the file.
    online:        train rows get no fake file: training blends a new one every epoch from the landmarks (the
                   default: `train` re-blends every epoch and never reads a train row's stored fake, so writing
                   one costs a blend and two PNGs per face for nothing). False (`--all-fakes`): every row gets a
                   stored fake and mask, for `train --no-sbi-online` or for looking at them.
    image_format:  'png', or 'jpg' (smaller folders; the fake is blended from the DECODED real crop, so real and
                   fake share every artifact). jpeg_quality: for 'jpg'.
    workers:       processes detecting faces in still images and videos (0: one per core).
    """

    group_pattern: str | None = None
    online: bool = True
    image_format: str = "png"
    jpeg_quality: int = 95
    workers: int = 0

    def __post_init__(self) -> None:
        if self.image_format not in ("png", "jpg"):
            raise ForgeryDetError(f"--format {self.image_format!r}: use png or jpg")
        if not 1 <= self.jpeg_quality <= 100:
            raise ForgeryDetError(f"--jpeg-quality {self.jpeg_quality}: use 1..100")
        if self.workers < 0:
            raise ForgeryDetError(f"--workers {self.workers}: use 0 (one per core) or a number of processes")

    def pattern(self) -> "re.Pattern[str] | None":
        try:
            return re.compile(self.group_pattern) if self.group_pattern else None
        except re.error as e:
            raise option_error("--group-pattern", self.group_pattern, f"not a valid regular expression ({e})") from None


NUMBERED = re.compile(r"^(.+?)[_ -]?\d+$")  # Person_Name_0001, IMG-12: a name before a trailing number


def grouping_warnings(sources: list[Path], pattern: "re.Pattern[str] | None") -> list[str]:
    """Why the splits may hold one person on both sides: a --group-pattern that leaves still images out (each of
    those is its own group), or none given where several share a name before a trailing number (Ann_0001, Ann_0002:
    likely one person, split apart photo by photo). A video is its own group either way."""
    sources = [p for p in sources if Path(p).suffix.lower() in IMAGE_EXTS]
    if pattern is not None:
        missed = [p for p in sources if not pattern.search(Path(p).stem)]
        if not missed:
            return []
        return [f"--group-pattern matched {len(sources) - len(missed)} of {len(sources)} images; the other "
                f"{len(missed)} (e.g. {Path(missed[0]).name}) are each their own group"]
    stems = [m.group(1) for p in sources if (m := NUMBERED.match(Path(p).stem))]
    shared = {k: n for k, n in Counter(stems).items() if n > 1}
    if not shared:
        return []
    example = max(shared, key=lambda k: shared[k])
    return [f"{sum(shared.values())} images share a name before a trailing number with another (e.g. {shared[example]} "
            f"named {example!r} and a number): without --group-pattern each image is its own group, so one person's "
            f"photos can land in both training and validation; --group-pattern '^(.+)_\\d+$' keeps them together"]


def pairs_from_self_blend(
    sources: Sequence[str | Path],
    out_dir: str | Path,
    config: ExtractConfig | None = None,
    *,
    val: float = VAL_SHARE,
    test: float = TEST_SHARE,
    seed: int = 0,
    detector: FaceDetector | None = None,
    progress: Progress | None = None,
    options: BlendOptions | None = None,
) -> PairsSummary:
    """One self-blended pseudo-fake per real face (method 'sbi'), deterministic for a seed.

    sources: videos, images, folders, globs, or extract indexes (faces.csv: their `ok` crops and
    landmarks are used as the real faces, no detection). Grouping, storage and worker processes: see
    BlendOptions. Still images and videos go through faces.stills' process pool (images with a padded retry
    for tight crops, counted in the summary; videos one per task). Each written fake's blending mask is written beside it as <fake>_mask.png.
    """
    from forgerydet.faces.stills import VideoFaces, faces_of_video, iter_faces, start_pool_early

    opts = options or BlendOptions()
    pattern = opts.pattern()
    online, image_format, jpeg_quality = opts.online, opts.image_format, opts.jpeg_quality
    from forgerydet.pairs.sbi import self_blend

    config = config or ExtractConfig()
    out_dir = Path(out_dir)
    indexes = [Path(s) for s in sources if str(s).lower().endswith(".csv")]
    files = [s for s in sources if not str(s).lower().endswith(".csv")]
    if detector is None and files:
        start_pool_early(opts.workers)  # its imports overlap the listing and grouping below
    others: list[Path] = []
    media = expand_sources(files, others) if files else []
    images = [p for p in media if media_kind(p) == "image"]
    videos = [p for p in media if media_kind(p) != "image"]

    index_rows = []
    for idx in indexes:
        index_rows.extend(r for r in read_index(idx) if r.status == "ok")
    source_names = list(dict.fromkeys([Path(r.source) for r in index_rows] + list(media)))
    files = unique_group_names(source_names)
    groups = {p: group_of(p, files[p], pattern) for p in source_names}
    splits = assign_splits(set(groups.values()), val, test, seed)
    summary = PairsSummary(pairs_csv=out_dir / PAIRS_NAME)
    if others:
        summary.warnings.append("not used: the folders and patterns given hold " + describe_skipped(others))
    summary.warnings += grouping_warnings(source_names, pattern)
    rows: list[dict] = []
    ordinal = 0
    total = len(media) + len(index_rows)
    ext = "." + image_format

    def store(rel: str, rgb: np.ndarray) -> None:
        """Write a crop. A stored fake is blended from the crop as detected, not from its JPEG copy: both faces of
        a pair are compressed once (a fake compressed twice beside a real compressed once is a class cue)."""
        if image_format == "png":
            write_png(out_dir / rel, rgb)
            return
        ok, buf = cv2.imencode(".jpg", cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR), [cv2.IMWRITE_JPEG_QUALITY, jpeg_quality])
        if not ok:
            raise ForgeryDetError(f"cannot encode {rel} as JPEG")
        write_bytes_atomic(out_dir / rel, buf.tobytes())

    def blend_and_write(real_rel: str, crop: np.ndarray, lm: np.ndarray | None, group: str, fake_rel: str) -> None:
        nonlocal ordinal
        rng = np.random.default_rng([seed, ordinal])
        ordinal += 1
        if lm is None or not np.all(np.isfinite(lm)):
            summary.warnings.append(f"{real_rel}: no landmarks, no self-blended fake made")
            return
        if online and splits[group] == "train":
            rows.append(pair_row(real_rel, "", group, "sbi", lm))
            summary.blended_online += 1
            return
        fake, mask = self_blend(crop, lm, rng)
        store(fake_rel, fake)
        write_png(out_dir / fake_rel.replace(ext, "_mask.png"), (np.clip(mask, 0, 1) * 255).round().astype(np.uint8))
        rows.append(pair_row(real_rel, fake_rel, group, "sbi", lm))

    done = 0

    def tick() -> None:
        nonlocal done
        done += 1
        if progress is not None:
            progress(done, total)

    for r in index_rows:
        if r.crop is None or not r.crop.is_file():
            summary.errors.append((str(r.crop), "crop listed in the index is missing"))
        else:
            crop = read_image(r.crop)
            key = source_key(r.source)
            fake_rel = f"crops/sbi/{key}/{r.crop.stem}{ext}"
            blend_and_write(_rel(r.crop, out_dir), crop, r.landmarks, groups[Path(r.source)], fake_rel)
        tick()

    seen = summary.videos  # filled below when there are videos
    if videos:
        seen.update(ok=0, no_face=0, error=0, faces=0)

    def video(item: VideoFaces) -> None:
        if item.found is None:
            summary.errors.append((str(item.path), item.error))
            seen["error"] += 1
        else:
            key = source_key(item.path)
            seen["ok" if item.found.all_faces else "no_face"] += 1
            seen["faces"] += len(item.found.all_faces)
            summary.warnings += item.found.unreadable_warning()
            if not item.found.all_faces:
                summary.warnings.append(f"{item.path}: no face found")
            for frame_faces in item.found.faces:
                for k, f in enumerate(frame_faces):
                    name = f"f{f.frame_index:06d}_{k}{ext}"
                    real_rel = f"crops/real/{key}/{name}"
                    store(real_rel, f.crop)
                    blend_and_write(real_rel, f.crop, f.landmarks_crop, groups[item.path], f"crops/sbi/{key}/{name}")
        tick()

    counts = {"ok": 0, "padded": 0, "no_face": 0, "error": 0}
    # videos share the images' worker pool, unless a detector was handed in (then they use it, here)
    for face in iter_faces(images, videos if detector is None else [], config, opts.workers):
        if isinstance(face, VideoFaces):
            video(face)
            continue
        counts[face.status] += 1
        if face.status == "error":
            summary.errors.append((str(face.path), face.message))
        elif face.status == "no_face":
            summary.warnings.append(face.message)
        else:
            key = source_key(face.path)
            real_rel = f"crops/real/{key}/f000000_0{ext}"
            store(real_rel, face.crop)
            blend_and_write(real_rel, face.crop, face.landmarks, groups[face.path], f"crops/sbi/{key}/f000000_0{ext}")
        tick()
    if images:
        summary.images = dict(counts)
        if counts["padded"]:
            summary.warnings.append(
                f"{counts['padded']} of {len(images)} images are tight crops: the face was found only after "
                f"padding the image with a black border (their crops are black where the image ended)"
            )
        if counts["no_face"]:
            summary.warnings.append(f"{counts['no_face']} of {len(images)} images: no face found, skipped")
    for path in videos if detector is not None else []:
        video(faces_of_video(path, config, detector))
    return finish_pairs(rows, out_dir, val, test, seed, summary, splits=splits)
