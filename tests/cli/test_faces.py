"""cli/faces.py: `extract` and `pairs` take their defaults from the library, pass every option on, and print
their summary (extract: the counts, a re-run skipping what is done; pairs: the splits, methods, still images,
warnings, and failed files as exit 1)."""

from __future__ import annotations

import dataclasses
import shutil
from pathlib import Path

import pytest

from forgerydet.cli.faces import extract_cmd, pairs_cmd
from forgerydet.faces.detect import DetectorConfig
from forgerydet.faces.pipeline import ExtractConfig
from forgerydet.faces.media import DEFAULT_NUM_FRAMES
from forgerydet.io import source_key
from forgerydet.pairs import build
from forgerydet.pairs.selfblend import BlendOptions
from forgerydet.pairs.table import PairsSummary
from tests.cli._cli_util import cli, defaults, one_error

DETECTOR = {f.name: f.default for f in dataclasses.fields(DetectorConfig)}


@pytest.mark.parametrize("cmd", [extract_cmd, pairs_cmd])
def test_detector_options_default_to_detector_config(cmd):
    got = defaults(cmd)
    shared = {k: got[k] for k in got if k in DETECTOR}
    assert shared == {k: DETECTOR[k] for k in ("size", "margin", "detect_side", "min_confidence", "min_face", "device",
                                               "batch_size")}
    assert got["frames"] is got["every"] is got["fps"] is None  # the library picks: DEFAULT_NUM_FRAMES evenly
    assert got["deinterlace"] is ExtractConfig.deinterlace is True


def test_pairs_options_default_to_the_librarys():
    got, lib = defaults(pairs_cmd), defaults(build.make_pairs)
    assert {k: got[k] for k in ("val", "test", "seed")} == {k: lib[k] for k in ("val", "test", "seed")}
    blend = {f.name: f.default for f in dataclasses.fields(BlendOptions)}
    assert {"group_pattern": got["group_pattern"], "online": got["online"], "image_format": got["image_format"],
            "jpeg_quality": got["jpeg_quality"], "workers": got["workers"]} == blend


def test_help_states_the_librarys_frame_count():
    for command in ("extract", "pairs"):
        r = cli(command, "--help")
        assert f"Frames sampled evenly per video (default {DEFAULT_NUM_FRAMES})." in r.flat, r.output


def _table(output: str) -> dict[str, str]:
    rows = {}
    for line in output.splitlines():
        cells = [c.strip() for c in line.strip("│ ").split("│")]
        if len(cells) == 2:
            rows[cells[0]] = cells[1]
    return rows


def test_extract_and_enroll_take_start_and_end_as_scan_does(monkeypatch, tmp_path):
    from forgerydet.faces import index
    from forgerydet.scan import enroll

    from forgerydet.errors import ForgeryDetError

    seen = []

    def stop(*args, config, **kw):  # the settings reach the library call; the work itself is not needed here
        seen.append(config)
        raise ForgeryDetError("stopped here")

    monkeypatch.setattr(index, "extract", lambda sources, out, config, progress: stop(config=config))
    one_error(cli("extract", tmp_path, "--out", tmp_path / "f", "--start", "1:00", "--end", "90.5"), "stopped here")
    assert (seen[0].start, seen[0].end) == (60.0, 90.5)
    monkeypatch.setattr(enroll, "enroll", stop)
    one_error(cli("enroll", "Ann", tmp_path, "--into", tmp_path / "r.refs.safetensors", "--start", "2", "--end", "0:03"),
              "stopped here")
    assert (seen[1].start, seen[1].end) == (2.0, 3.0)
    one_error(cli("extract", tmp_path, "--out", tmp_path / "f", "--start", "soon"),
              "--start 'soon': give a time as seconds (90.5), MM:SS or HH:MM:SS")
    one_error(cli("enroll", "Ann", tmp_path, "--start", "3", "--end", "2"), "--end 0:02 is not after --start 0:03")


def test_extract_onto_a_full_disk_says_what_is_kept_and_how_to_go_on(monkeypatch, tmp_path):
    """A full disk mid-extract printed only the write error, not that the sources finished before are kept and that
    the same command goes on once there is space (h6's pass), as its Ctrl-C line says."""
    from forgerydet.errors import WriteError
    from forgerydet.faces import index

    def full(sources, out, config, progress):
        raise WriteError("cannot write f/crops/v-1234abcd/f000051_0.png: no space left on device")

    monkeypatch.setattr(index, "extract", full)
    one_error(cli("extract", tmp_path, "--out", tmp_path / "f"),
              "no space left on device; the files finished before it are kept: once that is put right, the same "
              "command goes on (it skips them)")


