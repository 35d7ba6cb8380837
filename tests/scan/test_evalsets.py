"""scan/evalsets.py: evaluation sets read from FaceForensics++, DFDC and real/fake folder layouts (no decoding:
the files here are placeholders), the per-group sample, and which options go together."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from forgerydet.errors import ForgeryDetError
from forgerydet.scan.evalsets import celebdf_items, dfdc_items, evaluation_source, ffpp_items, folder_items, sample_per_group
from forgerydet.pairs.labels import Item


def _touch(root: Path, *names: str) -> None:
    for n in names:
        (root / n).parent.mkdir(parents=True, exist_ok=True)
        (root / n).write_bytes(b"x")


@pytest.fixture
def ffpp(tmp_path) -> Path:
    root = tmp_path / "FFPP"
    _touch(root, *(f"original_sequences/youtube/c23/videos/{i}.mp4" for i in ("000", "003", "010", "011")))
    for method in ("Deepfakes", "NeuralTextures"):
        _touch(root, *(f"manipulated_sequences/{method}/c23/videos/{n}.mp4" for n in ("000_003", "003_000", "010_011")))
    _touch(root, "manipulated_sequences/DeepFakeDetection/c23/videos/01_02__walk__X.mp4")  # made on actors/
    return root


def test_ffpp_originals_are_real_and_each_method_a_group(ffpp, tmp_path):
    items = ffpp_items(ffpp)
    assert [(it.path.name, it.label, it.group) for it in items[:4]] == [
        (f"{i}.mp4", 0, "original") for i in ("000", "003", "010", "011")]
    assert sorted({(it.group, it.label) for it in items[4:]}) == [("DeepFakeDetection", 1), ("Deepfakes", 1),
                                                                  ("NeuralTextures", 1)]
    assert len(items) == 4 + 7  # DeepFakeDetection's fake is named after no original, and is still a fake
    only = ffpp_items(ffpp, "c23", ["NeuralTextures"])
    assert {it.group for it in only} == {"original", "NeuralTextures"}
    split = tmp_path / "test.json"
    split.write_text(json.dumps([["003", "000"]]))  # FF++'s splits/*.json: [target, source] id pairs
    notes: list[str] = []
    alone = ffpp_items(ffpp, notes=notes)  # DeepFakeDetection's fakes without the actors' videos they were made on
    assert {it.pool for it in alone} == {"youtube"} and len(notes) == 1
    assert notes[0].startswith("DeepFakeDetection: fakes named after no YouTube original") and "measured against the " \
        "YouTube originals" in notes[0]
    kept = ffpp_items(ffpp, split=split)
    assert sorted((it.group, it.path.stem) for it in kept) == [
        ("Deepfakes", "000_003"), ("Deepfakes", "003_000"), ("NeuralTextures", "000_003"), ("NeuralTextures", "003_000"),
        ("original", "000"), ("original", "003")]
    split.write_text(json.dumps([["900", "901"]]))
    with pytest.raises(ForgeryDetError, match="none of its video ids"):
        ffpp_items(ffpp, split=split)
    split.write_text("{not json")
    with pytest.raises(ForgeryDetError, match="not a FaceForensics\\+\\+ split file"):
        ffpp_items(ffpp, split=split)
    with pytest.raises(ForgeryDetError, match="no such split file"):
        ffpp_items(ffpp, split=tmp_path / "none.json")
    with pytest.raises(ForgeryDetError, match="is a folder: give one split file in it"):  # it was "Is a directory"
        ffpp_items(ffpp, split=tmp_path)
    with pytest.raises(ForgeryDetError, match="not a FaceForensics"):
        ffpp_items(tmp_path)


def test_ffpp_split_lists_its_missing_videos_and_the_actors_are_dfds_reals(ffpp, tmp_path):
    """A partly downloaded FF++ scored with a split file: the split's videos not on disk are listed (evaluate then
    reports them skipped and exits 1, as for DFDC and Celeb-DF) instead of a quiet subset. DeepFakeDetection's
    fakes are measured against the actors' originals too, and a method downloaded only at another compression
    level is named in a note."""
    split = tmp_path / "test.json"
    split.write_text(json.dumps([["003", "000"], ["011", "500"]]))  # 500 is not downloaded; neither is 011_500 etc.
    notes: list[str] = []
    alone = ffpp_items(ffpp, notes=notes)  # DeepFakeDetection's fakes without the actors' videos they were made on
    assert {it.pool for it in alone} == {"youtube"} and len(notes) == 1
    assert notes[0].startswith("DeepFakeDetection: fakes named after no YouTube original") and "measured against the " \
        "YouTube originals" in notes[0]
    kept = ffpp_items(ffpp, split=split)
    missing = sorted((it.group, it.path.stem) for it in kept if not it.path.exists())
    assert missing == [("Deepfakes", "011_500"), ("Deepfakes", "500_011"), ("NeuralTextures", "011_500"),
                       ("NeuralTextures", "500_011"), ("original", "500")]
    assert len(kept) == 6 + 1 + 5  # 000, 003 and their fakes; 011; the five missing ones
    assert all(it.path.parent.is_dir() for it in kept)  # named where the tree keeps them
    # a method downloaded in part, none of it the split's, is listed too (its videos skipped), not left out unsaid
    _touch(ffpp, "original_sequences/youtube/c23/videos/998.mp4", "manipulated_sequences/FaceSwap/c23/videos/998_997.mp4")
    swap = sorted(it.path.stem for it in ffpp_items(ffpp, split=split) if it.group == "FaceSwap")
    assert swap == ["000_003", "003_000", "011_500", "500_011"]
    for name in ("original_sequences/youtube/c23/videos/998.mp4", "manipulated_sequences/FaceSwap/c23/videos/998_997.mp4"):
        (ffpp / name).unlink()
    (ffpp / "manipulated_sequences/FaceSwap").rename(tmp_path / "FaceSwap")
    _touch(ffpp, "original_sequences/actors/c23/videos/01__walk.mp4", "manipulated_sequences/Face2Face/c40/videos/000_003.mp4",
           "manipulated_sequences/Face2Face/masks/videos/000_003.mp4", "manipulated_sequences/FaceSwap/masks/videos/000_003.mp4")
    notes: list[str] = []
    items = ffpp_items(ffpp, notes=notes)
    assert [(it.path.name, it.label) for it in items if it.group == "actors"] == [("01__walk.mp4", 0)]
    # each method is measured against the originals its fakes were made on: DFD's the actors', the rest YouTube's
    assert {(it.group, it.pool) for it in items} == {("original", "youtube"), ("actors", "actors"),
                                                     ("DeepFakeDetection", "actors"), ("Deepfakes", "youtube"),
                                                     ("NeuralTextures", "youtube")}
    assert notes == ["Face2Face has no c23/videos (it has c40): not used; choose that level with --compression to use it"]
    assert not [it for it in ffpp_items(ffpp, methods=["Deepfakes"]) if it.group == "actors"]  # no DFD fakes: no actors
    # nor for a Deepfakes fake whose original is missing (named after no YouTube id here): the actors' videos were
    # scored as reals of their own group, against no fake, and counted in the overall figures
    _touch(ffpp, "manipulated_sequences/Deepfakes/c23/videos/012_013.mp4")
    items = ffpp_items(ffpp, methods=["Deepfakes"])
    assert {(it.group, it.pool) for it in items} == {("original", "youtube"), ("Deepfakes", "youtube")}
    assert "012_013.mp4" in [it.path.name for it in items]  # still a fake, measured against the YouTube originals
    # DeepFakeDetection alone with a split file: it said none of the split's ids was here, though they were
    (tmp_path / "test.json").write_text('[["000", "003"]]')
    with pytest.raises(ForgeryDetError, match="test.json lists YouTube ids only: DeepFakeDetection's fakes, made on "
                                              "original_sequences/actors, are in no official split"):
        ffpp_items(ffpp, methods=["DeepFakeDetection"], split=tmp_path / "test.json")
    notes.clear()
    evaluation_source(ffpp=ffpp, notes=notes)
    assert len(notes) == 1


def test_dfdc_labels_from_metadata_or_labels_csv(tmp_path):
    part = tmp_path / "dfdc_train_part_7"
    _touch(part, "a.mp4", "b.mp4", "c.mp4")
    meta = {"a.mp4": {"label": "FAKE", "original": "b.mp4", "split": "train"}, "b.mp4": {"label": "REAL"},
            "c.mp4": {"label": "fake", "original": "b.mp4"}, "gone.mp4": {"label": "REAL"}}
    (part / "metadata.json").write_text(json.dumps(meta))
    items = dfdc_items(part)
    assert [(it.path.name, it.label, it.group) for it in items] == [
        ("a.mp4", 1, "dfdc_train_part_7"), ("b.mp4", 0, "dfdc_train_part_7"), ("c.mp4", 1, "dfdc_train_part_7"),
        ("gone.mp4", 0, "dfdc_train_part_7")]  # listed, so that evaluate reports it skipped instead of dropping it
    (part / "metadata.json").write_text(json.dumps({"a.mp4": {"label": "MAYBE"}}))
    with pytest.raises(ForgeryDetError, match="neither REAL nor FAKE"):
        dfdc_items(part)
    (part / "metadata.json").write_text(json.dumps({"z.mp4": {"label": "REAL"}}))
    with pytest.raises(ForgeryDetError, match="none of the 1 videos its labels name is there"):
        dfdc_items(part)
    (part / "metadata.json").write_text("{}")
    with pytest.raises(ForgeryDetError, match="lists no videos"):
        dfdc_items(part)
    with pytest.raises(ForgeryDetError, match=r"neither metadata.json nor labels.csv found \(a DFDC part or test "
                                              r"folder\); it holds 1 that do \(e.g. .*dfdc_train_part_7\): give one"):
        dfdc_items(tmp_path)  # the folder above the parts
    (part / "metadata.json").write_text("[1, 2]")
    with pytest.raises(ForgeryDetError, match="not DFDC metadata") as e:
        dfdc_items(part)
    assert str(e.value).endswith('{"label": "REAL" or "FAKE", ...})')  # the braces balance (it ended '...}})')
    test = tmp_path / "test_videos"
    _touch(test, "x.mp4", "y.mp4")
    (test / "labels.csv").write_text("filename,label\nx.mp4,1\ny.mp4,0\n")
    assert [(it.path.name, it.label) for it in dfdc_items(test)] == [("x.mp4", 1), ("y.mp4", 0)]
    (test / "labels.csv").write_text("filename,label\nx.mp4,0.7\n")
    with pytest.raises(ForgeryDetError, match="not 0 \\(real\\) or 1 \\(fake\\)"):
        dfdc_items(test)


def test_celebdf_test_list_labels_1_as_real(tmp_path):
    """Celeb-DF's List_of_testing_videos.txt says 1 for real; copies differ in folder case and a videos/ level."""
    root = tmp_path / "Celeb-DF-v2"
    _touch(root, "Celeb-real/id0_0000.mp4", "Celeb-real/id0_0001.mp4", "Youtube-real/videos/00170.mp4",
           "Celeb-synthesis/id0_id1_0000.mp4", "Celeb-synthesis/id1_id0_0000.mp4", "Celeb-synthesis/notes.txt")
    listed = root / "List_of_testing_videos.txt"
    listed.write_text("1 YouTube-real/00170.mp4\n1 Celeb-real/id0_0000.mp4\n0 Celeb-synthesis/id0_id1_0000.mp4\n"
                      "0 Celeb-synthesis/id9_id8_0000.mp4\n\n")
    items = celebdf_items(root)
    assert [(it.path.relative_to(root).as_posix(), it.label, it.group) for it in items] == [
        ("Youtube-real/videos/00170.mp4", 0, "Youtube-real"), ("Celeb-real/id0_0000.mp4", 0, "Celeb-real"),
        ("Celeb-synthesis/id0_id1_0000.mp4", 1, "Celeb-synthesis"),
        ("Celeb-synthesis/id9_id8_0000.mp4", 1, "Celeb-synthesis")]  # missing: evaluate skips it and says so
    # saved on Windows (a byte-order mark), with a comment: the same videos
    listed.write_bytes(b"\xef\xbb\xbf# Celeb-DF v2 test list\n" + listed.read_bytes())
    assert celebdf_items(root) == items
    every = celebdf_items(root, everything=True)
    assert sorted((it.path.name, it.label) for it in every) == [
        ("00170.mp4", 0), ("id0_0000.mp4", 0), ("id0_0001.mp4", 0), ("id0_id1_0000.mp4", 1), ("id1_id0_0000.mp4", 1)]
    listed.write_text("1 Celeb-real/id0_0000.mp4\nreal Celeb-real/id0_0001.mp4\n")
    with pytest.raises(ForgeryDetError, match="line 2: not '1 Celeb-real/NAME.mp4'"):
        celebdf_items(root)
    listed.write_text("0 Celeb-synthesis/id7_id8_0000.mp4\n")
    with pytest.raises(ForgeryDetError, match="none of the 1 videos List_of_testing_videos.txt names is there"):
        celebdf_items(root)
    listed.unlink()
    with pytest.raises(ForgeryDetError, match="--celebdf-all scores every video instead"):
        celebdf_items(root)
    with pytest.raises(ForgeryDetError, match="no such folder"):
        celebdf_items(tmp_path / "none")
    # the wrong level, with or without --celebdf-all: where the root is, not an option that fails again
    for everything in (False, True):
        with pytest.raises(ForgeryDetError, match=f"not a Celeb-DF root .*; {root} looks like one"):
            celebdf_items(tmp_path, everything=everything)
        with pytest.raises(ForgeryDetError, match=f"one of Celeb-DF's video folders: give --celebdf the folder that "
                                                  f"holds it \\({root}\\)"):
            celebdf_items(root / "Celeb-real", everything=everything)


