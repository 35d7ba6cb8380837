"""Standard output that a command can always write to: a reader that left (`| head`), a full disk (`> /dev/full`),
a descriptor closed at start (`>&-`) or an encoding that lacks a character no longer ends a command before its
outputs are written (the app's callback installs it before every command: guard_stdout)."""

from __future__ import annotations

import contextlib
import io
import os
import sys


class PipeSafeStdout:
    """sys.stdout that outlives its reader: `forgerydet scan ... --json out.json | head` closed the pipe while the
    table was printed, and the BrokenPipeError ended the command before out.json was written. Once the reader has
    gone, output is dropped (the interpreter's last flush too) and the command finishes its work. Standard output
    that cannot be written (`> /dev/full`, a log on a full disk) is dropped as well, and kept in `failed` for the
    command to report at its end: the OSError was a traceback, or ended a scan before its --json and --report."""

    def __init__(self, stream) -> None:
        self._stream = stream
        self._gone = False
        self.failed: OSError | None = None

    def write(self, text: str) -> int:
        if not self._gone:
            try:
                return self._stream.write(text)
            except BrokenPipeError:
                self._reader_left()
            except OSError as e:
                self._cannot_write(e)
        return len(text)

    def flush(self) -> None:
        if not self._gone:
            try:
                self._stream.flush()
            except BrokenPipeError:
                self._reader_left()
            except OSError as e:
                self._cannot_write(e)

    def write_utf8(self, text: str) -> None:
        """`text` as UTF-8 whatever the stream's encoding: a document (`--json -`, `--csv -`) holds the bytes its file
        would (PYTHONIOENCODING=ascii wrote a CSV's file names as \\xNN, or raised before: a wrong path for a
        pipeline either way)."""
        buffer = getattr(self._stream, "buffer", None)
        if buffer is None:  # a text-only stream (a test runner's): it takes the text as it is
            self.write(text)
            return
        self.flush()
        if not self._gone:
            try:
                buffer.write(text.encode("utf-8"))
                buffer.flush()
            except BrokenPipeError:
                self._reader_left()
            except OSError as e:  # the document's own failure: its writer names the option
                self._reader_left()
                raise OSError(e.errno, e.strerror, "standard output") from None
        elif self.failed is not None:
            raise OSError(self.failed.errno, self.failed.strerror, "standard output")

    def _cannot_write(self, e: OSError) -> None:
        self.failed = e
        self._reader_left()

    def _reader_left(self) -> None:
        self._gone = True
        try:  # the descriptor too, so the final flush at exit does not raise again
            os.dup2(os.open(os.devnull, os.O_WRONLY), self._stream.fileno())
        except (OSError, ValueError, AttributeError, io.UnsupportedOperation):
            pass

    def __getattr__(self, name: str):
        return getattr(self._stream, name)


closed_at_start: set[int] = set()  # the standard descriptors (1: output) the command was started without


def guard_stdout() -> None:
    """Make the standard streams safe for the command (the app's callback calls it before every command): each of
    descriptors 0-2 that was closed at start (`>&-`, `2>&-`) is opened on /dev/null, else the next file opened took
    its number (the video being scanned became descriptor 2, where C libraries write their warnings) and Python had
    no sys.stdout (None: the first line printed raised AttributeError, after the scan, before its outputs were
    written); standard output writes a character its encoding lacks (PYTHONIOENCODING=ascii, a Latin-1 locale) as
    \\xNN, as standard error does, instead of raising UnicodeEncodeError at the verdict table with nothing written;
    and PipeSafeStdout is installed once."""
    for fd in (0, 1, 2):
        try:
            os.fstat(fd)
        except OSError:
            closed_at_start.add(fd)
            null = os.open(os.devnull, os.O_RDWR)  # the lowest free number: this one
            if null != fd:
                os.dup2(null, fd)
                os.close(null)
    if sys.stdout is None:
        sys.stdout = open(os.devnull, "w")  # noqa: SIM115 - the process's own, kept open
    if sys.stderr is None:
        sys.stderr = open(os.devnull, "w")  # noqa: SIM115
    with contextlib.suppress(AttributeError, ValueError, io.UnsupportedOperation):
        sys.stdout.reconfigure(errors="backslashreplace")  # type: ignore[union-attr]
    if not isinstance(sys.stdout, PipeSafeStdout):
        sys.stdout = PipeSafeStdout(sys.stdout)

