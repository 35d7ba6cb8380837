"""cli/stdout.py: standard output that outlives its reader (`| head`) and a full disk (`> /dev/full`), so the command
still writes its files and says once what it could not print."""

from __future__ import annotations

import pytest


def test_stdout_outlives_its_reader(tmp_path):
    """`forgerydet ... | head`: once the reader has gone, writes are dropped instead of raising BrokenPipeError, so
    the command still writes its files (it ended before them, with exit 1 and nothing said)."""
    import shlex
    import subprocess
    import sys

    from forgerydet.cli.stdout import PipeSafeStdout

    class Closed:
        def __init__(self) -> None:
            self.calls = 0

        def write(self, text):
            self.calls += 1
            raise BrokenPipeError

        def flush(self):
            raise BrokenPipeError

        encoding = "utf-8"

    stream = Closed()
    safe = PipeSafeStdout(stream)
    assert safe.write("verdict table") == len("verdict table") and safe.encoding == "utf-8"
    safe.flush()
    safe.write("more")
    assert stream.calls == 1  # dropped once the reader left
    # end to end: a command whose stdout is closed early still does its work after printing
    code = ("import sys\nfrom forgerydet.cli.common import console\nfrom forgerydet.cli.stdout import guard_stdout\nguard_stdout()\n"
            "for i in range(20000):\n    console.print(f'line {i}')\n"
            f"open({str(tmp_path / 'written.txt')!r}, 'w').write('done')\n")
    p = subprocess.run(f"{shlex.quote(sys.executable)} -c \"$CODE\" | head -c 10", shell=True,  # a clone path may hold spaces
                       capture_output=True, text=True, env={**__import__("os").environ, "CODE": code}, timeout=120)
    assert p.stdout == "line 0\nlin" and "BrokenPipe" not in p.stderr, p.stderr
    assert (tmp_path / "written.txt").read_text() == "done"


def test_stdout_on_a_full_disk_is_one_line_and_the_work_goes_on(tmp_path):
    """`forgerydet ... > /dev/full` (a log on a full disk): a traceback from the table's print (info, extract, weights
    list, --version), and a scan ended there before writing its --json, --csv and --report. Now the output is
    dropped, the work finishes, and the command ends with one line naming standard output and exit code 1."""
    import errno
    import os
    import subprocess
    import sys

    from forgerydet.cli.stdout import PipeSafeStdout

    class Full:
        calls = 0
        encoding = "utf-8"

        def write(self, text):
            Full.calls += 1
            raise OSError(errno.ENOSPC, "No space left on device")

        def flush(self):
            raise OSError(errno.ENOSPC, "No space left on device")

    safe = PipeSafeStdout(Full())
    assert safe.write("verdict table") == len("verdict table") and safe.failed.errno == errno.ENOSPC
    safe.write("more")
    safe.flush()
    assert Full.calls == 1
    if not os.path.exists("/dev/full"):
        pytest.skip("no /dev/full here")
    for args in (["--version"], ["weights", "list"]):
        with open("/dev/full", "w") as full:
            p = subprocess.run([sys.executable, "-m", "forgerydet", *args], stdout=full, stderr=subprocess.PIPE,
                               text=True, timeout=120)
        assert p.returncode == 1 and p.stderr == ("error: standard output: no space left on device: free some space "
                                                  "or write elsewhere\n"), (args, p.stderr)
