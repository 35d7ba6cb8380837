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
        sigterm_as_interrupt(hold_later=True)  # `timeout` or scheduler stop before that was a bare exit 143; a
        from forgerydet.cli.app import cli  # second stop while the first one's outputs are written is held
    except KeyboardInterrupt:
        sys.stderr.write("error: interrupted\n")
        sys.exit(130)
    try:
        cli()
    finally:  # the command has said how it ended: a stop during the interpreter's teardown (torch's, ~0.1-1 s, where
        ignore_stops()  # Python puts the default handlers back) ended it with exit code 143 or a traceback instead