def test_real_and_fake_paths_are_groups_named_after_them(tmp_path):
    _touch(tmp_path, "Celeb-real/a.mp4", "Celeb-real/deep/b.jpg", "Celeb-real/notes.txt", "Celeb-synthesis/c.mp4",
           "dfdc/real/d.png", "dfdc/fake/e.png", "ffpp/1_real.png", "ffpp/1_fake.png")
    items = folder_items([tmp_path / "Celeb-real"], [tmp_path / "Celeb-synthesis"])
    assert [(it.path.name, it.label, it.group) for it in items] == [
        ("a.mp4", 0, f"{tmp_path.name}/Celeb-real"), ("b.jpg", 0, f"{tmp_path.name}/Celeb-real"),
        ("c.mp4", 1, f"{tmp_path.name}/Celeb-synthesis")]
    mixed = folder_items([tmp_path / "dfdc/real", str(tmp_path / "ffpp" / "*_real.png")],
                         [tmp_path / "dfdc/fake", str(tmp_path / "ffpp" / "*_fake.png")])
    assert [it.group for it in mixed] == ["dfdc/real", "ffpp/*_real.png", "dfdc/fake", "ffpp/*_fake.png"]
    assert folder_items([tmp_path / "dfdc/real"], [tmp_path / "ffpp/1_fake.png"])[1].group == "ffpp/1_fake.png"
    with pytest.raises(ForgeryDetError, match="no such file"):
        folder_items([tmp_path / "missing"], [tmp_path / "Celeb-synthesis"])
    # paths that end alike however far back keep the path as given
    _touch(tmp_path, "data/real/a.png", "x/data/real/b.png", "x/data/fake/c.png")
    monkey = folder_items([str(tmp_path / "x" / "data" / "real"), str(tmp_path / "x" / ".." / "data" / "real")],
                          [str(tmp_path / "x" / "data" / "fake")])
    assert len({it.group for it in monkey}) == 3
    # FaceForensics++'s folders all end in c23/videos: each keeps a group of its own, named as far back as it takes
    ff = "FFPP/original_sequences/youtube/c23/videos", *(f"FFPP/manipulated_sequences/{m}/c23/videos"
                                                         for m in ("Deepfakes", "Face2Face"))
    _touch(tmp_path, *(f"{d}/{i}.mp4" for d in ff for i in range(2)))
    items = folder_items([tmp_path / ff[0]], [tmp_path / ff[1], tmp_path / ff[2]])
    assert [it.group for it in items] == (["youtube/c23/videos"] * 2 + ["Deepfakes/c23/videos"] * 2
                                          + ["Face2Face/c23/videos"] * 2)


