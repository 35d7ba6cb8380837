"""MTCNN's three-stage cascade, as facenet-pytorch 2.5.3 runs it (`facenet_pytorch.models.utils.detect_face.
detect_face`, MIT licence, (c) Tim Esler), with its area resampling computed from a summed-area table.

The cascade resamples with `interpolate(mode='area')` (adaptive average pooling) many times per image: once per
pyramid level, then once per candidate box for RNet (24x24) and again for ONet (48x48), ~25 boxes per photo and
~40 per video frame. Profiled on this repository's data (one process, 2-core VM) that resampling was a quarter to a third of a
photo's detection and 40 % of a 512-px video frame's: each call averages every pixel of its box, and a face in a
video frame is hundreds of pixels wide. Here one integer summed-area table per batch serves every level and
every box, and all the boxes of a stage are gathered in one indexing operation.

**The numbers are identical, bit for bit** (tests/faces/test_cascade.py compares this with facenet-pytorch's own
`MTCNN.detect` on photos and video frames): the input is 8-bit, so every window sum is an exact integer (in the
table, then in float32 below 2^24), and the mean is taken as PyTorch's CPU kernel takes it, `sum / kh / kw` in
float32, with the same window bounds (floor and ceil of i * in / out). Everything else is facenet-pytorch's code
path, step for step: the same networks, thresholds and box arithmetic.

Deliberate differences:
- facenet-pytorch skips a box whose clipped region is empty when it cuts the crops but not when it reads the
  scores back, so such a box (one lying wholly outside the image) would misalign the two and fail; here the box
  is dropped from both.
- After P-Net, non-maximum suppression runs on each image's boxes alone (`batched_nms`): facenet-pytorch's
  batched suppression lets one image's boxes suppress another's where a box starts above or left of its image (a
  face filling a photo) and breaks ties by the other images' boxes, so a photo's faces depended on its batch.
  Each image now gets what facenet-pytorch gives it alone (to R-Net's float rounding, ~1e-5 px, which depends on
  how many boxes share a call); a batch without such boxes, bit for bit what facenet-pytorch gives the batch.
  Where facenet-pytorch's own cascade runs (a GPU; a box too large for exact sums), faces/detect.py runs it
  inside `facenet_suppressing_per_image`, with the same suppression.
- `detect_faces` takes batches of different sizes in one call: P-Net on each, R-Net and O-Net on all their
  boxes together (photos of many sizes, each a batch of its own, no longer pay a pass of each net per photo).
"""

from __future__ import annotations

import threading
from contextlib import contextmanager
from typing import Iterator

import cv2
import numpy as np
import torch
from facenet_pytorch.models.utils.detect_face import (
    bbreg,
    fixed_batch_process,
    generateBoundingBox,
    nms_numpy,
    rerec,
)
from torchvision.ops import batched_nms as tv_batched_nms
from torchvision.ops import nms

_EXACT_SUM = 2**24  # float32 holds every integer below this exactly


class WindowTooLarge(ValueError):
    """An area window whose 8-bit sum could pass 2^24, where float32 sums stop being exact, or an image whose
    table could pass int32 (the caller then uses facenet-pytorch's own cascade)."""


def _cells(y0, hb, out_h: int, x0, wb, out_w: int) -> tuple[np.ndarray, ...]:
    """Row and column bounds of the area cells, as PyTorch's adaptive average pooling draws them: cell i of `out`
    over `length` pixels from `start` spans floor(i * length / out) to ceil((i + 1) * length / out). y0, hb, x0,
    wb: (N,) arrays (boxes) or 0-d (whole images). Returns r0, r1 (...,out_h) and c0, c1 (...,out_w);
    WindowTooLarge where a cell's 8-bit sum could leave float32's exact integers."""

    def bounds(start, length, out: int) -> tuple[np.ndarray, np.ndarray]:
        i = np.arange(out)
        start, length = np.asarray(start)[..., None], np.asarray(length)[..., None]
        return start + (i * length) // out, start - (-(i + 1) * length) // out

    (r0, r1), (c0, c1) = bounds(y0, hb, out_h), bounds(x0, wb, out_w)
    if int((r1 - r0).max()) * int((c1 - c0).max()) * 255 >= _EXACT_SUM:
        raise WindowTooLarge("area windows too large for exact float32 sums")
    return r0, r1, c0, c1


