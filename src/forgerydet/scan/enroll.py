"""`forgerydet enroll`: a known person's real videos/images -> their faces (as scan finds them) -> key-encoder
features in that person's rows of a reference file beside the model (model.references owns the file)."""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Sequence

import numpy as np
import torch

from forgerydet.errors import ForgeryDetError
from forgerydet.faces.detect import DetectorConfig, Face
from forgerydet.io import file_sha256
from forgerydet.model.config import references_path
from forgerydet.model.inputs import resize_face, to_tensor
from forgerydet.model.references import (
    THUMB,
    ReferenceFile,
    check_fingerprint,
    check_name,
    file_lock,
    fingerprint_full,
    read_references,
    read_unlocked,
)
from forgerydet.paths import check_not_input, check_output
from forgerydet.runtime import Progress
from forgerydet.scan.config import EnrollConfig


def choose_faces(src, how: str) -> tuple[list[Face], str]:
    """The faces of one source (faces.pipeline.SourceFaces) to enrol, and a sentence saying which were taken."""
    faces = src.all_faces
    tracks = src.num_tracks
    if not faces:
        return [], "no face found"
    if how == "all":
        return faces, f"all {len(faces)} faces of {tracks} track(s)" + (" (bystanders included)" if tracks > 1 else "")
    if how == "largest":
        chosen = [max(fr, key=lambda f: float((f.box[2] - f.box[0]) * (f.box[3] - f.box[1]))) for fr in src.faces if fr]
        other = len(faces) - len(chosen)
        return chosen, f"the largest face of each frame ({len(chosen)} faces)" + (f"; {other} smaller face(s) left out" if other else "")
    tid = src.main_track()
    chosen = [f for f in faces if f.track_id == tid]
    other = tracks - 1
    frames = len(src.frames)
    return chosen, (f"main track {tid}, on {len(chosen)} of {frames} sampled frame(s)"
                    + (f"; {other} other track(s) ({len(faces) - len(chosen)} faces) left out" if other else ""))


@dataclass
class EnrollResult:
    name: str
    path: Path
    checkpoint: Path
    added: int
    duplicates: int  # faces already enrolled for this person (same source and frame, same track or box), not added
    total: int  # this person's faces in the file now
    people: int
    sources: list[tuple[str, int, str]]  # (file, faces taken, which)
    also_as: list[tuple[str, str]] = field(default_factory=list)  # (file, another person it is enrolled as)
    case_twins: list[str] = field(default_factory=list)  # other people whose names differ from NAME by case only


def _same_face_keys(entry: dict, new: bool = False) -> list[tuple]:
    """What makes two enrolled faces one: the same frame and track, or the same frame and box (a photo's faces were
    numbered in the detector's order before 0.2.0, from the left since, so one face's track id may differ), of the
    same file, known by its content (sha256, recorded since 2026-12-06) or, for a stored entry without it, by its
    path with links resolved. A new face (with its sha256) also gives its path keys, to meet such older entries."""
    ats = [(entry["frame_index"], entry["track_id"])]
    if entry.get("box"):
        ats.append((entry["frame_index"], "box", *(round(float(v)) for v in entry["box"])))
    by_path = [("path", os.path.realpath(entry["source"]), *at) for at in ats]
    if not entry.get("sha256"):
        return by_path
    return [("sha256", entry["sha256"], *at) for at in ats] + (by_path if new else [])


def encode_faces(model, crops: Sequence[np.ndarray], device: torch.device, batch_size: int = 32) -> torch.Tensor:
    """Key-encoder token maps of face crops: (B,N,D) fp16 on the CPU."""
    out = []
    encode = model.key_features() if crops else None
    for i in range(0, len(crops), batch_size):
        x = torch.stack([to_tensor(resize_face(c, model.img_size)) for c in crops[i : i + batch_size]])  # (B,3,S,S)
        out.append(encode(x.to(device)).to("cpu", torch.float16))  # (B,N,D)
    return torch.cat(out) if out else torch.zeros(0, model.bank.num_tokens, model.bank.dim, dtype=torch.float16)


