"""Finding real/fake files (pairs/discover.py): FF++ folder parsing, matched folders, group names."""

from __future__ import annotations

import numpy as np
import pytest

from forgerydet.errors import ForgeryDetError
from forgerydet.pairs.discover import find_ffpp, match_dirs, unique_group_names
from tests.pairs.pairs_util import ffpp_tree


def test_group_names_from_stems_disambiguated(tmp_path):
    a, b, c = tmp_path / "x" / "clip.mp4", tmp_path / "y" / "clip.mp4", tmp_path / "y" / "other.mp4"
    assert unique_group_names([a, b, c]) == {a: "x/clip", b: "y/clip", c: "other"}


def test_ffpp_parser(tmp_path):
    tiny = lambda a, fake: [np.zeros((16, 16, 3), np.uint8)] * 2  # noqa: E731
    ffpp_tree(tmp_path, tiny, comps=("c23", "c40"))
    with pytest.raises(ForgeryDetError, match="several compression levels.*c23, c40"):
        find_ffpp(tmp_path)
    tree = find_ffpp(tmp_path, compression="c40")
    assert tree.compression == "c40" and sorted(tree.reals) == ["000", "001"]
    got = sorted((e.method, e.fake.name, e.real.name, e.group) for e in tree.fakes)
    assert got == [  # fake A_B shows B's face: ids A and B are one group (split unit)
        ("Deepfakes", "000_001.mp4", "000.mp4", "000+001"), ("Deepfakes", "001_000.mp4", "001.mp4", "000+001"),
        ("Face2Face", "000_001.mp4", "000.mp4", "000+001"), ("Face2Face", "001_000.mp4", "001.mp4", "000+001"),
    ]  # fmt: skip
    assert [p.name for p in tree.unmatched] == ["01_02__walk__ABC.mp4"]
    assert {e.method for e in find_ffpp(tmp_path, "c23", methods=["Face2Face"]).fakes} == {"Face2Face"}
    with pytest.raises(ForgeryDetError, match="NeuralTextures"):
        find_ffpp(tmp_path, "c23", methods=["NeuralTextures"])
    with pytest.raises(ForgeryDetError, match="not a FaceForensics"):
        find_ffpp(tmp_path / "manipulated_sequences")
    with pytest.raises(ForgeryDetError, match="no such folder"):
        find_ffpp(tmp_path / "FFPP")


def test_match_dirs(tmp_path):
    for name in ("real/1.mp4", "real/10.mp4", "real/a.png", "fake/1.mp4", "fake/10_3.mp4", "fake/1_x.mp4",
                 "fake/a-edited.png", "fake/zzz.png"):  # fmt: skip
        (tmp_path / name).parent.mkdir(exist_ok=True)
        (tmp_path / name).write_bytes(b"x")
    entries, unmatched = match_dirs(tmp_path / "real", tmp_path / "fake")
    assert sorted((e.fake.name, e.real.name) for e in entries) == [
        ("1.mp4", "1.mp4"), ("10_3.mp4", "10.mp4"), ("1_x.mp4", "1.mp4"), ("a-edited.png", "a.png")
    ]  # fmt: skip
    assert [p.name for p in unmatched] == ["zzz.png"]


def test_match_dirs_refuses_one_folder_as_both(tmp_path):
    (tmp_path / "real").mkdir()
    (tmp_path / "real" / "1.mp4").write_bytes(b"x")
    (tmp_path / "alias").symlink_to(tmp_path / "real")
    for fake in (tmp_path / "real", tmp_path / "alias", tmp_path / "real" / "."):
        with pytest.raises(ForgeryDetError, match="--real-dir and --fake-dir are the same folder"):
            match_dirs(tmp_path / "real", fake)


def test_ids_joined_by_fakes_are_one_group():
    from forgerydet.pairs.discover import identity_groups

    got = identity_groups(["000_003", "003_000", "001_870", "002_006", "006_010", "011"])
    assert got == {"000": "000+003", "003": "000+003", "001": "001+870", "870": "001+870", "002": "002+006+010",
                   "006": "002+006+010", "010": "002+006+010", "011": "011"}  # through 006, and alone


