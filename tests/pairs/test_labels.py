"""pairs/labels.py: the path,label[,group] lists that `evaluate` and `train --watch` read."""

from __future__ import annotations

from pathlib import Path

import pytest

from forgerydet.errors import ForgeryDetError
from forgerydet.pairs.labels import Item, check_classes, read_list


def test_labels_groups_and_relative_paths(tmp_path):
    listed = tmp_path / "lists" / "l.csv"
    listed.parent.mkdir()
    listed.write_text("path,label,group\na.png,real,ffpp\n/abs/b.mp4,FAKE,ffpp\nc.png, manipulated ,\nd.png,pristine,\n")
    assert read_list(listed) == [Item(listed.parent / "a.png", 0, "ffpp"), Item(Path("/abs/b.mp4"), 1, "ffpp"),
                                 Item(listed.parent / "c.png", 1, "all"), Item(listed.parent / "d.png", 0, "all")]


@pytest.mark.parametrize("text,message", [
    ("file,label\na.png,0\n", "missing column(s) path; needed: path, label (optional: group); found: file, label"),
    ("path,label\na.png,0\nb.png,maybe\n", "l.csv:3: column 'label' is 'maybe'; use 0/1 or real/fake"),
    ("path,label\n", "has a header but no rows"),
    # `evaluate pairs.csv` said only "missing column(s) path, label"
    ("real,fake,group,split,method,landmarks\na.png,b.png,g,test,sbi,\n",
     "is a pairs.csv (real,fake,...), which train reads; a list here has columns path,label[,group]"),
    ("path,label\na.png,1\nb.png,fake\n", "holds only fake samples: AUC, AP and EER need both"),
])
def test_each_problem_is_one_error_naming_the_line(tmp_path, text, message):
    (tmp_path / "l.csv").write_text(text)
    with pytest.raises(ForgeryDetError) as e:
        read_list(tmp_path / "l.csv")
    assert message in str(e.value)
    with pytest.raises(ForgeryDetError, match="list not found"):
        read_list(tmp_path / "none.csv")
    (tmp_path / "latin1.csv").write_bytes(b"path,label\n\xe9t\xe9.png,real\nb.png,fake\n")
    with pytest.raises(ForgeryDetError, match="latin1.csv: not a UTF-8 text CSV file"):
        read_list(tmp_path / "latin1.csv")  # a UnicodeDecodeError and its traceback before


def test_check_classes_names_the_missing_class():
    both = [Item(Path("a"), 0, "g"), Item(Path("b"), 1, "g")]
    assert check_classes(both, "x") is both
    with pytest.raises(ForgeryDetError, match="the test split holds only real samples"):
        check_classes(both[:1], "the test split")


def test_a_file_listed_twice_is_refused_naming_both_lines(tmp_path):
    from forgerydet.errors import ForgeryDetError
    from forgerydet.pairs.labels import read_list

    lst = tmp_path / "l.csv"
    lst.write_text("path,label\na.png,0\nb.png,1\n./a.png,1\n")
    with pytest.raises(ForgeryDetError, match=r"l.csv:4: ./a.png is already listed on line 2"):
        read_list(lst)


def test_a_list_saved_with_a_byte_order_mark_reads_as_without(tmp_path):
    listed = tmp_path / "l.csv"
    listed.write_text("path,label\na.png,real\nb.png,fake\n", encoding="utf-8-sig")  # Excel's "CSV UTF-8"
    assert read_list(listed) == [Item(tmp_path / "a.png", 0, "all"), Item(tmp_path / "b.png", 1, "all")]


@pytest.mark.parametrize("rows,said", [
    # more fields than the header (an unquoted comma) gave AttributeError: 'list' object has no attribute 'strip'
    ("a.png,0\nb.png,1,extra,more\n", "3: 4 fields where the header has 2 (a comma in a value that is not quoted?)"),
    # the same bytes as real and, through a link, as fake were scored against themselves (AUC 0.25)
    ("a.png,0\nalias.png,1\n", "3: alias.png is already listed on line 2 (through a link): list each file once, with one label"),
    # an empty path was scored as the list's folder ('a folder, where a video or image file is wanted')
    (",0\nb.png,1\n", "2: column 'path' is empty"),
])
def test_each_bad_row_is_one_line_naming_it(tmp_path, rows, said):
    (tmp_path / "a.png").write_bytes(b"x")
    (tmp_path / "alias.png").symlink_to(tmp_path / "a.png")
    p = tmp_path / "list.csv"
    p.write_text("path,label\n" + rows)
    with pytest.raises(ForgeryDetError) as e:
        read_list(p)
    assert str(e.value) == f"{p}:{said}"
