"""Frame sampling and media reading (no face detection here)."""

from __future__ import annotations

import os
from pathlib import Path

import cv2
import numpy as np
import pytest

import forgerydet.faces.media as video
from forgerydet.errors import ForgeryDetError
from forgerydet.faces.media import (
    describe_skipped,
    expand_sources,
    iter_frames,
    media_kind,
    sample_indices,
    video_info,
)
from forgerydet.faces.playback import INTERLACE_PROBE_FRAMES
from forgerydet.io import read_image
from tests._faces_util import CountingCapture, DamagedCapture, level_frames, rotate_90, shifted, weave, with_pixel_aspect, write_video


@pytest.fixture
def level_video(tmp_path):
    """60 frames, frame i flat grey 4*i (mp4v, 10 fps)."""
    return write_video(tmp_path / "levels.mp4", level_frames(60))


@pytest.fixture
def counting(monkeypatch):
    CountingCapture.calls = {}
    monkeypatch.setattr(video.cv2, "VideoCapture", CountingCapture)
    return CountingCapture.calls


def _sequential(path) -> list[np.ndarray]:
    """Every frame, decoded one after another with plain read(): the ground truth for sampling."""
    cap = cv2.VideoCapture(str(path))
    out = []
    while True:
        ok, bgr = cap.read()
        if not ok:
            return out
        out.append(cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB))


def _same_frames(frames, path) -> bool:
    truth = _sequential(path)
    return all(np.array_equal(f.image, truth[f.index]) for f in frames)


def test_sample_indices_modes():
    assert sample_indices(100, 25.0, num_frames=5) == [0, 25, 50, 74, 99]  # first and last included
    assert sample_indices(3, 25.0, num_frames=8) == [0, 1, 2]  # fewer frames than asked: all of them
    assert sample_indices(10, 25.0, every=4) == [0, 4, 8]
    assert sample_indices(100, 25.0, fps=5) == list(range(0, 100, 5))
    assert sample_indices(0, 25.0, num_frames=4) == []
    assert len(sample_indices(1000)) == video.DEFAULT_NUM_FRAMES
    with pytest.raises(ForgeryDetError, match="one way"):
        sample_indices(100, 25.0, num_frames=4, every=2)
    with pytest.raises(ForgeryDetError, match="frame rate"):
        sample_indices(100, 0.0, fps=1)
    assert sample_indices(100, 25.0, fps=1e12) == list(range(100))  # above the video's rate: every frame, at once
    for bad in (float("nan"), float("inf"), 0.0):
        with pytest.raises(ForgeryDetError, match="sampling rate"):
            sample_indices(100, 25.0, fps=bad)


def test_sampled_frames_are_the_right_frames(level_video):
    info = video_info(level_video)
    assert (info.frame_count, info.fps, info.width, info.height) == (60, 10.0, 64, 48)
    frames = list(iter_frames(level_video, num_frames=6))
    want = sample_indices(60, 10.0, num_frames=6)
    assert [f.index for f in frames] == want
    assert _same_frames(frames, level_video)  # the content is that frame's, not just the label
    assert [f.time for f in frames] == pytest.approx([i / 10 for i in want])
    assert frames[0].image.dtype == np.uint8 and frames[0].image.shape == (48, 64, 3)


def test_grab_skipping_decodes_only_sampled_frames(level_video, counting):
    frames = list(iter_frames(level_video, every=10))
    assert [f.index for f in frames] == [0, 10, 20, 30, 40, 50]
    assert counting.get("retrieve", 0) == 6  # colour conversion + copy only for sampled frames
    assert counting.get("read", 0) == 0
    assert counting.get("grab", 0) == 51  # demuxing stops at the last sampled frame (50), not at 60
    assert _same_frames(frames, level_video)


def test_seeking_reads_only_sampled_frames(level_video, counting):
    frames = list(iter_frames(level_video, num_frames=4, seek_threshold=0))
    want = sample_indices(60, 10.0, num_frames=4)
    assert [f.index for f in frames] == want
    assert _same_frames(frames, level_video)  # seeking lands on the exact frame
    assert counting.get("seek", 0) == 3  # every gap is longer than the threshold (the first index is 0)
    assert counting.get("grab", 0) == 4 and counting.get("retrieve", 0) == 4  # no frame skipped by grabbing