def _means(sums: np.ndarray, r0, r1, c0, c1) -> torch.Tensor:
    """Exact cell sums (B,out_h,out_w,3) -> means as PyTorch's CPU kernel takes them (sum / kh / kw in float32),
    as a (B,3,out_h,out_w) tensor laid out channels-last like facenet-pytorch's resampled images."""
    kh, kw = (r1 - r0).astype(np.float32), (c1 - c0).astype(np.float32)
    return torch.from_numpy(sums.astype(np.float32) / kh[..., None, None] / kw[..., None, :, None]).permute(0, 3, 1, 2)


class AreaTable:
    """Summed-area tables of a batch of 8-bit images (B,H,W,3) (OpenCV's `integral`, int32: 4 bytes a pixel and
    channel, as the float32 batch facenet-pytorch builds; images up to ~8.4 megapixels), for exact area
    (adaptive average) resampling of the whole images or of boxes in them, as `torch.nn.functional.interpolate(
    mode='area')` computes it."""

    def __init__(self, images: np.ndarray) -> None:
        h, w = images.shape[1:3]
        if 255 * h * w >= 2**31:  # over ~8.4 megapixels at detection size: int32 sums could overflow
            raise WindowTooLarge(f"a {w}x{h} image is too large for an int32 summed-area table")
        self.table = np.stack([cv2.integral(im, sdepth=cv2.CV_32S) for im in images])  # (B,H+1,W+1,3)
        self.height, self.width = h, w

    def resample(self, index: np.ndarray, y0: np.ndarray, x0: np.ndarray, hb: np.ndarray, wb: np.ndarray,
                 out_h: int, out_w: int) -> torch.Tensor:
        """Area-resample the regions rows y0..y0+hb, columns x0..x0+wb of images `index` (all (N,) int64) to
        (N,3,out_h,out_w) float32, laid out channels-last as facenet-pytorch's resampled crops are."""
        if len(index) == 0:
            return torch.zeros((0, out_h, out_w, 3)).permute(0, 3, 1, 2)
        return _means(*self.sums(index, y0, x0, hb, wb, out_h, out_w))

    def sums(self, index: np.ndarray, y0: np.ndarray, x0: np.ndarray, hb: np.ndarray, wb: np.ndarray,
             out_h: int, out_w: int) -> tuple[np.ndarray, ...]:
        """`resample`'s exact cell sums (N,out_h,out_w,3) and cell bounds r0, r1 (N,out_h), c0, c1 (N,out_w)."""
        r0, r1, c0, c1 = _cells(y0, hb, out_h, x0, wb, out_w)  # (N,out_h), (N,out_w)
        t = self.table
        s_img, s_row = t.strides[0] // t.itemsize, t.strides[1] // t.itemsize  # flat offsets (C-contiguous)
        flat = t.reshape(-1)
        rows = [(index * s_img)[:, None] + r * s_row for r in (r0, r1)]  # (N,out_h) offsets of each row
        cols = [c[:, :, None] * 3 + np.arange(3) for c in (c0, c1)]  # (N,out_w,3) offsets within a row

        def at(r: np.ndarray, c: np.ndarray) -> np.ndarray:
            return np.take(flat, r[:, :, None, None] + c[:, None])  # (N,out_h,out_w,3)

        s = at(rows[1], cols[1]) - at(rows[0], cols[1]) - at(rows[1], cols[0]) + at(rows[0], cols[0])
        return s, r0, r1, c0, c1

    def whole(self, out_h: int, out_w: int) -> torch.Tensor:
        """Every image resampled to (out_h,out_w): (B,3,out_h,out_w) float32, channels-last. One set of cells
        serves the batch, so rows and then columns are gathered whole (np.take), not element by element."""
        r0, r1, c0, c1 = _cells(0, self.height, out_h, 0, self.width, out_w)  # (out_h,), (out_w,)
        rows = np.take(self.table, r1, axis=1) - np.take(self.table, r0, axis=1)  # (B,out_h,W+1,3)
        return _means(np.take(rows, c1, axis=2) - np.take(rows, c0, axis=2), r0, r1, c0, c1)


