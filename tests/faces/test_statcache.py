"""faces/statcache.py: extract's parts/NAME.stat entries vouch for a source's sha256 only when written strictly after
its last modification (git's racy-timestamp rule)."""

from __future__ import annotations

import hashlib
import os

from forgerydet.faces.statcache import record_stat, source_digest


def test_an_entry_written_in_the_sources_own_tick_is_rehashed_and_a_later_one_is_trusted(tmp_path):
    """A source rewritten (same size) within the timestamp granularity of its entry keeps its stat key, and the entry's
    sha256 was of the bytes before: it was taken as unchanged and its old faces kept. The entry's time is set with
    os.utime, as a file system of coarse timestamps (FAT, SMB: a second) records both writes in one tick."""
    src, part = tmp_path / "clip.bin", tmp_path / "parts" / "clip-12345678.csv"
    part.parent.mkdir()
    src.write_bytes(b"new bytes, same size")
    digest, key, recorded = source_digest(src, part)
    assert digest == hashlib.sha256(b"new bytes, same size").hexdigest() and not recorded
    old = hashlib.sha256(b"old bytes, same size").hexdigest()
    record_stat(part, key, old)  # hashed before the rewrite, the key stat'ed after it: the race's entry
    stat, mtime = part.with_suffix(".stat"), os.stat(src).st_mtime_ns
    for entry_time in (mtime, mtime - 1):  # in the source's tick, or (a clock behind) before it: not vouched for
        os.utime(stat, ns=(entry_time, entry_time))
        assert source_digest(src, part) == (digest, key, False)
    os.utime(stat, ns=(mtime + 1_000_000_000, mtime + 1_000_000_000))  # a second later: the source is not read
    assert source_digest(src, part) == (old, key, True)


def test_no_entry_for_what_could_not_be_stated_or_hashed(tmp_path):
    part = tmp_path / "p.csv"
    assert source_digest(tmp_path / "missing.mp4", part) == ("", "", False)
    record_stat(part, "", "")
    assert not part.with_suffix(".stat").exists()
