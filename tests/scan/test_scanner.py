"""Scanning: JSON schema, the no-face path, a corrupt file inside a batch, default checkpoint lookup,
and that scanning never writes the checkpoint/bank."""

from __future__ import annotations

import hashlib
import json
import threading
import time
from pathlib import Path

import cv2
import numpy as np
import pytest
import torch
from typer.testing import CliRunner

from forgerydet.cli.app import app
from forgerydet.errors import ForgeryDetError
from forgerydet.model.checkpoint import save_checkpoint
from forgerydet.scan.html import score_text, threshold_text
from forgerydet.scan.scanner import ScanConfig, Scanner
from tests._faces_util import face_frames, write_video
from tests.helpers import tiny_model


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory) -> Path:
    torch.manual_seed(0)
    m = tiny_model(bank_size=16).eval()
    m.bank.rebuild(m.encode_keys(torch.rand(10, 3, 64, 64)), m.key_fingerprint(), source=torch.arange(10))
    path = tmp_path_factory.mktemp("ck") / "tiny.safetensors"
    return save_checkpoint(path, m, bank_sources=[f"/nowhere/real_{i}.png" for i in range(10)])


@pytest.fixture(scope="module")
def media(tmp_path_factory, astronaut) -> dict[str, Path]:
    d = tmp_path_factory.mktemp("media")
    face = write_video(d / "face.mp4", face_frames(astronaut, 6), fps=5)
    rng = np.random.default_rng(0)
    noface = write_video(d / "noface.mp4", [rng.integers(0, 255, (96, 96, 3), dtype=np.uint8) for _ in range(4)])
    fake_mp4 = d / "notes.mp4"
    fake_mp4.write_text("this is a text file, not a video\n")
    corrupt = d / "corrupt.mp4"
    corrupt.write_bytes(face.read_bytes()[:700])
    return {"face": face, "noface": noface, "text": fake_mp4, "corrupt": corrupt}


def sha(p: Path) -> str:
    return hashlib.sha256(p.read_bytes()).hexdigest()


