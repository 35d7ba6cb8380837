import csv
import json
import os
import shlex
import sys
from pathlib import Path

import cv2
import numpy as np
import pytest
from sklearn.metrics import roc_auc_score
from typer.testing import CliRunner

from forgerydet.cli.app import app
from forgerydet.metrics import eer
from forgerydet.model.checkpoint import save_checkpoint
from forgerydet.model.inputs import load_image
from forgerydet.scan.evaluate import group_curves
from forgerydet.scan.scanner import ScanConfig, Scanner


def test_evaluate_auc_equals_sklearn_on_the_same_scores(setup, tmp_path):
    ck, lst, rows = setup
    r = CliRunner().invoke(app, ["evaluate", str(lst), "--checkpoint", str(ck), "--crops", "--out", str(tmp_path / "ev"),
                                 "--device", "cpu"])
    assert r.exit_code == 0, r.output
    res = json.loads((tmp_path / "ev" / "metrics.json").read_text())
    assert (tmp_path / "ev" / "roc.png").is_file()
    assert (tmp_path / "ev" / "roc_groups.png").is_file() and "per group: " in r.output  # groups A and B
    scanner = Scanner(ck, ScanConfig(device="cpu"))
    scores = [float(scanner._score([load_image(tmp_path / r_["path"], 64)])["p"][0]) for r_ in rows]
    labels = [1 if r_["label"] == "fake" else 0 for r_ in rows]
    assert res["frame_level"]["overall"]["auc"] == pytest.approx(roc_auc_score(labels, scores))
    assert res["frame_level"]["A"]["auc"] == pytest.approx(roc_auc_score(labels[:6], scores[:6]))
    assert res["video_level"]["overall"]["eer"] == pytest.approx(eer(labels, scores)[0])
    lo, hi = res["frame_level"]["overall"]["auc_ci"]  # the bootstrap interval of the same AUC, stored and shown
    assert lo <= res["frame_level"]["overall"]["auc"] <= hi
    assert f"{lo:.2f}-{hi:.2f}" in r.output
    assert "frame" in r.output and "overall" in r.output
    assert res["close_calls"] is None and all(f["score_interval"] is None for f in res["files"])  # crops: no frames


def test_one_class_list_is_a_clear_message(setup, tmp_path, monkeypatch):
    ck, lst, rows = setup
    monkeypatch.chdir(tmp_path)  # the default --out, eval_out, is made in the current folder
    one = tmp_path / "reals.csv"
    one.write_text("path,label\n" + "".join(f"{r['path']},0\n" for r in rows if r["label"] == "real"))
    r = CliRunner().invoke(app, ["evaluate", str(one), "--checkpoint", str(ck), "--crops", "--device", "cpu"])
    assert r.exit_code == 1 and "only real samples" in r.output and "Traceback" not in r.output
    bad = tmp_path / "bad.csv"
    bad.write_text("file,label\nx.png,1\n")
    r = CliRunner().invoke(app, ["evaluate", str(bad), "--checkpoint", str(ck)])
    assert r.exit_code == 1 and "missing column(s) path" in r.output


def test_a_real_and_a_fake_folder_score_as_the_same_list_does(setup, tmp_path):
    """`evaluate --real R --fake F` (items, not a CSV) gives the list's overall figures; each folder is a group of
    one class, measured against the whole other class."""
    ck, lst, rows = setup
    for r_ in rows:
        folder = tmp_path / ("fakes" if r_["label"] == "fake" else "reals")
        folder.mkdir(exist_ok=True)
        (folder / r_["path"]).symlink_to(tmp_path / r_["path"])
    args = ["--checkpoint", str(ck), "--crops", "--device", "cpu"]
    r = CliRunner().invoke(app, ["evaluate", str(lst), *args, "--out", str(tmp_path / "a")])
    r2 = CliRunner().invoke(app, ["evaluate", "--real", str(tmp_path / "reals"), "--fake", str(tmp_path / "fakes"), *args,
                                  "--out", str(tmp_path / "b")])
    assert r.exit_code == 0 and r2.exit_code == 0, r2.output
    a, b = (json.loads((tmp_path / x / "metrics.json").read_text()) for x in "ab")
    assert b["frame_level"]["overall"]["auc"] == pytest.approx(a["frame_level"]["overall"]["auc"])
    fakes, reals = (b["frame_level"][f"{tmp_path.name}/{x}"] for x in ("fakes", "reals"))  # groups: path's last two parts
    assert fakes["against"] == "real" and reals["against"] == "fake"
    assert fakes["auc"] == pytest.approx(a["frame_level"]["overall"]["auc"])
    assert (tmp_path / "b" / "roc.png").is_file()
    # each folder's curve is drawn against the class it borrows, as its figures are measured
    curves = group_curves(*zip(*[(f["label"], f["score"], f["group"], "") for f in b["files"]]))
    assert sorted(curves) == [f"{tmp_path.name}/fakes vs real"]  # the reals' curve against every fake is the same
    assert not (tmp_path / "b" / "roc_groups.png").exists()  # one curve: roc.png already has it
    (tmp_path / "b" / "roc_groups.png").write_bytes(b"an earlier evaluation's")
    CliRunner().invoke(app, ["evaluate", "--real", str(tmp_path / "reals"), "--fake", str(tmp_path / "fakes"), *args,
                             "--out", str(tmp_path / "b")])
    assert not (tmp_path / "b" / "roc_groups.png").exists()  # not left beside metrics it does not belong to
    two = group_curves([0, 0, 1, 1, 1], [0.1, 0.2, 0.9, 0.3, 0.8], ["o", "o", "DF", "F2F", "F2F"], [""] * 5)
    assert sorted(two) == ["DF vs real", "F2F vs real"]  # FF++: each method against the originals


