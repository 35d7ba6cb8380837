"""The stat-key cache behind `extract`'s re-runs: OUT/parts/<key>.stat holds a source's stat key (inode, size,
modification and change times, as git's index compares them) and its sha256, so that a re-run over terabytes of
unchanged sources costs a `stat` per file, not a hash of its bytes.

As in git's index, an entry is only as good as the timestamps that vouch for it: a source rewritten within the file
system's timestamp granularity of the moment it was stat'ed and hashed (one second on FAT, SMB or older NFS and ext3
mounts; a clock tick elsewhere), with the same size, keeps its key, and its recorded sha256 would be of the bytes
before. So, by git's racy-timestamp rule, an entry whose source's modification time is not strictly older than the
.stat file's own is taken as unverified: the source is hashed again (and the entry rewritten, now later than it).
The change time is held to the same rule: no program can set it, so it also catches a rewrite whose modification time
was put back (`cp -p`, `rsync -t`). A source whose modification time lies ahead of the clock (a camera's wrong date)
is hashed on every run until that time has passed, as git does: never a stale sha256, at the price of a read."""

from __future__ import annotations

import os
import re
from pathlib import Path

from forgerydet.io import file_sha256, write_text_atomic


def source_digest(path: Path, part: Path) -> tuple[str, str, bool]:
    """A regular file's sha256 ("" for anything else: a named pipe is never read here), its stat key and whether both
    were already recorded in `part`'s .stat file, written strictly after the source's last modification, whose sha256
    is then taken without reading the file again."""
    try:
        if not path.is_file():
            return "", "", False
        st = os.stat(path)  # before the bytes are read: a write meanwhile changes it, and the next run rehashes
        key = f"{st.st_ino} {st.st_size} {st.st_mtime_ns} {st.st_ctime_ns}"
        stat = part.with_suffix(".stat")
        recorded = stat.read_text("utf-8", "replace").split("\n") if stat.is_file() else []  # garbled: no match
        if len(recorded) >= 2 and recorded[0] == key and re.fullmatch(r"[0-9a-f]{64}", recorded[1]) \
                and max(st.st_mtime_ns, st.st_ctime_ns) < os.stat(stat).st_mtime_ns:  # else racy (module doc)
            return recorded[1], key, True
        return file_sha256(path), key, False
    except OSError:
        return "", "", False


def record_stat(part: Path, key: str, digest: str) -> None:
    """Write `part`'s .stat entry (a source that could not be stat'ed or hashed gets none)."""
    if key and digest:
        write_text_atomic(part.with_suffix(".stat"), f"{key}\n{digest}\n")