def batched_nms(boxes: torch.Tensor, scores: torch.Tensor, image_inds: torch.Tensor, threshold: float) -> torch.Tensor:
    """Non-maximum suppression within each image of a batch, each image's boxes on their own, as in a batch of one:
    kept indices, by decreasing score.

    facenet-pytorch calls torchvision's `batched_nms`, which (up to 1,000 boxes) shifts each image's boxes by its
    index x (largest coordinate + 1) and runs one NMS over the batch. That assumes no coordinate is below 0, and
    after P-Net MTCNN's box of a face filling the image starts above and left of it (a tight crop's box reaches
    past the edges): one image's boxes then land on the previous image's and can suppress them. Boxes of equal
    score (1.0 in float32 is common for a clear face) are also taken in an order that depends on the other images'
    boxes. So a photo's faces depended on which photos shared its batch: 4.5 % of 200 CelebA and 13 % of 128
    UTKFace photos in batches of 8 differed from the photo alone, by up to 50 px. P-Net's own boxes never start
    below 0; `detect_faces` keeps torchvision's `batched_nms` for those (one call per pyramid level)."""
    if len(boxes) == 0:
        return torch.empty((0,), dtype=torch.int64, device=boxes.device)
    if bool((image_inds == image_inds[0]).all()):
        return nms(boxes, scores, threshold)
    keep = []
    for b in torch.unique(image_inds):
        sel = torch.nonzero(image_inds == b).flatten()
        keep.append(sel[nms(boxes[sel], scores[sel], threshold)])
    keep = torch.cat(keep)
    return keep[torch.argsort(scores[keep], descending=True, stable=True)]


def batched_nms_numpy(boxes: torch.Tensor, scores: torch.Tensor, image_inds: torch.Tensor, threshold: float,
                      method: str) -> torch.Tensor:
    """facenet-pytorch's numpy NMS of the last stage ('Min': overlap / the smaller area), each image on its own
    (see `batched_nms`). Kept indices, image by image."""
    if len(boxes) == 0:
        return torch.empty((0,), dtype=torch.int64, device=boxes.device)
    b, s, inds = boxes.cpu().numpy(), scores.cpu().numpy(), image_inds.cpu().numpy()
    keep = []
    for k in np.unique(inds):
        sel = np.flatnonzero(inds == k)
        keep.append(sel[nms_numpy(b[sel], s[sel], threshold, method).astype(np.int64)])
    return torch.from_numpy(np.concatenate(keep)).to(boxes.device)


_FACENET_TURN = threading.Lock()  # one thread at a time in facenet-pytorch's cascade


@contextmanager
def facenet_suppressing_per_image() -> Iterator[None]:
    """Within this block facenet-pytorch's own cascade (`MTCNN.detect`: on a GPU, or on a CPU for a box too large
    for exact area sums) suppresses each image's boxes on their own too, with `batched_nms` and
    `batched_nms_numpy` here in place of the ones its detect_face module calls (restored on leaving). Threads take
    turns inside it (a Scanner shared by threads on a GPU): the swap is process-wide, and the first thread out put
    facenet-pytorch's own back under another still detecting, the last left ours in it for good (and the caller's
    MTCNN.min_face_size, set inside, was another thread's)."""
    from facenet_pytorch.models.utils import detect_face as facenet

    with _FACENET_TURN:
        saved = facenet.batched_nms, facenet.batched_nms_numpy
        facenet.batched_nms, facenet.batched_nms_numpy = batched_nms, batched_nms_numpy
        try:
            yield
        finally:
            facenet.batched_nms, facenet.batched_nms_numpy = saved


class Tables:
    """The summed-area tables of several batches of images, each batch of one size, numbered as one list in order:
    image i of batch k is number starts[k] + i. Boxes of every batch are cropped together, so R-Net and O-Net see
    the boxes of all of them in one pass."""

    def __init__(self, batches: list[np.ndarray]) -> None:
        self.tables = [AreaTable(b) for b in batches]
        self.starts = np.cumsum([0] + [len(b) for b in batches])  # (K+1,)
        self.widths = np.concatenate([np.full(len(b), t.width) for b, t in zip(batches, self.tables)])  # (N_images,)
        self.heights = np.concatenate([np.full(len(b), t.height) for b, t in zip(batches, self.tables)])

    def resample(self, index: np.ndarray, y0: np.ndarray, x0: np.ndarray, hb: np.ndarray, wb: np.ndarray,
                 size: int) -> torch.Tensor:
        """AreaTable.resample for images numbered `index` in any batch: (N,3,size,size), in the boxes' order."""
        if len(self.tables) == 1:
            return self.tables[0].resample(index, y0, x0, hb, wb, size, size)
        if len(index) == 0:
            return torch.zeros((0, size, size, 3)).permute(0, 3, 1, 2)
        batch = np.searchsorted(self.starts, index, side="right") - 1  # (N,)
        order = np.argsort(batch, kind="stable")
        parts = []
        for k in np.unique(batch):
            sel = order[batch[order] == k]
            parts.append(self.tables[k].sums(index[sel] - self.starts[k], y0[sel], x0[sel], hb[sel], wb[sel], size, size))
        back = np.argsort(order, kind="stable")  # the sums are in `order`; put them back in the boxes' order
        s, r0, r1, c0, c1 = (np.concatenate([p[j] for p in parts])[back] for j in range(5))
        return _means(s, r0, r1, c0, c1)


