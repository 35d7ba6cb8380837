"""What every CLI command shares: the console, progress bars, and turning library errors into one red line.

Path arguments and options are declared `readable=False`: click's own readability check would stop an
unreadable file with exit code 2 and a usage box; the library says "permission denied" in one line instead."""

from __future__ import annotations

import contextlib
import io
import os
import re
import shlex
import sys
import time
from collections import Counter
from typing import Annotated, Any, Callable, Iterable, Iterator, Optional

import typer
from rich.console import Console, Group, RenderableType
from rich.markup import escape
from rich.progress import Progress, ProgressColumn, TextColumn
from rich.table import Table
from rich.text import Text

from forgerydet.errors import ForgeryDetError, current_folder, os_error_text, path_text, printable
from forgerydet.paths import folder_held, leftovers_text, sweep_leftovers
from forgerydet.runtime import process_count, process_rank


def usable_columns() -> None:
    """COLUMNS=0 (a shell on a pseudo-terminal that reports no size exports it: `docker exec -t`, a serial console)
    made rich draw on 0 columns, which prints nothing: verdicts, tables, --help and the error lines vanished (exit
    code 1, no word why). It is dropped, so that the terminal's own size, else 80 columns, is used."""
    columns = os.environ.get("COLUMNS", "")
    if columns.isdigit() and int(columns) == 0:  # (rich takes any digits as the width)
        del os.environ["COLUMNS"]


usable_columns()  # before the consoles read it (typer's help console reads it when it prints)
console = Console()
err_console = Console(stderr=True)

# --start / --end of scan, extract and enroll: parsed by faces.segment.parse_time inside user_errors (one red line)
Start = Annotated[Optional[str], typer.Option("--start", help="Sample each video from this time on: seconds (90.5), MM:SS or HH:MM:SS (default: its start); images are read whole.")]
End = Annotated[Optional[str], typer.Option("--end", help="Sample each video up to this time, as --start (default: its end).")]
EXIT_INTERRUPTED = 130  # Ctrl-C, as shells report SIGINT (128 + 2)
PRECISION_HELP = ("'fp32'; 'bf16' (about half the model time on a CPU with AVX512-BF16 or AMX, and on a GPU; scores "
                  "move slightly: the shipped model's video scores by up to 0.04); 'fp16' (GPU only). Default: as the "
                  "checkpoint was calibrated (`calibrate --precision`), else fp32.")


def command_line() -> str:
    """This run's command as a shell would take it back (`forgerydet scan 'my clip.mp4' --frames 64`), for outputs
    that must say how they were made; a file name's non-UTF-8 bytes as \\xNN (errors.path_text)."""
    return shlex.join(["forgerydet", *(path_text(a) for a in sys.argv[1:])])


def working_directory() -> str | None:
    """The folder the command runs in (relative paths in command_line() are from there); None when it has been
    deleted or cannot be read."""
    here = current_folder()
    return None if here is None else path_text(here)


def typed_options(ctx: typer.Context) -> set[str]:
    """The parameters a user typed on the command line, even at their default values (by the source's name: typer
    may bring its own click and its own enum)."""
    return {name for name in ctx.params
            if getattr(ctx.get_parameter_source(name), "name", "DEFAULT") not in ("DEFAULT", "DEFAULT_MAP")}


PROGRESS_LINE_EVERY_S = 60.0  # off a terminal (nohup, a job scheduler's log): a progress line this often


class _LoggedProgress(Progress):
    """A Progress that, where its bar is off because the console is not a terminal, prints a line every
    PROGRESS_LINE_EVERY_S instead: a scan of thousands of files sent to a log said nothing for hours, which
    looks like a hang (train has its own step lines)."""

    def __init__(self, *columns: str | ProgressColumn, label: str, lines: bool, clock: Any = time.monotonic,
                 **kwargs: Any) -> None:
        super().__init__(*columns, **kwargs)
        self.label, self.lines, self.clock = label, lines, clock
        self.t_start = self.t_line = clock()

    def update(self, task_id: Any, **kwargs: Any) -> None:
        super().update(task_id, **kwargs)
        now = self.clock()
        if not self.lines or now - self.t_line < PROGRESS_LINE_EVERY_S:
            return
        self.t_line = now
        task = next(t for t in self.tasks if t.id == task_id)
        done, total, took = int(task.completed), task.total, now - self.t_start
        of = f" of {int(total)}" if total else ""
        left = f"; about {minutes_text((took / done) * (total - done))} left" if total and 0 < done < total else ""
        first = self.columns[0] if self.columns else None  # "[bold]{task.description}": this task's own words
        label = first.render(task).plain if isinstance(first, TextColumn) else self.label
        self.console.print(f"{label or self.label}: {done}{of} done after {minutes_text(took)}{left}", highlight=False)


def minutes_text(seconds: float) -> str:
    """A duration as a person reads it in a progress line: '<1 min', '12 min', '2 h 05 min'."""
    minutes = round(seconds / 60)
    return "<1 min" if minutes < 1 else f"{minutes} min" if minutes < 60 else f"{minutes // 60} h {minutes % 60:02d} min"


