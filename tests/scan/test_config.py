"""scan/config.py: ScanConfig and EnrollConfig defaults and their checks (each message names the option and
the bad value); light enough for the CLI to read its defaults from (no torch)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from forgerydet.errors import ForgeryDetError
from forgerydet.faces.detect import DetectorConfig
from forgerydet.scan.aggregate import STRATEGIES
from forgerydet.scan.config import (FACE_CHOICES, EnrollConfig, ScanConfig, check_scan_inputs, expand_scan_paths,
                                    find_default_checkpoint)

SRC = Path(__file__).resolve().parents[2] / "src"


def test_scan_defaults():
    c = ScanConfig()
    assert (c.num_frames, c.aggregation, c.threshold, c.batch_size, c.device, c.keep_crops) == (
        32, "max-then-mean", None, 32, "auto", 0)
    assert c.detector == DetectorConfig() and c.detector is not ScanConfig().detector  # one per config
    assert (c.reference, c.references, c.bank) == (None, None, None)


@pytest.mark.parametrize("kw,msg", [
    ({"aggregation": "median"}, f"--aggregation 'median': use one of {', '.join(STRATEGIES)}"),
    ({"num_frames": 0}, "--frames 0: must be >= 1"),
    ({"references": "r.safetensors"}, "--references FILE needs --reference NAME: which enrolled person to compare with"),
    ({"threshold": 0.0}, "--threshold 0.0: must be in (0, 1)"),
    ({"threshold": 1.0}, "--threshold 1.0: must be in (0, 1)"),
    ({"batch_size": 0}, "--batch-size 0: must be >= 1"),
])
def test_scan_checks(kw, msg):
    with pytest.raises(ForgeryDetError) as e:
        ScanConfig(**kw)
    assert str(e.value) == msg


def test_scan_accepts_every_strategy_and_a_named_reference():
    assert [ScanConfig(aggregation=s).aggregation for s in STRATEGIES] == list(STRATEGIES)
    c = ScanConfig(reference="A", references="r.safetensors", threshold=0.01, num_frames=1, batch_size=1)
    assert (c.reference, c.references, c.threshold) == ("A", "r.safetensors", 0.01)


def test_enroll_defaults_and_checks():
    c = EnrollConfig()
    assert (c.num_frames, c.face, c.device, c.batch_size, c.wait) == (32, "main-track", "auto", 32, 10.0)
    assert FACE_CHOICES == ("main-track", "largest", "all")
    assert [EnrollConfig(face=f).face for f in FACE_CHOICES] == list(FACE_CHOICES)
    with pytest.raises(ForgeryDetError) as e:
        EnrollConfig(face="biggest")
    assert str(e.value) == "--face 'biggest': use one of main-track, largest, all"
    with pytest.raises(ForgeryDetError, match=r"^--frames -1: must be >= 1$"):
        EnrollConfig(num_frames=-1)


def test_importing_the_configs_does_not_import_torch():
    code = "import sys; import forgerydet.scan.config; print('torch' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env={"PYTHONPATH": str(SRC)},
                         timeout=60)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "False"


def test_the_default_checkpoint_is_the_env_var_else_the_shipped_model(tmp_path, monkeypatch):
    import forgerydet.scan.config as config_mod

    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("FORGERYDET_MODEL", raising=False)
    monkeypatch.setattr(config_mod, "__file__", str(tmp_path / "src" / "forgerydet" / "scan" / "config.py"))
    with pytest.raises(ForgeryDetError, match="make demo"):
        find_default_checkpoint()
    (tmp_path / "models").mkdir()
    (tmp_path / "models" / "forgerydet-base.safetensors").write_bytes(b"x")
    assert find_default_checkpoint() == Path.cwd() / "models" / "forgerydet-base.safetensors"
    mine = tmp_path / "mine.safetensors"
    monkeypatch.setenv("FORGERYDET_MODEL", str(mine))
    with pytest.raises(ForgeryDetError, match="points to .*mine.safetensors, which does not exist"):
        find_default_checkpoint()
    mine.write_text("real,fake\n")  # a pairs.csv named by mistake: the load's error did not name the variable
    with pytest.raises(ForgeryDetError, match=r"^\$FORGERYDET_MODEL points to .*mine.safetensors, which is not a checkpoint"):
        find_default_checkpoint()
    mine.write_bytes(b"\x02\x00\x00\x00\x00\x00\x00\x00{}")  # a safetensors header: the load checks the rest
    assert find_default_checkpoint() == mine


def test_a_missing_shipped_model_names_the_variable_and_why_it_is_missing(tmp_path, monkeypatch):
    """The message printed `${MODELS_ENV}` (not an f-string) and blamed a copy of the repository without models/
    also where forgerydet was installed as a package (`pip install .`), which never holds the model."""
    import forgerydet.scan.config as config_mod

    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("FORGERYDET_MODEL", raising=False)
    site = tmp_path / "venv" / "lib" / "python3.11" / "site-packages"
    monkeypatch.setattr(config_mod, "__file__", str(site / "forgerydet" / "scan" / "config.py"))
    monkeypatch.setattr(config_mod, "install_bases", lambda: [str(tmp_path / "venv")])  # an install that lost its data file
    with pytest.raises(ForgeryDetError) as e:
        find_default_checkpoint()
    msg = str(e.value)
    assert "set $FORGERYDET_MODEL," in msg and "{" not in msg, msg
    assert f"installed package ({site / 'forgerydet'})" in msg and "without its models/" not in msg, msg
    repo = tmp_path / "repo"  # a checkout (editable install) that lacks models/: said as such
    (repo / "src").mkdir(parents=True)
    (repo / "pyproject.toml").write_text("[project]\n")
    monkeypatch.setattr(config_mod, "__file__", str(repo / "src" / "forgerydet" / "scan" / "config.py"))
    with pytest.raises(ForgeryDetError, match=r"is not in .*repo.models \(a copy of the repository without its models/"):
        find_default_checkpoint()


def test_an_installed_package_finds_the_shipped_model_where_its_install_put_it(tmp_path, monkeypatch):
    """After `pip install .` or a wheel (no checkout beside the package), every scan without --checkpoint was refused:
    the model stayed in the repository. The install now puts it in <prefix>/share/forgerydet/models (pyproject's
    data-files), and the lookup finds it there, also for a `pip install --user` (site.USER_BASE)."""
    import forgerydet.scan.config as config_mod

    pyproject = (Path(__file__).resolve().parents[2] / "pyproject.toml").read_text()
    assert '[tool.setuptools.data-files]\n"share/forgerydet/models" = ["models/forgerydet-base.safetensors"]' in pyproject
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("FORGERYDET_MODEL", raising=False)
    prefix, user = tmp_path / "venv", tmp_path / "home" / ".local"
    monkeypatch.setattr(config_mod, "__file__", str(prefix / "lib" / "python3.11" / "site-packages" / "forgerydet" / "scan" / "config.py"))
    monkeypatch.setattr(config_mod.sysconfig, "get_path", lambda name: str(prefix))  # a venv: data path = prefix
    monkeypatch.setattr(config_mod.sys, "prefix", str(prefix))
    monkeypatch.setattr(config_mod.site, "USER_BASE", str(user))
    for base in (user, prefix):  # the user scheme first alone, then the prefix's, which is looked at before it
        model = base / "share" / "forgerydet" / "models" / "forgerydet-base.safetensors"
        model.parent.mkdir(parents=True)
        model.write_bytes(b"x")
        assert find_default_checkpoint() == model
    debian = tmp_path / "usr" / "local"  # Debian's system pip: data files under /usr/local while sys.prefix is /usr
    monkeypatch.setattr(config_mod.sysconfig, "get_path", lambda name: str(debian) if name == "data" else "")
    model = debian / "share" / "forgerydet" / "models" / "forgerydet-base.safetensors"
    model.parent.mkdir(parents=True)
    model.write_bytes(b"x")
    assert find_default_checkpoint() == model


def test_an_env_var_model_that_exists_but_is_no_file_is_said_as_what_it_is(tmp_path, monkeypatch):
    (tmp_path / "models").mkdir()
    (tmp_path / "models" / "a.safetensors").write_bytes(b"x")
    (tmp_path / "empty.safetensors").write_bytes(b"")
    cases = {tmp_path / "models": "is a folder: give the checkpoint file inside it",  # it used to say "does not exist"
             Path("/dev/null"): "is a pipe or a device, not a file",
             tmp_path / "empty.safetensors": "is empty (0 bytes), not a checkpoint"}
    for path, why in cases.items():
        monkeypatch.setenv("FORGERYDET_MODEL", str(path))
        with pytest.raises(ForgeryDetError) as e:
            find_default_checkpoint()
        assert str(e.value).startswith(f"$FORGERYDET_MODEL: {path} {why}"), str(e.value)


def test_expand_scan_paths_counts_left_out_files_once_and_never_a_named_one(tmp_path):
    (tmp_path / "case").mkdir()
    for name in ("case/a.png", "case/notes.txt", "case/IMG_1.heic"):
        (tmp_path / name).write_bytes(b"x")
    skipped: list[Path] = []
    files, bad = expand_scan_paths([tmp_path / "case", tmp_path / "case/notes.txt", tmp_path / "case/*",
                                    tmp_path / "gone.mp4"], skipped=skipped)
    assert [f.name for f in files] == ["a.png", "notes.txt"]  # named: scanned, and it gets its own error
    assert [f.name for f in skipped] == ["IMG_1.heic", "IMG_1.heic"]  # by the folder and the glob; counted once
    assert [b["error"] for b in bad] == [f"{tmp_path / 'gone.mp4'}: no such file or folder"]


def test_a_mistyped_path_is_refused_before_torch_is_imported(tmp_path):
    """scan, evaluate, info and calibrate check their paths (media, dataset, checkpoint) first: a typo costs a
    fraction of a second, not the ~5 s of importing torch and timm before the error line."""
    code = ("import json, sys\nfrom typer.testing import CliRunner\nfrom forgerydet.cli.app import app\n"
            f"r = CliRunner().invoke(app, ['scan', {str(tmp_path / 'gone.mp4')!r}])\n"
            "assert r.exit_code == 1 and 'no such file' in r.output, r.output\n"
            f"r = CliRunner().invoke(app, ['evaluate', '--ffpp', {str(tmp_path / 'FFPP')!r}])\n"
            "assert r.exit_code == 1 and 'no such folder' in r.output, r.output\n"
            f"img = {str(tmp_path / 'a.png')!r}\nopen(img, 'wb').write(b'x')\n"
            f"for args in (['scan', img, '--checkpoint', 'nope.safetensors'], ['info', 'nope.safetensors'],\n"
            "             ['calibrate', '--checkpoint', 'nope.safetensors', '--pairs', 'p.csv']):\n"
            "    r = CliRunner().invoke(app, args)\n"
            "    assert r.exit_code == 1 and 'checkpoint not found: nope.safetensors' in r.output, r.output\n"
            "r = CliRunner().invoke(app, ['scan', img, '--bank', 'nope_dir'])\n"
            "assert r.exit_code == 1 and '--bank nope_dir: not found' in r.output, r.output\n"
            "r = CliRunner().invoke(app, ['scan', img, '--reference', 'Ann', '--references', 'nope.refs.safetensors'])\n"
            "assert r.exit_code == 1 and 'reference file not found: nope.refs.safetensors' in r.output, r.output\n"
            f"refs = {str(tmp_path / 'r.refs.safetensors')!r}\nmeta = json.dumps({{'__metadata__': {{'format': "
            "'forgerydet-references', 'people': json.dumps({'Ann': [0, 2]})}}).encode()\n"
            "open(refs, 'wb').write(len(meta).to_bytes(8, 'little') + meta)\n"
            "r = CliRunner().invoke(app, ['scan', img, '--reference', 'Bob', '--references', refs])\n"
            "assert r.exit_code == 1 and \"'Bob' is not enrolled\" in r.output and 'enrolled: Ann' in r.output, r.output\n"
            f"ck = {str(tmp_path / 'm.safetensors')!r}\nopen(ck, 'wb').write(b'x')\n"
            "r = CliRunner().invoke(app, ['scan', img, '--reference', 'Ann', '--checkpoint', ck])\n"
            "assert r.exit_code == 1 and 'reference file not found' in r.output and 'm.refs.safetensors' in r.output, r.output\n"
            "open(refs, 'wb').write(b'')\n"  # a damaged (emptied) reference file
            "r = CliRunner().invoke(app, ['scan', img, '--reference', 'Ann', '--references', refs])\n"
            "assert r.exit_code == 1 and 'not a readable forgerydet reference file' in r.output, r.output\n"
            "r = CliRunner().invoke(app, ['scan', img, '--reference', ' ', '--references', refs])\n"
            "assert r.exit_code == 1 and \"person name ' ' (spaces only) is not usable\" in r.output, r.output\n"
            "print(sorted(m for m in ('torch', 'timm') if m in sys.modules))")
    p = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120,
                       env={**__import__("os").environ, "PYTHONPATH": str(SRC)})
    assert p.returncode == 0, p.stderr
    assert p.stdout.strip() == "[]"


def test_a_scans_other_input_files_are_checked_in_one_place(tmp_path):
    """The CLI and the API both call check_scan_inputs before torch loads: checkpoint, --bank, --references."""
    ck = tmp_path / "c.safetensors"
    ck.write_bytes(b"x")
    assert check_scan_inputs(None, ScanConfig()) == find_default_checkpoint()  # found here, for the Scanner
    assert check_scan_inputs(ck, ScanConfig()) == ck
    (tmp_path / "bank.json").write_text("{}")  # a finished disk bank (its files are the DiskBank's to check)
    check_scan_inputs(ck, ScanConfig(bank=str(tmp_path)))
    with pytest.raises(ForgeryDetError, match="checkpoint not found"):
        check_scan_inputs(tmp_path / "nope.safetensors", ScanConfig())
    with pytest.raises(ForgeryDetError, match="--bank .*: not found"):
        check_scan_inputs(ck, ScanConfig(bank=str(tmp_path / "nope")))
    with pytest.raises(ForgeryDetError, match="reference file not found"):
        check_scan_inputs(ck, ScanConfig(reference="Ann", references=str(tmp_path / "r.refs.safetensors")))


def test_a_missing_default_model_is_refused_with_the_other_inputs(tmp_path, monkeypatch):
    """No --checkpoint and no shipped model (a `pip install .`): scan and the API said so only once torch and timm
    had loaded (~5-15 s), though the other inputs were checked before."""
    import forgerydet.scan.config as config_mod

    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("FORGERYDET_MODEL", raising=False)
    monkeypatch.setattr(config_mod, "__file__", str(tmp_path / "site-packages" / "forgerydet" / "scan" / "config.py"))
    monkeypatch.setattr(config_mod, "install_bases", lambda: [str(tmp_path)])  # no install of this machine's holds the model
    with pytest.raises(ForgeryDetError, match="no checkpoint given and the shipped model"):
        check_scan_inputs(None, ScanConfig())
    (tmp_path / "c.safetensors").write_bytes(b"x")
    check_scan_inputs(tmp_path / "c.safetensors", ScanConfig())  # one given: the shipped model is not looked for


def test_the_enroll_line_a_reference_refusal_suggests_enrols_where_the_scan_looks(tmp_path):
    """Pasted, the suggested command must enrol into the file the scan read, for the model it used (it named neither,
    so it enrolled beside the shipped model and the scan failed again), quoted for a shell."""
    import json
    import shlex

    ck = tmp_path / "my model.safetensors"
    ck.write_bytes(b"x")
    with pytest.raises(ForgeryDetError) as e:
        check_scan_inputs(ck, ScanConfig(reference="O'Brien"))
    default = tmp_path / "my model.refs.safetensors"
    name = "O'Brien"
    assert str(e.value) == (f"reference file not found: {default} (enrol {name!r} first: `forgerydet enroll "
                            f"{shlex.quote(name)} VIDEO... --checkpoint {shlex.quote(str(ck))}`)")
    refs = tmp_path / "r.refs.safetensors"
    meta = json.dumps({"__metadata__": {"format": "forgerydet-references", "people": json.dumps({"Bob": [0, 1]})}}).encode()
    refs.write_bytes(len(meta).to_bytes(8, "little") + meta)
    with pytest.raises(ForgeryDetError) as e:
        check_scan_inputs(ck, ScanConfig(reference="Nobody", references=str(refs)))
    command = str(e.value).split("`")[1]
    assert shlex.split(command) == ["forgerydet", "enroll", "Nobody", "VIDEO...", "--checkpoint", str(ck), "--into", str(refs)]


def test_the_shipped_model_is_found_from_a_deleted_current_folder(tmp_path, monkeypatch):
    """`mkdir d; cd d; rmdir ../d; forgerydet scan /abs/clip.mp4`: Path.cwd() raised, and the scan failed with
    "error: No such file or directory" although every path given was absolute."""
    import forgerydet.scan.config as config_mod

    monkeypatch.delenv("FORGERYDET_MODEL", raising=False)
    monkeypatch.setattr(config_mod, "__file__", str(tmp_path / "src" / "forgerydet" / "scan" / "config.py"))
    (tmp_path / "models").mkdir()
    (tmp_path / "models" / "forgerydet-base.safetensors").write_bytes(b"x")
    (tmp_path / "gone").mkdir()
    monkeypatch.chdir(tmp_path / "gone")
    (tmp_path / "gone").rmdir()
    assert find_default_checkpoint() == tmp_path / "models" / "forgerydet-base.safetensors"