@pytest.mark.slow
def test_scan_batch_json_schema_and_failures(checkpoint, media, tmp_path):
    before = sha(checkpoint)
    out = tmp_path / "out.json"
    csv_out = tmp_path / "out.csv"
    files = [media["text"], media["face"], media["noface"], media["corrupt"]]
    r = CliRunner().invoke(app, ["scan", *map(str, files), "--checkpoint", str(checkpoint), "--frames", "4",
                                 "--device", "cpu", "--json", str(out), "--csv", str(csv_out)])
    assert r.exit_code == 1, r.output  # some files got no verdict
    assert "Traceback" not in r.output
    assert "3 of 4 file(s) got no verdict" in r.output
    doc = json.loads(out.read_text())
    assert set(doc["settings"]) >= {"checkpoint", "checkpoint_sha256", "bank_fingerprint", "backbone", "aggregation",
                                    "threshold", "frames_per_video", "device", "seconds"}
    import torch  # the software a score's last digits depend on, for a verdict traced months later (h1's pass)
    assert doc["settings"]["software"]["torch"] == torch.__version__
    assert doc["settings"]["software"]["torch_threads"] == torch.get_num_threads()
    recs = {Path(f["path"]).name: f for f in doc["files"]}
    assert [Path(f["path"]).name for f in doc["files"]] == [p.name for p in files]  # order kept, nothing dropped
    ok = recs["face.mp4"]
    assert ok["status"] == "ok" and ok["verdict"] in ("FAKE", "REAL") and 0.0 <= ok["score"] <= 1.0
    assert ok["n_tracks"] == 1 and ok["frames_sampled"] == 4 and len(ok["faces"]) == ok["n_faces"] >= 4
    for f in ok["faces"]:
        assert 0.0 <= f["score"] <= 1.0 and len(f["box"]) == 4 and f["track_id"] == 0
        assert len(f["neighbours"]) == 2 and all(n["source"].startswith("/nowhere/real_") for n in f["neighbours"])
        assert "crop" not in f and "attention" not in f
    assert set(ok["timing"]) == {"decode_s", "detect_s", "model_s", "total_s"}
    assert ok["tracks"] == [{"track_id": 0, "score": pytest.approx(ok["score"]), "n_faces": ok["n_faces"]}]
    assert recs["noface.mp4"]["status"] == "no_face" and recs["noface.mp4"]["score"] is None
    assert recs["noface.mp4"]["frames_sampled"] == 4 and recs["noface.mp4"]["faces"] == []
    # what a finding must name: the exact file (its bytes' sha256), and the video's rate, length and frame size
    assert doc["settings"]["checkpoint_sha256"] == before  # whole, not shortened
    assert ok["sha256"] == sha(media["face"]) and recs["noface.mp4"]["sha256"] == sha(media["noface"])
    assert ok["fps"] == pytest.approx(5.0) and ok["duration_s"] == pytest.approx(6 / 5)
    cap = cv2.VideoCapture(str(media["face"]))
    assert (ok["width"], ok["height"]) == (int(cap.get(cv2.CAP_PROP_FRAME_WIDTH)), int(cap.get(cv2.CAP_PROP_FRAME_HEIGHT)))
    cap.release()
    assert all(recs[bad]["sha256"] is None and recs[bad]["fps"] is None for bad in ("notes.mp4", "corrupt.mp4"))
    assert csv_out.read_text().splitlines()[0].endswith(",sha256,reference") and sha(media["face"]) in csv_out.read_text()
    for bad in ("notes.mp4", "corrupt.mp4"):
        assert recs[bad]["status"] == "error" and recs[bad]["error"], recs[bad]
    assert csv_out.read_text().count("\n") == 5
    assert sha(checkpoint) == before  # scanning never writes the bank or the checkpoint


def test_a_video_gets_its_frame_resampling_interval_and_a_close_call_note(checkpoint, media, tmp_path, astronaut):
    from forgerydet.scan.aggregate import frame_interval

    rec = Scanner(checkpoint, ScanConfig(num_frames=6, device="cpu")).scan_file(media["face"])
    scores = [f["score"] for f in rec["faces"]]
    frames = [f["frame_index"] for f in rec["faces"]]
    lo, hi = rec["score_interval"]
    assert (lo, hi) == frame_interval(scores, "max-then-mean", frame_ids=frames, level=0.9)
    assert lo <= rec["score"] <= hi and lo < hi  # the six frames' faces differ
    assert not any(n.startswith("close call") for n in rec["notes"])  # the tiny model's threshold 0.5 is far away
    at = Scanner(checkpoint, ScanConfig(num_frames=6, device="cpu", threshold=(lo + hi) / 2)).scan_file(media["face"])
    assert tuple(at["score_interval"]) == (lo, hi)
    assert at["notes"][-1] == (f"close call: resampling its 6 frames with faces moves the score over {score_text(lo, (lo + hi) / 2)}-"
                               f"{score_text(hi, (lo + hi) / 2)} "
                               f"(90%), across the threshold {threshold_text((lo + hi) / 2)}; scan more frames (--frames 24) to "
                               f"settle it")
    png = tmp_path / "face.png"
    cv2.imwrite(str(png), cv2.cvtColor(astronaut, cv2.COLOR_RGB2BGR))
    image = Scanner(checkpoint, ScanConfig(device="cpu", threshold=0.01)).scan_file(png)
    assert image["status"] == "ok" and image["score_interval"] is None
    assert not any(n.startswith("close call") for n in image["notes"])


