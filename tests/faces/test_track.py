"""The IoU face tracker (faces/track.py): box IoU, tracks that follow faces, threshold and gap."""

from __future__ import annotations

import numpy as np
import pytest

from forgerydet.faces.track import assign_tracks, box_iou


def test_box_iou_values():
    a = np.array([[0, 0, 10, 10]])
    b = np.array([[0, 0, 10, 10], [5, 0, 15, 10], [20, 20, 30, 30], [0, 0, 0, 0]])
    assert box_iou(a, b)[0].tolist() == pytest.approx([1.0, 50 / 150, 0.0, 0.0])


def test_tracks_follow_moving_faces_and_start_new_ones():
    left = lambda x: [x, 0, x + 20, 20]  # noqa: E731
    right = lambda x: [100 + x, 0, 120 + x, 20]  # noqa: E731
    frames = [
        [left(0), right(0)],
        [right(3), left(2)],  # order swapped: matching is by overlap, not position in the list
        [left(4)],  # right face missed on this frame
        [right(6), left(6), [300, 300, 320, 320]],  # right comes back, a third face appears
        [],
    ]
    ids = assign_tracks([np.array(b, float) for b in frames], iou_threshold=0.3)
    assert ids == [[0, 1], [1, 0], [0], [1, 0, 2], []]


def test_tracker_threshold_and_gap():
    frames = [np.array([[0, 0, 10, 10]]), np.array([[6, 0, 16, 10]])]  # IoU 4/16 = 0.25
    assert assign_tracks(frames, iou_threshold=0.3) == [[0], [1]]
    assert assign_tracks(frames, iou_threshold=0.2) == [[0], [0]]
    gap = [np.array([[0, 0, 10, 10]]), np.zeros((0, 4)), np.zeros((0, 4)), np.array([[0, 0, 10, 10]])]
    assert assign_tracks(gap, max_gap=2) == [[0], [], [], [0]]
    assert assign_tracks(gap, max_gap=1) == [[0], [], [], [1]]
    # two boxes competing for one track: the better overlap wins it
    two = [np.array([[0, 0, 10, 10]]), np.array([[3, 0, 13, 10], [1, 0, 11, 10]])]
    assert assign_tracks(two, iou_threshold=0.3) == [[0], [1, 0]]


def test_a_track_seen_in_the_last_sample_keeps_its_face_against_one_hidden_since():
    """Two people cross: A (track 0) is hidden behind B after sample 1; B (track 1) then moves to where A was last
    seen. By IoU alone B's box joined A's old track (0.62 against 0.48 with B's own last box) and track 0 held two
    people (h7's pass). The tracks seen most recently are matched first."""
    a = [100, 100, 200, 200]
    b0, b1 = [150, 100, 250, 200], [130, 100, 230, 200]  # B beside A, then B moving left over A, who is hidden
    b2 = [105, 100, 205, 200]  # B again, now overlapping A's last box more than its own last one
    assert box_iou(np.array([b2]), np.array([a]))[0, 0] > box_iou(np.array([b2]), np.array([b1]))[0, 0] >= 0.3
    ids = assign_tracks([np.array([a, b0]), np.array([b1]), np.array([b2])])
    assert ids == [[0, 1], [1], [1]]  # not [[0, 1], [1], [0]]
    assert assign_tracks([np.array([a]), np.zeros((0, 4)), np.array([a])]) == [[0], [], [0]]  # a gap alone: kept
