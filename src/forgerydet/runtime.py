"""Process-level settings that make CPU inference and training fast; applied by the CLI at start-up."""

from __future__ import annotations

import contextlib
import ctypes
import ctypes.util
import os
import platform
import signal
import sys
import threading
from typing import TYPE_CHECKING, Callable, Iterator, Protocol

if TYPE_CHECKING:  # pragma: no cover
    import torch

class Progress(Protocol):
    """How every long library loop reports: progress(done, total) after each item, or progress(done, total, item)
    with the name of the item about to be worked on (a file). The CLI renders it; library code never prints."""

    def __call__(self, done: int, total: int, item: str = "") -> None: ...

M_TRIM_THRESHOLD = -1
M_MMAP_MAX = -4


def tune_malloc() -> bool:
    """Keep glibc from handing every large freed buffer back to the kernel.

    By default glibc serves allocations over 32 MB (a batch of activations) with mmap and unmaps them on
    free, so every training step or scan batch page-faults its working memory in again: measured here,
    kernel time exceeded user time and a training step ran ~3x slower (bench/README.md). Serving them from
    the heap and trimming only past 1 GB costs some resident memory instead. Linux/glibc only; set
    FORGERYDET_MALLOC_TUNING=0 to leave malloc alone. Returns whether the setting was applied.
    """
    if os.environ.get("FORGERYDET_MALLOC_TUNING", "1") == "0" or not sys.platform.startswith("linux"):
        return False
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
        return bool(libc.mallopt(M_MMAP_MAX, 0)) and bool(libc.mallopt(M_TRIM_THRESHOLD, 1 << 30))
    except (OSError, AttributeError):  # not glibc (musl, ...): nothing to tune
        return False


def resolve_device(device: str) -> "torch.device":
    """The one device resolver (scan, evaluate, train, rebuild-bank): 'auto' (a GPU when there is one),
    'cpu', 'cuda' or 'cuda:N'; anything else (also 'cpu:1': torch takes it and ignores the index), or a GPU that
    is not there, is a ForgeryDetError."""
    import torch

    from forgerydet.errors import option_error

    if device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        dev = torch.device(device)
    except (RuntimeError, ValueError, TypeError):
        dev = None
    if dev is None or dev.type not in ("cpu", "cuda") or (dev.type == "cpu" and dev.index not in (None, 0)):
        raise option_error("--device", device, "use 'auto', 'cpu', 'cuda' or 'cuda:N'")
    if dev.type == "cuda":
        if not torch.cuda.is_available():
            raise option_error("--device", device, "no CUDA GPU is available here (use --device cpu)")
        if dev.index is not None and dev.index >= torch.cuda.device_count():
            raise option_error("--device", device, f"only {torch.cuda.device_count()} GPU(s) exist here (use "
                                                   f"cuda:0..cuda:{torch.cuda.device_count() - 1})")
    return dev


_model_loaded = {"pid": None}  # the process that last loaded a model (a Scanner) and computed with it


def model_loaded() -> None:
    """Note that this process loads a model (Scanner): a process forked from it later must set torch up anew."""
    _model_loaded["pid"] = os.getpid()


def torch_after_fork(device: "torch.device") -> None:
    """Make torch usable in a process forked from the one that loaded a model (a multiprocessing 'fork' worker given a
    Scanner opened before it): the OpenMP thread pool this torch computes with does not survive a fork, and a forked
    worker's first scan hung for good in its first convolution. One thread per process works (the processes then
    use the cores). CUDA cannot be used after a fork at all: that is a ForgeryDetError saying what to do instead.
    Nothing where this process, or none, loaded the model: a 'spawn' or 'forkserver' worker given a pickled Scanner
    starts torch afresh (a fork server forks its workers, but never loaded a model: taking any fork for this one set
    their threads to one and refused a GPU scanner there)."""
    import torch

    from forgerydet.errors import ForgeryDetError

    if _model_loaded["pid"] in (None, os.getpid()):
        return
    if device.type == "cuda":
        raise ForgeryDetError("a model on a GPU cannot be used in a process forked from the one that loaded it (CUDA "
                              "does not survive a fork): load it in each worker, or start workers with 'spawn'")
    torch.set_num_threads(1)


