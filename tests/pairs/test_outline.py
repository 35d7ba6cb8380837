"""The blending region's outline from landmarks: the face frame fitted to 5 points, and the four mask kinds."""

from __future__ import annotations

import numpy as np
import pytest

from forgerydet.errors import ForgeryDetError
from forgerydet.pairs.outline import PARTS, face_frame, five_points, outline
from forgerydet.pairs.sbi import SBIConfig

LM5 = np.array([[80.0, 100.0], [140.0, 100.0], [110.0, 133.0], [83.0, 160.0], [137.0, 160.0]])  # s = 60 px


def test_face_frame_maps_the_mean_face_onto_the_points():
    a, s = face_frame(LM5)
    assert s == pytest.approx(60.0)
    mid_eyes = a @ [0.0, 0.0, 1.0]
    mouth = a @ [0.0, 1.0, 1.0]
    np.testing.assert_allclose(mid_eyes, [110.0, 100.0], atol=2.0)
    np.testing.assert_allclose(mouth, [110.0, 160.0], atol=2.0)
    with pytest.raises(ForgeryDetError, match="degenerate"):
        face_frame(np.full((5, 2), 10.0))


def test_five_points_of_68_landmarks():
    lm = np.zeros((68, 2))
    lm[36:42], lm[42:48], lm[30], lm[48], lm[54] = LM5[0], LM5[1], LM5[2], LM5[3], LM5[4]
    np.testing.assert_array_equal(five_points(lm), LM5)
    np.testing.assert_array_equal(five_points(LM5), LM5)


def test_local_outlines_lie_on_one_part_and_whole_ones_round_the_face():
    centres = {name: np.array([110.0 + 60.0 * cx, 100.0 + 60.0 * cy]) for name, (cx, cy, _, _) in PARTS.items()}
    hit, frame = set(), face_frame(LM5)[0]
    for seed in range(40):
        pts, part = outline(LM5, frame, np.random.default_rng(seed), SBIConfig(mask_probs=(0, 0, 0, 1)))
        assert part is not None and 0.5 < part < 2.2  # the part's smaller diameter, in eye distances
        name = min(centres, key=lambda n: np.linalg.norm(pts.mean(0) - centres[n]))
        assert np.linalg.norm(pts.mean(0) - centres[name]) < 10, seed
        hit.add(name)
        whole, none = outline(LM5, frame, np.random.default_rng(seed), SBIConfig())
        assert none is None
        assert np.ptp(whole[:, 0]) > np.ptp(pts[:, 0]) and np.ptp(whole[:, 1]) > np.ptp(pts[:, 1]), seed
    assert hit == set(PARTS)