def draws_bars(on: Console) -> bool:
    """Whether `on` can show a progress bar: a terminal, and not a dumb one (TERM=dumb or unknown: an Emacs shell,
    some CI consoles), where rich draws nothing at all: a scan or a training run there said nothing for hours."""
    return on.is_terminal and not on.is_dumb_terminal


def progress_bar(*columns: str | ProgressColumn, on: Console = console, disable: bool = False,
                 lines: bool = True) -> Progress:
    """The one progress-bar setup: transient (gone once done, so no stale bar sits above a result or an error
    line), and off where the console cannot draw it (a pipe or file gets the results, not bar frames; a dumb
    terminal): there, unless `lines` is False, a line every PROGRESS_LINE_EVERY_S says how far it is (named by the
    first column's text: "scanning: 412 of 1500 done after 7 min; about 19 min left")."""
    first = columns[0] if columns else None
    label = Text.from_markup(first.text_format if isinstance(first, TextColumn) else "").plain or "working"
    bars = draws_bars(on)
    return _LoggedProgress(*columns, console=on, transient=True, disable=disable or not bars,
                           label=label, lines=lines and not disable and not bars)


def shown(text: object) -> str:
    """User text (a file, folder, group or person name) made safe for a rich string: printable (undecodable bytes
    as \\xNN, a newline as \\n) and never read as rich markup (a folder "[run]" vanished from a line, "[/x]"
    raised a MarkupError after the work was done)."""
    return escape(printable(text))


def shows_whole(renderable: RenderableType, width: int, texts: Iterable[str]) -> bool:
    """Whether `renderable` printed on `width` columns shows every word of `texts` whole. A table wider than the
    terminal gets its columns folded (a word broken across lines) and then cropped (a column cut to '1.' or gone):
    either leaves a word of some text fewer times on screen than the texts hold it."""
    probe = Console(width=width, file=io.StringIO(), color_system=None, highlight=False)
    probe.print(renderable)
    on_screen = Counter(probe.file.getvalue().split())
    wanted = Counter(word for text in texts for word in str(text).split())
    return all(on_screen[word] >= n for word, n in wanted.items())


def table_or_lines(table: Table, rows: list[list[Any]], width: int | None,
                   whole: Iterable[str] | None = None) -> RenderableType:
    """`table` where it shows every text of `whole` (default: every cell of `rows`, a string read as rich markup, as
    table.add_row reads it) whole on `width` columns; else
    its title and one line per row, each cell after its column's header ("file a.mp4, verdict FAKE, p(fake) 0.662,
    frames 32/32"), which wraps between words and cuts nothing: on a narrow terminal (a split pane, a phone) rich
    cut a table's last columns to '0…' or off, a scan's score and frame counts, evaluate's AUC, info's figures."""
    texts = [[c if isinstance(c, Text) else Text.from_markup(str(c)) for c in row] for row in rows]  # as the table reads them
    if width is None or shows_whole(table, width, [c.plain for row in texts for c in row] if whole is None else whole):
        return table
    headers = [Text.from_markup(str(c.header)).plain for c in table.columns]
    lines = [Text.from_markup(str(table.title), style="bold")] if table.title else []
    for row in texts:
        lines.append(Text(", ").join(Text.assemble(f"{h} " if h else "", c) for h, c in zip(headers, row) if c.plain))
    return Group(*lines, *([Text.from_markup(str(table.caption))] if table.caption else []))


said_errors: list[str] = []  # every line `fail` printed in this process (cli.app.cli reads it)


# The face detector's and the model's settings are checked where they are made (faces/detect.DetectorConfig,
# model/config.ModelConfig), in the Python API's words: "min_face=0 must be >= 1". On the command line they are the
# options the user typed: "--min-face 0: must ...", the one wording of errors.option_error, which the other configs
# use directly. (A checkpoint's stored settings are said with its path first: "PATH: the stored model settings ...")
_SETTING_FIELD = re.compile(r"(detect_side|min_confidence|min_face|margin|size|batch_size|img_size|dim|grid|bank_size"
                             r"|momentum|temperature|reference|backbone)=(\S+) must ")


def fail(message: str, code: int = 1) -> typer.Exit:
    """Print one red line on stderr and return the Exit(code) to raise. File names in the message are shown
    printable (undecodable bytes as \\xNN, a newline as \\n) and never read as rich markup; a detector or model
    setting is named as its option."""
    field = _SETTING_FIELD.match(message)
    if field:
        message = f"--{field.group(1).replace('_', '-')} {field.group(2)}: must {message[field.end():]}"
    err_console.print(f"[bold red]error:[/] {shown(message)}", highlight=False, soft_wrap=True)
    said_errors.append(message)
    return typer.Exit(code)


def say(message: str) -> None:
    """One result line on stdout that holds file or person names (see `shown`)."""
    console.print(shown(message), highlight=False, soft_wrap=True)


@contextlib.contextmanager
def console_on(stream: Any) -> Iterator[None]:
    """`console` prints to `stream` (None: standard output, as always) until the block ends; then to whatever
    standard output is at the time again, as it was made (a test runner swaps sys.stdout per command)."""
    if stream is None:
        yield
        return
    console.file = stream
    try:
        yield
    finally:
        console.file = None  # type: ignore[assignment]  # rich: None = sys.stdout when printing


