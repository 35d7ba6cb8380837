"""Forgery-suited augmentation for face crops.

A real/fake pair gets the SAME geometric and colour transform (so the difference between them is still
the tampering), then each member gets its OWN independent quality transforms (blur, motion blur, sharpening,
skin smoothing, rescale, noise, video-codec and JPEG re-encoding at random strength). The second part breaks the source/compression
shortcut of DESIGN.md: whether a face was re-encoded, and how hard, no longer tells real from fake.

Sharpening is there because the self-blend's source transform sharpens the blended face one time in three
(pairs/sbi.py, as in SBI): without it a real face never carries that kernel's signature, and a model learns
"sharpened = fake". Measured on the model shipped before this transform existed: 200 held-out real photos
scored p 0.07 (6 % above the threshold) as they are and p 0.61 (68 % above) after SBI's own sharpen, while
the same self-blends scored about the same either way. Broadcast and film cameras sharpen in-camera ("detail"):
a suspected (not shown) reason real footage was flagged. A fake that is sharpened whole keeps its cue: the
inside/outside inconsistency.
Motion blur, for the same reason: real video frames are often smeared along the motion, photos seldom are, and
the model trained with sharpening alone scored 150 held-out real photos p 0.11 (7 % flagged) as they are,
p 0.42 (32 %) after a 7-pixel horizontal motion blur and p 0.98 (all of them) after a 7-pixel diagonal one,
while a Gaussian blur inside the trained range (sigma 1.5) left them at p 0.13 (5 %). The video codec is MPEG-4
Part 2 (this OpenCV wheel has no H.264 encoder: see `h264_roundtrip`).
"""

from __future__ import annotations

import os
import tempfile
from dataclasses import dataclass, fields

import cv2
import numpy as np

from forgerydet.errors import ForgeryDetError
from forgerydet.pairs.sbi import sharpen
from forgerydet.training.scene import apply_scene, draw_scene


