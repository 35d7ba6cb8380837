"""cli/evaluate.py: defaults from ScanConfig, the options reaching the library, the metrics table (a group whose
AUC is undefined shows '-'), skipped files as notes, and problems as one error line after everything was printed."""

from __future__ import annotations

import dataclasses
import re
from pathlib import Path

import pytest

from forgerydet.cli.evaluate import evaluate_cmd
from forgerydet.scan import evaluate
from forgerydet.scan.config import ScanConfig
from tests.cli._cli_util import cli, defaults, one_error

pytestmark = pytest.mark.usefixtures("stand_in_checkpoint")  # tmp_path/c.safetensors exists (conftest)


def test_defaults_are_scan_configs():
    got = defaults(evaluate_cmd)
    scan = {f.name: f.default for f in dataclasses.fields(ScanConfig) if f.default is not dataclasses.MISSING}
    assert (got["frames"], got["aggregation"], got["threshold"], got["device"]) == (
        scan["num_frames"], scan["aggregation"], scan["threshold"], scan["device"])
    assert got["crops"] is False and got["checkpoint"] is None and got["out"] == Path("eval_out")
    assert defaults(evaluate.evaluate)["crops"] is False


def _metrics(n_real: int, n_fake: int, auc: float | None, acc: float) -> dict:
    m = {"n": n_real + n_fake, "n_real": n_real, "n_fake": n_fake, "accuracy": acc}
    if auc is None:
        return {**m, "error": "only one class"}
    return {**m, "auc": auc, "ap": auc - 0.05, "eer": 1 - auc}


@pytest.fixture
def fake_evaluate(monkeypatch):
    calls = []
    result = {
        "threshold": 0.42,
        "frame_level": {"overall": {**_metrics(3, 4, 0.875, 0.75), "auc_ci": [0.5, 1.0]},
                        "celeb": _metrics(0, 2, None, 0.5)},
        "video_level": {"overall": _metrics(1, 2, 1.0, 1.0)},
        "skipped": [{"path": "/d/a.png", "error": "/d/a.png: cannot decode the image", "status": "error"},
                    {"path": "/d/b.mp4", "error": None, "status": "no_face"}],
        "metrics_json": "ev/metrics.json", "roc_png": "ev/roc.png", "output_errors": [], "problems": [],
        "checkpoint": {"calibrated_against": "this bank", "tta": "flip", "calibrated_tta": "flip", "precision": "fp32",
                       "calibrated_precision": "fp32", "device": "cpu", "checkpoint": "runs/m.safetensors",
                       "backbone": "resnet10t", "pretrained_weights": "none", "bank_entries": 64, "threshold": 0.42},
    }

    def run(list_csv, checkpoint, *, config, crops, out_dir, progress, notes=None, resume=False, say=None,
            command=None):
        calls.append({"list": list_csv, "checkpoint": checkpoint, "config": config, "crops": crops, "out": out_dir,
                      "notes": notes, "resume": resume})
        progress(1, 2, "a.png")
        return dict(result)

    monkeypatch.setattr(evaluate, "evaluate", run)
    return calls, result


def test_the_threshold_is_shown_as_scan_shows_it_never_rounded_below_itself(fake_evaluate, tmp_path):
    """--threshold 0.47005 was printed 'threshold 0.470' (below the threshold the accuracy was computed at), where
    scan, the report and `info` show it as '0.4701'."""
    _, result = fake_evaluate
    result["threshold"] = result["checkpoint"]["threshold"] = 0.47005
    r = cli("evaluate", tmp_path / "l.csv", "--checkpoint", tmp_path / "c.safetensors", "--out", tmp_path / "ev",
            "--threshold", "0.47005", "--device", "cpu")
    assert r.exit_code == 0, r.output
    assert r.stdout.splitlines()[0].endswith("threshold 0.4701") and "evaluation (threshold 0.4701)" in r.stdout


def _rows(stdout: str) -> list[list[str]]:
    """The table's body rows, cells split on the column gaps (2+ spaces; no cell here holds two spaces)."""
    lines = stdout.splitlines()
    body = lines[next(i for i, line in enumerate(lines) if line.strip().startswith("─")) + 1 :]
    body = body[: next((i for i, line in enumerate(body) if not line.strip()), len(body))]  # the caption follows
    return [re.split(r"\s{2,}", line.strip()) for line in body if line.strip().startswith(("frame", "video"))]


