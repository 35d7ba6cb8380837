"""cli/app.py: every command of the README's table is registered, --version, the start-up tuning, and `--help`
stays light (no torch)."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from forgerydet import __version__, runtime
from tests.cli._cli_util import cli

REPO = Path(__file__).resolve().parents[2]
SRC = REPO / "src"
COMMANDS = ["info", "extract", "pairs", "train", "rebuild-bank", "calibrate", "scan", "evaluate", "enroll", "weights"]


def _listed(help_text: str) -> list[str]:
    """Command names in the order the help's Commands box lists them."""
    box = help_text.split("Commands")[1]
    names = [line.strip("│ ").split(" ")[0] for line in box.splitlines()]
    return [n for n in names if n in COMMANDS]


def test_help_lists_every_command_in_order():
    r = cli("--help")
    assert r.exit_code == 0, r.output
    assert _listed(r.output) == COMMANDS
    assert cli().output.count("rebuild-bank") == 1  # no arguments: the same help


def test_weights_group_has_list_and_export():
    r = cli("weights", "--help")
    assert r.exit_code == 0 and "list" in r.output and "export" in r.output and "offline" in r.output


def test_every_command_has_help():
    for name in COMMANDS:
        r = cli(name, "--help")
        assert r.exit_code == 0 and "Usage: " in r.output and f" {name} " in r.output, (name, r.output)


def test_flags_show_no_value_type_in_help():
    """typer >= 0.29 prints a type beside every option, `--overwrite <bool>` for a flag too, which reads as if it
    took a value; forgerydet's commands blank it for flags and keep it for options that take one."""
    for args in (["--help"], ["train", "--help"], ["scan", "--help"], ["weights", "--help"], ["weights", "list", "--help"]):
        r = cli(*args)
        assert r.exit_code == 0 and "<bool>" not in r.output, (args, r.output)
    assert "<int>" in cli("scan", "--help").output  # --frames takes a value, and says which
    r = cli("train", "--help")
    assert r.exit_code == 0 and "--overwrite" in r.output


def test_help_paragraphs_are_not_broken_mid_sentence():
    """typer keeps the line breaks of a docstring's later paragraphs (scan's help broke at 'written (every' and
    'so far and'), so each later paragraph is one line; the first is joined by typer."""
    from typer.main import get_command

    from forgerydet.cli.app import app

    def commands(group):
        for cmd in group.commands.values():
            yield from commands(cmd) if hasattr(cmd, "commands") else [cmd]

    broken = [(c.name, p[:40]) for c in commands(get_command(app))
              for p in (c.help or "").strip().split("\n\n")[1:] if "\n" in p.strip()]
    assert not broken
    r = cli("scan", "--help", COLUMNS="400")
    assert "an output could not be written (every other output is still written); 130 after" in r.output


def test_help_on_an_80_column_terminal_cuts_no_option_name_or_default():
    """typer's boxed help squeezed its columns at 80 (a default terminal, a pipe) and cut names and defaults to '…'
    (`--min-confiden…`, `models/forgerydet-base.saf…`); below 100 columns the help is click's plain text now."""
    from typer.main import get_command

    from forgerydet.cli.app import app

    group = get_command(app)
    for name in COMMANDS:
        cmd = group.commands[name]
        for sub in (cmd.commands.values() if hasattr(cmd, "commands") else [cmd]):
            args = [name, sub.name] if sub is not cmd else [name]
            r = cli(*args, "--help", COLUMNS="80")
            assert r.exit_code == 0 and "…" not in r.output, (args, r.output)
            assert max(map(len, r.output.splitlines())) <= 80, args
            for opt in (o for p in sub.params for o in [*p.opts, *p.secondary_opts] if o.startswith("--")):
                assert re.search(rf"(^|[\s,/]){re.escape(opt)}([\s,=/]|$)", r.output, re.M), (args, opt)
    assert "╭" in cli("scan", "--help", COLUMNS="120").output  # the boxed help where it has room


