"""Self-blended pseudo-fakes on a real face: change only inside the face, soft mask, deterministic."""

from __future__ import annotations

import cv2
import numpy as np
import pytest

from forgerydet.errors import ForgeryDetError
from forgerydet.pairs.sbi import SBIConfig, face_mask, self_blend

SIZE = 224
SEEDS = range(12)


@pytest.fixture(scope="module")
def face(astronaut: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(crop (224,224,3) uint8, landmarks (5,2) in crop pixels): MTCNN on the astronaut photo, then a square
    crop of 2x the face box so there is background around the face for the mask to leave alone."""
    from facenet_pytorch import MTCNN

    boxes, probs, points = MTCNN(keep_all=True, device="cpu").detect(astronaut, landmarks=True)
    assert boxes is not None and len(boxes) == 1 and float(probs[0]) > 0.99
    box = np.asarray(boxes[0], np.float64)
    lm = np.asarray(points[0], np.float64)  # (5,2)
    cx, cy = (box[0] + box[2]) / 2, (box[1] + box[3]) / 2
    side = int(round(2.0 * max(box[2] - box[0], box[3] - box[1])))
    x0, y0 = int(round(cx - side / 2)), int(round(cy - side / 2))
    padded = cv2.copyMakeBorder(astronaut, side, side, side, side, cv2.BORDER_REFLECT_101)
    crop = padded[y0 + side : y0 + 2 * side, x0 + side : x0 + 2 * side]
    crop = cv2.resize(crop, (SIZE, SIZE), interpolation=cv2.INTER_AREA)
    return crop, (lm - [x0, y0]) * (SIZE / side)


def test_fake_differs_only_inside_the_face(face):
    img, lm = face
    lo, hi = lm.min(0), lm.max(0)
    # the outline (jaw, brows) reaches ~0.7 box sizes beyond the 5 points; dilation, blur tails and the source
    # shift add up to ~0.6 more (1.28 at most over 300 seeds)
    margin = 1.5 * (hi - lo)
    box_lo, box_hi = lo - margin, hi + margin
    assert (box_lo > 0).all() and (box_hi < SIZE).all(), "the box must leave background to check"
    for seed in SEEDS:
        fake, mask = self_blend(img, lm, np.random.default_rng(seed))
        assert fake.shape == img.shape and fake.dtype == np.uint8
        assert mask.shape == img.shape[:2] and mask.dtype == np.float32
        assert 0.0 <= mask.min() and mask.max() <= 1.0
        outside = mask == 0
        np.testing.assert_array_equal(fake[outside], img[outside])
        ys, xs = np.nonzero(mask > 0)
        assert xs.min() >= box_lo[0] and xs.max() <= box_hi[0], seed
        assert ys.min() >= box_lo[1] and ys.max() <= box_hi[1], seed
        inside = mask > 0.2
        assert np.abs(fake[inside].astype(int) - img[inside]).max() > 10, seed
        # the facial features themselves lie inside the blended region
        assert (mask[lm[:, 1].astype(int), lm[:, 0].astype(int)] > 0).all(), seed


def test_mask_is_soft_and_face_sized(face):
    img, lm = face
    eye_dist = float(np.linalg.norm(lm[1] - lm[0]))
    for seed in SEEDS:
        m = face_mask(img.shape, lm, np.random.default_rng(seed))
        assert m.dtype == np.float32 and m.max() == pytest.approx(1.0)
        edge = (m > 0.05) & (m < 0.95)
        assert edge.sum() > 4 * eye_dist, seed  # a band of intermediate values all round the face
        step = max(np.abs(np.diff(m, axis=0)).max(), np.abs(np.diff(m, axis=1)).max())
        assert step < 0.5, seed  # no hard edge
        area = (m > 0.5).sum()
        assert 1.5 * eye_dist**2 < area < 8 * eye_dist**2, seed  # a face, neither a dot nor the frame


def test_deterministic_for_a_seed(face):
    img, lm = face
    f1, m1 = self_blend(img, lm, np.random.default_rng(7))
    f2, m2 = self_blend(img, lm, np.random.default_rng(7))
    np.testing.assert_array_equal(f1, f2)
    np.testing.assert_array_equal(m1, m2)
    masks = [face_mask(img.shape, lm, np.random.default_rng(s)) for s in (1, 2)]
    assert not np.array_equal(masks[0], masks[1])


def test_blend_ratio_follows_config(face):
    img, lm = face
    _, mask = self_blend(img, lm, np.random.default_rng(3), SBIConfig(blend_ratios=(0.5,)))
    assert mask.max() == pytest.approx(0.5)


def test_dense_landmarks_use_their_hull(face):
    """68 points (a synthetic ring here) blend inside their own hull, not the 5-point template."""
    img, lm = face
    centre = lm.mean(0)
    angle = np.linspace(0, 2 * np.pi, 68, endpoint=False)
    ring = centre + 30 * np.stack([np.cos(angle), np.sin(angle)], 1)  # (68,2)
    ring[36:42], ring[42:48] = lm[0], lm[1]  # eyes, used for the face size
    ring[30], ring[48], ring[54] = lm[2], lm[3], lm[4]
    cfg = SBIConfig(morph_size=(0.06, 0.07), blur_size=(0.06, 0.07), dilate_p=0.0)
    m = face_mask(img.shape, ring, np.random.default_rng(0), cfg)
    ys, xs = np.nonzero(m > 0)
    radius = np.hypot(xs - centre[0], ys - centre[1]).max()
    assert 25 < radius < 45


@pytest.mark.parametrize(
    "img, lm, msg",
    [
        (np.zeros((64, 64), np.uint8), np.zeros((5, 2)), "uint8 RGB"),
        (np.zeros((64, 64, 3), np.float32), np.zeros((5, 2)), "uint8 RGB"),
        (np.zeros((64, 64, 3), np.uint8), np.zeros((4, 2)), "shape"),
        (np.zeros((64, 64, 3), np.uint8), np.full((5, 2), np.nan), "no landmarks"),
        (np.zeros((64, 64, 3), np.uint8), np.full((5, 2), 10.0), "degenerate"),
    ],
)
def test_bad_inputs_say_what_is_wrong(img, lm, msg):
    with pytest.raises(ForgeryDetError, match=msg):
        self_blend(img, lm, np.random.default_rng(0))


def test_local_masks_cover_one_facial_part(face):
    """'local' masks (train --sbi-local) blend one part - eyes, nose, mouth or lower face - not the whole face:
    a fraction of a whole-face mask, centred on that part, and each part comes up."""
    img, lm = face
    eye_dist = float(np.linalg.norm(lm[1] - lm[0]))
    eyes_y, mouth_y = (lm[0, 1] + lm[1, 1]) / 2, (lm[3, 1] + lm[4, 1]) / 2
    local, whole = SBIConfig(mask_probs=(0, 0, 0, 1)), SBIConfig()
    near, areas = {"eyes": 0, "mouth": 0}, []
    for seed in range(40):
        m = face_mask(img.shape, lm, np.random.default_rng(seed), local)
        assert m.dtype == np.float32 and m.max() == pytest.approx(1.0)
        areas.append((m > 0.5).sum())
        assert 0 < areas[-1] < 3 * eye_dist**2, seed  # the lower face, grown by dilation, at most
        ys, xs = np.nonzero(m > 0.5)
        assert lm[0, 0] - eye_dist < xs.mean() < lm[1, 0] + eye_dist, seed
        assert eyes_y - eye_dist < ys.mean() < mouth_y + eye_dist, seed
        near["eyes"] += abs(ys.mean() - eyes_y) < 0.25 * eye_dist
        near["mouth"] += abs(ys.mean() - mouth_y) < 0.25 * eye_dist
    assert min(near.values()) >= 4, near
    whole_areas = [(face_mask(img.shape, lm, np.random.default_rng(s), whole) > 0.5).sum() for s in range(40)]
    assert np.median(areas) < 0.4 * np.median(whole_areas)


def test_a_share_of_local_masks_leaves_the_other_kinds_in_proportion():
    assert SBIConfig.with_local(0.0) == SBIConfig()
    assert SBIConfig.with_local(0.2).mask_probs == pytest.approx((0.4, 0.2, 0.2, 0.2))
    assert SBIConfig.with_local(1.0).mask_probs == (0.0, 0.0, 0.0, 1.0)
    with pytest.raises(ForgeryDetError, match=r"\[0, 1\]"):
        SBIConfig.with_local(1.5)
    with pytest.raises(ForgeryDetError, match="mask_probs"):
        SBIConfig(mask_probs=(0.5, 0.25, 0.25))  # four kinds since 'local'


def test_dense_landmarks_take_local_masks_too(face):
    """With 68 points the hull is the whole-face mask; a local share replaces it by a facial part placed by the
    same 5 points, so it lies inside the hull and is smaller."""
    img, lm = face
    centre = lm.mean(0)
    angle = np.linspace(0, 2 * np.pi, 68, endpoint=False)
    ring = centre + 60 * np.stack([np.cos(angle), np.sin(angle)], 1)  # (68,2), around the whole face
    ring[36:42], ring[42:48] = lm[0], lm[1]
    ring[30], ring[48], ring[54] = lm[2], lm[3], lm[4]
    hull = [(face_mask(img.shape, ring, np.random.default_rng(s)) > 0.5).sum() for s in range(8)]
    local = [(face_mask(img.shape, ring, np.random.default_rng(s), SBIConfig(mask_probs=(0, 0, 0, 1))) > 0.5).sum()
             for s in range(8)]
    assert max(local) < min(hull)
