"""faces/cascade.py: MTCNN's cascade with its area resampling from a summed-area table must give facenet-pytorch's
own numbers bit for bit (the only reason it exists is speed), except where facenet-pytorch lets one image's boxes
suppress another's in a batch: there each image must get what it gets alone."""

from __future__ import annotations

import threading
import time

import cv2
import numpy as np
import pytest
import torch
from torch.nn.functional import interpolate

from forgerydet.faces.cascade import (AreaTable, WindowTooLarge, batched_nms, batched_nms_numpy, detect_face, detect_faces,
                                      facenet_suppressing_per_image)
from tests._faces_util import head, tight_pair


def _boxes_like_facenet(rng: np.random.Generator, h: int, w: int, n: int):
    """n random regions (y0, x0, height, width), all inside an h x w image, of any size from 1 px to the image."""
    y0 = rng.integers(0, h, n)
    x0 = rng.integers(0, w, n)
    return y0, x0, rng.integers(1, h - y0 + 1), rng.integers(1, w - x0 + 1)


@pytest.mark.parametrize("out", [12, 24, 48, 57])
def test_area_table_equals_torch_area_resampling_bit_for_bit(out):
    rng = np.random.default_rng(out)
    images = rng.integers(0, 256, (3, 97, 131, 3), dtype=np.uint8)
    table = AreaTable(images)
    planar = torch.from_numpy(images).permute(0, 3, 1, 2).float()  # (B,3,H,W) as facenet-pytorch holds them
    idx = rng.integers(0, 3, 200)
    y0, x0, hb, wb = _boxes_like_facenet(rng, 97, 131, 200)  # down- and up-sampling alike
    got = table.resample(idx, y0, x0, hb, wb, out, out)
    for k in range(200):
        want = interpolate(planar[idx[k], :, y0[k] : y0[k] + hb[k], x0[k] : x0[k] + wb[k]][None], size=(out, out),
                           mode="area")
        assert torch.equal(got[k : k + 1], want), k
    for oh, ow in ((out, out + 7), (97, 131), (200, 150)):  # the pyramid's whole-image levels, also upwards
        assert torch.equal(table.whole(oh, ow), interpolate(planar, size=(oh, ow), mode="area"))


def test_area_table_refuses_windows_too_large_for_exact_sums():
    table = AreaTable(np.zeros((1, 300, 300, 3), np.uint8))
    assert torch.equal(table.whole(3, 3), torch.zeros(1, 3, 3, 3))  # 100x100 windows: exact
    with pytest.raises(WindowTooLarge, match="too large"):
        table.whole(1, 1)  # one 300x300 window: 255 x 90,000 is past float32's exact integers
    with pytest.raises(WindowTooLarge, match="too large"):
        AreaTable(np.zeros((1, 3000, 3000, 3), np.uint8))  # 9 megapixels: int32 sums could overflow


def _same_as_facenet(mtcnn, batch: np.ndarray) -> int:
    """Compare faces/cascade.py with facenet-pytorch's MTCNN.detect on one batch; the number of faces."""
    ours = detect_face(batch, mtcnn.min_face_size, mtcnn.pnet, mtcnn.rnet, mtcnn.onet, mtcnn.thresholds, mtcnn.factor)
    boxes, probs, points = mtcnn.detect(batch, landmarks=True)
    n = 0
    for (b, p), fb, fprob, fp in zip(ours, boxes, probs, points):
        if fb is None:
            assert len(b) == 0 and len(p) == 0
            continue
        assert np.array_equal(b[:, :4], fb) and np.array_equal(b[:, 4], fprob) and np.array_equal(p, fp)
        n += len(b)
    return n


def _as_facenet_alone(mtcnn, found: list, images: list[np.ndarray]) -> int:
    """Compare per-image results of faces/cascade.py with facenet-pytorch's MTCNN.detect on each image by itself:
    the same faces, boxes and landmarks to 1e-3 px (R-Net's and O-Net's float rounding depends on how many boxes
    share a call, ~1e-5 px); the number of faces."""
    n = 0
    for (b, p), image in zip(found, images):
        fb, fprob, fp = (v[0] for v in mtcnn.detect(image[None], landmarks=True))
        if fb is None:
            assert len(b) == 0 and len(p) == 0
            continue
        assert len(b) == len(fb)
        assert np.allclose(b[:, :4], fb.astype(np.float32), atol=1e-3) and np.allclose(p, fp.astype(np.float32), atol=1e-3)
        assert np.allclose(b[:, 4], fprob.astype(np.float32), atol=1e-5)
        n += len(b)
    return n