@dataclass
class AugmentConfig:
    """Probabilities and ranges of every transform; ranges are drawn uniformly.

    Shared by both members of a pair (geometry, colour):
      hflip_p:        horizontal flip (0.5).
      affine_p:       probability of the small affine below (0.5); otherwise no resampling at all.
      scale:          zoom about the centre (0.9, 1.1).
      translate:      shift, fraction of the side, U(-t, t) per axis (0.05).
      rotate_deg:     rotation U(-r, r) degrees (5).
      color_p:        probability of colour jitter (0.5):
      brightness, contrast, saturation: factors 1 + U(-x, x) (0.2 each; contrast and saturation about
                      the first image's mean / per-pixel grey, the same numbers for both images).
      hue_deg:        hue rotation U(-h, h) degrees (5).
      occlude_p, occlude_share: a soft-edged band of one random colour over the top (half the time), the bottom or
                      one side of the face, U(occlude_share) of its side (0.1; 0.1..0.3), as a hat, headscarf, hand
                      or microphone covers it. bench/shortcuts.py found the model trained without it calling 20 %
                      of real faces with the forehead covered FAKE (training/scene.py).
      shade_p, shade_gain, shade_share, shade_soft: the left or right U(shade_share) of the face darkened to
                      U(shade_gain) behind an edge blurred by U(shade_soft) x the width, as side light casts it (0, off
                      by default until measured; 0.4..0.8; 0.2..0.6; 0.01..0.08; training/scene.py).
      defocus_p, defocus_sigma, defocus_axes: all but an ellipse about the head, U(defocus_axes) of the width across
                      each side, blurred by sigma U(defocus_sigma) px at 224 px, as a shallow depth of field (0: three
                      seeds at 0.2 did not earn it, models/README.md; 1.5..6; 0.36..0.50; training/scene.py).
    Per image, independent draws (quality; all off when quality=False):
      blur_p, blur_sigma:       Gaussian blur (0.2; sigma 0.3..2.5 px).
      motion_p, motion_length:  linear motion blur along a uniform random direction, length in pixels of the
                                crop's working resolution (0.15; 3..9 px).
      sharpen_p, sharpen_alpha, sharpen_lightness: the self-blend's own sharpen kernel (pairs/sbi.py) on the
                                whole image (0.2; alpha 0.1..0.5, lightness 0.5..1.0), as camera sharpening.
      smooth_p, smooth_sigma:   skin smoothing as beauty filters and retouching do it (0.15): half the time OpenCV's
                                bilateral filter (9 px, colour and space sigma U(smooth_sigma), 20..90), else its
                                edge-preserving filter (sigma_s 20..80, sigma_r 0.15..0.45). bench/shortcuts.py found
                                the model trained without it calling 82 % of smoothed real faces FAKE.
      rescale_p, rescale:       down to U(rescale) of the side (area), back up (bilinear or bicubic) (0.3; 0.4..0.9).
      noise_p, noise_std:       additive Gaussian noise, std in 0..255 units (0.2; 1..12).
      video_p, video_crf:       video-codec round trip (h264_roundtrip) at CRF-like U(video_crf) (0.1; 18..40).
      jpeg_p, jpeg_quality:     JPEG re-encode at integer quality in [lo, hi] (0.5; 30..95).
    Applied in that order (capture blur, motion blur, in-camera sharpening, beauty smoothing, resize, noise, video
    encode, a final JPEG), as footage is made.
    """

    hflip_p: float = 0.5
    affine_p: float = 0.5
    scale: tuple[float, float] = (0.9, 1.1)
    translate: float = 0.05
    rotate_deg: float = 5.0
    color_p: float = 0.5
    brightness: float = 0.2
    contrast: float = 0.2
    saturation: float = 0.2
    hue_deg: float = 5.0
    occlude_p: float = 0.1
    occlude_share: tuple[float, float] = (0.1, 0.3)
    shade_p: float = 0.0
    shade_gain: tuple[float, float] = (0.4, 0.8)
    shade_share: tuple[float, float] = (0.2, 0.6)
    shade_soft: tuple[float, float] = (0.01, 0.08)
    defocus_p: float = 0.0
    defocus_sigma: tuple[float, float] = (1.5, 6.0)
    defocus_axes: tuple[float, float] = (0.36, 0.50)
    quality: bool = True
    blur_p: float = 0.2
    blur_sigma: tuple[float, float] = (0.3, 2.5)
    motion_p: float = 0.15
    motion_length: tuple[float, float] = (3.0, 9.0)
    sharpen_p: float = 0.2
    sharpen_alpha: tuple[float, float] = (0.1, 0.5)
    sharpen_lightness: tuple[float, float] = (0.5, 1.0)
    smooth_p: float = 0.15
    smooth_sigma: tuple[float, float] = (20.0, 90.0)
    rescale_p: float = 0.3
    rescale: tuple[float, float] = (0.4, 0.9)
    noise_p: float = 0.2
    noise_std: tuple[float, float] = (1.0, 12.0)
    video_p: float = 0.1
    video_crf: tuple[int, int] = (18, 40)
    jpeg_p: float = 0.5
    jpeg_quality: tuple[int, int] = (30, 95)

    def __post_init__(self) -> None:
        for f in fields(self):
            v = getattr(self, f.name)
            if f.name.endswith("_p") and not 0.0 <= v <= 1.0:
                raise ForgeryDetError(f"{f.name}={v} must be in [0, 1]")
            if isinstance(v, tuple) and not (len(v) == 2 and 0 <= v[0] <= v[1]):
                raise ForgeryDetError(f"{f.name}={v} must be a (low, high) pair with 0 <= low <= high")
        checks = [
            (0 < self.scale[0], f"scale={self.scale} must be positive"),
            (self.sharpen_alpha[1] <= 1, f"sharpen_alpha={self.sharpen_alpha} must lie in [0, 1]"),
            (self.motion_length[0] >= 1, f"motion_length={self.motion_length} must be at least 1 pixel"),
            (0 < self.rescale[0] <= self.rescale[1] <= 1, f"rescale={self.rescale} must lie in (0, 1]"),
            (self.occlude_share[1] < 1, f"occlude_share={self.occlude_share} must lie in [0, 1)"),
            (self.shade_gain[1] <= 1 and self.shade_share[1] <= 1, "shade_gain and shade_share must lie in [0, 1]"),
            (self.defocus_sigma[0] > 0 and 0 < self.defocus_axes[0] and self.defocus_axes[1] <= 1,
             f"defocus_sigma={self.defocus_sigma} must be > 0 and defocus_axes={self.defocus_axes} in (0, 1]"),
            (1 <= self.jpeg_quality[0] and self.jpeg_quality[1] <= 100,
             f"jpeg_quality={self.jpeg_quality} must lie in [1, 100]"),
            (self.video_crf[1] <= 51, f"video_crf={self.video_crf} must lie in [0, 51]"),
            (0 <= self.translate <= 0.5, f"translate={self.translate} must lie in [0, 0.5] (a share of the side)"),
            (0 <= self.rotate_deg <= 180, f"rotate_deg={self.rotate_deg} must lie in [0, 180]"),
            (min(self.brightness, self.contrast, self.saturation, self.hue_deg) >= 0, "colour ranges must be >= 0"),
        ]
        for ok, msg in checks:
            if not ok:
                raise ForgeryDetError(msg)
        for name, most in AUG_MAXIMA.items():  # a typo's 1e5 would hang a blur for hours or ask for TiBs of memory
            if float(np.max(getattr(self, name))) > most:
                raise ForgeryDetError(f"{name}={getattr(self, name)} must be at most {most:g}")


