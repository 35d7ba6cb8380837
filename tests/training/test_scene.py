"""training/scene.py: the band, the side shadow and the defocused background that fall on both faces of a pair alike."""

from __future__ import annotations

import numpy as np

from forgerydet.training.scene import (apply_band, apply_defocus, apply_scene, apply_shade, draw_band, draw_defocus,
                                      draw_scene, draw_shade)


def test_draw_band_is_none_below_its_probability_and_covers_one_edge_otherwise():
    rng = np.random.default_rng(0)
    assert draw_band(64, 64, rng, 0.0, (0.1, 0.3)) is None
    mask, colour = draw_band(64, 64, rng, 1.0, (0.2, 0.2))
    assert mask.shape == (64, 64, 1) and colour.shape == (3,)
    assert mask[32, 32, 0] < 0.01 and mask.max() > 0.99  # the middle untouched, an edge covered
    img = np.full((64, 64, 3), 100, np.uint8)
    out = apply_band(img, (mask, colour))
    assert out.dtype == np.uint8 and (out[32, 32] == 100).all()
    assert apply_band(img, None) is img


def test_shade_darkens_one_side_by_its_gain_behind_a_soft_edge():
    rng = np.random.default_rng(1)
    mask, gain = draw_shade(64, 128, rng, 1.0, (0.5, 0.5), (0.25, 0.25), (0.02, 0.02))
    assert gain == 0.5 and mask.shape == (64, 128, 1)
    img = np.full((64, 128, 3), 200, np.uint8)
    out = apply_shade(img, (mask, gain)).astype(int)
    row = out[32, :, 0]
    dark_side = row[:10] if row[0] < row[-1] else row[-10:]
    light_side = row[-10:] if row[0] < row[-1] else row[:10]
    assert (dark_side == 100).all() and (light_side == 200).all()  # gain 0.5 under the shadow, none beyond it
    assert 100 < row[len(row) // 2 - 40: len(row) // 2 + 40].max()  # 25 % deep: the middle is lit
    edge = np.abs(np.diff(row))
    assert edge.max() < 60  # soft: no one-pixel step from 200 to 100
    assert apply_shade(img, None) is img


def test_draw_shade_draws_nothing_at_probability_zero():
    a, b = np.random.default_rng(5), np.random.default_rng(5)
    assert draw_shade(32, 32, a, 0.0, (0.4, 0.8), (0.2, 0.6), (0.01, 0.08)) is None
    assert a.random() == b.random()


def test_defocus_blurs_around_the_head_and_keeps_the_middle_sharp():
    rng = np.random.default_rng(2)
    assert draw_defocus(64, 64, rng, 0.0, (2.0, 2.0), (0.4, 0.4)) is None
    mask, sigma = draw_defocus(224, 224, rng, 1.0, (4.0, 4.0), (0.4, 0.4))
    assert mask.shape == (224, 224, 1) and sigma == 4.0  # pixels at 224 px
    assert mask[100, 112, 0] > 0.99 and mask[:8, :8].max() < 0.01 and mask[-8:, :8].max() < 0.01  # corners blurred
    assert mask[100, 112 + 80, 0] > 0.5  # 0.36 of the width from the centre still sharp: the face is never blurred
    assert draw_defocus(448, 448, np.random.default_rng(2), 1.0, (4.0, 4.0), (0.4, 0.4))[1] == 8.0  # scales with size
    chequer = (np.indices((224, 224)).sum(0) % 2 * 255).astype(np.uint8)[..., None].repeat(3, -1)
    out = apply_defocus(chequer, (mask, sigma)).astype(int)
    assert np.array_equal(out[90:110, 100:124], chequer[90:110, 100:124])  # the middle untouched
    assert np.abs(out[:10, :10] - 127.5).max() < 10  # the corners blurred to grey
    assert apply_defocus(chequer, None) is chequer


def test_draw_scene_draws_each_transform_once_in_order():
    from forgerydet.training.augment import AugmentConfig

    cfg = AugmentConfig(occlude_p=1.0, shade_p=1.0, defocus_p=1.0)
    band, shade, defocus = draw_scene(64, 64, np.random.default_rng(0), cfg)
    assert band is not None and shade is not None and defocus is not None
    off = draw_scene(64, 64, np.random.default_rng(0), AugmentConfig(occlude_p=0.0))
    assert off == (None, None, None)  # shade and defocus are off by default
    img = np.full((64, 64, 3), 120, np.uint8)
    assert apply_scene(img, off) is img
