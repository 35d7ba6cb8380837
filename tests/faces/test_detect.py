"""Cropping geometry, the IoU tracker (pure, hand-made boxes) and MTCNN detection on the astronaut photo."""

from __future__ import annotations

import cv2
import numpy as np
import pytest

from forgerydet.errors import ForgeryDetError
from forgerydet.faces.detect import DetectorConfig, FaceDetector, crop_face, crop_faces, square_box
from forgerydet.faces.media import Frame
from tests._faces_util import head, tight_pair

# ---------------------------------------------------------------- cropping (no detector)


def test_square_box_adds_margin_around_the_centre():
    sq = square_box(np.array([10, 20, 50, 100]), margin=0.5)  # 40 x 80 box, centre (30, 60)
    assert sq.tolist() == [-30.0, 0.0, 90.0, 120.0]  # side 1.5 * 80 = 120, same centre


def test_crop_maps_landmarks_and_pads_outside_the_frame():
    img = np.full((100, 120, 3), 200, np.uint8)
    points = np.array([[30, 40], [60, 40], [45, 55], [35, 70], [55, 70]], np.float32)
    for x, y in points.astype(int):
        img[y - 1 : y + 2, x - 1 : x + 2] = (255, 0, 0)
    box = np.array([20, 30, 70, 80], np.float32)  # 50 x 50
    crop, lm, sq = crop_face(img, box, margin=0.2, size=120, landmarks=points)
    assert crop.shape == (120, 120, 3) and sq.tolist() == [15, 25, 75, 85]
    for x, y in lm.round().astype(int):  # every red dot lands at its crop-space landmark
        assert crop[y, x, 0] > 220 and crop[y, x, 1] < 80
    # a box at the corner: the part of the square outside the frame is black, the inside is the frame
    crop, _, sq = crop_face(img, np.array([0, 0, 40, 40]), margin=1.0, size=80)
    assert sq.tolist() == [-20, -20, 60, 60]
    assert crop[:15, :15].max() == 0 and crop[22:30, 22:30].min() == 200


def test_crop_faces_uses_given_boxes_on_another_frame():
    fake = Frame(3, 0.1, np.full((64, 64, 3), 77, np.uint8))
    boxes = np.array([[10, 10, 30, 30], [40, 40, 60, 60]], np.float32)
    faces = crop_faces(fake, boxes, margin=0.0, size=20, track_ids=[5, 6])
    assert [f.track_id for f in faces] == [5, 6] and faces[0].frame_index == 3
    assert all(f.crop.shape == (20, 20, 3) and (f.crop == 77).all() for f in faces)
    assert np.isnan(faces[0].landmarks_crop).all()  # no landmarks given, none invented


def test_config_rejects_nonsense():
    with pytest.raises(ForgeryDetError, match="margin"):
        DetectorConfig(margin=-0.1)
    with pytest.raises(ForgeryDetError, match="min_confidence"):
        DetectorConfig(min_confidence=1.5)
    for bad in (dict(margin=1e9), dict(margin=float("nan")), dict(size=100_000_000), dict(detect_side=10**6)):
        with pytest.raises(ForgeryDetError, match=next(iter(bad))):  # an upper bound too: no absurd allocation
            DetectorConfig(**bad)
    DetectorConfig(margin=4.0, size=2048, detect_side=8192)


# ---------------------------------------------------------------- tracker


# ---------------------------------------------------------------- MTCNN (kept few and small)


@pytest.fixture(scope="module")
def detector():
    return FaceDetector(DetectorConfig(size=64, detect_side=256, batch_size=4))