def test_an_image_record_has_its_size_and_hash_and_no_frame_rate(checkpoint, astronaut, tmp_path):
    path = tmp_path / "a.png"
    cv2.imwrite(str(path), cv2.cvtColor(astronaut, cv2.COLOR_RGB2BGR))
    rec = Scanner(checkpoint, ScanConfig(device="cpu")).scan_file(path)
    assert rec["status"] == "ok", rec
    assert (rec["width"], rec["height"]) == (astronaut.shape[1], astronaut.shape[0])
    assert rec["sha256"] == sha(path) and rec["fps"] is None and rec["duration_s"] is None


def test_a_model_output_of_nan_is_that_files_error_not_a_traceback(checkpoint, astronaut, tmp_path, monkeypatch):
    """An overflow in reduced precision (fp16 on a GPU) can give NaN scores; aggregation raised a ValueError."""
    path = tmp_path / "a.png"
    cv2.imwrite(str(path), cv2.cvtColor(astronaut, cv2.COLOR_RGB2BGR))
    scanner = Scanner(checkpoint, ScanConfig(device="cpu"))
    real = Scanner._score
    monkeypatch.setattr(Scanner, "_score", lambda self, crops: {**real(self, crops), "p": np.full(len(crops), np.nan)})
    rec = scanner.scan_file(path)
    assert rec["status"] == "error" and rec["verdict"] is None, rec
    assert rec["error"] == f"{path}: the model gave no number (NaN) for 1 of 1 faces in fp32: the model file may be damaged"
    scanner.precision = "bf16"
    assert scanner.scan_file(path)["error"].endswith("faces in bf16: scan it with --precision fp32")
    scanner.precision, scanner.disk_bank = "fp32", object()  # a --bank folder's NaN rows give NaN too: not only the model
    monkeypatch.setattr(Scanner, "_score", lambda self, crops: {"p": np.full(len(crops), np.nan)})
    assert scanner.scan_file(path)["error"].endswith("faces in fp32: the model file or the --bank folder may be damaged "
                                                     "(rebuild it)")


def test_a_photos_faces_are_numbered_left_to_right_and_it_is_kept_only_for_a_report(checkpoint, astronaut, tmp_path):
    from forgerydet.scan.records import json_record

    head = cv2.resize(astronaut[0:300, 100:400], (200, 200))
    canvas = np.full((260, 560, 3), 90, np.uint8)
    canvas[30:230, 20:220] = (head * 0.9).astype(np.uint8)  # the left face a little darker: detected second or first
    canvas[30:230, 340:540] = head
    path = tmp_path / "two.png"
    cv2.imwrite(str(path), cv2.cvtColor(canvas, cv2.COLOR_RGB2BGR))
    rec = Scanner(checkpoint, ScanConfig(device="cpu", keep_crops=24)).scan_file(path)
    assert rec["n_faces"] == 2, rec
    assert sorted((f["box"][0], f["track_id"]) for f in rec["faces"])[0][1] == 0  # the leftmost is face 0
    assert [f["track_id"] for f in rec["faces"]] == [0, 1]  # listed in that order: faces[k] is the note's face k
    assert rec["overview"].shape == (260, 560, 3) and "overview" not in json_record(rec)
    plain = Scanner(checkpoint, ScanConfig(device="cpu")).scan_file(path)
    assert "overview" not in plain  # no report, no picture kept


def test_scanner_keeps_crops_only_for_the_report(checkpoint, media):
    s = Scanner(checkpoint, ScanConfig(num_frames=3, device="cpu", keep_crops=2))
    rec = s.scan_file(media["face"])
    kept = [f for f in rec["faces"] if f["crop"] is not None]
    assert len(kept) == 2 and all(f["attention"].shape == (4, 4) for f in kept)
    s.config.keep_crops = 0
    assert all(f["crop"] is None for f in s.scan_file(media["face"])["faces"])