def test_help_on_80_columns_lists_each_commands_summary_whole():
    """Below 100 columns the group help is click's plain text, which cut every command's summary at ~45-60
    characters to '...' ('pairs  Write OUT/pairs.csv...', 'export  Write a backbone's packaged weights as a
    plain timm state dict,...'), where the boxed help had shown it whole, wrapped."""
    from typer.main import get_command

    from forgerydet.cli.app import app

    group = get_command(app)
    for args, cmds in (([], group.commands), (["weights"], group.commands["weights"].commands)):
        flat = " ".join(cli(*args, "--help", COLUMNS="80").output.split("Commands:")[1].split())
        assert "..." not in flat, flat
        for cmd in cmds.values():
            summary = " ".join(cmd.help.split("\n\n")[0].split())
            assert f"{cmd.name} {summary}" in flat, (cmd.name, flat)


@pytest.mark.skipif(sys.platform != "linux", reason="a pseudo-terminal of a given size")
def test_help_on_a_dumb_terminal_is_decided_by_the_width_it_is_drawn_at():
    """The plain/boxed choice read shutil's terminal size (120 here) while rich draws on a dumb terminal (TERM=dumb:
    an Emacs shell) at 80 columns, so the boxed help came out at 80 and cut the default model path to '…' again."""
    import fcntl
    import struct
    import termios

    main, sub = os.openpty()
    fcntl.ioctl(sub, termios.TIOCSWINSZ, struct.pack("HHHH", 40, 120, 0, 0))
    env = {k: v for k, v in os.environ.items() if k not in ("COLUMNS", "LINES")}
    env.update(TERM="dumb", PYTHONPATH=str(SRC))
    p = subprocess.Popen([sys.executable, "-m", "forgerydet", "scan", "--help"], stdin=sub, stdout=sub, stderr=sub,
                         env=env)
    os.close(sub)
    out = b""
    while True:
        try:
            chunk = os.read(main, 65536)
        except OSError:  # the child closed the terminal
            break
        if not chunk:
            break
        out += chunk
    os.close(main)
    assert p.wait(timeout=120) == 0
    assert "…" not in out.decode() and "╭" not in out.decode(), out.decode()


def test_version():
    r = cli("--version")
    assert r.exit_code == 0 and r.output == f"forgerydet {__version__}\n"


def test_malloc_is_tuned_before_any_command(monkeypatch):
    calls = []
    monkeypatch.setattr(runtime, "tune_malloc", lambda: calls.append(1) or True)
    cli("info", "/nowhere/x.safetensors")
    assert calls == [1]


def _python(code: str) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": str(SRC)}
    return subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, timeout=120)


def test_help_does_not_import_torch_or_sklearn():
    p = _python("import sys\nfrom typer.testing import CliRunner\nfrom forgerydet.cli.app import app\n"
                "r = CliRunner().invoke(app, ['--help'])\nassert r.exit_code == 0, r.output\n"
                "r = CliRunner().invoke(app, ['scan', '--help'])\nassert r.exit_code == 0, r.output\n"
                "print(sorted(m for m in ('torch', 'timm', 'facenet_pytorch', 'sklearn', 'scipy') if m in sys.modules))")
    assert p.returncode == 0, p.stderr
    assert p.stdout.strip() == "[]"  # sklearn and scipy took ~1 s of every command's start until 2026-12-07


def test_python_dash_m_runs_the_app():
    p = _python("import runpy, sys; sys.argv = ['forgerydet', '--version']; runpy.run_module('forgerydet', run_name='__main__')")
    assert p.returncode == 0, p.stderr
    assert p.stdout == f"forgerydet {__version__}\n"