def test_per_group_sample_is_seeded_and_keeps_the_order():
    items = [Item(Path(f"{g}{i}.mp4"), int(g == "f"), g) for g in ("r", "f", "s") for i in range(10)][:25]
    a, b = sample_per_group(items, 3), sample_per_group(items, 3)
    assert a == b and [it.group for it in a] == ["r"] * 3 + ["f"] * 3 + ["s"] * 3
    assert a == [it for it in items if it in a]  # the list's order
    assert sample_per_group(items, 100) == items
    assert sample_per_group(items, 3, seed=1) != a
    with pytest.raises(ForgeryDetError, match="--per-group 0: must be >= 1"):
        sample_per_group(items, 0)
    # a group of both classes (a DFDC part: mostly fakes) keeps up to n of each, never only fakes
    part = [Item(Path(f"{i}.mp4"), int(i >= 2), "dfdc_train_part_0") for i in range(12)]
    for seed in range(5):
        got = sample_per_group(part, 2, seed=seed)
        assert sorted(it.label for it in got) == [0, 0, 1, 1]


def test_evaluation_source(ffpp, tmp_path):
    assert evaluation_source(tmp_path / "list.csv") == tmp_path / "list.csv"
    items = evaluation_source(ffpp=ffpp, methods=["Deepfakes"], per_group=2)  # never DeepFakeDetection here
    assert [it.group for it in items] == ["original", "Deepfakes"] * 2  # the classes interleaved for scoring
    with pytest.raises(ForgeryDetError, match="got LIST.csv and --dfdc"):
        evaluation_source(tmp_path / "list.csv", dfdc=tmp_path)
    with pytest.raises(ForgeryDetError, match="--real and --fake go together"):
        evaluation_source(fake=[tmp_path])