def note(label: str, message: str, style: str = "red") -> None:
    """One coloured line on stderr about one file of a batch (the batch goes on)."""
    head = f"[{style}]{shown(label)}[/] " if label else ""
    err_console.print(f"{head}{shown(message)}", highlight=False, soft_wrap=True)


@contextlib.contextmanager
def output_held(out: Any, option: str, what: str, *below: str) -> Iterator[None]:
    """paths.folder_held, saying in one notice line the temp files of killed writers that it removed there."""
    with folder_held(out, option, what, *below) as removed:
        if removed:
            note("notice:", leftovers_text(removed, out), style="yellow")
        yield


def say_swept(out: Any, *below: str) -> None:
    """Remove the temp files that killed writers left in an output folder not held (paths.sweep_leftovers); say so."""
    if removed := sweep_leftovers(out, *below):
        note("notice:", leftovers_text(removed, out), style="yellow")


@contextlib.contextmanager
def user_errors(say: Callable[[str], typer.Exit] = fail) -> Iterator[None]:
    """Turn a ForgeryDetError (and any OS error: missing file, no permission, read-only file system, full
    disk) into one red line (`say`: StartVoice.fail under torchrun) and exit code 1; Ctrl-C into "interrupted" and
    exit code 130."""
    try:
        yield
    except ForgeryDetError as e:
        raise say(str(e)) from None
    except OSError as e:
        raise say(os_error_text(e)) from None
    except KeyboardInterrupt as e:  # a library call that was stopped may say what it left (evaluate)
        if process_count() > 1 and process_rank() != 0:  # under torchrun every process is stopped: rank 0 says it
            raise typer.Exit(EXIT_INTERRUPTED) from None
        raise fail(str(e) or "interrupted", EXIT_INTERRUPTED) from None


@contextlib.contextmanager
def said_if_stopped(target, what: str = "", spared=None) -> Iterator[None]:
    """Ctrl-C or SIGTERM inside a command that writes `target` once, atomically, at its end (calibrate, rebuild-bank,
    enroll, weights export): its line says whether `target` was written and that `spared` (a checkpoint read, not
    written) is unchanged, as train, scan and extract say what they kept, not a bare "interrupted". `what` names
    `target` in words (a disk bank by its folder, `target` being its bank.json)."""
    from forgerydet.io import file_state

    before = file_state(target)
    try:
        yield
    except KeyboardInterrupt as e:
        if str(e):  # the library said what it left
            raise
        name = what or path_text(target)
        if file_state(target) != before:  # stopped after the write, while it said so
            raise KeyboardInterrupt(f"interrupted after {name} was written") from None
        kept = f"{name} is unchanged (nothing was written)" if before is not None else f"{name} was not written"
        if spared is not None and os.path.abspath(spared) != os.path.abspath(target):  # --out: the checkpoint read
            kept += f"; {path_text(spared)} is unchanged"
        raise KeyboardInterrupt(f"interrupted: {kept}; run the same command again") from None


class StartVoice:
    """Under torchrun, who says an error met before a training run's first step (or rebuild-bank's encoding): each
    process printed its own line, and where another run held --out, rank 1 (which does not take the folder's lock:
    rank 0 does) told to continue it with --resume. Each process's outcome is gathered once (training/distributed.start_outcomes): the line is
    said by rank 0, or by the other process it concerns alone (says_start_error); the others end with exit code 1
    and nothing said. An error after the start is each process's own (train's stop handling); one process: `fail`."""

    def __init__(self, device: str) -> None:
        self.device, self.open = device, process_count() > 1

    def events(self, view: Callable[[dict], None]) -> Callable[[dict], None]:
        """The run's on_event: `view`, after the 'start' event (every check of this process passed) has been agreed
        on; where another process's check failed (it says why), this one ends there, exit code 1."""
        def on_event(e: dict) -> None:
            if e["event"] == "start":
                self.started()
            view(e)
        return on_event

    def started(self) -> None:
        """Every check of this process passed (called before the work's first collective: training's 'start' event,
        rebuild-bank's encoding): agreed on under torchrun; where another process's check failed (it says why),
        this one ends here, exit code 1."""
        if self.open:
            self.open = False
            from forgerydet.training.distributed import start_outcomes

            if any(o is not None for o in start_outcomes(self.device, None)):
                raise typer.Exit(1)

    def fail(self, message: str, own: bool = True) -> typer.Exit:
        """`fail(message)` for this process's error; before the start under torchrun, a quiet Exit(1) where another
        process says the run's line. `own` False: the error is another process's end, with nothing to agree on."""
        if self.open and own:
            self.open = False
            from forgerydet.training.distributed import says_start_error, start_outcomes

            try:
                if not says_start_error(start_outcomes(self.device, message), process_rank()):
                    return typer.Exit(1)
            except (Exception, KeyboardInterrupt):  # no process group to agree in, or a peer gone: say it here
                pass
        return fail(message)
