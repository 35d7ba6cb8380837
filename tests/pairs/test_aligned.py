"""Real/fake pairs from FF++ layouts and mapping files (pairs/aligned.py): frame-aligned crops, splits by source."""

from __future__ import annotations

import cv2
import numpy as np
import pytest
from typer.testing import CliRunner

from forgerydet.cli.app import app
from forgerydet.errors import ForgeryDetError
from forgerydet.pairs.aligned import pairs_from_ffpp, pairs_from_mapping
from forgerydet.pairs.discover import read_mapping_csv
from forgerydet.pairs.table import PAIRS_COLUMNS
from tests._faces_util import face_frames, head, read_csv, shifted, weave, write_video
from tests.pairs.pairs_util import CFG, brighter, crop, ffpp_tree, split_groups, write_img, write_mapping


def test_ffpp_pairs_are_frame_aligned_and_split_by_source(tmp_path, astronaut):
    def frames_for(a, fake):
        fr = face_frames(astronaut, 6, shift=4 if a == "000" else 6)  # the face moves every frame
        return [brighter(f) for f in fr] if fake else fr

    root, out = tmp_path / "ffpp", tmp_path / "out"
    ffpp_tree(root, frames_for)
    for a, b in (("002", "003"), ("003", "002")):  # a second pair of people
        write_video(root / f"original_sequences/youtube/c23/videos/{a}.mp4", frames_for(a, False))
        write_video(root / f"manipulated_sequences/Deepfakes/c23/videos/{a}_{b}.mp4", frames_for(a, True))
    s = pairs_from_ffpp(root, out, CFG, val=0.5, seed=0)
    rows = read_csv(out / "pairs.csv")
    assert list(rows[0]) == PAIRS_COLUMNS
    assert len(rows) == s.rows == 12  # 2 reals x 2 methods x 2 frames, and 2 reals x 1 method x 2 frames
    assert s.methods == {"Deepfakes": 8, "Face2Face": 4}
    assert any("01_02__walk__ABC.mp4" in w for w in s.warnings)  # unmatched fakes are reported
    # fake 000_001 puts 001's face on 000's video: the two ids are one group, so no face is in two splits
    splits = split_groups(rows)
    assert splits == {"train": splits["train"], "val": splits["val"]} and splits["train"] | splits["val"] == {"000+001", "002+003"}
    assert not splits["train"] & splits["val"]
    for r in rows:
        assert r["fake"].split("/")[1] == r["method"] and r["real"].startswith("crops/real/")
        assert r["real"].rsplit("/", 1)[1] == r["fake"].rsplit("/", 1)[1]  # same frame index
        diff = crop(out, r["fake"]) - crop(out, r["real"])
        # the fake is the real frame +30: same frame, same box -> a flat +30 (zero on the black padding)
        inside = crop(out, r["real"]).sum(-1) > 0
        assert abs(np.median(diff[inside]) - 30) <= 2 and np.percentile(np.abs(diff[inside] - 30), 90) <= 4
        assert len(r["landmarks"].split()) == 10



