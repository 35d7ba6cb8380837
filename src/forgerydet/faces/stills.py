"""Images and videos -> face crops with landmarks, fast: a pool of worker processes, each running MTCNN.
Still images go in batches, with a retry on a black-padded copy for tight crops where the face fills the image
(MTCNN misses those; the padding gives the 1.3x crop its margin, as a face at a frame edge gets at scan
time). Videos go one per task through faces/pipeline.py's frame sampling and tracking, so several videos are
decoded and detected at once, and alongside the last image batches.

Used by `pairs --self-blend`. Results come back in input order (images, then videos) with only a few tasks
ahead in memory (a video's crops are megabytes; thousands of FF++ videos must not pile up); nothing here
writes files.
"""

from __future__ import annotations

import os
from collections import deque
from concurrent.futures import ProcessPoolExecutor
from concurrent.futures.process import BrokenProcessPool
from dataclasses import dataclass
from multiprocessing import get_context
from pathlib import Path
from typing import Any, Callable, Iterable, Iterator, Sequence

import cv2
import numpy as np

from forgerydet.errors import ForgeryDetError
from forgerydet.faces.detect import FaceDetector, crop_face
from forgerydet.faces.pipeline import ExtractConfig, SourceFaces, detect_source
from forgerydet.io import read_image
from forgerydet.runtime import signals_held

PAD = 0.25  # tight-crop retry: black border of this fraction of the image side on every edge
CHUNK = 32  # images per worker task
AHEAD = 2  # tasks submitted ahead per worker process (bounds memory; keeps every process busy)


@dataclass
class ImageFace:
    """The largest face of one image: crop (S,S,3) RGB uint8 and its 5 landmarks in crop pixels.

    status: 'ok' (found as is), 'padded' (found only on the padded copy: a tight crop), 'no_face', 'error'."""

    path: Path
    status: str
    crop: np.ndarray | None = None
    landmarks: np.ndarray | None = None  # (5,2)
    message: str = ""


def _largest(det) -> int:
    area = (det.boxes[:, 2] - det.boxes[:, 0]) * (det.boxes[:, 3] - det.boxes[:, 1])  # (N,)
    return int(np.argmax(area))


def faces_of_images(paths: Sequence[Path], detector: FaceDetector) -> list[ImageFace]:
    """The largest face of each image (one process; see `iter_faces` for the pool)."""
    cfg = detector.config
    out: list[ImageFace | None] = [None] * len(paths)
    images: dict[int, np.ndarray] = {}
    for i, p in enumerate(paths):
        try:
            images[i] = read_image(p)  # from bytes: any file name; says unreadable vs corrupt
        except ForgeryDetError as e:
            out[i] = ImageFace(p, "error", message=str(e))
    ok = list(images)
    dets = dict(zip(ok, detector.detect([images[i] for i in ok])))
    padded = {}  # tight crops: the image with a black border of PAD x its side on every edge
    for i in (i for i in ok if len(dets[i]) == 0):
        b = int(round(PAD * max(images[i].shape[:2])))
        padded[i] = cv2.copyMakeBorder(images[i], b, b, b, b, cv2.BORDER_CONSTANT, value=(0, 0, 0))
    retry = dict(zip(padded, detector.detect(list(padded.values())))) if padded else {}
    for i in ok:
        det, img, status = dets[i], images[i], "ok"
        if len(det) == 0:
            det, img, status = retry[i], padded[i], "padded"
        if len(det) == 0:
            out[i] = ImageFace(paths[i], "no_face", message=f"{paths[i]}: no face found (also not with padding)")
            continue
        k = _largest(det)
        crop, lm, _ = crop_face(img, det.boxes[k], cfg.margin, cfg.size, det.landmarks[k])
        out[i] = ImageFace(paths[i], status, crop, lm)
    return out


@dataclass
class VideoFaces:
    """One video's sampled frames and faces (faces/pipeline.SourceFaces), or why it could not be read."""

    path: Path
    found: SourceFaces | None = None
    error: str = ""


def faces_of_video(path: Path, config: ExtractConfig, detector: FaceDetector) -> VideoFaces:
    try:
        return VideoFaces(path, detect_source(path, config, detector))
    except ForgeryDetError as e:
        return VideoFaces(path, error=str(e))


Task = tuple[str, Any]  # ("images", [paths of one chunk]) or ("video", path)


def _faces_of(task: Task, config: ExtractConfig, detector: FaceDetector) -> list[ImageFace] | list[VideoFaces]:
    """One task's results, in this process: a chunk's ImageFaces, or a video's one VideoFaces."""
    kind, what = task
    return faces_of_images(what, detector) if kind == "images" else [faces_of_video(what, config, detector)]


_WORKER: tuple[ExtractConfig, FaceDetector] | None = None
WATCH_S = 1.0  # how often a worker checks that the process that started it is still there


