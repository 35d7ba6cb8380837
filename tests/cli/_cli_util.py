"""Shared by the CLI tests: invoke the app, read its one error line, and an option's default."""

from __future__ import annotations

import inspect
from typing import Callable

from typer.testing import CliRunner

from forgerydet.cli.app import app


def cli(*args: object, **env: str):
    """Run `forgerydet ARGS` in-process, on a wide console (rich would wrap the tables at 80 columns)."""
    r = CliRunner().invoke(app, [str(a) for a in args], env={"COLUMNS": "200", **env})
    r.flat = " ".join(r.output.split())
    return r


def one_error(r, *needles: str, code: int = 1) -> str:
    """Exit `code`, no exception escaped, no traceback, and stderr is one 'error: ...' line holding every needle."""
    assert r.exception is None or isinstance(r.exception, SystemExit), repr(r.exception)
    assert "Traceback" not in r.output and r.exit_code == code, r.output
    lines = [line for line in r.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("error: "), r.stderr
    for n in needles:
        assert n in lines[0], (n, lines[0])
    return lines[0]


def defaults(fn: Callable) -> dict[str, object]:
    """The parameter defaults of a command (or library) function."""
    return {k: p.default for k, p in inspect.signature(fn).parameters.items() if p.default is not inspect.Parameter.empty}