def test_deepfakedetection_fakes_pair_with_the_actors_video_they_were_made_on(tmp_path, astronaut):
    """DeepFakeDetection's A_B__SCENE__CODE fakes are made on original_sequences/actors' A__SCENE or B__SCENE (the
    name's order is not documented): each is paired, frame-aligned, with the one whose frames it matches; one with
    neither actor's video here is skipped and said; with the official splits (YouTube ids only) they are left out."""
    def frames_for(a, fake):
        fr = face_frames(astronaut, 6, shift=4 if a == "000" else 6)
        return [brighter(f) for f in fr] if fake else fr

    root, out = tmp_path / "ffpp", tmp_path / "out"
    ffpp_tree(root, frames_for)
    actors, dfd = root / "original_sequences/actors/c23/videos", root / "manipulated_sequences/DeepFakeDetection/c23/videos"
    on_01 = face_frames(astronaut, 6, shift=5)
    write_video(actors / "01__walk.mp4", on_01)
    write_video(actors / "02__walk.mp4", face_frames(astronaut, 6, shift=5, change=lambda f: np.ascontiguousarray(f[:, ::-1])))
    write_video(dfd / "02_01__walk__XYZ.mp4", [brighter(f) for f in on_01])  # made on 01's video, named 02 first
    write_video(dfd / "03_04__walk__Q.mp4", [brighter(f) for f in on_01])  # no video of actor 03 or 04 here
    s = pairs_from_ffpp(root, out, CFG, val=0.5, seed=0)
    rows = [r for r in read_csv(out / "pairs.csv") if r["method"] == "DeepFakeDetection"]
    assert len(rows) == 2 and s.methods["DeepFakeDetection"] == 2
    assert {r["group"] for r in rows} == {"actor01+actor02"}
    for r in rows:
        assert "01__walk" in r["real"] and "02_01__walk__XYZ" in r["fake"]
        diff = crop(out, r["fake"]) - crop(out, r["real"])
        inside = crop(out, r["real"]).sum(-1) > 0
        assert abs(np.median(diff[inside]) - 30) <= 2  # the same frame of the video it was made on, +30
    assert any("03_04__walk__Q.mp4" in w and "skipped" in w for w in s.warnings)
    assert any("DeepFakeDetection fake(s) paired" in w for w in s.warnings)
    splits = tmp_path / "splits"
    splits.mkdir()
    (splits / "train.json").write_text('[["000", "001"]]')
    s = pairs_from_ffpp(root, tmp_path / "out2", CFG, splits=splits)
    assert "DeepFakeDetection" not in s.methods
    assert any("left out" in w and "official split" in w for w in s.warnings)
    # DeepFakeDetection alone: it said no fake matched a real id, though the actors' videos are here
    with pytest.raises(ForgeryDetError, match="^--splits: the official split files list YouTube ids only, so "
                                              "DeepFakeDetection's fakes .* are left out, and no other method's are here$"):
        pairs_from_ffpp(root, tmp_path / "out3", CFG, methods=["DeepFakeDetection"], splits=splits)

def test_too_few_groups_fails_before_detection(tmp_path, astronaut):
    v = write_video(tmp_path / "a.mp4", face_frames(astronaut, 2))
    write_video(tmp_path / "a_fake.mp4", face_frames(astronaut, 2))
    with pytest.raises(ForgeryDetError, match="only 1 group"):
        pairs_from_mapping(read_mapping_csv(write_mapping(tmp_path, [("a.mp4", "a_fake.mp4")])), tmp_path / "out", CFG)
    assert not (tmp_path / "out").exists() and v.exists()


def test_a_mapping_row_whose_fake_is_its_real_or_empty_is_refused_by_line(tmp_path):
    """Identical crops labelled real and fake would teach 'like its reference = fake'; an empty cell used to name
    the mapping's folder ('.: a folder, where a video or image file is wanted')."""
    (tmp_path / "a.mp4").write_bytes(b"x")
    (tmp_path / "b.mp4").write_bytes(b"x")
    with pytest.raises(ForgeryDetError) as e:
        read_mapping_csv(write_mapping(tmp_path, [("a.mp4", "b.mp4"), ("a.mp4", "./a.mp4")]))
    assert str(e.value).startswith(f"{tmp_path / 'mapping.csv'}:3: real and fake are the same file (a.mp4)")
    with pytest.raises(ForgeryDetError, match=r"mapping.csv:2: column 'fake' is empty$"):
        read_mapping_csv(write_mapping(tmp_path, [("a.mp4", "")]))


def test_a_fake_listed_twice_in_a_mapping_is_refused_before_any_crop(tmp_path):
    # with two reals, the second real's boxes overwrote the fake crops the first real's rows name (one crop path
    # per fake), and the fake could land in two splits; nothing was said
    for n in ("a.mp4", "b.mp4", "f.mp4"):
        (tmp_path / n).write_bytes(b"x")
    for rows in ([("a.mp4", "f.mp4"), ("b.mp4", "./f.mp4")], [("a.mp4", "f.mp4"), ("a.mp4", "f.mp4")]):
        with pytest.raises(ForgeryDetError, match=r"f.mp4 is listed twice as a fake \(with real .*a.mp4, and again "
                                                  r"with .*mp4\): a fake is made from one real; list it once"):
            pairs_from_mapping(read_mapping_csv(write_mapping(tmp_path, rows)), tmp_path / "out", CFG, val=0.0)
    assert not (tmp_path / "out").exists()


