"""The extract job: crops + faces.csv, no_face and error rows, resume, and the `extract` command."""

from __future__ import annotations

import csv
import json

import cv2
import numpy as np
import pytest
from typer.testing import CliRunner

from forgerydet.cli.app import app
from forgerydet.errors import ForgeryDetError
from forgerydet.faces.detect import DetectorConfig, FaceDetector
from forgerydet.faces.index import INDEX_COLUMNS, extract, read_index
from forgerydet.faces.pipeline import ExtractConfig
from forgerydet.io import file_sha256
from tests._faces_util import face_frames, read_csv, shifted, weave, with_pixel_aspect, write_video
from tests.faces.conftest import CFG


class SpyDetector(FaceDetector):
    """Counts the frames it is asked to detect on."""

    def __init__(self, config):
        super().__init__(config)
        self.frames_seen = 0

    def faces(self, frames):
        self.frames_seen += len(frames)
        return super().faces(frames)


def test_extract_batch_records_no_face_and_errors_then_resumes(media, tmp_path):
    out = tmp_path / "faces"
    sources = [media / n for n in ("face.mp4", "noface.mp4", "corrupt.mp4", "notes.mp4")]
    spy = SpyDetector(CFG.detector)
    calls = []
    s = extract(sources, out, CFG, progress=lambda d, t: calls.append((d, t)), detector=spy)
    assert calls == [(1, 4), (2, 4), (3, 4), (4, 4)]
    assert (s.processed, s.skipped, s.faces, s.no_face_frames, s.tracks) == (4, 0, 3, 3, 1)
    assert sorted(p.rsplit("/", 1)[-1] for p, _ in s.errors) == ["corrupt.mp4", "notes.mp4"]

    rows = read_csv(out / "faces.csv")
    assert list(rows[0]) == INDEX_COLUMNS
    by = {}
    for r in rows:
        by.setdefault(r["source"].rsplit("/", 1)[-1], []).append(r)
    assert [r["status"] for r in by["face.mp4"]] == ["ok"] * 3
    assert {r["track_id"] for r in by["face.mp4"]} == {"0"}
    assert [r["status"] for r in by["noface.mp4"]] == ["no_face"] * 3  # every sampled frame accounted for
    assert [r["frame_index"] for r in by["noface.mp4"]] == ["0", "2", "5"]
    for name in ("corrupt.mp4", "notes.mp4"):
        (row,) = by[name]
        assert row["status"] == "error" and name in row["message"] and "cannot open" in row["message"]
        assert row["pixel_aspect"] == row["deinterlaced"] == ""  # nothing was shown
    assert {(r["pixel_aspect"], r["deinterlaced"]) for r in by["face.mp4"] + by["noface.mp4"]} == {("1", "0")}
    for r in by["face.mp4"]:
        crop = cv2.imread(str(out / r["crop"]))
        assert crop.shape == (64, 64, 3)
        lm = np.array([float(r[c]) for c in INDEX_COLUMNS[8:18]]).reshape(5, 2)
        assert ((lm > 0) & (lm < 64)).all()

    parsed = read_index(out / "faces.csv")
    ok = [r for r in parsed if r.status == "ok"]
    assert len(ok) == 3 and all(r.crop.is_file() and r.landmarks.shape == (5, 2) for r in ok)

    # re-run: finished sources are skipped (no detection), failed ones are tried again
    spy2 = SpyDetector(CFG.detector)
    s2 = extract(sources, out, CFG, detector=spy2)
    assert (s2.processed, s2.skipped, spy2.frames_seen, len(s2.errors)) == (2, 2, 0, 2)
    assert read_csv(out / "faces.csv") == rows  # the index is rebuilt identically

    with pytest.raises(ForgeryDetError, match="other settings"):
        extract(sources, out, ExtractConfig(num_frames=5, detector=CFG.detector))
    with pytest.raises(ForgeryDetError, match="deinterlace: True -> False"):
        extract(sources, out, ExtractConfig(num_frames=CFG.num_frames, detector=CFG.detector, deinterlace=False))
    with pytest.raises(ForgeryDetError, match=r"\(start: None -> 0:00.5\); use another --out"):  # --start/--end: written only when set
        extract(sources, out, ExtractConfig(num_frames=CFG.num_frames, detector=CFG.detector, start=0.5))