def _crops(tables: Tables, boxes: torch.Tensor, image_inds: torch.Tensor, size: int) -> tuple[torch.Tensor, np.ndarray]:
    """facenet-pytorch's per-box crops (pad(), then rows y-1..ey and columns x-1..ex of the box's image) resampled
    to size x size, all at once; and which boxes had a non-empty region (the others get no crop). pad() clips each
    box to its own image's width and height, as facenet-pytorch's does to the batch's."""
    inds = image_inds.numpy()
    x, y, ex, ey = (v.astype(np.int64) for v in boxes[:, :4].trunc().int().numpy().T)
    x, y = np.maximum(x, 1), np.maximum(y, 1)
    ex, ey = np.minimum(ex, tables.widths[inds]), np.minimum(ey, tables.heights[inds])
    keep = (ey > y - 1) & (ex > x - 1)
    y0, x0 = (y - 1)[keep], (x - 1)[keep]
    return tables.resample(inds[keep], y0, x0, ey[keep] - y0, ex[keep] - x0, size), keep


def _stage(tables: Tables, boxes: torch.Tensor, image_inds: torch.Tensor, size: int, net):
    """R-Net's or O-Net's pass: every box cropped at size x size, normalised as facenet-pytorch does, through
    `net` in its batches of 512: (the boxes and image indices that had a crop, the net's outputs or None)."""
    im_data, keep = _crops(tables, boxes, image_inds, size)
    k = torch.from_numpy(keep)
    boxes, image_inds = boxes[k], image_inds[k]
    if len(boxes) == 0:
        return boxes, image_inds, None
    return boxes, image_inds, fixed_batch_process((im_data - 127.5) * 0.0078125, net)


@torch.no_grad()
def detect_face(imgs: np.ndarray, minsize: float, pnet, rnet, onet, threshold, factor: float):
    """facenet-pytorch's detect_face for a (B,H,W,3) uint8 batch on the CPU, each image's boxes suppressed on their
    own (see the module docstring): per image, boxes (N,5) [x1,y1,x2,y2, prob] and landmarks (N,5,2), as arrays (an
    image without faces gets empty ones). WindowTooLarge where an area window is too large for exact float32 sums
    (a box over ~6,000 px wide); the caller then uses facenet-pytorch."""
    return detect_faces([imgs], [minsize], pnet, rnet, onet, threshold, factor)


