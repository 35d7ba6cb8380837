"""Hostile input (issue 13): what a new user can throw at the CLI gives one red line on stderr and a
documented exit code (1; 130 after Ctrl-C), never a traceback, and every other requested output is still
written and correct. One test (or a few) per numbered case of the issue; extend this file for new cases.

Everything is tiny and CPU-only: a 64 px test_efficientnet checkpoint built once per module, a synthetic
pairs.csv, generated images and videos. Where an OS condition cannot be made in a test (the suite may run as
root, so a chmod'ed folder stays writable; no read-only mount or full disk), the OS error is monkeypatched
at the system call the code really makes (tempfile.mkstemp, os.replace, os.access)."""

from __future__ import annotations

import csv
import errno
import json
import os
import shutil
import signal
import stat
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import cv2
import pytest
import torch
from safetensors import safe_open
from safetensors.torch import save_file
from typer.testing import CliRunner

from forgerydet.cli.app import app
from forgerydet.cli.app import cli as console_command
from forgerydet.model.checkpoint import save_checkpoint
from tests._faces_util import face_frames, head, write_video
from tests.helpers import make_synthetic_pairs, tiny_model

REPO = Path(__file__).resolve().parents[2]
TINY_TRAIN = ["--backbone", "test_efficientnet", "--pretrained", "none", "--img-size", "64", "--dim", "32",
              "--grid", "4", "--bank-size", "37", "--batch-size", "4", "--steps-per-epoch", "1", "--workers", "0",
              "--device", "cpu", "--no-augment"]


# ----------------------------------------------------------------------------- helpers and fixtures

def cli(*args: object):
    return CliRunner().invoke(app, [str(a) for a in args])


def clean(r) -> bool:
    """No exception escaped the command (CliRunner keeps a traceback out of the output) and none was printed."""
    return (r.exception is None or isinstance(r.exception, SystemExit)) and "Traceback" not in r.output


def error_lines(text: str) -> list[str]:
    return [line for line in text.splitlines() if line.startswith("error:")]


def assert_one_error(r, *needles: str, code: int = 1, stderr: str | None = None) -> str:
    """Exit `code`, no exception escaped (CliRunner keeps tracebacks out of the output), and stderr is exactly
    one line, 'error: ...', holding every needle. Returns that line."""
    err = r.stderr if stderr is None else stderr
    out = r.output if stderr is None else stderr
    assert r.exception is None or isinstance(r.exception, SystemExit), repr(r.exception)
    assert "Traceback" not in out
    assert r.exit_code == code, out
    lines = [line for line in err.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("error: "), err
    for n in needles:
        assert n in lines[0], (n, lines[0])
    return lines[0]


@pytest.fixture(scope="module")
def ck(checkpoint: Path) -> Path:
    """The tiny filled checkpoint of tests/cli/conftest.py (face_png comes from there too)."""
    return checkpoint


@pytest.fixture(scope="module")
def pairs(tmp_path_factory) -> Path:
    return make_synthetic_pairs(tmp_path_factory.mktemp("pairs"), groups=4, frames=2, val_groups=2)


@pytest.fixture(scope="module")
def run1(tmp_path_factory, pairs) -> Path:
    """A finished one-epoch training run (OUT folder)."""
    out = tmp_path_factory.mktemp("runs") / "run1"
    r = cli("train", "--pairs", pairs, "--out", out, "--epochs", 1, *TINY_TRAIN)
    assert r.exit_code == 0, r.output
    return out


def put(folder: Path, name: bytes, data: bytes) -> Path:
    """Write a file whose name is raw bytes; return it as Python sees it (surrogate-escaped str)."""
    raw = os.path.join(os.fsencode(folder), name)
    with open(raw, "wb") as f:
        f.write(data)
    return Path(os.fsdecode(raw))


def edit_meta(src: Path, dst: Path, **changes: str) -> Path:
    """Copy a checkpoint with metadata fields changed by hand (as a user with a text editor would)."""
    with safe_open(str(src), framework="pt") as f:
        meta = dict(f.metadata())
        tensors = {k: f.get_tensor(k) for k in f.keys()}
    meta.update(changes)
    save_file(tensors, str(dst), metadata=meta)
    return dst


def fail_syscall(monkeypatch, module, name: str, err: int, when) -> None:
    """Make module.name raise OSError(err) when when(*args) is true (a read-only mount, a full disk)."""
    real = getattr(module, name)

    def fake(*a, **k):
        if when(*a, **k):
            raise OSError(err, os.strerror(err))
        return real(*a, **k)

    monkeypatch.setattr(module, name, fake)


def under(folder: Path):
    return lambda *a, **k: str(k.get("dir", "")).startswith(str(folder))


# ----------------------------------------------------------------------------- 1. file names that are not UTF-8

@pytest.mark.skipif(sys.platform != "linux", reason="file names are bytes on Linux")
def test_1_non_utf8_names_scan_in_a_subprocess(ck, astronaut, tmp_path):
    """OpenCV 5 segfaulted on such a name; one bad file must not kill the batch, and the names must reach
    JSON, CSV, HTML and the table losslessly (a byte that is not UTF-8 is written \\xNN)."""
    d = tmp_path / "in"
    d.mkdir()
    put(d, b"bad\xff.png", cv2.imencode(".png", cv2.cvtColor(head(astronaut), cv2.COLOR_RGB2BGR))[1].tobytes())
    video = write_video(tmp_path / "v.mp4", face_frames(astronaut, 3), fps=5)
    put(d, b"clip\xfe.mp4", video.read_bytes())
    put(d, b"cut\xfd.png", b"\x89PNG\r\n\x1a\n" + b"\0" * 40)  # corrupt: one per-file line, the batch goes on
    out = tmp_path / "out"
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(REPO / "src"), os.environ.get("PYTHONPATH", "")])}
    p = subprocess.run([sys.executable, "-m", "forgerydet", "scan", str(d), "--checkpoint", str(ck), "--device", "cpu",
                        "--frames", "2", "--json", str(out / "s.json"), "--csv", str(out / "s.csv"),
                        "--report", str(out / "rep")], capture_output=True, text=True, env=env, timeout=300)
    assert p.returncode == 1, p.stderr  # one file got no verdict
    assert "Traceback" not in p.stderr and "WARN" not in p.stderr and "libpng" not in p.stderr
    assert p.stderr.splitlines() == [f"{d}/cut\\xfd.png: cannot decode the image (corrupt or not an image file)",
                                     "error: 1 of 3 file(s) got no verdict (see above)"]
    doc = json.loads((out / "s.json").read_text(encoding="utf-8"))
    recs = {Path(f["path"]).name: f for f in doc["files"]}
    assert set(recs) == {"bad\\xff.png", "clip\\xfe.mp4", "cut\\xfd.png"}
    assert recs["bad\\xff.png"]["status"] == "ok" and recs["clip\\xfe.mp4"]["status"] == "ok"
    assert recs["clip\\xfe.mp4"]["kind"] == "video" and recs["clip\\xfe.mp4"]["frames_sampled"] == 2
    assert recs["cut\\xfd.png"]["status"] == "error"
    # the stored spelling gives the file back: decode the \xNN escapes to bytes
    back = os.fsdecode(recs["bad\\xff.png"]["path"].encode("ascii").decode("unicode_escape").encode("latin-1"))
    assert Path(back).is_file()
    with open(out / "s.csv", newline="", encoding="utf-8") as f:
        rows = list(csv.DictReader(f))
    assert sorted(Path(r["path"]).name for r in rows) == sorted(recs)
    page = (out / "rep" / "index.html").read_text(encoding="utf-8")
    assert "bad\\xff.png" in page and "clip\\xfe.mp4" in page
    assert "bad\\xff.png" in p.stdout  # the table


