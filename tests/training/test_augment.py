"""Pair augmentation: shared geometry/colour, independent quality transforms, deterministic."""

from __future__ import annotations

import dataclasses

import cv2
import numpy as np
import pytest

from forgerydet.errors import ForgeryDetError
from forgerydet.training.augment import (
    AUG_MAXIMA,
    AugmentConfig,
    augment_one,
    augment_pair,
    h264_roundtrip,
    jpeg_roundtrip,
    motion_blur,
    skin_smooth,
)

NO_QUALITY = AugmentConfig(quality=False)
ONLY_FLIP = AugmentConfig(hflip_p=1.0, affine_p=0.0, color_p=0.0, occlude_p=0.0, quality=False)


@pytest.fixture(scope="module")
def face(astronaut: np.ndarray) -> np.ndarray:
    return cv2.resize(astronaut[30:230, 130:330], (224, 224), interpolation=cv2.INTER_AREA)  # (224,224,3)


def _marked(h: int = 64, w: int = 64) -> np.ndarray:
    img = np.full((h, w, 3), 40, np.uint8)
    img[10:14, 5:9] = (255, 0, 0)
    return img


def test_same_image_as_real_and_fake_stays_equal_without_quality_ops(face):
    for seed in range(20):
        r, f = augment_pair(face, face.copy(), np.random.default_rng(seed), NO_QUALITY)
        assert r.shape == face.shape and r.dtype == np.uint8
        np.testing.assert_array_equal(r, f)


def test_geometry_and_colour_are_shared_across_the_pair(face):
    """A different 'fake' (the face with a mark) keeps its difference in the same place after augmentation."""
    fake = face.copy()
    fake[100:110, 60:70] = 0
    cfg = AugmentConfig(affine_p=1.0, color_p=1.0, quality=False)
    changed = 0
    for seed in range(10):
        r, f = augment_pair(face, fake, np.random.default_rng(seed), cfg)
        plain, _ = augment_pair(face, face, np.random.default_rng(seed), cfg)
        np.testing.assert_array_equal(r, plain)  # the real face saw exactly what it sees when alone in a pair
        diff = np.abs(r.astype(int) - f).sum(2) > 0
        changed += diff.any()
        ys, xs = np.nonzero(diff)
        # the 10x10 mark moved at most by the small affine, never to the other side of the face
        assert 40 < xs.mean() < 184 and 60 < ys.mean() < 150
    assert changed == 10


def test_flip_moves_the_mark_identically():
    img = _marked()
    r, f = augment_pair(img, img.copy(), np.random.default_rng(0), ONLY_FLIP)
    for out in (r, f):
        ys, xs = np.nonzero((out == (255, 0, 0)).all(2))
        assert ys.min() == 10 and ys.max() == 13 and xs.min() == 64 - 9 and xs.max() == 64 - 6
    one = augment_one(img, np.random.default_rng(0), ONLY_FLIP)
    np.testing.assert_array_equal(one, img[:, ::-1])


def test_no_flip_when_its_probability_is_zero():
    img = _marked()
    cfg = dataclasses.replace(ONLY_FLIP, hflip_p=0.0)
    r, f = augment_pair(img, img, np.random.default_rng(0), cfg)
    np.testing.assert_array_equal(r, img)
    np.testing.assert_array_equal(f, img)


def test_quality_ops_are_drawn_per_image(face):
    cfg = AugmentConfig(hflip_p=0, affine_p=0, color_p=0, jpeg_p=1.0, blur_p=0.5, noise_p=0.5, rescale_p=0.5, video_p=0,
                        sharpen_p=0.5)
    differs = sum(
        not np.array_equal(*augment_pair(face, face.copy(), np.random.default_rng(seed), cfg)) for seed in range(10)
    )
    assert differs == 10  # same input, independent quality draws -> different outputs


