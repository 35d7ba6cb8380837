"""pairs.csv splits (pairs/table.py): by group, disjoint, deterministic, never silently empty."""

from __future__ import annotations

import os

import pytest

from forgerydet.errors import ForgeryDetError
from forgerydet.pairs.table import assign_splits


def test_splits_are_by_group_disjoint_and_deterministic():
    groups = [f"v{i:03d}" for i in range(20)]
    s = assign_splits(groups + groups[:5], val=0.15, test=0.1, seed=0)  # repeats: one entry per group
    assert set(s) == set(groups)
    counts = {k: list(s.values()).count(k) for k in ("train", "val", "test")}
    assert counts == {"train": 15, "val": 3, "test": 2}
    assert assign_splits(reversed(groups), val=0.15, test=0.1, seed=0) == s  # order of input does not matter
    assert assign_splits(groups, val=0.15, test=0.1, seed=1) != s
    assert set(assign_splits(groups, val=0.0, test=0.0).values()) == {"train"}


def test_a_few_groups_more_or_less_move_almost_none_across_splits():
    groups = [f"{i:03d}" for i in range(1000)]
    full = assign_splits(groups, val=0.15, test=0.15, seed=0)
    for drop in (0, 123, 500, 999):  # a video that failed, a method left out
        less = assign_splits([g for g in groups if g != groups[drop]], val=0.15, test=0.15, seed=0)
        assert sum(less[g] != full[g] for g in less) <= 2
    more = assign_splits(groups + ["new1", "new2"], val=0.15, test=0.15, seed=0)
    assert sum(more[g] != full[g] for g in groups) <= 4


def test_too_few_groups_is_an_error_not_an_empty_split():
    assert sorted(assign_splits(["a", "b"], val=0.01).values()) == ["train", "val"]  # rounds up to one group
    with pytest.raises(ForgeryDetError, match="only 1 group.*--val 0"):
        assign_splits(["a"], val=0.15)
    with pytest.raises(ForgeryDetError, match="at least 3"):
        assign_splits(["a", "b"], val=0.15, test=0.15)
    with pytest.raises(ForgeryDetError, match="fraction"):
        assign_splits(["a", "b"], val=1.0)


def test_split_shares_must_leave_some_to_train_on():
    from forgerydet.pairs.table import check_split_shares

    check_split_shares(0.45, 0.45)
    with pytest.raises(ForgeryDetError, match="leave no share to train on"):
        check_split_shares(0.6, 0.4)
    with pytest.raises(ForgeryDetError, match="leave no share"):
        assign_splits([f"g{i}" for i in range(50)], val=0.5, test=0.5)


def test_a_pairs_file_moved_away_from_its_crops_says_where_paths_are_taken_from(tmp_path):
    from forgerydet.pairs.table import read_pairs

    (tmp_path / "sbi" / "crops").mkdir(parents=True)
    for name in ("r.png", "f.png", "r2.png", "f2.png"):
        (tmp_path / "sbi" / "crops" / name).write_bytes(b"x")
    text = "real,fake,group,split\ncrops/r.png,crops/f.png,a,train\ncrops/r2.png,crops/f2.png,b,val\n"
    (tmp_path / "sbi" / "pairs.csv").write_text(text)
    assert len(read_pairs(tmp_path / "sbi" / "pairs.csv").rows) == 2  # beside its crops: found
    (tmp_path / "moved").mkdir()
    (tmp_path / "moved" / "pairs.csv").write_text(text)
    with pytest.raises(ForgeryDetError) as e:
        read_pairs(tmp_path / "moved" / "pairs.csv")
    assert str(e.value) == (f"{tmp_path / 'moved' / 'pairs.csv'}:2: column 'real': file not found: "
                            f"{tmp_path / 'moved' / 'crops' / 'r.png'} (relative paths in a pairs file are taken from "
                            f"its folder, {tmp_path / 'moved'}: was it moved or copied away from its crops?)")
    absolute = f"real,fake,group,split\n{tmp_path / 'gone.png'},{tmp_path / 'f.png'},a,train\n"
    (tmp_path / "abs.csv").write_text(absolute)
    with pytest.raises(ForgeryDetError) as e:
        read_pairs(tmp_path / "abs.csv")
    assert str(e.value).endswith(f"file not found: {tmp_path / 'gone.png'}")  # written absolute: no such hint