def test_options_reach_the_library_and_the_table_is_printed(fake_evaluate, tmp_path):
    calls, _ = fake_evaluate
    r = cli("evaluate", tmp_path / "l.csv", "--checkpoint", tmp_path / "c.safetensors", "--out", tmp_path / "ev",
            "--crops", "--frames", 6, "--aggregation", "track-max", "--threshold", "0.42", "--device", "cpu")
    assert r.exit_code == 0, r.output
    (call,) = calls
    assert (call["list"], call["checkpoint"], call["crops"], call["out"], call["resume"]) == (
        tmp_path / "l.csv", tmp_path / "c.safetensors", True, tmp_path / "ev", False)
    c = call["config"]
    assert (c.num_frames, c.aggregation, c.threshold, c.device) == (6, "track-max", 0.42, "cpu")
    assert r.stdout.splitlines()[0] == ("checkpoint runs/m.safetensors (resnet10t, weights none, bank 64 real faces); "
                                        "threshold 0.420")  # which model: a forgotten --checkpoint shows here
    assert "evaluation (threshold 0.420)" in r.stdout
    assert _rows(r.stdout) == [
        ["frame", "overall", "3", "4", "0.875", "0.50-1.00", "0.825", "0.125", "0.750"],
        ["frame", "celeb", "0", "2", "-", "-", "-", "-", "0.500"],
        ["video", "overall", "1", "2", "1.000", "-", "0.950", "0.000", "1.000"],
    ]
    assert "too few" not in r.stdout
    assert "metrics: ev/metrics.json   ROC: ev/roc.png" in r.stdout
    assert "close calls" not in r.stdout  # no video had an interval (crops)
    # a skipped file's note names it once: the path when the message does not start with it
    assert r.stderr.splitlines() == ["skipped /d/a.png: cannot decode the image", "skipped b.mp4: no_face"]


def test_paths_reach_a_log_on_one_line_not_folded(fake_evaluate, tmp_path):
    """`evaluate ... > eval.log` (80 columns): a long --out or checkpoint path was folded across lines, so the path
    in the log could not be copied or grepped whole."""
    _, result = fake_evaluate
    out = "/evaluations/" + "a_rather_long_folder_name_for_the_results_of_the_night/" * 2
    result.update(metrics_json=out + "metrics.json", roc_png=out + "roc.png")
    result["checkpoint"]["checkpoint"] = out + "the_checkpoint_that_was_evaluated.safetensors"
    r = cli("evaluate", tmp_path / "l.csv", COLUMNS="80")
    assert r.exit_code == 0, r.output
    lines = r.stdout.splitlines()
    assert lines[0].startswith(f"checkpoint {out}the_checkpoint_that_was_evaluated.safetensors (resnet10t")
    assert f"metrics: {out}metrics.json   ROC: {out}roc.png" in lines


def test_scoring_otherwise_than_the_calibration_is_noted(fake_evaluate, tmp_path):
    _, result = fake_evaluate
    result["skipped"] = []
    # the library's notes (records.settings_notes among them, kept in metrics.json) are printed
    result["notes"] = ["the checkpoint was calibrated in fp32; scored in bf16, its threshold and probabilities are "
                       "only approximately calibrated"]
    r = cli("evaluate", tmp_path / "l.csv", "--checkpoint", tmp_path / "c.safetensors", "--precision", "bf16")
    assert r.exit_code == 0, r.output
    assert " ".join(r.stderr.split()) == ("note: the checkpoint was calibrated in fp32; scored in bf16, its threshold "
                                          "and probabilities are only approximately calibrated")


def test_close_calls_get_a_line_under_the_table(fake_evaluate, tmp_path):
    _, result = fake_evaluate
    result["close_calls"] = {"videos": 40, "close_calls": 3, "accuracy_close_calls": 1 / 3, "accuracy_others": 0.918}
    r = cli("evaluate", tmp_path / "l.csv", "--checkpoint", tmp_path / "c.safetensors")
    assert r.exit_code == 0, r.output
    assert ("close calls (the threshold inside a video's score interval over resampled frames): 3 of 40 videos; "
            "accuracy 0.33 on them, 0.92 on the other 37") in r.flat


