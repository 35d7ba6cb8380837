"""scan/resume.py: an earlier scan's JSON read back for `scan --resume` (refused when it is not one, another version
wrote it or its deciding settings differ; only verdicts and no-face findings of unchanged files taken over), and
the JSON saved while a scan runs no more often than its share of the time allows."""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path

import pytest

from forgerydet import __version__
from forgerydet.errors import ForgeryDetError
from forgerydet.errors import path_text
from forgerydet.scan.resume import (DECIDING, Checkpointer, Earlier, earlier_records, not_reached, read_earlier,
                                    resumed_line, take_over)

SETTINGS = {"checkpoint_sha256": "ab" * 32, "threshold": 0.338, "frames_per_video": 32, "tta": "flip",
            "detector": {"detect_side": 640, "min_confidence": 0.9}, "device": "cpu", "command": "forgerydet scan x"}


def _rec(path, status: str, sha: str | None, **more) -> dict:
    """A record as a scan writes it (scan/records.py), trimmed to what matters here."""
    rec = {"path": str(path), "kind": "image", "status": status, "sha256": sha, "n_faces": 1, "n_tracks": 1,
           "frames_sampled": 1, "frames_with_face": 1, "tracks": [], "faces": [], "notes": [], "threshold": 0.3}
    if status == "ok":
        rec.update(verdict="FAKE", score=0.9)
    return rec | more


def _doc(tmp_path: Path, files: list[dict], **settings) -> Path:
    p = tmp_path / "scan.json"
    p.write_text(json.dumps({"forgerydet_version": __version__, "settings": {**SETTINGS, **settings}, "files": files}))
    return p


def _file(tmp_path: Path, name: str, data: bytes) -> tuple[Path, str]:
    f = tmp_path / name
    f.write_bytes(data)
    return f, hashlib.sha256(data).hexdigest()


def test_only_verdicts_and_no_face_findings_of_unchanged_files_are_taken_over(tmp_path):
    a, ha = _file(tmp_path, "a.mp4", b"aaa")
    b, hb = _file(tmp_path, "b.mp4", b"bbb")
    c, hc = _file(tmp_path, "c.png", b"ccc")
    d, hd = _file(tmp_path, "d.png", b"ddd")
    files = [_rec(a, "ok", ha), _rec(b, "no_face", hb), _rec(c, "error", hc, error="broken"),
             _rec(d, "not_scanned", None)]
    p = _doc(tmp_path, files)
    earlier = earlier_records(read_earlier(p), p, dict(SETTINGS, device="cuda", command="other"))  # not deciding
    assert sorted(earlier) == [os.path.realpath(a), os.path.realpath(b)]
    got = take_over(earlier, a)
    assert got == {**files[0], "resumed": True}
    assert take_over(earlier, b)["status"] == "no_face"
    assert take_over(earlier, c) is None and take_over(earlier, d) is None  # tried again
    a.write_bytes(b"changed")  # other bytes under the same name: scanned again
    assert take_over(earlier, a) is None
    a.unlink()
    assert take_over(earlier, a) is None


def test_no_earlier_json_means_everything_is_scanned(tmp_path):
    assert read_earlier(tmp_path / "none.json") is None
    assert earlier_records(None, tmp_path / "none.json", SETTINGS) == {}


def test_a_file_that_is_no_scan_json_or_from_another_version_is_refused(tmp_path):
    p = tmp_path / "x.json"
    for text in ("not json", "[1, 2]", json.dumps({"settings": {}}), json.dumps({"settings": [], "files": []}),
                 '{"a":' * 100000 + "1" + "}" * 100000):  # (nested deeper than json reads: a RecursionError)
        p.write_text(text)
        with pytest.raises(ForgeryDetError, match=r"^--resume: .*x.json is not the JSON of a forgerydet scan"):
            read_earlier(p)
    p.write_bytes(b"\xff\xfe")  # not text
    with pytest.raises(ForgeryDetError, match="is not the JSON of a forgerydet scan"):
        read_earlier(p)
    p.write_text(json.dumps({"forgerydet_version": "0.0.1", "settings": {}, "files": []}))
    with pytest.raises(ForgeryDetError, match=f"written by forgerydet 0.0.1, this is forgerydet {__version__}"):
        read_earlier(p)
    p.write_text(json.dumps({"settings": {}, "files": []}))
    with pytest.raises(ForgeryDetError, match="written by an unknown version, this is"):
        read_earlier(p)