def test_folder_inside_ffpp_leaves_masks_out_and_notes_levels(tmp_path):
    m = tmp_path / "manipulated_sequences" / "Deepfakes"
    _touch(tmp_path, "original_sequences/youtube/c23/videos/000.mp4",
           "manipulated_sequences/Deepfakes/c23/videos/000_003.mp4",
           "manipulated_sequences/Deepfakes/c40/videos/000_003.mp4",
           "manipulated_sequences/Deepfakes/masks/videos/000_003.mp4")
    notes: list[str] = []
    items = folder_items([tmp_path / "original_sequences"], [m], notes)
    assert sorted(str(it.path.relative_to(m)) for it in items if it.label == 1) == [
        "c23/videos/000_003.mp4", "c40/videos/000_003.mp4"]
    assert any("left out 1 files under masks/videos" in n for n in notes)
    assert any("holds videos at c23, c40" in n and f"{m}/c23/videos" in n for n in notes)
    # one level given: nothing to say; a folder called masks given by name is the user's choice
    notes.clear()
    assert len(folder_items([tmp_path / "original_sequences"], [m / "c23" / "videos", m / "masks"], notes)) == 3
    assert notes == []
    # a real folder of people wearing masks is not FF++'s: only masks/videos is left out
    _touch(tmp_path, "people/masks/a.jpg")
    assert len(folder_items([tmp_path / "people"], [m / "c23"], notes)) == 2 and notes == []
    (m / "c23" / "videos" / "000_003.mp4").unlink()
    (m / "c40" / "videos" / "000_003.mp4").unlink()
    with pytest.raises(ForgeryDetError, match="holds only FaceForensics\\+\\+ manipulation masks"):
        folder_items([tmp_path / "original_sequences"], [m])
    # through evaluation_source, the notes reach the caller
    _touch(tmp_path, "manipulated_sequences/Deepfakes/c23/videos/000_003.mp4")
    notes.clear()
    evaluation_source(real=[tmp_path / "original_sequences"], fake=[m], notes=notes)
    assert any("masks/videos" in n for n in notes)