def test_a_real_given_two_groups_in_a_mapping_is_refused(tmp_path):
    # the last row's group won in silence: 'personA' vanished, so person A's faces could sit in two splits
    for n in ("a.mp4", "b.mp4", "f.mp4", "g.mp4", "h.mp4"):
        (tmp_path / n).write_bytes(b"x")
    rows = [("a.mp4", "f.mp4", "personA"), ("a.mp4", "g.mp4", "personB"), ("b.mp4", "h.mp4", "personA")]
    with pytest.raises(ForgeryDetError, match=r"a.mp4 is given two groups \('personA' and 'personB'\): its faces are "
                                              r"one source, in one split"):
        pairs_from_mapping(read_mapping_csv(write_mapping(tmp_path, rows, ["group"])), tmp_path / "out", CFG, val=0.0)
    assert not (tmp_path / "out").exists()
    # a row without a group takes the real's group from its other rows
    rows = [("a.mp4", "f.mp4", ""), ("a.mp4", "g.mp4", "personA"), ("b.mp4", "h.mp4", "personA")]
    with pytest.raises(ForgeryDetError, match="no pair could be made"):  # the stand-in files are no videos
        pairs_from_mapping(read_mapping_csv(write_mapping(tmp_path, rows, ["group"])), tmp_path / "out", CFG, val=0.0)