def test_a_folder_extracted_before_deinterlacing_resumes_only_without_it(media, tmp_path):
    """extract.json written before 2026-12-05 has no "deinterlace": its frames were never deinterlaced."""
    out = tmp_path / "old"
    extract([media / "face.mp4"], out, CFG)
    settings = json.loads((out / "extract.json").read_text())
    del settings["deinterlace"]
    (out / "extract.json").write_text(json.dumps(settings))
    with pytest.raises(ForgeryDetError, match="deinterlace: False -> True"):
        extract([media / "face.mp4"], out, CFG)
    old = ExtractConfig(num_frames=CFG.num_frames, detector=CFG.detector, deinterlace=False)
    assert extract([media / "face.mp4"], out, old).skipped == 1


def test_the_index_says_how_frames_were_shown_and_older_parts_still_read(tmp_path, astronaut):
    woven = [weave(f, shifted(f, 5)) for f in face_frames(astronaut, 6, shift=4)]  # the face moves between fields
    plain = write_video(tmp_path / "v" / "interlaced.mp4", woven)
    wide = with_pixel_aspect(plain, tmp_path / "v" / "wide.mp4", 4, 3)
    out = tmp_path / "faces"
    extract([plain, wide], out, CFG)
    rows = [r for r in read_index(out / "faces.csv") if r.status == "ok"]
    assert {(r.source.rsplit("/", 1)[-1], round(r.pixel_aspect, 4), r.deinterlaced) for r in rows} == {
        ("interlaced.mp4", 1.0, True), ("wide.mp4", 1.3333, True)}  # fmt: skip
    # a part written before the two columns existed: its source counts as done and its rows leave them empty
    (part,) = [p for p in (out / "parts").glob("wide-*.csv")]
    old = [{k: v for k, v in r.items() if k not in ("pixel_aspect", "deinterlaced")} for r in read_csv(part)]
    with open(part, "w", newline="") as fh:
        w = csv.DictWriter(fh, fieldnames=list(old[0]), lineterminator="\n")
        w.writeheader()
        w.writerows(old)
    assert extract([plain, wide], out, CFG).skipped == 2
    by = {r["source"].rsplit("/", 1)[-1]: r for r in read_csv(out / "faces.csv") if r["status"] == "ok"}
    assert (by["wide.mp4"]["pixel_aspect"], by["wide.mp4"]["deinterlaced"]) == ("", "")
    assert {(r.pixel_aspect, r.deinterlaced) for r in read_index(out / "faces.csv") if "wide" in r.source} == {(1.0, False)}


def test_an_out_folder_inside_the_source_folder_is_not_read_back_as_sources(tmp_path, astronaut):
    """`extract photos --out photos/faces` (or `--out photos`), run again: its crops used to become sources,
    more each run, and faces.csv filled with crops of crops."""
    for name, inside in (("a", "faces"), ("b", ".")):
        src = tmp_path / name
        src.mkdir()
        cv2.imwrite(str(src / "p.png"), cv2.cvtColor(face_frames(astronaut, 1)[0], cv2.COLOR_RGB2BGR))
        out = src / inside
        first, again = extract([src], out, CFG), extract([src], out, CFG)
        assert (first.sources, first.faces, again.sources, again.skipped, again.not_media) == (1, 1, 1, 1, "")
        assert [r.source.rsplit("/", 1)[-1] for r in read_index(out / "faces.csv")] == ["p.png"]


def test_extract_never_replaces_a_faces_csv_or_settings_file_it_did_not_write(tmp_path, astronaut):
    """`extract photos --out photos` replaced the user's own photos/faces.csv without a word, and a foreign
    extract.json was said to be 'extracted with other settings'."""
    src = tmp_path / "photos"
    src.mkdir()
    cv2.imwrite(str(src / "p.png"), cv2.cvtColor(face_frames(astronaut, 1)[0], cv2.COLOR_RGB2BGR))
    (src / "faces.csv").write_text("my precious,data\n")
    with pytest.raises(ForgeryDetError, match=r"faces.csv is not an index `forgerydet extract` wrote there \(the folder "
                                              r"has no extract.json\): it would be replaced; give another --out folder"):
        extract([src], src, CFG)
    assert (src / "faces.csv").read_text() == "my precious,data\n" and not (src / "extract.json").exists()
    (src / "faces.csv").unlink()
    (src / "extract.json").write_text('{"mine": 1}')
    with pytest.raises(ForgeryDetError, match=r"extract.json is not the settings file `forgerydet extract` writes"):
        extract([src], src, CFG)


