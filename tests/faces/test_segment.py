"""faces/segment.py: --start/--end as times, and the frames of a video they cover."""

from __future__ import annotations

import math

import pytest

from forgerydet.errors import ForgeryDetError
from forgerydet.faces.segment import check_segment, clock, frame_span, parse_time, segment_text


@pytest.mark.parametrize("text, seconds", [
    ("90", 90.0), ("90.5", 90.5), (".5", 0.5), ("0", 0.0), ("1:30", 90.0), ("01:30.25", 90.25), ("75:00", 4500.0),
    ("1:02:03.5", 3723.5), (" 2:00 ", 120.0), (12, 12.0), (2.5, 2.5), (None, None),
])  # fmt: skip
def test_times_as_a_player_writes_them(text, seconds):
    assert parse_time(text, "--start") == seconds


@pytest.mark.parametrize("text, why", [
    ("abc", "give a time as seconds"), ("-3", "give a time as seconds"), ("1:75", "under 60"),
    ("1:60:00", "under 60"), ("1::2", "give a time"), ("", "give a time"), ("nan", "give a time"),
    (-1.0, "a number of seconds >= 0"), (math.inf, "a number of seconds >= 0"), (math.nan, "a number of seconds >= 0"),
    (True, "give a time"), ("9" * 400 + ":00:00", r"\(406 characters\): give a time"), ("1e3", "give a time"),
    ("99999999:00:00", "under a year"), (1e300, "under a year"), ("\u0661", "give a time"),  # Arabic-Indic 1
])  # fmt: skip
def test_anything_else_is_one_line_naming_the_option(text, why):
    with pytest.raises(ForgeryDetError, match=f"^--end .*{why}"):
        parse_time(text, "--end")


def test_end_must_come_after_start():
    check_segment(None, None)
    check_segment(5.0, None)
    check_segment(None, 5.0)
    check_segment(0.0, 0.04)
    with pytest.raises(ForgeryDetError, match=r"^--end 0:05 is not after --start 0:05: give a later --end$"):
        check_segment(5.0, 5.0)
    with pytest.raises(ForgeryDetError, match=r"^--end 0:00 is not after --start 0:00"):
        check_segment(None, 0.0)  # refused before any work, not an error for every file
    for bad in (-1.0, math.nan, "5"):
        with pytest.raises(ForgeryDetError, match="--start .* a time must be a number of seconds >= 0"):
            check_segment(bad, None)


def test_clock_reads_as_a_player_shows_time():
    assert [clock(t) for t in (0, 7.25, 59.999, 59.9996, 90, 3723.5, 36000)] == \
        ["0:00", "0:07.25", "0:59.999", "1:00", "1:30", "1:02:03.5", "10:00:00"]
    assert segment_text(None, None) is None and segment_text(0.0, None) is None  # --start 0: the whole video
    assert segment_text(5, None) == "0:05-end" and segment_text(None, 9.5) == "0:00-0:09.5"


def test_frame_span_runs_from_the_frame_on_screen_at_start_to_the_last_one_begun_before_end():
    assert frame_span(100, 10.0, None, None, "v") == (0, 100)
    assert frame_span(100, 10.0, 2.0, 5.0, "v") == (20, 50)  # frames shown at 2.0 .. 4.9 s
    assert frame_span(100, 10.0, 2.05, 5.01, "v") == (20, 51)  # frame 20 is on screen at 2.05, frame 50 begins at 5.0
    assert frame_span(100, 10.0, 2.01, 2.05, "v") == (20, 21)  # inside one frame: that frame
    assert frame_span(100, 10.0, 2.0, 60.0, "v") == (20, 100)  # an end past the video's: its end
    assert frame_span(100, 25.0, 0.2, None, "v") == (5, 100)  # 0.2 x 25 = 5.000000000000001 is frame 5
    assert frame_span(396, 25.0, 15.81, None, "v") == (395, 396)  # in the last frame's time: that frame
    with pytest.raises(ForgeryDetError, match=r"^v: --start 0:12 is past the video's end \(it is 0:10 long\)$"):
        frame_span(100, 10.0, 12.0, None, "v")
    with pytest.raises(ForgeryDetError, match=r"^v: --start 0:10 is past the video's end"):
        frame_span(100, 10.0, 10.0, None, "v")
    with pytest.raises(ForgeryDetError, match="^v: the video does not state its frame rate"):
        frame_span(100, 0.0, 1.0, None, "v")