def _scene(astronaut: np.ndarray, side: int, rng: np.random.Generator) -> np.ndarray:
    """The astronaut's head at a random place and size on a noisy 240x320 frame."""
    frame = rng.integers(60, 180, (240, 320, 3), dtype=np.uint8)
    face = cv2.resize(head(astronaut), (side, side), interpolation=cv2.INTER_AREA)
    y, x = int(rng.integers(0, 240 - side + 1)), int(rng.integers(0, 320 - side + 1))
    frame[y : y + side, x : x + side] = face
    return frame


def test_cascade_finds_what_facenet_finds_bit_for_bit(astronaut, detector_mtcnn):
    rng = np.random.default_rng(0)
    batch = np.stack([_scene(astronaut, s, rng) for s in (40, 80, 120, 200, 240)] + [np.full((240, 320, 3), 120, np.uint8)])
    assert _same_as_facenet(detector_mtcnn, batch) >= 5  # every head found, the blank frame empty
    tight = np.stack([cv2.resize(head(astronaut), (150, 150)) for _ in range(2)])  # a face filling the image
    _same_as_facenet(detector_mtcnn, tight)


def test_cascade_on_real_photos_and_video_frames(shared_data, detector_mtcnn):
    """The shared data's photos of every source and frames of its videos: each photo's boxes, scores and
    landmarks as facenet-pytorch finds them on that photo alone, whichever photos share its call (UTKFace's,
    CelebA's and RMFD's tight crops are where facenet-pytorch's own batches differ: see test_nms_keeps_images_apart);
    video frames, whose boxes stay inside the frame, bit for bit as facenet-pytorch's batch."""
    m = detector_mtcnn
    found = 0
    for src in ("lfw", "utkface", "celeba", "rmfd_web"):
        paths = sorted((shared_data / "train" / src).glob("*.jpg"))[:16]
        images = [cv2.cvtColor(cv2.imread(str(p)), cv2.COLOR_BGR2RGB) for p in paths]
        shapes = list(dict.fromkeys(im.shape for im in images))
        batches = [np.stack([im for im in images if im.shape == shape]) for shape in shapes]
        pooled = detect_faces(batches, [m.min_face_size] * len(batches), m.pnet, m.rnet, m.onet, m.thresholds, m.factor)
        found += _as_facenet_alone(m, pooled, [im for batch in batches for im in batch])
    for video in sorted((shared_data / "train" / "videos").glob("*.mp4"))[:3]:
        cap = cv2.VideoCapture(str(video))
        frames = [cv2.cvtColor(cap.read()[1], cv2.COLOR_BGR2RGB) for _ in range(4)]
        found += _same_as_facenet(detector_mtcnn, np.stack(frames))
    assert found >= 60


def test_detect_faces_pools_batches_of_different_sizes(astronaut, detector_mtcnn):
    """Batches of three sizes in one call: each image gets what it gets through facenet-pytorch alone, and what
    detect_face gives its own batch."""
    m = detector_mtcnn
    rng = np.random.default_rng(3)
    batches = [np.stack([_scene(astronaut, s, rng) for s in sides]) for sides in ((60, 110), (150,), (90, 40, 200))]
    batches[1] = batches[1][:, :200, :280]  # another size
    batches[2] = np.stack([cv2.resize(im, (360, 270)) for im in batches[2]])
    pooled = detect_faces(batches, [20, 20, 20], m.pnet, m.rnet, m.onet, m.thresholds, m.factor)
    assert len(pooled) == 6
    assert _as_facenet_alone(m, pooled, [im for batch in batches for im in batch]) >= 6
    each = [r for batch in batches for r in detect_face(batch, 20, m.pnet, m.rnet, m.onet, m.thresholds, m.factor)]
    for (b, p), (eb, ep) in zip(pooled, each):
        assert b.shape == eb.shape and np.allclose(b, eb, atol=1e-3) and np.allclose(p, ep, atol=1e-3)


