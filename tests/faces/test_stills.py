"""pairs --self-blend on still images at scale: the worker pool, tight crops found by padding, groups from
file names, online (fake-less) train rows, JPEG crops; and pairs.csv rows without a fake file."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import cv2
import numpy as np
import pytest

from forgerydet.errors import ForgeryDetError
from forgerydet.faces.detect import DetectorConfig, FaceDetector
from forgerydet.faces import stills
from forgerydet.faces.pipeline import ExtractConfig
from forgerydet.faces.stills import faces_of_images
from forgerydet.pairs.discover import group_of
from forgerydet.pairs.selfblend import BlendOptions, pairs_from_self_blend
from forgerydet.pairs.table import read_pairs
from forgerydet.training.data import TrainPairs
from tests._faces_util import face_frames, head, read_csv, write_video

CFG = ExtractConfig(detector=DetectorConfig(size=96, detect_side=192))


def _write(path, rgb):
    path.parent.mkdir(parents=True, exist_ok=True)
    assert cv2.imwrite(str(path), cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR))
    return path


@pytest.fixture
def people(tmp_path, astronaut):
    """Six photos of 'Ann' and 'Bob' (variations of one face), one tight crop, one image without a face."""
    d = tmp_path / "people"
    base = cv2.resize(head(astronaut), (160, 160))
    rng = np.random.default_rng(0)
    for i in range(3):
        for name in ("Ann", "Bob"):
            img = np.clip(base.astype(np.int16) + rng.integers(-25, 25), 0, 255).astype(np.uint8)
            _write(d / f"{name}_{i + 1:04d}.png", img if name == "Ann" else img[:, ::-1].copy())
    _write(d / "tight.png", cv2.resize(astronaut[80:170, 170:250], (110, 110)))  # the face fills the image
    _write(d / "wall.png", np.full((120, 120, 3), 128, np.uint8))
    return d


def test_tight_crops_are_found_by_padding_and_counted(people):
    det = FaceDetector(CFG.detector)
    plain = det.detect([cv2.cvtColor(cv2.imread(str(people / "tight.png")), cv2.COLOR_BGR2RGB)])[0]
    assert len(plain) == 0  # the reason for the retry: MTCNN alone misses a face that fills the image
    got = {f.path.name: f for f in faces_of_images(sorted(people.glob("*.png")), det)}
    assert got["tight.png"].status == "padded" and got["tight.png"].crop.shape == (96, 96, 3)
    assert got["wall.png"].status == "no_face" and got["Ann_0001.png"].status == "ok"
    lm = got["tight.png"].landmarks
    assert np.all((lm > 0) & (lm < 96))  # landmarks in crop pixels, inside the crop


def test_pool_groups_online_rows_and_jpeg(people, tmp_path):
    opts = dict(group_pattern=r"^(.+)_\d{4}$", online=True, image_format="jpg", jpeg_quality=90)
    s = pairs_from_self_blend([people], tmp_path / "a", CFG, val=0.34, seed=0, options=BlendOptions(workers=2, **opts))
    s1 = pairs_from_self_blend([people], tmp_path / "b", CFG, val=0.34, seed=0, options=BlendOptions(workers=1, **opts))
    rows = read_csv(tmp_path / "a" / "pairs.csv")
    assert rows == read_csv(tmp_path / "b" / "pairs.csv")  # worker processes change nothing
    assert s.images == s1.images == {"ok": 6, "padded": 1, "no_face": 1, "error": 0}
    assert {r["group"] for r in rows} == {"Ann", "Bob", "tight"}
    by_split = {}
    for r in rows:
        by_split.setdefault(r["split"], set()).add(r["group"])
    assert not (by_split.get("train", set()) & by_split.get("val", set()))
    for r in rows:
        assert r["real"].endswith(".jpg") and (tmp_path / "a" / r["real"]).is_file() and r["landmarks"]
        if r["split"] == "train":
            assert r["fake"] == ""  # made afresh every epoch by training
        else:
            assert r["fake"].endswith(".jpg") and (tmp_path / "a" / r["fake"]).is_file()
    assert any("tight crops" in w for w in s.warnings) and any("no face" in w for w in s.warnings)
    table = read_pairs(tmp_path / "a" / "pairs.csv", need_splits=("train", "val"))
    ds = TrainPairs(table, 64, seed=0)
    for i in range(len(ds)):
        item = ds[i]
        assert item["x"].shape == (3, 64, 64) and item["ref"].shape == (3, 64, 64)
    with pytest.raises(ForgeryDetError, match="online"):
        TrainPairs(table, 64, sbi_online=False)


def test_videos_share_the_pool_and_change_nothing(people, tmp_path, astronaut):
    """Videos go through the worker pool beside the images: the same rows and crops as in one process, in the same
    order; an unreadable video is one error, the others still count."""
    vids = tmp_path / "vids"
    for i in range(3):
        write_video(vids / f"clip{i}.mp4", face_frames(astronaut, 6, shift=2 + i))
    (vids / "broken.mp4").write_bytes(b"not a video")
    srcs = [people, vids]
    opts = dict(online=True, image_format="jpg")
    s2 = pairs_from_self_blend(srcs, tmp_path / "a", CFG, val=0.34, seed=0, options=BlendOptions(workers=2, **opts))
    s1 = pairs_from_self_blend(srcs, tmp_path / "b", CFG, val=0.34, seed=0, options=BlendOptions(workers=1, **opts))
    rows = read_csv(tmp_path / "a" / "pairs.csv")
    assert rows == read_csv(tmp_path / "b" / "pairs.csv")
    from_videos = [r for r in rows if r["group"].startswith("clip")]
    assert len(from_videos) == 3 * 6 and {r["group"] for r in from_videos} == {"clip0", "clip1", "clip2"}
    for r in from_videos:
        a, b = (cv2.imread(str(tmp_path / d / r["real"])) for d in ("a", "b"))
        np.testing.assert_array_equal(a, b)
    assert [e[0] for e in s2.errors] == [e[0] for e in s1.errors] == [str(vids / "broken.mp4")]
    assert s2.videos == s1.videos == {"ok": 3, "no_face": 0, "error": 1, "faces": 18}  # what `pairs` prints


def test_empty_fake_only_for_sbi_train_rows_with_landmarks(tmp_path):
    _write(tmp_path / "r.png", np.full((32, 32, 3), 90, np.uint8))
    lm = "10 12 22 12 16 17 11 23 21 23"
    for row, ok in [(f"r.png,,g1,train,sbi,{lm}", True), ("r.png,,g1,train,sbi,", False),
                    (f"r.png,,g1,val,sbi,{lm}", False), (f"r.png,,g1,train,mapping,{lm}", False)]:
        p = tmp_path / "pairs.csv"
        p.write_text("real,fake,group,split,method,landmarks\n" + row + "\n")
        if ok:
            assert read_pairs(p).rows[0].fake is None
        else:
            with pytest.raises(ForgeryDetError, match="'fake' is empty"):
                read_pairs(p, need_splits=())


def test_group_of():
    import re

    pat = re.compile(r"^(.+)_\d{4}$")
    assert group_of("x/Jane_Doe_0003.jpg", "file", pat) == "Jane_Doe"
    assert group_of("x/42.jpg", "file", pat) == "file" and group_of("x/42.jpg", "file", None) == "file"


_ORPHAN = '''
import os, sys, time
from concurrent.futures import ProcessPoolExecutor
from multiprocessing import get_context

if __name__ == "__main__":
    from forgerydet.faces import stills
    from forgerydet.faces.pipeline import ExtractConfig

    parent = os.getpid() if sys.argv[1] == "watch" else None
    ex = ProcessPoolExecutor(1, mp_context=stills.worker_context(), initializer=stills._init_worker,
                             initargs=(ExtractConfig(), parent))
    print(ex.submit(os.getpid).result(), flush=True)
    ex.submit(time.sleep, 60)  # the worker is busy, as with a long video, when its parent is killed
    time.sleep(60)
'''


def _alive(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().split(")")[-1].split()[0] != "Z"
    except FileNotFoundError:
        return False


@pytest.mark.skipif(not os.path.isdir("/proc"), reason="reads process states from /proc")
@pytest.mark.parametrize("mode", ["watch", "none"])
def test_pool_workers_exit_when_their_parent_is_killed(tmp_path, mode):
    """The pool's workers outlived a SIGTERMed `pairs` (holding a gigabyte each); with the parent's pid in
    their initializer they exit within seconds. 'none' (no watch) shows the test can tell the difference."""
    script = tmp_path / "orphan.py"
    script.write_text(_ORPHAN)
    proc = subprocess.Popen([sys.executable, str(script), mode], stdout=subprocess.PIPE, text=True)
    try:
        worker = int(proc.stdout.readline())
        assert _alive(worker)
    finally:
        proc.kill()
        proc.wait()
    deadline = time.monotonic() + 2 * stills.WATCH_S + 1
    while _alive(worker) and time.monotonic() < deadline:
        time.sleep(0.2)
    gone = not _alive(worker)
    if not gone:
        os.kill(worker, signal.SIGKILL)
    assert gone == (mode == "watch")


def test_pool_workers_come_from_a_fork_server_or_else_spawn(monkeypatch):
    """Workers are forks of a server that imported torch and facenet-pytorch once; where that server cannot
    start (no Unix sockets in a sandbox), the pool spawns them instead of failing."""
    import multiprocessing
    from multiprocessing import forkserver

    if "forkserver" in multiprocessing.get_all_start_methods():
        assert stills.worker_context().get_start_method() == "forkserver"

    def refuse():
        raise PermissionError("no Unix sockets here")

    monkeypatch.setattr(forkserver, "ensure_running", refuse)
    assert stills.worker_context().get_start_method() == "spawn"


_STOPPED_AS_IT_STARTS = '''
import os, signal, sys
from multiprocessing import forkserver

if __name__ == "__main__":
    from forgerydet.faces import stills
    from forgerydet.faces.pipeline import ExtractConfig

    read_signed, started = forkserver.read_signed, []

    def pid_then_stop(fd):  # the fork server reports the new worker's pid, and Ctrl-C arrives right then
        value = read_signed(fd)
        if not started:
            started.append(value)
            os.kill(os.getpid(), signal.SIGINT)
        return value

    forkserver.read_signed = pid_then_stop
    stills.CHUNK = 1
    try:
        for _ in stills.iter_faces(sys.argv[1:], [], ExtractConfig(), workers=2):
            pass
    except KeyboardInterrupt:
        print(started[0], flush=True)
'''


@pytest.mark.skipif(not os.path.isdir("/proc"), reason="reads process states from /proc")
def test_a_stop_while_a_worker_starts_waits_for_it(tmp_path):
    """Ctrl-C while the fork server was still forking a worker (seconds, while it imports torch) left a worker the
    pool never registered: the shutdown did not wait for it, and once the command had exited and its semaphores
    were gone, it printed a multiprocessing traceback after the one-line error. The stop is now held until the
    worker is the pool's, so that it has exited when the stop reaches the caller."""
    import multiprocessing

    if "forkserver" not in multiprocessing.get_all_start_methods():
        pytest.skip("no fork server on this platform")
    script = tmp_path / "stopped.py"
    script.write_text(_STOPPED_AS_IT_STARTS)
    images = [str(tmp_path / f"{i}.png") for i in range(3)]  # never read: the stop comes first
    proc = subprocess.Popen([sys.executable, str(script), *images], stdout=subprocess.PIPE, text=True)
    try:
        worker = int(proc.stdout.readline())
        still_running = _alive(worker)
    finally:
        proc.kill()
        proc.wait()
    if still_running:  # its watch would end it soon after its parent: not left to it here
        os.kill(worker, signal.SIGKILL)
    assert not still_running