def _framed(astronaut, side: int) -> np.ndarray:
    """The astronaut's head scaled to side x side, on a grey canvas twice as wide."""
    canvas = np.full((side, 2 * side, 3), 120, np.uint8)
    canvas[:, side // 2 : side // 2 + side] = cv2.resize(head(astronaut), (side, side), interpolation=cv2.INTER_AREA)
    return canvas


def test_mtcnn_finds_the_astronaut_at_full_resolution(astronaut, detector):
    small, big = _framed(astronaut, 128), _framed(astronaut, 256)  # big is downscaled 2x for MTCNN
    blank = np.full((100, 150, 3), 120, np.uint8)
    dets = detector.detect([small, big, blank, small])  # two sizes: batched per size, order kept
    assert [len(d) for d in dets] == [1, 1, 0, 1]
    # boxes and landmarks come back in each frame's own pixels: the big frame's are twice the small's
    np.testing.assert_allclose(dets[1].boxes[0], 2 * dets[0].boxes[0], atol=8)
    np.testing.assert_allclose(dets[1].landmarks[0], 2 * dets[0].landmarks[0], atol=6)
    np.testing.assert_allclose(dets[3].boxes, dets[0].boxes)
    x1, y1, x2, y2 = dets[1].boxes[0]
    assert 128 < x1 < x2 < 384 and 0 <= y1 < y2 < 256  # on the photo, not the grey border
    lm = dets[1].landmarks[0]
    assert ((lm[:, 0] > x1) & (lm[:, 0] < x2) & (lm[:, 1] > y1) & (lm[:, 1] < y2)).all()
    assert lm[0, 0] < lm[1, 0] and lm[2, 1] < lm[3, 1]  # left eye left of right eye, nose above mouth
    assert dets[1].confidences[0] > 0.95

    faces = detector.faces([Frame(7, 0.7, big)])[0]
    (face,) = faces
    assert face.crop.shape == (64, 64, 3) and face.frame_index == 7
    assert ((face.landmarks_crop > 0) & (face.landmarks_crop < 64)).all()


def test_min_face_and_confidence_filter(astronaut):
    frame = _framed(astronaut, 128)
    strict = FaceDetector(DetectorConfig(size=64, detect_side=256, min_face=80))
    assert len(strict.detect([frame])[0]) == 0  # the face box is ~50 px, under min_face
    assert len(FaceDetector(DetectorConfig(size=64, detect_side=256, min_face=200)).detect([frame])[0]) == 0  # larger than the frame
    (conf,) = FaceDetector(DetectorConfig(size=64, detect_side=256)).detect([frame])[0].confidences
    assert 0.9 < conf < 1.0
    above = float(np.nextafter(conf, np.float32(1.0)))
    assert len(FaceDetector(DetectorConfig(size=64, detect_side=256, min_confidence=above)).detect([frame])[0]) == 0


def test_device_errors_are_clear():
    import torch

    with pytest.raises(ForgeryDetError, match="--device 'gpu': use"):
        FaceDetector(DetectorConfig(device="gpu")).mtcnn
    if not torch.cuda.is_available():
        with pytest.raises(ForgeryDetError, match=r"no CUDA GPU is available here \(use --device cpu\)"):
            FaceDetector(DetectorConfig(device="cuda")).detect([np.zeros((64, 64, 3), np.uint8)])


def test_channels_last_mtcnn_finds_the_same_faces(astronaut, detector):
    """The CPU detector's nets are stored channels-last (the speed-up); boxes, landmarks and confidences match
    facenet-pytorch's own NCHW nets to float rounding."""
    import torch
    from facenet_pytorch import MTCNN

    frames = [_framed(astronaut, 128), _framed(astronaut, 256), np.full((100, 150, 3), 120, np.uint8)]
    fast = detector.detect(frames)
    weights = [m.weight for net in (detector.mtcnn.pnet, detector.mtcnn.rnet, detector.mtcnn.onet)
               for m in net.modules() if isinstance(m, torch.nn.Conv2d)]
    assert all(w.is_contiguous(memory_format=torch.channels_last) for w in weights)
    assert all(not w.is_contiguous() for w in weights if w.shape[-1] > 1)  # 1x1 kernels: both layouts agree
    plain = FaceDetector(detector.config)
    plain._mtcnn = MTCNN(keep_all=True, select_largest=False, device="cpu")
    slow = plain.detect(frames)
    assert [len(d) for d in fast] == [len(d) for d in slow] == [1, 1, 0]
    for a, b in zip(fast, slow):
        np.testing.assert_allclose(a.boxes, b.boxes, atol=1e-3)
        np.testing.assert_allclose(a.landmarks, b.landmarks, atol=1e-3)
        np.testing.assert_allclose(a.confidences, b.confidences, atol=1e-5)


def test_each_image_gets_its_own_faces_whatever_shares_its_call(astronaut, monkeypatch):
    """Images of many sizes in one `detect` call (full batches, remainders, photos of one of a kind, tight crops
    whose boxes start outside the image, large frames split across calls by the pixel bound): each image's faces
    are those it gets when detected alone (to R-Net's float rounding)."""
    from forgerydet.faces import detect as detect_module

    monkeypatch.setattr(detect_module, "POOL_PIXELS", 300_000)  # several pooled calls even for these few images
    det = FaceDetector(DetectorConfig(batch_size=4))
    rng = np.random.default_rng(5)
    images = [_framed(astronaut, 96) for _ in range(5)]  # a full batch of 4 and one left over
    images += [cv2.resize(head(astronaut)[20:200, 30:190], (w, w + 10)) for w in (90, 104, 117)]  # one of a kind
    images += tight_pair(astronaut)  # facenet-pytorch's batched suppression mixed these two up
    images += [cv2.resize(_framed(astronaut, 160), (400 + 40 * k, 200 + 20 * k)) for k in range(3)]
    images += [rng.integers(0, 255, (120, 90, 3), dtype=np.uint8)]  # no face
    order = rng.permutation(len(images))
    images = [images[i] for i in order]
    together = det.detect(images)
    alone = [det.detect([im])[0] for im in images]
    assert sum(len(d) > 0 for d in together) >= 11
    for t, a in zip(together, alone):
        assert len(t) == len(a)
        np.testing.assert_allclose(t.boxes, a.boxes, atol=1e-3)
        np.testing.assert_allclose(t.landmarks, a.landmarks, atol=1e-3)
        np.testing.assert_allclose(t.confidences, a.confidences, atol=1e-5)