def test_the_table_fits_80_columns_with_every_figure_whole(fake_evaluate, tmp_path):
    """An 80-column terminal shows every header and every figure whole in one table where the group names fit
    (an "n (real/fake)" column was cut to "(real/fa…" there once the interval column came in); a name too long
    for its column even in two tables folds."""
    _, result = fake_evaluate
    result["frame_level"]["a_very_long_group_name_from_a_csv_file_that_no_table_holds_whole"] = {**_metrics(1000, 5000, 0.5, 0.5), "auc_ci": [0.25, 0.75]}
    result["video_level"]["[b]"] = _metrics(1, 1, 1.0, 1.0)  # a user's group name is text, not rich markup
    r = cli("evaluate", tmp_path / "l.csv", COLUMNS="80")
    assert r.exit_code == 0, r.output
    assert max(len(line) for line in r.stdout.splitlines()[1:]) <= 80  # (the checkpoint line is one line, as long as it is)
    header = next(line for line in r.stdout.splitlines() if line.strip().startswith("level"))
    assert header.split() == ["level", "group", "real", "fake", "AUC", "95", "%", "CI", "AP", "EER", "accuracy"]
    assert "…" not in r.stdout
    long_row = next(row for row in _rows(r.stdout) if row[2] == "1000")
    assert long_row[2:] == ["1000", "5000", "0.500", "0.25-0.75", "0.450", "0.500", "0.500"]
    assert ["video", "[b]", "1", "1", "1.000", "-", "0.950", "0.000", "1.000"] in _rows(r.stdout)


def test_a_narrow_terminal_gets_two_tables_with_every_figure_whole(fake_evaluate, tmp_path):
    """Below ~75 columns one table cannot hold every figure (rich cropped the accuracy column to '1.'): the
    counts, AUC and interval come in one table, AP, EER and accuracy in a second, both led by level and group."""
    _, result = fake_evaluate
    result["frame_level"]["a_very_long_group_name_from_a_csv"] = {**_metrics(1000, 5000, 0.5, 0.5), "auc_ci": [0.25, 0.75]}
    for width in (60, 50):
        r = cli("evaluate", tmp_path / "l.csv", COLUMNS=str(width))
        assert r.exit_code == 0, r.output
        lines = r.stdout.splitlines()[1:]  # the checkpoint line is one line, as long as it is
        assert max(len(line) for line in lines) <= width and "…" not in r.stdout
        headers = [line.split() for line in lines if line.strip().startswith("level")]
        assert headers == [["level", "group", "real", "fake", "AUC", "95", "%", "CI"], ["level", "group", "AP", "EER", "accuracy"]]
        tokens = r.stdout.split()
        for figure in ("1000", "5000", "0.500", "0.25-0.75", "0.450", "0.950"):
            assert figure in tokens, (width, figure)
    wide = cli("evaluate", tmp_path / "l.csv", COLUMNS="120")
    assert len([line for line in wide.stdout.splitlines() if line.strip().startswith("level")]) == 1  # one table


def test_a_very_narrow_terminal_gets_a_line_per_row_with_every_figure(fake_evaluate, tmp_path):
    """Under ~45 columns even two tables cut figures (the AUC to '0.9' on 20 columns, the rest off): each row then
    comes as one line of "HEADER figure" pairs."""
    _, result = fake_evaluate
    result["video_level"]["[b]"] = _metrics(1, 1, 1.0, 1.0)
    for width in (36, 20):
        r = cli("evaluate", tmp_path / "l.csv", COLUMNS=str(width))
        assert r.exit_code == 0, r.output
        assert "…" not in r.stdout and max(len(line.rstrip()) for line in r.stdout.splitlines()[1:-1]) <= width
        assert ("level frame, group overall, real 3, fake 4, AUC 0.875, 95 % CI 0.50-1.00, AP 0.825, EER 0.125, "
                "accuracy 0.750") in r.flat, r.stdout
        assert "level video, group [b], real 1, fake 1, AUC 1.000, 95 % CI -, AP 0.950, EER 0.000, accuracy 1.000" in r.flat