def test_frames_are_streamed(level_video, counting):
    it = iter_frames(level_video, num_frames=10, deinterlace=False)
    first = next(it)
    assert first.index == 0 and counting.get("retrieve", 0) == 1  # nothing decoded ahead
    it.close()


def test_frames_are_streamed_after_the_interlace_probe(level_video, counting):
    it = iter_frames(level_video, num_frames=12)
    assert next(it).index == 0 and counting["retrieve"] == INTERLACE_PROBE_FRAMES  # held until decided
    for k in range(1, INTERLACE_PROBE_FRAMES + 2):
        next(it)
    assert counting["retrieve"] == INTERLACE_PROBE_FRAMES + 2  # then one at a time
    it.close()


def test_explicit_indices_drop_past_the_end(level_video):
    assert [f.index for f in iter_frames(level_video, indices=[50, 3, 3, 70])] == [3, 50]


def test_rotation_metadata_is_honoured(tmp_path):
    frames = []
    for i in range(5):
        f = np.zeros((48, 64, 3), np.uint8)
        f[:16, :16] = 255  # a white block in the top-left corner
        frames.append(f)
    plain = write_video(tmp_path / "plain.mp4", frames)
    rotated = rotate_90(plain, tmp_path / "rotated.mp4")
    a = next(iter_frames(plain, num_frames=1)).image
    b = next(iter_frames(rotated, num_frames=1)).image
    assert a.shape == (48, 64, 3) and b.shape == (64, 48, 3)
    assert a[:16, :16].mean() > 200
    assert b[:16, -16:].mean() > 200 and b[:16, :16].mean() < 50  # turned 90 degrees clockwise


def _squeezed_disc(n: int = 3) -> list[np.ndarray]:
    """A white disc (radius 16) as an anamorphic 4:3-pixel frame stores it: squeezed to 3/4 of its width."""
    frames = []
    for _ in range(n):
        f = np.zeros((48, 64, 3), np.uint8)
        cv2.ellipse(f, (32, 24), (12, 16), 0, 0, 360, (255, 255, 255), -1)
        frames.append(f)
    return frames


def _blob_aspect(rgb: np.ndarray) -> float:
    ys, xs = np.nonzero(rgb[..., 0] > 128)
    return (xs.max() - xs.min() + 1) / (ys.max() - ys.min() + 1)


def test_anamorphic_video_is_stretched_to_square_pixels(tmp_path):
    plain = write_video(tmp_path / "plain.mp4", _squeezed_disc())
    wide = with_pixel_aspect(plain, tmp_path / "wide.mp4", 4, 3)
    a = next(iter_frames(plain, num_frames=1)).image
    b = next(iter_frames(wide, num_frames=1)).image
    assert a.shape == (48, 64, 3) and b.shape == (48, 85, 3)  # 64 x 4/3, never shrunk
    assert _blob_aspect(a) == pytest.approx(0.75, abs=0.08)
    assert _blob_aspect(b) == pytest.approx(1.0, abs=0.08)  # the disc is round again
    info = video_info(wide)
    assert (info.width, info.height, info.pixel_aspect) == (85, 48, pytest.approx(4 / 3))
    assert video_info(plain).pixel_aspect == 1.0


def test_tall_pixels_stretch_the_height_and_turned_video_the_other_axis(tmp_path):
    plain = write_video(tmp_path / "plain.mp4", _squeezed_disc())
    tall = with_pixel_aspect(plain, tmp_path / "tall.mp4", 3, 4)
    assert next(iter_frames(tall, num_frames=1)).image.shape == (64, 64, 3)  # 48 / (3/4)
    turned = rotate_90(with_pixel_aspect(plain, tmp_path / "wide.mp4", 4, 3), tmp_path / "turned.mp4")
    frame = next(iter_frames(turned, num_frames=1)).image
    assert frame.shape == (85, 48, 3)  # upright 48 x 64, its stored width (now its height) stretched
    assert _blob_aspect(frame) == pytest.approx(1.0, abs=0.08)
    info = video_info(turned)
    assert (info.width, info.height) == (48, 85)


