"""Frames as a player shows them: square pixels and per-video deinterlacing (faces/playback.py)."""

from __future__ import annotations

import cv2
import numpy as np
import pytest

from forgerydet.faces.interlace import deinterlace
from forgerydet.faces.playback import INTERLACE_PROBE_FRAMES, Playback, square_pixel_size
from tests._faces_util import shifted, weave


@pytest.fixture
def still(astronaut):
    return cv2.resize(astronaut, (128, 128), interpolation=cv2.INTER_AREA)


@pytest.fixture
def combed(still):
    return weave(still, shifted(still, 5))


def play(p: Playback, frames: list[np.ndarray]) -> list:
    out = []
    for i, f in enumerate(frames):
        out += p.push(i, i / 25, f)
    return out + p.flush()


def test_frames_are_held_until_interlacing_is_decided(still):
    p = Playback()
    for i in range(INTERLACE_PROBE_FRAMES - 1):
        assert p.push(i, 0.0, still) == []
    out = p.push(INTERLACE_PROBE_FRAMES - 1, 0.0, still)
    assert [f.index for f in out] == list(range(INTERLACE_PROBE_FRAMES))
    assert len(p.push(99, 0.0, still)) == 1 and p.flush() == []  # then one at a time
    assert not any(f.deinterlaced for f in out) and np.array_equal(out[0].image, still)


def test_combing_on_a_probe_frame_deinterlaces_every_frame(still, combed):
    frames = [still, still, combed] + [still] * 10
    out = play(Playback(), frames)
    assert [f.index for f in out] == list(range(len(frames)))
    assert all(f.deinterlaced for f in out)
    assert np.array_equal(out[0].image, deinterlace(still))  # the frames before it as well
    assert np.array_equal(out[2].image, deinterlace(combed))


def test_interlacing_is_decided_once_on_the_probe_frames(still, combed, monkeypatch):
    import forgerydet.faces.playback as playback

    tested, real_test = [], playback.is_combed
    monkeypatch.setattr(playback, "is_combed", lambda rgb: tested.append(1) or real_test(rgb))
    frames = [still] * INTERLACE_PROBE_FRAMES + [still, combed, still]
    out = play(Playback(), frames)
    assert not any(f.deinterlaced for f in out)  # a combed frame after the probe does not change the decision
    assert len(tested) == INTERLACE_PROBE_FRAMES


def test_a_short_video_is_decided_at_its_end(still, combed):
    assert [f.deinterlaced for f in play(Playback(), [still, still])] == [False, False]
    assert [f.deinterlaced for f in play(Playback(), [still, combed])] == [True, True]


def test_no_deinterlace_leaves_frames_as_stored_and_holds_nothing(combed):
    p = Playback(deinterlace=False)
    (frame,) = p.push(0, 0.0, combed)
    assert not frame.deinterlaced and np.array_equal(frame.image, combed)


def test_a_decision_made_elsewhere_is_kept_and_nothing_is_held(still, combed, monkeypatch):
    import forgerydet.faces.playback as playback

    monkeypatch.setattr(playback, "is_combed", lambda rgb: pytest.fail("decided already: no frame is tested"))
    (frame,) = Playback(interlaced=True).push(0, 0.0, still)  # a pair's fake, decoded as its interlaced real was
    assert frame.deinterlaced and np.array_equal(frame.image, deinterlace(still))
    (frame,) = Playback(interlaced=False).push(0, 0.0, combed)
    assert not frame.deinterlaced and np.array_equal(frame.image, combed)
    (frame,) = Playback(deinterlace=False, interlaced=True).push(0, 0.0, combed)  # --no-deinterlace wins
    assert not frame.deinterlaced and np.array_equal(frame.image, combed)


def test_a_turned_frames_fields_are_its_columns(combed):
    upright = np.ascontiguousarray(combed.transpose(1, 0, 2))  # the weave runs down the columns now
    (frame,) = play(Playback(turned=True), [upright])
    assert frame.deinterlaced
    assert np.array_equal(frame.image, deinterlace(combed).transpose(1, 0, 2))
    (frame,) = play(Playback(turned=False), [upright])
    assert not frame.deinterlaced  # read along the rows it is not combed


def test_non_square_pixels_are_stretched(still):
    (frame,) = play(Playback(sar=4 / 3), [still])
    assert frame.image.shape == (128, 171, 3) and frame.pixel_aspect == pytest.approx(4 / 3)
    (frame,) = play(Playback(), [still])
    assert frame.pixel_aspect == 1.0


@pytest.mark.parametrize(
    "stored, sar, turned, shown",
    [
        ((720, 576), 64 / 45, False, (1024, 576)),  # PAL DVD, 16:9
        ((720, 576), 16 / 15, False, (768, 576)),  # PAL DVD, 4:3
        ((720, 480), 8 / 9, False, (720, 540)),  # NTSC DVD, 4:3: taller, not narrower
        ((1440, 1080), 4 / 3, False, (1920, 1080)),  # HDV
        ((1080, 1440), 4 / 3, True, (1080, 1920)),  # HDV shot upright: the stored width is the height now
        ((640, 480), 1.0, False, (640, 480)),
    ],
)
def test_square_pixel_size(stored, sar, turned, shown):
    assert square_pixel_size(*stored, sar, turned) == shown

