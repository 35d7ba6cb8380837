"""How a face crop becomes the model's input, the same way for training, validation, bank rebuilds,
enrolment and scanning: resized to the model's side (area interpolation when shrinking), then a float tensor in
[0, 1], (3,S,S). The backbone applies its own mean/std (backbone.Encoder)."""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import torch

from forgerydet.io import read_image


def resize_face(img: np.ndarray, size: int) -> np.ndarray:
    """A face crop (H,W,3) to (size,size,3), the same way for training, validation and scanning."""
    if img.shape[0] != size or img.shape[1] != size:
        interp = cv2.INTER_AREA if img.shape[0] > size else cv2.INTER_LINEAR
        img = cv2.resize(img, (size, size), interpolation=interp)
    return img




def load_image(path: Path, size: int) -> np.ndarray:
    """RGB uint8 (size,size,3)."""
    return resize_face(read_image(path), size)


def to_tensor(img: np.ndarray) -> torch.Tensor:
    return torch.from_numpy(np.ascontiguousarray(img)).permute(2, 0, 1).float().div_(255.0)  # (3,S,S)
