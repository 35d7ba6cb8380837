"""The `forgerydet` command: every command, registered here. Each one lives in the cli module of its area
(faces, train, scan, evaluate, enroll, model) and holds only its options, one call into the library, and the
rendering of what that call returned."""

from __future__ import annotations

import os
from typing import Annotated, Optional

import typer
from typer.core import TyperCommand, TyperGroup

from forgerydet import __version__
from forgerydet.cli.common import console, fail
from forgerydet.cli.enroll import enroll_cmd
from forgerydet.cli.evaluate import evaluate_cmd
from forgerydet.cli.faces import extract_cmd, pairs_cmd
from forgerydet.cli.model import info_cmd, weights_export_cmd, weights_list_cmd
from forgerydet.cli.scan import scan_cmd
from forgerydet.cli.train import calibrate_cmd, rebuild_bank_cmd, train_cmd

RICH_HELP_COLUMNS = 100  # narrower, typer's boxed help cut option names and defaults to '…' (--min-confiden…)


class _PlainFlags:
    """Help without a value type for flags: typer >= 0.29 shows `--help <bool>`, `--overwrite <bool>`, which reads as
    if the flag took a value (`--overwrite true`). A flag's metavar is set to '' before the help is drawn.
    Below RICH_HELP_COLUMNS of the console's width (an 80-column terminal, a dumb one, a pipe) the help is click's
    plain text, which wraps and cuts nothing; the boxed help is kept where it has room."""

    def format_help(self, ctx, formatter):  # noqa: ANN001, ANN201 - click's signature
        if console.width >= RICH_HELP_COLUMNS:  # the width rich draws the help at (80 on a dumb terminal)
            return super().format_help(ctx, formatter)  # type: ignore[misc]
        mode, self.rich_markup_mode = self.rich_markup_mode, None  # type: ignore[attr-defined]
        try:
            return super().format_help(ctx, formatter)  # type: ignore[misc]
        finally:
            self.rich_markup_mode = mode

    def get_params(self, ctx):  # noqa: ANN001, ANN201 - click's signature
        params = super().get_params(ctx)  # type: ignore[misc]
        for p in params:
            if getattr(p, "is_flag", False) and p.metavar is None:
                p.metavar = ""
        return params


class PlainFlagsCommand(_PlainFlags, TyperCommand):
    pass


class PlainFlagsGroup(_PlainFlags, TyperGroup):
    def format_commands(self, ctx, formatter):  # noqa: ANN001, ANN201 - click's signature
        """The plain help's command list with each summary whole (the first paragraph, as the boxed help shows it):
        click cut them to '...' at a third of the width ('pairs  Write OUT/pairs.csv...')."""
        rows = [(name, cmd.short_help or " ".join((cmd.help or "").split("\n\n")[0].split()))
                for name in self.list_commands(ctx) if (cmd := self.get_command(ctx, name)) and not cmd.hidden]
        if rows:
            with formatter.section("Commands"):
                formatter.write_dl(rows)


