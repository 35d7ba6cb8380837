"""scan/records.py: the empty record's layout, the JSON form (no pictures), and which faces keep their crops."""

from __future__ import annotations

import copy
import hashlib
import json
import os

import numpy as np
import pytest

from forgerydet import __version__
from forgerydet.scan.records import (
    CSV_COLUMNS, MAX_FACES, SMALL_FACE_PX, close_call_note, close_call_summary, csv_text, deinterlaced_note, empty_record, few_frames_note, json_record, json_text,
    many_faces_note, media_facts, no_face_error, reliability_notes, select_faces, settings_notes, unlike_reference_note,
    unreadable_note,
)

WHY = "; the threshold is set per face, so a file of {} real faces is called FAKE more often than one of a single face"


def test_empty_record_layout():
    assert empty_record("/v/a.mp4", 0.4) == {
        "path": "/v/a.mp4", "kind": None, "status": "ok", "error": None, "verdict": None, "score": None,
        "score_interval": None, "threshold": 0.4, "frames_sampled": 0, "frames_with_face": 0, "frames_deinterlaced": 0, "frames_unreadable": 0,
        "pixel_aspect": 1.0, "n_faces": 0, "n_tracks": 0, "fps": None, "duration_s": None, "width": None, "height": None, "sha256": None,
        "tracks": [], "faces": [], "notes": [],
    }  # fmt: skip


def test_unreadable_frames_get_a_note_that_says_what_the_verdict_rests_on():
    assert unreadable_note(0, 32) == []
    assert unreadable_note(10, 6) == ["damaged video: 10 of 16 sampled frames could not be decoded and were skipped; "
                                      "the verdict rests on the other 6"]


def test_media_facts_name_the_file_and_a_videos_rate_length_and_size(tmp_path):
    from types import SimpleNamespace

    from forgerydet.faces.media import VideoInfo

    f = tmp_path / "clip.mp4"
    f.write_bytes(b"not really a video")
    video = SimpleNamespace(info=VideoInfo(frame_count=50, fps=25.0, width=640, height=480), still=None)
    assert media_facts(f, video) == {"fps": 25.0, "duration_s": 2.0, "width": 640, "height": 480,
                                     "sha256": hashlib.sha256(b"not really a video").hexdigest()}
    image = SimpleNamespace(info=None, still=np.zeros((20, 30, 3), np.uint8))
    assert media_facts(f, image)["fps"] is None and media_facts(f, image)["duration_s"] is None
    assert (media_facts(f, image)["width"], media_facts(f, image)["height"]) == (30, 20)
    unstated = SimpleNamespace(info=VideoInfo(frame_count=50, fps=0.0, width=8, height=8), still=None)
    assert media_facts(f, unstated) | {"sha256": None} == {"fps": None, "duration_s": None, "width": 8,
                                                           "height": 8, "sha256": None}  # no rate: no rate, no length
    nothing = SimpleNamespace(info=None, still=None)
    assert media_facts(f, nothing)["width"] is None and media_facts(f, nothing)["height"] is None
    f.unlink()  # gone since it was decoded: the rest of the record stands, no hash
    assert media_facts(f, video)["sha256"] is None


def test_empty_record_stores_names_as_text():
    bad = os.fsdecode(b"/v/clip\xff.mp4")
    r = empty_record(bad, None, "error", f"{bad}: cannot decode")
    assert r["path"] == "/v/clip\\xff.mp4" and r["error"] == "/v/clip\\xff.mp4: cannot decode"
    assert r["status"] == "error" and r["threshold"] is None
    json.dumps(r).encode("utf-8")  # writable as UTF-8 JSON


def test_json_record_drops_the_pictures_and_leaves_the_record_alone():
    rec = empty_record("/v/a.mp4", 0.5)
    rec["faces"] = [{"frame_index": 3, "score": 0.7, "crop": np.zeros((4, 4, 3), np.uint8), "attention": np.ones((2, 2)),
                     "neighbours": [{"slot": 1, "similarity": 0.9, "source": "r.png", "thumb": np.zeros((2, 2, 3))}]},
                    {"frame_index": 4, "score": 0.1}]
    before = copy.deepcopy({k: v for k, v in rec.items() if k != "faces"})
    out = json_record(rec)
    assert out["faces"] == [{"frame_index": 3, "score": 0.7, "neighbours": [{"slot": 1, "similarity": 0.9, "source": "r.png"}]},
                            {"frame_index": 4, "score": 0.1}]
    json.dumps(out)
    assert "crop" in rec["faces"][0] and "thumb" in rec["faces"][0]["neighbours"][0]  # the report still has them
    assert {k: v for k, v in rec.items() if k != "faces"} == before