def test_empty_bank_and_missing_checkpoint_are_clear(tmp_path, monkeypatch):
    empty = save_checkpoint(tmp_path / "empty.safetensors", tiny_model())
    with pytest.raises(ForgeryDetError, match="bank is empty"):
        Scanner(empty, ScanConfig(device="cpu"))
    (tmp_path / "x.mp4").write_bytes(b"x")  # paths are checked before the checkpoint: give one that exists
    r = CliRunner().invoke(app, ["scan", str(tmp_path / "x.mp4"), "--checkpoint", str(empty)])
    assert r.exit_code == 1 and "rebuild-bank" in r.output and "Traceback" not in r.output


def test_bad_options_are_one_line(checkpoint):
    r = CliRunner().invoke(app, ["scan", "x.mp4", "--checkpoint", str(checkpoint), "--aggregation", "median"])
    assert r.exit_code == 1 and "--aggregation 'median': use one of" in r.output
    r = CliRunner().invoke(app, ["scan", "/no/such/file.mp4", "--checkpoint", str(checkpoint), "--device", "cpu"])
    assert r.exit_code == 1 and "Traceback" not in r.output


@pytest.mark.slow
@pytest.mark.shared_data
def test_scan_shared_videos_with_report_in_a_browser(shared_data, checkpoint, tmp_path):
    import re
    import subprocess

    from tests.scan.test_report import IMG_SRC, find_browser

    videos = sorted((shared_data / "videos").glob("anchor_*.mp4"))
    rep = tmp_path / "rep"
    out = tmp_path / "out.json"
    r = CliRunner().invoke(app, ["scan", *map(str, videos), "--checkpoint", str(checkpoint), "--frames", "6",
                                 "--device", "cpu", "--json", str(out), "--report", str(rep)])
    assert r.exit_code == 0, r.output
    doc = json.loads(out.read_text())
    assert len(doc["files"]) == 3 and all(0 <= f["score"] <= 1 and f["faces"] for f in doc["files"])
    browser = find_browser()
    flags = [browser, "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
             "--disable-background-networking", "--disable-component-update", "--disable-sync",
             "--disable-dev-shm-usage", f"--user-data-dir={tmp_path / 'profile'}", "--virtual-time-budget=5000"]
    index = rep / "index.html"
    dom = subprocess.run(flags + ["--dump-dom", index.resolve().as_uri()], capture_output=True, text=True, timeout=60).stdout
    n_img = len(IMG_SRC.findall(index.read_text(encoding="utf-8")))
    assert n_img > 3 * 6  # faces, heatmaps and timelines
    assert re.search(r'data-images-loaded="(\d+)"', dom).group(1) == str(n_img)
    assert re.search(r'data-broken="(\d+)"', dom).group(1) == "0"


def test_flip_tta_averages_the_logits_of_a_face_and_its_mirror_image(checkpoint, astronaut):
    crop = np.ascontiguousarray(astronaut[30:230, 140:340])  # the head, not symmetric
    mirror = np.ascontiguousarray(crop[:, ::-1])
    plain = Scanner(checkpoint, ScanConfig(device="cpu"))
    tta = Scanner(checkpoint, ScanConfig(device="cpu", tta="flip"))
    assert plain.fusion is None  # uncalibrated: p = sigmoid(logit / T)
    p1, p2 = plain._score([crop, mirror])["p"]
    t = plain.temperature
    logit = lambda p: t * np.log(p / (1 - p))  # noqa: E731
    want = 1 / (1 + np.exp(-(logit(p1) + logit(p2)) / 2 / t))
    got, got_mirror = tta._score([crop, mirror])["p"]
    np.testing.assert_allclose([got, got_mirror], [want, want], rtol=1e-4)
    assert abs(p1 - p2) > 1e-4  # the two views really differ, so the average is not either one
    assert tta.settings()["tta"] == "flip" and plain.settings()["tta"] == "none"
    with pytest.raises(ForgeryDetError, match=r"--tta 'rotate': use one of none, flip"):
        ScanConfig(tta="rotate")