@pytest.mark.parametrize("quality", [30, 60, 95])
def test_jpeg_changes_pixels_more_at_low_quality(face, quality):
    out = jpeg_roundtrip(face, quality)
    assert out.shape == face.shape and out.dtype == np.uint8
    err = np.abs(out.astype(int) - face).mean()
    assert err > 0.5
    assert err > np.abs(jpeg_roundtrip(face, 100).astype(int) - face).mean()
    if quality < 95:
        assert err > np.abs(jpeg_roundtrip(face, quality + 30).astype(int) - face).mean()


def test_sharpen_in_augment_is_the_self_blend_kernel_on_the_whole_face(face):
    """Real faces get the self-blend's sharpen too, so that kernel alone is no fake cue: more high-frequency
    energy, and exactly pairs/sbi.sharpen at the drawn strength."""
    from forgerydet.pairs.sbi import sharpen

    cfg = AugmentConfig(hflip_p=0, affine_p=0, color_p=0, blur_p=0, rescale_p=0, noise_p=0, video_p=0, jpeg_p=0,
                        motion_p=0, smooth_p=0, occlude_p=0, sharpen_p=1.0, sharpen_alpha=(0.4, 0.4), sharpen_lightness=(0.8, 0.8))
    out = augment_one(face, np.random.default_rng(0), cfg)
    np.testing.assert_array_equal(out, sharpen(face, 0.4, 0.8))

    def lap(im):
        return cv2.Laplacian(cv2.cvtColor(im, cv2.COLOR_RGB2GRAY), cv2.CV_64F).var()

    assert lap(out) > 2 * lap(face)
    off = augment_one(face, np.random.default_rng(0), dataclasses.replace(cfg, sharpen_p=0.0))
    np.testing.assert_array_equal(off, face)


def test_an_occluding_band_covers_the_same_edge_of_both_faces(face):
    """Real and fake faces get the same band of one colour over an edge (a hat, headscarf or hand: without it, a
    band over the forehead got 20 % of real faces called FAKE, bench/shortcuts.py); the middle stays the face."""
    fake = face.copy()
    fake[100:124, 100:124] = 0  # the 'forgery' sits in the middle, which no band reaches (at most 30 % of a side)
    cfg = AugmentConfig(hflip_p=0, affine_p=0, color_p=0, occlude_p=1.0, quality=False)
    sides = set()
    for seed in range(12):
        r, f = augment_pair(face, fake, np.random.default_rng(seed), cfg)
        covered = np.abs(r.astype(int) - face).sum(2) > 30
        np.testing.assert_array_equal(r[covered], f[covered])  # the same band, same colour, on both
        assert covered.mean() > 0.05 and not covered[80:144, 80:144].any()
        np.testing.assert_array_equal(f[100:124, 100:124], 0)
        ys, xs = np.nonzero(covered)
        sides.add("top" if ys.max() < 112 else "bottom" if ys.min() > 112 else "left" if xs.max() < 112 else "right")
        assert (augment_one(face, np.random.default_rng(seed), cfg) == r).all()  # a lone face gets the same band
    assert sides == {"top", "bottom", "left", "right"}
    plain = AugmentConfig(hflip_p=0, affine_p=0, color_p=0, occlude_p=0.0, quality=False)
    np.testing.assert_array_equal(augment_one(face, np.random.default_rng(0), plain), face)
    with pytest.raises(ForgeryDetError, match="occlude_share"):
        AugmentConfig(occlude_share=(0.1, 1.0))


def assert_off_draws_nothing(face: np.ndarray, fake: np.ndarray, **off) -> None:
    """A transform at probability 0 (with any ranges) draws no random number, so runs from before it reproduce."""
    rng_a, rng_b = np.random.default_rng(3), np.random.default_rng(3)
    augment_pair(face, fake, rng_a, AugmentConfig())
    augment_pair(face, fake, rng_b, AugmentConfig(**off))
    assert rng_a.random() == rng_b.random()