def test_a_worker_killed_from_outside_is_one_clear_error(people, monkeypatch):
    """A worker the OOM killer (or anyone) ended broke the pool, and `pairs --self-blend` died with a
    BrokenProcessPool traceback; it is now one error that says what happened and what to do."""
    import multiprocessing

    monkeypatch.setattr(stills, "CHUNK", 1)
    faces = stills.iter_faces(sorted(people.iterdir()), [], CFG, workers=2)
    next(faces)  # the pool runs
    for worker in multiprocessing.active_children():
        os.kill(worker.pid, signal.SIGKILL)
    with pytest.raises(ForgeryDetError, match="ended abruptly .*--workers"):
        list(faces)


_STOPPED_WHILE_BUSY = '''
import sys, time

if __name__ == "__main__":
    from forgerydet.faces import stills
    from forgerydet.faces.pipeline import ExtractConfig

    stills.PRELOAD = (*stills.PRELOAD, "busy_worker")
    stills.CHUNK = 1
    faces = stills.iter_faces(["missing.png", "busy1.png", "busy2.png"], [], ExtractConfig(), workers=2)
    print(next(faces).status, flush=True)
    began = time.monotonic()
    faces.close()  # as a Ctrl-C in the caller's loop does
    print(round(time.monotonic() - began), flush=True)
'''