def test_json_names_from_enrolled_faces_and_settings_are_utf8_text():
    # an enrolled face's source (and a --checkpoint or --references path) of bytes that are not UTF-8 was written as
    # "\\udcff", a lone surrogate strict JSON parsers refuse, not as the documented \\xNN
    bad = os.fsdecode(b"/v/ann\xff.mp4")
    rec = empty_record("/v/a.mp4", 0.5)
    rec["faces"] = [{"frame_index": 0, "score": 0.2, "neighbours": [{"slot": 0, "similarity": 0.9, "source": bad}]}]
    rec["reference"] = {"name": "Ann", "file": bad, "used": [{"slot": 0, "source": bad, "frame_index": 0}]}
    text = json_text([rec], {"checkpoint": bad, "notes": [f"{bad} noted"]})
    text.encode("utf-8")
    assert "\\udc" not in text
    doc = json.loads(text)
    assert doc["files"][0]["faces"][0]["neighbours"][0]["source"] == "/v/ann\\xff.mp4"
    assert doc["files"][0]["reference"]["used"][0]["source"] == doc["settings"]["checkpoint"] == "/v/ann\\xff.mp4"
    assert doc["settings"]["notes"] == ["/v/ann\\xff.mp4 noted"]


def test_select_faces_hand_worked():
    """8 faces, room for 4: the top quarter (1 face: #5), then 3 spread over the 7 others (their 1st, 4th, 7th)."""
    faces = [{"frame_index": i, "track_id": 0, "score": 0.1} for i in range(8)]
    faces[5]["score"] = 0.9
    assert select_faces(faces, 4) == [0, 3, 5, 7]
    assert MAX_FACES == 24


def test_select_faces_shows_every_track_of_a_crowded_video():
    """Three people on all 48 frames (one scoring high throughout) and a passer-by on 5 early frames, above the
    threshold: the top quarter was all the high-scoring person and the even spread missed the passer-by, so the report
    showed no picture of a track its note named (tracks 1, 3 above the threshold)."""
    faces = [{"frame_index": t, "track_id": k, "score": s} for t in range(48) for k, s in ((0, 0.06), (1, 0.46), (2, 0.2))]
    faces += [{"frame_index": t, "track_id": 3, "score": 0.42} for t in range(2, 7)]
    chosen = select_faces(faces)
    assert len(chosen) == MAX_FACES and {faces[i]["track_id"] for i in chosen} == {0, 1, 2, 3}
    one = [{"frame_index": i, "track_id": 0, "score": 0.1} for i in range(30)]  # one track: as before
    assert select_faces(one) == select_faces([dict(f, track_id=7) for f in one])
    photo = [{"frame_index": 0, "track_id": k, "score": k / 40} for k in range(40)]  # more tracks than room: as before
    assert len(select_faces(photo)) == MAX_FACES and set(range(34, 40)) <= set(select_faces(photo))


def test_select_faces_orders_by_time_then_track_and_returns_input_indices():
    faces = [{"frame_index": 2, "track_id": 1}, {"frame_index": 0, "track_id": 0}, {"frame_index": 2, "track_id": 0},
             {"frame_index": 1}]
    assert select_faces(faces) == [1, 3, 2, 0]
    many = [{"frame_index": 9 - i, "score": None} for i in range(10)]  # no scores: the top is the first in the list
    # the top: index 0 (frame 9); the other 9 in time order are indices 9..1, of which the 1st, 5th and 9th
    assert select_faces(many, 4) == [9, 5, 1, 0]


def _scanned() -> list[dict]:
    ok = {**empty_record("/v/a,b.mp4", 0.5), "kind": "video", "verdict": "FAKE", "score": 0.75, "frames_sampled": 4,
          "frames_with_face": 3, "n_faces": 3, "n_tracks": 1, "timing": {"total_s": 1.0},
          "faces": [{"frame_index": 0, "score": 0.75, "crop": np.zeros((2, 2, 3), np.uint8)}]}
    return [ok, empty_record("/v/x.png", 0.5, "error", "/v/x.png: no such file")]


