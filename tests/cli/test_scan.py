"""cli/scan.py: option defaults from ScanConfig/DetectorConfig, the options reaching the scanner, the CSV's exact
columns, the JSON document's layout, the verdict table's rows, and a missing path skipped with the batch going on."""

from __future__ import annotations

import csv
import dataclasses
import hashlib
import json
import os
from pathlib import Path

import cv2
import numpy as np
import pytest

from forgerydet import __version__
from forgerydet.cli.scan import scan_cmd
from forgerydet.errors import ForgeryDetError
from forgerydet.faces.detect import DetectorConfig
from forgerydet.scan import records, scanner
from forgerydet.scan.config import ScanConfig
from forgerydet.scan.records import CSV_COLUMNS
from tests._faces_util import shifted, weave, with_pixel_aspect, write_video
from tests.cli._cli_util import cli, defaults, one_error

pytestmark = pytest.mark.usefixtures("stand_in_checkpoint")  # tmp_path/c.safetensors exists (conftest)


@pytest.fixture(scope="module")
def grey_png(tmp_path_factory):
    p = tmp_path_factory.mktemp("grey") / "wall.png"
    cv2.imwrite(str(p), np.full((96, 96, 3), 120, np.uint8))
    return p


def test_defaults_are_scan_config_and_detector_config():
    got = defaults(scan_cmd)
    scan = {f.name: f.default for f in dataclasses.fields(ScanConfig) if f.default is not dataclasses.MISSING}
    det = {f.name: f.default for f in dataclasses.fields(DetectorConfig)}
    assert got["frames"] == scan["num_frames"]
    for name in ("aggregation", "threshold", "device", "batch_size", "reference", "references", "bank", "deinterlace"):
        assert got[name] == scan[name], name
    assert (got["detect_side"], got["min_confidence"]) == (det["detect_side"], det["min_confidence"])


@pytest.fixture
def stop_at_scanner(monkeypatch):
    """Record the ScanConfig the command builds, then stop (no model is loaded)."""
    seen = []

    def fake(checkpoint, cfg):
        seen.append((checkpoint, cfg))
        raise ForgeryDetError("stopped by the test")

    monkeypatch.setattr(scanner, "Scanner", fake)
    return seen


def test_no_checkpoint_and_no_shipped_model_is_refused_before_the_model_loads(stop_at_scanner, face_png, tmp_path,
                                                                              monkeypatch):
    """From a package install (`pip install .`), which holds no model: one line, before torch and the Scanner."""
    import forgerydet.scan.config as config_mod

    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("FORGERYDET_MODEL", raising=False)
    monkeypatch.setattr(config_mod, "__file__", str(tmp_path / "site-packages" / "forgerydet" / "scan" / "config.py"))
    monkeypatch.setattr(config_mod, "install_bases", lambda: [str(tmp_path)])  # no install of this machine's holds the model
    one_error(cli("scan", face_png), "no checkpoint given", "set $FORGERYDET_MODEL")
    assert stop_at_scanner == []


def test_the_default_checkpoint_is_looked_up_once_and_given_to_the_scanner(stop_at_scanner, face_png, tmp_path,
                                                                           monkeypatch):
    """Without --checkpoint, `scan` looked for the default model for its output checks, again for its input checks
    and a third time in the Scanner (each a search of three folders, or a read of $FORGERYDET_MODEL's header)."""
    import forgerydet.scan.config as config_mod

    looked = []
    monkeypatch.setattr(config_mod, "find_default_checkpoint", lambda: looked.append(1) or tmp_path / "c.safetensors")
    one_error(cli("scan", face_png, "--json", tmp_path / "s.json"), "stopped by the test")
    assert stop_at_scanner[0][0] == tmp_path / "c.safetensors" and len(looked) == 1
    one_error(cli("scan", face_png, "--json", tmp_path / "c.safetensors"), "--json", "the checkpoint")  # still checked


def test_options_reach_the_scan_config(stop_at_scanner, face_png, tmp_path):
    (tmp_path / "disk").mkdir()  # the --bank folder must exist and hold a bank.json (checked before the Scanner)
    (tmp_path / "disk" / "bank.json").write_text("{}")
    meta = json.dumps({"__metadata__": {"format": "forgerydet-references", "people": json.dumps({"Ann": [0, 1]})}})
    (tmp_path / "c.refs.safetensors").write_bytes(len(meta).to_bytes(8, "little") + meta.encode())  # --reference's
    # default file must exist with Ann enrolled in its header (checked before the Scanner too)
    one_error(cli("scan", face_png, "--checkpoint", tmp_path / "c.safetensors", "--frames", 5, "--aggregation", "mean",
                  "--threshold", "0.3", "--device", "cpu", "--batch-size", 3, "--detect-side", 320,
                  "--min-confidence", "0.8", "--reference", "Ann", "--bank", tmp_path / "disk", "--no-deinterlace"),
              "stopped by the test")
    ((ck, cfg),) = stop_at_scanner
    assert ck == tmp_path / "c.safetensors"
    assert (cfg.num_frames, cfg.aggregation, cfg.threshold, cfg.device, cfg.batch_size, cfg.keep_crops) == (
        5, "mean", 0.3, "cpu", 3, 0)
    assert (cfg.detector.detect_side, cfg.detector.min_confidence, cfg.detector.size) == (320, 0.8, DetectorConfig.size)
    assert (cfg.reference, cfg.references, cfg.bank) == ("Ann", None, str(tmp_path / "disk"))
    assert cfg.deinterlace is False


def test_an_output_may_not_be_the_default_references_file(stop_at_scanner, face_png, tmp_path):
    """`--reference NAME` without --references reads CHECKPOINT.refs.safetensors: an output there replaced the
    person's enrolled faces (only a --references file given by name was checked)."""
    meta = json.dumps({"__metadata__": {"format": "forgerydet-references", "people": json.dumps({"Ann": [0, 1]})}})
    refs = tmp_path / "c.refs.safetensors"
    refs.write_bytes(len(meta).to_bytes(8, "little") + meta.encode())
    before = refs.read_bytes()
    one_error(cli("scan", face_png, "--checkpoint", tmp_path / "c.safetensors", "--reference", "Ann", "--json", refs),
              "--json", "references file")
    assert refs.read_bytes() == before and not stop_at_scanner