def test_a_record_trimmed_by_hand_is_scanned_again_not_taken_over(tmp_path):
    """A JSON slimmed of its faces (most of its size), or a verdict without its score, crashed the resumed scan
    after its work (KeyError in the output) and lost it."""
    a, ha = _file(tmp_path, "a.png", b"aaa")
    for trimmed in ({k: v for k, v in _rec(a, "ok", ha).items() if k != "faces"},
                    {k: v for k, v in _rec(a, "ok", ha).items() if k != "verdict"},
                    _rec(a, "ok", ha, score="0.5"), {"path": str(a), "status": "ok", "sha256": ha}):
        p = _doc(tmp_path, [trimmed])
        assert earlier_records(read_earlier(p), p, SETTINGS) == {}


def test_other_deciding_settings_are_refused_naming_each_difference(tmp_path):
    p = _doc(tmp_path, [])
    now = dict(SETTINGS, threshold=0.5, tta="none")
    with pytest.raises(ForgeryDetError) as e:
        earlier_records(read_earlier(p), p, now)
    said = str(e.value)
    assert said.startswith(f"--resume: {p} was scanned with other settings (it ran `forgerydet scan x`): ")
    assert "--threshold: threshold 0.338 -> 0.5" in said and "--tta: tta 'flip' -> 'none'" in said
    assert "frames" not in said
    assert said.endswith("resume with its options, or scan without --resume (or into another --json)")
    now = dict(SETTINGS, detector={"detect_side": 640, "min_confidence": 0.95})
    with pytest.raises(ForgeryDetError) as e:  # of a group, the member that differs (a cut-off dict hid it)
        earlier_records(read_earlier(p), p, now)
    assert "--detect-side/--min-confidence: detector min_confidence 0.9 -> 0.95" in str(e.value)
    for key in ("checkpoint_sha256", "detector", "segment", "reference", "precision", "bank_fingerprint",
                "reference_content", "bank_written"):
        assert key in DECIDING  # what decides a face's score or a file's verdict


def test_a_disk_bank_searched_another_way_is_refused(tmp_path):
    """A scan with a faiss-indexed --bank resumed where faiss is missing (or the reverse) retrieves other neighbours,
    so other scores: it mixed approximate and exact ones in one output."""
    p = _doc(tmp_path, [], bank="disk", bank_search="faiss + exact re-ranking")
    with pytest.raises(ForgeryDetError) as e:
        earlier_records(read_earlier(p), p, dict(SETTINGS, bank="disk", bank_search="exact"))
    assert "--bank (searched with faiss, or exactly where it is not installed): bank_search" in str(e.value)
    same = dict(SETTINGS, bank="disk", bank_search="faiss + exact re-ranking")
    assert earlier_records(read_earlier(p), p, same) == {}


def test_a_json_of_an_earlier_forgerydet_is_refused_without_asking_for_options_that_cannot_match(tmp_path):
    """A scan JSON written before forgerydet recorded --deinterlace, --precision or the detector (and with the
    checkpoint's sha256 cut to 16 characters) was refused with 'resume with its options': no option gives null."""
    sha = "ab" * 32
    p = _doc(tmp_path, [], checkpoint_sha256=sha[:16])
    del_keys = ("tta", "detector")
    doc = read_earlier(p)
    for k in del_keys:
        del doc["settings"][k]
    now = dict(SETTINGS, deinterlace=True, precision="fp32")
    with pytest.raises(ForgeryDetError) as e:
        earlier_records(doc, p, now)
    said = str(e.value)
    assert said.startswith(f"--resume: {p} was written by an earlier forgerydet, which did not record ")
    for k in ("checkpoint_sha256", "deinterlace", "tta", "precision", "detector"):
        assert k in said
    assert "resume with its options" not in said and "scan into another --json" in said
    doc = read_earlier(_doc(tmp_path, [], mode="single"))  # an option not given then (no --bank) is still an option to give again
    with pytest.raises(ForgeryDetError, match="resume with its options"):
        earlier_records(doc, p, dict(SETTINGS, bank="bankdir", mode="disk bank"))