def native_bf16() -> bool:
    """Whether this CPU computes bf16 in hardware (AVX512-BF16 or AMX), where `--precision bf16` roughly halves a
    scan's model time (lite0 on 32 faces 0.30 -> 0.16 s, 2-core AMD EPYC VM, 2026-12-06); elsewhere bf16 is emulated."""
    import torch

    cpu = getattr(torch, "cpu", None)
    checks = ("_is_avx512_bf16_supported", "_is_amx_tile_supported")
    return any(bool(getattr(cpu, c, lambda: False)()) for c in checks)


def process_rank() -> int:
    """This process's rank in a torchrun run (torchrun's RANK), 0 without torchrun: read from the environment, so
    the CLI knows it before torch loads. Rank 0 writes a run's files and speaks for it."""
    return int(os.environ.get("RANK") or 0)


def process_count() -> int:
    """How many processes the run has (torchrun's WORLD_SIZE), 1 without torchrun."""
    return int(os.environ.get("WORLD_SIZE") or 1)


_stopping: dict = {"owner": -1, "stops": 0, "on_held": None}  # the process whose later stops are held, how many came
QUIT_AT = 3  # the stop that no longer waits for the writes of the first: a user who insists can always quit


def sigterm_as_interrupt(hold_later: bool = False, on_held: Callable[[], None] | None = None) -> None:
    """SIGTERM (`timeout`, a job scheduler, `docker stop`) raises KeyboardInterrupt from now on, as Ctrl-C does, so a
    command (or the demo) says it in one line and still writes what it has. Only the main thread can set a handler.

    hold_later (the console command): Ctrl-C too, and the second stop is held (on_held() is called, to say so): a
    second Ctrl-C or SIGTERM while the command writes its last checkpoint or outputs after the first (an impatient
    Ctrl-C, a scheduler's repeated stop) broke off those writes with a bare "interrupted" or a traceback, and the
    command now still ends with its own line of what it kept. The third (QUIT_AT) raises again: a user who insists
    quits at once, leaving those writes undone (each is atomic: no half-written file). A process forked from this
    one (a data-loading worker) still stops at each signal."""
    if threading.current_thread() is threading.main_thread():
        if hold_later:
            _stopping.update(owner=os.getpid(), stops=0, on_held=on_held)
        for sig in (signal.SIGINT, signal.SIGTERM) if hold_later else (signal.SIGTERM,):
            signal.signal(sig, _interrupt)


def _held(count: int) -> bool:
    """Whether `count` more stops of this process are held (see sigterm_as_interrupt), counting them."""
    if os.getpid() != _stopping["owner"]:
        return False
    before = _stopping["stops"]
    _stopping["stops"] += count
    if before == 0 or _stopping["stops"] >= QUIT_AT:  # the first stop, or one too many: raised
        return False
    if _stopping["on_held"] is not None:
        _stopping["on_held"]()
    return True


def _interrupt(signum: int, frame: object) -> None:
    if _held(1):  # already stopping: it finishes its writes and says what it kept
        return
    raise KeyboardInterrupt


def ignore_stops() -> None:
    """Ctrl-C and SIGTERM are ignored from now on, for a command that is already stopping and saying how to go on: a
    second signal (under torchrun every process gets the terminal's Ctrl-C and then torchrun's forwarded one) raised
    again inside that report and replaced its line with a bare "interrupted". Only the main thread can set it."""
    if threading.current_thread() is threading.main_thread():
        for sig in (signal.SIGINT, signal.SIGTERM):
            signal.signal(sig, signal.SIG_IGN)


