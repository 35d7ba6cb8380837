"""cli/common.py: the one red error line (printable, never rich markup), per-file notes, user errors as exit 1
(Ctrl-C as 130), and progress bars that stay off when the console is not a terminal."""

from __future__ import annotations

import errno
import io
import os

import pytest
import typer

from forgerydet.cli.common import (EXIT_INTERRUPTED, command_line, console, fail, note, progress_bar, shown,
                                   user_errors, working_directory)
from forgerydet.errors import ForgeryDetError
from tests.cli._cli_util import cli, one_error


def test_fail_prints_one_literal_line_and_returns_the_exit(capsys):
    e = fail("bad [bold]x[/] in two\nlines " + os.fsdecode(b"\xff"))
    assert isinstance(e, typer.Exit) and e.exit_code == 1
    assert fail("again", 7).exit_code == 7
    err = capsys.readouterr().err
    assert err.splitlines() == ["error: bad [bold]x[/] in two\\nlines \\xff", "error: again"]


def test_note_is_one_line_with_its_label(capsys):
    note("skipped:", "a\tb.png: no such file")
    note("", "plain")
    assert capsys.readouterr().err.splitlines() == ["skipped: a\\tb.png: no such file", "plain"]


def test_a_long_message_is_not_wrapped(capsys):
    msg = "x" * 300
    fail(msg)
    assert capsys.readouterr().err == f"error: {msg}\n"


@pytest.mark.parametrize("exc,line,code", [
    (ForgeryDetError("it broke: do this"), "error: it broke: do this", 1),
    (OSError(errno.EIO, "Input/output error", "/data/x.mp4"), "error: /data/x.mp4: Input/output error", 1),
    (OSError(errno.EROFS, "Read-only", "/ro/o.json"), "error: /ro/o.json: read-only file system: choose a writable location", 1),
    (KeyboardInterrupt(), "error: interrupted", EXIT_INTERRUPTED),
])
def test_user_errors(exc, line, code, capsys):
    with pytest.raises(typer.Exit) as e:
        with user_errors():
            raise exc
    assert e.value.exit_code == code and capsys.readouterr().err.splitlines() == [line]
    assert EXIT_INTERRUPTED == 130


def test_under_torchrun_rank_0_alone_says_a_stop_met_in_user_errors(monkeypatch, capsys):
    """A Ctrl-C or SIGTERM while train started (torch loading, its checks) reaches every torchrun process, and each
    printed "error: interrupted"; rank 0 says it for the run, as once training runs (cli/train)."""
    monkeypatch.setenv("WORLD_SIZE", "2")
    for rank, said in (("1", []), ("0", ["error: interrupted"])):
        monkeypatch.setenv("RANK", rank)
        with pytest.raises(typer.Exit) as e:
            with user_errors():
                raise KeyboardInterrupt
        assert e.value.exit_code == EXIT_INTERRUPTED and capsys.readouterr().err.splitlines() == said


def test_user_errors_let_bugs_through():
    with pytest.raises(ZeroDivisionError):
        with user_errors():
            1 / 0


def test_progress_bar_is_off_and_transient_off_a_terminal():
    bar = progress_bar("x")
    assert not console.is_terminal  # pytest captures stdout
    assert bar.disable and bar.live.transient


def test_off_a_terminal_a_progress_line_is_printed_every_minute_instead_of_the_bar():
    # `forgerydet scan photos/ > scan.log` (nohup, a job scheduler) said nothing for hours, as if it hung
    from rich.console import Console
    from rich.progress import BarColumn, TextColumn

    from forgerydet.cli import common

    log = Console(file=io.StringIO(), width=200)
    now = [0.0]
    assert not log.is_terminal
    bar = progress_bar(TextColumn("[bold]scanning"), BarColumn(), on=log)
    bar.clock = lambda: now[0]
    bar.t_start = bar.t_line = 0.0
    task = bar.add_task("scan", total=1500)
    with bar:
        for done, t in [(1, 10.0), (60, 59.0), (100, 61.0), (150, 90.0), (412, 7 * 60.0), (1400, 7200.0)]:
            now[0] = t
            bar.update(task, completed=done)
    assert log.file.getvalue().splitlines() == [
        "scanning: 100 of 1500 done after 1 min; about 14 min left",
        "scanning: 412 of 1500 done after 7 min; about 18 min left",
        "scanning: 1400 of 1500 done after 2 h 00 min; about 9 min left"]
    assert common.PROGRESS_LINE_EVERY_S == 60.0
    quiet = progress_bar(TextColumn("x"), on=log, lines=False)  # train prints its own step lines
    quiet.clock = lambda: 1e9
    quiet.update(quiet.add_task("x", total=None), completed=3)
    unsized = progress_bar(TextColumn("[bold]evaluating"), on=log)
    unsized.clock, unsized.t_start, unsized.t_line = (lambda: 1e4), 0.0, 0.0
    unsized.update(unsized.add_task("e", total=None), completed=3)
    assert log.file.getvalue().splitlines()[3:] == ["evaluating: 3 done after 2 h 47 min"]