# the most a range or amount may be and still transform a picture (not turn a colour factor negative or a kernel huge)
AUG_MAXIMA = {"scale": 4.0, "brightness": 1.0, "contrast": 1.0, "saturation": 1.0, "hue_deg": 180.0, "shade_soft": 0.5,
              "defocus_sigma": 50.0, "blur_sigma": 50.0, "motion_length": 256.0, "sharpen_lightness": 5.0,
              "smooth_sigma": 300.0, "noise_std": 255.0}


def _check(img: np.ndarray, what: str) -> None:
    if not isinstance(img, np.ndarray) or img.dtype != np.uint8 or img.ndim != 3 or img.shape[2] != 3:
        got = f"{img.dtype} {img.shape}" if isinstance(img, np.ndarray) else type(img).__name__
        raise ForgeryDetError(f"augmentation needs (H,W,3) uint8 RGB images; the {what} is {got}")


# ---------------------------------------------------------------------------------------------- shared


def _geometry(h: int, w: int, rng: np.random.Generator, cfg: AugmentConfig) -> np.ndarray | None:
    """(2,3) affine (flip, zoom, rotation, shift about the centre), or None for the identity."""
    flip = rng.random() < cfg.hflip_p
    m = np.array([[-1.0, 0.0, w - 1.0], [0.0, 1.0, 0.0]]) if flip else np.eye(2, 3)
    if rng.random() < cfg.affine_p:
        s = rng.uniform(*cfg.scale)
        angle = rng.uniform(-cfg.rotate_deg, cfg.rotate_deg)
        tx, ty = rng.uniform(-cfg.translate, cfg.translate, 2) * [w, h]
        a = cv2.getRotationMatrix2D(((w - 1) / 2.0, (h - 1) / 2.0), angle, s)  # (2,3)
        a[:, 2] += [tx, ty]
        m = a @ np.vstack([m, [0.0, 0.0, 1.0]])  # flip first, then the affine
        return m
    return m if flip else None