def test_a_file_given_as_real_and_as_fake_is_refused(tmp_path):
    """Scored with both labels it counted against itself, exit 0 (the README refuses it for a list already)."""
    for name in ("r/a.png", "f/b.png"):
        (tmp_path / name).parent.mkdir(exist_ok=True)
        (tmp_path / name).write_bytes(b"x")
    (tmp_path / "link.png").symlink_to(tmp_path / "r" / "a.png")
    for fake in ([tmp_path / "f", tmp_path / "r" / "a.png"], [tmp_path / "link.png"]):
        with pytest.raises(ForgeryDetError, match=r"a.png is given as real \(--real\) and as fake \(--fake\)|"
                                                  r"link.png is given as real"):
            folder_items([tmp_path / "r"], fake)
    assert len(folder_items([tmp_path / "r"], [tmp_path / "f"])) == 2


def test_a_file_given_twice_in_one_class_is_refused(tmp_path):
    """`--fake fakes --fake fakes/b.png` counted b.png twice in the metrics (n_fake 4 for 3 fakes)."""
    (tmp_path / "f").mkdir()
    (tmp_path / "r").mkdir()
    for name in ("f/b.png", "f/c.png", "r/a.png"):
        (tmp_path / name).write_bytes(b"x")
    with pytest.raises(ForgeryDetError, match=r"f/b.png is given twice \(in two of the paths given, or through a "
                                              r"link\): give each file once"):
        folder_items([tmp_path / "r"], [tmp_path / "f", tmp_path / "f" / "b.png"])


