"""Combing detection and deinterlacing of single frames."""

from __future__ import annotations

import numpy as np
import pytest

from forgerydet.faces.interlace import COMB_BLOCK, comb_map, deinterlace, is_combed
from tests._faces_util import shifted, weave


def test_a_photo_is_not_combed_and_its_interlaced_weave_is(astronaut):
    assert not is_combed(astronaut)
    assert float(comb_map(astronaut).max()) < 0.3
    for dx in (3, 6):
        combed = weave(astronaut, shifted(astronaut, dx))
        assert is_combed(combed)
        assert int((comb_map(combed) >= 0.3).sum()) > 20  # along every moving edge, not one block
    assert not is_combed(weave(astronaut, astronaut))  # no motion between the fields: nothing to see


def test_thin_lines_and_gradients_are_not_combing():
    lines = np.full((96, 96, 3), 100, np.uint8)
    lines[[20, 50, 80]] = 255  # isolated one-pixel lines: 1 row of a 16-row block
    assert not is_combed(lines)
    ramp = np.repeat(np.linspace(0, 255, 96, dtype=np.uint8)[:, None], 96, axis=1)
    assert not is_combed(np.dstack([ramp] * 3))


def test_comb_map_shape_and_a_frame_smaller_than_a_block():
    assert comb_map(np.zeros((100, 70, 3), np.uint8)).shape == ((100 - 4) // COMB_BLOCK, 70 // COMB_BLOCK)
    for shape in ((10, 10, 3), (4, 64, 3), (3, 2, 3), (1, 1, 3), (64, 8, 3)):
        tiny = np.random.default_rng(0).integers(0, 256, shape, dtype=np.uint8)
        assert comb_map(tiny).size == 0 and not is_combed(tiny)


@pytest.mark.parametrize("h, w", [(1, 20), (2, 20), (3, 1), (5, 2), (48, 20), (49, 20)])
def test_deinterlace_keeps_the_even_field(h, w):
    rng = np.random.default_rng(0)
    rgb = rng.integers(0, 256, (h, w, 3), dtype=np.uint8)
    out = deinterlace(rgb)
    assert out.shape == rgb.shape and out.dtype == np.uint8
    assert np.array_equal(out[0::2], rgb[0::2])


def test_deinterlace_undoes_combing(astronaut):
    combed = weave(astronaut, shifted(astronaut, 6))
    fixed = deinterlace(combed)
    err = lambda x: float(np.abs(x.astype(np.int32) - astronaut).mean())  # noqa: E731
    assert err(fixed) < 0.5 * err(combed)
    assert not is_combed(fixed)


def test_deinterlace_follows_a_diagonal_edge():
    """A 45-degree edge: the vertical average of the rows around a missing row smears it; the edge-line average
    follows it and gets the missing row right."""
    y, x = np.mgrid[0:64, 0:64]
    edge = np.where(x > y, 255, 0).astype(np.uint8)
    rgb = np.dstack([edge] * 3)
    out = deinterlace(rgb)
    vertical = ((rgb[0:-2:2].astype(np.int32) + rgb[2::2]) // 2).astype(np.uint8)  # rows 1, 3, ...
    inner = slice(4, -4)  # away from the borders
    ela_err = np.abs(out[1:-1:2, inner].astype(np.int32) - rgb[1:-1:2, inner]).mean()
    avg_err = np.abs(vertical[:, inner].astype(np.int32) - rgb[1:-1:2, inner]).mean()
    assert ela_err < 0.2 * avg_err
