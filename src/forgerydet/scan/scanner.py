"""Scanning: videos, images and folders -> faces -> 'single'-mode scores against the checkpoint's bank ->
per-track and per-file verdicts. Files are processed one at a time (a stream), and only the few face crops a
report shows are kept, so memory does not grow with the number or length of the videos. Scanning never
writes the bank or the checkpoint."""

from __future__ import annotations

import functools
import os
import threading
import time
from pathlib import Path
from typing import Any, Iterator

import numpy as np
import torch

from forgerydet.errors import ForgeryDetError, path_text, value_text
from forgerydet.faces.detect import DetectorConfig, FaceDetector
from forgerydet.faces.pipeline import ExtractConfig, detect_source, first_frame_only
from forgerydet.faces.segment import segment_text
from forgerydet.model.calibration import (PRECISION_CHOICES, TTA_CHOICES, check_precision, fused_logits,
                                          probability_formula, sigmoid)
from forgerydet.model.checkpoint import Checkpoint, load_checkpoint
from forgerydet.model.inputs import resize_face, to_tensor
from forgerydet.model.config import references_path
from forgerydet.model.references import PersonReferences, load_person
from forgerydet.runtime import Progress, model_loaded, resolve_device, software_versions, torch_after_fork
from forgerydet.scan.aggregate import aggregate, frame_interval, track_scores
from forgerydet.scan.config import ScanConfig, expand_scan_paths, find_default_checkpoint, scan_paths
from forgerydet.scan.records import (INTERVAL_LEVEL, close_call_note, deinterlaced_note, empty_record, few_frames_note,
                                     many_faces_note, media_facts, no_face_error, reliability_notes, segment_note,
                                     self_reference_note, track_likeness, unlike_reference_note, unreadable_note)

OVERVIEW_SIDE = 960  # longest side of the copy of a still image a report numbers its faces on (px)


class _TimedDetector(FaceDetector):
    """FaceDetector that adds up the seconds spent detecting, per thread (the rest of detect_source is decoding)."""

    timer = threading.local()  # a Scanner shared by threads gave a file the others' detection time (decode_s < 0)
    seconds = property(lambda self: getattr(self.timer, "seconds", 0.0))

    def faces(self, frames):
        t0 = time.perf_counter()
        try:
            return super().faces(frames)
        finally:
            self.timer.seconds = self.seconds + time.perf_counter() - t0


def _calibrated(ck: Checkpoint, path: Path, key: str, choices: tuple[str, ...], default: str) -> str:
    """How the checkpoint's calibration scored faces (its record's `key`, `default` when absent), checked."""
    value = str((ck.extra.get("calibration") or {}).get(key) or default)
    if value not in choices:
        raise ForgeryDetError(f"{path}: its calibration's {key} {value!r} is not one of {', '.join(choices)} (was the "
                              f"metadata edited?): re-calibrate with `forgerydet calibrate`")
    return value