def _apply_geometry(img: np.ndarray, m: np.ndarray | None) -> np.ndarray:
    if m is None:
        return img
    h, w = img.shape[:2]
    if np.array_equal(m, [[-1.0, 0.0, w - 1.0], [0.0, 1.0, 0.0]]):
        return np.ascontiguousarray(img[:, ::-1])  # a pure flip: exact, no resampling
    return cv2.warpAffine(img, m, (w, h), flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_REFLECT_101)


def _color(rng: np.random.Generator, cfg: AugmentConfig) -> tuple[float, float, float, float] | None:
    """(brightness, contrast, saturation, hue_deg) factors, or None for no colour change."""
    if rng.random() >= cfg.color_p:
        return None
    b, c, s = 1.0 + rng.uniform(-1, 1, 3) * [cfg.brightness, cfg.contrast, cfg.saturation]
    return float(b), float(c), float(s), float(rng.uniform(-cfg.hue_deg, cfg.hue_deg))


# Rec.601 luma; YIQ chroma plane for hue rotation.
_LUMA = np.array([0.299, 0.587, 0.114])
_RGB2YIQ = np.array([[0.299, 0.587, 0.114], [0.596, -0.274, -0.322], [0.211, -0.523, 0.312]])
_YIQ2RGB = np.linalg.inv(_RGB2YIQ)


def _apply_color(img: np.ndarray, params: tuple[float, float, float, float] | None, pivot: float) -> np.ndarray:
    """One affine colour map: saturation and hue in YIQ, then brightness gain, then contrast about `pivot`."""
    if params is None:
        return img
    b, c, s, hue = params
    t = np.deg2rad(hue)
    yiq = np.eye(3)
    yiq[1:, 1:] = s * np.array([[np.cos(t), -np.sin(t)], [np.sin(t), np.cos(t)]])
    a = b * c * (_YIQ2RGB @ yiq @ _RGB2YIQ)  # (3,3)
    m = np.hstack([a, np.full((3, 1), (1.0 - c) * pivot)]).astype(np.float32)  # (3,4)
    return cv2.transform(img.astype(np.float32), m).clip(0, 255).round().astype(np.uint8)


def _grey_mean(img: np.ndarray) -> float:
    return float(img.reshape(-1, 3).mean(0) @ _LUMA)


# ---------------------------------------------------------------------------------------------- per image


def jpeg_roundtrip(img: np.ndarray, quality: int) -> np.ndarray:
    """JPEG encode at `quality` (1..100) and decode: (H,W,3) uint8 RGB -> same."""
    ok, buf = cv2.imencode(".jpg", img[:, :, ::-1], [cv2.IMWRITE_JPEG_QUALITY, int(quality)])
    if not ok:
        raise ForgeryDetError("JPEG encoding failed in OpenCV: check the opencv-python-headless install")
    return cv2.imdecode(buf, cv2.IMREAD_COLOR)[:, :, ::-1].copy()