def test_1_non_utf8_names_extract(astronaut, tmp_path):
    d = tmp_path / "in"
    d.mkdir()
    put(d, b"bad\xff.png", cv2.imencode(".png", cv2.cvtColor(head(astronaut), cv2.COLOR_RGB2BGR))[1].tobytes())
    put(d, b"fine.png", cv2.imencode(".png", cv2.cvtColor(head(astronaut), cv2.COLOR_RGB2BGR))[1].tobytes())
    r = cli("extract", d, "--out", tmp_path / "faces", "--size", 64)
    assert r.exit_code == 0 and r.exception is None, r.output
    with open(tmp_path / "faces" / "faces.csv", newline="", encoding="utf-8") as f:
        rows = list(csv.DictReader(f))
    assert sorted(Path(r["source"]).name for r in rows) == ["bad\\xff.png", "fine.png"]
    assert all(r["status"] == "ok" and (tmp_path / "faces" / r["crop"]).is_file() for r in rows)


# ----------------------------------------------------------------------------- 2-4. outputs checked before the work

def test_2_train_out_is_a_file_refused_before_training(pairs, tmp_path):
    f = tmp_path / "taken"
    f.write_text("x")
    r = cli("train", "--pairs", pairs, "--out", f, "--epochs", 1, *TINY_TRAIN)
    assert_one_error(r, f"--out {f}", f"{f} is a file where a folder is needed")
    assert "epoch" not in r.stdout and f.read_text() == "x"


def test_3_scan_report_on_a_file_and_json_below_a_file(ck, face_png, tmp_path):
    f = tmp_path / "file.txt"
    f.write_text("keep")
    r = cli("scan", face_png, "--checkpoint", ck, "--device", "cpu", "--report", f)
    assert_one_error(r, f"--report {f}", f"{f} is a file where a folder is needed")
    r = cli("scan", face_png, "--checkpoint", ck, "--device", "cpu", "--json", f / "x.json")
    assert_one_error(r, f"--json {f / 'x.json'}", f"{f} is a file where a folder is needed")
    assert "checkpoint" not in r.stdout  # refused before the model loaded
    assert f.read_text() == "keep"


def test_3_a_file_named_like_a_folder_made_inside_the_output_is_refused_before_the_work(ck, face_png, tmp_path):
    """A file `crops` in extract's --out, or `img` in a report folder, was met only when the first crop or picture
    was written: after the whole detection or scan, and extract's line then ended "with space freed, the same
    command goes on". Now refused first, in the words a file in the way gets everywhere."""
    for command, option, name in [("extract", "--out", "crops"), ("extract", "--out", "parts"),
                                  ("pairs", "--out", "crops"), ("scan", "--report", "img")]:
        out = tmp_path / f"{command}-{name}"
        out.mkdir()
        (out / name).write_text("mine")
        extra = ["--checkpoint", ck, "--device", "cpu"] if command == "scan" else []
        args = ["pairs", "--self-blend", face_png] if command == "pairs" else [command, face_png]
        r = cli(*args, option, out, *extra)
        assert_one_error(r, f"{option} {out}: {out / name} is a file where a folder is needed (move it away, or give "
                            f"another path)")
        assert "checkpoint" not in r.stdout and "files" not in r.stdout  # before the model, before the detection
        assert [p.name for p in out.iterdir()] == [name] and (out / name).read_text() == "mine"


def test_3_a_folder_named_like_a_file_the_command_writes_is_refused_before_the_work(pairs, face_png, tmp_path):
    """`train --overwrite` into a run folder holding a folder last.safetensors trained a whole epoch, then said
    "cannot write OUT/last.safetensors: Is a directory; ... OUT still holds the run --overwrite was to replace, which
    `--resume` would go on with" (there was none); `pairs --overwrite` with a folder pairs.csv detected every face."""
    for args, out, name in [(["train", "--pairs", pairs, "--epochs", 1, *TINY_TRAIN, "--overwrite"], "run",
                             "last.safetensors"),
                            (["train", "--pairs", pairs, "--epochs", 1, *TINY_TRAIN], "run2", "metrics.jsonl"),
                            (["pairs", "--self-blend", face_png, "--overwrite"], "pairs", "pairs.csv")]:
        (tmp_path / out / name).mkdir(parents=True)
        r = cli(*args, "--out", tmp_path / out)
        assert_one_error(r, f"--out {tmp_path / out}: {tmp_path / out / name} is a folder where a file is needed "
                            f"(move it away, or give another path)")
        assert "epoch" not in r.stdout and "files" not in r.stdout
        assert [p.name for p in (tmp_path / out).iterdir()] == [name]