def enroll(
    name: str,
    sources: Sequence[str | Path],
    *,
    checkpoint: str | Path | None = None,
    into: str | Path | None = None,
    config: EnrollConfig | None = None,
    progress: Progress | None = None,
) -> EnrollResult:
    """Enrol a person's real faces from videos/images into a reference file (created, or added to).

    Nothing is written unless every source was read and at least one face was found; the file is refused if
    another key encoder wrote it, and the write is atomic under an exclusive lock."""
    from forgerydet.faces.detect import FaceDetector
    from forgerydet.faces.media import expand_sources
    from forgerydet.faces.pipeline import ExtractConfig, detect_source, first_frame_only
    from forgerydet.model.checkpoint import load_checkpoint
    from forgerydet.runtime import resolve_device
    from forgerydet.scan.config import find_default_checkpoint

    cfg = config or EnrollConfig()
    name = check_name(name)
    files = expand_sources(sources)
    device = resolve_device(cfg.device)
    ck_path = Path(checkpoint) if checkpoint else find_default_checkpoint()
    model = load_checkpoint(ck_path, device, check_bank=False).model.eval()
    fp = fingerprint_full(model.key_fingerprint())
    path = Path(into) if into else references_path(ck_path)
    option = "--into" if into else "the reference file beside the model"
    try:
        check_output(path, option)  # before the lock file beside it is made, and before the slow part
    except ForgeryDetError as e:  # the models/ folder of a shared, read-only install: the way out is an option
        raise ForgeryDetError(f"{e}; to enrol into a file of your own: --into FILE (and `scan --references FILE`)"
                              if into is None else str(e)) from None
    check_not_input(path, option, [("the checkpoint", ck_path), *(("a source being enrolled", f) for f in files)])
    if path.exists():  # refuse a foreign or broken file before the slow part
        check_fingerprint(path, read_references(path, wait=cfg.wait).fingerprint, fp, ck_path)
        with file_lock(path, exclusive=True, wait=cfg.wait):  # and one another process holds (a scan reading it),
            pass  # rather than after the detection and encoding; the write takes the lock again
    det_cfg = cfg.detector
    if det_cfg.device == DetectorConfig().device:
        det_cfg.device = str(device)
    detector = FaceDetector(det_cfg)
    xcfg = ExtractConfig(num_frames=cfg.num_frames, detector=det_cfg, deinterlace=cfg.deinterlace, start=cfg.start,
                         end=cfg.end)
    crops: list[np.ndarray] = []
    entries: list[dict[str, Any]] = []
    report: list[tuple[str, int, str]] = []
    digests: dict[str, str] = {}  # file -> sha256, for files with faces
    for i, f in enumerate(files):
        if progress:
            progress(i, len(files), str(f))
        src = detect_source(f, xcfg, detector)
        chosen, which = choose_faces(src, cfg.face)
        if src.unreadable:  # a damaged or cut-off video: said in its report line, as scan notes it
            which += f"; {len(src.unreadable)} sampled frame(s) could not be decoded (a damaged or cut-off video)"
        which += f"; {first_frame_only(src.image_frames)}" if src.image_frames > 1 else ""
        report.append((str(f), len(chosen), which))
        digest = file_sha256(f) if chosen else None  # the same footage under another name or a link is a duplicate
        if digest:
            digests[str(f)] = digest
        for face in chosen:
            crops.append(face.crop)
            entries.append({"person": name, "source": os.path.abspath(f), "frame_index": int(face.frame_index),
                            "time": round(float(face.time), 3), "track_id": int(face.track_id),
                            "box": [round(float(v), 1) for v in face.box], "confidence": round(float(face.confidence), 4),
                            "face": cfg.face, "sha256": digest})
    if progress:
        progress(len(files), len(files), "")
    if not crops:
        raise ForgeryDetError(f"no face found in {len(files)} source(s) for {name!r}: nothing enrolled, "
                              f"{path} {'unchanged' if path.exists() else 'not created'}")
    values = encode_faces(model, crops, device, cfg.batch_size)  # (B,N,D)
    thumbs = torch.from_numpy(np.stack([resize_face(c, THUMB) for c in crops]))  # (B,T,T,3)
    with file_lock(path, exclusive=True, wait=cfg.wait):
        if path.exists():
            refs = read_unlocked(path)  # again: another enrolment may have written it meanwhile
            check_fingerprint(path, refs.fingerprint, fp, ck_path)
        else:
            refs = ReferenceFile.empty(fp, model.cfg.backbone, model.bank.num_tokens, model.bank.dim)
        have = {k for e in refs.entries if e["person"] == name for k in _same_face_keys(e)}
        owners: dict[str, dict[str, None]] = {}  # sha256 -> every other person enrolled from those bytes, in order
        for e in refs.entries:
            if e.get("sha256") and e["person"] != name:
                owners.setdefault(e["sha256"], {})[e["person"]] = None
        also_as = [(f, o) for f, d in digests.items() for o in owners.get(d, ())]  # enrolled, but not only as NAME
        new = []
        for i, e in enumerate(entries):  # against the file, and against the faces of this call (a copy given beside)
            if not have & set(_same_face_keys(e, new=True)):
                new.append(i)
                have.update(_same_face_keys(e))
        if new:
            idx = torch.tensor(new, dtype=torch.long)
            refs = refs.plus(values[idx], thumbs[idx], [entries[i] for i in new])
            refs.save(path)
    twins = [p for p in refs.people() if p != name and p.casefold() == name.casefold()]  # 'anchor' beside 'Anchor'
    return EnrollResult(name, path, ck_path, len(new), len(entries) - len(new), refs.people().get(name, 0),
                        len(refs.people()), report, also_as, twins)
