"""What every CLI command shares: the console, and turning library errors into one red line."""

from __future__ import annotations

import contextlib
from typing import Iterator

import typer
from rich.console import Console

from .errors import ForgeryDetError

console = Console()
err_console = Console(stderr=True)


def fail(message: str) -> typer.Exit:
    """Print one red line on stderr and return the Exit(1) to raise."""
    err_console.print(f"[bold red]error:[/] {message}", highlight=False, soft_wrap=True)
    return typer.Exit(1)


@contextlib.contextmanager
def user_errors() -> Iterator[None]:
    """Turn a ForgeryDetError (and the OS errors a user can cause) into one red line and exit code 1."""
    try:
        yield
    except ForgeryDetError as e:
        raise fail(str(e)) from None
    except (FileNotFoundError, PermissionError, IsADirectoryError, NotADirectoryError) as e:
        raise fail(f"{e.strerror or type(e).__name__}: {e.filename}") from None
    except KeyboardInterrupt:
        raise fail("interrupted") from None