def test_json_text_is_the_version_the_settings_and_the_records():
    recs = _scanned()
    doc = json.loads(json_text(recs, {"threshold": 0.5, "seconds": 1.5}))
    assert doc == {"forgerydet_version": __version__, "settings": {"threshold": 0.5, "seconds": 1.5},
                   "files": [json_record(r) for r in recs]}
    assert "crop" not in doc["files"][0]["faces"][0]


def test_csv_text_is_one_row_per_file_with_exactly_the_columns():
    assert CSV_COLUMNS == ["path", "status", "verdict", "score", "threshold", "n_faces", "n_tracks", "frames_sampled",
                           "frames_with_face", "error", "notes", "score_low", "score_high", "sha256", "reference"]
    rows = _scanned()
    rows[0]["notes"] = ["small faces (median 40 px): less reliable", "other"]
    rows[0]["score_interval"] = [0.625, 0.8125]
    rows[0]["sha256"] = "ab" * 32
    assert csv_text(rows).splitlines() == [
        ",".join(CSV_COLUMNS),
        '"/v/a,b.mp4",ok,FAKE,0.75,0.5,3,1,4,3,,small faces (median 40 px): less reliable; other,0.625,0.8125,'
        + "ab" * 32 + ",",
        "/v/x.png,error,,,0.5,0,0,0,0,/v/x.png: no such file,,,,,",
    ]
    rows[0]["reference"] = {"name": "Jane Doe", "used": []}  # scanned against an enrolled person: named
    assert csv_text(rows).splitlines()[1].endswith("ab" * 32 + ",Jane Doe")


def test_a_deinterlaced_video_is_noted():
    assert deinterlaced_note(0, 32) == []
    assert deinterlaced_note(32, 32) == ["interlaced: 32 of 32 frames deinterlaced"]


def test_a_video_judged_on_one_frame_is_noted():
    assert few_frames_note("video", 1, None) == [
        "1 frame with a face: the verdict rests on that frame alone (no interval over frames)"]
    assert few_frames_note("video", 2, (0.1, 0.3)) == [] and few_frames_note("image", 1, None) == []


def test_no_face_on_a_frame_shrunk_for_detection_names_detect_side():
    assert no_face_error("image", 1, 800, 600, 640) == "no face found"
    assert no_face_error("video", 32, 1280, 720, 640) == "no face found in 32 sampled frames"
    assert no_face_error("image", 1, 4000, 200, 640) == (
        "no face found (the detector saw the 4000x200 frame shrunk to 640 px on its longest side: a small face may "
        "be found with --detect-side 2560)")
    assert no_face_error("video", 8, None, None, 640) == "no face found in 8 sampled frames"
    # not "try --detect-side 2560" for a 2 px strip, and a thumbnail too small for any face is said to be
    assert no_face_error("image", 1, 20000, 2, 640) == ("no face found (the 20000x2 frame is smaller than the smallest "
                                                         "face the detector keeps, 32 px)")
    assert no_face_error("image", 1, 16, 16, 640).endswith("(the 16x16 frame is smaller than the smallest face the "
                                                           "detector keeps, 32 px)")
    assert no_face_error("image", 1, 512, 512, 640, image_frames=2) == (  # an animated image: its first frame only
        "no face found; the file holds 2 frames or pages (an animated image or a multi-page TIFF): only the first is read")


def test_reliability_notes_flag_a_file_whose_median_face_is_small():
    def faces(*sides):  # square boxes of these sides
        return [{"box": [10.0, 20.0, 10.0 + s, 20.0 + s]} for s in sides]

    assert reliability_notes([]) == []
    assert reliability_notes(faces(SMALL_FACE_PX, 200, 300)) == []
    assert reliability_notes(faces(30, 40, 500)) == ["small faces (median 40 px): less reliable"]
    # the shorter side counts: a tall thin box is small
    assert reliability_notes([{"box": [0.0, 0.0, 50.0, 300.0]}]) == ["small faces (median 50 px): less reliable"]
    assert reliability_notes(faces(100), small_px=120) == ["small faces (median 100 px): less reliable"]
    # a median just under the line is not shown at it: 63.6 px read 'median 64 px' in a note for faces under 64 px
    assert reliability_notes(faces(63.6)) == ["small faces (median 63.6 px): less reliable"]
    assert reliability_notes(faces(63.96)) == ["small faces (median 63.9 px): less reliable"]
    assert reliability_notes(faces(63.4)) == ["small faces (median 63 px): less reliable"]