def test_a_report_keeps_crops_of_the_faces_it_shows(stop_at_scanner, face_png, tmp_path, monkeypatch):
    cli("scan", face_png, "--checkpoint", tmp_path / "c.safetensors", "--report", tmp_path / "rep")
    assert stop_at_scanner[0][1].keep_crops == records.MAX_FACES
    monkeypatch.setattr(records, "MAX_FACES", 5)  # read from the library, not repeated
    cli("scan", face_png, "--checkpoint", tmp_path / "c.safetensors", "--report", tmp_path / "rep")
    assert stop_at_scanner[1][1].keep_crops == 5


def test_a_report_holds_its_pictures_on_disk_not_in_memory_while_the_scan_runs(checkpoint, face_png, tmp_path,
                                                                              monkeypatch):
    # each file's shown crops and photo copy stayed in memory until the report was written: ~3 MB a phone photo or
    # video, so a --report scan of 1,500 photos held 4 GB more than one of 5
    from forgerydet.scan import report as report_module, spill

    tmp = tmp_path / "tmp"
    tmp.mkdir()
    monkeypatch.setattr(spill.tempfile, "tempdir", str(tmp))
    real_write, held = report_module.write_report, []

    def inspect(results, *args, **kwargs):
        for r in results:
            arrays = [r.get("overview")] + [f.get(k) for f in r["faces"] for k in ("crop", "attention")]
            held.extend(a.nbytes for a in arrays if isinstance(a, np.ndarray))
        assert list(tmp.iterdir()), "the pictures are in the temporary folder while the report is written"
        return real_write(results, *args, **kwargs)

    monkeypatch.setattr(report_module, "write_report", inspect)
    r = cli("scan", face_png, "--checkpoint", checkpoint, "--device", "cpu", "--report", tmp_path / "rep")
    assert r.exit_code == 0, r.output
    assert held and max(held) < spill.SPILL_BYTES  # the attention maps alone
    assert len(list((tmp_path / "rep" / "img").glob("*/file-000/*_face.png"))) == 1
    assert len(list((tmp_path / "rep" / "img").glob("*/file-000/overview.png"))) == 1
    assert list(tmp.iterdir()) == []  # removed once the report is written


def _table_rows(stdout: str) -> dict[str, list[str]]:
    rows = {}
    for line in stdout.splitlines():
        cells = [c.strip() for c in line.split("│")[1:-1]]
        if line.startswith("│") and len(cells) == 6:
            rows[cells[0]] = cells[1:]
    return rows


def test_outputs_and_table_for_a_face_a_wall_and_a_missing_file(checkpoint, face_png, grey_png, tmp_path):
    missing = tmp_path / "gone.mp4"
    r = cli("scan", face_png, grey_png, missing, "--checkpoint", checkpoint, "--device", "cpu",
            "--json", tmp_path / "s.json", "--csv", tmp_path / "s.csv")
    assert r.exit_code == 1, r.output
    assert r.stderr.splitlines() == [f"skipped: {missing}: no such file or folder", f"{grey_png}: no face found",
                                     "error: 2 of 3 file(s) got no verdict (see above)"]
    doc = json.loads((tmp_path / "s.json").read_text())
    assert list(doc) == ["forgerydet_version", "settings", "files"] and doc["forgerydet_version"] == __version__
    assert isinstance(doc["settings"]["seconds"], float) and doc["settings"]["seconds"] > 0
    assert doc["settings"]["interrupted"] is False and doc["settings"]["finished"][:4].isdigit()  # ISO 8601, local zone
    assert doc["settings"]["other_files"] == []
    assert doc["settings"]["command"].startswith("forgerydet ")  # how the outputs were made (sys.argv, shell-quoted)
    assert doc["settings"]["notes"] == []  # what the CLI notes about the model and settings (none for this one)
    recs = {r_["path"]: r_ for r_ in doc["files"]}
    assert [recs[str(p)]["status"] for p in (face_png, grey_png, missing)] == ["ok", "no_face", "error"]
    assert [r_["path"] for r_ in doc["files"]][0] == str(missing)  # bad paths come first, as they were found first
    with open(tmp_path / "s.csv", newline="", encoding="utf-8") as f:
        reader = csv.DictReader(f)
        assert reader.fieldnames == CSV_COLUMNS
        rows = {row["path"]: row for row in reader}
    face = recs[str(face_png)]
    assert rows[str(face_png)] == {
        "path": str(face_png), "status": "ok", "verdict": face["verdict"], "score": str(face["score"]),
        "threshold": str(face["threshold"]), "n_faces": "1", "n_tracks": "1", "frames_sampled": "1",
        "frames_with_face": "1", "error": "", "notes": "", "score_low": "", "score_high": "",
        "sha256": hashlib.sha256(face_png.read_bytes()).hexdigest(), "reference": ""}  # fmt: skip (an image)
    assert rows[str(grey_png)]["status"] == "no_face" and rows[str(grey_png)]["score"] == ""
    assert rows[str(missing)]["error"] == f"{missing}: no such file or folder"
    table = _table_rows(r.stdout)
    assert table["face.png"] == [face["verdict"], f"{face['score']:.3f}", "1/1", "1/1", ""]
    assert table["wall.png"] == ["none", "-", "0/0", "0/1", "no face found"]
    assert table["gone.mp4"] == ["error", "-", "0/0", "0/0", "see above"]
    assert r.stdout.splitlines()[0].startswith(f"checkpoint {checkpoint} (test_efficientnet, weights none, bank 10 real "
                                               "faces, fingerprint ")
    assert "JSON: " + str(tmp_path / "s.json") in r.stdout and "CSV: " + str(tmp_path / "s.csv") in r.stdout