def test_evaluates_own_plots_in_an_out_folder_inside_a_real_folder_are_not_scored(tmp_path, monkeypatch):
    """`evaluate --real reals --fake fakes --out reals`, run again, scored its own roc.png as a real face."""
    import forgerydet.scan.evaluate as ev

    for name in ("reals/roc.png", "reals/roc_groups.png", "fakes/b.png"):
        (tmp_path / name).parent.mkdir(exist_ok=True)
        (tmp_path / name).write_bytes(b"\x89PNG...tEXtSoftware\x00Matplotlib version3.10")  # as roc_plot writes them
    items = folder_items([tmp_path / "reals"], [tmp_path / "fakes"])
    monkeypatch.setattr(ev, "Scanner", lambda *a, **k: pytest.fail("the model was loaded"))
    with pytest.raises(ForgeryDetError, match="holds only fake samples"):  # the two plots were its only reals
        ev.evaluate(items, None, out_dir=tmp_path / "reals")


def test_a_face_of_the_users_where_evaluate_writes_a_plot_is_refused_not_replaced(tmp_path, monkeypatch):
    """A real face named roc.png in the --out folder was dropped from the metrics without a word (given by folder) or
    scored (given in a list), and then replaced by the ROC plot."""
    import forgerydet.scan.evaluate as ev

    for name in ("reals/roc.png", "reals/a.png", "fakes/b.png"):
        (tmp_path / name).parent.mkdir(exist_ok=True)
        (tmp_path / name).write_bytes(b"a photo")
    (tmp_path / "list.csv").write_text("path,label\nreals/roc.png,0\nfakes/b.png,1\n")
    monkeypatch.setattr(ev, "Scanner", lambda *a, **k: pytest.fail("the model was loaded"))
    for source in (folder_items([tmp_path / "reals"], [tmp_path / "fakes"]), tmp_path / "list.csv"):
        with pytest.raises(ForgeryDetError, match=r"reals/roc.png is to be scored and is where this evaluation writes "
                                                  r"its roc.png: it would be replaced; give another --out"):
            ev.evaluate(source, None, out_dir=tmp_path / "reals")
    assert (tmp_path / "reals" / "roc.png").read_bytes() == b"a photo"


def test_the_classes_are_interleaved_in_scoring_order_each_keeping_its_own():
    """An evaluation stopped partway has scored both classes (all reals first left it no AUC at all)."""
    from forgerydet.scan.evalsets import interleaved

    items = [Item(Path(f"r{i}"), 0, "g") for i in range(4)] + [Item(Path(f"f{i}"), 1, "g") for i in range(2)]
    assert [it.path.name for it in interleaved(items)] == ["r0", "f0", "r1", "r2", "f1", "r3"]
    assert interleaved(items[:4]) == items[:4] and interleaved([]) == []