def test_an_interlaced_video_is_deinterlaced_unless_asked_not_to(tmp_path, astronaut):
    still = cv2.resize(astronaut, (160, 160), interpolation=cv2.INTER_AREA)
    frames = [weave(shifted(still, 2 * k), shifted(still, 2 * k + 5)) for k in range(6)]  # moving between fields
    path = write_video(tmp_path / "interlaced.mp4", frames)
    got = list(iter_frames(path, num_frames=6))
    assert [f.deinterlaced for f in got] == [True] * 6
    raw = list(iter_frames(path, num_frames=6, deinterlace=False))
    assert not any(f.deinterlaced for f in raw)
    assert np.abs(got[0].image.astype(int) - raw[0].image).mean() > 1.0
    plain = write_video(tmp_path / "plain.mp4", [shifted(still, 2 * k) for k in range(6)])
    assert not any(f.deinterlaced for f in iter_frames(plain, num_frames=6))


def test_an_implausible_pixel_aspect_is_ignored(tmp_path):
    plain = write_video(tmp_path / "plain.mp4", _squeezed_disc())
    odd = with_pixel_aspect(plain, tmp_path / "odd.mp4", 100, 1)
    assert next(iter_frames(odd, num_frames=1)).image.shape == (48, 64, 3)
    assert video_info(odd).pixel_aspect == 1.0


@pytest.mark.parametrize("ext", [".png", ".jpg", ".webp", ".bmp"])
def test_images_read_as_rgb(tmp_path, ext):
    rgb = np.zeros((20, 30, 3), np.uint8)
    rgb[..., 0] = 200  # red
    path = tmp_path / f"red{ext}"
    assert cv2.imwrite(str(path), cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR))
    (frame,) = list(iter_frames(path))
    assert (frame.index, frame.time) == (0, 0.0)
    assert frame.image.shape == (20, 30, 3)
    assert frame.image[..., 0].mean() > 180 and frame.image[..., 2].mean() < 20
    assert media_kind(path) == "image"


@pytest.fixture
def damaged(monkeypatch):
    monkeypatch.setattr(video.cv2, "VideoCapture", DamagedCapture)
    DamagedCapture.once, DamagedCapture.dead = set(), range(0)
    return DamagedCapture


def test_a_damaged_packet_before_a_sampled_frame_costs_no_frame(level_video, damaged):
    """One failed grab used to end the sampling: a glitch at frame 5 turned a 10-frame scan into a 1-frame one."""
    damaged.once = {5, 27}
    bad: list[int] = []
    frames = list(iter_frames(level_video, num_frames=10, unreadable=bad))
    assert [f.index for f in frames] == sample_indices(60, num_frames=10) and bad == []
    assert _same_frames(frames, level_video)


def test_frames_in_torn_data_are_skipped_and_named_and_the_rest_still_read(level_video, damaged):
    damaged.dead = range(10, 30)  # frames 10-29 cannot be decoded; a seek past them works
    bad: list[int] = []
    frames = list(iter_frames(level_video, num_frames=10, unreadable=bad))
    want = sample_indices(60, num_frames=10)
    assert bad == [i for i in want if 10 <= i < 30]
    assert [f.index for f in frames] == [i for i in want if not 10 <= i < 30]
    assert _same_frames(frames, level_video)