def test_80_columns_split_the_table_rather_than_fold_a_method_name(fake_evaluate, tmp_path):
    """One table leaves a group name ~9 characters on 80 columns, so 'NeuralTextures*' would be broken in two;
    two tables keep it whole. Short names keep one table."""
    _, result = fake_evaluate
    r = cli("evaluate", tmp_path / "l.csv", COLUMNS="80")
    assert len([line for line in r.stdout.splitlines() if line.strip().startswith("level")]) == 1
    result["video_level"]["NeuralTextures"] = {**_metrics(20, 20, 0.75, 0.5), "against": "real"}
    r = cli("evaluate", tmp_path / "l.csv", COLUMNS="80")
    lines = r.stdout.splitlines()[1:]  # the checkpoint line is one line, as long as it is
    assert len([line for line in lines if line.strip().startswith("level")]) == 2 and max(map(len, lines)) <= 80
    assert ["video", "NeuralTextures*", "20", "20", "0.750", "-"] in _rows(r.stdout)


def test_problems_exit_1_after_the_results(fake_evaluate, tmp_path):
    _, result = fake_evaluate
    result.update(metrics_json=None, output_errors=["cannot write ev/metrics.json: no space left on device"],
                  problems=["2 of 9 listed file(s) were skipped (see above); the metrics use the rest"])
    r = cli("evaluate", tmp_path / "l.csv")
    assert r.exit_code == 1 and "overall" in r.stdout and "ROC: ev/roc.png" in r.stdout and "metrics:" not in r.stdout
    assert [x for x in r.stderr.splitlines() if x.startswith("error:")] == [
        "error: cannot write ev/metrics.json: no space left on device; 2 of 9 listed file(s) were skipped (see above); "
        "the metrics use the rest"]


def test_bad_options_are_one_line_before_the_library_runs(fake_evaluate, tmp_path):
    calls, _ = fake_evaluate
    one_error(cli("evaluate", tmp_path / "l.csv", "--aggregation", "median"), "--aggregation 'median': use one of")
    one_error(cli("evaluate", tmp_path / "l.csv", "--threshold", "1.5"), "--threshold 1.5: must be in (0, 1)")
    one_error(cli("evaluate", tmp_path / "l.csv", "--frames", 0), "--frames 0: must be >= 1")
    assert calls == []


def test_no_checkpoint_and_no_shipped_model_is_one_line_before_the_library_runs(fake_evaluate, tmp_path, monkeypatch):
    """From a package install (`pip install .`), which holds no model: said after torch and timm had loaded."""
    import forgerydet.scan.config as config_mod

    calls, _ = fake_evaluate
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("FORGERYDET_MODEL", raising=False)
    monkeypatch.setattr(config_mod, "__file__", str(tmp_path / "site-packages" / "forgerydet" / "scan" / "config.py"))
    monkeypatch.setattr(config_mod, "install_bases", lambda: [str(tmp_path)])  # no install of this machine's holds the model
    one_error(cli("evaluate", tmp_path / "l.csv"), "no checkpoint given", "set $FORGERYDET_MODEL")
    assert calls == []


def test_a_dataset_layout_instead_of_a_list(fake_evaluate, tmp_path):
    """--real/--fake (each path a group) reach the library as items; a one-class group is marked and explained."""
    calls, result = fake_evaluate
    for name in ("Celeb-real/a.mp4", "Celeb-real/b.mp4", "YouTube-real/c.mp4", "Celeb-synthesis/d.mp4",
                 "Celeb-synthesis/e.mp4", "Celeb-synthesis/f.mp4"):
        (tmp_path / name).parent.mkdir(exist_ok=True)
        (tmp_path / name).write_bytes(b"x")
    result["video_level"]["Celeb-synthesis"] = {**_metrics(3, 3, 0.75, 0.5), "against": "real"}
    r = cli("evaluate", "--real", tmp_path / "Celeb-real", "--real", tmp_path / "YouTube-real",
            "--fake", tmp_path / "Celeb-synthesis", "--per-group", 2)
    assert r.exit_code == 0, r.output
    items = calls[0]["list"]
    d = tmp_path.name
    assert sorted((it.group, it.label) for it in items) == sorted([
        (f"{d}/Celeb-real", 0)] * 2 + [(f"{d}/YouTube-real", 0)] + [(f"{d}/Celeb-synthesis", 1)] * 2)
    assert [it.label for it in items] == [0, 1, 0, 1, 0]  # scored with the classes interleaved
    assert ["video", "Celeb-synthesis*", "3", "3", "0.750", "-", "0.700", "0.250", "0.500"] in _rows(r.stdout)
    assert ("* a group of one class, measured against every sample of the other class (with --ffpp: the originals its "
            "fakes were made on)") in " ".join(r.stdout.split())