def test_4_unwritable_json_is_named_and_refused_before_the_scan(ck, face_png, tmp_path):
    r = cli("scan", face_png, "--checkpoint", ck, "--device", "cpu", "--json", "/proc/x.json", "--csv", tmp_path / "a.csv")
    line = assert_one_error(r, "--json /proc/x.json", "cannot write there")
    assert ".tmp" not in line and not (tmp_path / "a.csv").exists()


def test_4_json_on_a_full_standard_output_names_it(ck, face_png, tmp_path, monkeypatch):
    # `scan ... --json - > /dev/full` said "--json: cannot write no space left on device": no output named
    from forgerydet.cli.stdout import PipeSafeStdout

    def full(self, text):
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
    monkeypatch.setattr(PipeSafeStdout, "write_utf8", full)
    r = cli("scan", face_png, "--checkpoint", ck, "--device", "cpu", "--json", "-", "--csv", tmp_path / "a.csv")
    assert clean(r) and r.exit_code == 1  # the table is on standard error too, with --json -
    assert error_lines(r.stderr) == ["error: --json: cannot write standard output: no space left on device: free some "
                                     "space or write elsewhere"]
    assert (tmp_path / "a.csv").is_file()


def test_4_json_failing_at_write_time_keeps_the_other_outputs(ck, face_png, tmp_path, monkeypatch):
    js = tmp_path / "x.json"
    fail_syscall(monkeypatch, os, "replace", errno.ENOSPC, lambda src, dst: str(dst) == str(js))
    r = cli("scan", face_png, "--checkpoint", ck, "--device", "cpu", "--json", js, "--csv", tmp_path / "a.csv",
            "--report", tmp_path / "rep")
    assert_one_error(r, f"--json: cannot write {js}: no space left on device")
    assert not js.exists() and not [p for p in tmp_path.iterdir() if p.name.startswith(".")]  # no temp left
    rows = list(csv.DictReader(open(tmp_path / "a.csv", newline="", encoding="utf-8")))
    assert len(rows) == 1 and rows[0]["status"] == "ok" and 0 <= float(rows[0]["score"]) <= 1
    assert (tmp_path / "rep" / "index.html").is_file()


# ----------------------------------------------------------------------------- 5. read-only file system, full disk

@pytest.mark.parametrize("command", ["scan-json", "scan-report", "evaluate", "extract", "pairs"])
def test_5_read_only_output_refused_before_work(command, ck, face_png, tmp_path, monkeypatch):
    ro = tmp_path / "ro"
    ro.mkdir()
    fail_syscall(monkeypatch, tempfile, "mkstemp", errno.EROFS, under(ro))
    lst = tmp_path / "list.csv"
    lst.write_text(f"path,label\n{face_png},0\n{face_png},1\n")
    args = {
        "scan-json": ["scan", face_png, "--checkpoint", ck, "--device", "cpu", "--json", ro / "s.json"],
        "scan-report": ["scan", face_png, "--checkpoint", ck, "--device", "cpu", "--report", ro / "rep"],
        "evaluate": ["evaluate", lst, "--checkpoint", ck, "--device", "cpu", "--crops", "--out", ro / "ev"],
        "extract": ["extract", face_png, "--out", ro / "faces"],
        "pairs": ["pairs", "--self-blend", face_png, "--out", ro / "p"],
    }[command]
    t0 = time.perf_counter()
    r = cli(*args)
    assert_one_error(r, str(ro), "read-only file system")
    assert time.perf_counter() - t0 < 5 and list(ro.iterdir()) == []  # before any work, nothing half-written


def test_5_full_disk_after_evaluation_keeps_the_metrics(ck, face_png, tmp_path, monkeypatch):
    twin = shutil.copy(face_png, tmp_path / "twin.png")  # a file is listed once, with one label
    lst = tmp_path / "list.csv"
    lst.write_text(f"path,label\n{face_png},0\n{twin},1\n")
    ev = tmp_path / "ev"
    fail_syscall(monkeypatch, os, "replace", errno.ENOSPC, lambda src, dst: Path(dst).name == "metrics.json")
    r = cli("evaluate", lst, "--checkpoint", ck, "--device", "cpu", "--crops", "--out", ev)
    assert_one_error(r, f"cannot write {ev / 'metrics.json'}: no space left on device")
    assert "overall" in r.stdout and "ROC:" in r.stdout  # the metrics table was printed, the plot written
    assert (ev / "roc.png").is_file() and not (ev / "metrics.json").exists()


def test_5_any_os_error_is_one_line():
    import typer

    from forgerydet.cli.common import user_errors

    with pytest.raises(typer.Exit) as e:
        with user_errors():
            raise OSError(errno.EIO, "Input/output error", "/data/x.mp4")
    assert e.value.exit_code == 1


# ----------------------------------------------------------------------------- 6-8. values checked up front

@pytest.mark.parametrize("bs", ["0", "-1"])
def test_6_scan_batch_size(bs, ck, face_png):
    assert_one_error(cli("scan", face_png, "--checkpoint", ck, "--device", "cpu", "--batch-size", bs),
                     f"--batch-size {bs}: must be >= 1")


def test_6_rebuild_bank_batch_size(ck, pairs, tmp_path):
    assert_one_error(cli("rebuild-bank", "--checkpoint", ck, "--pairs", pairs, "--batch-size", 0, "--out",
                         tmp_path / "o.safetensors"), "--batch-size 0: must be >= 1")


def test_7_train_bogus_device(pairs, tmp_path):
    assert_one_error(cli("train", "--pairs", pairs, "--out", tmp_path / "r", *TINY_TRAIN, "--device", "bogus"),
                     "--device 'bogus': use 'auto', 'cpu', 'cuda' or 'cuda:N'")


def test_8_grid_dim_and_memory_bounded_before_training(pairs, tmp_path):
    base = ["train", "--pairs", pairs, "--out", tmp_path / "r", *TINY_TRAIN]
    # test_efficientnet at 64 px gives a 2x2 feature map: at most a 4x4 grid of tokens
    assert_one_error(cli(*base, "--grid", 5), "--grid 5: more than the backbone can fill", "use --grid 4 or less")
    assert_one_error(cli(*base, "--dim", 512), "--dim 512: more than the 256 channels")
    line = assert_one_error(cli(*base, "--bank-size", 10**10), "this configuration needs at least", "GiB free")
    assert "--bank-size" in line
    assert not (tmp_path / "r" / "last.safetensors").exists()