def test_bf16_scores_are_near_the_fp32_ones_and_fp16_needs_a_gpu(checkpoint, astronaut):
    rng = np.random.default_rng(1)
    crops = [np.ascontiguousarray(astronaut[y : y + 180, x : x + 180]) for y, x in rng.integers(0, 300, (6, 2))]
    fp32 = Scanner(checkpoint, ScanConfig(device="cpu"))
    bf16 = Scanner(checkpoint, ScanConfig(device="cpu", precision="bf16"))
    assert (fp32.settings()["precision"], bf16.settings()["precision"]) == ("fp32", "bf16")
    assert fp32.settings()["calibrated_precision"] == bf16.settings()["calibrated_precision"] == "fp32"
    a, b = fp32._score(crops), bf16._score(crops)
    assert not np.array_equal(a["p"], b["p"])  # bf16 arithmetic really ran
    np.testing.assert_allclose(b["p"], a["p"], atol=0.05)
    assert b["sal"].dtype == b["sim"].dtype == np.float32  # the report's arrays stay fp32
    with pytest.raises(ForgeryDetError, match=r"^--precision fp16 needs a CUDA GPU, not cpu: use bf16 or fp32$"):
        Scanner(checkpoint, ScanConfig(device="cpu", precision="fp16"))
    with pytest.raises(ForgeryDetError, match=r"^--precision 'fp8': use one of fp32, bf16, fp16$"):
        ScanConfig(precision="fp8")


def test_a_calibration_in_fp16_is_scanned_in_fp32_on_a_cpu(checkpoint, tmp_path):
    from forgerydet.model.checkpoint import load_checkpoint, resave_checkpoint

    ck = load_checkpoint(checkpoint, torch.device("cpu"))
    cal = {"threshold": 0.4, "temperature": 1.0}
    for precision, want in (("fp16", "fp32"), ("bf16", "bf16"), ("fp64", None)):
        path = resave_checkpoint(ck, tmp_path / f"{precision}.safetensors", ck.model,
                                 extra={**cal, "calibration": {**cal, "precision": precision}})
        if want is None:
            with pytest.raises(ForgeryDetError, match=r"its calibration's precision 'fp64' is not one of fp32, bf16, fp16"):
                Scanner(path, ScanConfig(device="cpu"))
            continue
        s = Scanner(path, ScanConfig(device="cpu")).settings()
        assert (s["precision"], s["calibrated_precision"]) == (want, precision)


def test_the_share_of_pseudo_fakes_the_calibration_caught_is_in_the_settings(checkpoint, tmp_path):
    from forgerydet.model.checkpoint import load_checkpoint, resave_checkpoint

    ck = load_checkpoint(checkpoint, torch.device("cpu"))
    cal = {"threshold": 0.4, "temperature": 1.0}
    head = resave_checkpoint(ck, tmp_path / "head.safetensors", ck.model,
                             extra={**cal, "bank_fusion": None, "calibration": {**cal, "val_tpr": 0.25}})
    assert Scanner(head, ScanConfig(device="cpu")).settings()["calibration_caught"] == 0.25
    assert Scanner(head, ScanConfig(device="cpu", threshold=0.5)).settings()["calibration_caught"] is None
    # whose threshold the verdicts are at: the report says so (not 'chosen on held-out real faces')
    assert Scanner(head, ScanConfig(device="cpu", threshold=0.5)).settings()["threshold_given"] is True
    assert Scanner(head, ScanConfig(device="cpu")).settings()["threshold_given"] is False
    fusion = {"logit": 1.0, "similarity": -0.1, "bias": 0.0, "threshold": 0.3, "val_tpr": 0.9}
    fused = resave_checkpoint(ck, tmp_path / "fused.safetensors", ck.model,
                              extra={**cal, "bank_fusion": fusion, "calibration": {**cal, "val_tpr": 0.25}})
    assert Scanner(fused, ScanConfig(device="cpu")).settings()["calibration_caught"] == 0.9  # the threshold scans use


