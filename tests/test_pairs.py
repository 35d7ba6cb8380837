"""pairs.csv: group splits, the FF++ layout parser, frame-aligned pairs, mapping, self-blending, the command."""

from __future__ import annotations

import csv

import cv2
import numpy as np
import pytest
from _faces_util import face_frames, head, read_csv, write_video
from typer.testing import CliRunner

from forgerydet.cli import app
from forgerydet.detect import DetectorConfig
from forgerydet.errors import ForgeryDetError
from forgerydet.extract import ExtractConfig, extract
from forgerydet.pairs import (
    PAIRS_COLUMNS,
    assign_splits,
    find_ffpp,
    make_pairs,
    match_dirs,
    pairs_from_ffpp,
    pairs_from_mapping,
    pairs_from_self_blend,
    read_mapping_csv,
    unique_group_names,
)

CFG = ExtractConfig(num_frames=2, detector=DetectorConfig(size=64, detect_side=192, batch_size=4))


def brighter(frame: np.ndarray) -> np.ndarray:
    return np.clip(frame.astype(np.int16) + 30, 0, 255).astype(np.uint8)


def _img(path, rgb):
    path.parent.mkdir(parents=True, exist_ok=True)
    assert cv2.imwrite(str(path), cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR))
    return path


def _crop(out, rel):
    return cv2.imread(str(out / rel)).astype(np.int16)


def _split_groups(rows):
    by = {}
    for r in rows:
        by.setdefault(r["split"], set()).add(r["group"])
    return by


# ---------------------------------------------------------------- splits


def test_splits_are_by_group_disjoint_and_deterministic():
    groups = [f"v{i:03d}" for i in range(20)]
    s = assign_splits(groups + groups[:5], val=0.15, test=0.1, seed=0)  # repeats: one entry per group
    assert set(s) == set(groups)
    counts = {k: list(s.values()).count(k) for k in ("train", "val", "test")}
    assert counts == {"train": 15, "val": 3, "test": 2}
    assert assign_splits(reversed(groups), val=0.15, test=0.1, seed=0) == s  # order of input does not matter
    assert assign_splits(groups, val=0.15, test=0.1, seed=1) != s
    assert set(assign_splits(groups, val=0.0, test=0.0).values()) == {"train"}


def test_too_few_groups_is_an_error_not_an_empty_split():
    assert sorted(assign_splits(["a", "b"], val=0.01).values()) == ["train", "val"]  # rounds up to one group
    with pytest.raises(ForgeryDetError, match="only 1 group.*--val 0"):
        assign_splits(["a"], val=0.15)
    with pytest.raises(ForgeryDetError, match="at least 3"):
        assign_splits(["a", "b"], val=0.15, test=0.15)
    with pytest.raises(ForgeryDetError, match="fraction"):
        assign_splits(["a", "b"], val=1.0)


def test_group_names_from_stems_disambiguated(tmp_path):
    a, b, c = tmp_path / "x" / "clip.mp4", tmp_path / "y" / "clip.mp4", tmp_path / "y" / "other.mp4"
    assert unique_group_names([a, b, c]) == {a: "x/clip", b: "y/clip", c: "other"}


# ---------------------------------------------------------------- FF++ layout


def _ffpp_tree(root, frames_for, comps=("c23",)):
    """original_sequences/youtube/<comp>/videos/{000,001}.mp4 and two methods of fakes A_B."""
    for comp in comps:
        for a in ("000", "001"):
            write_video(root / f"original_sequences/youtube/{comp}/videos/{a}.mp4", frames_for(a, False))
        for method in ("Deepfakes", "Face2Face"):
            for a, b in (("000", "001"), ("001", "000")):
                write_video(root / f"manipulated_sequences/{method}/{comp}/videos/{a}_{b}.mp4", frames_for(a, True))
        # a DeepFakeDetection-style name that matches no youtube id, and a stray file
        write_video(root / f"manipulated_sequences/Deepfakes/{comp}/videos/01_02__walk__ABC.mp4", frames_for("000", True))
        (root / f"manipulated_sequences/Deepfakes/{comp}/videos/readme.txt").write_text("x")


