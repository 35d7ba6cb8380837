"""runtime.py: the one device resolver (every bad name a ForgeryDetError saying what to use) and malloc tuning."""

from __future__ import annotations

import ctypes
import os
import sys
import threading

import pytest
import torch

from forgerydet import runtime
from forgerydet.errors import ForgeryDetError
from forgerydet.runtime import native_bf16, quiet_native_stderr, resolve_device, tune_malloc


def test_cpu_and_auto():
    assert resolve_device("cpu") == torch.device("cpu")
    assert resolve_device("auto") == torch.device("cuda" if torch.cuda.is_available() else "cpu")


def test_auto_without_a_gpu_is_the_cpu(monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    assert resolve_device("auto") == torch.device("cpu")


@pytest.mark.parametrize("name", ["bogus", "", "mps", "meta", "cuda:x", "gpu", "cpu:1"])
def test_names_other_than_cpu_and_cuda_are_refused(name):
    with pytest.raises(ForgeryDetError) as e:
        resolve_device(name)
    assert str(e.value) == f"--device {name!r}: use 'auto', 'cpu', 'cuda' or 'cuda:N'"


@pytest.mark.parametrize("name", ["cuda", "cuda:0"])
def test_cuda_without_a_gpu_says_use_cpu(name, monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    with pytest.raises(ForgeryDetError) as e:
        resolve_device(name)
    assert str(e.value) == f"--device {name!r}: no CUDA GPU is available here (use --device cpu)"


def test_cuda_index_past_the_gpus_names_the_range(monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 2)
    with pytest.raises(ForgeryDetError, match=r"^--device 'cuda:2': only 2 GPU\(s\) exist here \(use cuda:0\.\.cuda:1\)$"):
        resolve_device("cuda:2")
    assert resolve_device("cuda:1") == torch.device("cuda", 1)  # exists: no CUDA call is made
    assert resolve_device("cuda") == torch.device("cuda")


def test_tune_malloc_can_be_switched_off(monkeypatch):
    monkeypatch.setenv("FORGERYDET_MALLOC_TUNING", "0")
    called = []
    monkeypatch.setattr(ctypes, "CDLL", lambda *a: called.append(a))
    assert tune_malloc() is False and called == []


def test_tune_malloc_only_on_linux(monkeypatch):
    monkeypatch.delenv("FORGERYDET_MALLOC_TUNING", raising=False)
    monkeypatch.setattr(sys, "platform", "darwin")
    assert tune_malloc() is False


def test_tune_malloc_sets_both_glibc_options(monkeypatch):
    monkeypatch.delenv("FORGERYDET_MALLOC_TUNING", raising=False)
    monkeypatch.setattr(sys, "platform", "linux")
    calls = []

    class FakeLibc:
        def mallopt(self, param, value):
            calls.append((param, value))
            return 1

    monkeypatch.setattr(ctypes, "CDLL", lambda name: FakeLibc())
    assert tune_malloc() is True
    assert calls == [(runtime.M_MMAP_MAX, 0), (runtime.M_TRIM_THRESHOLD, 1 << 30)]
    assert (runtime.M_MMAP_MAX, runtime.M_TRIM_THRESHOLD) == (-4, -1)  # glibc's malloc.h values


def test_tune_malloc_without_glibc_is_false_not_an_error(monkeypatch):
    monkeypatch.delenv("FORGERYDET_MALLOC_TUNING", raising=False)
    monkeypatch.setattr(sys, "platform", "linux")

    def no_libc(name):
        raise OSError("not found")

    monkeypatch.setattr(ctypes, "CDLL", no_libc)
    assert tune_malloc() is False

    class Musl:  # mallopt missing, or refusing the setting
        def mallopt(self, param, value):
            return 0

    monkeypatch.setattr(ctypes, "CDLL", lambda name: Musl())
    assert tune_malloc() is False


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="glibc only")
def test_tune_malloc_on_this_machine(monkeypatch):
    monkeypatch.delenv("FORGERYDET_MALLOC_TUNING", raising=False)
    import platform

    if platform.libc_ver()[0] != "glibc":
        pytest.skip("not glibc")
    assert tune_malloc() is True


def test_native_bf16_is_what_torch_reports_of_this_cpu(monkeypatch):
    want = bool(torch.cpu._is_avx512_bf16_supported() or torch.cpu._is_amx_tile_supported())
    assert native_bf16() is want
    monkeypatch.setattr(torch.cpu, "_is_avx512_bf16_supported", lambda: False)
    monkeypatch.setattr(torch.cpu, "_is_amx_tile_supported", lambda: True)
    assert native_bf16() is True
    monkeypatch.setattr(torch.cpu, "_is_amx_tile_supported", lambda: False)
    assert native_bf16() is False
    monkeypatch.delattr(torch.cpu, "_is_amx_tile_supported")  # an older or newer torch without the check
    assert native_bf16() is False


def test_a_stop_inside_held_signals_comes_after_the_writes_that_belong_together():
    import os
    import signal

    from forgerydet.runtime import signals_held

    before = signal.getsignal(signal.SIGINT), signal.getsignal(signal.SIGTERM)
    done = []
    with pytest.raises(KeyboardInterrupt):
        with signals_held():
            os.kill(os.getpid(), signal.SIGTERM)  # `timeout`, a scheduler
            done.append("first write")
            os.kill(os.getpid(), signal.SIGINT)  # Ctrl-C
            done.append("second write")
    assert done == ["first write", "second write"]
    assert (signal.getsignal(signal.SIGINT), signal.getsignal(signal.SIGTERM)) == before
    with signals_held():  # nothing arrived: nothing raised
        done.append("third")
    assert done[-1] == "third"


def test_quiet_native_stderr_silences_fd2_and_restores_it(capfd):
    os.write(2, b"before\n")
    with quiet_native_stderr():
        os.write(2, b"libpng error: noise\n")
    os.write(2, b"after\n")
    assert capfd.readouterr().err == "before\nafter\n"


def test_quiet_native_stderr_in_two_threads_at_once_restores_fd2(capfd):
    """Each thread restored the fd 2 it found: the second in, finding /dev/null, left it there when it came out
    last, and a service that read images in two threads lost its stderr (tracebacks, logs) for good."""
    first_in, second_in, first_out = threading.Event(), threading.Event(), threading.Event()

    def first():
        with quiet_native_stderr():
            first_in.set()
            second_in.wait(10)
        first_out.set()

    def second():
        first_in.wait(10)
        with quiet_native_stderr():
            second_in.set()
            first_out.wait(10)
            os.write(2, b"still quiet\n")  # the other thread left; this one is still in its native call

    threads = [threading.Thread(target=f) for f in (first, second)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(20)
    os.write(2, b"after\n")
    assert capfd.readouterr().err == "after\n"


def test_sigterm_is_an_interrupt_once_asked_for():
    import os
    import signal
    import time

    from forgerydet.runtime import sigterm_as_interrupt

    before = signal.getsignal(signal.SIGTERM)
    try:
        sigterm_as_interrupt()
        with pytest.raises(KeyboardInterrupt):
            os.kill(os.getpid(), signal.SIGTERM)  # the handler runs before the next line
            time.sleep(1)
    finally:
        signal.signal(signal.SIGTERM, before)


def test_once_stopping_the_console_command_holds_a_second_stop_quits_at_a_third_and_forked_workers_still_stop():
    """A second Ctrl-C or SIGTERM while a stopped command wrote what it kept raised again inside those writes (a bare
    "interrupted", a traceback, or half the outputs): it is held and said (on_held); a third quits at once, as a user
    who insists expects. In a subprocess: its handlers are the process's own."""
    import subprocess

    code = """if True:
        import os, signal, sys, time
        from forgerydet.runtime import signals_held, sigterm_as_interrupt
        sigterm_as_interrupt(hold_later=True, on_held=lambda: print('held'))
        try:
            os.kill(os.getpid(), signal.SIGTERM); time.sleep(5); sys.exit('the first stop did not raise')
        except KeyboardInterrupt:
            with signals_held():  # a block of writes that belong together, once stopping: nothing raised after it
                os.kill(os.getpid(), signal.SIGINT)
            print('written')
            try:
                os.kill(os.getpid(), signal.SIGTERM); time.sleep(5); sys.exit('the third stop did not raise')
            except KeyboardInterrupt:
                print('quit')
        pid = os.fork()
        if pid == 0:  # a data-loading worker forked from it: every stop still stops it
            try:
                os.kill(os.getpid(), signal.SIGTERM); time.sleep(5)
            except KeyboardInterrupt:
                os._exit(7)
            os._exit(0)
        print('worker', os.waitpid(pid, 0)[1] >> 8)
    """
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert r.returncode == 0 and r.stdout.split() == ["held", "written", "quit", "worker", "7"], (
        r.returncode, r.stdout, r.stderr)


def test_software_versions_name_what_a_scores_last_digits_depend_on():
    import cv2
    import numpy as np
    import torch

    from forgerydet.runtime import software_versions

    v = software_versions()
    assert (v["torch"], v["opencv"], v["numpy"]) == (torch.__version__, cv2.__version__, np.__version__)
    assert v["torch_threads"] == torch.get_num_threads() and v["facenet-pytorch"] == "2.5.3" and v["timm"]
    assert v["python"] == ".".join(map(str, sys.version_info[:3]))


def test_process_rank_and_count_read_torchrun_s_environment(monkeypatch):
    from forgerydet.runtime import process_count, process_rank

    monkeypatch.delenv("RANK", raising=False)
    monkeypatch.delenv("WORLD_SIZE", raising=False)
    assert (process_rank(), process_count()) == (0, 1)  # no torchrun
    monkeypatch.setenv("RANK", "1")
    monkeypatch.setenv("WORLD_SIZE", "2")
    assert (process_rank(), process_count()) == (1, 2)
    monkeypatch.setenv("RANK", "")  # set but empty: as unset
    assert process_rank() == 0