def test_celebdf_test_list_reaches_the_library(fake_evaluate, tmp_path):
    calls, _ = fake_evaluate
    for name in ("Celeb-real/id0_0000.mp4", "Celeb-synthesis/id0_id1_0000.mp4", "YouTube-real/00001.mp4"):
        (tmp_path / name).parent.mkdir(exist_ok=True)
        (tmp_path / name).write_bytes(b"x")
    (tmp_path / "List_of_testing_videos.txt").write_text("1 Celeb-real/id0_0000.mp4\n0 Celeb-synthesis/id0_id1_0000.mp4\n")
    assert cli("evaluate", "--celebdf", tmp_path).exit_code == 0
    assert [(it.path.name, it.label) for it in calls[0]["list"]] == [("id0_0000.mp4", 0), ("id0_id1_0000.mp4", 1)]
    assert cli("evaluate", "--celebdf", tmp_path, "--celebdf-all").exit_code == 0
    assert len(calls[1]["list"]) == 3


def test_one_evaluation_set_is_asked_for(fake_evaluate, tmp_path):
    calls, _ = fake_evaluate
    one_error(cli("evaluate"), "give one evaluation set: LIST.csv, --ffpp ROOT, --dfdc FOLDER, --celebdf ROOT or --real PATH --fake PATH")
    one_error(cli("evaluate", tmp_path / "l.csv", "--ffpp", tmp_path), "give one evaluation set: LIST.csv, --ffpp ROOT, "
              "--dfdc FOLDER, --celebdf ROOT or --real PATH --fake PATH (got LIST.csv and --ffpp)")
    one_error(cli("evaluate", "--real", tmp_path), "--real and --fake go together: give at least one path of each")
    one_error(cli("evaluate", "--dfdc", tmp_path, "--split", tmp_path / "s.json"), "--compression, --methods and --split go with --ffpp")
    one_error(cli("evaluate", "--split", tmp_path / "s.json"), "--compression, --methods and --split go with --ffpp")  # not "give one set"
    one_error(cli("evaluate", tmp_path / "l.csv", "--per-group", 5), "--per-group goes with --ffpp, --dfdc, --celebdf or --real/--fake")
    one_error(cli("evaluate", "--dfdc", tmp_path), "neither metadata.json nor labels.csv found")
    one_error(cli("evaluate", "--celebdf", tmp_path), "not a Celeb-DF root (no Celeb-real, YouTube-real, Celeb-synthesis or List_of_testing_videos.txt)")
    one_error(cli("evaluate", "--dfdc", tmp_path, "--celebdf-all"), "--celebdf-all goes with --celebdf")
    assert calls == []


def test_an_interval_from_too_few_samples_is_not_shown_as_exact(fake_evaluate, tmp_path):
    _, result = fake_evaluate
    result["video_level"] = {"overall": {**_metrics(1, 1, 1.0, 1.0), "auc_ci": None}}  # one video of each class
    r = cli("evaluate", tmp_path / "l.csv")
    assert r.exit_code == 0, r.output
    assert _rows(r.stdout)[-1] == ["video", "overall", "1", "1", "1.000", "too few", "0.950", "0.000", "1.000"]
    assert ("too few: under 5 real or 5 fake files (the faces of one file count once), no interval is given"
            in " ".join(r.stdout.split()))


def test_what_reading_the_layout_found_reaches_metrics_json_and_is_said_once(fake_evaluate, tmp_path):
    calls, result = fake_evaluate
    for name in ("original_sequences/youtube/c23/videos/000.mp4", "manipulated_sequences/Deepfakes/c23/videos/000_001.mp4",
                 "manipulated_sequences/FaceSwap/c40/videos/000_001.mp4"):
        (tmp_path / name).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / name).write_bytes(b"x")
    said = "FaceSwap has no c23/videos (it has c40): not used; choose that level with --compression to use it"
    result["notes"] = [said]  # what the library returns: the layout's notes first (metrics.json keeps them)
    r = cli("evaluate", "--ffpp", tmp_path)
    assert r.exit_code == 0, r.output
    assert calls[0]["notes"] == [said]
    assert " ".join(r.stderr.split()).count(said) == 1  # said before the scoring, not again after it
    one_error(cli("evaluate", "--celebdf-all"), "--celebdf-all goes with --celebdf")
