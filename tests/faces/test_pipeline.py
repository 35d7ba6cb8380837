"""detect_source (faces/pipeline.py): frames of one source -> tracked face crops."""

from __future__ import annotations

import numpy as np
import pytest

from forgerydet.errors import ForgeryDetError

from forgerydet.faces.media import iter_frames, video_info
from forgerydet.faces.pipeline import ExtractConfig, detect_source
from tests._faces_util import DamagedCapture, level_frames, write_video
from tests.faces.conftest import CFG


def test_detect_source_one_track(media):
    found = detect_source(media / "face.mp4", CFG)
    assert [i for i, _ in found.frames] == [0, 4, 7]
    assert [len(f) for f in found.faces] == [1, 1, 1]
    assert found.num_tracks == 1 and found.main_track() == 0
    boxes = np.array([f.box for f in found.all_faces])
    assert (np.diff(boxes[:, 0]) > 0).all()  # follows the face moving right
    # the video's own facts travel with its faces (scan's record states them), read once
    info = video_info(media / "face.mp4")
    assert found.info == info and info.frame_count == 8
    first = next(iter_frames(media / "face.mp4", num_frames=1))
    assert first.image.shape[:2] == (info.height, info.width)  # the size the record gives is the decoded frames'
    assert found.still is None  # a video keeps no frame


def test_an_image_source_keeps_its_pixels(tmp_path, astronaut):
    import cv2

    from forgerydet.io import read_image

    path = tmp_path / "a.png"
    cv2.imwrite(str(path), cv2.cvtColor(astronaut, cv2.COLOR_RGB2BGR))
    found = detect_source(path, CFG)
    assert found.info is None and np.array_equal(found.still, read_image(path))  # one frame: no second decode needed


def test_a_photos_faces_are_numbered_from_the_left_as_scan_names_them(tmp_path, astronaut):
    """scan called t1.jpg's face at x=272 "face 1" while extract's faces.csv gave track 1 to the face at x=52 and
    enroll said "main track 1" of it: one photo, two numberings (h7's pass). detect_source numbers an image's faces
    from the left for all three, whatever order the detector gives them in (which crop names keep)."""
    import cv2

    from forgerydet.faces.detect import FaceDetector

    class RightFirst(FaceDetector):
        def faces(self, frames):
            return [sorted(fr, key=lambda f: -float(f.box[0])) for fr in super().faces(frames)]

    path = tmp_path / "two.png"
    cv2.imwrite(str(path), cv2.cvtColor(np.hstack([astronaut, astronaut]), cv2.COLOR_RGB2BGR))
    (faces,) = detect_source(path, CFG, RightFirst(CFG.detector)).faces
    assert len(faces) == 2 and faces[0].box[0] > faces[1].box[0]  # the detector's order is kept
    assert [f.track_id for f in faces] == [1, 0]  # the left face is 0


def test_an_image_of_several_frames_or_pages_says_that_only_the_first_is_read(tmp_path, astronaut):
    """An animated WebP or a multi-page TIFF is decoded as its first frame alone; with a blank first frame it was
    reported "no face found" and nothing said that the face on the next one was never looked at."""
    from PIL import Image

    blank, face = Image.fromarray(np.zeros_like(astronaut)), Image.fromarray(astronaut)
    blank.save(tmp_path / "a.webp", save_all=True, append_images=[face], lossless=True)
    blank.save(tmp_path / "p.tiff", save_all=True, append_images=[face, face])
    face.save(tmp_path / "one.webp", lossless=True)
    for name, n in (("a.webp", 2), ("p.tiff", 3)):
        found = detect_source(tmp_path / name, CFG)
        assert found.image_frames == n and found.all_faces == []  # the first frame, blank, alone is read
        assert found.first_frame_warning() == [f"{tmp_path / name}: the file holds {n} frames or pages (an animated "
                                               f"image or a multi-page TIFF): only the first is read"]
    found = detect_source(tmp_path / "one.webp", CFG)
    assert found.image_frames == 1 and found.first_frame_warning() == [] and len(found.all_faces) == 1