def test_a_root_one_level_off_says_where_the_ffpp_root_is(tmp_path):
    tiny = lambda a, fake: [np.zeros((16, 16, 3), np.uint8)] * 2  # noqa: E731
    ffpp_tree(tmp_path / "FFPP", tiny)
    with pytest.raises(ForgeryDetError, match=rf"no original_sequences/youtube\) \({tmp_path / 'FFPP'} looks like one\)"):
        find_ffpp(tmp_path)
    with pytest.raises(ForgeryDetError, match=rf"\(give the folder that holds it: {tmp_path / 'FFPP'}\)"):
        find_ffpp(tmp_path / "FFPP" / "original_sequences")
    with pytest.raises(ForgeryDetError, match=r"no original_sequences/youtube\); see data/README.md"):
        find_ffpp(tmp_path / "FFPP" / "original_sequences" / "youtube" / "c23" / "videos")  # too deep to guess


def test_split_ids_written_as_numbers_read_as_the_file_names_do(tmp_path):
    import json

    from forgerydet.pairs.discover import read_ffpp_split

    (tmp_path / "test.json").write_text(json.dumps([[0, 3], ["071", "054"]]))
    assert read_ffpp_split(tmp_path / "test.json") == [("000", "003"), ("071", "054")]
    for bad in ({"000": "003"}, ["ab"], [[1, 2, 3]], "000_003"):
        (tmp_path / "bad.json").write_text(json.dumps(bad))
        with pytest.raises(ForgeryDetError, match="not a FaceForensics\\+\\+ split file"):
            read_ffpp_split(tmp_path / "bad.json")


def test_methods_that_name_none_are_refused_not_read_as_all(tmp_path):
    tiny = lambda a, fake: [np.zeros((16, 16, 3), np.uint8)] * 2  # noqa: E731
    ffpp_tree(tmp_path, tiny)
    with pytest.raises(ForgeryDetError, match="--methods names no method"):
        find_ffpp(tmp_path, methods=[])  # `--methods ,` after splitting
    assert {e.method for e in find_ffpp(tmp_path).fakes} == {"Deepfakes", "Face2Face"}  # not given: all


def test_match_dirs_leaves_ffpp_masks_out_and_notes_levels(tmp_path):
    # --fake-dir FFPP/manipulated_sequences/Deepfakes: its masks/videos (black and white frames) were paired as fakes
    m = tmp_path / "manipulated_sequences" / "Deepfakes"
    for name in ("original_sequences/youtube/c23/videos/000.mp4", "manipulated_sequences/Deepfakes/c23/videos/000_003.mp4",
                 "manipulated_sequences/Deepfakes/c40/videos/000_003.mp4",
                 "manipulated_sequences/Deepfakes/masks/videos/000_003.mp4"):  # fmt: skip
        (tmp_path / name).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / name).write_bytes(b"x")
    notes: list[str] = []
    entries, unmatched = match_dirs(tmp_path / "original_sequences/youtube/c23/videos", m, notes)
    assert sorted(str(e.fake.relative_to(m)) for e in entries) == ["c23/videos/000_003.mp4", "c40/videos/000_003.mp4"]
    assert unmatched == []
    assert any("left out 1 files under masks/videos" in n for n in notes)
    assert any("holds fakes at c23, c40" in n for n in notes)
    notes.clear()
    assert len(match_dirs(tmp_path / "original_sequences/youtube/c23/videos", m / "c23" / "videos", notes)[0]) == 1
    assert notes == []


def test_ffpp_tree_passes_over_a_macs_appledouble_files(tmp_path):
    # a FaceForensics++ copy from a Mac's drive holds ._000.mp4 beside 000.mp4: it was taken for a real video and
    # a fake named after no original (evaluate --ffpp then failed on both, and exited 1)
    tiny = lambda a, fake: [np.zeros((16, 16, 3), np.uint8)] * 2  # noqa: E731
    ffpp_tree(tmp_path, tiny)
    for d, name in (("original_sequences/youtube/c23/videos", "000.mp4"), ("manipulated_sequences/Deepfakes/c23/videos", "000_001.mp4")):
        (tmp_path / d / f"._{name}").write_bytes(b"\x00\x05\x16\x07\x00\x02\x00\x00Mac OS X        ")
    tree = find_ffpp(tmp_path)
    assert sorted(tree.reals) == ["000", "001"]
    assert [p.name for p in tree.unmatched] == ["01_02__walk__ABC.mp4"]
    assert not [e for e in tree.fakes if e.fake.name.startswith("._")]