def test_the_json_and_csv_remove_what_a_killed_earlier_write_left_beside_them(checkpoint, face_png, tmp_path):
    # kill -9 while an earlier scan wrote its outputs leaves its hidden temp file; the next scan's write removes it
    # (a writer still running is never touched), as a checkpoint's write does
    dead = 4_000_000  # beyond pid_max: no process has it
    left = [tmp_path / f".s.json.{dead}.ab12cd.tmp", tmp_path / f".s.csv.{dead}.ab12cd.tmp"]
    alive = tmp_path / f".s.json.{os.getppid()}.ab12cd.tmp"
    for f in left + [alive]:
        f.write_text("half a document")
    r = cli("scan", face_png, "--checkpoint", checkpoint, "--device", "cpu", "--json", tmp_path / "s.json", "--csv",
            tmp_path / "s.csv")
    assert r.exit_code == 0, r.output
    assert not any(f.exists() for f in left) and alive.exists()
    assert json.loads((tmp_path / "s.json").read_text())["files"][0]["status"] == "ok"
    # and says so, as every other output does (the first save removed them in silence)
    for f in left:
        assert (f"notice: removed 1 temp file(s) of unfinished writes that a killed earlier run left in {tmp_path} "
                f"(e.g. {f.name})") in r.flat


def test_a_folder_scan_says_which_files_it_left_out(checkpoint, face_png, tmp_path):
    folder = tmp_path / "case"
    (folder / "sub").mkdir(parents=True)
    cv2.imwrite(str(folder / "sub" / "face.tiff"), cv2.imread(str(face_png)))  # TIFF is scanned
    for name in ("IMG_1.HEIC", "sub/IMG_2.heic", "notes.txt", ".DS_Store"):
        (folder / name).write_bytes(b"x")
    r = cli("scan", folder, "--checkpoint", checkpoint, "--device", "cpu", "--json", tmp_path / "s.json")
    assert r.exit_code == 0, r.output
    assert "face.tiff" in _table_rows(r.stdout) and len(_table_rows(r.stdout)) == 1
    assert r.stderr.splitlines()[0].startswith("not scanned: the folders and patterns given hold 3 files neither "
                                               "image nor video (.heic 2, .txt 1); images are ")
    left = json.loads((tmp_path / "s.json").read_text())["settings"]["other_files"]  # and the JSON lists them
    assert sorted(Path(f).name for f in left) == ["IMG_1.HEIC", "IMG_2.heic", "notes.txt"]


def test_a_calibration_fitted_against_an_earlier_bank_is_noted_unless_a_threshold_is_given(face_png, tmp_path):
    import torch

    from forgerydet.model.checkpoint import save_checkpoint
    from tests.helpers import tiny_model

    torch.manual_seed(0)
    m = tiny_model(bank_size=16).eval()
    m.bank.rebuild(m.encode_keys(torch.rand(10, 3, 64, 64)), m.key_fingerprint(), source=torch.arange(10))
    cal = {"threshold": 0.4, "temperature": 1.0}
    sources = [f"/nowhere/real_{i}.png" for i in range(10)]
    stale = save_checkpoint(tmp_path / "stale.safetensors", m, bank_sources=sources,
                            extra={**cal, "calibration": {**cal, "bank_contents": "0123456789abcdef"}})
    fresh = save_checkpoint(tmp_path / "fresh.safetensors", m, bank_sources=sources,
                            extra={**cal, "calibration": {**cal, "bank_contents": m.bank.contents_digest()}})
    r = cli("scan", face_png, "--checkpoint", stale, "--device", "cpu", "--json", tmp_path / "s.json")
    assert r.exit_code == 0, r.output
    assert " ".join(r.stderr.split()) == ("note: the checkpoint's threshold and bank fusion were fitted against an "
                                          "earlier bank (it was rebuilt since): refit them with `forgerydet calibrate`")
    assert json.loads((tmp_path / "s.json").read_text())["settings"]["calibrated_against"] == "an earlier bank"
    for args in ([fresh], [stale, "--threshold", "0.5"]):
        r = cli("scan", face_png, "--checkpoint", *args, "--device", "cpu")
        assert r.exit_code == 0 and r.stderr == "", r.output


def _calibrated_as(path, **record):
    """A tiny checkpoint with a filled bank whose calibration record says `record` (tta, precision)."""
    import torch

    from forgerydet.model.checkpoint import save_checkpoint
    from tests.helpers import tiny_model

    torch.manual_seed(0)
    m = tiny_model(bank_size=16).eval()
    m.bank.rebuild(m.encode_keys(torch.rand(10, 3, 64, 64)), m.key_fingerprint(), source=torch.arange(10))
    cal = {"threshold": 0.4, "temperature": 1.0}
    return save_checkpoint(path, m, bank_sources=[f"/nowhere/real_{i}.png" for i in range(10)],
                           extra={**cal, "calibration": {**cal, **record, "bank_contents": m.bank.contents_digest()}})


def test_scoring_otherwise_than_the_calibration_is_noted(face_png, tmp_path):
    ck = _calibrated_as(tmp_path / "flip.safetensors", tta="flip")
    r = cli("scan", face_png, "--checkpoint", ck, "--device", "cpu", "--tta", "none")
    assert r.exit_code == 0, r.output
    assert " ".join(r.stderr.split()) == ("note: the checkpoint was calibrated with --tta flip; scored with --tta none, "
                                          "its threshold and probabilities are only approximately calibrated")
    for args in ([], ["--tta", "none", "--threshold", "0.5"]):  # the calibration's own way, or a threshold given
        r = cli("scan", face_png, "--checkpoint", ck, "--device", "cpu", *args)
        assert r.exit_code == 0 and r.stderr == "", r.output


