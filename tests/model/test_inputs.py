"""inputs.py: a face crop becomes the model's input: resized (area when shrinking, bilinear when enlarging),
then a (3,S,S) float tensor in [0, 1], channels in RGB order."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from forgerydet.io import write_png
from forgerydet.model.inputs import load_image, resize_face, to_tensor


def test_right_size_is_returned_as_it_is():
    img = np.zeros((8, 8, 3), np.uint8)
    assert resize_face(img, 8) is img


def test_shrinking_averages_areas():
    img = np.zeros((6, 6, 3), np.uint8)
    img[0, 0] = 180  # one bright pixel in the top-left 3x3 block
    out = resize_face(img, 2)
    assert out.shape == (2, 2, 3)
    assert out[0, 0].tolist() == [20, 20, 20]  # 180 / 9: INTER_AREA (bilinear would sample the block's centre: 0)
    assert out[0, 1].tolist() == out[1, 0].tolist() == out[1, 1].tolist() == [0, 0, 0]


def test_enlarging_interpolates_linearly():
    img = np.zeros((2, 2, 3), np.uint8)
    img[:, 1] = 200
    out = resize_face(img, 4)
    # source x of the 4 outputs: 0 (clamped), 0.25, 0.75, 1 (clamped)
    assert out.shape == (4, 4, 3) and out[:, :, 0].tolist() == [[0, 50, 150, 200]] * 4


def test_non_square_crop_becomes_square():
    assert resize_face(np.zeros((10, 20, 3), np.uint8), 5).shape == (5, 5, 3)
    assert resize_face(np.zeros((3, 7, 3), np.uint8), 5).shape == (5, 5, 3)


def test_to_tensor_layout_and_scale():
    img = np.zeros((2, 3, 3), np.uint8)
    img[0, 0] = (255, 51, 0)
    img[1, 2] = (0, 0, 102)
    t = to_tensor(img)
    assert t.shape == (3, 2, 3) and t.dtype == torch.float32
    assert t[:, 0, 0].tolist() == pytest.approx([1.0, 0.2, 0.0]) and t[2, 1, 2].item() == pytest.approx(0.4)
    assert float(t.sum()) == pytest.approx(1.6) and t.min() == 0 and t.max() == 1
    flipped = to_tensor(img[:, ::-1])  # a non-contiguous view (a flip augmentation)
    assert torch.equal(flipped, t.flip(-1))


def test_load_image_reads_rgb_and_resizes(tmp_path):
    img = np.zeros((6, 6, 3), np.uint8)
    img[..., 0] = 90
    img[:3, :3, 2] = 27
    write_png(tmp_path / "f.png", img)
    out = load_image(tmp_path / "f.png", 2)
    assert out.shape == (2, 2, 3) and out.dtype == np.uint8
    assert out[..., 0].tolist() == [[90, 90], [90, 90]] and out[..., 2].tolist() == [[27, 0], [0, 0]]