def exit_with_parent(parent: int, every: float = WATCH_S, stop: Any = None) -> None:
    """End this worker process once `parent` is gone, or at once when `parent` sets the multiprocessing Event
    `stop`. A pool's workers outlive a parent that was killed (SIGTERM from a job scheduler, the OOM killer) and
    would go on detecting faces nobody reads, holding a gigabyte each, until their task queue breaks; a daemon
    thread polls the parent pid and exits instead."""
    import threading
    import time

    started_by = os.getppid()  # `parent` itself (spawn) or the fork server that forked this process

    def alive(pid: int) -> bool:
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return False
        except PermissionError:  # pragma: no cover - a pid reused by another user's process
            return False
        return True

    def watch() -> None:
        # a fork server exits once `parent` is gone, so this process's own parent changes too
        while os.getppid() == started_by and alive(parent):
            if stop is None:
                time.sleep(every)
            elif stop.wait(every):
                break
        os._exit(1)

    threading.Thread(target=watch, name="forgerydet-parent-watch", daemon=True).start()


def _init_worker(config: ExtractConfig, parent: int | None = None, stop: Any = None) -> None:
    global _WORKER
    import torch

    if parent is not None:
        exit_with_parent(parent, stop=stop)

    torch.set_num_threads(1)  # one thread per process: processes, not threads, use the cores
    cv2.setNumThreads(1)
    _WORKER = (config, FaceDetector(config.detector))


PRELOAD = ("forgerydet.faces.poolserver", "torch", "torchvision", "facenet_pytorch", "forgerydet.faces.cascade",
           "forgerydet.faces.stills")  # poolserver first: a terminal's Ctrl-C during the rest is ignored


def worker_context():
    """The multiprocessing context of the pool: a fork server that has imported torch, torchvision and
    facenet-pytorch once, so each worker is a fork of it and starts in milliseconds instead of spending ~1.5-3 s
    of a core on those imports (on 2 cores, 5-10 % of a 4,800-photo `pairs` run). The server runs no torch op
    before forking (no thread pools to break), and exits when this process does. Where the platform has no
    fork server (Windows), or where it cannot be started (a sandbox without Unix sockets), plain spawn."""
    import multiprocessing
    from multiprocessing import forkserver

    if "forkserver" not in multiprocessing.get_all_start_methods():
        return get_context("spawn")
    ctx = get_context("forkserver")
    ctx.set_forkserver_preload(list(PRELOAD))
    try:
        forkserver.ensure_running()  # a no-op once it runs
    except OSError:
        return get_context("spawn")
    return ctx


def start_pool_early(workers: int) -> None:
    """Start the fork server (and its ~2 s of imports) now, so that it overlaps whatever the caller does before
    `iter_faces` (listing and grouping thousands of files); `iter_faces` then finds it running. Nothing for
    workers == 1."""
    if pool_size(workers) > 1:
        worker_context()


def _work(task: Task) -> list[ImageFace] | list[VideoFaces]:
    assert _WORKER is not None
    return _faces_of(task, *_WORKER)


def _ordered(submit: Callable[[Any], Any], tasks: Iterable[Any], ahead: int) -> Iterator[Any]:
    """Results of `tasks` in order, with at most `ahead` submitted and not yet consumed."""
    pending: deque = deque()
    for task in tasks:
        pending.append(submit(task))
        if len(pending) >= ahead:
            yield pending.popleft().result()
    while pending:
        yield pending.popleft().result()


def submit_held(ex: ProcessPoolExecutor, task: Task) -> Any:
    """ex.submit(_work, task), with Ctrl-C and SIGTERM held until it returns. A submit may start a worker, and a
    stop that arrived while the fork server was still forking it (seconds, while it imports torch) left a worker
    the pool never registered: the pool's shutdown did not wait for it, the main process exited and removed the
    pool's semaphores, and the worker, reading them late, printed a multiprocessing traceback after the command's
    one line. Raised once the worker is the pool's, the stop's shutdown waits for it."""
    with signals_held():
        return ex.submit(_work, task)


def pool_size(workers: int) -> int:
    """Worker processes for `workers` (<= 0: one per core)."""
    return max(1, os.cpu_count() or 1) if workers <= 0 else workers


def iter_faces(images: Sequence[Path], videos: Sequence[Path], config: ExtractConfig,
               workers: int = 0) -> Iterator[ImageFace | VideoFaces]:
    """One ImageFace per image, then one VideoFaces per video, in order. workers <= 0: one process per core;
    1: in this process."""
    workers = pool_size(workers)
    chunks = [list(images[i : i + CHUNK]) for i in range(0, len(images), CHUNK)]
    tasks: list[Task] = [("images", c) for c in chunks] + [("video", Path(v)) for v in videos]
    if workers == 1 or len(tasks) <= 1:
        det = FaceDetector(config.detector)
        for task in tasks:
            yield from _faces_of(task, config, det)
        return
    ctx = worker_context()
    stop = ctx.Event()
    with ProcessPoolExecutor(min(workers, len(tasks)), mp_context=ctx, initializer=_init_worker,
                             initargs=(config, os.getpid(), stop)) as ex:
        try:
            for res in _ordered(lambda t: submit_held(ex, t), tasks, AHEAD * workers):
                yield from res
        except (BrokenProcessPool, EOFError, ConnectionError):  # a worker, or the fork server (EOF on its pid)
            raise ForgeryDetError(POOL_BROKEN) from None
        except BaseException:  # a stop, an error, or a caller that stopped reading: the workers end now
            stop.set()  # (the shutdown waited for their running and queued tasks, and a third Ctrl-C inside that
            raise  # wait left them blocked on the pool's queue and the command hung at its exit)


POOL_BROKEN = ("a process detecting faces ended abruptly (killed from outside, out of memory, or crashed): run the "
               "command again, with fewer --workers where memory is short")