def test_a_side_shadow_darkens_the_same_side_of_both_faces_and_is_off_by_default(face):
    """Side light (training/scene.py): one side of both faces darker by the same gain, the other side untouched, the
    'forgery' in the middle still telling the two apart; with shade_p 0 (the default) nothing is drawn at all."""
    fake = face.copy()
    fake[100:124, 100:124] = 0
    cfg = AugmentConfig(hflip_p=0, affine_p=0, color_p=0, occlude_p=0, quality=False, shade_p=1.0)
    sides = set()
    for seed in range(10):
        r, f = augment_pair(face, fake, np.random.default_rng(seed), cfg)
        ratio = r.astype(float).mean((0, 2)) / face.astype(float).mean((0, 2))  # per column
        dark = ratio < 0.9
        assert dark.any() and not dark.all() and ratio.min() >= 0.39 and np.abs(ratio[~dark] - 1).max() < 0.1
        sides.add("left" if dark[0] else "right")
        keep = np.ones(face.shape[:2], bool)
        keep[100:124, 100:124] = False
        np.testing.assert_array_equal(r[keep], f[keep])  # the same shadow on both
        assert (augment_one(face, np.random.default_rng(seed), cfg) == r).all()
    assert sides == {"left", "right"}
    assert_off_draws_nothing(face, fake, shade_p=0.0, shade_gain=(0.1, 0.2))
    with pytest.raises(ForgeryDetError, match="shade_gain"):
        AugmentConfig(shade_gain=(0.5, 1.5))


def test_a_defocused_background_falls_on_both_faces_alike_and_is_off_by_default(face):
    """Shallow depth of field (training/scene.py): the corners of both faces blurred the same way, the middle (where
    the 'forgery' is) untouched; with defocus_p 0 (the default) nothing is drawn at all."""
    fake = face.copy()
    fake[100:124, 100:124] = 0
    cfg = AugmentConfig(hflip_p=0, affine_p=0, color_p=0, occlude_p=0, quality=False, defocus_p=1.0)
    for seed in range(5):
        r, f = augment_pair(face, fake, np.random.default_rng(seed), cfg)
        assert np.array_equal(r[90:134, 90:134], face[90:134, 90:134]) and not f[100:124, 100:124].any()
        detail = [cv2.Laplacian(cv2.cvtColor(x[-40:, :40], cv2.COLOR_RGB2GRAY), cv2.CV_32F).var() for x in (face, r)]
        assert detail[1] < 0.5 * detail[0]  # a lower corner (the astronaut's suit) lost its detail
        keep = np.ones(face.shape[:2], bool)
        keep[96:128, 96:128] = False
        np.testing.assert_array_equal(r[keep], f[keep])  # the same blur on both, outside the blurred 'forgery'
    assert_off_draws_nothing(face, fake, defocus_p=0.0, defocus_sigma=(3.0, 9.0))
    with pytest.raises(ForgeryDetError, match="defocus_axes"):
        AugmentConfig(defocus_axes=(0.4, 1.5))