def test_extract_failing_to_write_for_another_reason_than_space_does_not_say_to_free_space(face_png, tmp_path):
    """A crop folder that is a file (or a read-only one) mid-extract said "with space freed, the same command goes
    on": freeing space changes nothing there; the write error itself says what to do."""
    out = tmp_path / "f"
    (out / "crops").mkdir(parents=True)
    (out / "crops" / source_key(face_png)).write_text("mine")  # the one folder its crops go to
    line = one_error(cli("extract", face_png, "--out", out), "is a file where a folder is needed (move it away",
                     "the files finished before it are kept: once that is put right, the same command goes on")
    assert "space" not in line


def test_extract_prints_its_counts_and_a_rerun_skips(face_png, tmp_path):
    src = tmp_path / "in"
    src.mkdir()
    shutil.copy(face_png, src / "a.png")
    (src / "b.png").write_bytes(b"not a png")
    args = ["extract", src, "--out", tmp_path / "faces", "--size", 64]
    r = cli(*args)
    assert r.exit_code == 1, r.output  # b.png failed, the rest was done
    assert _table(r.stdout) == {"files": "2", "processed now": "2", "skipped (done before)": "0",
                                "face crops written": "1", "face tracks": "1", "frames without a face": "0",
                                "files failed": "1"}
    assert f"index: {tmp_path / 'faces' / 'faces.csv'}" in r.stdout
    assert r.stderr.splitlines() == [f"failed: {src / 'b.png'}: cannot decode the image (corrupt or not an image file)",
                                     "error: 1 file(s) failed (listed above); everything else was done"]
    (src / "b.png").unlink()
    (src / "c.heic").write_bytes(b"x")
    r = cli(*args)
    assert r.exit_code == 0, r.output
    assert _table(r.stdout)["skipped (done before)"] == "1" and _table(r.stdout)["face crops written"] == "0"
    assert r.stderr.startswith("not extracted: the folders and patterns given hold 1 file neither image nor video "
                               "(.heic 1); images are ")


@pytest.fixture
def fake_pairs(monkeypatch, tmp_path):
    calls = []

    def run(out, config, **kw):
        calls.append({"out": out, "config": config, **kw})
        kw["progress"](1, 2, "x")
        return PairsSummary(Path(out) / "pairs.csv", rows=5, groups=3, split_rows={"train": 4, "val": 1},
                            split_groups={"train": 2, "val": 1}, methods={"sbi": 5},
                            errors=[("bad.png", "bad.png: cannot decode")], warnings=["2 tight crops were padded"],
                            images={"ok": 4, "no_face": 1}, blended_online=4,
                            videos={"ok": 2, "no_face": 1, "error": 0, "faces": 48})

    monkeypatch.setattr(build, "make_pairs", run)
    return calls


def test_pairs_passes_every_option(fake_pairs, tmp_path):
    r = cli("pairs", "--self-blend", tmp_path / "a.png", "--out", tmp_path / "p", "--val", "0.3", "--seed", 7,
            "--frames", 4, "--size", 96, "--group-pattern", "^(.+)_\\d+$", "--online", "--format", "jpg",
            "--jpeg-quality", 80, "--workers", 2, "--no-deinterlace")
    (call,) = fake_pairs
    assert call["config"].deinterlace is False
    assert call["self_blend"] is True and call["sources"] == [tmp_path / "a.png"] and call["out"] == tmp_path / "p"
    assert (call["val"], call["test"], call["seed"]) == (0.3, 0.0, 7)
    assert call["config"].num_frames == 4 and call["config"].detector.size == 96
    assert call["blend"] == BlendOptions(group_pattern="^(.+)_\\d+$", online=True, image_format="jpg", jpeg_quality=80,
                                         workers=2)
    assert call["ffpp"] is call["mapping"] is call["real_dir"] is call["fake_dir"] is None
    # the summary: split table, methods, still images, where it was written; warnings and failures on stderr
    rows = [[c.strip() for c in line.strip("│ ").split("│")] for line in r.stdout.splitlines() if line.startswith("│")]
    assert rows == [["train", "2", "4"], ["val", "1", "1"], ["test", "0", "0"]]
    assert "methods: sbi 5" in r.stdout and "still images: ok 4, no face 1" in r.stdout
    assert "videos: ok 2 (48 faces), no face 1, error 0" in r.stdout  # the videos had no line of their own
    assert "fakes: 4 train row(s) have none stored; training blends a new one every epoch (--all-fakes writes them)" in r.flat
    assert f"wrote {tmp_path / 'p' / 'pairs.csv'}" in r.stdout
    assert r.exit_code == 1 and r.stderr.splitlines() == [
        "warning: 2 tight crops were padded", "failed: bad.png: cannot decode",
        "error: 1 file(s) failed (listed above); everything else was done"]