def test_scoring_in_another_precision_than_the_calibration_is_noted(face_png, tmp_path, monkeypatch):
    from forgerydet import runtime

    ck = _calibrated_as(tmp_path / "bf16.safetensors", precision="bf16")
    monkeypatch.setattr(runtime, "native_bf16", lambda: True)
    r = cli("scan", face_png, "--checkpoint", ck, "--device", "cpu", "--precision", "fp32", "--json", tmp_path / "s.json")
    assert r.exit_code == 0, r.output
    assert " ".join(r.stderr.split()) == ("note: the checkpoint was calibrated in bf16; scored in fp32, its threshold "
                                          "and probabilities are only approximately calibrated")
    settings = json.loads((tmp_path / "s.json").read_text())["settings"]
    assert (settings["precision"], settings["calibrated_precision"]) == ("fp32", "bf16")
    for args in ([], ["--precision", "fp32", "--threshold", "0.5"]):  # the calibration's own way, or a threshold given
        r = cli("scan", face_png, "--checkpoint", ck, "--device", "cpu", *args)
        assert r.exit_code == 0 and r.stderr == "", r.output
    monkeypatch.setattr(runtime, "native_bf16", lambda: False)
    r = cli("scan", face_png, "--checkpoint", ck, "--device", "cpu")
    assert r.exit_code == 0, r.output
    assert " ".join(r.stderr.split()) == ("note: this CPU has no bf16 instructions (AVX512-BF16 or AMX): --precision "
                                          "fp32 is likely faster")
    one_error(cli("scan", face_png, "--checkpoint", ck, "--device", "cpu", "--precision", "fp16"),
              "--precision fp16 needs a CUDA GPU, not cpu: use bf16 or fp32")
    one_error(cli("scan", face_png, "--checkpoint", ck, "--precision", "half"), "--precision 'half': use one of")


def test_a_small_face_gets_a_note_in_the_table_json_and_report(checkpoint, astronaut, tmp_path):
    small = tmp_path / "small.png"  # the astronaut at half size: MTCNN's box is about 42 x 53 px
    cv2.imwrite(str(small), cv2.cvtColor(cv2.resize(astronaut, None, fx=0.5, fy=0.5, interpolation=cv2.INTER_AREA),
                                         cv2.COLOR_RGB2BGR))
    r = cli("scan", small, "--checkpoint", checkpoint, "--device", "cpu", "--json", tmp_path / "s.json",
            "--report", tmp_path / "rep")
    assert r.exit_code == 0, r.output
    (rec,) = json.loads((tmp_path / "s.json").read_text())["files"]
    x0, y0, x1, y1 = rec["faces"][0]["box"]
    side = min(x1 - x0, y1 - y0)
    assert side < records.SMALL_FACE_PX
    assert rec["notes"] == [f"small faces (median {side:.0f} px): less reliable"]
    assert "small faces" in " ".join(r.stdout.split())
    table = [line for line in r.stdout.splitlines() if line[:1] in "┏┃┡│└"]
    assert table and all(len(line) <= 80 and line[-1] in "┓┃┩│┘" for line in table)  # whole, on 80 columns
    assert "small faces" in (tmp_path / "rep" / "index.html").read_text(encoding="utf-8")


def test_an_interlaced_video_is_deinterlaced_and_noted(checkpoint, astronaut, tmp_path):
    head = cv2.resize(astronaut, (256, 256), interpolation=cv2.INTER_AREA)
    frames = [weave(shifted(head, 2 * k), shifted(head, 2 * k + 5)) for k in range(4)]
    video = write_video(tmp_path / "tv.mp4", frames)
    for flag, want in ((None, 4), ("--no-deinterlace", 0)):
        out = tmp_path / f"{flag}.json"
        r = cli("scan", video, "--checkpoint", checkpoint, "--device", "cpu", "--frames", 4, "--json", out,
                *([flag] if flag else []))
        assert r.exit_code == 0, r.output
        doc = json.loads(out.read_text())
        (rec,) = doc["files"]
        assert rec["frames_deinterlaced"] == want and doc["settings"]["deinterlace"] is (want > 0)
        assert ("interlaced: 4 of 4 frames deinterlaced" in rec["notes"]) is (want > 0)


def test_a_report_inside_the_scanned_folder_is_not_scanned_on_the_next_run(checkpoint, astronaut, tmp_path):
    """`scan photos --report photos`, run twice: the second run used to give the report's own crops, heatmaps and
    page verdicts (13 "files" by the third run); one of its pictures named on its own would be overwritten."""
    photos = tmp_path / "photos"
    photos.mkdir()
    cv2.imwrite(str(photos / "a.png"), cv2.cvtColor(cv2.resize(astronaut, (256, 256)), cv2.COLOR_RGB2BGR))
    for run in range(2):
        r = cli("scan", photos, "--checkpoint", checkpoint, "--device", "cpu", "--report", photos, "--json", tmp_path / "s.json")
        assert r.exit_code == 0, r.output
        doc = json.loads((tmp_path / "s.json").read_text())
        assert [Path(f["path"]).name for f in doc["files"]] == ["a.png"] and doc["settings"]["other_files"] == [], run
    pictures = sorted((photos / "img").rglob("*.png"))
    assert pictures
    before = pictures[0].read_bytes()
    one_error(cli("scan", pictures[0], "--checkpoint", checkpoint, "--device", "cpu", "--report", photos),
              "lies where the --report")
    assert pictures[0].read_bytes() == before


def test_a_second_scan_into_a_report_folder_being_written_is_refused(checkpoint, astronaut, tmp_path):
    """Two scans into one --report at once both exited 0, the page of one showing faces the other had written."""
    import fcntl

    photo = tmp_path / "a.png"
    cv2.imwrite(str(photo), cv2.cvtColor(cv2.resize(astronaut, (256, 256)), cv2.COLOR_RGB2BGR))
    rep = tmp_path / "rep"
    rep.mkdir()
    held = os.open(rep, os.O_RDONLY)  # as a scan writing its report holds it
    fcntl.flock(held, fcntl.LOCK_EX)
    try:
        one_error(cli("scan", photo, "--checkpoint", checkpoint, "--device", "cpu", "--report", rep),
                  f"--report {rep}: another scan is writing there now: wait for it to end, or give another --report")
        assert not list(rep.iterdir())
    finally:
        os.close(held)
    r = cli("scan", photo, "--checkpoint", checkpoint, "--device", "cpu", "--report", rep)
    assert r.exit_code == 0, r.output  # free again once the other has ended
    assert (rep / "index.html").is_file()