def test_iter_frames_uses_a_video_info_it_is_given(media):
    from forgerydet.faces.media import VideoInfo, iter_frames

    told = VideoInfo(frame_count=3, fps=1.0, width=1, height=1)  # says 3 frames at 1 fps: sampling follows it
    frames = list(iter_frames(media / "face.mp4", num_frames=8, info=told))
    assert [f.index for f in frames] == [0, 1, 2] and [f.time for f in frames] == [0.0, 1.0, 2.0]


@pytest.mark.parametrize("bad,option", [(dict(num_frames=0), "--frames"), (dict(every=0), "--every"),
                                        (dict(fps=float("nan")), "--fps"), (dict(fps=float("inf")), "--fps"),
                                        (dict(fps=-1.0), "--fps")])
def test_sampling_settings_are_checked_when_made_not_per_file(bad, option):
    with pytest.raises(ForgeryDetError, match=f"^{option} "):
        ExtractConfig(**bad)


def test_frames_missing_only_at_the_very_end_are_an_overstated_count_not_damage(tmp_path, monkeypatch):
    """A container that states a frame or two more than it holds (a count estimated from its duration) is not a
    damaged video: only failures before its end, or past the last 3 frames / 2 %, are reported unreadable."""
    import forgerydet.faces.media as media

    video = write_video(tmp_path / "levels.mp4", level_frames(60))
    monkeypatch.setattr(media.cv2, "VideoCapture", DamagedCapture)
    cfg = ExtractConfig(num_frames=10, detector=CFG.detector)
    for dead, want in ((range(58, 60), []), (range(40, 60), [46, 52, 59]), (range(20, 30), [20, 26])):
        DamagedCapture.once, DamagedCapture.dead = set(), dead
        assert detect_source(video, cfg).unreadable == want, dead


def test_start_and_end_sample_only_that_part_of_a_video_with_its_own_indices_and_times(tmp_path, astronaut):
    """--start/--end: the frames are sampled in [start, end) as they would be over a whole video, and keep their
    indices and times in the file; an image is read whole; a start past the end names the file."""
    import cv2

    video = write_video(tmp_path / "levels.mp4", level_frames(60))  # 10 fps: 6 s
    part = ExtractConfig(num_frames=5, detector=CFG.detector, start=1.0, end=3.0)
    found = detect_source(video, part)
    assert [i for i, _ in found.frames] == [10, 15, 20, 24, 29]  # 5 of frames 10..29, first and last included
    assert [round(t, 1) for _, t in found.frames] == [1.0, 1.5, 2.0, 2.4, 2.9]
    to_end = detect_source(video, ExtractConfig(every=10, detector=CFG.detector, start=2.5))
    assert [i for i, _ in to_end.frames] == [25, 35, 45, 55]
    whole = ExtractConfig(detector=CFG.detector).settings()
    assert "start" not in whole and "end" not in whole  # a whole-video extract folder's settings as before: it resumes
    assert part.settings()["start"] == 1.0 and part.settings()["end"] == 3.0
    photo = tmp_path / "a.png"
    cv2.imwrite(str(photo), cv2.cvtColor(astronaut, cv2.COLOR_RGB2BGR))
    assert [i for i, _ in detect_source(photo, part).frames] == [0]
    with pytest.raises(ForgeryDetError, match=r"levels.mp4: --start 0:07 is past the video's end \(it is 0:06 long\)"):
        detect_source(video, ExtractConfig(detector=CFG.detector, start=7.0))
    with pytest.raises(ForgeryDetError, match="^--end 0:01 is not after --start 0:03"):
        ExtractConfig(start=3.0, end=1.0)


def test_a_part_asked_for_that_a_cut_off_video_does_not_hold_is_said_so(tmp_path):
    video = write_video(tmp_path / "whole.mkv", level_frames(40))  # 10 fps: 4 s
    cut = tmp_path / "cut.mkv"
    cut.write_bytes(video.read_bytes()[: video.stat().st_size // 2])
    assert detect_source(cut, ExtractConfig(num_frames=4, detector=CFG.detector, start=0.2, end=1.0)).frames
    with pytest.raises(ForgeryDetError, match=r"cut.mkv: none of the 4 frames sampled in 0:03-0:03.9 could be decoded: "
                                              r"the video may be cut off or damaged before them \(it states a length of "
                                              r"0:04\)"):
        detect_source(cut, ExtractConfig(num_frames=4, detector=CFG.detector, start=3.0, end=3.9))