def test_8_every_commands_option_errors_share_one_style(ck, face_png, pairs, tmp_path):
    """A bad option value was said five ways: "--frames must be >= 1, got 0", "--detect-side 10: must be in [64,
    8192]", "unknown aggregation 'foo'" (no option), "invalid training option --epochs 0", "/tmp holds no finished
    disk bank" (no --bank), "device 'x' is not valid". Now each is "--OPTION VALUE: what is wrong (what to give)"."""
    scan, out = ["scan", face_png, "--checkpoint", ck, "--device", "cpu"], tmp_path / "o.safetensors"
    train = ["train", "--pairs", pairs, "--out", tmp_path / "r", *TINY_TRAIN]
    for args, said in [
        ([*scan, "--frames", 0], "--frames 0: must be >= 1"),
        ([*scan, "--aggregation", "foo"], "--aggregation 'foo': use one of mean, max-then-mean, confident, track-max"),
        ([*scan, "--threshold", 1.5], "--threshold 1.5: must be in (0, 1)"),
        ([*scan, "--detect-side", 10], "--detect-side 10: must be in [64, 8192]"),
        ([*scan, "--tta", "foo"], "--tta 'foo': use one of none, flip"),
        ([*scan, "--bank", tmp_path], f"--bank {tmp_path}: holds no finished disk bank (no bank.json)"),
        (["scan", face_png, "--checkpoint", ck, "--device", "gpu0"], "--device 'gpu0': use 'auto', 'cpu'"),
        ([*train, "--epochs", 0], "--epochs 0: use a whole number >= 1"),
        ([*train, "--backbone", "nope"], "--backbone 'nope': must be a timm model name"),
        ([*train, "--augment", "--aug", "noise_p=2"], "--aug noise_p=2.0: must be in [0, 1]"),
        (["rebuild-bank", "--checkpoint", ck, "--pairs", pairs, "--out", out, "--select", "x"],
         "--select 'x': use one of coreset, random"),
        (["calibrate", "--checkpoint", ck, "--pairs", pairs, "--out", out, "--fpr", 0], "--fpr 0.0: use a rate in (0, 1)"),
        (["enroll", "bob", face_png, "--checkpoint", ck, "--wait", -1], "--wait -1.0: must be a number of seconds >= 0"),
        (["enroll", "bob", face_png, "--checkpoint", ck, "--face", "x"], "--face 'x': use one of main-track"),
    ]:
        line = assert_one_error(cli(*args), said)
        assert line.startswith(f"error: {said}"), line


# ----------------------------------------------------------------------------- 9. resume

def test_9_resume_refuses_conflicting_options_and_a_finished_run(run1, pairs):
    assert_one_error(cli("train", "--out", run1, "--resume"), "has finished 1 epoch(s)", "--epochs N with N > 1")
    assert_one_error(cli("train", "--out", run1, "--resume", "--backbone", "resnet18", "--pairs", pairs),
                     "--backbone resnet18 (the run has test_efficientnet)", "train into a new --out")
    assert_one_error(cli("train", "--out", run1, "--resume", "--epochs", 1), "--epochs 1 leaves nothing to train")


def test_9_resume_extends_a_finished_run_with_more_epochs(run1, tmp_path):
    run = tmp_path / "run"
    shutil.copytree(run1, run)
    r = cli("train", "--out", run, "--resume", "--epochs", 2, "--device", "cpu", "--workers", 0)
    assert r.exit_code == 0 and r.exception is None, r.output
    assert "epochs 2..2" in r.stdout and "epoch 2:" in r.stdout
    lines = (run / "metrics.jsonl").read_text().splitlines()
    assert [json.loads(x)["epoch"] for x in lines] == [1, 2]


# ----------------------------------------------------------------------------- 10. evaluate's exit code

def test_10_evaluate_exits_1_when_files_are_skipped_and_still_writes(ck, face_png, tmp_path):
    bad = tmp_path / "bad.png"
    bad.write_bytes(b"not an image")
    lst = tmp_path / "list.csv"
    twin = shutil.copy(face_png, tmp_path / "twin.png")
    lst.write_text(f"path,label\n{face_png},0\n{twin},1\n{bad},1\n")
    r = cli("evaluate", lst, "--checkpoint", ck, "--device", "cpu", "--crops", "--out", tmp_path / "ev")
    assert r.exit_code == 1 and clean(r)
    assert error_lines(r.stderr) == ["error: 1 of 3 listed file(s) were skipped (see above); the metrics use the rest"]
    assert [x for x in r.stderr.splitlines() if not x.startswith("error:")] == [
        f"skipped {bad}: cannot decode the image (corrupt or not an image file)"]
    res = json.loads((tmp_path / "ev" / "metrics.json").read_text())
    assert len(res["files"]) == 2 and res["skipped"][0]["path"] == str(bad)


def test_10_evaluate_exits_1_when_skipping_leaves_one_class(ck, face_png, tmp_path):
    bad = tmp_path / "bad.png"
    bad.write_bytes(b"not an image")
    lst = tmp_path / "list.csv"
    lst.write_text(f"path,label\n{face_png},0\n{bad},1\n")
    r = cli("evaluate", lst, "--checkpoint", ck, "--device", "cpu", "--crops", "--out", tmp_path / "ev")
    assert r.exit_code == 1 and clean(r)
    (line,) = error_lines(r.stderr)
    assert "only real files got a score, so AUC, AP and EER are undefined" in line
    assert (tmp_path / "ev" / "metrics.json").is_file()


# ----------------------------------------------------------------------------- 11-12. checkpoint writes