def test_a_method_name_from_a_users_csv_is_text_not_rich_markup(monkeypatch, tmp_path):
    """A --mapping CSV's method column (or an FF++ method folder) named '[/x]' raised a MarkupError, a traceback after
    pairs.csv was written; one named '[b]' vanished from the summary."""
    monkeypatch.setattr(build, "make_pairs", lambda out, config, **kw: PairsSummary(
        Path(out) / "pairs.csv", rows=3, groups=2, split_rows={"train": 3}, split_groups={"train": 2},
        methods={"[/x]": 1, "[b]": 2}))
    r = cli("pairs", "--mapping", tmp_path / "map.csv", "--out", tmp_path / "p")
    assert r.exit_code == 0 and r.exception is None, r.output
    assert "methods: [/x] 1, [b] 2" in r.stdout


def test_pairs_on_a_very_narrow_terminal_names_every_split_whole(fake_pairs, tmp_path):
    """On 20 columns the split table cut 'train' and 'test' to 'tr…' and 'te…'."""
    r = cli("pairs", "--self-blend", tmp_path / "a.png", "--out", tmp_path / "p", COLUMNS="20")
    assert "…" not in r.stdout and ("split train, groups 2, pairs 4 split val, groups 1, pairs 1 split test, groups 0, "
                                    "pairs 0") in r.flat, r.stdout


def test_pairs_splits_refuses_a_typed_val_even_at_its_default(fake_pairs, tmp_path):
    one_error(cli("pairs", "--ffpp", tmp_path, "--splits", tmp_path, "--val", "0.15", "--out", tmp_path / "p"),
              "--splits decides the splits: leave out --val")
    one_error(cli("pairs", "--ffpp", tmp_path, "--splits", tmp_path, "--val", "0.15", "--test", "0.15", "--out",
                  tmp_path / "p"), "leave out --val and --test")
    assert fake_pairs == []
    assert cli("pairs", "--ffpp", tmp_path, "--splits", tmp_path, "--out", tmp_path / "p").exit_code == 1  # the stand-in has a failed file
    assert fake_pairs[0]["splits"] == tmp_path


def test_pairs_bad_blend_option_is_one_line_before_any_work(fake_pairs, tmp_path):
    one_error(cli("pairs", "--self-blend", tmp_path, "--out", tmp_path / "p", "--format", "webp"),
              "--format 'webp': use png or jpg")
    one_error(cli("pairs", "--self-blend", tmp_path, "--out", tmp_path / "p", "--frames", 2, "--every", 3),
              "choose one way to sample frames: --frames, --every or --fps")
    assert fake_pairs == []


def test_an_interrupted_extract_or_pairs_says_what_a_rerun_does(face_png, tmp_path, monkeypatch):
    """Ctrl-C said only "interrupted": extract's rerun skips the finished files, pairs' starts over."""
    from forgerydet.faces import index

    def stopped(*a, **k):
        raise KeyboardInterrupt

    monkeypatch.setattr(index, "extract", stopped)
    one_error(cli("extract", face_png, "--out", tmp_path / "x"), "interrupted: the files finished so far are kept; run "
              "the same command again to go on (it skips them)", code=130)
    monkeypatch.setattr(build, "make_pairs", stopped)
    one_error(cli("pairs", "--self-blend", face_png.parent, "--out", tmp_path / "p"), "interrupted before pairs.csv "
              "was written: run the same command again (it starts over)", code=130)