@torch.no_grad()
def detect_faces(batches: list[np.ndarray], minsizes: list[float], pnet, rnet, onet, threshold, factor: float):
    """`detect_face` over several (B_k,H_k,W_k,3) batches of different sizes and minimum face sizes at once: P-Net
    runs on each batch (its image pyramid is the batch's), then R-Net and O-Net on the boxes of all of them together,
    so a folder of photos of many sizes, one per batch, does not pay a pass of each net per photo. Suppression
    works per image, so each image gets what it gets alone (to float rounding). Per image, in order of the
    batches."""
    batches = [np.ascontiguousarray(b) for b in batches]
    tables = Tables(batches)

    # First stage
    boxes, image_inds, scale_picks = [], [], []
    offset = 0
    for k, (images, minsize) in enumerate(zip(batches, minsizes)):
        h, w = images.shape[1:3]
        m = 12.0 / minsize
        minl = min(h, w) * m

        scales = []
        scale_i = m
        while minl >= 12:
            scales.append(scale_i)
            scale_i = scale_i * factor
            minl = minl * factor

        for scale in scales:
            im_data = tables.tables[k].whole(int(h * scale + 1), int(w * scale + 1))
            im_data = (im_data - 127.5) * 0.0078125
            reg, probs = pnet(im_data)
            boxes_scale, image_inds_scale = generateBoundingBox(reg, probs[:, 1], scale, threshold[0])
            image_inds_scale = image_inds_scale + int(tables.starts[k])
            boxes.append(boxes_scale)
            image_inds.append(image_inds_scale)
            pick = tv_batched_nms(boxes_scale[:, :4], boxes_scale[:, 4], image_inds_scale, 0.5)  # P-Net: >= 0
            scale_picks.append(pick + offset)
            offset += boxes_scale.shape[0]

    if not boxes:  # no batch was large enough for one pyramid level
        return [(np.zeros((0, 5), np.float32), np.zeros((0, 5, 2), np.float32)) for _ in range(int(tables.starts[-1]))]
    boxes = torch.cat(boxes, dim=0)
    image_inds = torch.cat(image_inds, dim=0)
    scale_picks = torch.cat(scale_picks, dim=0)
    boxes, image_inds = boxes[scale_picks], image_inds[scale_picks]

    pick = tv_batched_nms(boxes[:, :4], boxes[:, 4], image_inds, 0.7)
    boxes, image_inds = boxes[pick], image_inds[pick]

    regw = boxes[:, 2] - boxes[:, 0]
    regh = boxes[:, 3] - boxes[:, 1]
    qq1 = boxes[:, 0] + boxes[:, 5] * regw
    qq2 = boxes[:, 1] + boxes[:, 6] * regh
    qq3 = boxes[:, 2] + boxes[:, 7] * regw
    qq4 = boxes[:, 3] + boxes[:, 8] * regh
    boxes = torch.stack([qq1, qq2, qq3, qq4, boxes[:, 4]]).permute(1, 0)
    boxes = rerec(boxes)

    # Second stage
    if len(boxes) > 0:
        boxes, image_inds, out = _stage(tables, boxes, image_inds, 24, rnet)
    if len(boxes) > 0:
        out0 = out[0].permute(1, 0)
        out1 = out[1].permute(1, 0)
        score = out1[1, :]
        ipass = score > threshold[1]
        boxes = torch.cat((boxes[ipass, :4], score[ipass].unsqueeze(1)), dim=1)
        image_inds = image_inds[ipass]
        mv = out0[:, ipass].permute(1, 0)

        pick = batched_nms(boxes[:, :4], boxes[:, 4], image_inds, 0.7)
        boxes, image_inds, mv = boxes[pick], image_inds[pick], mv[pick]
        boxes = bbreg(boxes, mv)
        boxes = rerec(boxes)

    # Third stage
    points = torch.zeros(0, 5, 2)
    if len(boxes) > 0:
        boxes, image_inds, out = _stage(tables, boxes, image_inds, 48, onet)
    if len(boxes) > 0:
        out0 = out[0].permute(1, 0)
        out1 = out[1].permute(1, 0)
        out2 = out[2].permute(1, 0)
        score = out2[1, :]
        points = out1
        ipass = score > threshold[2]
        points = points[:, ipass]
        boxes = torch.cat((boxes[ipass, :4], score[ipass].unsqueeze(1)), dim=1)
        image_inds = image_inds[ipass]
        mv = out0[:, ipass].permute(1, 0)

        w_i = boxes[:, 2] - boxes[:, 0] + 1
        h_i = boxes[:, 3] - boxes[:, 1] + 1
        points_x = w_i.repeat(5, 1) * points[:5, :] + boxes[:, 0].repeat(5, 1) - 1
        points_y = h_i.repeat(5, 1) * points[5:10, :] + boxes[:, 1].repeat(5, 1) - 1
        points = torch.stack((points_x, points_y)).permute(2, 1, 0)
        boxes = bbreg(boxes, mv)

        pick = batched_nms_numpy(boxes[:, :4], boxes[:, 4], image_inds, 0.7, "Min")
        boxes, image_inds, points = boxes[pick], image_inds[pick], points[pick]

    boxes = boxes.numpy()
    points = points.numpy()
    image_inds = image_inds.numpy()
    return [(boxes[image_inds == b].copy(), points[image_inds == b].copy()) for b in range(int(tables.starts[-1]))]