class Scanner:
    """Loads a checkpoint once and scans files one by one."""

    def __init__(self, checkpoint: str | Path | None, config: ScanConfig | None = None) -> None:
        self.config = cfg = config or ScanConfig()
        self.device = resolve_device(cfg.device)
        if cfg.precision is not None:
            check_precision(cfg.precision, self.device.type)  # fp16 on a CPU: one clear line before the model loads
        path = Path(checkpoint) if checkpoint else find_default_checkpoint()
        self.checkpoint: Checkpoint = load_checkpoint(path, self.device)
        self.model = self.checkpoint.model.eval()
        # scanning never trains or saves the model: its BatchNorms go into the convolutions before them (tokens
        # equal to ~1e-6; the shipped model's encoder on 32 faces 1.18x faster, 2-core AVX2 EPYC, 2026-12-04,
        # with the CLI's malloc setting; fresh `forgerydet scan anchor_real.mp4` processes, 3 each: model stage
        # median 1.29 -> 1.13 s). Only the online encoder ('single' mode's one pass); the key encoder, whose
        # fingerprint banks and references carry, stays as stored.
        self.folded_batchnorms = self.model.encoder.fold_batchnorm()
        if cfg.reference is not None and cfg.bank is not None:
            raise ForgeryDetError("give --reference or --bank, not both: a person's faces replace the bank")
        self.references: PersonReferences | None = None
        if cfg.reference is not None:
            self.references = load_person(cfg.references or references_path(path), cfg.reference, self.model)
            self.references.bank.to(self.device)
        self.disk_bank = None
        if cfg.bank is not None:
            from forgerydet.model.diskbank import open_for

            self.disk_bank = open_for(cfg.bank, self.model)
        elif self.references is None and self.model.bank.filled == 0 and self.model.uses_bank:
            raise ForgeryDetError(
                f"{path}: the memory bank is empty, so there are no real faces to compare with: run "
                f"`forgerydet rebuild-bank --checkpoint {path} --pairs PAIRS.csv`"
            )
        ck = self.checkpoint
        self.temperature = ck.temperature  # fitted on validation faces (model.calibration)
        # the bank fusion was fitted against the model's own bank: a person's references or a disk bank have
        # other similarity distributions, so there the temperature and its threshold apply
        own_bank = self.references is None and self.disk_bank is None and self.model.uses_bank
        self.fusion = ck.bank_fusion if own_bank else None
        if cfg.threshold is not None:
            self.threshold = cfg.threshold
        else:
            self.threshold = self.fusion["threshold"] if self.fusion is not None else ck.threshold
        self.bank_sources = ck.bank_sources
        # score faces as the threshold was fitted (calibrate --tta), unless told otherwise
        self.calibrated_tta = _calibrated(ck, path, "tta", TTA_CHOICES, "none")
        self.tta = cfg.tta or self.calibrated_tta
        # and in the arithmetic it was fitted in (calibrate --precision; training on a GPU: its amp), unless told
        # otherwise; a GPU's fp16 on a CPU is fp32, the nearer of the two a CPU has
        self.calibrated_precision = _calibrated(ck, path, "precision", PRECISION_CHOICES, "fp32")
        fallback = "fp32" if self.calibrated_precision == "fp16" and self.device.type != "cuda" else None
        self.precision = cfg.precision or fallback or self.calibrated_precision
        if cfg.detector.device == DetectorConfig().device:
            cfg.detector.device = str(self.device)
        self.detector = _TimedDetector(cfg.detector)
        self.extract_config = ExtractConfig(num_frames=cfg.num_frames, detector=cfg.detector,
                                            deinterlace=cfg.deinterlace, start=cfg.start, end=cfg.end)
        self.sha256 = self.checkpoint.sha256()  # of the file loaded, not one written over it since
        self.pid = os.getpid()  # a forked worker's first scan sets torch up for it (runtime.torch_after_fork)
        model_loaded()

    def settings(self) -> dict[str, Any]:
        """What `scan --json` stores as `settings`: checkpoint, threshold, calibration, tta, precision, detector..."""
        m, meta = self.model, self.checkpoint.meta
        return {
            "checkpoint": path_text(self.checkpoint.path),
            "checkpoint_sha256": self.sha256,
            "bank_fingerprint": meta.get("fingerprint"),
            "backbone": m.cfg.backbone,
            "pretrained_weights": meta.get("pretrained_source"),
            "bank_entries": m.bank.filled,
            "aggregation": self.config.aggregation,
            "threshold": self.threshold, "threshold_given": self.config.threshold is not None,  # --threshold
            "temperature": self.temperature,
            "bank_fusion": None if self.fusion is None else {k: v for k, v in self.fusion.items() if k != "threshold"},
            "calibrated_against": self._calibrated_against(),
            "probability": probability_formula(self.fusion is not None, self.tta),
            "frames_per_video": self.config.num_frames,
            "detector": {k: getattr(self.config.detector, k) for k in ("detect_side", "min_confidence", "min_face",
                                                                        "margin", "size")},  # what finds the faces
            "segment": segment_text(self.config.start, self.config.end),  # None: each video whole
            "deinterlace": self.config.deinterlace,
            "tta": self.tta,
            "calibrated_tta": self.calibrated_tta,
            "precision": self.precision,
            "calibrated_precision": self.calibrated_precision,
            "face_size": m.img_size,
            "device": str(self.device), "software": software_versions(),  # versions decide the last digits
            "mode": "single (difference against the bank's nearest real faces)",
            "calibration_caught": self._caught(),
            # the folder the bank's recorded source paths are relative to (written with the bank since 2026-12-06)
            "bank_sources_root": self.checkpoint.extra.get("bank_sources_root")
            if self.disk_bank is None and self.references is None else None,
        } | self._reference_settings()

    def _calibrated_against(self) -> str:
        """The checkpoint's calibration_bank ('this bank', 'an earlier bank', 'not calibrated'); against a disk bank
        or a person's faces, that the calibration is the checkpoint bank's and not theirs."""
        cb = self.checkpoint.calibration_bank
        if (self.disk_bank is None and self.references is None) or cb == "not calibrated":
            return cb
        other = "disk bank" if self.disk_bank is not None else "enrolled faces"
        return f"the checkpoint's own bank{' (since rebuilt)' if cb == 'an earlier bank' else ''}, not the {other} " \
               f"this scan compares with"

    def _caught(self) -> float | None:
        """The share of its validation pseudo-fakes the checkpoint's calibration caught at the threshold a scan
        uses (the fusion's or the head's); None with a --threshold of the user's or where it was not recorded."""
        if self.config.threshold is not None:
            return None
        extra = self.checkpoint.extra
        record = extra.get("bank_fusion") if self.fusion is not None else extra.get("calibration")
        caught = record.get("val_tpr") if isinstance(record, dict) else None
        return float(caught) if isinstance(caught, (int, float)) and 0.0 <= caught <= 1.0 else None

    def _reference_settings(self) -> dict[str, Any]:
        r, d = self.references, self.disk_bank
        if d is not None:
            return {"mode": "single (difference against the disk bank's nearest real faces)", "bank": str(d.dir),
                    "bank_entries": d.filled, "bank_fingerprint": d.fingerprint[:16], "bank_written": d.written,
                    "bank_search": "faiss + exact re-ranking" if d.index is not None else "exact",
                    "bank_indexed": bool(d.meta.get("indexed")),  # and yet "exact": faiss is not installed here
                    "bank_sources_root": d.meta.get("sources_root")}  # None: a bank built before 2026-12-07
        if r is None:
            return {}
        return {"mode": f"reference (difference against the nearest enrolled real faces of {r.name!r})",
                "reference": r.name, "reference_file": str(r.path), "reference_faces": r.bank.filled,
                "reference_fingerprint": r.fingerprint[:16], "reference_content": r.content}

    @torch.inference_mode()
    def _score(self, crops: list[np.ndarray]) -> dict[str, np.ndarray]:
        """Fake probabilities, attention maps and neighbours for face crops, in batches."""
        m = self.model
        probs, sal, nb, sim = [], [], [], []
        for i in range(0, len(crops), self.config.batch_size):
            x = torch.stack([to_tensor(resize_face(c, m.img_size)) for c in crops[i : i + self.config.batch_size]])
            o, logits, sims = m.single_scores(x.to(self.device), self.tta, bank=self._bank(), precision=self.precision)
            if self.fusion is None:
                probs.append(sigmoid(logits, self.temperature))
            else:
                probs.append(sigmoid(fused_logits(logits, sims, self.fusion)))
            sal.append(o["saliency"].float().cpu().numpy())
            slots = o["neighbours"]
            nb.append(slots.cpu().numpy())
            sim.append(o["similarities"].float().cpu().numpy())
        return {"p": np.concatenate(probs), "sal": np.concatenate(sal), "nb": np.concatenate(nb), "sim": np.concatenate(sim)}

    def _bank(self):
        """What 'single' mode retrieves from: the reference person's faces, a disk bank, or (None) the model's."""
        return self.references.bank if self.references is not None else self.disk_bank

    def _neighbour(self, slot: int, similarity: float) -> dict[str, Any]:
        """A retrieved entry: global-bank slot and its source image, or an enrolled face of the reference person
        (its source video and frame; `thumb` is its picture, for the report only)."""
        nb: dict[str, Any] = {"slot": slot, "similarity": similarity}
        if self.references is not None:
            return nb | self.references.neighbour(slot)
        if self.disk_bank is not None:
            return nb | {"source": self.disk_bank.source_of(slot)}
        return nb | {"source": self._source_of(slot)}

    def _source_of(self, slot: int) -> str | None:
        sid = int(self.model.bank.source[slot])
        return self.bank_sources[sid] if 0 <= sid < len(self.bank_sources) else None

    def _record(self, path: str | Path) -> dict[str, Any]:
        """A file's result record before anything is known (see scan/records.py for the layout)."""
        return empty_record(path, self.threshold)

    def scan_file(self, path: Path) -> dict[str, Any]:
        """One file (str or Path) -> its result record (scan/records.py): a file it cannot read or finds no face in
        is a record with status 'error' or 'no_face'; what is not a path raises ForgeryDetError."""
        if not isinstance(path, (str, Path)):  # None, an image array: one error, not a TypeError from deep in
            raise ForgeryDetError(f"path={value_text(path)}: give a path (str or pathlib.Path)")
        if os.getpid() != self.pid:
            torch_after_fork(self.device)
            self.pid = os.getpid()
        cfg = self.config
        t0 = time.perf_counter()
        det0 = self.detector.seconds
        rec = self._record(path)
        try:
            src = detect_source(path, self.extract_config, self.detector)
        except ForgeryDetError as e:
            rec.update(status="error", error=path_text(e), timing={"total_s": time.perf_counter() - t0})
            return rec
        t_detect = self.detector.seconds - det0
        t_decode = time.perf_counter() - t0 - t_detect
        faces = src.all_faces
        if src.kind == "image":  # a photo's faces, numbered from the left by detect_source, are listed in that order:
            faces.sort(key=lambda f: f.track_id)  # the JSON's faces[k] is the note's and the report's face k
        rec.update(kind=src.kind, frames_sampled=len(src.frames), frames_with_face=sum(1 for f in src.faces if f),
                   frames_deinterlaced=src.deinterlaced, frames_unreadable=len(src.unreadable),
                   pixel_aspect=src.pixel_aspect, n_faces=len(faces),
                   n_tracks=src.num_tracks, **media_facts(path, src))
        sampled = (segment_note(src.kind, cfg.start, cfg.end, rec["duration_s"])  # what the frames were: said with
                   + unreadable_note(len(src.unreadable), len(src.frames)))  # or without a face
        sampled += [first_frame_only(src.image_frames)] if src.image_frames > 1 else []
        deinterlaced = deinterlaced_note(src.deinterlaced, len(src.frames))
        if not faces:
            rec.update(status="no_face", error=no_face_error(src.kind, len(src.frames), rec["width"], rec["height"],
                                                             cfg.detector.detect_side, src.image_frames),
                       notes=sampled + deinterlaced,
                       timing={"decode_s": t_decode, "detect_s": t_detect, "model_s": 0.0, "total_s": time.perf_counter() - t0})
            return rec
        t1 = time.perf_counter()
        out = self._score([f.crop for f in faces])
        t_model = time.perf_counter() - t1
        scores = out["p"]
        if not np.isfinite(scores).all():  # an overflow in reduced precision: that file's error, not a traceback
            advice = ("scan it with --precision fp32" if self.precision != "fp32" else "the model file may be damaged"
                      if self.disk_bank is None else "the model file or the --bank folder may be damaged (rebuild it)")
            rec.update(status="error", error=f"{path_text(path)}: the model gave no number (NaN) for "
                       f"{int((~np.isfinite(scores)).sum())} of {scores.size} faces in {self.precision}: {advice}",
                       timing={"total_s": time.perf_counter() - t0})
            return rec
        tids = np.array([f.track_id for f in faces])
        fids = np.array([f.frame_index for f in faces])
        confs = np.array([f.confidence for f in faces])
        rec["score"] = float(aggregate(scores, cfg.aggregation, track_ids=tids, frame_ids=fids, confidences=confs))
        rec["verdict"] = "FAKE" if rec["score"] >= self.threshold else "REAL"
        rec["score_interval"] = frame_interval(scores, cfg.aggregation, frame_ids=fids, track_ids=tids,
                                               level=INTERVAL_LEVEL)
        per_track = track_scores(scores, tids, "mean", frame_ids=fids)
        rec["tracks"] = [{"track_id": int(t), "score": float(s), "n_faces": int((tids == t).sum())} for t, s in sorted(per_track.items())]
        for k, f in enumerate(faces):
            rec["faces"].append({
                "frame_index": int(f.frame_index), "time": float(f.time), "track_id": int(f.track_id),
                "box": [round(float(v), 1) for v in f.box], "confidence": float(f.confidence), "score": float(scores[k]),
                "crop": f.crop, "attention": out["sal"][k].astype(np.float32),
                "neighbours": [self._neighbour(int(s), float(v)) for s, v in zip(out["nb"][k], out["sim"][k])],
            })
        rec["notes"] = (sampled + reliability_notes(rec["faces"], self.threshold, rec["verdict"]) + deinterlaced
                        + many_faces_note(rec["tracks"], rec["verdict"], self.threshold, src.kind)
                        + close_call_note(rec["score_interval"], self.threshold, rec["frames_with_face"],
                                          cfg.num_frames, len(src.frames))
                        + few_frames_note(src.kind, rec["frames_with_face"], rec["score_interval"]))
        if self.references is not None:
            rec["reference"] = self._reference_summary(rec["faces"], rec["sha256"])
            rec["notes"] += unlike_reference_note(rec["reference"], src.kind) + self_reference_note(rec["reference"])
        self._trim_arrays(rec)
        if src.still is not None and cfg.keep_crops > 0:  # the photo, for the report to number its faces on
            from forgerydet.scan.figures import shrink  # the report's module (with scikit-learn): only for a report

            rec["overview"] = shrink(src.still, OVERVIEW_SIDE)
        rec["timing"] = {"decode_s": t_decode, "detect_s": t_detect, "model_s": t_model, "total_s": time.perf_counter() - t0}
        return rec

    def _reference_summary(self, faces: list[dict[str, Any]], sha256: str | None) -> dict[str, Any]:
        """Which enrolled faces a file was compared with: each one's uses and mean similarity, most used first."""
        used: dict[int, list[float]] = {}
        for f in faces:
            for nb in f["neighbours"]:
                used.setdefault(nb["slot"], []).append(nb["similarity"])
        order = sorted(used, key=lambda s: (-len(used[s]), -float(np.mean(used[s]))))
        r = self.references
        assert r is not None
        nearest = [f["neighbours"][0]["similarity"] for f in faces if f["neighbours"]]
        return {"name": r.name, "file": str(r.path), "enrolled_faces": r.bank.filled,
                # each face's similarity to its nearest enrolled face, and the enrolled faces' to their nearest other
                "nearest_similarity_median": round(float(np.median(nearest)), 4) if nearest else None,
                "enrolled_similarity_median": self.enrolled_similarity, "tracks": track_likeness(faces),
                "enrolled_from_this_file": sum(1 for e in r.entries if sha256 and e.get("sha256") == sha256),
                "used": [{"slot": s, "source": r.entries[s]["source"], "frame_index": r.entries[s]["frame_index"],
                          "times": len(used[s]), "mean_similarity": round(float(np.mean(used[s])), 4)} for s in order]}

    @functools.cached_property
    def enrolled_similarity(self) -> float | None:
        """The median, over the enrolled faces, of each one's cosine similarity to its nearest other enrolled face:
        how alike the person's own faces are (None with fewer than two)."""
        bank = self.references.bank
        if bank.filled < 2:
            return None
        return round(float(bank.nearest_other_similarity().median()), 4)

    def _trim_arrays(self, rec: dict[str, Any]) -> None:
        """Keep crops/attention only for the faces a report will show, so memory stays flat over many files."""
        keep: set[int] = set()
        if self.config.keep_crops > 0:
            from forgerydet.scan.records import select_faces

            keep = set(select_faces(rec["faces"], self.config.keep_crops))
        for i, f in enumerate(rec["faces"]):
            if i not in keep:
                f["crop"] = None
                f["attention"] = None
                for nb in f["neighbours"]:
                    nb.pop("thumb", None)

    def scan(self, paths: str | Path | list[str | Path], progress: Progress | None = None) -> Iterator[dict[str, Any]]:
        """Expand paths (files, folders, globs) and yield one record per file; a path that names nothing scannable is
        an error record, and what is not a path (None, an image array) a ForgeryDetError. One path may be given alone."""
        files, bad = expand_scan_paths(scan_paths(paths), self.threshold)
        yield from bad
        for i, f in enumerate(files):
            if progress:
                progress(i, len(files), str(f))
            yield self.scan_file(f)
        if progress:
            progress(len(files), len(files), "")