def h264_roundtrip(img: np.ndarray, crf_or_quality: int, fourcc: str = "mp4v") -> np.ndarray:
    """Re-encode one face through a video codec and decode it back: (H,W,3) uint8 RGB -> same.

    NOT H.264 by default: this OpenCV wheel cannot encode H.264 (no libx264/openh264; 'avc1' fails to open),
    so MPEG-4 Part 2 ('mp4v', FFmpeg's mpeg4 encoder, 8x8 DCT + motion compensation, 4:2:0 chroma) is
    used; pass fourcc='avc1' with an OpenCV build that has an H.264 encoder. Two frames are written (the
    face shifted by 2 px, then the face) and the second, a motion-compensated P-frame, is read back.

    OpenCV's FFmpeg writer fixes the bitrate per pixel, so the encoder's quality cannot be set. A CRF-like
    `crf_or_quality` (0..51, higher = worse, as x264's CRF) is emulated by encoding a downscaled copy: each
    +12 above 23 halves the encoded side (x264: +6 CRF ~ half the bits; here bits scale with the pixel
    count), so 23 and below encode at full size, 35 at 1/2, 47 at 1/4.
    """
    _check(img, "image")
    h, w = img.shape[:2]
    f = min(1.0, 2.0 ** (-(float(crf_or_quality) - 23.0) / 12.0))
    ew, eh = max(16, int(round(w * f / 2)) * 2), max(16, int(round(h * f / 2)) * 2)  # even sizes
    frame = img[:, :, ::-1]  # OpenCV writes BGR
    if (ew, eh) != (w, h):
        frame = cv2.resize(frame, (ew, eh), interpolation=cv2.INTER_AREA)
    shifted = cv2.warpAffine(frame, np.float32([[1, 0, 2], [0, 1, 2]]), (ew, eh), borderMode=cv2.BORDER_REPLICATE)
    with tempfile.TemporaryDirectory(prefix="forgerydet-codec-") as tmp:
        path = os.path.join(tmp, "face.avi")
        writer = cv2.VideoWriter(path, cv2.CAP_FFMPEG, cv2.VideoWriter_fourcc(*fourcc), 25.0, (ew, eh))
        if not writer.isOpened():
            raise ForgeryDetError(
                f"OpenCV cannot encode video with fourcc {fourcc!r} here: use 'mp4v' or set video_p=0"
            )
        writer.write(np.ascontiguousarray(shifted))
        writer.write(np.ascontiguousarray(frame))
        writer.release()
        cap = cv2.VideoCapture(path, cv2.CAP_FFMPEG)
        out = None
        for _ in range(2):
            ok, decoded = cap.read()
            if ok:
                out = decoded
        cap.release()
    if out is None:
        raise ForgeryDetError(f"OpenCV could not decode its own {fourcc!r} video: set video_p=0")
    if out.shape[:2] != (h, w):
        out = cv2.resize(out, (w, h), interpolation=cv2.INTER_LINEAR)
    return out[:, :, ::-1].copy()


def motion_blur(img: np.ndarray, length: float, angle_deg: float) -> np.ndarray:
    """Linear motion blur: the mean along a line of `length` pixels through each pixel, at `angle_deg` (0: horizontal).
    (H,W,3) uint8 in and out."""
    k = max(3, int(np.ceil(length)) | 1)  # odd kernel side
    c, r = (k - 1) / 2.0, (length - 1) / 2.0
    dx, dy = np.cos(np.radians(angle_deg)) * r, np.sin(np.radians(angle_deg)) * r
    # antialiased line, drawn at 8x and summed down to the kernel
    big = np.zeros((k * 8, k * 8), np.float32)
    cv2.line(big, (round((c - dx) * 8 + 3.5), round((c - dy) * 8 + 3.5)), (round((c + dx) * 8 + 3.5), round((c + dy) * 8 + 3.5)),
             1.0, 8, cv2.LINE_AA)
    kernel = cv2.resize(big, (k, k), interpolation=cv2.INTER_AREA)
    kernel /= kernel.sum()
    return cv2.filter2D(img, -1, kernel, borderType=cv2.BORDER_REFLECT_101)


def skin_smooth(img: np.ndarray, rng: np.random.Generator, sigma: tuple[float, float] = (20.0, 90.0)) -> np.ndarray:
    """Edge-keeping smoothing of a (H,W,3) uint8 image, as beauty filters and retouching smooth skin: OpenCV's
    bilateral filter (9 px, colour and space sigma U(sigma)) or, half the time, its edge-preserving filter."""
    if rng.random() < 0.5:
        s = float(rng.uniform(*sigma))
        return cv2.bilateralFilter(img, 9, s, s)
    return cv2.edgePreservingFilter(img, flags=1, sigma_s=float(rng.uniform(20.0, 80.0)),
                                    sigma_r=float(rng.uniform(0.15, 0.45)))