def test_a_fake_verdict_decided_by_small_faces_says_so_when_most_faces_are_large():
    """A crowded scene's FAKE (0.469) rested on one 41 px face in the background, and no note said so: the median of
    all the file's boxes was large (h7's pass). The faces at or above the threshold are looked at too."""
    def face(side, score):
        return {"box": [0.0, 0.0, side, side], "score": score}

    crowd = [face(200, 0.1), face(180, 0.2), face(190, 0.1), face(41, 0.6), face(43, 0.5)]
    assert reliability_notes(crowd, 0.4, "FAKE") == ["the faces above the threshold are small (median 42 px): less reliable"]
    assert reliability_notes(crowd, 0.4, "REAL") == []  # a REAL verdict is not decided by them
    assert reliability_notes(crowd) == []
    big = [face(200, 0.6), face(41, 0.1), face(190, 0.1)]
    assert reliability_notes(big, 0.4, "FAKE") == []
    small = [face(41, 0.6), face(40, 0.1), face(190, 0.1)]
    assert reliability_notes(small, 0.4, "FAKE") == ["small faces (median 41 px): less reliable"]  # said once


def test_a_fake_verdict_on_several_faces_says_which_faces():
    def tracks(*scores):
        return [{"track_id": i, "score": s, "n_faces": 1} for i, s in enumerate(scores)]

    assert many_faces_note(tracks(0.05, 0.66, 0.2, 0.54), "FAKE", 0.338) == ["2 of 4 faces above the threshold (tracks 1, 3)" + WHY.format(4)]
    assert many_faces_note(tracks(0.05, 0.66), "FAKE", 0.338) == ["1 of 2 faces above the threshold (track 1)" + WHY.format(2)]
    # the file score takes each frame's highest face, so it can pass the threshold while no track's mean does
    assert many_faces_note(tracks(0.3, 0.3), "FAKE", 0.338) == ["0 of 2 faces above the threshold" + WHY.format(2)]
    assert many_faces_note(tracks(0.05, 0.66, 0.2, 0.54), "FAKE", 0.338, "image") == [
        "2 of 4 faces above the threshold (faces 1, 3)" + WHY.format(4)]  # a photo's faces are faces, not tracks
    assert many_faces_note(tracks(0.9), "FAKE", 0.338) == []  # one face: nothing to add
    assert many_faces_note(tracks(0.1, 0.2), "REAL", 0.338) == []
    assert many_faces_note([], None, 0.338) == []


def test_a_verdict_that_depends_on_the_sampled_frames_is_a_close_call():
    assert close_call_note((0.333, 0.470), 0.338, 32, 32) == [
        "close call: resampling its 32 frames with faces moves the score over 0.333-0.470 (90%), across the threshold "
        "0.338; scan more frames (--frames 128) to settle it"]
    assert close_call_note((0.2, 0.5), 0.338, 20, 32)[0].startswith("close call: resampling its 20 frames with faces")
    assert close_call_note((0.2, 0.5), 0.338, 20, 32)[0].endswith("(--frames 128) to settle it")
    assert close_call_note((0.247, 0.334), 0.338, 32, 32) == []  # all below: REAL whichever frames
    assert close_call_note((0.338, 0.5), 0.338, 32, 32) == []  # all at or above: FAKE whichever frames
    assert close_call_note((0.3, 0.338), 0.338, 32, 32)[0].startswith("close call")  # its top reaches FAKE
    assert close_call_note(None, 0.338, 1, 1) == []  # an image
    # a 2-frame video, both frames scanned: more frames cannot be had
    assert close_call_note((0.2, 0.5), 0.338, 2, 32, 2)[0].endswith(
        "only 2 frames of the video could be read, all scanned, so more frames cannot settle it")
    assert close_call_note((0.2, 0.5), 0.338, 20, 32, 32)[0].endswith("(--frames 128) to settle it")