def test_a_dumb_terminal_gets_the_progress_lines_not_silence(monkeypatch):
    """TERM=dumb (an Emacs shell, some CI consoles) is a terminal where rich draws no bar at all: the bar was on, the
    lines were off, and a scan of thousands of files said nothing for hours there."""
    from rich.console import Console
    from rich.progress import TextColumn

    monkeypatch.setenv("TERM", "dumb")
    dumb = Console(file=io.StringIO(), width=200, force_terminal=True)
    assert dumb.is_terminal and dumb.is_dumb_terminal
    bar = progress_bar(TextColumn("[bold]scanning"), on=dumb)
    assert bar.disable and bar.lines
    bar.clock, bar.t_start, bar.t_line = (lambda: 120.0), 0.0, 0.0
    bar.update(bar.add_task("scan", total=10), completed=4)
    assert dumb.file.getvalue().splitlines() == ["scanning: 4 of 10 done after 2 min; about 3 min left"]
    monkeypatch.setenv("TERM", "xterm")
    assert not progress_bar(TextColumn("x"), on=Console(file=io.StringIO(), force_terminal=True)).lines


def test_a_table_too_wide_for_the_terminal_becomes_a_line_per_row_with_every_cell_whole():
    from rich.console import Console
    from rich.table import Table

    from forgerydet.cli.common import table_or_lines

    rows = [["1", "0.4605", "0.9809", "\\[b]"], ["2", "0.4032", "0.9858", "-"]]  # "[b]": a string as add_row reads it

    def printed(width):
        t = Table(title="history")
        for h in ("epoch", "loss", "val AUC", "note"):
            t.add_column(h, justify="right")
        for row in rows:
            t.add_row(*row)
        out = Console(width=width, file=io.StringIO(), color_system=None)
        out.print(table_or_lines(t, rows, width))
        return out.file.getvalue()

    assert "┃ epoch ┃" in printed(80)  # wide enough: the table
    for width in (30, 20):  # rich cut the figures to "0…" here, or the last columns off
        text = printed(width)
        assert "…" not in text and max(len(line.rstrip()) for line in text.splitlines()) <= width
        assert " ".join(text.split()) == ("history epoch 1, loss 0.4605, val AUC 0.9809, note [b] "
                                          "epoch 2, loss 0.4032, val AUC 0.9858, note -")


def test_columns_0_is_dropped_so_that_rich_prints_at_all(monkeypatch):
    from rich.console import Console

    from forgerydet.cli.common import usable_columns

    for value, kept in (("0", False), ("00", False), ("120", True), ("", True), ("abc", True)):
        monkeypatch.setenv("COLUMNS", value)
        usable_columns()
        assert ("COLUMNS" in os.environ) is kept, value
    monkeypatch.setenv("COLUMNS", "0")
    usable_columns()
    assert Console(file=io.StringIO()).width == 80  # (with COLUMNS=0 rich's width was 0: nothing printed)


def test_a_path_with_markup_reaches_the_user_as_typed(tmp_path):
    p = tmp_path / "[red]x[/red].safetensors"
    one_error(cli("info", p), f"{p}")


def test_shown_makes_user_text_printable_and_never_markup():
    """One function makes names safe for every line and table cell: control characters as escapes, brackets as text."""
    from rich.console import Console

    c = Console(width=200, record=True)
    c.print(shown("run[/x]/a\nb [bold]Ann[/bold]"), highlight=False)
    assert c.export_text().strip() == "run[/x]/a\\nb [bold]Ann[/bold]"


def test_the_command_line_is_what_a_shell_would_take_back(monkeypatch):
    import shlex
    import sys

    argv = ["/venv/bin/forgerydet", "scan", "my clip.mp4", os.fsdecode(b"bad\xff.mp4"), "--frames", "64"]
    monkeypatch.setattr(sys, "argv", argv)
    line = command_line()
    assert line == "forgerydet scan 'my clip.mp4' 'bad\\xff.mp4' --frames 64"
    assert shlex.split(line)[1:3] == ["scan", "my clip.mp4"]


def test_the_working_directory_is_none_once_it_is_gone(tmp_path, monkeypatch):
    gone = tmp_path / "gone"
    gone.mkdir()
    monkeypatch.chdir(gone)
    assert working_directory() == str(gone)
    gone.rmdir()
    assert working_directory() is None  # os.getcwd() raises: the report then says no folder, nothing breaks