def test_ffpp_parser(tmp_path):
    tiny = lambda a, fake: [np.zeros((16, 16, 3), np.uint8)] * 2  # noqa: E731
    _ffpp_tree(tmp_path, tiny, comps=("c23", "c40"))
    with pytest.raises(ForgeryDetError, match="several compression levels.*c23, c40"):
        find_ffpp(tmp_path)
    tree = find_ffpp(tmp_path, compression="c40")
    assert tree.compression == "c40" and sorted(tree.reals) == ["000", "001"]
    got = sorted((e.method, e.fake.name, e.real.name, e.group) for e in tree.fakes)
    assert got == [
        ("Deepfakes", "000_001.mp4", "000.mp4", "000"), ("Deepfakes", "001_000.mp4", "001.mp4", "001"),
        ("Face2Face", "000_001.mp4", "000.mp4", "000"), ("Face2Face", "001_000.mp4", "001.mp4", "001"),
    ]  # fmt: skip
    assert [p.name for p in tree.unmatched] == ["01_02__walk__ABC.mp4"]
    assert {e.method for e in find_ffpp(tmp_path, "c23", methods=["Face2Face"]).fakes} == {"Face2Face"}
    with pytest.raises(ForgeryDetError, match="NeuralTextures"):
        find_ffpp(tmp_path, "c23", methods=["NeuralTextures"])
    with pytest.raises(ForgeryDetError, match="not a FaceForensics"):
        find_ffpp(tmp_path / "manipulated_sequences")


def test_ffpp_pairs_are_frame_aligned_and_split_by_source(tmp_path, astronaut):
    def frames_for(a, fake):
        fr = face_frames(astronaut, 6, shift=4 if a == "000" else 6)  # the face moves every frame
        return [brighter(f) for f in fr] if fake else fr

    root, out = tmp_path / "ffpp", tmp_path / "out"
    _ffpp_tree(root, frames_for)
    s = pairs_from_ffpp(root, out, CFG, val=0.5, seed=0)
    rows = read_csv(out / "pairs.csv")
    assert list(rows[0]) == PAIRS_COLUMNS
    assert len(rows) == s.rows == 8  # 2 reals x 2 methods x 2 frames
    assert s.methods == {"Deepfakes": 4, "Face2Face": 4}
    assert any("01_02__walk__ABC.mp4" in w for w in s.warnings)  # unmatched fakes are reported
    splits = _split_groups(rows)
    assert splits == {"train": splits["train"], "val": splits["val"]} and splits["train"] | splits["val"] == {"000", "001"}
    assert not splits["train"] & splits["val"]
    for r in rows:
        assert r["fake"].split("/")[1] == r["method"] and r["real"].startswith("crops/real/")
        assert r["real"].rsplit("/", 1)[1] == r["fake"].rsplit("/", 1)[1]  # same frame index
        diff = _crop(out, r["fake"]) - _crop(out, r["real"])
        # the fake is the real frame +30: same frame, same box -> a flat +30 (zero on the black padding)
        inside = _crop(out, r["real"]).sum(-1) > 0
        assert abs(np.median(diff[inside]) - 30) <= 2 and np.percentile(np.abs(diff[inside] - 30), 90) <= 4
        assert len(r["landmarks"].split()) == 10


def test_too_few_groups_fails_before_detection(tmp_path, astronaut):
    v = write_video(tmp_path / "a.mp4", face_frames(astronaut, 2))
    with pytest.raises(ForgeryDetError, match="only 1 group"):
        pairs_from_mapping(read_mapping_csv(_mapping(tmp_path, [("a.mp4", "a.mp4")])), tmp_path / "out", CFG)
    assert not (tmp_path / "out").exists() and v.exists()


# ---------------------------------------------------------------- mapping and folders


def _mapping(d, rows, extra=()):
    path = d / "mapping.csv"
    with open(path, "w", newline="") as fh:
        w = csv.writer(fh)
        w.writerow(["real", "fake", *extra])
        w.writerows(rows)
    return path


def test_mapping_images_and_bad_files(tmp_path, astronaut):
    face = cv2.resize(head(astronaut), (128, 128))
    frame = np.full((160, 192, 3), 90, np.uint8)
    frame[16:144, 32:160] = face
    _img(tmp_path / "real" / "p1.png", frame)
    _img(tmp_path / "fake" / "p1_swap.png", brighter(frame))  # same size: cut with the real's box
    _img(tmp_path / "fake" / "p1_big.png", cv2.resize(frame, (288, 240)))  # other size: own detection
    (tmp_path / "fake" / "p1_broken.png").write_text("not a png")
    path = _mapping(tmp_path, [
        ("real/p1.png", "fake/p1_swap.png", "person1", "FaceSwap"),
        ("real/p1.png", "fake/p1_big.png", "person1", "FaceSwap"),
        ("real/p1.png", "fake/p1_broken.png", "person1", "FaceSwap"),
    ], extra=("group", "method"))  # fmt: skip
    entries = read_mapping_csv(path)
    assert entries[0].real == tmp_path / "real/p1.png" and entries[0].group == "person1"
    s = pairs_from_mapping(entries, tmp_path / "out", CFG, val=0.0)
    rows = read_csv(tmp_path / "out" / "pairs.csv")
    assert [(r["group"], r["method"], r["split"]) for r in rows] == [("person1", "FaceSwap", "train")] * 2
    assert [p.rsplit("/", 1)[-1] for p, _ in s.errors] == ["p1_broken.png"]
    real = _crop(tmp_path / "out", rows[0]["real"])
    assert abs(np.median(_crop(tmp_path / "out", rows[0]["fake"]) - real) - 30) <= 2
    big = _crop(tmp_path / "out", rows[1]["fake"])
    assert np.abs(big - real).mean() < 25  # the same face, found again at the other size


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