def test_scores_do_not_depend_on_the_batch_or_on_the_folded_batchnorms(checkpoint, astronaut):
    from forgerydet.model.calibration import sigmoid
    from forgerydet.model.checkpoint import load_checkpoint
    from forgerydet.model.inputs import resize_face, to_tensor
    rng = np.random.default_rng(0)
    crops = [np.ascontiguousarray(astronaut[y : y + 180, x : x + 180]) for y, x in rng.integers(0, 300, (9, 2))]
    default = Scanner(checkpoint, ScanConfig(device="cpu"))
    assert default.folded_batchnorms > 0
    want = default._score(crops)["p"]
    for bs in (1, 4):
        s = Scanner(checkpoint, ScanConfig(device="cpu", batch_size=bs))
        np.testing.assert_allclose(s._score(crops)["p"], want, atol=1e-6)
    # the checkpoint's model as stored (BatchNorms unfolded) gives the same probabilities
    model = load_checkpoint(checkpoint, torch.device("cpu")).model.eval()
    with torch.inference_mode():
        _, logits, _ = model.single_scores(torch.stack([to_tensor(resize_face(c, model.img_size)) for c in crops]))
    np.testing.assert_allclose(sigmoid(logits, default.temperature), want, atol=1e-5)
    assert any(isinstance(m, torch.nn.BatchNorm2d) for m in model.encoder.modules())
    assert not any(isinstance(m, torch.nn.BatchNorm2d) for m in default.model.encoder.modules())


def test_a_scanner_shared_by_two_threads_times_each_files_own_detection(checkpoint, astronaut, tmp_path, monkeypatch):
    """The detection seconds were one counter for the Scanner: a file scanned while another thread detected was
    given that thread's detection time too, and its decode_s came out below zero."""
    from forgerydet.faces.detect import FaceDetector

    path = tmp_path / "a.png"
    cv2.imwrite(str(path), cv2.cvtColor(astronaut, cv2.COLOR_RGB2BGR))
    scanner = Scanner(checkpoint, ScanConfig(device="cpu"))
    a_in, b_done = threading.Event(), threading.Event()
    detect = FaceDetector.faces

    def faces(self, frames):  # A's detection spans B's, which takes 0.3 s
        if threading.current_thread().name == "B":
            a_in.wait(10)
            time.sleep(0.3)
            b_done.set()
        else:
            a_in.set()
            b_done.wait(10)
        return detect(self, frames)

    monkeypatch.setattr(FaceDetector, "faces", faces)
    recs = {}
    threads = [threading.Thread(target=lambda: recs.update({threading.current_thread().name: scanner.scan_file(path)}),
                                name=n) for n in "AB"]
    for t in threads:
        t.start()
    for t in threads:
        t.join(30)
    assert recs["A"]["score"] == recs["B"]["score"]
    for rec in recs.values():
        timing = rec["timing"]
        assert timing["decode_s"] >= 0 and timing["detect_s"] <= timing["total_s"], timing


def test_a_scanner_used_before_a_fork_scans_in_the_forked_worker(checkpoint, astronaut, tmp_path):
    """A multiprocessing 'fork' worker given a Scanner its parent had scanned with hung for good in its first
    convolution (this torch's OpenMP thread pool does not survive a fork): a service's worker never answered."""
    import multiprocessing

    path = tmp_path / "a.png"
    cv2.imwrite(str(path), cv2.cvtColor(astronaut, cv2.COLOR_RGB2BGR))
    threads = torch.get_num_threads()
    torch.set_num_threads(2)  # the parent's pool must have more than one thread for the hang
    try:
        scanner = Scanner(checkpoint, ScanConfig(device="cpu"))
        want = scanner.scan_file(path)["score"]
        ctx = multiprocessing.get_context("fork")
        queue = ctx.Queue()
        child = ctx.Process(target=lambda: queue.put(scanner.scan_file(path)["score"]))
        child.start()
        child.join(60)
        if child.is_alive():
            child.kill()
            child.join()
            pytest.fail("the forked worker's scan hung")
        assert queue.get(timeout=10) == pytest.approx(want, abs=1e-5)
        assert torch.get_num_threads() == 2  # the parent's own threads are left alone
    finally:
        torch.set_num_threads(threads)


