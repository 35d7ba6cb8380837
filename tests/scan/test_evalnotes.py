"""scan/evalnotes.py: what evaluate's figures should be read with. The one-source note: the DFDC crops of
../shared/data are 11 frames of one real video, which the AUC's bootstrap resampled as 11 independent faces (the
published interval 0.73-1.00 for 0.909 said nothing of it)."""

from __future__ import annotations

from pathlib import Path

from forgerydet.pairs.labels import Item
from forgerydet.scan.evalnotes import evaluation_notes, one_source_notes


def _items(reals, fakes):
    return [Item(Path(p), 0, "all") for p in reals] + [Item(Path(p), 1, "all") for p in fakes]


def test_crops_of_one_class_cut_from_one_video_get_a_note():
    reals = [f"dfdc/real/abarnvbtwb-{i:03d}-00.png" for i in range(11)]
    fakes = ["dfdc/fake/aagfhgtpmv-009-00.png", "dfdc/fake/aapnvogymq-001-00.png", "dfdc/fake/aapnvogymq-004-01.png"]
    notes = one_source_notes(_items(reals, fakes))
    assert notes == ["the 11 real crops look cut from one video or photo (abarnvbtwb): the AUC interval resamples "
                     "them as independent faces, so it is narrower than one source can support; add crops of other "
                     "real videos"]
    assert evaluation_notes(_items(reals, fakes), True, {})[-1] == notes[0]
    assert evaluation_notes(_items(reals, fakes), False, {}) == []  # videos: each file is its own source


def test_no_note_for_crops_of_several_sources_for_too_few_or_for_files_named_by_number_alone():
    ffpp = [f"ffpp/{i:03d}_deepfake_real.png" for i in range(20)]  # one crop per FF++ video
    assert one_source_notes(_items(ffpp, [p.replace("real", "fake") for p in ffpp])) == []
    assert one_source_notes(_items(["d/clip-000.png", "d/clip-001.png"], ["e/x.png", "e/y.png"])) == []  # 2 < 3
    numbered = [f"mine/real/{i:04d}.png" for i in range(10)]  # a user's own crops: no name to go by
    assert one_source_notes(_items(numbered, [f"mine/fake/{i:04d}.png" for i in range(10)])) == []
    generic = [f"mine/real/face_{i:04d}.png" for i in range(10)]  # one number: crops or photos counted, not frames
    assert one_source_notes(_items(generic, [f"mine/fake/face_{i:04d}.png" for i in range(10)])) == []
    folder = [f"out/crops/real/clip-1234abcd/f{i:06d}_0.png" for i in range(5)]  # pairs' crop folder of one video
    assert "the 5 real crops look cut from one video or photo (clip-1234abcd)" in one_source_notes(_items(folder, []))[0]