def test_11_killed_checkpoint_write_leaves_one_temp_that_the_next_write_removes(tmp_path, monkeypatch):
    target = tmp_path / "last.safetensors"
    code = ("import sys, time; from forgerydet.io import atomic_write\n"
            "def w(tmp):\n    tmp.write_bytes(b'x' * 1000); time.sleep(60)\n"
            f"atomic_write({str(target)!r}, w, durable=True)\n")
    env = {**os.environ, "PYTHONPATH": str(REPO / "src")}
    p = subprocess.Popen([sys.executable, "-c", code], env=env)
    try:
        deadline = time.time() + 30
        while time.time() < deadline and not list(tmp_path.glob(".last.safetensors.*")):
            time.sleep(0.05)
    finally:
        p.send_signal(signal.SIGKILL)
        p.wait()
    assert len(list(tmp_path.glob(".last.safetensors.*"))) == 1  # the kill left its temp file
    temps_at_rename = []
    real_replace = os.replace

    def spy(src, dst):
        temps_at_rename.append(sorted(x.name for x in tmp_path.iterdir() if x.name.startswith(".")))
        return real_replace(src, dst)

    monkeypatch.setattr(os, "replace", spy)
    save_checkpoint(target, tiny_model())
    assert len(temps_at_rename) == 1 and len(temps_at_rename[0]) == 1  # one temp file for the whole write
    assert sorted(x.name for x in tmp_path.iterdir()) == ["last.safetensors"]  # the killed writer's is gone


@pytest.mark.parametrize("mask,mode", [(0o022, 0o644), (0o077, 0o600)])
def test_12_outputs_respect_the_umask(mask, mode, ck, face_png, tmp_path):
    old = os.umask(mask)
    try:
        r = cli("scan", face_png, "--checkpoint", ck, "--device", "cpu", "--json", tmp_path / "s.json",
                "--csv", tmp_path / "s.csv", "--report", tmp_path / "rep")
        save_checkpoint(tmp_path / "m.safetensors", tiny_model())
    finally:
        os.umask(old)
    assert r.exit_code == 0, r.output
    for p in ("s.json", "s.csv", "rep/index.html", "m.safetensors"):
        assert stat.S_IMODE((tmp_path / p).stat().st_mode) == mode, p


# ----------------------------------------------------------------------------- 13. Ctrl-C keeps the scanned files

