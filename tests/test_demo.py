"""demo.py's step headings: bold on a terminal, no escape codes in a log file (`make demo > demo.log`); a Ctrl-C and
a rerun after one, with the steps stood in for. The demo itself is run end to end by `make demo`, not here."""

from __future__ import annotations

import io
import json
import signal
from pathlib import Path

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
    e = _demo_cli_exit()
    assert e == 130 and Step.made.calls == [("wait", None), ("wait", 10)]  # waited for, not killed
    assert capsys.readouterr().err == ("demo: interrupted during `forgerydet train`; `make demo` again starts over "
                                       "(each step remakes its outputs in demo_out/)\n")


def test_a_rerun_reports_its_own_evaluation_not_the_scores_an_interrupted_run_left(tmp_path, monkeypatch):
    """`make demo` stopped during an evaluation left that evaluation's saved scores in demo_out/eval; the next run's
    evaluate refused to replace them (exit 1, allowed there) and the summary reported the old scores as its own."""
    shared = tmp_path / "shared"
    shared.mkdir()
    (shared / "README.md").write_text("samples\n")
    out = tmp_path / "demo_out"
    stale = out / "eval" / "pretrained" / "videos" / "metrics.json"
    stale.parent.mkdir(parents=True)
    stale.write_text(json.dumps({"interrupted": {"scored": 1}, "files": [{"path": "a.mp4", "score": 0.1}],
                                 "video_level": {"overall": {"auc": 0.1}}, "frame_level": {"overall": {"auc": 0.1}}}))

    def step(args, allow_fail=False):  # each forgerydet step, as far as the demo reads what it writes
        where = Path(args[args.index("--out") + 1]) if "--out" in args else None
        if args[0] == "train":
            where.mkdir(parents=True)
            (where / "metrics.jsonl").write_text('{"val_auc": 0.5, "val_auc_pair": 0.5, "epoch": 1}\n')
        if args[0] == "evaluate":
            if (where / "metrics.json").exists():
                return 1  # evaluate refuses to replace an unfinished evaluation's scores
            where.mkdir(parents=True)
            (where / "metrics.json").write_text(json.dumps({
                "files": [{"path": "a.mp4", "score": 0.7}], "video_level": {"overall": {"auc": 0.9}},
                "frame_level": {"overall": {"auc": 0.8}}}))
        return 0

    monkeypatch.setenv("FORGERYDET_SHARED_DATA", str(shared))
    monkeypatch.setattr(demo, "run", step)
    monkeypatch.setattr("sys.argv", ["demo", "--out", str(out), "--no-random-baseline"])
    demo.main()
    summary = json.loads((out / "summary.json").read_text())["pretrained"]
    assert (summary["video_auc_videos"], summary["video_scores"]) == (0.9, {"a.mp4": 0.7})


def test_a_second_demo_into_a_folder_one_is_running_in_is_refused(tmp_path, monkeypatch):
    """Two `make demo` at once in one clone both wrote demo_out/: pairs, runs and scores of one replaced the
    other's, and the second one's clean-up deleted the evaluation folder the first one was writing. The demo holds
    its --out for its whole run: a second one stops at once with one line, before any step."""
    from forgerydet.paths import folder_held

    out = tmp_path / "demo_out"
    steps = []
    monkeypatch.setattr(demo, "run", lambda args, allow_fail=False: steps.append(args) or 0)
    monkeypatch.setattr("sys.argv", ["demo", "--out", str(out)])
    with folder_held(out, "--out", "demo"), pytest.raises(SystemExit) as e:  # as a running demo holds it
        demo.main()
    assert str(e.value) == f"demo: --out {out}: another demo is writing there now: wait for it to end, or give another --out"
    assert steps == [] and not out.exists()  # nothing written: the holder removed the folder it made


def test_a_stop_between_steps_says_interrupted(monkeypatch, capsys):
    """SIGTERM (or Ctrl-C) while the demo itself works, between steps (making its generated faces), printed
    "demo: ; `make demo` again starts over": the bare KeyboardInterrupt has no text, and the fallback was never used."""
    def stopped():
        raise KeyboardInterrupt  # what the SIGTERM handler raises

    monkeypatch.setattr(demo, "main", stopped)
    e = _demo_cli_exit()
    assert e == 130
    assert capsys.readouterr().err == ("demo: interrupted; `make demo` again starts over (each step remakes its outputs "
                                       "in demo_out/)\n")


def _demo_cli_exit() -> int:
    """demo.cli()'s exit code, with the SIGTERM handler it installs put back afterwards."""
    before = signal.getsignal(signal.SIGTERM)
    try:
        with pytest.raises(SystemExit) as e:
            demo.cli()
    finally:
        signal.signal(signal.SIGTERM, before)
    return e.value.code


def test_without_shared_data_or_scikit_image_the_demo_says_so_in_one_line(tmp_path, monkeypatch):
    """scikit-image is a test extra, not a dependency: a `pip install .` without it and without the shared data ended
    `python -m forgerydet.demo` in a ModuleNotFoundError traceback, after the step heading."""
    out = tmp_path / "demo_out"
    monkeypatch.setattr(demo, "find_shared", lambda: None)
    monkeypatch.setattr(demo, "run", lambda args, allow_fail=False: pytest.fail(f"a step ran: {args}"))
    monkeypatch.setitem(__import__("sys").modules, "skimage", None)  # as if not installed
    monkeypatch.setitem(__import__("sys").modules, "skimage.data", None)
    monkeypatch.setattr("sys.argv", ["demo", "--out", str(out)])
    with pytest.raises(SystemExit) as e:
        demo.main()
    assert str(e.value).startswith("demo: no shared data here") and "pip install scikit-image" in str(e.value)