def test_too_few_groups_after_failures_names_the_files_that_failed(tmp_path):
    from forgerydet.pairs.table import PairsSummary, finish_pairs, pair_row

    rows = [pair_row("crops/real/a.png", "crops/x/a.png", "a", "x", None)]
    summary = PairsSummary(pairs_csv=tmp_path / "pairs.csv", errors=[("b.mp4", "b.mp4: cannot decode the video")])
    with pytest.raises(ForgeryDetError) as e:
        finish_pairs(rows, tmp_path, 0.15, 0.0, 0, summary)
    assert str(e.value).endswith("; 1 file(s) failed, which may have taken groups with them (first: b.mp4: cannot "
                                 "decode the video)")
    assert not (tmp_path / "pairs.csv").exists()


def test_one_group_holding_most_pairs_is_warned_of(tmp_path):
    """DeepFakeDetection's fakes join its actors into one group: whichever split it lands in is mostly its faces."""
    from forgerydet.pairs.table import PairsSummary, finish_pairs, pair_row

    rows = [pair_row(f"crops/real/{g}{i}.png", f"crops/x/{g}{i}.png", g, "x", None)
            for g, n in (("a", 2), ("b", 2), ("c", 2), ("d", 2), ("actor01+actor02", 10)) for i in range(n)]
    s = finish_pairs(rows, tmp_path, 0.2, 0.0, 0, PairsSummary(pairs_csv=tmp_path / "pairs.csv"))
    split = next(r["split"] for r in rows if r["group"].startswith("actor"))
    [w] = s.warnings
    assert w.startswith(f"group actor01+actor02 holds 10 of the 18 pairs (56%), all in {split}: ") and "never split" in w
    for sizes in ((1,) * 8, (4, 3, 3), (5, 5)):  # even groups; three of which none is much larger; two groups
        rows = [pair_row(f"crops/real/{g}{i}.png", f"crops/x/{g}{i}.png", g, "x", None)
                for g, n in zip("abcdefgh", sizes) for i in range(n)]
        assert finish_pairs(rows, tmp_path, 0.2, 0.0, 0, PairsSummary(pairs_csv=tmp_path / "pairs.csv")).warnings == []
    rows = [pair_row(f"crops/real/{g}{i}.png", f"crops/x/{g}{i}.png", g, "x", None)
            for g, n in zip("abc", (6, 6, 22)) for i in range(n)]  # the three groups of a small tree with DFD
    assert "holds 22 of the 34 pairs (65%)" in finish_pairs(rows, tmp_path, 0.3, 0.0, 0,
                                                           PairsSummary(pairs_csv=tmp_path / "pairs.csv")).warnings[0]


def test_a_pairs_file_saved_with_a_byte_order_mark_reads_as_without(tmp_path):
    """Excel's "CSV UTF-8" starts the file with a BOM: it was refused for a missing 'real' that the message listed
    as found (the mark is invisible)."""
    from forgerydet.pairs.table import read_pairs

    (tmp_path / "crops").mkdir()
    for name in ("r.png", "f.png", "r2.png", "f2.png"):
        (tmp_path / "crops" / name).write_bytes(b"x")
    text = "real,fake,group,split\r\ncrops/r.png,crops/f.png,a,train\r\ncrops/r2.png,crops/f2.png,b,val\r\n"
    (tmp_path / "plain.csv").write_text(text, encoding="utf-8")
    (tmp_path / "excel.csv").write_text(text, encoding="utf-8-sig")
    assert read_pairs(tmp_path / "excel.csv").rows == read_pairs(tmp_path / "plain.csv").rows


def test_a_split_left_empty_by_failed_files_is_warned_of(tmp_path):
    """Splits are drawn over the groups found before detection: with the files of 'train' all failed, pairs wrote a
    val-only pairs.csv in silence and train refused it later."""
    from forgerydet.pairs.table import PairsSummary, finish_pairs, pair_row

    rows = [pair_row("crops/real/a.png", "crops/x/a.png", "a", "x", None)]
    s = finish_pairs(rows, tmp_path, 0.34, 0.0, 0, PairsSummary(pairs_csv=tmp_path / "pairs.csv"),
                     splits={"a": "val", "b": "train", "c": "train"})
    assert s.warnings == ["no 'train' pairs: every group drawn for it gave no face (no face found, or its files "
                          "failed); `forgerydet train` needs 'train' and 'val' pairs: add sources"]
    s = finish_pairs(rows, tmp_path, 0.3, 0.3, 0, PairsSummary(pairs_csv=tmp_path / "pairs.csv"),
                     splits={"a": "train", "b": "val", "c": "test"})
    assert s.warnings[0].startswith("no 'val' or 'test' pairs: every group drawn for them gave no face")
    # the official split files decide (pairs --splits, where --val keeps its default): a split no file drew for was
    # said to have lost every group drawn for it, and one that did lose them all went unsaid while --test was 0
    s = finish_pairs(rows, tmp_path, 0.15, 0.0, 0, PairsSummary(pairs_csv=tmp_path / "pairs.csv"),
                     splits={"a": "train"})  # no val.json
    assert s.warnings == []
    s = finish_pairs(rows, tmp_path, 0.15, 0.0, 0, PairsSummary(pairs_csv=tmp_path / "pairs.csv"),
                     splits={"a": "train", "c": "test"})
    assert s.warnings[0].startswith("no 'test' pairs: every group drawn for it gave no face")