def test_photos_in_a_source_folders_own_crops_and_parts_folders_are_extracted(tmp_path, astronaut):
    """`extract own --out own` skipped own/crops/*.png and own/parts/*.png without a word ('files 1'): only the
    crops extract writes (crops/<key>/f<frame>_<k>.png) are its own."""
    src = tmp_path / "own"
    for sub in (".", "crops", "parts"):
        (src / sub).mkdir(parents=True, exist_ok=True)
        cv2.imwrite(str(src / sub / "p.png"), cv2.cvtColor(face_frames(astronaut, 1)[0], cv2.COLOR_RGB2BGR))
    first, again = extract([src], src, CFG), extract([src], src, CFG)
    assert (first.sources, first.faces, again.sources, again.skipped, again.processed) == (3, 3, 3, 3, 0)


def test_extract_command_exit_code_after_finishing(media, tmp_path):
    out = tmp_path / "cli"
    args = ["extract", str(media / "notes.mp4"), str(media / "noface.mp4"), "--out", str(out), "--frames", "2",
            "--size", "64", "--detect-side", "96"]  # fmt: skip
    res = CliRunner().invoke(app, args)
    assert res.exit_code == 1
    assert "notes.mp4" in res.output and "1 file(s) failed" in res.output
    rows = read_csv(out / "faces.csv")
    assert [r["status"] for r in rows] == ["no_face", "no_face", "error"]  # the good file was still done

    res = CliRunner().invoke(app, ["extract", str(media / "nothing.mp4"), "--out", str(out)])
    assert res.exit_code == 1 and "no such file" in res.output
    res = CliRunner().invoke(app, ["extract", str(media / "face.mp4"), "--out", str(out), "--every", "2", "--fps", "1"])
    assert res.exit_code == 1 and "one way to sample" in res.output


@pytest.mark.slow
def test_extract_shared_videos_one_track_each(shared_data, tmp_path):
    videos = shared_data / "videos"
    cfg = ExtractConfig(num_frames=4, detector=DetectorConfig(size=112))
    s = extract(sorted(videos.glob("anchor_*.mp4")), tmp_path / "faces", cfg)  # the three of one scene
    assert (s.sources, s.faces, s.tracks, s.errors) == (3, 12, 3, [])
    rows = read_csv(tmp_path / "faces" / "faces.csv")
    per_source = {}
    for r in rows:
        per_source.setdefault(r["source"], set()).add(r["track_id"])
    assert len(per_source) == 3 and all(ids == {"0"} for ids in per_source.values())


def test_an_index_row_of_an_unknown_status_is_named_not_dropped(tmp_path):
    """`pairs --self-blend faces.csv` made 15 pairs of 16 faces, the row with a hand-typed status dropped unseen."""
    from forgerydet.faces.index import REQUIRED_COLUMNS

    row = {c: "" for c in INDEX_COLUMNS} | {"source": "v.mp4", "status": "OK", "frame_index": "3"}
    (tmp_path / "faces.csv").write_text(",".join(INDEX_COLUMNS) + "\n" + ",".join(row[c] for c in INDEX_COLUMNS) + "\n")
    assert set(REQUIRED_COLUMNS) <= set(INDEX_COLUMNS)
    with pytest.raises(ForgeryDetError, match=r"faces.csv:2: column 'status' is 'OK'; an extract index has ok, no_face or error"):
        read_index(tmp_path / "faces.csv")


@pytest.mark.parametrize("device,said", [("cuda", "--device .cuda.: no CUDA GPU is available here"),
                                         ("gpu", "--device 'gpu': use 'auto'")])
def test_a_device_that_is_not_there_is_refused_before_the_out_folder_is_made(device, said, tmp_path, astronaut,
                                                                                monkeypatch):
    """`extract DIR --out faces --device cuda` on a machine without a GPU made the folder, failed every file with the
    same line (10,000 lines for 10,000 files) and wrote error rows for all of them."""
    import torch

    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    photo = tmp_path / "a.png"
    cv2.imwrite(str(photo), cv2.cvtColor(astronaut, cv2.COLOR_RGB2BGR))
    cfg = ExtractConfig(num_frames=1, detector=DetectorConfig(device=device))
    with pytest.raises(ForgeryDetError, match=said):
        extract([photo], tmp_path / "faces", cfg)
    assert not (tmp_path / "faces").exists()


