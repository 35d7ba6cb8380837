"""Imported first by the fork server that forks `faces.stills`' pool workers (stills.PRELOAD), and by nothing else.

A terminal's Ctrl-C reaches every process of the foreground group. The fork server ignores it only once its
preload is done (seconds of importing torch): a Ctrl-C before then ended it with a KeyboardInterrupt traceback
under the command's one line, and the command, finding its fork server gone, said a bare "interrupted". The
workers it forks keep its handlers, and an idle one printed a traceback of its own. The command's own process
stops the pool and says what it kept; the fork server and its workers ignore the terminal's Ctrl-C from here on.
"""

from __future__ import annotations

import signal
import sys
import threading


def is_fork_server() -> bool:
    """Whether this process is a multiprocessing fork server (`python -c 'from multiprocessing.forkserver import
    main; main(...)'`), which imports its preload list before anything else."""
    return sys.argv[:1] == ["-c"] and "multiprocessing.forkserver" in sys.modules


if is_fork_server() and threading.current_thread() is threading.main_thread():
    signal.signal(signal.SIGINT, signal.SIG_IGN)
