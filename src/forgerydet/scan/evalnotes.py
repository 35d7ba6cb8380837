"""What `evaluate`'s figures should be read with, as notes in its table and metrics.json: real files that are the
checkpoint's own training faces or were cut from its training sources, videos given with --crops, and face crops of
one class that all come from one video, whose intervals then count its frames as independent faces."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from forgerydet.errors import path_text
from forgerydet.faces.index import SOURCE_FOLDER, crop_source, frame_numbers
from forgerydet.faces.media import IMAGE_EXTS, file_key
from forgerydet.io import source_key
from forgerydet.model.checkpoint import training_faces
from forgerydet.model.meta import bank_faces
from forgerydet.pairs.labels import Item

MIN_CROPS = 3  # fewer crops of a class than this: no one-source note (two frames of a video say little either way)


def evaluation_notes(items: list[Item], crops: bool, meta: dict[str, Any]) -> list[str]:
    """What the metrics should be read with: real files that are the checkpoint's own bank faces (the bank recalls
    each as its own nearest real face, so they score more real than unseen faces), --crops given for videos, and
    crops of one class that all look cut from one video (one_source_notes)."""
    notes = []
    bank = bank_faces(meta)
    reals = [(it.path, file_key(it.path)) for it in items if it.label == 0]  # each resolved once
    seen = [p for p, where in reals if where in bank]
    if seen:
        whose = ("faces its bank was rebuilt from" if (meta.get("extra") or {}).get("bank_rebuilt_from")
                 else "faces this checkpoint trained on, whose bank was filled from them")
        notes.append(f"{len(seen)} of the real files are {whose} (e.g. {path_text(seen[0])}): the nearest bank face "
                     f"can be the face itself, so they score more real than unseen faces would; evaluate on faces it "
                     f"never trained on")
    # a video (or photo) whose crops it trained on: `pairs` names a source's crop folder by io.source_key
    cut = training_faces(meta)
    sources = [p for p, where in reals if where not in bank and source_key(p) in cut]
    if sources:
        notes.append(f"{len(sources)} of the real files are videos or photos this checkpoint's training faces were cut "
                     f"from (e.g. {path_text(sources[0])}): it has seen those faces, so they flatter its figures; "
                     f"evaluate on sources it never trained on (FaceForensics++: pairs --splits, then evaluate --split "
                     f"test.json)")
    videos = sum(1 for it in items if it.path.suffix.lower() not in IMAGE_EXTS)
    if crops and videos:
        notes.append(f"--crops applies to images: the {videos} video{'' if videos == 1 else 's'} listed "
                     f"{'was' if videos == 1 else 'were'} scanned as `scan` does, with face detection")
    return notes + (one_source_notes(items) if crops else [])


def one_source_notes(items: list[Item]) -> list[str]:
    """A note for each class whose face crops (MIN_CROPS or more) all look cut from one video or photo, by their
    names (faces.index.crop_source: the DFDC crops 'abarnvbtwb-003-00.png', pairs' NAME-1234abcd/ folders): the
    bootstrap resamples crops as independent files, so the AUC's interval is narrower than one source supports.
    Only crops named as frames of a video are taken for one source (_frame_of_a_video): 'face_0001.png' is not."""
    notes = []
    for label, name in ((0, "real"), (1, "fake")):
        crops = [it.path for it in items if it.label == label and it.path.suffix.lower() in IMAGE_EXTS]
        sources = {crop_source(p) for p in crops}
        named = all(_frame_of_a_video(p) for p in crops)
        if len(crops) >= MIN_CROPS and len(sources) == 1 and named:
            notes.append(f"the {len(crops)} {name} crops look cut from one video or photo ({Path(sources.pop()).name}):"
                         f" the AUC interval resamples them as independent faces, so it is narrower than one source "
                         f"can support; add crops of other {name} videos")
    return notes


def _frame_of_a_video(path: Path) -> bool:
    """Whether a crop's name says which video frame it is: in a crop folder pairs/extract write (NAME-1234abcd/), or
    a name ending in two numbers, frame and face (DFDC's 'abarnvbtwb-003-00'); one number ('face_0001', an LFW
    'Person_Name_0001') numbers photos or crops as often as frames, so it is no sign of one video."""
    return SOURCE_FOLDER.fullmatch(path.parent.name) is not None or len(frame_numbers(path)) >= 2