# `forgerydet CMD [SUB] ...` (or `-m forgerydet ...`) up to the end of the shell command or inline code span
_WRITTEN = re.compile(r"(?:\bforgerydet|-m forgerydet)\s+([a-z][a-z-]*)(?:\s+([a-z][a-z-]*))?([^`&;|>\n]*)")
_DOCUMENTED = ["README.md", "models/README.md", "data/README.md", "bench/README.md", "Makefile", "tools/device_train.sh",
               "tools/device_ablation.sh"]


def _written_commands(text: str):
    """(line, command path, option names) of every forgerydet command written in a document or script."""
    from typer.main import get_command

    from forgerydet.cli.app import app

    root = get_command(app)
    text = text.replace("\\\n", " ")  # shell continuation lines
    for m in _WRITTEN.finditer(text):
        cmd, path, rest = root.commands.get(m.group(1)), [m.group(1)], m.group(3)
        if cmd is None:
            continue
        if hasattr(cmd, "commands"):  # a group: `weights export ...`
            if m.group(2) not in cmd.commands:
                continue
            cmd, path = cmd.commands[m.group(2)], path + [m.group(2)]
        elif m.group(2):
            rest = m.group(2) + rest
        known = {o for p in cmd.params for o in (*p.opts, *p.secondary_opts)}
        used = re.findall(r"(?<![\w-])--[a-z][a-z0-9-]*", rest)
        yield text[: m.start()].count("\n") + 1, " ".join(path), used, known


def test_every_option_the_docs_and_scripts_write_exists():
    """A renamed or removed option must not leave `make model`, the GPU script or a README example failing
    an hour in: every `forgerydet CMD --option` written in them is an option of CMD."""
    wrong, seen = [], 0
    for name in _DOCUMENTED:
        for line, cmd, used, known in _written_commands((REPO / name).read_text(encoding="utf-8")):
            seen += 1
            wrong += [f"{name}:{line}: forgerydet {cmd} {o}" for o in used if o not in known]
    assert not wrong, wrong
    assert seen > 50  # the pattern does find the commands


def test_the_docs_check_finds_an_unknown_option():
    found = list(_written_commands("run `forgerydet train --pairs p.csv --bogus 1` then\n"
                                   "forgerydet weights export a b --dtype fp16 --nope && forgerydet scan v.mp4"))
    assert [(c, [o for o in used if o not in known]) for _, c, used, known in found] == [
        ("train", ["--bogus"]), ("weights export", ["--nope"]), ("scan", [])]


@pytest.mark.parametrize("rank, said", [("0", True), ("1", False)])
def test_a_one_process_command_under_torchrun_is_refused_once(monkeypatch, tmp_path, rank, said):
    """`torchrun ... -m forgerydet calibrate`: every process scored the faces and rewrote the checkpoint, and the second
    found it rewritten by the first and failed (exit 1 after a success line). Only train and rebuild-bank share their
    work across torchrun's processes; any other command is refused, in one line said by rank 0."""
    monkeypatch.setenv("WORLD_SIZE", "2")
    monkeypatch.setenv("RANK", rank)
    ck = tmp_path / "c.safetensors"
    ck.write_bytes(b"not read")
    r = cli("calibrate", "--checkpoint", ck, "--pairs", tmp_path / "p.csv")
    assert r.exit_code == 1 and "Traceback" not in r.output
    lines = r.stderr.splitlines()
    assert lines == (["error: calibrate runs as one process: run it without torchrun (only train and rebuild-bank "
                      "share their work across torchrun's processes)"] if said else [])
    assert ck.read_bytes() == b"not read"


def test_a_one_process_command_s_help_under_torchrun_is_shown(monkeypatch):
    """A launcher that sets WORLD_SIZE for every process (Kubeflow's PyTorchJob): `--help` still answers."""
    monkeypatch.setenv("WORLD_SIZE", "2")
    monkeypatch.setenv("RANK", "0")
    monkeypatch.setattr("sys.argv", ["forgerydet", "calibrate", "--help"])
    r = cli("calibrate", "--help")
    assert r.exit_code == 0 and "--checkpoint" in r.output
