"""demo.py's step headings: bold on a terminal, no escape codes in a log file (`make demo > demo.log`). The demo
itself is run end to end by `make demo`, not here."""

from __future__ import annotations

import io
import signal

import pytest

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


def test_ctrl_c_lets_the_running_step_stop_as_it_does_alone_and_is_one_line(monkeypatch, capsys):
    """A Ctrl-C in `make demo` reaches the running step too; subprocess.call killed that step 0.25 s later (before
    train or scan could say what they kept) and the demo ended in a KeyboardInterrupt traceback."""
    class Step:
        def __init__(self, argv):
            self.calls = []
            Step.made = self

        def wait(self, timeout=None):
            self.calls.append(("wait", timeout))
            if len(self.calls) == 1:
                raise KeyboardInterrupt  # the Ctrl-C, while the demo waits for the step
            return 130  # the step's own exit after its interrupted line

        def kill(self):
            self.calls.append("kill")

        def send_signal(self, sig):
            self.calls.append(("signal", sig))

    monkeypatch.setattr(demo.subprocess, "Popen", Step)
    monkeypatch.setattr(demo, "main", lambda: demo.run(["train", "--out", "x"]))
    before = signal.getsignal(signal.SIGTERM)
    try:
        with pytest.raises(SystemExit) as e:
            demo.cli()
    finally:
        signal.signal(signal.SIGTERM, before)
    assert e.value.code == 130 and Step.made.calls == [("wait", None), ("wait", 10)]  # waited for, not killed
    assert capsys.readouterr().err == ("demo: interrupted during `forgerydet train`; `make demo` again starts over "
                                       "(each step remakes its outputs in demo_out/)\n")