app = typer.Typer(
    cls=PlainFlagsGroup,
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


TORCHRUN_COMMANDS = ("train", "rebuild-bank")  # the commands that share their work across torchrun's processes


@app.callback()
def main(
    ctx: typer.Context,
    version: Annotated[
        Optional[bool],
        typer.Option("--version", callback=_version, is_eager=True, help="Print the version and exit."),
    ] = None,
) -> None:
    """forgerydet: trustworthy face-forgery verdicts on a laptop CPU or a GPU."""
    import sys

    from forgerydet.cli.stdout import guard_stdout
    from forgerydet.runtime import (import_torch_from_anywhere, process_count, process_rank, sigterm_as_interrupt,
                                    tune_malloc)

    # under torchrun every process did all of a command's work: two calibrate processes each rewrote the checkpoint
    if process_count() > 1 and ctx.invoked_subcommand not in TORCHRUN_COMMANDS and "--help" not in sys.argv[1:]:
        if process_rank() == 0:
            raise fail(f"{ctx.invoked_subcommand} runs as one process: run it without torchrun (only "
                       f"{' and '.join(TORCHRUN_COMMANDS)} share their work across torchrun's processes)")
        raise typer.Exit(1)  # rank 0 says it for all
    tune_malloc()
    import_torch_from_anywhere()  # a deleted current folder: torch's import would end the process later
    guard_stdout()  # `forgerydet scan ... | head`: the outputs are still written
    sigterm_as_interrupt()  # SIGTERM is Ctrl-C: scan and evaluate still write what they have


app.command("info", cls=PlainFlagsCommand)(info_cmd)
app.command("extract", cls=PlainFlagsCommand)(extract_cmd)
app.command("pairs", cls=PlainFlagsCommand)(pairs_cmd)
app.command("train", cls=PlainFlagsCommand)(train_cmd)
app.command("rebuild-bank", cls=PlainFlagsCommand)(rebuild_bank_cmd)
app.command("calibrate", cls=PlainFlagsCommand)(calibrate_cmd)
app.command("scan", cls=PlainFlagsCommand)(scan_cmd)
app.command("evaluate", cls=PlainFlagsCommand)(evaluate_cmd)
app.command("enroll", cls=PlainFlagsCommand)(enroll_cmd)
weights = typer.Typer(cls=PlainFlagsGroup, help="The packaged pretrained weights of the backbones (ImageNet; DINOv2: LVD-142M), offline.",
                      no_args_is_help=True)
weights.command("list", cls=PlainFlagsCommand)(weights_list_cmd)
weights.command("export", cls=PlainFlagsCommand)(weights_export_cmd)
app.add_typer(weights, name="weights")


def _empty_argument(args: list[str]) -> str | None:
    """What is wrong with an empty argument, if one was given: `--out "$OUT"` with OUT unset reached the commands as
    '', which a path reads as the current folder, so pairs/extract/train wrote there; no option takes ''."""
    for i, tok in enumerate(args):
        option = tok[:-1] if tok.startswith("--") and tok.endswith("=") else None  # --out=
        if tok == "" and i > 0 and args[i - 1].startswith("-") and args[i - 1] != "--":
            option = args[i - 1]
        if tok == "" or option:
            what = f"{option} was given an empty value" if option else "an empty argument was given"
            return f"{what} (an unset shell variable?): give a value"
    return None


def _typed_command(args: list[str]) -> str:
    """`forgerydet CMD [SUB]` as far as the arguments name commands (for 'see ... --help')."""
    from typer.main import get_command

    cmd, path = get_command(app), ["forgerydet"]
    for tok in args:
        sub = getattr(cmd, "commands", {}).get(tok)
        if sub is None:
            break
        cmd = sub
        path.append(tok)
    return " ".join(path)


def _dash_file_hint(args: list[str]) -> str:
    """For an unknown option that is really a file or folder whose name begins with '-' (`scan -x.png`): how to
    give it; '' when no argument before a `--` names one."""
    import os

    for a in args:
        if a == "--":
            break
        if a.startswith("-") and len(a) > 1 and os.path.lexists(a):
            return f"; to give the file {a}, write ./{a} or put -- before it"
    return ""


def cli(argv: list[str] | None = None) -> None:
    """The `forgerydet` console command: `app`, with a usage error (an unknown option, a missing argument, a value
    of the wrong type) told in one red line with exit code 1 like any other bad input, not click's boxed usage
    text and exit code 2. `forgerydet` alone still prints the help."""
    import sys

    try:  # typer >= 0.20 carries its own copy of click
        from typer._click.exceptions import ClickException, NoArgsIsHelpError, NoSuchOption, UsageError
    except ImportError:  # pragma: no cover
        from click.exceptions import ClickException, NoArgsIsHelpError, NoSuchOption, UsageError

    from forgerydet.cli.common import EXIT_INTERRUPTED, fail, said_errors
    from forgerydet.cli.stdout import PipeSafeStdout, guard_stdout
    from forgerydet.errors import os_error_text, out_of_memory
    from forgerydet.runtime import process_rank

    guard_stdout()  # already for --version, which prints before any command's callback
    said = len(said_errors)
    args = sys.argv[1:] if argv is None else argv
    empty = _empty_argument(args)
    if empty:
        sys.exit(fail(f"{empty} (see `{_typed_command(args)} --help`)").exit_code)
    try:
        code = app(args=argv, prog_name="forgerydet", standalone_mode=False)
        if code == EXIT_INTERRUPTED and len(said_errors) == said and process_rank() == 0:
            code = fail("interrupted", EXIT_INTERRUPTED).exit_code  # typer >= 0.29 turns a Ctrl-C that no command
            # handled (one while torch loads) into a silent 130; under torchrun rank 0 says it for every process
    except NoArgsIsHelpError as e:  # `forgerydet`, `forgerydet weights`: the help, on stdout as `--help` puts it
        if e.format_message():  # the plain help of a narrow terminal or a pipe (the boxed one is printed already)
            typer.echo(e.format_message())
        sys.exit(e.exit_code)
    except UsageError as e:
        where = e.ctx.command_path if e.ctx else "forgerydet"
        if where == "forgerydet":  # a missing option value is raised in the root's context: name the command typed
            where = _typed_command(args)
        hint = _dash_file_hint(args) if isinstance(e, NoSuchOption) else ""  # `scan -x.png`: "No such option: -x"
        code = fail(f"{e.format_message()}{hint} (see `{where} --help`)").exit_code
    except ClickException as e:
        code = fail(e.format_message()).exit_code
    except typer.Abort:  # Ctrl-C outside a command's own handling (under torchrun every process's: rank 0 says it)
        code = fail("interrupted", EXIT_INTERRUPTED).exit_code if process_rank() == 0 else EXIT_INTERRUPTED
    except (ImportError, MemoryError, RuntimeError) as e:  # under a memory limit (`ulimit -v`): torch's libraries or
        if not out_of_memory(e):  # its allocator; else a bug: its traceback
            raise
        code = fail(f"out of memory{f' loading a library ({e})' if isinstance(e, ImportError) else ''}: this process "
                    f"may use too little memory (a limit such as `ulimit -v`, or a container's); raise it, or free "
                    f"memory").exit_code
    sys.stdout.flush()  # a write still buffered fails here, not unseen at exit
    failed = sys.stdout.failed if isinstance(sys.stdout, PipeSafeStdout) else None
    if failed is not None and code in (0, None):  # what it printed is lost; the files it wrote are not
        code = fail(os_error_text(failed, "standard output")).exit_code
    sys.exit(code if isinstance(code, int) else 0)


if __name__ == "__main__":  # pragma: no cover
    cli()
