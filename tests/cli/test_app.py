"""cli/app.py: every command of the README's table is registered, --version, the start-up tuning, and `--help`
stays light (no torch)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from forgerydet import __version__, runtime
from tests.cli._cli_util import cli

SRC = Path(__file__).resolve().parents[2] / "src"
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


def test_help_does_not_import_torch():
    p = _python("import sys\nfrom typer.testing import CliRunner\nfrom forgerydet.cli.app import app\n"
                "r = CliRunner().invoke(app, ['--help'])\nassert r.exit_code == 0, r.output\n"
                "r = CliRunner().invoke(app, ['scan', '--help'])\nassert r.exit_code == 0, r.output\n"
                "print(sorted(m for m in ('torch', 'timm', 'facenet_pytorch') if m in sys.modules))")
    assert p.returncode == 0, p.stderr
    assert p.stdout.strip() == "[]"


def test_python_dash_m_runs_the_app():
    p = _python("import runpy, sys; sys.argv = ['forgerydet', '--version']; runpy.run_module('forgerydet', run_name='__main__')")
    assert p.returncode == 0, p.stderr
    assert p.stdout == f"forgerydet {__version__}\n"