def test_13_ctrl_c_writes_what_was_scanned(ck, face_png, tmp_path, monkeypatch):
    from forgerydet.scan.scanner import Scanner

    files = []
    for i in range(3):
        files.append(tmp_path / f"f{i}.png")
        shutil.copy(face_png, files[-1])
    real = Scanner.scan_file
    calls = []

    def interrupted_on_second(self, path):
        calls.append(path)
        if len(calls) == 2:
            raise KeyboardInterrupt
        return real(self, path)

    monkeypatch.setattr(Scanner, "scan_file", interrupted_on_second)
    r = cli("scan", *files, "--checkpoint", ck, "--device", "cpu", "--json", tmp_path / "s.json", "--csv", tmp_path / "s.csv")
    assert_one_error(r, "interrupted after 1 of 3 file(s)", "rest marked not_scanned", code=130)
    doc = json.loads((tmp_path / "s.json").read_text())
    assert [f["status"] for f in doc["files"]] == ["ok", "not_scanned", "not_scanned"]
    assert [Path(f["path"]).name for f in doc["files"]] == ["f0.png", "f1.png", "f2.png"]
    rows = list(csv.DictReader(open(tmp_path / "s.csv", newline="", encoding="utf-8")))
    assert [x["status"] for x in rows] == ["ok", "not_scanned", "not_scanned"]
    # stopped while the model loads: nothing written, and the line says so (an earlier run's outputs stay)
    before = (tmp_path / "s.json").read_bytes()

    def interrupted_loading(self, *args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr(Scanner, "__init__", interrupted_loading)
    r = cli("scan", *files, "--checkpoint", ck, "--json", tmp_path / "s.json", "--csv", tmp_path / "new.csv")
    assert_one_error(r, "interrupted while the model loaded, before any file was scanned: no output was written",
                     code=130)
    assert (tmp_path / "s.json").read_bytes() == before and not (tmp_path / "new.csv").exists()


def test_13_a_stopped_checkpoint_command_says_what_it_left_unchanged(ck, pairs, face_png, tmp_path, monkeypatch):
    """calibrate, rebuild-bank, enroll and weights export stopped by Ctrl-C or SIGTERM said a bare "interrupted", as if
    the checkpoint might be half rewritten: each writes once, atomically, at its end, and its line now says so."""
    from forgerydet.model import weights
    from forgerydet.scan import enroll
    from forgerydet.training import bankfill, validate

    def stopped(*args, **kwargs):
        raise KeyboardInterrupt

    for module, name in ((validate, "calibrate_checkpoint"), (bankfill, "rebuild_checkpoint_bank"),
                         (bankfill, "rebuild_disk_bank"), (enroll, "enroll"), (weights, "export_packaged")):
        monkeypatch.setattr(module, name, stopped)
    before, new = ck.read_bytes(), tmp_path / "new.safetensors"
    for command in ("calibrate", "rebuild-bank"):
        assert_one_error(cli(command, "--checkpoint", ck, "--pairs", pairs), f"interrupted: {ck} is unchanged (nothing "
                         "was written); run the same command again", code=130)
        assert_one_error(cli(command, "--checkpoint", ck, "--pairs", pairs, "--out", new),
                         f"interrupted: {new} was not written; {ck} is unchanged; run the same", code=130)
    assert_one_error(cli("rebuild-bank", "--checkpoint", ck, "--pairs", pairs, "--disk-bank", tmp_path / "db"),
                     f"interrupted: the disk bank {tmp_path / 'db'} was not written; {ck} is unchanged", code=130)
    assert_one_error(cli("enroll", "Ann", face_png, "--checkpoint", ck, "--into", tmp_path / "refs.safetensors"),
                     f"interrupted: {tmp_path / 'refs.safetensors'} was not written; run the same", code=130)
    assert_one_error(cli("weights", "export", "tf_efficientnet_lite0", tmp_path / "w.safetensors"),
                     f"interrupted: {tmp_path / 'w.safetensors'} was not written", code=130)
    assert ck.read_bytes() == before and not new.exists()

    def written_then_stopped(checkpoint, *args, **kwargs):  # the stop came after the atomic write, as it was said
        shutil.copy(checkpoint, tmp_path / "copy")
        os.replace(tmp_path / "copy", checkpoint)
        raise KeyboardInterrupt

    monkeypatch.setattr(validate, "calibrate_checkpoint", written_then_stopped)
    assert_one_error(cli("calibrate", "--checkpoint", ck, "--pairs", pairs), f"interrupted after {ck} was written",
                     code=130)


# ----------------------------------------------------------------------------- 14. training values, edited checkpoints

def test_14_steps_per_epoch_zero_refused(pairs, tmp_path):
    assert_one_error(cli("train", "--pairs", pairs, "--out", tmp_path / "r", *TINY_TRAIN, "--steps-per-epoch", 0),
                     "--steps-per-epoch 0: use >= 1")


def test_14_diverged_run_says_lower_the_learning_rate(pairs, tmp_path):
    r = cli("train", "--pairs", pairs, "--out", tmp_path / "r", "--epochs", 1, *TINY_TRAIN, "--lr", "1e6")
    line = assert_one_error(r, "training diverged", "lower --lr")
    assert "scoring step" not in line and not (tmp_path / "r" / "last.safetensors").exists()


def test_14_hand_edited_metadata_and_nan_weights(ck, face_png, tmp_path):
    fill = edit_meta(ck, tmp_path / "fill.safetensors", bank_fill="lots")
    assert_one_error(cli("info", fill), "bank_fill is 'lots'")
    assert_one_error(cli("scan", face_png, "--checkpoint", fill, "--device", "cpu"), "bank_fill is 'lots'")
    with safe_open(str(ck), framework="pt") as f:
        extra = json.loads(f.metadata()["extra"])
    thr = edit_meta(ck, tmp_path / "thr.safetensors", extra=json.dumps({**extra, "threshold": "high"}))
    assert_one_error(cli("scan", face_png, "--checkpoint", thr, "--device", "cpu"), "stored threshold 'high'")
    assert cli("scan", face_png, "--checkpoint", thr, "--device", "cpu", "--threshold", 0.5).exit_code == 0
    with safe_open(str(ck), framework="pt") as f:
        meta, tensors = f.metadata(), {k: f.get_tensor(k) for k in f.keys()}
    name = next(k for k in tensors if k.startswith("model.head") and tensors[k].is_floating_point())
    tensors[name] = torch.full_like(tensors[name], float("nan"))
    save_file(tensors, str(tmp_path / "nan.safetensors"), metadata=meta)
    assert_one_error(cli("scan", face_png, "--checkpoint", tmp_path / "nan.safetensors", "--device", "cpu"),
                     "NaN or infinite values", "lower --lr")
    assert_one_error(cli("info", tmp_path / "nan.safetensors"), "NaN or infinite values")  # was described as sound



def test_14_metadata_json_nested_too_deep(ck, face_png, tmp_path):
    """A metadata field of 100,000 '[' made Python's JSON parser raise RecursionError: a traceback from `info`
    and `scan`, and so from the DFDC metadata.json of `evaluate --dfdc`."""
    deep = edit_meta(ck, tmp_path / "deep.safetensors", extra="[" * 100_000 + "]" * 100_000)
    assert_one_error(cli("info", deep), "not a readable forgerydet checkpoint", "nested too deep")
    assert_one_error(cli("scan", face_png, "--checkpoint", deep, "--device", "cpu"), "nested too deep")
    dfdc = tmp_path / "dfdc"
    dfdc.mkdir()
    (dfdc / "metadata.json").write_text("{" + '"a":{' * 100_000 + "}" * 100_001)
    assert_one_error(cli("evaluate", "--dfdc", dfdc, "--checkpoint", ck, "--out", tmp_path / "ev"), "not DFDC metadata")



def _config_edit(ck: Path, **changes) -> str:
    with safe_open(str(ck), framework="pt") as f:
        return json.dumps({**json.loads(f.metadata()["config"]), **changes})


@pytest.mark.parametrize("field, value, needles", [
    ("config", "[1, 2]", ["metadata field config is not a JSON object"]),
    ("history", '["x", 3]', ["metadata field history is not a JSON list of objects"]),
    ("bank_sources", '"faces/a.png"', ["metadata field bank_sources is not a JSON list"]),
    ("extra", '{"calibration": [1]}', ["metadata field extra.calibration is not a JSON object"]),
    ("train", '{"train_config": 5}', ["metadata field train.train_config is not a JSON object"]),
])
def test_14_metadata_field_of_another_json_kind(field, value, needles, ck, face_png, tmp_path):
    """A list where the writer stores an object (or a number in the bank sources) was taken as it was: an
    AttributeError or TypeError traceback from `info` and `scan`."""
    bad = edit_meta(ck, tmp_path / "bad.safetensors", **{field: value})
    assert_one_error(cli("info", bad), *needles)
    assert_one_error(cli("scan", face_png, "--checkpoint", bad, "--device", "cpu"), *needles)


def test_14_stored_config_and_training_state_edited(ck, face_png, tmp_path):
    """A stored config's error did not name the file ('unknown backbone ...: use a timm model name', of a config
    the user never typed); one a machine cannot hold went to the allocator (a traceback, or a swap before the
    weights were found not to fit); a training state without its position was a KeyError traceback."""
    def scan(**meta):
        bad = edit_meta(ck, tmp_path / "bad.safetensors", **meta)
        return cli("scan", face_png, "--checkpoint", bad, "--device", "cpu")

    assert_one_error(scan(config=_config_edit(ck, backbone="<b>no</b>")), "bad.safetensors: the stored model settings do not build a "
                     "model: backbone='<b>no</b>' must be a timm model name")
    assert_one_error(scan(config=_config_edit(ck, grid=-1)), "bad.safetensors: the stored model settings are "
                     "inconsistent: grid=-1 must be >= 1; was the metadata edited?")
    assert_one_error(scan(config=_config_edit(ck, bank_size=10**12)), "need at least", "GiB", "was the metadata edited")
    assert_one_error(scan(config=_config_edit(ck, img_size=10**9)), "need at least", "1000000000 px")
    assert_one_error(scan(train='{"train_config": {}}'), "metadata field train is not a training state")
    with safe_open(str(ck), framework="pt") as f:
        meta, tensors = f.metadata(), {k: f.get_tensor(k) for k in f.keys()}
    tensors["model.bank.fill"] = torch.ones(8, dtype=torch.bool)
    save_file(tensors, str(tmp_path / "fill.safetensors"), metadata=meta)
    assert_one_error(cli("scan", face_png, "--checkpoint", tmp_path / "fill.safetensors", "--device", "cpu"),
                     "weights do not fit", "bank fill of shape [8]")


# ----------------------------------------------------------------------------- 15. smaller points

def test_15_unreadable_file_is_permission_denied_not_corrupt(ck, face_png, tmp_path, monkeypatch):
    locked = tmp_path / "locked.png"
    shutil.copy(face_png, locked)
    real_access = os.access
    monkeypatch.setattr(os, "access", lambda p, m, *a, **k: False if Path(p) == locked else real_access(p, m, *a, **k))
    r = cli("scan", locked, face_png, "--checkpoint", ck, "--device", "cpu")
    assert r.exit_code == 1 and clean(r)
    assert r.stderr.splitlines() == [f"{locked}: cannot read the file (permission denied)",
                                     "error: 1 of 2 file(s) got no verdict (see above)"]
    r = cli("extract", locked, "--out", tmp_path / "faces")  # was exit 2 with a usage box (click's own check)
    assert r.exit_code == 1 and clean(r) and "Usage" not in r.output
    assert r.stderr.splitlines() == [f"failed: {locked}: cannot read the file (permission denied)",
                                     "error: 1 file(s) failed (listed above); everything else was done"]


def test_15_newline_in_a_name_stays_on_its_row(ck, face_png, tmp_path):
    odd = tmp_path / "two\nlines.png"
    shutil.copy(face_png, odd)
    r = cli("scan", odd, "--checkpoint", ck, "--device", "cpu", "--json", tmp_path / "s.json")
    assert r.exit_code == 0, r.output
    assert any("two\\nlines.png" in line for line in r.stdout.splitlines())
    assert json.loads((tmp_path / "s.json").read_text())["files"][0]["path"] == str(odd)  # JSON escapes it itself


def test_15_all_paths_missing_fails_before_the_model_loads(tmp_path):
    r = cli("scan", tmp_path / "a.mp4", tmp_path / "b.png", "--checkpoint", tmp_path / "no.safetensors")
    assert_one_error(r, "nothing to scan", "a.mp4: no such file", "b.png: no such file")  # not "checkpoint not found"


def test_15_a_list_that_is_not_utf8_is_one_line(ck, tmp_path):
    """A Latin-1 path,label list (evaluate LIST.csv, train --watch) raised a UnicodeDecodeError with a traceback."""
    lst = tmp_path / "latin1.csv"
    lst.write_bytes(b"path,label\n\xe9t\xe9.png,real\nb.png,fake\n")
    r = cli("evaluate", lst, "--checkpoint", ck, "--device", "cpu", "--out", tmp_path / "ev")
    assert_one_error(r, f"{lst}: not a UTF-8 text CSV file")


# ----------------------------------------------------------------------------- 16. the process's environment

@pytest.fixture
def deleted_folder(tmp_path, monkeypatch) -> Path:
    """The current folder, deleted under the process (`mkdir d; cd d; rmdir ../d; forgerydet ...`)."""
    gone = tmp_path / "gone"
    gone.mkdir()
    monkeypatch.chdir(gone)
    gone.rmdir()
    return gone


@pytest.mark.skipif(sys.platform != "linux", reason="a deleted current folder is a Linux condition")
def test_16_deleted_current_folder_scan_of_absolute_paths_in_a_subprocess(ck, face_png, tmp_path):
    """torch's import (oneMKL) ended the process: "Intel oneMKL FATAL ERROR: Cannot load libtorch_cpu.so", exit
    code 2, nothing written."""
    gone = tmp_path / "gone"
    gone.mkdir()
    code = ("import os, sys; os.chdir(sys.argv[1]); os.rmdir(sys.argv[1]); sys.argv = ['forgerydet', *sys.argv[2:]]; "
            "from forgerydet.cli.app import cli; cli()")
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(REPO / "src"), os.environ.get("PYTHONPATH", "")])}
    p = subprocess.run([sys.executable, "-c", code, str(gone), "scan", str(face_png), "--checkpoint", str(ck),
                        "--device", "cpu", "--json", str(tmp_path / "s.json")],
                       capture_output=True, text=True, env=env, timeout=300)
    assert p.returncode == 0, p.stderr
    doc = json.loads((tmp_path / "s.json").read_text())
    assert doc["files"][0]["status"] == "ok" and doc["settings"]["working_directory"] is None