def test_ctrl_c_keeps_the_files_scored_so_far(setup, tmp_path, monkeypatch, ctrl_c_at):
    """A long evaluation stopped with Ctrl-C writes metrics of the files it scored and exits 130, and the same
    command without --resume is refused (it would score them all again); stopped before any file was scored, an
    evaluation writes nothing and leaves the earlier one's outputs."""
    ck, lst, rows = setup
    ctrl_c_at(9)
    args = ["evaluate", str(lst), "--checkpoint", str(ck), "--crops", "--device", "cpu", "--out", str(tmp_path / "ev")]
    monkeypatch.setattr(sys, "argv", ["/usr/bin/forgerydet", *args])  # the command line metrics.json records
    r = CliRunner().invoke(app, args)
    assert r.exit_code == 130, r.output
    assert "interrupted after 8 of 12 listed file(s): the metrics use the files scored so far" in " ".join(r.output.split())
    res = json.loads((tmp_path / "ev" / "metrics.json").read_text())
    assert res["interrupted"] == {"done": 8, "total": 12} and len(res["files"]) == 8
    assert [Path(f).name for f in res["not_scored"]] == [r_["path"] for r_ in rows[8:]]  # named, as scan's not_scanned
    labels = [1 if r_["label"] == "fake" else 0 for r_ in rows[:8]]
    scores = [f["score"] for f in res["files"]]
    assert res["frame_level"]["overall"]["auc"] == pytest.approx(roc_auc_score(labels, scores))
    assert res["frame_level"]["overall"]["n"] == 8
    before = (tmp_path / "ev" / "metrics.json").read_bytes()
    r = CliRunner().invoke(app, args)  # the same command again, --resume forgotten: refused, not starting over
    assert r.exit_code == 1 and "Traceback" not in r.output
    assert (f"{tmp_path / 'ev' / 'metrics.json'} holds the saved scores of 8 file(s) of an unfinished evaluation (or "
            f"kept for a later --resume), which this one would replace: its options with --resume go on with it (it "
            f"ran `{shlex.join(['forgerydet', *args])}` in {os.getcwd()})") in " ".join(r.output.split())
    assert (tmp_path / "ev" / "metrics.json").read_bytes() == before
    ctrl_c_at(None)
    args[-1] = str(tmp_path / "done")
    assert CliRunner().invoke(app, args).exit_code == 0
    before = (tmp_path / "done" / "metrics.json").read_bytes()
    ctrl_c_at(1)
    r = CliRunner().invoke(app, args)
    assert r.exit_code == 130 and "Traceback" not in r.output
    assert (f"interrupted after 0 of 12 listed file(s), before any got a score: nothing written; metrics.json, "
            f"roc.png, roc_groups.png in {tmp_path / 'done'} are an earlier evaluation's, left as they were"
            ) in " ".join(r.output.split())  # said, not removed: they may be hours of scores --resume takes up
    assert (tmp_path / "done" / "metrics.json").read_bytes() == before


