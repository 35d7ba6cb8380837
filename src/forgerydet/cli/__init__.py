"""The command line: argument parsing, one library call per command, and rendering (app.py registers them).

`main` is the console command's entry point. It imports nothing before its `try`, so that a Ctrl-C while the
command's modules load (typer, rich, ~0.5 s) is the same one line as later, not a traceback."""

from __future__ import annotations


def main() -> None:
    """`forgerydet`: cli.app.cli, with a Ctrl-C or SIGTERM during its imports told in one line and exit code 130."""
    import sys

    try:
        from forgerydet.runtime import ignore_stops, sigterm_as_interrupt

        # SIGTERM is Ctrl-C from the start: the app's own handler came after typer and torch loaded (~1-2 s), and a
        # `timeout` or scheduler stop before that was a bare exit 143; a second stop while the first one's outputs
        sigterm_as_interrupt(hold_later=True, on_held=_say_held)  # are written is held
        from forgerydet.cli.app import cli
    except KeyboardInterrupt:
        from forgerydet.runtime import process_rank

        if process_rank() == 0:  # under torchrun every process is stopped: rank 0 says it
            sys.stderr.write("error: interrupted\n")
        sys.exit(130)
    try:
        cli()
    finally:  # the command has said how it ended: a stop during the interpreter's teardown (torch's, ~0.1-1 s, where
        ignore_stops()  # Python puts the default handlers back) ended it with exit code 143 or a traceback instead


def _say_held() -> None:
    """What a second Ctrl-C or SIGTERM gets while the command writes what it kept (runtime.sigterm_as_interrupt)."""
    import sys

    try:  # inside a signal handler: a closed or broken stderr must not raise there
        sys.stderr.write("\nnotice: already stopping: writing what was kept first (stop once more to quit at once, "
                         "without it)\n")
        sys.stderr.flush()
    except (OSError, ValueError):
        pass