def test_16_deleted_current_folder_evaluate_and_resume(ck, face_png, tmp_path, deleted_folder):
    """evaluate raised FileNotFoundError after scoring every file (os.getcwd, Path.cwd) and `scan --resume` before
    scanning: one bare "error: No such file or directory" either way, although every path given was absolute."""
    twin = shutil.copy(face_png, tmp_path / "twin.png")
    r = cli("evaluate", "--real", face_png, "--fake", twin, "--checkpoint", ck, "--device", "cpu", "--crops",
            "--out", tmp_path / "ev")
    assert r.exit_code == 0 and clean(r), r.output
    assert json.loads((tmp_path / "ev" / "metrics.json").read_text())["working_directory"] is None
    for _ in range(2):  # the second one takes the first one's verdict over
        r = cli("scan", face_png, "--checkpoint", ck, "--device", "cpu", "--json", tmp_path / "s.json", "--resume")
        assert r.exit_code == 0 and clean(r), r.output
    assert json.loads((tmp_path / "s.json").read_text())["settings"]["resumed"]["files_taken_over"] == 1


def test_16_deleted_current_folder_relative_output_is_one_line_that_says_why(ck, face_png, deleted_folder):
    """A relative --json raised FileNotFoundError with a traceback (os.path.abspath, outside the error handling)."""
    r = cli("scan", face_png, "--checkpoint", ck, "--device", "cpu", "--json", "s.json")
    assert_one_error(r, "the current folder was deleted", "give absolute paths")


def run_scan(*args: object, env: dict | None = None, close_stdout: bool = False) -> subprocess.CompletedProcess:
    """`forgerydet scan ARGS` in a process of its own, with its environment's changes and, with close_stdout, started
    without standard output (`>&-`)."""
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(REPO / "src"), os.environ.get("PYTHONPATH", "")]),
           **(env or {})}
    return subprocess.run([sys.executable, "-m", "forgerydet", "scan", *map(str, args), "--device", "cpu"],
                          stdout=None if close_stdout else subprocess.PIPE, stderr=subprocess.PIPE, encoding="utf-8",
                          env=env, timeout=300, preexec_fn=(lambda: os.close(1)) if close_stdout else None)