def test_skin_smoothing_flattens_texture_and_keeps_edges(face):
    """Real faces get beauty-filter smoothing too (bench/shortcuts.py: without it, 82 % of smoothed real faces were
    called FAKE): less fine texture than the face, yet its strong edges sharper than a Gaussian blur of equal
    texture loss leaves them; both filter kinds come up, and each image of a pair draws its own."""
    only = AugmentConfig(hflip_p=0, affine_p=0, color_p=0, blur_p=0, rescale_p=0, noise_p=0, video_p=0, jpeg_p=0,
                         motion_p=0, sharpen_p=0, occlude_p=0, smooth_p=1.0)
    edges = cv2.Canny(cv2.cvtColor(face, cv2.COLOR_RGB2GRAY), 100, 200) > 0  # the face's strong edges

    def texture(im):  # fine detail away from strong edges
        g = cv2.cvtColor(im, cv2.COLOR_RGB2GRAY).astype(np.float64)
        return np.abs(g - cv2.GaussianBlur(g, (0, 0), 1.0))[~edges].mean()

    def edge_contrast(im):
        g = cv2.cvtColor(im, cv2.COLOR_RGB2GRAY).astype(np.float64)
        return np.hypot(cv2.Sobel(g, cv2.CV_64F, 1, 0), cv2.Sobel(g, cv2.CV_64F, 0, 1))[edges].mean()

    bilateral = []
    for seed in range(8):
        out = augment_one(face, np.random.default_rng(seed), only)
        assert out.shape == face.shape and out.dtype == np.uint8
        assert texture(out) < 0.9 * texture(face)
        sigma = next(s for s in np.arange(0.3, 5.0, 0.05) if texture(cv2.GaussianBlur(face, (0, 0), s)) <= texture(out))
        assert edge_contrast(out) > edge_contrast(cv2.GaussianBlur(face, (0, 0), sigma))
        draw = np.random.default_rng(seed)  # skin_smooth's own draws: kind, then the bilateral sigma
        s = float(draw.uniform(20.0, 90.0)) if draw.random() < 0.5 else None
        bilateral.append(s is not None and np.array_equal(skin_smooth(face, np.random.default_rng(seed)),
                                                          cv2.bilateralFilter(face, 9, s, s)))
    assert any(bilateral) and not all(bilateral)  # both kinds, the bilateral exactly as drawn
    r, f = augment_pair(face, face.copy(), np.random.default_rng(0), only)
    assert not np.array_equal(r, f)
    off = augment_one(face, np.random.default_rng(0), dataclasses.replace(only, smooth_p=0.0))
    np.testing.assert_array_equal(off, face)


@pytest.mark.parametrize("angle, along", [(0.0, 1), (90.0, 0)])
def test_motion_blur_smears_along_its_direction_only(angle, along):
    img = np.zeros((21, 21, 3), np.uint8)
    img[10, 10] = 255
    out = motion_blur(img, 7.0, angle)[:, :, 0].astype(np.int64)
    assert abs(int(out.sum()) - 255) <= 3  # brightness kept
    spread = np.nonzero(out.sum(axis=1 - along))[0]  # the rows (angle 90) or columns (angle 0) it reaches
    across = np.nonzero(out.sum(axis=along))[0]
    assert spread.min() == 7 and spread.max() == 13  # 7 px long
    assert across.max() - across.min() <= 1  # and about one pixel wide


def test_motion_blur_is_drawn_per_image(face):
    cfg = AugmentConfig(hflip_p=0, affine_p=0, color_p=0, blur_p=0, rescale_p=0, noise_p=0, video_p=0, jpeg_p=0,
                        sharpen_p=0, smooth_p=0, motion_p=1.0)
    r, f = augment_pair(face, face.copy(), np.random.default_rng(0), cfg)
    assert not np.array_equal(r, f) and not np.array_equal(r, face)


def test_jpeg_in_augment_changes_pixels(face):
    cfg = AugmentConfig(hflip_p=0, affine_p=0, color_p=0, blur_p=0, rescale_p=0, noise_p=0, video_p=0, jpeg_p=1.0)
    out = augment_one(face, np.random.default_rng(0), cfg)
    assert np.abs(out.astype(int) - face).mean() > 0.5


def test_video_roundtrip_degrades_with_crf(face):
    errs = []
    for crf in (23, 35, 47):
        out = h264_roundtrip(face, crf)
        assert out.shape == face.shape and out.dtype == np.uint8
        errs.append(np.abs(out.astype(int) - face).mean())
    assert 0.5 < errs[0] < errs[1] < errs[2]
    np.testing.assert_array_equal(h264_roundtrip(face, 30), h264_roundtrip(face, 30))