def test_mapping_images_and_bad_files(tmp_path, astronaut):
    face = cv2.resize(head(astronaut), (128, 128))
    frame = np.full((160, 192, 3), 90, np.uint8)
    frame[16:144, 32:160] = face
    write_img(tmp_path / "real" / "p1.png", frame)
    write_img(tmp_path / "fake" / "p1_swap.png", brighter(frame))  # same size: cut with the real's box
    write_img(tmp_path / "fake" / "p1_big.png", cv2.resize(frame, (288, 240)))  # other size: own detection
    (tmp_path / "fake" / "p1_broken.png").write_text("not a png")
    path = write_mapping(tmp_path, [
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
    real = crop(tmp_path / "out", rows[0]["real"])
    assert abs(np.median(crop(tmp_path / "out", rows[0]["fake"]) - real) - 30) <= 2
    big = crop(tmp_path / "out", rows[1]["fake"])
    assert np.abs(big - real).mean() < 25  # the same face, found again at the other size
    # a broken REAL costs all its fakes: the error says how many (the failed-file count alone hid them)
    (tmp_path / "real" / "p2.png").write_text("not a png")
    write_img(tmp_path / "fake" / "p2_a.png", frame)
    write_img(tmp_path / "fake" / "p2_b.png", frame)
    path = write_mapping(tmp_path, [("real/p1.png", "fake/p1_swap.png"), ("real/p2.png", "fake/p2_a.png"),
                                    ("real/p2.png", "fake/p2_b.png")])
    s = pairs_from_mapping(read_mapping_csv(path), tmp_path / "out2", CFG, val=0.0)
    assert s.rows == 1 and len(s.errors) == 1 and s.errors[0][1].endswith("(so its 2 fake(s) made no pairs)")


@pytest.mark.parametrize("real_woven", [True, False])
def test_a_fake_video_is_deinterlaced_exactly_when_its_real_is(tmp_path, astronaut, real_woven):
    # the fake is the real's other version: the same frames, woven (fields 5 px apart) where the real is not, or
    # the other way round. Woven frames keep the progressive ones' even rows, and deinterlacing keeps the even
    # rows and interpolates the odd ones from them, so decoded alike the two crops nearly agree; a fake decided
    # on its own frames would differ from its real by the deinterlacing (measured: mean 4.4-4.7 either way)
    progressive = face_frames(astronaut, 6, shift=4)
    woven = [weave(f, shifted(f, 5)) for f in progressive]
    real, fake = (woven, progressive) if real_woven else (progressive, woven)
    for k in (1, 2):
        write_video(tmp_path / f"r{k}.mp4", real)
        write_video(tmp_path / f"f{k}.mp4", fake)
    path = write_mapping(tmp_path, [(f"r{k}.mp4", f"f{k}.mp4", f"g{k}", "swap") for k in (1, 2)], extra=("group", "method"))
    pairs_from_mapping(read_mapping_csv(path), tmp_path / "out", CFG, val=0.5)
    rows = read_csv(tmp_path / "out" / "pairs.csv")
    assert len(rows) == 4
    diffs = [np.abs(crop(tmp_path / "out", r["fake"]) - crop(tmp_path / "out", r["real"])).mean() for r in rows]
    if real_woven:
        assert max(diffs) < 3.7  # both deinterlaced: the same even field (3.0 here, the codec's doing)
    else:
        assert min(diffs) > 10  # neither deinterlaced: the fake keeps its combing (17 here)


@pytest.mark.slow
def test_shared_videos_mapping_pairs_both_fakes(shared_data, tmp_path):
    v = shared_data / "videos"
    mapping = write_mapping(tmp_path, [(v / "anchor_real.mp4", v / "anchor_fake_ffpp.mp4"),
                                  (v / "anchor_real.mp4", v / "anchor_fake_deeperforensics.mp4")])  # fmt: skip
    res = CliRunner().invoke(app, ["pairs", "--mapping", str(mapping), "--out", str(tmp_path / "out"),
                                   "--frames", "3", "--size", "112", "--val", "0"])  # fmt: skip
    assert res.exit_code == 0, res.output
    rows = read_csv(tmp_path / "out" / "pairs.csv")
    assert len(rows) == 6 and {r["group"] for r in rows} == {"anchor_real"}
    fakes = {r["fake"].split("/")[2].rsplit("-", 1)[0] for r in rows}
    assert fakes == {"anchor_fake_ffpp", "anchor_fake_deeperforensics"}
    assert len({r["real"] for r in rows}) == 3  # each real crop serves both fakes


def test_a_mapping_whose_real_files_are_all_missing_says_so_before_the_split_count(tmp_path):
    with pytest.raises(ForgeryDetError, match=r"none of the 1 real file\(s\) the mapping names exists"):
        pairs_from_mapping(read_mapping_csv(write_mapping(tmp_path, [("gone.mp4", "gone_fake.mp4")])),
                           tmp_path / "out", CFG)


def test_ffpp_official_split_files_decide_each_videos_split(tmp_path, astronaut):
    """pairs --ffpp --splits DIR: FF++'s train/val/test.json put both ids of a listed pair in that split (as
    published results do), fakes of ids no file lists are left out and counted, and a bad folder is one line."""
    import json

    from forgerydet.pairs.build import make_pairs

    frames_for = lambda a, fake: face_frames(astronaut, 2)  # noqa: E731
    root = tmp_path / "ffpp"
    ffpp_tree(root, frames_for)
    for a, b in (("002", "003"), ("003", "002"), ("004", "000")):
        write_video(root / f"original_sequences/youtube/c23/videos/{a}.mp4", frames_for(a, False))
        write_video(root / f"manipulated_sequences/Deepfakes/c23/videos/{a}_{b}.mp4", frames_for(a, True))
    splits = tmp_path / "splits"
    splits.mkdir()
    (splits / "train.json").write_text(json.dumps([["000", "001"], ["905", "906"]]))  # 905, 906 not downloaded
    (splits / "val.json").write_text(json.dumps([["003", "002"], ["007", "008"]]))
    write_video(root / "manipulated_sequences/Deepfakes/c23/videos/007_008.mp4", frames_for("007", True))  # no 007.mp4
    s = make_pairs(tmp_path / "out", CFG, ffpp=root, splits=splits)
    rows = read_csv(tmp_path / "out" / "pairs.csv")
    assert {(r["group"], r["split"]) for r in rows} == {("000+001", "train"), ("002+003", "val")}
    # a fake whose original is missing was said to be left out because the split files list YouTube ids only
    assert ("1 fake video(s) were skipped: no YouTube original of their name is under "
            "original_sequences/youtube/c23/videos (e.g. 007_008.mp4)") in s.warnings
    assert any(w.startswith("1 DeepFakeDetection fake video(s) were left out: the official split files list YouTube "
                            "ids only (e.g. 01_02__walk__ABC.mp4)") for w in s.warnings)
    assert any(w.startswith("1 fake video(s) of ids that no split file lists were left out (e.g. 004_000.mp4)")
               for w in s.warnings)
    # what the split files name that is not here is said, per file (a partly downloaded FF++, or ids as numbers)
    assert f"train.json: 2 of 4 listed video ids are not under {root} for c23 (e.g. 905)" in s.warnings
    assert f"no test.json in {splits}: the test split is empty" in s.warnings
    with pytest.raises(ForgeryDetError, match="is a file: give the folder that holds train.json"):
        make_pairs(tmp_path / "o2", CFG, ffpp=root, splits=splits / "train.json")
    with pytest.raises(ForgeryDetError, match="--splits decides the splits: leave out --val and --test"):
        make_pairs(tmp_path / "o2", CFG, ffpp=root, splits=splits, val=0.3)
    with pytest.raises(ForgeryDetError, match="goes with --ffpp"):
        make_pairs(tmp_path / "o2", CFG, mapping=tmp_path / "m.csv", splits=splits)
    (splits / "test.json").write_text(json.dumps([["001", "009"]]))
    with pytest.raises(ForgeryDetError, match="video 001 is in both train.json and test.json"):
        make_pairs(tmp_path / "o2", CFG, ffpp=root, splits=splits)
    with pytest.raises(ForgeryDetError, match="none of train.json, val.json, test.json is there"):
        make_pairs(tmp_path / "o2", CFG, ffpp=root, splits=tmp_path)
    assert not (tmp_path / "o2").exists()


def test_a_fake_of_another_shape_than_its_real_is_warned_about(tmp_path, astronaut):
    frames = face_frames(astronaut, 3)
    write_video(tmp_path / "r.mp4", frames)
    write_video(tmp_path / "same.mp4", [cv2.resize(f, (144, 144)) for f in frames])  # smaller, same shape: fine
    write_video(tmp_path / "wide.mp4", [cv2.resize(f, (256, 192)) for f in frames])  # stretched: boxes misalign
    s = pairs_from_mapping(read_mapping_csv(write_mapping(tmp_path, [("r.mp4", "same.mp4"), ("r.mp4", "wide.mp4")])),
                           tmp_path / "out", CFG, val=0.0)
    said = [w for w in s.warnings if "another shape" in w]
    assert said == [f"{tmp_path / 'wide.mp4'}: 256x192, another shape than its real r.mp4 (192x192): the real's face "
                    f"boxes are stretched to fit it, so its crops may not line up with the real's (a re-framed or "
                    f"cropped copy?)"]


def test_a_fake_much_shorter_than_its_real_and_the_other_fakes_is_named(tmp_path, astronaut):
    # frames are sampled over the shortest of a real and all its fakes: one short fake (a cut download) confined
    # every other fake of that real to its first frames, and nothing said so
    frames = face_frames(astronaut, 10)
    write_video(tmp_path / "r.mp4", frames)
    write_video(tmp_path / "a.mp4", [brighter(f) for f in frames])
    write_video(tmp_path / "b.mp4", [brighter(f) for f in frames[:9]])  # a frame less: not worth a word
    s = pairs_from_mapping(read_mapping_csv(write_mapping(tmp_path, [("r.mp4", "a.mp4"), ("r.mp4", "b.mp4")])),
                           tmp_path / "out", CFG, val=0.0)
    assert not [w for w in s.warnings if "sampled from the first" in w]
    write_video(tmp_path / "c.mp4", [brighter(f) for f in frames[:2]])
    rows = [("r.mp4", "a.mp4"), ("r.mp4", "b.mp4"), ("r.mp4", "c.mp4")]
    s = pairs_from_mapping(read_mapping_csv(write_mapping(tmp_path, rows)), tmp_path / "out2", CFG, val=0.0)
    assert [w for w in s.warnings if "sampled from the first" in w] == [
        f"{tmp_path / 'c.mp4'}: 2 frames, where its real r.mp4 has 10: the frames of r.mp4 and of all its 3 fakes are "
        f"sampled from the first 2 only (the same frames in each); leave it out (with a --mapping) to sample the "
        f"others over 9 frames"]
