"""Paired real/fake face crops for training: `pairs.csv` and the crops it points to.

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

pairs.csv is read (and checked for leaks between splits) by `forgerydet.data.read_pairs`.

Three ways to make it:
- `pairs_from_ffpp(root)`: a FaceForensics++ tree; fake video A_B is paired with real video A.
- `pairs_from_mapping(entries)` with `read_mapping_csv` or `match_dirs`: explicit real/fake files.
- `pairs_from_self_blend(sources)`: real faces only; one self-blended fake per real face (sbi.self_blend).
Videos are paired frame-aligned: the same frame indices are sampled from the real and the fake video,
faces are detected on the REAL frame only, and that box crops both frames. On each real frame the
largest face is used (the manipulated face of FF++ / DFDC-style data is the main subject).

Output folder: OUT/pairs.csv, OUT/crops/real/<key>/..., OUT/crops/<method>/<key>/... (sbi masks
beside their fakes as *_mask.png).
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Iterable, Sequence

import cv2
import numpy as np

from .atomic import check_output, write_bytes_atomic
from .detect import Face, FaceDetector, crop_faces
from .errors import ForgeryDetError
from .extract import (
    ExtractConfig,
    detect_source,
    read_csv_rows,
    read_index,
    source_key,
    write_csv_atomic,
    write_png,
)
from .video import expand_sources, iter_frames, media_kind, read_image, sample_indices, video_info

PAIRS_COLUMNS = ["real", "fake", "group", "split", "method", "landmarks"]
PAIRS_NAME = "pairs.csv"
SPLITS = ("train", "val", "test")
MAPPING_COLUMNS = ["real", "fake"]  # optional: group, method

Progress = Callable[[int, int], None]


# ---------------------------------------------------------------- rows, reading, splitting


def format_landmarks(lm: np.ndarray | None) -> str:
    if lm is None or not np.all(np.isfinite(lm)):
        return ""
    return " ".join(f"{v:.2f}" for v in np.asarray(lm, np.float64).reshape(-1))


def assign_splits(groups: Iterable[str], val: float = 0.15, test: float = 0.0, seed: int = 0) -> dict[str, str]:
    """Split groups (not frames) into train/val/test; deterministic for a seed and a set of groups.

    Each requested split (fraction > 0) gets round(fraction x groups) groups, at least one; train keeps
    the rest and must keep at least one. Too few groups raises ForgeryDetError.
    """
    for name, frac in (("val", val), ("test", test)):
        if not 0.0 <= frac < 1.0:
            raise ForgeryDetError(f"--{name} {frac}: a split fraction must be in [0, 1)")
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
    order = np.random.default_rng(seed).permutation(n)
    split = {}
    for rank, i in enumerate(order):
        split[uniq[i]] = "val" if rank < n_val else "test" if rank < n_val + n_test else "train"
    return split


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


def _finish(rows: list[dict], out_dir: Path, val: float, test: float, seed: int, summary: PairsSummary,
            splits: dict[str, str] | None = None) -> PairsSummary:
    if not rows:
        raise ForgeryDetError(
            "no pair could be made (no face found or every file failed" + (f": {summary.errors[0][1]}" if summary.errors else "") + ")"
        )
    if splits is None:
        splits = assign_splits((r["group"] for r in rows), val, test, seed)
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
    return summary


def _rel(path: Path, out_dir: Path) -> str:
    return Path(os.path.relpath(os.path.abspath(path), os.path.abspath(out_dir))).as_posix()


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


# ---------------------------------------------------------------- discovering pairs


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
        raise ForgeryDetError(f"{path}: no such mapping file")
    rows = read_csv_rows(path, MAPPING_COLUMNS)
    if not rows:
        raise ForgeryDetError(f"{path}: the mapping has no rows")
    out = []
    for r in rows:
        out.append(
            MappingEntry(
                real=path.parent / r["real"],
                fake=path.parent / r["fake"],
                group=(r.get("group") or None),
                method=(r.get("method") or "mapping"),
            )
        )
    return out


def match_dirs(real_dir: str | Path, fake_dir: str | Path) -> tuple[list[MappingEntry], list[Path]]:
    """Pair each fake with the real of the same stem, else the real whose stem is the fake stem's longest
    prefix (preferring a prefix followed by '_', '-' or '.'); returns (entries, fakes left unmatched)."""
    reals = expand_sources([real_dir])
    fakes = expand_sources([fake_dir])
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
        else:
            entries.append(MappingEntry(real, f))
    return entries, unmatched


@dataclass
class FFppTree:
    """What was found in a FaceForensics++ root for one compression level."""

    compression: str
    reals: dict[str, Path]  # video id A -> original_sequences/youtube/<comp>/videos/A.mp4
    fakes: list[MappingEntry]  # A_B of each method, group A, method = the method folder
    unmatched: list[Path]  # fake videos whose name does not start with a known real id


def find_ffpp(root: str | Path, compression: str | None = None, methods: Sequence[str] | None = None) -> FFppTree:
    """Parse original_sequences/youtube/<comp>/videos/A.mp4 and manipulated_sequences/<METHOD>/<comp>/videos/A_B.mp4."""
    root = Path(root)
    real_base = root / "original_sequences" / "youtube"
    if not real_base.is_dir():
        raise ForgeryDetError(
            f"{root}: not a FaceForensics++ folder (no original_sequences/youtube); see data/README.md for the layout"
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
    if methods:
        missing = [m for m in methods if m not in found]
        if missing:
            raise ForgeryDetError(f"method(s) {', '.join(missing)} not found under {man_base} for {compression}; found {', '.join(found) or 'none'}")
        found = [m for m in found if m in methods]
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
    return FFppTree(compression, reals, fakes, unmatched)


def media_kind_ok(p: Path) -> bool:
    try:
        return media_kind(p) == "video"
    except ForgeryDetError:
        return False


# ---------------------------------------------------------------- frame-aligned cropping


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
    val: float = 0.15,
    test: float = 0.0,
    seed: int = 0,
    detector: FaceDetector | None = None,
    progress: Progress | None = None,
) -> PairsSummary:
    """Frame-aligned pairs for explicit (real, fake) files; writes crops and OUT/pairs.csv.

    Videos: indices are sampled over the shortest of the real and all its fakes, faces detected on the
    real frames (the largest face of each), the same box crops each fake frame (rescaled if the fake's
    size differs). Images: the real's largest face; a fake of the same size is cut with that box, a fake of
    another size gets its own detection. A file that fails is recorded in `errors` and skipped.
    """
    config = config or ExtractConfig()
    out_dir = Path(out_dir)
    if not entries:
        raise ForgeryDetError("no real/fake pair to make: the mapping is empty")
    reals = list(dict.fromkeys(e.real for e in entries))
    auto_groups = unique_group_names(reals)
    groups = {e.real: e.group or auto_groups[e.real] for e in entries}
    assign_splits(set(groups.values()), val, test, seed)  # fail before the slow part
    detector = detector or FaceDetector(config.detector)
    summary = PairsSummary(pairs_csv=out_dir / PAIRS_NAME)
    rows: list[dict] = []
    done = 0
    for real in reals:
        mine = [e for e in entries if e.real == real]
        try:
            rows.extend(_pairs_for_real(real, mine, groups[real], out_dir, config, detector, summary))
        except ForgeryDetError as e:
            summary.errors.append((str(real), str(e)))
        done += len(mine)
        if progress is not None:
            progress(done, len(entries))
    return _finish(rows, out_dir, val, test, seed, summary)


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
            fake_rel = f"crops/{_safe(e.method)}/{source_key(e.fake)}/f000000_0.png"
            write_png(out_dir / fake_rel, fface.crop)
            rows.append(_row(real_rel, fake_rel, group, e.method, rface.landmarks_crop))
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
    indices = sample_indices(min(counts), rinfo.fps, config.num_frames, config.every, config.fps)
    found = detect_source(real, config, detector, indices=indices)
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
    rows = []
    for e, finfo in fakes:
        fkey = source_key(e.fake)
        n_before = len(rows)
        try:
            for frame in iter_frames(e.fake, indices=sorted(by_index)):
                rface = by_index[frame.index]
                box = _scale_boxes(rface.box[None], real_shape, frame.image.shape[:2])
                fface = crop_faces(frame, box, None, None, config.detector.margin, config.detector.size)[0]
                fake_rel = f"crops/{_safe(e.method)}/{fkey}/f{frame.index:06d}.png"
                write_png(out_dir / fake_rel, fface.crop)
                rows.append(_row(real_rel[frame.index], fake_rel, group, e.method, rface.landmarks_crop))
        except ForgeryDetError as err:
            summary.errors.append((str(e.fake), str(err)))
        if len(rows) - n_before < len(by_index):
            summary.warnings.append(f"{e.fake}: {len(by_index) - (len(rows) - n_before)} of {len(by_index)} frames could not be read")
    return rows


def _as_frame(image: np.ndarray):
    from .video import Frame

    return Frame(0, 0.0, image)


def _safe(name: str) -> str:
    return "".join(c if c.isalnum() or c in "-_." else "_" for c in name) or "method"


def _row(real_rel: str, fake_rel: str, group: str, method: str, landmarks: np.ndarray | None) -> dict:
    return {"real": real_rel, "fake": fake_rel, "group": group, "split": "", "method": method,
            "landmarks": format_landmarks(landmarks)}  # fmt: skip


def pairs_from_ffpp(
    root: str | Path,
    out_dir: str | Path,
    config: ExtractConfig | None = None,
    *,
    compression: str | None = None,
    methods: Sequence[str] | None = None,
    val: float = 0.15,
    test: float = 0.0,
    seed: int = 0,
    detector: FaceDetector | None = None,
    progress: Progress | None = None,
) -> PairsSummary:
    """Pairs from a FaceForensics++ tree (see find_ffpp): fake A_B with real A, frame-aligned, group A."""
    tree = find_ffpp(root, compression, methods)
    if not tree.fakes:
        raise ForgeryDetError(f"{root}: no fake video matches a real video id (fakes are named A_B.mp4 after real A.mp4)")
    # A real without fakes still makes no pair; fakes that match no real are reported.
    summary_extra = [f"{len(tree.unmatched)} fake video(s) match no real id and were skipped (e.g. {tree.unmatched[0].name})"] if tree.unmatched else []
    s = pairs_from_mapping(tree.fakes, out_dir, config, val=val, test=test, seed=seed, detector=detector, progress=progress)
    s.warnings[:0] = summary_extra
    return s


# ---------------------------------------------------------------- self-blending


def group_of(path: Path, default: str, pattern: "re.Pattern[str] | None") -> str:
    """The group (split unit) of a source: the pattern's first capture group (or whole match) searched in
    the file stem, e.g. r'^(.+)_\\d{4}$' for LFW's Person_Name_0001; else `default` (the file)."""
    if pattern is None:
        return default
    m = pattern.search(Path(path).stem)
    if not m:
        return default
    return m.group(1) if m.groups() else m.group(0)