def _quality(img: np.ndarray, rng: np.random.Generator, cfg: AugmentConfig) -> np.ndarray:
    """Independent per-image degradations, in capture order."""
    if not cfg.quality:
        return img
    h, w = img.shape[:2]
    if rng.random() < cfg.blur_p:
        img = cv2.GaussianBlur(img, (0, 0), rng.uniform(*cfg.blur_sigma))
    if rng.random() < cfg.motion_p:
        img = motion_blur(img, rng.uniform(*cfg.motion_length), rng.uniform(0.0, 180.0))
    if rng.random() < cfg.sharpen_p:
        img = sharpen(img, rng.uniform(*cfg.sharpen_alpha), rng.uniform(*cfg.sharpen_lightness))
    if rng.random() < cfg.smooth_p:
        img = skin_smooth(img, rng, cfg.smooth_sigma)
    if rng.random() < cfg.rescale_p:
        f = rng.uniform(*cfg.rescale)
        small = cv2.resize(img, (max(1, round(w * f)), max(1, round(h * f))), interpolation=cv2.INTER_AREA)
        up = (cv2.INTER_LINEAR, cv2.INTER_CUBIC)[rng.integers(2)]
        img = cv2.resize(small, (w, h), interpolation=up)
    if rng.random() < cfg.noise_p:
        noise = rng.standard_normal(img.shape, dtype=np.float32) * np.float32(rng.uniform(*cfg.noise_std))
        img = (img + noise).clip(0, 255).round().astype(np.uint8)
    if rng.random() < cfg.video_p:
        img = h264_roundtrip(img, int(rng.integers(cfg.video_crf[0], cfg.video_crf[1] + 1)))
    if rng.random() < cfg.jpeg_p:
        img = jpeg_roundtrip(img, int(rng.integers(cfg.jpeg_quality[0], cfg.jpeg_quality[1] + 1)))
    return img


# ---------------------------------------------------------------------------------------------- public


def augment_pair(
    real: np.ndarray, fake: np.ndarray, rng: np.random.Generator, cfg: AugmentConfig | None = None
) -> tuple[np.ndarray, np.ndarray]:
    """The SAME random geometry (flip, zoom, rotation, shift), colour jitter, band, side shadow and background blur
    for both members of a pair, then independent per-image quality transforms (blur, motion blur, sharpening, skin
    smoothing, rescale, noise, video codec, JPEG 30..95).
    Both (H,W,3) uint8 of one size in and out. Deterministic for a given rng state."""
    cfg = cfg or AugmentConfig()
    _check(real, "real face")
    _check(fake, "fake face")
    if real.shape != fake.shape:
        raise ForgeryDetError(
            f"a real/fake pair must have one size, got {real.shape} and {fake.shape}: crop both at the same size"
        )
    h, w = real.shape[:2]
    m = _geometry(h, w, rng, cfg)
    color = _color(rng, cfg)
    pivot = _grey_mean(real) if color is not None else 0.0  # contrast pivot from the real face, used for both
    scene = draw_scene(h, w, rng, cfg)  # the same band, shadow, background on both: an edge there is no sign of forgery
    out = [apply_scene(_apply_color(_apply_geometry(img, m), color, pivot), scene) for img in (real, fake)]
    return _quality(out[0], rng, cfg), _quality(out[1], rng, cfg)


def augment_one(img: np.ndarray, rng: np.random.Generator, cfg: AugmentConfig | None = None) -> np.ndarray:
    """The same family of transforms for a single (H,W,3) uint8 image. Deterministic for a given rng state."""
    cfg = cfg or AugmentConfig()
    _check(img, "image")
    h, w = img.shape[:2]
    m = _geometry(h, w, rng, cfg)
    color = _color(rng, cfg)
    img = _apply_color(_apply_geometry(img, m), color, _grey_mean(img) if color is not None else 0.0)
    return _quality(apply_scene(img, draw_scene(h, w, rng, cfg)), rng, cfg)
