"""Shared by the pairs tests: a small extract config, synthetic FF++ trees and mapping files, crop readers."""

from __future__ import annotations

import csv

import cv2
import numpy as np

from forgerydet.faces.detect import DetectorConfig
from forgerydet.faces.pipeline import ExtractConfig
from tests._faces_util import write_video

CFG = ExtractConfig(num_frames=2, detector=DetectorConfig(size=64, detect_side=192, batch_size=4))


def brighter(frame: np.ndarray) -> np.ndarray:
    return np.clip(frame.astype(np.int16) + 30, 0, 255).astype(np.uint8)


def write_img(path, rgb):
    path.parent.mkdir(parents=True, exist_ok=True)
    assert cv2.imwrite(str(path), cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR))
    return path


def crop(out, rel):
    return cv2.imread(str(out / rel)).astype(np.int16)


def split_groups(rows):
    by = {}
    for r in rows:
        by.setdefault(r["split"], set()).add(r["group"])
    return by


def ffpp_tree(root, frames_for, comps=("c23",)):
    """original_sequences/youtube/<comp>/videos/{000,001}.mp4 and two methods of fakes A_B."""
    for comp in comps:
        for a in ("000", "001"):
            write_video(root / f"original_sequences/youtube/{comp}/videos/{a}.mp4", frames_for(a, False))
        for method in ("Deepfakes", "Face2Face"):
            for a, b in (("000", "001"), ("001", "000")):
                write_video(root / f"manipulated_sequences/{method}/{comp}/videos/{a}_{b}.mp4", frames_for(a, True))
        # a DeepFakeDetection-style name that matches no youtube id, and a stray file
        write_video(root / f"manipulated_sequences/Deepfakes/{comp}/videos/01_02__walk__ABC.mp4", frames_for("000", True))
        (root / f"manipulated_sequences/Deepfakes/{comp}/videos/readme.txt").write_text("x")


def write_mapping(d, rows, extra=()):
    path = d / "mapping.csv"
    with open(path, "w", newline="") as fh:
        w = csv.writer(fh)
        w.writerow(["real", "fake", *extra])
        w.writerows(rows)
    return path