def test_a_close_call_shows_its_interval_on_the_sides_of_the_threshold_it_straddles():
    """anchor_fake_ffpp.mp4 with --threshold 0.47005: its interval 0.33313-0.470074 holds the threshold, but the note
    read 'over 0.333-0.470 (90%), across the threshold 0.4701', an interval wholly below it. A bound is shown as a
    score is beside the threshold: one below it never reads as at or above it, one at or above it never below."""
    import re

    from forgerydet.scan.html import threshold_text

    assert "over 0.333-0.4701 (90%), across the threshold 0.4701;" in close_call_note((0.33313, 0.470074), 0.47005, 32, 32)[0]
    assert "over 0.3378-0.400 (90%), across the threshold 0.338;" in close_call_note((0.3378, 0.4), 0.337873, 32, 32)[0]
    for thr in (0.47005, 0.337873, 0.254491, 0.027446):
        for lo, hi in ((thr - 4e-5, thr + 0.1), (thr - 0.02, thr + 2e-5), (thr - 2e-6, thr), (thr - 3e-4, thr + 3e-4)):
            note = close_call_note((lo, hi), thr, 32, 32)[0]
            a, b = (float(v) for v in re.search(r"over ([\d.]+)-([\d.]+) \(", note).groups())
            assert a < float(threshold_text(thr)) <= b, (thr, lo, hi, note)


def test_close_call_summary_counts_them_and_the_accuracy_on_each_side():
    def f(score, label, interval):
        return {"score": score, "label": label, "score_interval": interval}

    files = [f(0.40, 1, [0.33, 0.47]), f(0.30, 1, [0.25, 0.35]),  # close calls: one right, one wrong
             f(0.10, 0, [0.05, 0.15]), f(0.70, 1, [0.60, 0.80]), f(0.60, 0, [0.50, 0.70]),  # others: 2 of 3 right
             f(0.90, 1, None)]  # an image: no interval, not counted
    assert close_call_summary(files, 0.338) == {"videos": 5, "close_calls": 2, "accuracy_close_calls": 0.5,
                                                "accuracy_others": pytest.approx(2 / 3)}
    assert close_call_summary(files[2:5], 0.338)["accuracy_close_calls"] is None
    assert close_call_summary([f(0.9, 1, None)], 0.338) is None


def test_settings_notes_say_how_a_scan_departs_from_its_calibration(monkeypatch):
    from forgerydet import runtime

    monkeypatch.setattr(runtime, "native_bf16", lambda: True)
    same = {"calibrated_against": "this bank", "tta": "flip", "calibrated_tta": "flip", "precision": "fp32",
            "calibrated_precision": "fp32", "device": "cpu"}
    assert settings_notes(same, None) == []
    other = {**same, "calibrated_against": "an earlier bank", "tta": "none", "precision": "bf16"}
    notes = settings_notes(other, None)
    assert [n.split(";")[0].split(":")[0] for n in notes] == [
        "the checkpoint's threshold and bank fusion were fitted against an earlier bank (it was rebuilt since)",
        "the checkpoint was calibrated with --tta flip", "the checkpoint was calibrated in fp32"]
    assert settings_notes(other, 0.5) == []  # a threshold given: the calibration is not relied on
    with_ref = settings_notes({**other, "reference": "alice"}, None)  # a person's faces, not the bank: said so
    assert with_ref[1:] == notes[1:] and with_ref[0].startswith("compared with the enrolled faces of 'alice', not the "
                                                                "bank: the model reads the difference")
    assert settings_notes({**same, "reference": "alice"}, 0.5)[0].endswith("no surer than a plain scan's")
    disk = settings_notes({**same, "bank": "db", "bank_entries": 107}, None)
    assert disk == ["the threshold was fitted against the checkpoint's own bank, not the disk bank db (107 faces): its "
                    "similarities differ in scale, so the head's threshold applies (no bank fusion), only approximately "
                    "calibrated for this bank"]
    assert settings_notes({**same, "bank": "db", "bank_entries": 107}, 0.5) == []
    assert settings_notes({**same, "calibrated_against": "not calibrated", "precision": "bf16"}, None) == []
    monkeypatch.setattr(runtime, "native_bf16", lambda: False)
    assert settings_notes({**same, "precision": "bf16", "calibrated_precision": "bf16"}, None) == [
        "this CPU has no bf16 instructions (AVX512-BF16 or AMX): --precision fp32 is likely faster"]
    assert settings_notes({**same, "precision": "bf16", "calibrated_precision": "bf16", "device": "cuda:0"}, None) == []
    weak = {**same, "calibration_caught": 0.0}
    assert settings_notes(weak, None) == [
        "at its threshold this checkpoint caught only 0 % of the validation fakes it was calibrated on: it detects "
        "little yet, so a REAL verdict from it means little (train it longer, or on more faces)"]
    assert settings_notes(weak, 0.5) == [] and settings_notes({**same, "calibration_caught": 0.958}, None) == []