def test_a_face_file_in_train_and_val_under_another_group_is_refused(tmp_path):
    """Only the group labels were compared: the same crop as a training face and a validation real under another
    label was accepted, and validation scored a face it trained on (AUC 0.75 against 0.52 in the hostile pass)."""
    from forgerydet.pairs.table import read_pairs

    (tmp_path / "crops").mkdir()
    for name in ("r.png", "f.png", "r2.png", "f2.png"):
        (tmp_path / "crops" / name).write_bytes(b"x")
    (tmp_path / "p.csv").write_text("real,fake,group,split\ncrops/r.png,crops/f.png,a,train\n"
                                    "crops/r2.png,crops/f2.png,b,val\n./crops/r.png,crops/f2.png,c,val\n")
    with pytest.raises(ForgeryDetError) as e:
        read_pairs(tmp_path / "p.csv")
    assert str(e.value) == (f"{tmp_path / 'p.csv'}: 1 face file(s) of 'val' are 'train' files too (e.g. line 4, the "
                            f"file of line 2), under another group: 'val' would score faces it trained on; list each "
                            f"file in one split")


def test_a_row_with_more_fields_than_the_header_is_one_line_naming_it(tmp_path):
    """An unquoted comma ('Smith, John') gave AttributeError: 'list' object has no attribute 'strip'."""
    from forgerydet.pairs.table import read_pairs

    p = tmp_path / "pairs.csv"
    p.write_text("real,fake,group,split\na.png,b.png,Smith, John,train\n")
    with pytest.raises(ForgeryDetError) as e:
        read_pairs(p)
    assert str(e.value) == f"{p}:2: 5 fields where the header has 4 (a comma in a value that is not quoted?)"


def test_a_pair_listed_twice_a_folder_for_a_face_and_a_group_in_val_and_test_are_refused(tmp_path):
    from forgerydet.pairs.table import read_pairs

    for name in ("a.png", "b.png", "c.png", "d.png"):
        (tmp_path / name).write_bytes(b"x")
    (tmp_path / "dir").mkdir()
    head = "real,fake,group,split\n"
    cases = {
        "a.png,b.png,g,train\nc.png,d.png,h,val\na.png,b.png,g,train\n": ":4: the pair of line 2 again: list each pair once",
        "dir,b.png,g,train\n": ":2: column 'real': a folder, where a face image is wanted: ",
        "a.png,b.png,g,train\nc.png,d.png,h,val\nc.png,b.png,h,test\n": ": group(s) h appear in 'val' and 'test'",
    }
    for rows, said in cases.items():
        (tmp_path / "p.csv").write_text(head + rows)
        with pytest.raises(ForgeryDetError) as e:
            read_pairs(tmp_path / "p.csv")
        assert str(e.value).startswith(f"{tmp_path / 'p.csv'}{said}"), str(e.value)


def test_a_pipe_or_device_for_a_face_is_named_as_one_not_as_missing(tmp_path):
    """A pairs.csv row naming a named pipe (or /dev/zero) said 'file not found' (and 'was it moved or copied away
    from its crops?') of a path that is there."""
    from forgerydet.pairs.table import read_pairs

    (tmp_path / "b.png").write_bytes(b"x")
    os.mkfifo(tmp_path / "fifo.png")
    for real in ("fifo.png", "/dev/zero"):
        (tmp_path / "p.csv").write_text(f"real,fake,group,split\n{real},b.png,g,train\n")
        with pytest.raises(ForgeryDetError) as e:
            read_pairs(tmp_path / "p.csv")
        assert str(e.value).startswith(f"{tmp_path / 'p.csv'}:2: column 'real': a pipe or a device, not a face image "
                                       f"file: "), str(e.value)
