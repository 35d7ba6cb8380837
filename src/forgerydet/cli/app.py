"""The `forgerydet` command: every command, registered here. Each one lives in the cli module of its area
(faces, train, scan, evaluate, enroll, model) and holds only its options, one call into the library, and the
rendering of what that call returned."""

from __future__ import annotations

from typing import Annotated, Optional

import typer

from forgerydet import __version__
from forgerydet.cli.enroll import enroll_cmd
from forgerydet.cli.evaluate import evaluate_cmd
from forgerydet.cli.faces import extract_cmd, pairs_cmd
from forgerydet.cli.model import info_cmd, weights_export_cmd, weights_list_cmd
from forgerydet.cli.scan import scan_cmd
from forgerydet.cli.train import calibrate_cmd, rebuild_bank_cmd, train_cmd

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
    from forgerydet.runtime import tune_malloc

    tune_malloc()


app.command("info")(info_cmd)
app.command("extract")(extract_cmd)
app.command("pairs")(pairs_cmd)
app.command("train")(train_cmd)
app.command("rebuild-bank")(rebuild_bank_cmd)
app.command("calibrate")(calibrate_cmd)
app.command("scan")(scan_cmd)
app.command("evaluate")(evaluate_cmd)
app.command("enroll")(enroll_cmd)
weights = typer.Typer(help="The packaged ImageNet weights of the backbones (offline).", no_args_is_help=True)
weights.command("list")(weights_list_cmd)
weights.command("export")(weights_export_cmd)
app.add_typer(weights, name="weights")

if __name__ == "__main__":  # pragma: no cover
    app()