def test_nms_keeps_images_apart():
    """torchvision's batched_nms, which facenet-pytorch calls, keeps images apart by shifting each image's boxes by
    its index x (largest coordinate + 1), which assumes no coordinate is below 0; a tight crop's face box starts
    above and left of the image. Here a box of image 1 reaching past the top left would suppress image 0's face
    (IoU 0.83 once shifted); and in the last stage's 'Min' overlap, any box inside another's shifted copy."""
    from facenet_pytorch.models.utils import detect_face as facenet

    boxes = torch.tensor([[0.0, 0.0, 100.0, 100.0], [-105.0, -105.0, 5.0, 5.0]])
    scores = torch.tensor([0.90, 0.95])
    images = torch.tensor([0, 1])
    assert facenet.batched_nms(boxes, scores, images, 0.7).tolist() == [1]  # the bug this avoids
    assert sorted(batched_nms(boxes, scores, images, 0.7).tolist()) == [0, 1]
    near = torch.tensor([[0.0, 0.0, 100.0, 100.0], [5.0, 5.0, 105.0, 105.0]])  # IoU 0.82
    assert batched_nms(near, scores, torch.tensor([0, 0]), 0.7).tolist() == [1]  # one image: plain NMS
    boxes = torch.tensor([[0.0, 0.0, 110.0, 110.0], [-120.0, -120.0, 100.0, 100.0]])
    assert facenet.batched_nms_numpy(boxes, scores, images, 0.7, "Min").tolist() == [1]
    assert sorted(batched_nms_numpy(boxes, scores, images, 0.7, "Min").tolist()) == [0, 1]
    assert batched_nms_numpy(boxes, scores, torch.tensor([0, 0]), 0.7, "Min").tolist() == [1]  # one inside the other
    assert len(batched_nms(boxes[:0], scores[:0], images[:0], 0.7)) == 0


def _too_large(*args, **kwargs):
    """In place of cascade.detect_faces: what it raises for a box too large for exact sums."""
    raise WindowTooLarge("area windows too large for exact float32 sums")


@pytest.fixture(scope="module")
def detector_mtcnn():
    from forgerydet.faces.detect import DetectorConfig, FaceDetector

    mtcnn = FaceDetector(DetectorConfig()).mtcnn  # channels-last nets, as the detector runs them
    mtcnn.min_face_size = 20
    return mtcnn


def test_detector_falls_back_to_facenet_where_windows_are_too_large(astronaut, monkeypatch):
    """A box too large for exact sums (over ~6,000 px) goes through facenet-pytorch's own cascade: same faces."""
    from forgerydet.faces import cascade
    from forgerydet.faces.detect import DetectorConfig, FaceDetector

    frame = _scene(astronaut, 120, np.random.default_rng(1))
    want = FaceDetector(DetectorConfig()).detect([frame])[0]

    monkeypatch.setattr(cascade, "detect_faces", _too_large)
    got = FaceDetector(DetectorConfig()).detect([frame])[0]
    assert len(want) == len(got) == 1
    assert np.array_equal(want.boxes, got.boxes) and np.array_equal(want.landmarks, got.landmarks)


def test_facenet_cascade_suppresses_per_image_where_it_runs(astronaut, monkeypatch):
    """Where facenet-pytorch's own cascade runs (a GPU; here forced on the CPU, as for a too-large box), two tight
    crops sharing a batch get the faces each gets alone (facenet-pytorch's batched suppression changed the first's
    by 17 px), and facenet-pytorch's functions are its own again afterwards."""
    from facenet_pytorch.models.utils import detect_face as facenet

    from forgerydet.faces import cascade
    from forgerydet.faces.detect import DetectorConfig, FaceDetector

    crops = tight_pair(astronaut)
    monkeypatch.setattr(cascade, "detect_faces", _too_large)
    det = FaceDetector(DetectorConfig())
    together = det.detect(crops)
    alone = [det.detect([c])[0] for c in crops]
    mtcnn = det.mtcnn
    mtcnn.min_face_size = 32
    unpatched = mtcnn.detect(np.stack(crops), landmarks=True)[0][0]  # facenet-pytorch as it ships
    assert not np.allclose(np.asarray(unpatched, np.float32)[0], alone[0].boxes[0], atol=1.0)  # the bug is there
    for t, a in zip(together, alone):
        assert len(t) == len(a) == 1
        np.testing.assert_allclose(t.boxes, a.boxes, atol=1e-3)
        np.testing.assert_allclose(t.landmarks, a.landmarks, atol=1e-3)
    assert facenet.batched_nms is not cascade.batched_nms and facenet.batched_nms_numpy is not cascade.batched_nms_numpy


def test_facenet_suppression_in_two_threads_at_once_stays_ours_inside_and_is_restored_after():
    """A Scanner shared by threads on a GPU runs facenet-pytorch's cascade in each: the first thread out put facenet's
    own suppression back under the other, still detecting, and the last one out left ours in facenet-pytorch for
    good."""
    from facenet_pytorch.models.utils import detect_face as facenet

    original = facenet.batched_nms
    a_in, seen = threading.Event(), {}

    def a():
        with facenet_suppressing_per_image():
            a_in.set()
            time.sleep(0.3)  # B asks to come in meanwhile

    def b():
        a_in.wait(10)
        with facenet_suppressing_per_image():
            time.sleep(0.5)  # A would have left meanwhile
            seen["b"] = facenet.batched_nms is batched_nms

    threads = [threading.Thread(target=a), threading.Thread(target=b)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(30)
    assert seen["b"]
    assert facenet.batched_nms is original