def test_deterministic_for_a_seed(face):
    fake = np.ascontiguousarray(face[:, ::-1])
    cfg = AugmentConfig(video_p=0.5)  # every op live
    for seed in range(5):
        a = augment_pair(face, fake, np.random.default_rng(seed), cfg)
        b = augment_pair(face, fake, np.random.default_rng(seed), cfg)
        np.testing.assert_array_equal(a[0], b[0])
        np.testing.assert_array_equal(a[1], b[1])
        np.testing.assert_array_equal(augment_one(face, np.random.default_rng(seed), cfg),
                                       augment_one(face, np.random.default_rng(seed), cfg))
    outs = [augment_one(face, np.random.default_rng(s), cfg) for s in range(4)]
    assert len({o.tobytes() for o in outs}) > 1


def test_odd_sizes_keep_their_shape():
    img = np.random.default_rng(0).integers(0, 256, (37, 53, 3), dtype=np.uint8)
    cfg = AugmentConfig(hflip_p=1, affine_p=1, color_p=1, blur_p=1, rescale_p=1, noise_p=1, video_p=1, jpeg_p=1)
    r, f = augment_pair(img, img, np.random.default_rng(0), cfg)
    assert r.shape == f.shape == img.shape and r.dtype == f.dtype == np.uint8


def test_bad_inputs_say_what_is_wrong(face):
    with pytest.raises(ForgeryDetError, match="one size"):
        augment_pair(face, face[:100], np.random.default_rng(0))
    with pytest.raises(ForgeryDetError, match="uint8"):
        augment_one(face.astype(np.float32), np.random.default_rng(0))
    with pytest.raises(ForgeryDetError, match="jpeg_p"):
        AugmentConfig(jpeg_p=1.5)
    with pytest.raises(ForgeryDetError, match="motion_length"):
        AugmentConfig(motion_length=(0.5, 3.0))
    with pytest.raises(ForgeryDetError, match="sharpen_alpha"):
        AugmentConfig(sharpen_alpha=(0.2, 1.5))


def test_flip_composes_with_an_identity_affine():
    img = _marked()
    cfg = AugmentConfig(hflip_p=1.0, affine_p=1.0, scale=(1.0, 1.0), translate=0.0, rotate_deg=0.0,
                        color_p=0.0, quality=False)
    r, f = augment_pair(img, img, np.random.default_rng(0), cfg)
    np.testing.assert_array_equal(r, img[:, ::-1])
    np.testing.assert_array_equal(f, img[:, ::-1])


@pytest.mark.parametrize("bad", [dict(translate=5.0), dict(translate=-0.1), dict(rotate_deg=720.0)])
def test_geometry_beyond_the_crop_is_refused(bad):
    with pytest.raises(ForgeryDetError, match=next(iter(bad))):  # a shift of 5 sides moves the face out of the crop
        AugmentConfig(**bad)


@pytest.mark.parametrize("bad, said", [
    (dict(blur_sigma=(1e5, 1e5)), "blur_sigma=(100000.0, 100000.0) must be at most 50"),  # hung in a C blur for hours
    (dict(motion_length=(3.0, 1e5)), "motion_length=(3.0, 100000.0) must be at most 256"),  # asked for 2.3 TiB
    (dict(brightness=100.0), "brightness=100.0 must be at most 1"),  # a negative colour factor
    (dict(noise_std=(1.0, 1e30)), "noise_std=(1.0, 1e+30) must be at most 255"),
    (dict(hue_deg=1e30), "hue_deg=1e+30 must be at most 180"),
    (dict(scale=(0.9, 1000.0)), "scale=(0.9, 1000.0) must be at most 4"),
])
def test_amounts_beyond_any_picture_are_refused_before_training(bad, said):
    with pytest.raises(ForgeryDetError) as e:
        AugmentConfig(**bad)
    assert str(e.value) == said
    near = {k: tuple(x * 0 + m for x in v) if isinstance(v, tuple) else m for k, v in bad.items()
            for m in [AUG_MAXIMA[k]]}
    AugmentConfig(**near)  # at the most: fine
