"""pairs.csv: group splits, the FF++ layout parser, frame-aligned pairs, write_mapping, self-blending, the command."""

from __future__ import annotations

import pytest
from typer.testing import CliRunner

from forgerydet.cli.app import app
from forgerydet.errors import ForgeryDetError
from forgerydet.pairs.build import make_pairs, two_person_fakes
from forgerydet.pairs.discover import MappingEntry

# ---------------------------------------------------------------- splits


# ---------------------------------------------------------------- FF++ layout


# ---------------------------------------------------------------- mapping and folders


# ---------------------------------------------------------------- self-blending


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


def test_a_rerun_into_the_same_folder_says_what_the_earlier_run_left(tmp_path, astronaut):
    """pairs.csv is replaced whole; the earlier run's crops it no longer names stay (nothing is deleted) and are
    counted in a warning (a user re-running with fewer sources saw 384 unexplained PNGs)."""
    import cv2
    import numpy as np

    from forgerydet.faces.detect import DetectorConfig
    from forgerydet.faces.pipeline import ExtractConfig
    from forgerydet.pairs.selfblend import BlendOptions
    from tests._faces_util import head
    from tests.pairs.pairs_util import write_img

    base = cv2.resize(head(astronaut), (160, 160))
    photos = [write_img(tmp_path / "people" / f"p{i}.png", np.roll(base, 3 * i, axis=1)) for i in range(4)]
    cfg = ExtractConfig(detector=DetectorConfig(size=96, detect_side=192))
    every = BlendOptions(online=False, workers=1)  # crop, fake and mask per face
    first = make_pairs(tmp_path / "out", cfg, self_blend=True, sources=photos, val=0.0, blend=every)
    assert first.rows == 4 and not any("earlier run" in w for w in first.warnings)
    before = (tmp_path / "out" / "pairs.csv").read_bytes()
    with pytest.raises(ForgeryDetError, match=r"already holds a pairs.csv \(4 rows\): give another --out, or --overwrite"):
        make_pairs(tmp_path / "out", cfg, self_blend=True, sources=photos[:1], val=0.0, blend=every)
    assert (tmp_path / "out" / "pairs.csv").read_bytes() == before  # never replaced unasked
    again = make_pairs(tmp_path / "out", cfg, self_blend=True, sources=photos, val=0.0, blend=every, overwrite=True)
    assert not any("earlier run" in w for w in again.warnings)  # the same run again names every file
    fewer = make_pairs(tmp_path / "out", cfg, self_blend=True, sources=photos[:1], val=0.0, blend=every,
                       overwrite=True)
    said = [w for w in fewer.warnings if "earlier run" in w]
    assert said == [f"{tmp_path / 'out' / 'crops'} also holds 9 file(s) of an earlier run that pairs.csv does not "
                    f"name (delete that folder first for a clean one)"]
    assert len([p for p in (tmp_path / "out" / "crops").rglob("*") if p.is_file()]) == 12  # nothing deleted


def test_fakes_named_after_two_reals_are_found_for_the_split_warning():
    """--real-dir/--fake-dir on FaceForensics++ folders grouped fake 002_001 (001's face) with real 002 only, so
    001's face could train while real 001 was in val, without a word; those fakes are now named in a warning."""
    from pathlib import Path

    e = [MappingEntry(Path("r/000.mp4"), Path("f/000_003.mp4")), MappingEntry(Path("r/003.mp4"), Path("f/003_000.mp4")),
         MappingEntry(Path("r/002.mp4"), Path("f/002_999.mp4")),  # 999 is no real here: nothing to leak
         MappingEntry(Path("r/clip.mp4"), Path("f/clip_fake.mp4")), MappingEntry(Path("r/a.mp4"), Path("f/a.mp4"))]
    assert two_person_fakes(e) == [Path("f/000_003.mp4"), Path("f/003_000.mp4")]


def test_a_second_run_into_a_folder_another_run_is_writing_is_refused(tmp_path):
    """Two `pairs` into one --out at once each said "wrote pairs.csv" and exited 0: the last one's replaced the
    first's, and one's crops could be the other's (blended with the other seed). The folder is held while a run
    writes: the second is refused at once, --overwrite or not, and writes nothing."""
    from forgerydet.paths import folder_held

    out = tmp_path / "out"
    with folder_held(out, "--out", "`forgerydet pairs`"):  # as a run writing there holds it
        for overwrite in (False, True):
            with pytest.raises(ForgeryDetError) as e:
                make_pairs(out, self_blend=True, sources=[tmp_path / "a.png"], overwrite=overwrite)
            assert str(e.value) == (f"--out {out}: another `forgerydet pairs` is writing there now: wait for it to "
                                    f"end, or give another --out")
        assert list(out.iterdir()) == []
