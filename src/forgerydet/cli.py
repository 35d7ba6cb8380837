"""The `forgerydet` command. Each command holds only its options and one call into the library;
commands live in cli_<area>.py modules that register themselves here."""

from __future__ import annotations

from typing import Annotated, Optional

import typer

from . import __version__

app = typer.Typer(
    name="forgerydet",
    help="Face-forgery (deepfake) detector: extract faces, build pairs, train, scan videos, evaluate.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)


def _version(value: bool) -> None:
    if value:
        typer.echo(f"forgerydet {__version__}")
        raise typer.Exit()


@app.callback()
def main(
    version: Annotated[
        Optional[bool],
        typer.Option("--version", callback=_version, is_eager=True, help="Print the version and exit."),
    ] = None,
) -> None:
    """forgerydet: trustworthy face-forgery verdicts on a laptop CPU or a GPU."""
    from .runtime import tune_malloc

    tune_malloc()


def _register() -> None:
    import importlib

    for name in ("cli_model", "cli_faces", "cli_train", "cli_scan", "cli_evaluate", "cli_enroll"):
        try:
            module = importlib.import_module(f"forgerydet.{name}")
        except ModuleNotFoundError as e:  # an area not built yet in this checkout
            if e.name != f"forgerydet.{name}":
                raise
            continue
        module.register(app)


_register()

if __name__ == "__main__":  # pragma: no cover
    app()