def test_stopped_while_the_metrics_are_computed_keeps_the_scores_for_resume(setup, tmp_path, monkeypatch):
    """Ctrl-C after every file was scored, while the metrics are computed: the scores are saved (in_progress, no
    metrics, an earlier evaluation's plot removed as not theirs) and --resume computes the metrics from them
    without scoring any file again."""
    import forgerydet.scan.evaluate as ev

    ck, lst, rows = setup
    out = tmp_path / "ev"
    out.mkdir()
    for name in ("metrics.json", "roc.png"):
        (out / name).write_text("an earlier evaluation's")
    real_metrics = ev.grouped_metrics
    monkeypatch.setattr(ev, "grouped_metrics", lambda *a, **k: (_ for _ in ()).throw(KeyboardInterrupt))
    args = ["evaluate", str(lst), "--checkpoint", str(ck), "--crops", "--device", "cpu", "--out", str(out)]
    r = CliRunner().invoke(app, args)
    assert r.exit_code == 130, r.output
    assert (f"interrupted while the metrics of the 12 scored file(s) were computed: the scores are saved in "
            f"{out / 'metrics.json'} without metrics; the same command with --resume computes them without scoring "
            f"again") in " ".join(r.output.split())
    saved = json.loads((out / "metrics.json").read_text())
    assert saved["in_progress"] is True and len(saved["files"]) == 12 and "frame_level" not in saved
    assert not (out / "roc.png").exists()
    monkeypatch.setattr(ev, "grouped_metrics", real_metrics)
    monkeypatch.setattr(Scanner, "_score", lambda *a, **k: pytest.fail("a saved file was scored again"))
    r = CliRunner().invoke(app, [*args, "--resume"])
    assert r.exit_code == 0, r.output
    res = json.loads((out / "metrics.json").read_text())
    assert res["in_progress"] is False and res["resumed"]["files_taken_over"] == 12
    assert res["frame_level"]["overall"]["auc"] == pytest.approx(
        roc_auc_score([f["label"] for f in saved["files"]], [f["score"] for f in saved["files"]]))


def test_stopped_while_writing_the_plots_says_what_is_missing(setup, tmp_path, monkeypatch):
    """Ctrl-C or SIGTERM after every file was scored, while the plots are drawn: exit 130, metrics.json complete and
    naming the plots not written, and an earlier run's plot at that name removed (it would pass for this run's)."""
    import forgerydet.scan.evaluate as ev

    ck, lst, rows = setup
    out = tmp_path / "ev"
    out.mkdir()
    (out / "roc.png").write_bytes(b"an earlier evaluation's plot")
    (out / "roc_groups.png").write_bytes(b"an earlier evaluation's plot")
    monkeypatch.setattr(ev, "roc_plot", lambda *a, **k: (_ for _ in ()).throw(KeyboardInterrupt))
    r = CliRunner().invoke(app, ["evaluate", str(lst), "--checkpoint", str(ck), "--crops", "--device", "cpu",
                                 "--out", str(out)])
    assert r.exit_code == 130, r.output
    flat = " ".join(r.output.split())
    assert "interrupted while writing the outputs: roc.png, roc_groups.png not written" in flat, r.output
    assert f"metrics: {out / 'metrics.json'}" in flat and "ROC:" not in flat
    res = json.loads((out / "metrics.json").read_text())
    assert len(res["files"]) == 12 and "interrupted" not in res  # every file was scored
    assert res["output_errors"] == ["interrupted while writing the outputs: roc.png, roc_groups.png not written"]
    assert sorted(f.name for f in out.iterdir()) == ["metrics.json"]


def test_an_earlier_evaluations_plots_are_gone_before_the_new_metrics_are_written(setup, tmp_path, monkeypatch):
    """Killed (kill -9, power loss) between the new metrics.json and its plots, an earlier evaluation's plots must
    not be left beside the new metrics as if they were theirs: they are removed before metrics.json is written."""
    import forgerydet.scan.evaluate as ev

    ck, lst, rows = setup
    out = tmp_path / "ev"
    out.mkdir()
    (out / "roc.png").write_bytes(b"an earlier evaluation's plot")
    (out / "roc_groups.png").write_bytes(b"an earlier evaluation's plot")
    real_write, seen = ev.write_text_atomic, []

    def write(path, text, **k):
        if Path(path).name == "metrics.json":
            seen.append(sorted(p.name for p in out.glob("*.png")))
        return real_write(path, text, **k)

    monkeypatch.setattr(ev, "write_text_atomic", write)
    ev.evaluate(lst, ck, config=ScanConfig(device="cpu"), crops=True, out_dir=out)
    assert seen == [[]]  # the one write of the final metrics, with no plot of the earlier evaluation beside it
    assert (out / "roc.png").read_bytes()[:4] == b"\x89PNG"