def test_crop_source_guesses_the_video_or_photo_a_crop_was_cut_from():
    from pathlib import Path

    from forgerydet.faces.index import crop_source, frame_numbers

    assert crop_source(Path("d/real/abarnvbtwb-003-00.png")) == str(Path("d/real/abarnvbtwb"))
    assert crop_source(Path("lfw/Aaron_Peirsol_0001.jpg")) == str(Path("lfw/Aaron_Peirsol"))
    assert crop_source(Path("out/crops/clip-1234abcd/f000012_0.png")) == str(Path("out/crops/clip-1234abcd"))
    assert crop_source(Path("faces/0001.png")) == "faces"
    assert frame_numbers(Path("d/real/abarnvbtwb-003-00.png")) == ["003", "00"]
    assert frame_numbers(Path("lfw/Aaron_Peirsol_0001.jpg")) == ["0001"] and frame_numbers(Path("a/b.png")) == []


def test_a_source_whose_bytes_changed_is_extracted_again_and_its_old_crops_removed(tmp_path, astronaut):
    """A video replaced in place (a new export under the same name) kept its old faces in faces.csv, silently."""
    video = tmp_path / "v" / "clip.mp4"
    write_video(video, face_frames(astronaut, 8))
    out = tmp_path / "faces"
    first = extract([video], out, CFG)
    assert first.faces == 3
    old_crops = sorted((out / "crops").rglob("*.png"))
    write_video(video, [np.full((96, 96, 3), 40, np.uint8)] * 6)  # now a faceless video
    again = extract([video], out, CFG)
    assert (again.processed, again.skipped, again.faces) == (1, 0, 0)
    assert again.warnings == [f"{video}: its bytes changed since the earlier run: extracted again, its earlier crops "
                              f"removed"]  # said: "processed now" alone read as if it had never been done
    assert {r["status"] for r in read_csv(out / "faces.csv")} == {"no_face"}
    assert not any(p.exists() for p in old_crops)  # crops of the old bytes are gone
    assert {r["sha256"] for r in read_csv(out / "faces.csv")} == {file_sha256(video)}
    assert extract([video], out, CFG).skipped == 1  # unchanged: skipped as before


def test_a_rerun_reads_no_unchanged_source_again_and_rehashes_one_written_since(tmp_path, astronaut, monkeypatch):
    """Every re-run hashed every source: minutes of reading for a dataset of hundreds of GB where one file was added.
    A source whose inode, size and times are the ones recorded is taken as the bytes hashed then; one written since
    (even to the same size, its modification time put back by hand) changes its change time and is read again."""
    import os

    import forgerydet.faces.statcache as statcache

    video = tmp_path / "v" / "clip.mp4"
    write_video(video, face_frames(astronaut, 8))
    out = tmp_path / "faces"
    extract([video], out, CFG)
    hashed = []
    monkeypatch.setattr(statcache, "file_sha256", lambda p: hashed.append(p) or file_sha256(p))
    assert extract([video], out, CFG).skipped == 1 and hashed == []  # unchanged: not read
    st = os.stat(video)
    os.utime(video, ns=(st.st_atime_ns, st.st_mtime_ns - 10**9))  # touched, same bytes: hashed once, still skipped
    assert extract([video], out, CFG).skipped == 1 and hashed == [video]
    assert extract([video], out, CFG).skipped == 1 and hashed == [video]  # and recorded again
    data = bytearray(video.read_bytes())
    data[-1] ^= 0xFF  # same size; modification time put back: the change time still moves
    st = os.stat(video)
    video.write_bytes(bytes(data))
    os.utime(video, ns=(st.st_atime_ns, st.st_mtime_ns))
    again = extract([video], out, CFG)
    assert (again.processed, again.skipped) == (1, 0) and len(hashed) == 2
    assert {r["sha256"] for r in read_csv(out / "faces.csv")} == {file_sha256(video)}
    assert sorted(p.suffix for p in (out / "parts").iterdir()) == [".csv", ".stat"]  # the part and its stat key


def test_a_stat_file_that_is_not_text_is_read_again_not_a_traceback(tmp_path, astronaut):
    """A parts/KEY.stat garbled on disk (not UTF-8) ended a re-run in a UnicodeDecodeError traceback; it is a stat
    key that does not match: the source is hashed again (unchanged: skipped) and the file rewritten."""
    video = tmp_path / "v" / "clip.mp4"
    write_video(video, face_frames(astronaut, 8))
    out = tmp_path / "faces"
    extract([video], out, CFG)
    (stat,) = (out / "parts").glob("*.stat")
    stat.write_bytes(b"\xff\xfe garbled\n\x00")
    assert extract([video], out, CFG).skipped == 1
    assert stat.read_text(encoding="utf-8").split("\n")[1] == file_sha256(video)