def test_files_not_reached_keep_the_earlier_verdicts(tmp_path):
    """A resumed scan stopped (or saved while running) before reaching files the earlier scan had judged wrote them
    as not_scanned: their verdicts were lost."""
    a, ha = _file(tmp_path, "a.png", b"aaa")
    b, _ = _file(tmp_path, "b.png", b"bbb")
    p = _doc(tmp_path, [_rec(a, "ok", ha)])
    earlier = earlier_records(read_earlier(p), p, SETTINGS)
    got = not_reached(earlier, [a, b], 0.3, "not scanned: stopped")
    assert got[0] == _rec(a, "ok", ha)
    assert (got[1]["path"], got[1]["status"], got[1]["error"], got[1]["threshold"]) == (
        str(b), "not_scanned", "not scanned: stopped", 0.3)


def test_the_json_is_saved_first_after_a_while_then_within_its_share_of_the_time():
    now = [0.0]
    written = []

    def write(results, settings):
        written.append((len(results), settings["in_progress"], settings["finished"]))
        now[0] += 2.0  # a write that takes 2 s

    k = Checkpointer(write, first_after=30.0, share=0.05, clock=lambda: now[0])
    assert not k.due()
    now[0] = 30.0
    assert k.due()
    k.write([{}, {}], {"finished": "earlier"})
    assert written == [(2, True, None)] and k.writes == 1
    now[0] += 39.0  # the next one no sooner than 2 s / 5 % = 40 s after it
    assert not k.due()
    now[0] += 1.0
    assert k.due()


def test_the_resumed_line_counts_both_ways(tmp_path):
    assert resumed_line(1, tmp_path / "s.json", 3) == (f"1 file taken over from the earlier scan in {tmp_path / 's.json'} "
                                                       f"(the same bytes, judged with the settings that decide their scores now), 3 scanned")
    assert resumed_line(2, Path("s.json"), 0).startswith("2 files taken over")
    assert resumed_line(2, Path("s.json"), 0, 1).endswith("; 1 file of the earlier scan not given to this one is left "
                                                          "out of the JSON")


def test_a_file_is_found_again_given_relative_absolute_or_through_a_link(tmp_path, monkeypatch):
    """The earlier scan ran in another folder with a relative path; this one names the file absolute, or a link."""
    (tmp_path / "clips").mkdir()
    a, ha = _file(tmp_path / "clips", "a.mp4", b"aaa")
    p = _doc(tmp_path, [_rec("clips/a.mp4", "ok", ha)], working_directory=str(tmp_path))
    monkeypatch.chdir(tmp_path / "clips")  # elsewhere now
    earlier = earlier_records(read_earlier(p), p, SETTINGS)
    assert take_over(earlier, a) == {**_rec(a, "ok", ha), "resumed": True}
    (tmp_path / "link.mp4").symlink_to(a)
    assert take_over(earlier, tmp_path / "link.mp4")["path"] == str(tmp_path / "link.mp4")  # named as given now
    assert take_over(earlier, Path("a.mp4"))["path"] == "a.mp4"


def test_other_video_settings_still_take_over_the_images(tmp_path):
    """--frames, --start/--end and --deinterlace do not touch a still image: a folder of photos resumed with another
    --frames was refused; its videos are scanned again."""
    a, ha = _file(tmp_path, "a.png", b"aaa")
    v, hv = _file(tmp_path, "v.mp4", b"vvv")
    p = _doc(tmp_path, [_rec(a, "ok", ha), _rec(v, "ok", hv, kind="video")])
    earlier = earlier_records(read_earlier(p), p, dict(SETTINGS, frames_per_video=8, segment="0:05-end"))
    assert sorted(earlier) == [os.path.realpath(a)]
    with pytest.raises(ForgeryDetError, match="--frames: frames_per_video 32 -> 8; --tta"):  # and anything else: refused
        earlier_records(read_earlier(p), p, dict(SETTINGS, frames_per_video=8, tta="none"))