@contextlib.contextmanager
def signals_held() -> Iterator[None]:
    """Ctrl-C and SIGTERM arriving inside are held until its end, then raised as KeyboardInterrupt: for writes that
    belong together (a training epoch's best and last checkpoints), so that a stop never leaves one without the
    other. Outside the main thread, where no handler can be set, it holds nothing."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    arrived: list[int] = []
    before = {sig: signal.signal(sig, lambda signum, frame: arrived.append(signum))
              for sig in (signal.SIGINT, signal.SIGTERM)}
    try:
        yield
    finally:
        for sig, handler in before.items():
            signal.signal(sig, handler)
    if arrived:
        if before[signal.SIGTERM] is _interrupt and _held(len(arrived)):  # stopping already: later stops, held
            return
        raise KeyboardInterrupt


_quiet_lock = threading.Lock()
_quiet = {"inside": 0, "saved": -1}  # threads inside quiet_native_stderr now, and fd 2 as it was before the first


@contextlib.contextmanager
def quiet_native_stderr() -> Iterator[None]:
    """Silence file descriptor 2 for a native call: libpng ("libpng error: ..."), libjpeg and OpenCV's own
    "[ WARN ]" lines go straight to it and would sit beside our one-line error. Threads inside it at once share
    one silence, and the last one out restores fd 2 (each restoring the fd 2 it found left /dev/null for good)."""
    with _quiet_lock:
        if _quiet["inside"] == 0:
            _quiet["saved"] = -1
            with contextlib.suppress(OSError, ValueError, AttributeError):  # no fd 2 or no /dev/null: left as is
                sys.stderr.flush()
                _quiet["saved"] = os.dup(2)
                devnull = os.open(os.devnull, os.O_WRONLY)
                os.dup2(devnull, 2)
                os.close(devnull)
        _quiet["inside"] += 1
    try:
        yield
    finally:
        with _quiet_lock:
            _quiet["inside"] -= 1
            if _quiet["inside"] == 0 and _quiet["saved"] >= 0:
                os.dup2(_quiet["saved"], 2)
                os.close(_quiet["saved"])


HEAVY_IMPORTS = ("torch", "torchvision", "timm")


def import_torch_from_anywhere() -> None:
    """Import torch, torchvision and timm now when the current folder has been deleted under the process (`mkdir d;
    cd d; rmdir ../d; forgerydet scan /abs/clip.mp4`): there oneMKL, loaded with torch, ended the process with
    "Intel oneMKL FATAL ERROR: Cannot load libtorch_cpu.so" (exit code 2, no Python error to catch), and
    torch._dynamo's import (through torchvision) asks for the current folder. The imports run from the root folder
    and the process then returns into the deleted one, so relative paths still mean what they meant (they fail as
    missing). Nothing where the current folder is there."""
    from forgerydet.errors import current_folder

    if current_folder() is not None:
        return
    import importlib

    here = os.open(".", os.O_RDONLY)
    try:
        os.chdir("/")
        for name in HEAVY_IMPORTS:
            importlib.import_module(name)
    finally:
        os.fchdir(here)
        os.close(here)


def software_versions() -> dict[str, object]:
    """The software beyond forgerydet's own version that a score depends on, as a scan records it (settings.software):
    Python, torch and its thread count (which moves a score in its 7th digit), timm, facenet-pytorch, OpenCV (the
    video decoder) and numpy; None for a package not installed as a distribution."""
    from importlib import metadata

    import cv2
    import torch

    def version(dist: str) -> str | None:
        try:
            return metadata.version(dist)
        except metadata.PackageNotFoundError:
            return None

    return {"python": platform.python_version(), "torch": torch.__version__, "torch_threads": torch.get_num_threads(),
            "timm": version("timm"), "facenet-pytorch": version("facenet-pytorch"), "opencv": cv2.__version__,
            "numpy": version("numpy")}