def test_a_file_unlike_the_enrolled_person_is_noted():
    summary = {"name": "Film", "nearest_similarity_median": 0.16, "enrolled_similarity_median": 0.93}
    assert unlike_reference_note(summary) == [
        "unlike 'Film': its faces' nearest enrolled similarity (median 0.16) is far below the enrolled faces' to one "
        "another (0.93); it may be someone else, and the comparison says little"]
    assert unlike_reference_note({**summary, "nearest_similarity_median": 0.9}) == []  # the person's own footage
    assert unlike_reference_note({**summary, "enrolled_similarity_median": None}) == []  # one enrolled face: unknown
    assert unlike_reference_note({**summary, "nearest_similarity_median": None}) == []


def test_a_bystander_unlike_the_enrolled_person_is_named_by_its_track():
    """A video of the enrolled person beside someone else: the file's median hid the bystander (no note, though its
    faces were compared with the person's) or, where the bystander had more faces, called the whole file unlike."""
    from forgerydet.scan.records import track_likeness

    def face(track, sim):
        return {"track_id": track, "neighbours": [{"similarity": sim}, {"similarity": sim - 0.1}]}

    faces = [face(0, 0.93), face(1, 0.11), face(0, 0.95), face(1, 0.12), face(1, 0.10)]
    tracks = track_likeness(faces)
    assert tracks == [{"track_id": 0, "nearest_similarity_median": 0.94}, {"track_id": 1, "nearest_similarity_median": 0.11}]
    summary = {"name": "Ann", "nearest_similarity_median": 0.12, "enrolled_similarity_median": 0.96, "tracks": tracks}
    assert unlike_reference_note(summary) == [
        "track 1 unlike 'Ann': its faces' nearest enrolled similarity (median 0.11) is far below the enrolled faces' to "
        "one another (0.96); it may be someone else, compared with 'Ann' all the same, and its score says little"]
    assert unlike_reference_note({**summary, "nearest_similarity_median": 0.9}, "image")[0].startswith("face 1 unlike 'Ann'")
    two = tracks + [{"track_id": 2, "nearest_similarity_median": 0.2}]
    assert unlike_reference_note({**summary, "tracks": two})[0].startswith(
        "tracks 1, 2 unlike 'Ann': their faces' nearest enrolled similarity (median 0.11, 0.20) is far below")
    assert unlike_reference_note({**summary, "tracks": [{**t, "nearest_similarity_median": 0.9} for t in tracks]}) == []
    everyone = [{**t, "nearest_similarity_median": 0.2} for t in tracks]  # nobody like the person: the file's note
    assert unlike_reference_note({**summary, "tracks": everyone})[0].startswith("unlike 'Ann': its faces'")


def test_the_segment_note_names_the_part_sampled_and_is_left_out_for_the_whole_video():
    from forgerydet.scan.records import segment_note

    note = "was sampled (--start/--end): the verdict is about that part"
    assert segment_note("video", 15.5, None, 15.84) == [f"only 0:15.5-0:15.84 of 0:15.84 {note}"]
    assert segment_note("video", 5.0, 9.5, 15.84) == [f"only 0:05-0:09.5 of 0:15.84 {note}"]
    assert segment_note("video", None, 60.0, 15.84) == []  # --end past the end, from the start: the whole video
    assert segment_note("video", 0.0, None, 15.84) == []
    assert segment_note("video", 5.0, None, None) == [f"only from 0:05 on {note}"]  # no length stated
    assert segment_note("image", 5.0, 9.0, None) == [] and segment_note("video", None, None, 10.0) == []


def test_a_disk_bank_searched_without_its_faiss_index_is_noted():
    same = {"calibrated_against": "not calibrated", "tta": "none", "calibrated_tta": "none", "precision": "fp32",
            "calibrated_precision": "fp32", "device": "cpu", "bank": "db", "bank_entries": 120000}
    assert settings_notes({**same, "bank_indexed": True, "bank_search": "faiss + exact re-ranking"}, None) == []
    assert settings_notes({**same, "bank_indexed": False, "bank_search": "exact"}, None) == []
    assert settings_notes({**same, "bank_indexed": True, "bank_search": "exact"}, None) == [
        "the disk bank db was built with a faiss index, but faiss is not installed here: its 120,000 keys are searched "
        "exactly (the true nearest faces, more slowly; `pip install 'forgerydet[scale]'` for the index)"]