def test_a_cut_off_video_gives_the_frames_before_the_cut_and_names_the_rest(tmp_path):
    """A video cut short (an interrupted download) still states its whole length: the sampled frames past the cut
    are listed as unreadable instead of the stream ending without a word."""
    whole = write_video(tmp_path / "whole.mkv", level_frames(60))
    cut = tmp_path / "cut.mkv"
    cut.write_bytes(whole.read_bytes()[: whole.stat().st_size // 2])
    readable = len(_sequential(cut))
    assert video_info(cut).frame_count == 60 and 10 < readable < 60
    bad: list[int] = []
    frames = list(iter_frames(cut, num_frames=10, unreadable=bad))
    want = sample_indices(60, num_frames=10)
    assert [f.index for f in frames] == [i for i in want if i < readable] and _same_frames(frames, cut)
    assert bad == [i for i in want if i >= readable]


def test_bad_files_raise_clear_errors(tmp_path, level_video):
    empty = tmp_path / "empty.mp4"
    empty.write_bytes(b"")
    text = tmp_path / "notes.mp4"
    text.write_text("this is not a video\n" * 50)
    truncated = tmp_path / "truncated.mp4"
    truncated.write_bytes(level_video.read_bytes()[:2000])
    bad_png = tmp_path / "bad.png"
    bad_png.write_text("not an image")
    with pytest.raises(ForgeryDetError, match="empty"):
        iter_frames(empty)
    for p in (text, truncated):
        with pytest.raises(ForgeryDetError, match=p.name):
            list(iter_frames(p))
    with pytest.raises(ForgeryDetError, match="cannot decode"):
        read_image(bad_png)
    with pytest.raises(ForgeryDetError, match="unsupported file type"):
        media_kind(tmp_path / "x.txt")
    with pytest.raises(ForgeryDetError, match="no such file"):
        iter_frames(tmp_path / "missing.mp4")


def test_an_empty_path_is_refused_not_read_as_the_current_folder(tmp_path, monkeypatch):
    """`forgerydet scan "$VIDEO"` with VIDEO unset scanned every file of the current folder (Path("") is ".")."""
    (tmp_path / "a.png").write_bytes(b"x")
    monkeypatch.chdir(tmp_path)
    for given in ([""], [Path("a.png"), ""]):
        with pytest.raises(ForgeryDetError, match=r"^an empty path was given \(an unset variable\?\)"):
            expand_sources(given)
    assert expand_sources(["."]) == [Path("a.png")]


def test_expand_sources(tmp_path):
    (tmp_path / "a" / "deep").mkdir(parents=True)
    for name in ("a/2.png", "a/deep/1.mp4", "a/notes.txt", "b.jpg"):
        (tmp_path / name).write_bytes(b"x")
    got = expand_sources([tmp_path / "a", tmp_path / "b.jpg", tmp_path / "a" / "2.png"])
    assert got == [tmp_path / "a/2.png", tmp_path / "a/deep/1.mp4", tmp_path / "b.jpg"]  # sorted, recursive, deduped
    assert expand_sources([str(tmp_path / "**" / "*.mp4")]) == [tmp_path / "a/deep/1.mp4"]
    assert expand_sources([tmp_path / "a/notes.txt"]) == [tmp_path / "a/notes.txt"]  # named files kept: the batch records the error
    with pytest.raises(ForgeryDetError, match="no such file"):
        expand_sources([tmp_path / "nope.mp4"])
    with pytest.raises(ForgeryDetError, match="matches"):
        expand_sources([str(tmp_path / "*.avi")])
    (tmp_path / "c").mkdir()
    with pytest.raises(ForgeryDetError, match="holds no image or video"):
        expand_sources([tmp_path / "c"])


def test_expand_sources_collects_what_it_leaves_out(tmp_path):
    (tmp_path / "a" / "deep").mkdir(parents=True)
    for name in ("a/1.tiff", "a/2.TIF", "a/notes.txt", "a/deep/x.heic", "a/deep/y.heic", "a/.DS_Store", "a/README"):
        (tmp_path / name).write_bytes(b"x")
    skipped: list[Path] = []
    got = expand_sources([tmp_path / "a", str(tmp_path / "a" / "*"), tmp_path / "a" / "notes.txt"], skipped)
    assert got == [tmp_path / "a/1.tiff", tmp_path / "a/2.TIF", tmp_path / "a/notes.txt"]  # TIFF is an image
    # the folder and the glob both reach README (counted once below); notes.txt, named, is scanned and gets its
    # own error; hidden files are never media and are not listed
    assert sorted(p.name for p in skipped) == ["README", "README", "x.heic", "y.heic"]
    line = describe_skipped(skipped + [tmp_path / "b" / "z.txt"])
    assert line.startswith("4 files neither image nor video (.heic 2, (none) 1, .txt 1); images are ")
    assert ".tiff" in line and ".jpg" in line
    assert describe_skipped([tmp_path / "a/notes.txt"]).startswith("1 file neither")
    assert expand_sources([tmp_path / "a"]) == got[:2]  # without a list to fill, the same files


def test_macos_appledouble_files_in_a_folder_are_not_scanned_as_images(tmp_path):
    # `._photo.jpg` beside each photo copied from a Mac: metadata, not media; each was an "cannot decode" error
    (tmp_path / "case").mkdir()
    (tmp_path / "case" / "photo.jpg").write_bytes(b"x")
    (tmp_path / "case" / "._photo.jpg").write_bytes(b"\x00\x05\x16\x07" + bytes(60))
    (tmp_path / "case" / "._real.jpg").write_bytes(b"\xff\xd8\xff")  # a JPEG so named is still an image
    for given, names in ((tmp_path / "case", ["._real.jpg", "photo.jpg"]), (str(tmp_path / "case" / "._*"), ["._real.jpg"])):
        skipped: list[Path] = []
        assert expand_sources([given], skipped) == [tmp_path / "case" / n for n in names]
        assert skipped == []  # hidden files are not counted as left out
    assert expand_sources([tmp_path / "case" / "._photo.jpg"]) == [tmp_path / "case/._photo.jpg"]  # named: its error


def test_a_named_pipe_in_a_folder_is_listed_or_left_out_never_dropped(tmp_path):
    (tmp_path / "case").mkdir()
    (tmp_path / "case" / "a.png").write_bytes(b"x")
    os.mkfifo(tmp_path / "case" / "pipe.mp4")  # listed: a batch gives it its "not a file" error
    os.mkfifo(tmp_path / "case" / "pipe")  # no media extension: counted as left out
    for given in (tmp_path / "case", str(tmp_path / "case" / "*")):
        skipped: list[Path] = []
        assert expand_sources([given], skipped) == [tmp_path / "case/a.png", tmp_path / "case/pipe.mp4"]
        assert skipped == [tmp_path / "case/pipe"]


def test_a_link_loop_and_a_folder_are_named_as_such(tmp_path):
    from forgerydet.faces.media import expand_sources, media_kind

    (tmp_path / "self1").symlink_to(tmp_path / "self1")
    (tmp_path / "gone").symlink_to(tmp_path / "nowhere.mp4")
    for name in ("self1", "gone"):
        with pytest.raises(ForgeryDetError, match="a symbolic link to nothing readable"):
            expand_sources([tmp_path / name])
    with pytest.raises(ForgeryDetError, match="no such file or folder"):
        expand_sources([tmp_path / "missing.mp4"])
    with pytest.raises(ForgeryDetError, match="a folder, where a video or image file is wanted"):
        media_kind(tmp_path)


def test_a_broken_link_in_a_folder_is_listed_so_that_it_gets_its_error(tmp_path):
    from forgerydet.io import read_image

    (tmp_path / "c").mkdir()
    (tmp_path / "c" / "ok.png").write_bytes(b"x")
    (tmp_path / "c" / "dangling.mp4").symlink_to(tmp_path / "nonexistent" / "x.mp4")
    (tmp_path / "c" / "selfl.png").symlink_to(tmp_path / "c" / "selfl.png")
    (tmp_path / "c" / "gone.txt").symlink_to(tmp_path / "nowhere.txt")  # not media: left out, and said
    skipped: list[Path] = []
    got = expand_sources([tmp_path / "c"], skipped)
    assert [p.name for p in got] == ["dangling.mp4", "ok.png", "selfl.png"] and [p.name for p in skipped] == ["gone.txt"]
    for p in got[::2]:
        with pytest.raises(ForgeryDetError, match="a symbolic link to nothing readable"):
            read_image(p)
    # a glob lists them too
    assert [p.name for p in expand_sources([str(tmp_path / "c" / "*.*")])] == ["dangling.mp4", "ok.png", "selfl.png"]


def test_videos_failing_to_open_in_two_threads_print_nothing_and_leave_opencvs_log_level(tmp_path, capfd):
    # FFmpeg's "moov atom not found" lines go to fd 2, which is silenced while a video opens; OpenCV's log level is
    # left alone (saving and restoring it per thread left it at ERROR when two threads opened videos at once)
    import threading

    bad = tmp_path / "bad.mp4"
    bad.write_bytes(b"\x00\x00\x00\x18ftypmp42" + bytes(200))
    level = cv2.utils.logging.getLogLevel()
    failed: list[int] = []

    def open_it() -> None:
        for _ in range(10):
            with pytest.raises(ForgeryDetError, match="cannot open the video"):
                video.video_info(bad)
            failed.append(1)

    threads = [threading.Thread(target=open_it) for _ in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    assert len(failed) == 20
    assert cv2.utils.logging.getLogLevel() == level
    assert capfd.readouterr().err == ""