# ---------------------------------------------------------------- self-blending


def test_self_blend_from_index_and_from_images_is_deterministic(tmp_path, astronaut):
    photo = _img(tmp_path / "people" / "astro.png", cv2.resize(head(astronaut), (160, 160)))
    cfg = ExtractConfig(detector=DetectorConfig(size=96, detect_side=192))
    extract([photo], tmp_path / "faces", cfg)
    a = pairs_from_self_blend([tmp_path / "faces" / "faces.csv"], tmp_path / "a", cfg, val=0.0, seed=3)
    b = pairs_from_self_blend([tmp_path / "people"], tmp_path / "b", cfg, val=0.0, seed=3)
    b2 = pairs_from_self_blend([photo], tmp_path / "b2", cfg, val=0.0, seed=3)
    rows_a, rows_b = read_csv(tmp_path / "a" / "pairs.csv"), read_csv(tmp_path / "b" / "pairs.csv")
    assert a.rows == b.rows == b2.rows == 1 and rows_a[0]["method"] == "sbi" and rows_a[0]["group"] == "astro"
    assert (tmp_path / "a" / rows_a[0]["real"]).resolve().parent.parent == (tmp_path / "faces" / "crops").resolve()
    fake_a, fake_b = _crop(tmp_path / "a", rows_a[0]["fake"]), _crop(tmp_path / "b", rows_b[0]["fake"])
    np.testing.assert_array_equal(fake_b, _crop(tmp_path / "b2", rows_b[0]["fake"]))  # same seed, same fake
    assert np.abs(fake_a - fake_b).mean() < 1.0  # the index keeps landmarks to 0.01 px: nearly the same fake
    real = _crop(tmp_path / "a", rows_a[0]["real"])
    mask = cv2.imread(str(tmp_path / "a" / rows_a[0]["fake"].replace(".png", "_mask.png")), cv2.IMREAD_GRAYSCALE)
    assert mask.shape == (96, 96) and mask.max() > 0
    assert np.abs(fake_a - real).max() > 0 and (fake_a[mask == 0] == real[mask == 0]).all()
    c = pairs_from_self_blend([tmp_path / "people"], tmp_path / "c", cfg, val=0.0, seed=4)
    assert c.rows == 1 and not np.array_equal(_crop(tmp_path / "c", rows_b[0]["fake"]), fake_b)


# ---------------------------------------------------------------- the command


def test_pairs_command_mode_errors(tmp_path):
    runner = CliRunner()
    res = runner.invoke(app, ["pairs", "--out", str(tmp_path)])
    assert res.exit_code == 1 and "choose exactly one" in res.output
    res = runner.invoke(app, ["pairs", "--out", str(tmp_path), "--ffpp", str(tmp_path), "--mapping", "m.csv"])
    assert res.exit_code == 1 and "--ffpp, --mapping" in res.output
    res = runner.invoke(app, ["pairs", "--out", str(tmp_path), "--self-blend"])
    assert res.exit_code == 1 and "needs real sources" in res.output
    (tmp_path / "m.csv").write_text("video,forgery\na,b\n")
    res = runner.invoke(app, ["pairs", "--out", str(tmp_path), "--mapping", str(tmp_path / "m.csv")])
    assert res.exit_code == 1 and "missing column(s) real, fake" in res.output
    with pytest.raises(ForgeryDetError, match="only used with --self-blend"):
        make_pairs(tmp_path, sources=["a.mp4"], mapping="m.csv")


@pytest.mark.slow
def test_shared_videos_mapping_pairs_both_fakes(shared_data, tmp_path):
    v = shared_data / "videos"
    mapping = _mapping(tmp_path, [(v / "anchor_real.mp4", v / "anchor_fake_ffpp.mp4"),
                                  (v / "anchor_real.mp4", v / "anchor_fake_deeperforensics.mp4")])  # fmt: skip
    res = CliRunner().invoke(app, ["pairs", "--mapping", str(mapping), "--out", str(tmp_path / "out"),
                                   "--frames", "3", "--size", "112", "--val", "0"])  # fmt: skip
    assert res.exit_code == 0, res.output
    rows = read_csv(tmp_path / "out" / "pairs.csv")
    assert len(rows) == 6 and {r["group"] for r in rows} == {"anchor_real"}
    fakes = {r["fake"].split("/")[2].rsplit("-", 1)[0] for r in rows}
    assert fakes == {"anchor_fake_ffpp", "anchor_fake_deeperforensics"}
    assert len({r["real"] for r in rows}) == 3  # each real crop serves both fakes
