"""Process-level settings that make CPU inference and training fast; applied by the CLI at start-up."""

from __future__ import annotations

import ctypes
import ctypes.util
import os
import sys

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
