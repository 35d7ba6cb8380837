"""Greedy IoU tracking of face boxes across the sampled frames of one video.

Pure functions over boxes: each frame's boxes are matched to the live tracks' last boxes, the tracks seen
most recently first (a matching cascade, as DeepSORT's) and within them highest IoU first, a pair counting
only when IoU >= `iou_threshold`; unmatched boxes start new tracks. Track ids are 0, 1, 2, ... in order of
first appearance. The cascade keeps a person who was hidden for a few samples from taking the box of one seen
in the sample before: by IoU alone, a face that moved into the place where the hidden one was last seen
joined the hidden one's track, and one track held two people.
"""

from __future__ import annotations

from typing import Sequence

import numpy as np


def box_iou(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """IoU matrix (N,M) between boxes a (N,4) and b (M,4) in x1,y1,x2,y2."""
    a = np.asarray(a, np.float64).reshape(-1, 4)
    b = np.asarray(b, np.float64).reshape(-1, 4)
    tl = np.maximum(a[:, None, :2], b[None, :, :2])  # (N,M,2)
    br = np.minimum(a[:, None, 2:], b[None, :, 2:])  # (N,M,2)
    inter = np.clip(br - tl, 0, None).prod(-1)  # (N,M)
    area_a = np.clip(a[:, 2:] - a[:, :2], 0, None).prod(-1)  # (N,)
    area_b = np.clip(b[:, 2:] - b[:, :2], 0, None).prod(-1)  # (M,)
    union = area_a[:, None] + area_b[None, :] - inter  # (N,M)
    return np.where(union > 0, inter / np.where(union > 0, union, 1), 0.0)


def assign_tracks(
    boxes_per_frame: Sequence[np.ndarray],
    iou_threshold: float = 0.3,
    max_gap: int | None = None,
) -> list[list[int]]:
    """Track ids for every box of every frame: result[t][k] is the id of boxes_per_frame[t][k].

    iou_threshold: the least IoU with a track's last box for a box to join that track.
    max_gap:       a track not seen for more than this many frames is closed (None: never closed).
    """
    if not 0.0 < iou_threshold <= 1.0:
        raise ValueError(f"iou_threshold={iou_threshold} must be in (0, 1]")
    last_box: list[np.ndarray] = []  # per track id
    last_seen: list[int] = []
    result: list[list[int]] = []
    for t, boxes in enumerate(boxes_per_frame):
        boxes = np.asarray(boxes, np.float64).reshape(-1, 4)
        ids = [-1] * len(boxes)
        live = [k for k in range(len(last_box)) if max_gap is None or t - last_seen[k] <= max_gap + 1]
        for age in sorted({t - last_seen[k] for k in live}) if len(boxes) else []:  # the most recently seen first
            group = [k for k in live if t - last_seen[k] == age]
            iou = box_iou(boxes, np.stack([last_box[k] for k in group]))  # (N,G)
            used_tracks: set[int] = set()
            for flat in np.argsort(-iou, axis=None, kind="stable"):
                i, j = divmod(int(flat), len(group))
                if iou[i, j] < iou_threshold:
                    break
                if ids[i] != -1 or j in used_tracks:
                    continue
                ids[i] = group[j]
                used_tracks.add(j)
        for i, box in enumerate(boxes):
            if ids[i] == -1:
                ids[i] = len(last_box)
                last_box.append(box)
                last_seen.append(t)
            else:
                last_box[ids[i]] = box
                last_seen[ids[i]] = t
        result.append(ids)
    return result
