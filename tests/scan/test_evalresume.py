"""`evaluate --resume`: an evaluation that crashed goes on from the scores it saved while it ran."""

import csv
import hashlib
import functools
import itertools
import json
import os
from pathlib import Path

import cv2
import numpy as np
import pytest
import torch
from sklearn.metrics import roc_auc_score
from typer.testing import CliRunner

import forgerydet.scan.evaluate as ev
from forgerydet import __version__
from forgerydet.cli.app import app
from forgerydet.errors import ForgeryDetError
from forgerydet.model.checkpoint import save_checkpoint
from forgerydet.scan.evalresume import earlier_scores, read_earlier_evaluation
from forgerydet.scan.resume import Checkpointer
from forgerydet.scan.scanner import ScanConfig, Scanner
from tests.helpers import tiny_model


def _list(path: Path, rows: list[dict]) -> Path:
    with open(path, "w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=["path", "label", "group"], extrasaction="ignore")
        w.writeheader()
        w.writerows(rows)
    return path


@pytest.fixture
def counted(monkeypatch):
    """Scanner._score counted; `crash_at[0]` = n makes the n-th call raise as a power cut would (not Ctrl-C: no
    output is written after it), and the scores are saved after every file (as a long evaluation's are, every
    few minutes)."""
    calls, crash_at, real = [], [0], Scanner._score

    def score(self, crops):
        calls.append(1)
        if len(calls) == crash_at[0]:
            raise RuntimeError("power cut")
        return real(self, crops)

    monkeypatch.setattr(Scanner, "_score", score)
    ticks = itertools.count(step=100.0)  # a clock where every file takes long enough for a save after it
    monkeypatch.setattr(ev, "Checkpointer", functools.partial(Checkpointer, first_after=0.0, share=1.0,
                                                          clock=lambda: next(ticks)))
    return calls, crash_at


def _crashed(ck, lst, out, counted, at=9, resume=False):
    calls, crash_at = counted
    crash_at[0] = at
    with pytest.raises(RuntimeError, match="power cut"):
        ev.evaluate(lst, ck, config=ScanConfig(device="cpu"), crops=True, out_dir=out, resume=resume)
    crash_at[0] = 0
    calls.clear()
    return json.loads((out / "metrics.json").read_text())


def test_a_crashed_evaluation_resumed_scores_only_the_rest_and_gives_the_whole_metrics(setup, tmp_path, counted):
    ck, lst, rows = setup
    out = tmp_path / "ev"
    saved = _crashed(ck, lst, out, counted)
    assert saved["in_progress"] is True and "frame_level" not in saved and saved["forgerydet_version"] == __version__
    assert [Path(f["path"]).name for f in saved["files"]] == [r["path"] for r in rows[:8]]
    assert [Path(p).name for p in saved["not_scored"]] == [r["path"] for r in rows[8:]]
    assert all(len(f["sha256"]) == 64 and f["face_scores"] == [f["score"]] for f in saved["files"])
    calls, _ = counted
    r = CliRunner().invoke(app, ["evaluate", str(lst), "--checkpoint", str(ck), "--crops", "--device", "cpu",
                                 "--out", str(out), "--resume"])
    assert r.exit_code == 0, r.output
    assert len(calls) == 4  # the four files the crash left
    assert (f"resumed: 8 files taken over from the earlier evaluation in {out / 'metrics.json'} (the same bytes, scored "
            f"with the settings that decide their scores now), 4 scored") in " ".join(r.output.split())
    res = json.loads((out / "metrics.json").read_text())
    whole = ev.evaluate(lst, ck, config=ScanConfig(device="cpu"), crops=True)  # the same set scored in one go
    assert [f["score"] for f in res["files"]] == pytest.approx([f["score"] for f in whole["files"]])
    assert res["frame_level"]["overall"]["auc"] == pytest.approx(whole["frame_level"]["overall"]["auc"])
    assert res["frame_level"]["overall"]["auc"] == pytest.approx(
        roc_auc_score([f["label"] for f in res["files"]], [f["score"] for f in res["files"]]))
    assert res["in_progress"] is False and res["resumed"]["files_taken_over"] == 8
    assert sum(bool(f.get("resumed")) for f in res["files"]) == 8


def test_changed_bytes_edited_records_and_two_disagreeing_records_are_scored_again(setup, tmp_path, counted):
    ck, lst, rows = setup
    out = tmp_path / "ev"
    saved = _crashed(ck, lst, out, counted)
    img = cv2.imread(str(tmp_path / "face0.png"))
    cv2.imwrite(str(tmp_path / "face0.png"), 255 - img)  # other bytes under the same name
    saved["files"][1]["face_scores"] = [float("nan")]  # edited by hand: not a score a scan writes
    saved["files"][2]["n_faces"] = 3  # n_faces no longer the number of face scores
    saved["files"][4]["score"] = saved["files"][4]["face_scores"][0] = 1e300  # not a probability
    saved["files"].append({**saved["files"][3], "score": 0.5, "face_scores": [0.5]})  # face3 twice, disagreeing
    (out / "metrics.json").write_text(json.dumps(saved))
    calls, _ = counted
    res = ev.evaluate(lst, ck, config=ScanConfig(device="cpu"), crops=True, out_dir=out, resume=True)
    assert len(calls) == 9 and res["resumed"]["files_taken_over"] == 3  # face0-4 and face8-11 scored
    assert not any(f.get("resumed") for f in res["files"][:5])


def test_other_deciding_settings_are_refused_before_any_scoring_and_a_threshold_is_not_one(setup, tmp_path, counted):
    ck, lst, rows = setup
    out = tmp_path / "ev"
    _crashed(ck, lst, out, counted)
    calls, _ = counted
    args = ["evaluate", str(lst), "--checkpoint", str(ck), "--crops", "--device", "cpu", "--out", str(out), "--resume"]
    r = CliRunner().invoke(app, [*args, "--tta", "flip"])
    assert r.exit_code == 1 and "Traceback" not in r.output and not calls
    assert "was scored with other settings: --tta: tta 'none' -> 'flip'" in " ".join(r.output.split())
    r = CliRunner().invoke(app, [*args, "--threshold", "0.01"])  # decides the accuracy only, computed again
    assert r.exit_code == 0, r.output
    res = json.loads((out / "metrics.json").read_text())
    assert len(calls) == 4 and res["threshold"] == 0.01 and res["frame_level"]["overall"]["accuracy"] == 0.5

def test_crops_scored_before_are_taken_over_under_another_aggregation_and_the_note_is_said_once(setup, tmp_path,
                                                                                                 counted):
    ck, lst, rows = setup
    out = tmp_path / "ev"
    _crashed(ck, lst, out, counted)
    calls, _ = counted
    r = CliRunner().invoke(app, ["evaluate", str(lst), "--checkpoint", str(ck), "--crops", "--device", "cpu", "--out",
                                 str(out), "--resume", "--aggregation", "mean"])
    assert r.exit_code == 0, r.output
    assert len(calls) == 4 and "8 files taken over" in r.output  # a crop is scored alone: no aggregation
    said = " ".join(r.output.split())
    assert said.count("(--aggregation: aggregation 'max-then-mean' -> 'mean'): only its images are taken over") == 1
    assert len(json.loads((out / "metrics.json").read_text())["notes"]) == 1  # kept once, in the metrics


def test_without_crops_no_image_scored_as_a_crop_is_taken_over(setup, tmp_path, counted, monkeypatch):
    ck, lst, rows = setup
    out = tmp_path / "ev"
    _crashed(ck, lst, out, counted)  # images only, scored as crops
    before = (out / "metrics.json").read_bytes()
    scanned = []
    monkeypatch.setattr(Scanner, "scan_file", lambda self, path: scanned.append(path) or {
        "path": str(path), "status": "no_face", "faces": [], "score": None})
    args = ["evaluate", str(lst), "--checkpoint", str(ck), "--device", "cpu", "--out", str(out), "--resume"]
    r = CliRunner().invoke(app, args)  # --crops forgotten: nothing left to take over, every saved score dropped
    assert r.exit_code == 1 and not scanned and (out / "metrics.json").read_bytes() == before
    assert (f"--resume: {out / 'metrics.json'} was scored with other settings: --crops: given -> not given; its "
            f"options with --resume go on with it") in " ".join(r.output.split())
    video = tmp_path / "clip.mp4"  # a list of images and a video: the video's score is taken over, the images
    video.write_bytes(b"not decoded here")  # are scanned again, and a note says so before the scoring
    doc = json.loads(before)
    doc["files"].append(dict(doc["files"][0], path=str(video), sha256=hashlib.sha256(video.read_bytes()).hexdigest()))
    (out / "metrics.json").write_text(json.dumps(doc))
    r = CliRunner().invoke(app, ["evaluate", str(_list(tmp_path / "mixed.csv", [*rows, {"path": "clip.mp4",
                                                                                      "label": "fake"}])), *args[2:]])
    assert r.exit_code == 1 and "no listed file produced a score" not in r.output  # the video's score is there
    assert len(scanned) == 12  # every image detected again, none of the 8 crop scores taken over
    said = " ".join(r.output.split())  # before the scoring, not only in the end line
    assert (f"note: --resume: {out / 'metrics.json'} was scored with other settings (--crops: given -> not given): "
            f"only its videos are taken over, its images are scored again") in said

def test_a_grown_list_scores_only_its_new_files_and_keeps_the_earlier_ones_it_left_out(setup, tmp_path, counted,
                                                                                       monkeypatch):
    ck, lst, rows = setup
    out = tmp_path / "ev"
    calls, _ = counted
    ev.evaluate(_list(tmp_path / "first.csv", rows[:6]), ck, config=ScanConfig(device="cpu"), crops=True, out_dir=out)
    calls.clear()
    sub = tmp_path / "sub"
    sub.mkdir()
    os.symlink(tmp_path / "face2.png", sub / "link.png")  # the same file through a link: the same place
    grown = [*rows[1:2], {"path": "sub/link.png", "label": "real"}, *rows[6:10]]
    r = CliRunner().invoke(app, ["evaluate", str(_list(tmp_path / "grown.csv", grown)), "--checkpoint", str(ck),
                                 "--crops", "--device", "cpu", "--out", str(out), "--resume"])
    assert r.exit_code == 0, r.output
    assert len(calls) == 4
    assert "2 files taken over" in r.output and "4 scored; 4 files of the earlier evaluation not in this one are left " \
        f"out of the metrics (kept in metrics.json as earlier_files, for a later --resume)" in " ".join(r.output.split())
    res = json.loads((out / "metrics.json").read_text())
    assert len(res["files"]) == 6 and res["frame_level"]["overall"]["n"] == 6
    assert sorted(Path(f["path"]).name for f in res["earlier_files"]) == ["face0.png", "face3.png", "face4.png",
                                                                          "face5.png"]
    calls.clear()  # the whole list again, from another folder: the four left out are not scored again
    monkeypatch.chdir(sub)
    ev.evaluate(lst, ck, config=ScanConfig(device="cpu"), crops=True, out_dir=out, resume=True)
    assert len(calls) == 2  # face10, face11: never scored


def test_an_earlier_file_that_cannot_be_resumed_is_one_line_before_the_model_loads(setup, tmp_path, monkeypatch):
    ck, lst, rows = setup
    out = tmp_path / "ev"
    out.mkdir()
    monkeypatch.setattr(Scanner, "__init__", lambda *a, **k: pytest.fail("the model was loaded"))
    args = ["evaluate", str(lst), "--checkpoint", str(ck), "--crops", "--out", str(out), "--resume"]
    for text, said in [("not json", "is not the metrics.json of a forgerydet evaluation"),
                       (json.dumps({"checkpoint": {}, "files": []}), "was written by a forgerydet that did not keep "
                                                                      "each file's scores"),
                       (json.dumps({"checkpoint": {}, "files": [], "forgerydet_version": "0.0.1"}),
                        "was written by forgerydet 0.0.1")]:
        (out / "metrics.json").write_text(text)
        r = CliRunner().invoke(app, args)
        assert r.exit_code == 1 and said in " ".join(r.output.split()) and "Traceback" not in r.output
        assert (out / "metrics.json").read_text() == text  # left as it was
    (out / "metrics.json").unlink()
    assert read_earlier_evaluation(out) is None
    with pytest.raises(ForgeryDetError, match="--out folder"):
        ev.evaluate(lst, ck, resume=True)


def test_earlier_scores_take_over_by_kind_when_only_frames_crops_or_what_crops_ignore_differ(tmp_path):
    d = str(tmp_path)  # the folder the earlier evaluation ran in, still there
    settings = {"checkpoint_sha256": "a", "frames_per_video": 32, "tta": "none"}
    rec = lambda p: {"path": p, "sha256": "0" * 64, "score": 0.3, "face_scores": [0.3], "n_faces": 1,  # noqa: E731
                     "score_interval": None}
    doc = {"checkpoint": dict(settings), "crops": False, "files": [rec(f"{d}/a.png"), rec(f"{d}/b.mp4")],
           "working_directory": d}
    assert sorted(earlier_scores(doc, Path("m.json"), settings, False)) == [f"{d}/a.png", f"{d}/b.mp4"]
    assert sorted(earlier_scores(doc, Path("m.json"), {**settings, "frames_per_video": 8}, False)) == [f"{d}/a.png"]
    assert sorted(earlier_scores(doc, Path("m.json"), settings, True)) == [f"{d}/b.mp4"]
    with pytest.raises(ForgeryDetError, match="--frames: frames_per_video 32 -> 8; --crops: not given -> given"):
        earlier_scores(doc, Path("m.json"), {**settings, "frames_per_video": 8}, True)
    assert earlier_scores(None, Path("m.json"), settings, False) == {}
    # a crop scored as it is knows no aggregation or detector: with --crops both times its score is taken over
    crops_doc = dict(doc, crops=True)
    for other in ({"aggregation": "mean"}, {"detector": {"min_confidence": 0.5}}):
        notes = []
        assert sorted(earlier_scores(crops_doc, Path("m.json"), {**settings, **other}, True, notes)) == [f"{d}/a.png"]
        assert "only its images are taken over, its videos are scored again" in notes[0]
        with pytest.raises(ForgeryDetError, match=f"--{'aggregation' if 'aggregation' in other else 'detect'}"):
            earlier_scores(doc, Path("m.json"), {**settings, **other}, False)  # scanned images: it decides them


def test_a_resumed_evaluation_that_crashes_again_keeps_the_earlier_scores_it_had_not_reached(setup, tmp_path, counted):
    ck, lst, rows = setup
    out = tmp_path / "ev"
    _crashed(ck, lst, out, counted)  # face0-7 scored
    backwards = _list(tmp_path / "backwards.csv", rows[::-1])  # face11 first: scored, then the crash on face10
    saved = _crashed(ck, backwards, out, counted, at=2, resume=True)
    assert [Path(f["path"]).name for f in saved["files"]] == ["face11.png"]
    assert sorted(Path(f["path"]).name for f in saved["earlier_files"]) == sorted(r["path"] for r in rows[:8])
    calls, _ = counted
    res = ev.evaluate(lst, ck, config=ScanConfig(device="cpu"), crops=True, out_dir=out, resume=True)
    assert res["resumed"]["files_taken_over"] == 9 and len(calls) == 3  # face8, face9, face10
    assert res["earlier_files"] == []  # every earlier score was taken over


def test_a_project_moved_since_the_crash_is_resumed_in_its_new_place(setup, tmp_path, counted, monkeypatch):
    ck, _, rows = setup
    project = tmp_path / "project"
    (project / "faces").mkdir(parents=True)
    for r_ in rows:
        os.rename(tmp_path / r_["path"], project / "faces" / r_["path"])
    lst = _list(project / "list.csv", [dict(r_, path=f"faces/{r_['path']}") for r_ in rows])
    monkeypatch.chdir(project)
    _crashed(ck, Path("list.csv"), Path("ev"), counted)  # relative paths, run from the project
    _crashed(ck, lst, project / "abs", counted)  # absolute paths
    _crashed(ck, lst, project / "abs2", counted)
    os.rename(project, tmp_path / "moved")
    monkeypatch.chdir(tmp_path / "moved")
    calls, _ = counted
    for out, listed in (("ev", "list.csv"), ("abs", str(tmp_path / "moved" / "list.csv"))):
        calls.clear()
        res = ev.evaluate(Path(listed), ck, config=ScanConfig(device="cpu"), crops=True, out_dir=Path(out), resume=True)
        assert res["resumed"]["files_taken_over"] == 8 and len(calls) == 4, out
    short = _list(Path("short.csv"), [dict(r_, path=f"faces/{r_['path']}") for r_ in rows[:2]])
    res = ev.evaluate(short, ck, config=ScanConfig(device="cpu"), crops=True, out_dir=Path("abs2"), resume=True)
    kept = [f["path"] for f in res["earlier_files"]]  # the six scored left out, kept where a later --resume finds them
    assert len(kept) == 6 and all(p.startswith(str(tmp_path / "moved")) and os.path.exists(p) for p in kept)


def test_files_found_by_their_bytes_wherever_they_lie_now_are_taken_over(setup, tmp_path, counted, monkeypatch):
    """Run from the project's parent folder and moved since, with a folder at the old name again, or the files
    renamed: no place matches, the bytes do."""
    ck, _, rows = setup
    (tmp_path / "p1" / "faces").mkdir(parents=True)
    for r_ in rows:
        os.rename(tmp_path / r_["path"], tmp_path / "p1" / "faces" / r_["path"])
    _list(tmp_path / "p1" / "list.csv", [dict(r_, path=f"faces/{r_['path']}") for r_ in rows])
    monkeypatch.chdir(tmp_path)
    _crashed(ck, Path("p1/list.csv"), Path("p1/ev"), counted)  # from the parent: paths p1/faces/..., 8 scored
    os.rename(tmp_path / "p1", tmp_path / "p2")
    (tmp_path / "p1").mkdir()  # another folder at the old name
    calls, _ = counted
    res = ev.evaluate(Path("p2/list.csv"), ck, config=ScanConfig(device="cpu"), crops=True, out_dir=Path("p2/ev"),
                      resume=True)
    assert res["resumed"]["files_taken_over"] == 8 and len(calls) == 4
    assert "not in this one" not in res["resumed"]["line"] and res["earlier_files"] == []
    for r_ in rows:  # every file renamed, a copy of one added: all twelve found by their bytes
        os.rename(tmp_path / "p2" / "faces" / r_["path"], tmp_path / "p2" / "faces" / f"new_{r_['path']}")
    (tmp_path / "p2" / "faces" / "copy.png").write_bytes((tmp_path / "p2" / "faces" / "new_face1.png").read_bytes())
    renamed = [dict(r_, path=f"faces/new_{r_['path']}") for r_ in rows] + [{"path": "faces/copy.png", "label": "fake"}]
    calls.clear()
    res = ev.evaluate(_list(tmp_path / "p2" / "renamed.csv", renamed), ck, config=ScanConfig(device="cpu"), crops=True,
                      out_dir=Path("p2/ev"), resume=True)
    assert res["resumed"]["files_taken_over"] == 13 and not calls and res["earlier_files"] == []


def test_the_same_bytes_saved_with_other_scores_are_not_taken_over_by_their_bytes(setup, tmp_path, counted):
    ck, lst, rows = setup
    out = tmp_path / "ev"
    saved = _crashed(ck, lst, out, counted)
    saved["files"].append(dict(saved["files"][0], path="/elsewhere/face0.png", score=0.999, face_scores=[0.999]))
    (out / "metrics.json").write_text(json.dumps(saved))
    os.rename(tmp_path / "face0.png", tmp_path / "moved0.png")
    calls, _ = counted
    listed = _list(tmp_path / "l.csv", [dict(rows[0], path="moved0.png"), *rows[1:]])
    res = ev.evaluate(listed, ck, config=ScanConfig(device="cpu"), crops=True, out_dir=out, resume=True)
    assert res["resumed"]["files_taken_over"] == 7 and len(calls) == 5  # moved0 scored again: which score is its?


def test_a_second_evaluation_into_the_same_out_while_one_runs_is_refused(setup, tmp_path):
    import fcntl

    ck, lst, rows = setup
    out = tmp_path / "ev"
    out.mkdir()
    running = json.dumps({"forgerydet_version": __version__, "checkpoint": {}, "files": [], "in_progress": True})
    (out / "metrics.json").write_text(running)  # the running evaluation's first save
    held = os.open(out, os.O_RDONLY)  # as the running evaluation holds it
    fcntl.flock(held, fcntl.LOCK_EX)
    try:
        for extra in ([], ["--resume"]):  # not told that it is an unfinished one to resume or remove: it is running
            r = CliRunner().invoke(app, ["evaluate", str(lst), "--checkpoint", str(ck), "--crops", "--device", "cpu",
                                         "--out", str(out / "."), *extra])
            assert r.exit_code == 1 and "Traceback" not in r.output
            assert f"another evaluation is writing there now" in " ".join(r.output.split())
            assert "unfinished" not in r.output and (out / "metrics.json").read_text() == running
    finally:
        os.close(held)
    (out / "metrics.json").unlink()
    r = CliRunner().invoke(app, ["evaluate", str(lst), "--checkpoint", str(ck), "--crops", "--device", "cpu",
                                 "--out", str(out)])
    assert r.exit_code == 0, r.output  # released at the end of the other


def test_an_unfinished_evaluation_is_not_replaced_without_resume(setup, tmp_path, counted):
    ck, lst, rows = setup
    out = tmp_path / "ev"
    _crashed(ck, lst, out, counted)
    before = (out / "metrics.json").read_bytes()
    args = ["evaluate", str(lst), "--checkpoint", str(ck), "--crops", "--device", "cpu", "--out", str(out)]
    r = CliRunner().invoke(app, args)
    assert r.exit_code == 1 and "Traceback" not in r.output
    assert (f"{out / 'metrics.json'} holds the saved scores of 8 file(s) of an unfinished evaluation (or kept for a "
            f"later --resume), which this one would replace: its options with --resume go on with it; to start over, "
            f"remove it or give another --out") in " ".join(r.output.split())
    assert (out / "metrics.json").read_bytes() == before
    doc = json.loads(before)
    assert doc.get("command") is None  # run through the API, which knows no command line
    doc["command"] = "forgerydet evaluate list.csv --crops --out ev"  # as the CLI records it, in the folder it ran in
    (out / "metrics.json").write_text(json.dumps(doc))
    r = CliRunner().invoke(app, args)
    assert r.exit_code == 1 and ("which this one would replace: its options with --resume go on with it (it ran "
                                 f"`forgerydet evaluate list.csv --crops --out ev` in {os.getcwd()})"
                                 ) in " ".join(r.output.split())
    r = CliRunner().invoke(app, [*args, "--resume", "--tta", "flip"])  # resumed with another setting
    said = " ".join(r.output.split())
    assert r.exit_code == 1 and "--tta: tta 'none' -> 'flip'; its options with --resume go on with it (it ran " \
        "`forgerydet evaluate list.csv --crops --out ev`" in said and "to start over, remove it or give another" in said
    assert "without --resume" not in said  # which is refused for an unfinished evaluation: no advice in a loop
    (out / "metrics.json").write_text(json.dumps(dict(doc, forgerydet_version="0.0.1")))  # another version's
    for extra in ([], ["--resume"]):  # neither sends the user to the other
        said = " ".join(CliRunner().invoke(app, [*args, *extra]).output.split())
        assert "go on with it" not in said.replace("which can go on with it", "") and "without --resume" not in said
        assert "remove it or give another --out" in said


def test_scores_kept_for_a_later_resume_are_not_replaced_without_resume(setup, tmp_path, counted):
    ck, lst, rows = setup
    out = tmp_path / "ev"
    _crashed(ck, lst, out, counted)  # 8 scored
    short = _list(tmp_path / "short.csv", rows[:2])
    res = ev.evaluate(short, ck, config=ScanConfig(device="cpu"), crops=True, out_dir=out, resume=True)
    assert len(res["earlier_files"]) == 6
    before = (out / "metrics.json").read_bytes()
    r = CliRunner().invoke(app, ["evaluate", str(short), "--checkpoint", str(ck), "--crops", "--device", "cpu", "--out",
                                 str(out)])
    assert r.exit_code == 1 and "holds the saved scores of 6 file(s)" in " ".join(r.output.split())
    assert (out / "metrics.json").read_bytes() == before
    ev.evaluate(lst, ck, config=ScanConfig(device="cpu"), crops=True, out_dir=out, resume=True)  # all taken up:
    assert ev.evaluate(short, ck, config=ScanConfig(device="cpu"), crops=True, out_dir=out)  # replaced, as usual

def test_what_is_not_a_metrics_file_is_one_line_and_never_read_or_written(setup, tmp_path, monkeypatch):
    ck, lst, rows = setup
    monkeypatch.setattr(Scanner, "__init__", lambda *a, **k: pytest.fail("the model was loaded"))
    pipe = tmp_path / "pipe"
    pipe.mkdir()
    os.mkfifo(pipe / "metrics.json")  # reading or writing it would wait for a writer or reader for ever
    for extra in ([], ["--resume"]):
        r = CliRunner().invoke(app, ["evaluate", str(lst), "--crops", "--out", str(pipe), *extra])
        assert r.exit_code == 1 and "is not a file (a folder, a named pipe or a device)" in " ".join(r.output.split())
    plots = tmp_path / "plots"  # a folder where a plot goes: its removal failed after the scoring, and the
    (plots / "roc.png").mkdir(parents=True)  # metrics.json with every score was never written ("Is a directory")
    for extra in ([], ["--resume"]):
        r = CliRunner().invoke(app, ["evaluate", str(lst), "--crops", "--out", str(plots), *extra])
        assert r.exit_code == 1 and f"{plots / 'roc.png'} is a folder where a file is needed (move it away" in r.output
    deep = tmp_path / "deep"
    deep.mkdir()
    (deep / "metrics.json").write_text('{"a":' * 100000 + "1" + "}" * 100000)  # deeper than json reads
    r = CliRunner().invoke(app, ["evaluate", str(lst), "--crops", "--out", str(deep), "--resume"])
    assert r.exit_code == 1 and "is not the metrics.json of a forgerydet evaluation" in " ".join(r.output.split())
    assert "Traceback" not in r.output


def test_names_that_are_not_utf8_and_files_without_a_face_are_taken_over(tmp_path, astronaut, monkeypatch):
    torch.manual_seed(0)
    m = tiny_model(bank_size=16).eval()
    m.bank.rebuild(m.encode_keys(torch.rand(8, 3, 64, 64)), m.key_fingerprint())
    ck = save_checkpoint(tmp_path / "ck.safetensors", m)
    reals, fakes = tmp_path / "real", tmp_path / "fake"
    reals.mkdir()
    fakes.mkdir()
    cv2.imwrite(str(reals / "a.png"), cv2.cvtColor(astronaut, cv2.COLOR_RGB2BGR))
    odd = os.fsdecode(bytes(fakes) + b"/b\xff.png")  # a name of bytes that are not UTF-8
    cv2.imwrite(str(tmp_path / "b.png"), cv2.cvtColor(astronaut[:, ::-1], cv2.COLOR_RGB2BGR))
    os.rename(tmp_path / "b.png", odd)
    cv2.imwrite(str(fakes / "noise.png"), np.random.default_rng(0).integers(0, 255, (64, 64, 3), dtype=np.uint8))
    args = ["evaluate", "--real", str(reals), "--fake", str(fakes), "--checkpoint", str(ck), "--device", "cpu",
            "--out", str(tmp_path / "ev")]
    r = CliRunner().invoke(app, args)
    assert "noise.png" in r.output and "1 of 3 listed file(s) were skipped" in " ".join(r.output.split())
    scanned = []
    real_scan = Scanner.scan_file
    monkeypatch.setattr(Scanner, "scan_file", lambda self, path: scanned.append(path) or real_scan(self, path))
    r = CliRunner().invoke(app, [*args, "--resume"])
    assert scanned == [] and "3 files taken over" in r.output and "left out" not in r.output
    res = json.loads((tmp_path / "ev" / "metrics.json").read_text())
    assert [s["status"] for s in res["skipped"]] == ["no_face"] and res["skipped"][0]["resumed"] is True


def test_stopped_before_any_score_after_saving_files_without_a_face_keeps_them_and_says_so(setup, tmp_path, counted,
                                                                                           monkeypatch):
    ck, lst, rows = setup
    out = tmp_path / "ev"
    scanned = []

    def scan_file(self, path):
        scanned.append(path)
        if len(scanned) == 4:
            raise KeyboardInterrupt
        return {"path": str(path), "status": "no_face", "faces": [], "score": None, "sha256": "0" * 64}

    monkeypatch.setattr(Scanner, "scan_file", scan_file)
    args = ["evaluate", str(lst), "--checkpoint", str(ck), "--device", "cpu", "--out", str(out)]
    r = CliRunner().invoke(app, args)  # no --crops: each image is scanned, and the first three hold no face
    said = " ".join(r.output.split())
    assert r.exit_code == 130 and "Traceback" not in r.output
    assert (f"interrupted after 3 of 12 listed file(s), before any got a score: the 3 file(s) without a face or "
            f"unreadable are saved in {out / 'metrics.json'}; the same command with --resume goes on") in said
    assert "nothing written" not in said and "earlier evaluation" not in said  # this run wrote it; none was before
    saved = json.loads((out / "metrics.json").read_text())
    assert saved["in_progress"] is True and len(saved["skipped"]) == 3 and len(saved["not_scored"]) == 9


def test_an_evaluation_that_writes_nothing_leaves_no_folder_it_made(setup, tmp_path):
    ck, lst, rows = setup
    bad = tmp_path / "bad.csv"
    bad.write_text("path,label\nface0.png,real\n")  # one class only: refused after the folder was held
    r = CliRunner().invoke(app, ["evaluate", str(bad), "--checkpoint", str(ck), "--crops", "--device", "cpu",
                                 "--out", str(tmp_path / "new" / "deeper" / "ev")])
    assert r.exit_code == 1 and "only real" in r.output
    assert not (tmp_path / "new").exists()
    (tmp_path / "mine").mkdir()  # a folder the user made is kept, empty or not
    CliRunner().invoke(app, ["evaluate", str(bad), "--checkpoint", str(ck), "--crops", "--out", str(tmp_path / "mine")])
    assert (tmp_path / "mine").is_dir()


def test_resume_with_no_earlier_evaluation_says_so_once_and_a_bad_out_is_one_line(setup, tmp_path):
    ck, lst, rows = setup
    args = ["evaluate", str(lst), "--checkpoint", str(ck), "--crops", "--device", "cpu", "--resume", "--out"]
    r = CliRunner().invoke(app, [*args, str(tmp_path / "new")])
    said = " ".join(r.output.split())
    assert r.exit_code == 0 and said.count(f"--resume: no earlier evaluation in {tmp_path / 'new'}: every file is "
                                           f"scored") == 1
    (tmp_path / "afile").write_text("x")
    r = CliRunner().invoke(app, [*args, str(tmp_path / "afile" / "sub")])
    assert r.exit_code == 1 and "no earlier evaluation" not in r.output  # not told first that it would score all
    assert len(r.output.strip().splitlines()) == 1 and r.output.startswith("error: --out")


def test_a_second_ctrl_c_while_an_interrupted_evaluations_metrics_are_computed_names_the_files_left(setup, tmp_path,
                                                                                                 monkeypatch, ctrl_c_at):
    ck, lst, rows = setup
    ctrl_c_at(9)
    monkeypatch.setattr(ev, "grouped_metrics", lambda *a, **k: (_ for _ in ()).throw(KeyboardInterrupt))
    r = CliRunner().invoke(app, ["evaluate", str(lst), "--checkpoint", str(ck), "--crops", "--device", "cpu",
                                 "--out", str(tmp_path / "ev")])
    assert r.exit_code == 130
    assert ("interrupted while the metrics of the 8 scored file(s) were computed: the scores are saved in "
            f"{tmp_path / 'ev' / 'metrics.json'} without metrics; the same command with --resume scores the other 4 "
            "listed file(s) and computes the metrics") in " ".join(r.output.split())


def test_a_crops_flag_edited_by_hand_is_named_as_such():
    doc = {"checkpoint": {}, "crops": "true", "files": []}
    with pytest.raises(ForgeryDetError, match=r"--crops: 'true' \(not an evaluation's\) -> given"):
        earlier_scores(dict(doc, files=[]), Path("m.json"), {"frames_per_video": 8}, True)


def test_only_scores_resume_can_take_over_are_counted_and_a_missing_version_is_said_plainly(tmp_path):
    from forgerydet.scan.evalresume import holds_scores

    good = {"path": "a.png", "sha256": "0" * 64, "score": 0.3, "face_scores": [0.3], "n_faces": 1}
    junk = [dict(good, score=float("nan")), dict(good, sha256=["x"]), dict(good, n_faces=True), "a.png"]
    assert holds_scores({"in_progress": True, "files": [good, *junk], "skipped": junk, "earlier_files": [good]}) == 2
    assert holds_scores({"files": [good], "earlier_files": [good, *junk]}) == 1  # finished: its kept scores only
    assert holds_scores({"files": [good], "earlier_files": "junk"}) == 0
    (tmp_path / "metrics.json").write_text(json.dumps({"checkpoint": {}, "files": [], "earlier_files": [good],
                                                       "forgerydet_version": None}))
    with pytest.raises(ForgeryDetError) as e:
        read_earlier_evaluation(tmp_path, resume=False)
    assert "did not keep each file's scores: this forgerydet" in str(e.value) and "which can go on" not in str(e.value)