def pairs_from_self_blend(
    sources: Sequence[str | Path],
    out_dir: str | Path,
    config: ExtractConfig | None = None,
    *,
    val: float = 0.15,
    test: float = 0.0,
    seed: int = 0,
    detector: FaceDetector | None = None,
    progress: Progress | None = None,
    group_pattern: str | None = None,
    online: bool = False,
    image_format: str = "png",
    jpeg_quality: int = 95,
    workers: int = 0,
) -> PairsSummary:
    """One self-blended pseudo-fake per real face (method 'sbi'), deterministic for a seed.

    sources: videos, images, folders, globs, or extract indexes (faces.csv: their `ok` crops and
    landmarks are used as the real faces, no detection). Group = source file, or the `group_pattern`
    match in its stem (e.g. the person of LFW-style names). Still images go through a pool of `workers`
    processes (0 = one per core) with a padded retry for tight crops (counted in the summary).
    online: train rows get an empty `fake` (training makes a new self-blend every epoch from the
    landmarks); only validation/test fakes are written. image_format 'jpg' stores crops as JPEG (smaller
    folders); the fake is then blended from the DECODED real crop, so real and fake share every artifact.
    Each written fake's blending mask is written beside it as <fake>_mask.png.
    """
    from .selfblend_images import iter_image_faces

    if image_format not in ("png", "jpg"):
        raise ForgeryDetError(f"--format {image_format!r}: use png or jpg")
    if not 1 <= jpeg_quality <= 100:
        raise ForgeryDetError(f"--jpeg-quality {jpeg_quality}: use 1..100")
    try:
        pattern = re.compile(group_pattern) if group_pattern else None
    except re.error as e:
        raise ForgeryDetError(f"--group-pattern {group_pattern!r} is not a valid regular expression ({e})") from None
    from .sbi import self_blend

    config = config or ExtractConfig()
    out_dir = Path(out_dir)
    indexes = [Path(s) for s in sources if str(s).lower().endswith(".csv")]
    media = expand_sources([s for s in sources if not str(s).lower().endswith(".csv")]) if len(indexes) < len(sources) else []
    images = [p for p in media if media_kind(p) == "image"]
    videos = [p for p in media if media_kind(p) != "image"]

    index_rows = []
    for idx in indexes:
        index_rows.extend(r for r in read_index(idx) if r.status == "ok")
    source_names = list(dict.fromkeys([Path(r.source) for r in index_rows] + list(media)))
    files = unique_group_names(source_names)
    groups = {p: group_of(p, files[p], pattern) for p in source_names}
    splits = assign_splits(set(groups.values()), val, test, seed)
    detector = detector or (FaceDetector(config.detector) if videos else None)
    summary = PairsSummary(pairs_csv=out_dir / PAIRS_NAME)
    rows: list[dict] = []
    ordinal = 0
    total = len(media) + len(index_rows)
    ext = "." + image_format

    def store(rel: str, rgb: np.ndarray) -> np.ndarray:
        """Write a crop; return it as a reader will decode it."""
        if image_format == "png":
            write_png(out_dir / rel, rgb)
            return rgb
        ok, buf = cv2.imencode(".jpg", cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR), [cv2.IMWRITE_JPEG_QUALITY, jpeg_quality])
        if not ok:
            raise ForgeryDetError(f"cannot encode {rel} as JPEG")
        write_bytes_atomic(out_dir / rel, buf.tobytes())
        return cv2.cvtColor(cv2.imdecode(buf, cv2.IMREAD_COLOR), cv2.COLOR_BGR2RGB)

    def blend_and_write(real_rel: str, crop: np.ndarray, lm: np.ndarray | None, group: str, fake_rel: str) -> None:
        nonlocal ordinal
        rng = np.random.default_rng([seed, ordinal])
        ordinal += 1
        if lm is None or not np.all(np.isfinite(lm)):
            summary.warnings.append(f"{real_rel}: no landmarks, no self-blended fake made")
            return
        if online and splits[group] == "train":
            rows.append(_row(real_rel, "", group, "sbi", lm))
            return
        fake, mask = self_blend(crop, lm, rng)
        fake = store(fake_rel, fake)
        write_png(out_dir / fake_rel.replace(ext, "_mask.png"), (np.clip(mask, 0, 1) * 255).round().astype(np.uint8))
        rows.append(_row(real_rel, fake_rel, group, "sbi", lm))

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
    counts = {"ok": 0, "padded": 0, "no_face": 0, "error": 0}
    for face in iter_image_faces(images, config.detector, workers):
        counts[face.status] += 1
        if face.status == "error":
            summary.errors.append((str(face.path), face.message))
        elif face.status == "no_face":
            summary.warnings.append(face.message)
        else:
            key = source_key(face.path)
            real_rel = f"crops/real/{key}/f000000_0{ext}"
            crop = store(real_rel, face.crop)
            blend_and_write(real_rel, crop, face.landmarks, groups[face.path], f"crops/sbi/{key}/f000000_0{ext}")
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
    for path in videos:
        try:
            found = detect_source(path, config, detector)
        except ForgeryDetError as e:
            summary.errors.append((str(path), str(e)))
        else:
            key = source_key(path)
            if not found.all_faces:
                summary.warnings.append(f"{path}: no face found")
            for frame_faces in found.faces:
                for k, f in enumerate(frame_faces):
                    name = f"f{f.frame_index:06d}_{k}{ext}"
                    real_rel = f"crops/real/{key}/{name}"
                    crop = store(real_rel, f.crop)
                    blend_and_write(real_rel, crop, f.landmarks_crop, groups[path], f"crops/sbi/{key}/{name}")
        tick()
    return _finish(rows, out_dir, val, test, seed, summary, splits=splits)


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
    val: float = 0.15,
    test: float = 0.0,
    seed: int = 0,
    progress: Progress | None = None,
    blend_options: dict | None = None,
) -> PairsSummary:
    """The `forgerydet pairs` command: exactly one of ffpp / mapping / real_dir+fake_dir / self_blend
    (which uses `sources`). methods may be a comma-separated string. Returns the summary: files that
    failed are listed in its `errors`, not raised."""
    modes = [m for m, on in (("--ffpp", ffpp), ("--mapping", mapping), ("--real-dir/--fake-dir", real_dir or fake_dir),
                             ("--self-blend", self_blend)) if on]  # fmt: skip
    if len(modes) != 1:
        raise ForgeryDetError(
            "choose exactly one of --ffpp ROOT, --mapping FILE.csv, --real-dir D --fake-dir D, --self-blend SRC..."
            + (f" (got {', '.join(modes)})" if modes else "")
        )
    if blend_options and not self_blend:
        raise ForgeryDetError("--group-pattern, --online, --format, --jpeg-quality and --workers apply to --self-blend only")
    if sources and not self_blend:
        raise ForgeryDetError("source paths are only used with --self-blend; the other modes take --ffpp, --mapping or --real-dir/--fake-dir")
    check_output(out_dir, "--out", folder=True)  # before any face is detected
    kw = dict(val=val, test=test, seed=seed, progress=progress)
    if ffpp:
        if isinstance(methods, str):
            methods = [m.strip() for m in methods.split(",") if m.strip()]
        return pairs_from_ffpp(ffpp, out_dir, config, compression=compression, methods=methods or None, **kw)
    if compression or methods:
        raise ForgeryDetError("--compression and --methods apply to --ffpp only")
    if mapping:
        return pairs_from_mapping(read_mapping_csv(mapping), out_dir, config, **kw)
    if self_blend:
        if not sources:
            raise ForgeryDetError("--self-blend needs real sources: videos, images, folders or a faces.csv index")
        return pairs_from_self_blend(sources, out_dir, config, **kw, **(blend_options or {}))
    if not (real_dir and fake_dir):
        raise ForgeryDetError("give both --real-dir and --fake-dir")
    entries, unmatched = match_dirs(real_dir, fake_dir)
    if not entries:
        raise ForgeryDetError(f"no fake in {fake_dir} is named after a real in {real_dir} (same stem, or real stem + suffix)")
    s = pairs_from_mapping(entries, out_dir, config, **kw)
    if unmatched:
        s.warnings.insert(0, f"{len(unmatched)} fake(s) named after no real were skipped (e.g. {unmatched[0].name})")
    return s


__all__ = [
    "PAIRS_COLUMNS", "PairsSummary", "MappingEntry", "FFppTree", "write_pairs",
    "assign_splits", "read_mapping_csv", "match_dirs", "find_ffpp", "pairs_from_ffpp", "pairs_from_mapping",
    "pairs_from_self_blend", "make_pairs", "format_landmarks", "unique_group_names",
]  # fmt: skip
