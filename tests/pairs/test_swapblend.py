"""Pseudo-fakes blended from another person: the donor's face lands on the target's, only inside the face, never
from the donor's padding, and the donor is another person in a near pose."""

from __future__ import annotations

import cv2
import numpy as np
import pytest

from forgerydet.errors import ForgeryDetError
from forgerydet.pairs.sbi import SBIConfig
from forgerydet.pairs.swapblend import content_box, pick_donor, pose_key, similarity, swap_blend, swap_masks

SIZE = 224


@pytest.fixture(scope="module")
def faces(astronaut: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """(target, its landmarks, donor, its landmarks): the astronaut's face cropped at 2x its box, and as donor the
    same photo colour-inverted, rotated 10 degrees, scaled 0.8 and padded with black, so every donor pixel differs
    from the target's and its placement differs too."""
    from facenet_pytorch import MTCNN

    boxes, _, points = MTCNN(device="cpu").detect(astronaut, landmarks=True)
    box, lm = np.asarray(boxes[0], np.float64), np.asarray(points[0], np.float64)
    cx, cy = (box[0] + box[2]) / 2, (box[1] + box[3]) / 2
    side = int(round(2.0 * max(box[2] - box[0], box[3] - box[1])))
    x0, y0 = int(round(cx - side / 2)), int(round(cy - side / 2))
    padded = cv2.copyMakeBorder(astronaut, side, side, side, side, cv2.BORDER_REFLECT_101)
    crop = cv2.resize(padded[y0 + side: y0 + 2 * side, x0 + side: x0 + 2 * side], (SIZE, SIZE),
                      interpolation=cv2.INTER_AREA)
    t_lm = (lm - [x0, y0]) * (SIZE / side)
    m = cv2.getRotationMatrix2D((SIZE / 2, SIZE / 2), 10, 0.8)
    donor = cv2.warpAffine(255 - crop, m, (SIZE, SIZE), borderMode=cv2.BORDER_CONSTANT, borderValue=0)
    donor = np.clip(donor.astype(int) + 20, 0, 255).astype(np.uint8)  # the picture is never black ...
    donor[cv2.warpAffine(np.ones((SIZE, SIZE), np.uint8), m, (SIZE, SIZE)) == 0] = 0  # ... its padding is
    d_lm = t_lm @ m[:, :2].T + m[:, 2]
    return crop, t_lm, donor, d_lm


def test_similarity_recovers_a_rotation_scale_and_shift():
    rng = np.random.default_rng(0)
    src = rng.uniform(0, 100, (5, 2))
    a = 1.3 * np.array([[np.cos(0.4), -np.sin(0.4)], [np.sin(0.4), np.cos(0.4)]])
    m = similarity(src, src @ a.T + [7.0, -3.0])
    np.testing.assert_allclose(m, np.hstack([a, [[7.0], [-3.0]]]), atol=1e-9)
    mirrored = src * [-1, 1]  # a mirror image is not a similarity: the fit stays a rotation, never a reflection
    assert np.linalg.det(similarity(src, mirrored)[:, :2]) > 0


def test_the_fake_is_the_target_outside_the_mask_and_the_donor_inside(faces):
    target, t_lm, donor, d_lm = faces
    for seed in range(8):
        fake, alpha = swap_blend(target, t_lm, donor, d_lm, np.random.default_rng(seed))
        assert fake.shape == target.shape and fake.dtype == np.uint8 and alpha.shape == target.shape[:2]
        np.testing.assert_array_equal(fake[alpha == 0], target[alpha == 0])
        full = alpha > 0.9 * alpha.max()  # the blend ratio (0.25 .. 1) caps alpha
        assert full.mean() > 0.05, seed  # a face's worth of pixels is replaced
        # the landmarks of the target are covered: the donor's face sits on the target's
        assert (alpha[t_lm[:, 1].astype(int), t_lm[:, 0].astype(int)] > 0.2 * alpha.max()).all(), seed
        # the donor is the colour-inverted photo, colour-matched back: its pixels are not the target's
        assert np.abs(fake[full].astype(int) - target[full]).mean() > 8 * alpha.max(), seed
        again, _ = swap_blend(target, t_lm, donor, d_lm, np.random.default_rng(seed))
        np.testing.assert_array_equal(fake, again)


def test_the_donors_black_padding_is_never_blended_in(faces):
    target, t_lm, donor, d_lm = faces
    half = donor.copy()
    half[:, SIZE // 2:] = 0  # the donor's right half is padding: only its left half may reach the fake
    assert content_box(half)[2] == SIZE // 2
    # which donor column each target pixel is taken from
    m = np.vstack([similarity(d_lm, t_lm), [0, 0, 1]])
    ys, xs = np.mgrid[0:SIZE, 0:SIZE]
    donor_x = (np.linalg.inv(m)[0] @ np.stack([xs.ravel(), ys.ravel(), np.ones(xs.size)])).reshape(SIZE, SIZE)
    padding, picture = donor_x > SIZE // 2 + 8, donor_x < SIZE // 2 - 8  # 8 px for the soft edge
    hit = np.zeros(target.shape[:2], bool)
    for seed in range(6):
        fake, alpha = swap_blend(target, t_lm, half, d_lm, np.random.default_rng(seed))
        # where the donor has no picture the fake is the target's (up to the soft edge's tail)
        assert alpha[padding].max() < 0.02, seed
        hit |= alpha > 0.5 * alpha.max()
    assert (hit & picture).sum() > 0.02 * SIZE * SIZE


def test_content_box_of_a_padded_crop():
    img = np.zeros((50, 60, 3), np.uint8)
    img[10:40, 5:55] = 120
    assert content_box(img) == (5, 10, 55, 40)
    assert content_box(np.zeros((8, 8, 3), np.uint8)) == (0, 0, 8, 8)


def test_the_donor_is_another_person_in_the_nearest_pose():
    rng = np.random.default_rng(0)
    base = np.array([[30.0, 40], [70, 40], [50, 60], [35, 80], [65, 80]])
    keys = np.stack([pose_key(base + rng.normal(0, s, base.shape)) for s in (0.0, 0.5, 3, 6, 9)])
    groups = np.array(["me", "a", "b", "c", "d"])
    # the pose key ignores the face's size and place in the crop
    np.testing.assert_allclose(pose_key(2.0 * base + 17), keys[0], atol=1e-12)
    for seed in range(5):
        assert pick_donor(keys, groups, keys[0], "me", np.random.default_rng(seed), candidates=10) == 1
        assert pick_donor(keys, groups, keys[0], "me", np.random.default_rng(seed), candidates=1) != 0
    assert pick_donor(keys[:1], groups[:1], keys[0], "me", rng) is None
    with pytest.raises(ForgeryDetError, match="degenerate"):
        pose_key(np.ones((5, 2)))


def test_swaps_replace_the_inner_face_and_keep_the_share_of_local_masks():
    assert swap_masks(SBIConfig()).mask_probs == (0.6, 0.0, 0.4, 0.0)  # never the forehead-raised 'extended' mask
    face, extended, inner, local = swap_masks(SBIConfig.with_local(0.25)).mask_probs
    assert extended == 0.0 and local == pytest.approx(0.25) and (face, inner) == pytest.approx((0.45, 0.3))
    assert swap_masks(SBIConfig.with_local(1.0)).mask_probs == (0.0, 0.0, 0.0, 1.0)