def test_16_columns_0_still_prints_the_error_line_and_the_verdicts(ck, face_png, tmp_path):
    """COLUMNS=0 (exported by a shell on a pseudo-terminal that reports no size) made rich draw on 0 columns: the
    error line, the verdict table and --help printed nothing at all, exit code 1 with no word why."""
    p = run_scan(tmp_path / "missing.png", env={"COLUMNS": "0"})
    assert p.returncode == 1 and p.stderr.splitlines() == [
        f"error: nothing to scan: {tmp_path / 'missing.png'}: no such file or folder"], p.stderr
    p = run_scan(face_png, "--checkpoint", ck, env={"COLUMNS": "0"})
    assert p.returncode == 0 and "forgerydet scan" in p.stdout and face_png.name in p.stdout, (p.stdout, p.stderr)


@pytest.mark.skipif(sys.platform != "linux", reason="descriptors closed at start")
def test_16_closed_standard_output_still_writes_the_outputs(ck, face_png, tmp_path):
    """`forgerydet scan ... --json s.json >&-` printed an AttributeError traceback (sys.stdout is None) after the
    scan and wrote no JSON (exit code 120); `--json -` there went nowhere."""
    p = run_scan(face_png, "--checkpoint", ck, "--json", tmp_path / "s.json", close_stdout=True)
    assert p.returncode == 0 and "Traceback" not in p.stderr, p.stderr
    assert json.loads((tmp_path / "s.json").read_text())["files"][0]["status"] == "ok"
    p = run_scan(face_png, "--checkpoint", ck, "--json", "-", close_stdout=True)
    assert p.returncode == 1 and p.stderr.splitlines() == ["error: --json -: standard output is closed: give a file"]


def test_16_an_output_encoding_without_the_names_characters(ck, face_png, tmp_path):
    """PYTHONIOENCODING=ascii (or a Latin-1 locale): a file named é.png raised UnicodeEncodeError at the verdict
    table, after the scan, with a traceback and no --json written; `--csv -` raised it too."""
    photo = shutil.copy(face_png, tmp_path / "é.png")
    ascii_out = {"PYTHONIOENCODING": "ascii"}
    p = run_scan(photo, "--checkpoint", ck, "--json", tmp_path / "s.json", env=ascii_out)
    assert p.returncode == 0 and "Traceback" not in p.stderr, p.stderr
    assert "\\xe9.png" in p.stdout  # the table: as standard error writes such a character
    assert json.loads((tmp_path / "s.json").read_text(encoding="utf-8"))["files"][0]["path"] == str(photo)
    p = run_scan(photo, "--checkpoint", ck, "--csv", "-", env=ascii_out)
    assert p.returncode == 0 and "Traceback" not in p.stderr, p.stderr
    assert list(csv.DictReader(p.stdout.splitlines()))[0]["path"] == str(photo)  # UTF-8, as the CSV's file holds


@pytest.mark.parametrize("error", [
    ImportError("libtorch_cpu.so: failed to map segment from shared object"),  # ulimit -v 1500000: torch's import
    RuntimeError("[enforce fail at alloc_cpu.cpp:127] err == 0. DefaultCPUAllocator: can't allocate memory: you tried "
                 "to allocate 4010112 bytes. Error code 12 (Cannot allocate memory)"),  # 4200000: the model's load
    MemoryError()])
def test_16_out_of_memory_is_one_line(error, ck, face_png, capsys, monkeypatch):
    """A memory limit (`ulimit -v`, a container's) too low for torch or the model printed a traceback."""
    import forgerydet.scan.scanner as scanner_mod

    def short(*a, **k):
        raise error

    monkeypatch.setattr(scanner_mod.Scanner, "__init__", short)
    with pytest.raises(SystemExit) as e:
        console_command(["scan", str(face_png), "--checkpoint", str(ck), "--device", "cpu"])
    err = [line for line in capsys.readouterr().err.splitlines() if line.strip()]
    assert e.value.code == 1 and len(err) == 1 and err[0].startswith("error: out of memory"), err
    assert "ulimit -v" in err[0]


def test_16_out_of_memory_while_scanning_one_file_is_its_error_and_the_scan_goes_on(ck, face_png, tmp_path,
                                                                                   capsys, monkeypatch):
    """Memory running out inside one file's scan (a huge frame, a limit) ended the whole scan with nothing written but
    what the --json had saved so far; now that file gets an error record and the other files their verdicts."""
    import forgerydet.scan.scanner as scanner_mod

    real = scanner_mod.Scanner.scan_file
    big = shutil.copy(face_png, tmp_path / "big.png")

    def scan_file(self, path):
        if Path(path).name == "big.png":
            raise RuntimeError("[enforce fail at alloc_cpu.cpp:127] err == 0. DefaultCPUAllocator: can't allocate "
                               "memory: you tried to allocate 9876543210 bytes.\nmore native detail")
        return real(self, path)

    monkeypatch.setattr(scanner_mod.Scanner, "scan_file", scan_file)
    out = tmp_path / "s.json"
    with pytest.raises(SystemExit) as e:
        console_command(["scan", str(big), str(face_png), "--checkpoint", str(ck), "--device", "cpu", "--json", str(out)])
    assert e.value.code == 1
    files = json.loads(out.read_text())["files"]
    assert [f["status"] for f in files] == ["error", "ok"]
    assert files[0]["error"].startswith("out of memory while scanning this file (RuntimeError: [enforce fail at ")
    assert files[0]["error"].endswith("): free memory or raise the process's limit, then scan it again")
    assert "1 of 2 file(s) got no verdict" in capsys.readouterr().err


def test_16_other_runtime_errors_keep_their_traceback(ck, face_png, monkeypatch):
    """Only a memory shortage is turned into a line: a bug still shows where it is."""
    import forgerydet.scan.scanner as scanner_mod

    def bug(*a, **k):
        raise RuntimeError("mat1 and mat2 shapes cannot be multiplied")

    monkeypatch.setattr(scanner_mod.Scanner, "__init__", bug)
    with pytest.raises(RuntimeError, match="shapes cannot be multiplied"):
        console_command(["scan", str(face_png), "--checkpoint", str(ck), "--device", "cpu"])