def test_a_cut_off_video_is_scanned_on_the_frames_it_has_and_says_so(checkpoint, astronaut, tmp_path):
    """A video cut short states its whole length; the sampled frames past the cut are skipped, counted and noted
    (they used to end the sampling without a word, the verdict resting on the first few frames)."""
    head = cv2.resize(astronaut, (256, 256), interpolation=cv2.INTER_AREA)
    whole = write_video(tmp_path / "whole.mkv", [shifted(head, k) for k in range(40)])
    cut = tmp_path / "cut.mkv"
    cut.write_bytes(whole.read_bytes()[: whole.stat().st_size // 2])
    r = cli("scan", cut, "--checkpoint", checkpoint, "--device", "cpu", "--frames", 8, "--json", tmp_path / "c.json")
    assert r.exit_code == 0, r.output
    (rec,) = json.loads((tmp_path / "c.json").read_text())["files"]
    lost = rec["frames_unreadable"]
    assert 0 < lost < 8 and rec["frames_sampled"] == 8 - lost
    assert (f"damaged video: {lost} of 8 sampled frames could not be decoded and were skipped; the verdict rests on "
            f"the other {8 - lost}") in rec["notes"]


def test_start_and_end_scan_only_that_part_of_a_long_video_and_say_so(checkpoint, astronaut, tmp_path):
    """--start/--end: the suspect minutes of a long video, sampled as a whole video would be; the JSON, the note and
    the report say which part the verdict is about; a photo beside it is read whole; bad times are one line."""
    head = cv2.resize(astronaut, (256, 256), interpolation=cv2.INTER_AREA)
    video = write_video(tmp_path / "long.mp4", [shifted(head, k % 7) for k in range(40)])  # 10 fps: 4 s
    photo = tmp_path / "a.png"
    cv2.imwrite(str(photo), cv2.cvtColor(head, cv2.COLOR_RGB2BGR))
    r = cli("scan", video, photo, "--checkpoint", checkpoint, "--device", "cpu", "--frames", 4, "--start", "0:01.5",
            "--end", "3", "--json", tmp_path / "s.json", "--report", tmp_path / "rep")
    assert r.exit_code == 0, r.output
    doc = json.loads((tmp_path / "s.json").read_text())
    rec, still = doc["files"]
    assert doc["settings"]["segment"] == "0:01.5-0:03"
    assert sorted({f["frame_index"] for f in rec["faces"]}) == [15, 20, 24, 29]  # 4 of frames 15..29
    assert "only 0:01.5-0:03 of 0:04 was sampled (--start/--end): the verdict is about that part" in rec["notes"]
    assert still["status"] == "ok" and not any("--start" in n for n in still["notes"])
    assert "videos sampled 0:01.5-0:03 only" in (tmp_path / "rep" / "index.html").read_text(encoding="utf-8")
    r = cli("scan", video, "--checkpoint", checkpoint, "--device", "cpu", "--start", "5")
    assert r.exit_code == 1 and "long.mp4: --start 0:05 is past the video's end (it is 0:04 long)" in r.flat, r.output
    one_error(cli("scan", video, "--checkpoint", checkpoint, "--start", "2", "--end", "1:00:00x"),
              "--end '1:00:00x': give a time as seconds (90.5), MM:SS or HH:MM:SS")
    one_error(cli("scan", video, "--checkpoint", checkpoint, "--start", "2", "--end", "1"),
              "--end 0:01 is not after --start 0:02: give a later --end")


def test_an_anamorphic_video_is_scanned_with_square_pixels_and_says_so(checkpoint, astronaut, tmp_path):
    squeezed = cv2.resize(astronaut, (192, 256), interpolation=cv2.INTER_AREA)  # stored at 3/4 of its width
    plain = write_video(tmp_path / "sq.mp4", [squeezed] * 3)
    video = with_pixel_aspect(plain, tmp_path / "dvd.mp4", 4, 3)
    r = cli("scan", plain, video, "--checkpoint", checkpoint, "--device", "cpu", "--frames", 2, "--json",
            tmp_path / "s.json")
    assert r.exit_code == 0, r.output
    as_stored, shown = json.loads((tmp_path / "s.json").read_text())["files"]
    assert as_stored["pixel_aspect"] == 1.0 and shown["pixel_aspect"] == pytest.approx(4 / 3)
    width = lambda rec: rec["faces"][0]["box"][2] - rec["faces"][0]["box"][0]  # noqa: E731
    assert width(shown) / width(as_stored) == pytest.approx(4 / 3, abs=0.12)  # boxes in square-pixel frames


def test_a_narrow_terminal_gets_the_notes_under_the_table_not_cut_off():
    """The note column was the first thing rich cropped below 80 columns ('small f' on 70, nothing on 60): where
    the table cannot show every note whole, notes come as one line per file under a table without them."""
    from io import StringIO

    from rich.console import Console

    from forgerydet.cli.scan import verdict_table

    files = [{"path": "/v/some_long_video_name_2024.mp4", "status": "ok", "verdict": "FAKE", "score": 0.405, "n_faces": 32,
              "n_tracks": 1, "frames_with_face": 32, "frames_sampled": 32,
              "notes": ["small faces (median 48 px): less reliable"]},
             {"path": "/v/[b].mp4", "status": "no_face", "n_faces": 0, "n_tracks": 0, "frames_with_face": 0,
              "frames_sampled": 32}]

    def printed(width):
        out = Console(width=width, file=StringIO(), color_system=None)
        out.print(verdict_table(files, width=width))
        return out.file.getvalue()

    no_notes = [{**files[0], "notes": []}]
    out = Console(width=62, file=StringIO(), color_system=None)
    out.print(verdict_table(no_notes, width=62))
    assert "note" not in out.file.getvalue()  # an empty note column is not left cut off at the edge either
    wide = printed(80)
    assert wide.splitlines()[1].count("┳") == 5 and "note" in wide  # one table, the note column in it
    for width in (70, 60):
        text = printed(width)
        assert max(len(line) for line in text.splitlines()) <= width
        assert "note" not in text.splitlines()[2] and "0.405" in text.split() and "FAKE" in text.split()
        flat = " ".join(text.split())
        assert "some_long_video_name_2024.mp4: small faces (median 48 px): less reliable" in flat
        assert "[b].mp4: no face found" in flat  # a file name is text, not rich markup


def test_a_very_narrow_terminal_gets_a_line_per_file_with_every_figure():
    """Below ~52 columns even the table without notes lost its last columns (the frames, then the score: 'verdi'
    and nothing after it on 20): each file then gets a line of its own with every figure."""
    from io import StringIO

    from rich.console import Console

    from forgerydet.cli.scan import verdict_table

    files = [{"path": "/v/some_long_video_name_2024.mp4", "status": "ok", "verdict": "FAKE", "score": 0.405,
              "n_faces": 32, "n_tracks": 1, "frames_with_face": 30, "frames_sampled": 32,
              "notes": ["small faces (median 48 px): less reliable"]},
             {"path": "/v/[b].mp4", "status": "no_face", "n_faces": 0, "n_tracks": 0, "frames_with_face": 0,
              "frames_sampled": 32}]
    for width in (50, 40, 32):  # (a name longer than the terminal is folded, as in the table)
        out = Console(width=width, file=StringIO(), color_system=None)
        out.print(verdict_table(files, width=width))
        text = out.file.getvalue()
        assert max(len(line.rstrip()) for line in text.splitlines()) <= width and "…" not in text
        flat = " ".join(text.split())
        assert ("file some_long_video_name_2024.mp4, verdict FAKE, p(fake) 0.405, faces/tracks 32/1, frames 30/32"
                in flat), (width, text)
        assert "file [b].mp4, verdict none, p(fake) -, faces/tracks 0/0, frames 0/32" in flat
        assert "some_long_video_name_2024.mp4: small faces (median 48 px): less reliable" in flat
        assert "[b].mp4: no face found" in flat


def test_files_of_one_name_in_two_folders_are_told_apart_in_the_table():
    from io import StringIO

    from rich.console import Console

    from forgerydet.cli.scan import verdict_table
    from forgerydet.scan.records import shortest_names

    assert shortest_names(["d/x/face.png", "d/y/face.png", "d/y/other.mp4"]) == ["x/face.png", "y/face.png", "other.mp4"]
    assert shortest_names(["a/b/f.png", "c/b/f.png"]) == ["a/b/f.png", "c/b/f.png"]
    assert shortest_names(["f.png", "f.png"]) == ["f.png", "f.png"]  # the same path twice: nothing tells them apart
    rec = {"status": "ok", "verdict": "REAL", "score": 0.1, "n_faces": 1, "n_tracks": 1, "frames_with_face": 1,
           "frames_sampled": 1, "notes": []}
    out = Console(width=100, file=StringIO(), color_system=None)
    out.print(verdict_table([{**rec, "path": "d/x/face.png"}, {**rec, "path": "d/y/face.png"}], width=100))
    assert "x/face.png" in out.file.getvalue() and "y/face.png" in out.file.getvalue()


def test_output_paths_reach_a_log_on_one_line_not_folded(checkpoint, face_png, tmp_path):
    """`scan ... > scan.log` or `| tee` (80 columns): "JSON:" stood alone and the path was folded over the next
    lines, so a log or a pipeline (`grep JSON:`) had no whole path; so for the checkpoint in the first line."""
    deep = tmp_path / ("a_rather_long_folder_name_for_the_results_of_the_night" * 2)
    deep.mkdir()
    r = cli("scan", face_png, "--checkpoint", checkpoint, "--device", "cpu", "--json", deep / "scan.json",
            "--csv", deep / "scan.csv", "--report", deep / "report", COLUMNS="80")
    assert r.exit_code == 0, r.output
    lines = r.stdout.splitlines()
    assert f"JSON: {deep / 'scan.json'}" in lines and f"CSV: {deep / 'scan.csv'}" in lines
    assert f"report: {deep / 'report' / 'index.html'}" in lines
    assert lines[0].startswith(f"checkpoint {checkpoint} (") and "threshold" in lines[0]


def test_json_or_csv_dash_goes_to_standard_output_alone(checkpoint, face_png, grey_png, tmp_path):
    """`--json -` (or `--csv -`): standard output holds that document and nothing else, for a pipeline to parse;
    the table, notes and file lines go to standard error."""
    r = cli("scan", face_png, grey_png, "--checkpoint", checkpoint, "--device", "cpu", "--json", "-",
            "--csv", tmp_path / "s.csv")
    assert r.exit_code == 1  # the wall has no face
    doc = json.loads(r.stdout)
    assert [Path(f["path"]).name for f in doc["files"]] == [face_png.name, grey_png.name]
    assert "forgerydet scan" in r.stderr and "CSV: " in r.stderr and "no face found" in r.stderr
    assert not (tmp_path / "-").exists() and (tmp_path / "s.csv").is_file()
    r = cli("scan", face_png, "--checkpoint", checkpoint, "--device", "cpu", "--csv", "-")
    assert r.exit_code == 0 and r.stdout.splitlines()[0].startswith("path,status,verdict,score")
    assert len(r.stdout.splitlines()) == 2 and ("REAL" in r.stderr or "FAKE" in r.stderr)
    for name in ("/dev/stdout", "/dev/fd/1", "/proc/self/fd/1"):  # standard output by another name: the same
        r = cli("scan", face_png, "--checkpoint", checkpoint, "--device", "cpu", "--json", name)
        assert r.exit_code == 0 and json.loads(r.stdout)["files"][0]["status"] == "ok"  # the JSON alone: no table
        assert "forgerydet scan" in r.stderr and "JSON: " not in r.stderr
    for other in ("-", "/dev/stdout"):
        one_error(cli("scan", face_png, "--checkpoint", checkpoint, "--json", "-", "--csv", other),
                  "--json and --csv both name standard output")
    # the next command prints its table on standard output again
    r = cli("scan", face_png, "--checkpoint", checkpoint, "--device", "cpu")
    assert "forgerydet scan" in r.stdout


def test_a_score_just_below_the_threshold_is_not_printed_as_the_threshold():
    """0.33796 at threshold 0.338 is REAL: the table shows 0.33796, not '0.338 REAL' beside 'threshold 0.338'."""
    from io import StringIO

    from rich.console import Console

    from forgerydet.cli.scan import verdict_table

    base = {"status": "ok", "n_faces": 1, "n_tracks": 1, "frames_with_face": 1, "frames_sampled": 1, "notes": [],
            "threshold": 0.338}
    files = [{**base, "path": "/v/a.mp4", "verdict": "REAL", "score": 0.33796},
             {**base, "path": "/v/b.mp4", "verdict": "FAKE", "score": 0.33812},
             {**base, "path": "/v/c.mp4", "verdict": "REAL", "score": 0.2}]
    out = Console(width=120, file=StringIO(), color_system=None)
    out.print(verdict_table(files, width=120))
    text = out.file.getvalue()
    assert "0.33796" in text and "0.338 " in text and "0.200" in text, text


class _Crash(BaseException):
    """What a crash looks like to the scan (power loss, kill -9, out of memory): nothing of the CLI's runs after it."""


def test_a_crashed_scan_is_resumed_from_its_saved_json_scanning_only_what_is_left(checkpoint, face_png, grey_png,
                                                                                  astronaut, tmp_path, monkeypatch):
    from forgerydet.scan import resume

    other = tmp_path / "face2.png"
    cv2.imwrite(str(other), cv2.cvtColor(np.ascontiguousarray(astronaut[10:250, 150:330]), cv2.COLOR_RGB2BGR))
    files = [face_png, grey_png, other]
    out = tmp_path / "s.json"
    scanned: list[str] = []
    real_scan = scanner.Scanner.scan_file

    def scan_file(self, path):
        if len(scanned) == 2 and crash:
            raise _Crash
        scanned.append(Path(path).name)
        return real_scan(self, path)

    monkeypatch.setattr(scanner.Scanner, "scan_file", scan_file)
    monkeypatch.setattr(resume.Checkpointer, "due", lambda self: True)  # saved after every file, not every minute
    crash = True
    with pytest.raises(_Crash):
        cli("scan", *files, "--checkpoint", checkpoint, "--device", "cpu", "--json", out)
    doc = json.loads(out.read_text())  # what the crash left: the JSON saved after the second file
    assert doc["settings"]["in_progress"] is True and doc["settings"]["finished"] is None
    assert [f["status"] for f in doc["files"]] == ["ok", "no_face", "not_scanned"]
    assert doc["files"][2]["error"] == "not scanned yet: the scan was running when this was saved"
    crash, scanned[:] = False, []
    r = cli("scan", *files, "--checkpoint", checkpoint, "--device", "cpu", "--json", out, "--resume")
    assert r.exit_code == 1 and scanned == ["face2.png"], r.output  # exit 1: the wall has no face, as before
    assert (f"resumed: 2 files taken over from the earlier scan in {out} (the same bytes, judged with the settings "
            f"that decide their scores now), 1 scanned") in r.flat
    after = json.loads(out.read_text())
    assert after["settings"]["in_progress"] is False and after["settings"]["resumed"] == {"from": str(out),
                                                                                          "files_taken_over": 2}
    assert [f["status"] for f in after["files"]] == ["ok", "no_face", "ok"]
    assert [f.get("resumed") for f in after["files"]] == [True, True, None]
    assert after["files"][0] == {**doc["files"][0], "resumed": True}  # the earlier scores as they were
    scanned[:] = []
    r = cli("scan", *files, "--checkpoint", checkpoint, "--device", "cpu", "--json", out, "--resume",
            "--report", tmp_path / "rep")
    assert scanned == [] and r.exit_code == 1, r.output  # all done: nothing scanned again
    page = (tmp_path / "rep" / "index.html").read_text()
    assert page.count("Taken over from the earlier scan this one resumed") == 2  # the two faces' files: no pictures


def test_a_resumed_scan_takes_over_a_renamed_file_by_its_bytes(checkpoint, face_png, tmp_path, monkeypatch):
    """No place matches (the file was renamed, or the project moved while the scan ran from its parent folder):
    the same bytes, judged with the same settings, get the same verdict."""
    out, orig = tmp_path / "s.json", tmp_path / "orig.png"
    orig.write_bytes(face_png.read_bytes())  # (face_png is shared by the module's tests)
    assert cli("scan", orig, "--checkpoint", checkpoint, "--device", "cpu", "--json", out).exit_code == 0
    before = json.loads(out.read_text())["files"][0]
    renamed = tmp_path / "renamed.png"
    os.rename(orig, renamed)
    scanned: list[str] = []
    monkeypatch.setattr(scanner.Scanner, "scan_file", lambda self, path: scanned.append(path) or pytest.fail("scanned"))
    r = cli("scan", renamed, "--checkpoint", checkpoint, "--device", "cpu", "--json", out, "--resume")
    assert r.exit_code == 0 and not scanned, r.output
    assert "1 file taken over" in r.flat and "left out" not in r.flat
    after = json.loads(out.read_text())["files"][0]
    assert after == {**before, "path": str(renamed), "resumed": True}


def test_resume_needs_a_json_file_and_the_same_deciding_settings(checkpoint, face_png, tmp_path):
    one_error(cli("scan", face_png, "--checkpoint", checkpoint, "--resume"), "--resume goes on with the scan whose "
              "--json file is given: give --json FILE")
    one_error(cli("scan", face_png, "--checkpoint", checkpoint, "--resume", "--json", "-"), "give --json FILE")
    fifo = tmp_path / "pipe"
    os.mkfifo(fifo)  # read back, it would wait for a writer
    one_error(cli("scan", face_png, "--checkpoint", checkpoint, "--resume", "--json", fifo), "not standard output, a pipe")
    out = tmp_path / "s.json"
    out.write_text("{}")
    one_error(cli("scan", face_png, "--checkpoint", checkpoint, "--resume", "--json", out),
              "is not the JSON of a forgerydet scan")
    out.unlink()  # no earlier JSON: a plain scan
    r = cli("scan", face_png, "--checkpoint", checkpoint, "--device", "cpu", "--resume", "--json", out)
    assert r.exit_code == 0 and "taken over" not in r.flat, r.output  # no earlier scan to have taken anything from
    assert f"--resume: no earlier scan at {out}: every file is scanned" in r.flat  # a typo is not rescanned in silence
    r = cli("scan", face_png, "--checkpoint", checkpoint, "--device", "cpu", "--resume", "--json", out,
            "--frames", 5, "--threshold", "0.2")
    line = one_error(r, "was scanned with other settings", "resume with its options")
    assert "--frames: frames_per_video 32 -> 5" in line and "--threshold: threshold" in line
    assert json.loads(out.read_text())["settings"].get("resumed") is not None  # the earlier JSON is left as it was


def test_a_json_into_a_pipe_is_written_once_at_the_end_not_while_scanning(checkpoint, face_png, grey_png, tmp_path,
                                                                          monkeypatch):
    """The JSON saved while a scan runs goes to files only: a pipe's reader would get two documents run together."""
    import threading

    from forgerydet.scan import resume

    monkeypatch.setattr(resume.Checkpointer, "due", lambda self: True)
    fifo = tmp_path / "pipe"
    os.mkfifo(fifo)
    got: list[dict] = []

    def read() -> None:  # every document written into the pipe, up to the final one
        while len(got) < 10 and (not got or got[-1]["settings"]["in_progress"]):
            got.append(json.loads(fifo.read_bytes()))

    reader = threading.Thread(target=read, daemon=True)
    reader.start()
    r = cli("scan", face_png, grey_png, "--checkpoint", checkpoint, "--device", "cpu", "--json", fifo)
    reader.join(timeout=60)
    assert r.exit_code == 1, r.output  # the wall has no face
    assert len(got) == 1 and got[0]["settings"]["in_progress"] is False and len(got[0]["files"]) == 2


def test_a_resumed_scan_stopped_before_the_earlier_files_keeps_their_verdicts(checkpoint, face_png, grey_png, tmp_path,
                                                                               monkeypatch):
    """New files sorted before the earlier ones, and Ctrl-C while scanning them: the earlier verdicts were written as
    not_scanned (the hostile pass lost 12 of 12)."""
    out, link = tmp_path / "s.json", tmp_path / "link.json"
    link.symlink_to(out)  # a link to a file not made yet: saved through, and resumable (it was refused)
    assert cli("scan", face_png, grey_png, "--checkpoint", checkpoint, "--device", "cpu", "--json", link).exit_code == 1
    before = json.loads(out.read_text())["files"]
    new = tmp_path / "aaa_new.png"
    new.write_bytes(face_png.read_bytes() + b"\0")  # other bytes: scanned

    def stopped(self, path):
        raise KeyboardInterrupt

    monkeypatch.setattr(scanner.Scanner, "scan_file", stopped)
    r = cli("scan", new, face_png, grey_png, "--checkpoint", checkpoint, "--device", "cpu", "--json", link, "--resume")
    one_error(r, "interrupted after 0 of 3 file(s)", "the same command with --resume goes on", code=130)
    after = json.loads(out.read_text())["files"]
    assert [f["status"] for f in after] == ["not_scanned", "ok", "no_face"]
    assert after[1:] == before  # as the earlier scan judged them, to be checked by the next --resume


def test_two_scans_into_one_csv_do_not_replace_each_others_work(checkpoint, face_png, tmp_path, monkeypatch):
    """Two scans at once with one --json and one --csv: the second wrote its JSON beside the first's (NAME.PID.json)
    yet replaced the first's CSV, leaving s.json of one scan beside s.csv of the other, the first's CSV lost in
    silence. The CSV is guarded as the JSON is: written beside, and said so."""
    out, table = tmp_path / "s.json", tmp_path / "s.csv"
    real_scan = scanner.Scanner.scan_file

    def scan_file(self, path):  # the other scan writes its JSON and CSV while this one is busy
        out.write_text('{"the other scan": true}')
        table.write_text("the other scan\n")
        return real_scan(self, path)

    monkeypatch.setattr(scanner.Scanner, "scan_file", scan_file)
    r = cli("scan", face_png, "--checkpoint", checkpoint, "--device", "cpu", "--json", out, "--csv", table)
    assert r.exit_code == 1 and "Traceback" not in r.output
    beside = tmp_path / f"s.{os.getpid()}.csv"
    assert (f"--csv: another process wrote {table} while this scan ran (two scans into one --csv?): it was left as "
            f"that process wrote it, and this scan's CSV is {beside}") in " ".join(r.stderr.split())
    assert table.read_text() == "the other scan\n"  # left as the other wrote it
    assert beside.read_text().splitlines()[1].startswith(str(face_png)) and f"CSV: {beside}" in r.flat
    assert (tmp_path / f"s.{os.getpid()}.json").is_file()  # the pair stays together: this scan's JSON and CSV


def test_two_scans_into_one_json_do_not_replace_each_others_work(checkpoint, face_png, grey_png, tmp_path, monkeypatch):
    """The second of two scans into one --json at once was overwritten by the first's later saves, in silence."""
    out = tmp_path / "s.json"
    real_scan = scanner.Scanner.scan_file

    def scan_file(self, path):  # the other scan writes its JSON while this one is busy
        out.write_text('{"the other scan": true}')
        return real_scan(self, path)

    monkeypatch.setattr(scanner.Scanner, "scan_file", scan_file)
    r = cli("scan", face_png, "--checkpoint", checkpoint, "--device", "cpu", "--json", out)
    beside = tmp_path / f"s.{os.getpid()}.json"
    line = one_error(r, f"--json: another process wrote {out} while this scan ran", f"this scan's JSON is {beside}")
    assert json.loads(out.read_text()) == {"the other scan": True}  # left as the other wrote it
    assert json.loads(beside.read_text())["files"][0]["status"] == "ok" and line
    monkeypatch.setattr(scanner.Scanner, "scan_file", real_scan)
    link = tmp_path / "link.json"
    link.symlink_to(tmp_path / "target.json")
    assert cli("scan", face_png, "--checkpoint", checkpoint, "--device", "cpu", "--json", link).exit_code == 0  # alone