def test_a_guarded_output_writes_beside_a_file_another_process_wrote(tmp_path):
    from forgerydet.scan.resume import GuardedOutput

    out = tmp_path / "s.json"
    out.write_text("earlier run")  # there before the scan: replaced, as always
    g = GuardedOutput(out)
    assert g.write("first save") == out and g.write("second save") == out and g.elsewhere is None
    out.write_text("another scan")
    beside = tmp_path / f"s.{os.getpid()}.json"
    assert g.write("third save") == beside and g.write("final") == beside  # and it stays there
    assert out.read_text() == "another scan" and beside.read_text() == "final"


@pytest.mark.parametrize("edit", [dict(notes=[1]), dict(fps="abc"), dict(score_interval="oops"), dict(tracks=["x", 3]),
                                  dict(faces=[1, "y"]), dict(threshold="t"), dict(score=float("nan")),
                                  dict(width=True and "w")])
def test_a_record_with_a_field_of_the_wrong_type_is_scanned_again(tmp_path, edit):
    """Each of these, taken over, crashed the table, CSV or report after the work (or wrote NaN, not JSON)."""
    a, ha = _file(tmp_path, "a.png", b"aaa")
    p = _doc(tmp_path, [_rec(a, "ok", ha) | edit])
    assert earlier_records(read_earlier(p), p, SETTINGS) == {}
    p = _doc(tmp_path, [_rec(a, "ok", ha, threshold=0.3, fps=None, score_interval=[0.1, 0.2])])
    assert len(earlier_records(read_earlier(p), p, SETTINGS)) == 1  # the same record, well formed


def test_a_name_of_bytes_that_are_not_utf8_is_found_again(tmp_path):
    """Written as \\xNN (errors.path_text), it never matched the file and was called left out on every resume."""
    odd = Path(os.fsdecode(os.fsencode(str(tmp_path)) + b"/\xff\xfe.png"))
    odd.write_bytes(b"aaa")
    p = _doc(tmp_path, [_rec(path_text(odd), "ok", hashlib.sha256(b"aaa").hexdigest(), threshold=0.3)])
    earlier = earlier_records(read_earlier(p), p, SETTINGS)
    assert take_over(earlier, odd)["path"] == path_text(odd) and Earlier(earlier, [odd]).left_out() == 0
    assert Earlier(earlier, []).left_out() == 1


def test_a_hand_edited_path_or_disagreeing_duplicates_are_not_taken_over(tmp_path):
    a, ha = _file(tmp_path, "a.png", b"aaa")
    p = _doc(tmp_path, [_rec("a\0b.png", "ok", ha, threshold=0.3)])  # a NUL: no file's name (it raised ValueError)
    assert earlier_records(read_earlier(p), p, SETTINGS) == {}
    real, fake = _rec(a, "ok", ha, threshold=0.3, verdict="REAL", score=0.03), _rec(a, "ok", ha, threshold=0.3)
    p = _doc(tmp_path, [real, fake])  # the second claims FAKE 0.9 for the same file: neither is believed
    assert earlier_records(read_earlier(p), p, SETTINGS) == {}
    p = _doc(tmp_path, [real, dict(real)])  # the same record twice: fine
    assert len(earlier_records(read_earlier(p), p, SETTINGS)) == 1


def test_places_of_a_record_follow_a_project_moved_since(tmp_path, monkeypatch):
    from forgerydet.scan.resume import places

    monkeypatch.chdir(tmp_path)
    gone = "/no/such/project"  # the folder the earlier run ran in, moved to tmp_path since
    assert places("faces/a.png", gone) == {f"{gone}/faces/a.png", str(tmp_path / "faces/a.png")}
    assert places(f"{gone}/x/b.png", gone) == {f"{gone}/x/b.png", str(tmp_path / "x/b.png")}
    assert places("/elsewhere/c.png", gone) == {"/elsewhere/c.png"}  # outside the project: not moved with it
    assert places("../up.png", gone) == {"/no/such/up.png"}
    assert places("faces/a.png", str(tmp_path)) == {str(tmp_path / "faces/a.png")}  # still there: one place
    assert places("bad\\xff.png", str(tmp_path)) == {str(tmp_path / "bad\\xff.png"),
                                                      os.fsdecode(bytes(tmp_path / "bad") + b"\xff.png")}