def test_videos_carry_their_score_interval_and_the_close_calls_are_summed_up(setup, tmp_path, astronaut):
    from forgerydet.scan.evaluate import evaluate
    from forgerydet.scan.records import close_call_summary
    from tests._faces_util import face_frames, write_video

    ck, _, _ = setup
    items = tmp_path / "videos.csv"
    write_video(tmp_path / "a.mp4", face_frames(astronaut, 5), fps=5)
    write_video(tmp_path / "b.mp4", face_frames(astronaut, 5, shift=9), fps=5)
    items.write_text("path,label\na.mp4,real\nb.mp4,fake\n")
    res = evaluate(items, ck, config=ScanConfig(num_frames=5, device="cpu"))
    for f in res["files"]:
        lo, hi = f["score_interval"]
        assert lo <= f["score"] <= hi
    assert res["close_calls"] == close_call_summary(res["files"], res["threshold"])
    assert res["close_calls"]["videos"] == 2


def test_interrupted_while_only_one_class_was_scored_says_so_not_fix_the_skipped_files(setup, tmp_path, monkeypatch,
                                                                                      ctrl_c_at):
    ck, _, rows = setup
    monkeypatch.chdir(tmp_path)  # the default --out, eval_out, is made in the current folder
    lst = tmp_path / "reals_first.csv"
    with open(lst, "w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=["path", "label", "group"])
        w.writeheader()
        w.writerows(sorted(rows, key=lambda r: r["label"] != "real"))
    ctrl_c_at(3)
    r = CliRunner().invoke(app, ["evaluate", str(lst), "--checkpoint", str(ck), "--crops", "--device", "cpu"])
    flat = " ".join(r.output.split())
    assert r.exit_code == 130 and "interrupted before any other was scored" in flat and "skipped files" not in flat


def test_real_files_the_checkpoint_trained_on_and_crops_given_for_videos_are_noted(setup, tmp_path, monkeypatch):
    from forgerydet.model.checkpoint import load_checkpoint
    from forgerydet.scan.evaluate import evaluate

    ck, lst, rows = setup
    monkeypatch.chdir(tmp_path)
    res = evaluate(lst, ck, config=ScanConfig(device="cpu"), crops=True)
    assert res["notes"] == []  # none of these faces is in its bank
    m = load_checkpoint(ck).model
    sources = ["face0.png", "face2.png"] + [f"elsewhere/f{i}.png" for i in range(6)]  # relative, as training records
    trained = save_checkpoint(tmp_path / "trained.safetensors", m, bank_sources=sources)
    res = evaluate(lst, trained, config=ScanConfig(device="cpu"), crops=True)
    assert res["notes"] == [f"2 of the real files are faces this checkpoint trained on, whose bank was filled from "
                            f"them (e.g. {tmp_path / 'face0.png'}): the nearest bank face can be the face itself, so "
                            f"they score more real than unseen faces would; evaluate on faces it never trained on"]
    r = CliRunner().invoke(app, ["evaluate", str(lst), "--checkpoint", str(trained), "--crops", "--device", "cpu",
                                 "--out", str(tmp_path / "ev")])
    assert r.exit_code == 0 and "note: 2 of the real files are faces this checkpoint trained on," in " ".join(r.stderr.split())
    assert json.loads((tmp_path / "ev" / "metrics.json").read_text())["notes"] == res["notes"]
    # from another folder the relative bank paths name other files: nothing is claimed, unless the checkpoint
    # recorded the folder they are relative to (training and rebuild-bank do since 2026-12-06); a recorded folder
    # that is not here (a checkpoint copied from another machine) falls back to the current one
    (tmp_path / "sub").mkdir()
    monkeypatch.chdir(tmp_path / "sub")
    assert evaluate(lst, trained, config=ScanConfig(device="cpu"), crops=True)["notes"] == []
    rooted = save_checkpoint(tmp_path / "rooted.safetensors", m, bank_sources=sources,
                             extra={"bank_sources_root": str(tmp_path)})
    assert evaluate(lst, rooted, config=ScanConfig(device="cpu"), crops=True)["notes"] == res["notes"]
    rebuilt = save_checkpoint(tmp_path / "rebuilt.safetensors", m, bank_sources=sources,  # by rebuild-bank: not trained on
                              extra={"bank_sources_root": str(tmp_path), "bank_rebuilt_from": "other/pairs.csv"})
    assert evaluate(lst, rebuilt, config=ScanConfig(device="cpu"), crops=True)["notes"] == [
        f"2 of the real files are faces its bank was rebuilt from (e.g. {tmp_path / 'face0.png'}): the nearest bank "
        f"face can be the face itself, so they score more real than unseen faces would; evaluate on faces it never "
        f"trained on"]

    video = tmp_path / "clip.avi"
    w = cv2.VideoWriter(str(video), cv2.VideoWriter_fourcc(*"MJPG"), 5, (64, 64))
    for _ in range(3):
        w.write(np.full((64, 64, 3), 128, np.uint8))
    w.release()
    with open(lst, "a", newline="") as f:
        f.write(f"{video},real,B\n")
    res = evaluate(lst, ck, config=ScanConfig(device="cpu"), crops=True)
    assert res["notes"] == ["--crops applies to images: the 1 video listed was scanned as `scan` does, with face "
                            "detection"]


def test_real_videos_the_checkpoint_trained_on_are_noted(setup, tmp_path, monkeypatch):
    from forgerydet.io import source_key
    from forgerydet.model.checkpoint import load_checkpoint
    from forgerydet.scan.evaluate import evaluate

    ck, lst, rows = setup
    m = load_checkpoint(ck).model
    # `pairs` cut the training faces of face2.png into crops/real/<source_key>/: the bank lists those crops
    sources = [f"pairs/crops/real/{source_key(tmp_path / 'face2.png')}/f000000_0.png", "pairs/crops/real/x-00000000/f1.png"]
    trained = save_checkpoint(tmp_path / "trained.safetensors", m, bank_sources=sources)
    res = evaluate(lst, trained, config=ScanConfig(device="cpu"), crops=True)  # (a photo here: scored as a crop)
    assert res["notes"] == [f"1 of the real files are videos or photos this checkpoint's training faces were cut from "
                            f"(e.g. {tmp_path / 'face2.png'}): it has seen those faces, so they flatter its figures; "
                            f"evaluate on sources it never trained on (FaceForensics++: pairs --splits, then evaluate "
                            f"--split test.json)"]


def test_scoring_otherwise_than_the_calibration_is_in_the_notes(setup, tmp_path):
    from forgerydet.model.checkpoint import load_checkpoint, resave_checkpoint
    from forgerydet.scan.evaluate import evaluate

    ck, lst, _ = setup
    c = load_checkpoint(ck)
    cal = {"threshold": 0.4, "temperature": 1.0}
    flip = resave_checkpoint(c, tmp_path / "flip.safetensors", c.model,
                             extra={**cal, "calibration": {**cal, "tta": "flip", "bank_contents": c.model.bank.contents_digest()}})
    res = evaluate(lst, flip, config=ScanConfig(device="cpu", tta="none"), crops=True, out_dir=tmp_path / "ev")
    assert [n.split(";")[0] for n in res["notes"]] == ["the checkpoint was calibrated with --tta flip"]
    assert json.loads((tmp_path / "ev" / "metrics.json").read_text())["notes"] == res["notes"]
    assert evaluate(lst, flip, config=ScanConfig(device="cpu", tta="none", threshold=0.5), crops=True)["notes"] == []


def test_a_listed_file_that_is_not_there_is_said_before_the_model_loads(tmp_path, monkeypatch):
    """Missing files in a list used to be found one by one while the others were scored (the README: every path
    is checked before the model loads)."""
    import forgerydet.scan.evaluate as ev
    from forgerydet.errors import ForgeryDetError

    (tmp_path / "a.png").write_bytes(b"x")
    lst = tmp_path / "list.csv"
    lst.write_text("path,label\na.png,0\ngone.png,1\n")

    def no_model(*a, **k):
        raise AssertionError("the model was loaded")

    monkeypatch.setattr(ev, "Scanner", no_model)
    with pytest.raises(ForgeryDetError) as e:
        ev.evaluate(lst, None)
    assert str(e.value).startswith(f"{lst}: 1 listed file(s) not found (e.g. {tmp_path / 'gone.png'})")
    (tmp_path / "notes.txt").write_text("x")
    (tmp_path / "sub").mkdir()
    for row in ("notes.txt", "sub"):  # found only after the model had loaded and the others were scored
        lst.write_text(f"path,label\na.png,0\n{row},1\n")
        with pytest.raises(ForgeryDetError) as e:
            ev.evaluate(lst, None)
        assert str(e.value) == (f"{lst}: 1 listed path(s) are not image or video files (e.g. {tmp_path / row}): fix "
                                f"the list")