_BUSY = '''
import time
from pathlib import Path
from forgerydet.faces import stills

detect = stills.faces_of_images

def busy(paths, detector):  # forked from the fork server, every worker has this
    if any("busy" in str(p) for p in paths):
        time.sleep(300)  # a long video
    return detect(paths, detector)

stills.faces_of_images = busy
'''


def test_a_stop_ends_the_pool_workers_instead_of_waiting_for_their_tasks(tmp_path):
    """A stop waited for every running and queued task (a long video each: the second Ctrl-C's notice, then
    minutes), and a third Ctrl-C inside that wait left the workers blocked on the pool's queue: the command
    printed its line and never exited. Now the workers end as soon as the pool is left."""
    import multiprocessing

    if "forkserver" not in multiprocessing.get_all_start_methods():
        pytest.skip("no fork server on this platform")
    (tmp_path / "stopped.py").write_text(_STOPPED_WHILE_BUSY)
    (tmp_path / "busy_worker.py").write_text(_BUSY)
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(
        p for p in (str(tmp_path), str(Path(stills.__file__).parents[2]), os.environ.get("PYTHONPATH", "")) if p))
    done = subprocess.run([sys.executable, str(tmp_path / "stopped.py")], capture_output=True, text=True, env=env,
                          cwd=tmp_path, timeout=60)
    assert done.returncode == 0, done.stderr
    status, seconds = done.stdout.split()
    assert status == "error" and int(seconds) < 30
