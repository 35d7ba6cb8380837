"""The pool's fork server and its workers ignore a terminal's Ctrl-C (faces/poolserver.py): the command's own
process stops the pool and says what it kept."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

import forgerydet

_POOL = '''
import os, signal, sys
from concurrent.futures import ProcessPoolExecutor

if __name__ == "__main__":
    signal.signal(signal.SIGINT, lambda *_: None)  # this process lives on (a handler, unlike SIG_IGN, is not inherited)
    from forgerydet.faces import stills

    stills.PRELOAD = (*stills.PRELOAD, "slow_preload")  # a preload long enough for a Ctrl-C to land inside it
    with ProcessPoolExecutor(1, mp_context=stills.worker_context()) as ex:
        print(ex.submit(os.getpid).result(), flush=True)
        sys.stdin.readline()  # meanwhile a Ctrl-C reaches the idle worker
        print(ex.submit(os.getpid).result(), flush=True)
'''

_SLOW = '''
import os, time
open(os.environ["PRELOAD_MARK"], "w").close()
time.sleep(2)
'''


def _env(tmp_path: Path) -> dict:
    paths = [str(tmp_path), str(Path(forgerydet.__file__).parents[1]), os.environ.get("PYTHONPATH", "")]
    return dict(os.environ, PYTHONPATH=os.pathsep.join(p for p in paths if p), PRELOAD_MARK=str(tmp_path / "mark"))


def _wait_for(path: Path, seconds: float = 120) -> None:
    deadline = time.monotonic() + seconds
    while not path.exists():
        assert time.monotonic() < deadline, "the fork server never reached its preload"
        time.sleep(0.05)


@pytest.mark.skipif(not hasattr(os, "killpg"), reason="process groups")
def test_a_terminal_ctrl_c_leaves_the_fork_server_and_idle_workers_alone(tmp_path):
    """A terminal's Ctrl-C during the fork server's preload ended it with a KeyboardInterrupt traceback (and the
    pool with it); one while a worker waited for a task printed that worker's traceback and broke the pool."""
    import multiprocessing

    if "forkserver" not in multiprocessing.get_all_start_methods():
        pytest.skip("no fork server on this platform")
    (tmp_path / "pool.py").write_text(_POOL)
    (tmp_path / "slow_preload.py").write_text(_SLOW)
    proc = subprocess.Popen([sys.executable, str(tmp_path / "pool.py")], stdin=subprocess.PIPE,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=_env(tmp_path),
                            start_new_session=True)
    try:
        _wait_for(tmp_path / "mark")
        os.killpg(proc.pid, signal.SIGINT)  # the terminal's Ctrl-C: to every process of the group
        worker = proc.stdout.readline()
        if worker:
            os.killpg(proc.pid, signal.SIGINT)
            time.sleep(0.5)
        out, err = proc.communicate("\n", timeout=120)
    finally:
        proc.kill()
        proc.wait()
    assert "Traceback" not in err, err
    assert proc.returncode == 0 and worker.strip() and out.split() == [worker.strip()]


@pytest.mark.parametrize("argv", [["-c"], ["forgerydet"]])
def test_only_a_fork_server_ignores_ctrl_c(argv):
    code = ("import signal, sys, multiprocessing.forkserver; sys.argv = %r; "
            "signal.signal(signal.SIGINT, signal.default_int_handler); "  # a background job (`make test &`) starts
            "import forgerydet.faces.poolserver; "  # with SIGINT ignored: only the module may ignore it here
            "print(signal.getsignal(signal.SIGINT) is signal.SIG_IGN)" % (argv,))
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(
        p for p in (str(Path(forgerydet.__file__).parents[1]), os.environ.get("PYTHONPATH", "")) if p))
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, check=True).stdout
    assert out.strip() == str(argv == ["-c"])