def test_a_scanner_on_a_gpu_in_a_forked_process_is_one_clear_error(checkpoint, tmp_path):
    """CUDA does not survive a fork: a GPU scanner in a forked worker raised torch's RuntimeError from deep inside."""
    import multiprocessing

    scanner = Scanner(checkpoint, ScanConfig(device="cpu"))
    ctx = multiprocessing.get_context("fork")
    queue = ctx.Queue()

    def child():
        scanner.device = torch.device("cuda")  # as a scanner opened on a GPU before the fork
        try:
            scanner.scan_file(tmp_path / "a.png")
            queue.put("no error")
        except ForgeryDetError as e:
            queue.put(str(e))
        except Exception as e:  # noqa: BLE001 - what the test is about
            queue.put(f"{type(e).__name__}: {e}")

    proc = ctx.Process(target=child)
    proc.start()
    proc.join(60)
    message = queue.get(timeout=10)
    assert "forked" in message and "'spawn'" in message, message


def test_a_scanner_unpickled_in_another_process_that_was_not_forked_keeps_torch_s_threads(checkpoint, astronaut,
                                                                                           tmp_path):
    """A 'spawn' worker given a pickled Scanner starts torch afresh: its threads are its own, not set to one."""
    import pickle

    path = tmp_path / "a.png"
    cv2.imwrite(str(path), cv2.cvtColor(astronaut, cv2.COLOR_RGB2BGR))
    threads = torch.get_num_threads()
    torch.set_num_threads(2)
    try:
        scanner = pickle.loads(pickle.dumps(Scanner(checkpoint, ScanConfig(device="cpu"))))
        scanner.pid = -1  # as unpickled in another process
        assert scanner.scan_file(path)["status"] in ("ok", "no_face")
        assert torch.get_num_threads() == 2
    finally:
        torch.set_num_threads(threads)


def _threads_after_a_scan(scanner, path, queue) -> None:  # a forkserver worker's target (picklable: module level)
    torch.set_num_threads(2)
    scanner.scan_file(path)
    queue.put(torch.get_num_threads())


def test_a_scanner_sent_to_a_forkserver_worker_keeps_torch_s_threads(checkpoint, astronaut, tmp_path):
    """A fork server forks its workers, but never loaded a model: a pickled Scanner sent to one was taken for a forked
    one (torch set to one thread; a GPU scanner would have been refused), where forgerydet.runtime was preloaded."""
    import multiprocessing

    path = tmp_path / "a.png"
    cv2.imwrite(str(path), cv2.cvtColor(astronaut, cv2.COLOR_RGB2BGR))
    from forgerydet.faces.stills import PRELOAD

    ctx = multiprocessing.get_context("forkserver")
    ctx.set_forkserver_preload(list(PRELOAD))  # the pool's own server (one per process): it imports forgerydet.runtime
    queue = ctx.Queue()
    proc = ctx.Process(target=_threads_after_a_scan, args=(Scanner(checkpoint, ScanConfig(device="cpu")), path, queue))
    proc.start()
    proc.join(120)
    assert queue.get(timeout=10) == 2


def test_scan_file_of_an_empty_path_says_so_not_that_the_current_folder_is_a_folder(checkpoint):
    """A service passing an empty form field got 'error .: a folder, where a video or image file is wanted' from
    scan_file (Path("") is the current folder), where scan() and the CLI say the path was empty."""
    rec = Scanner(checkpoint, ScanConfig(device="cpu")).scan_file("")
    assert rec["status"] == "error" and rec["path"] == ""
    assert rec["error"].startswith("an empty path was given"), rec["error"]
