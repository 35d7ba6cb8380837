"""demo.py's step headings: bold on a terminal, no escape codes in a log file (`make demo > demo.log`). The demo
itself is run end to end by `make demo`, not here."""

from __future__ import annotations

import io

from forgerydet import demo


class _Tty(io.StringIO):
    def isatty(self) -> bool:
        return True


def test_headings_are_plain_in_a_log_and_bold_on_a_terminal(monkeypatch, capsys):
    demo.say("train")
    assert capsys.readouterr().out == "\n== train\n"
    tty = _Tty()
    monkeypatch.setattr("sys.stdout", tty)
    monkeypatch.delenv("NO_COLOR", raising=False)
    demo.say("scan")
    assert tty.getvalue() == "\n\033[1m== scan\033[0m\n"
    monkeypatch.setenv("NO_COLOR", "1")
    demo.say("plain")
    assert tty.getvalue().endswith("\n== plain\n")
