"""pairs --self-blend (pairs/selfblend.py): deterministic pseudo-fakes from indexes and images."""

from __future__ import annotations

import cv2
import numpy as np

from forgerydet.faces.detect import DetectorConfig
from forgerydet.faces.index import extract
from forgerydet.faces.pipeline import ExtractConfig
from forgerydet.pairs.selfblend import BlendOptions, pairs_from_self_blend
from tests._faces_util import head, read_csv
from tests.pairs.pairs_util import crop, write_img


def test_self_blend_from_index_and_from_images_is_deterministic(tmp_path, astronaut):
    photo = write_img(tmp_path / "people" / "astro.png", cv2.resize(head(astronaut), (160, 160)))
    cfg = ExtractConfig(detector=DetectorConfig(size=96, detect_side=192))
    extract([photo], tmp_path / "faces", cfg)
    every = BlendOptions(online=False)  # a fake file for the train row too
    a = pairs_from_self_blend([tmp_path / "faces" / "faces.csv"], tmp_path / "a", cfg, val=0.0, seed=3, options=every)
    (tmp_path / "people" / "notes.txt").write_text("who is who")
    b = pairs_from_self_blend([tmp_path / "people"], tmp_path / "b", cfg, val=0.0, seed=3, options=every)
    said = [w for w in b.warnings if w.startswith("not used:")]
    assert len(said) == 1 and said[0].startswith("not used: the folders and patterns given hold 1 file neither image "
                                                 "nor video (.txt 1)")
    assert not any(w.startswith("not used:") for w in a.warnings)  # an index names no other files
    b2 = pairs_from_self_blend([photo], tmp_path / "b2", cfg, val=0.0, seed=3, options=every)
    rows_a, rows_b = read_csv(tmp_path / "a" / "pairs.csv"), read_csv(tmp_path / "b" / "pairs.csv")
    assert a.rows == b.rows == b2.rows == 1 and rows_a[0]["method"] == "sbi" and rows_a[0]["group"] == "astro"
    assert (tmp_path / "a" / rows_a[0]["real"]).resolve().parent.parent == (tmp_path / "faces" / "crops").resolve()
    fake_a, fake_b = crop(tmp_path / "a", rows_a[0]["fake"]), crop(tmp_path / "b", rows_b[0]["fake"])
    np.testing.assert_array_equal(fake_b, crop(tmp_path / "b2", rows_b[0]["fake"]))  # same seed, same fake
    assert np.abs(fake_a - fake_b).mean() < 1.0  # the index keeps landmarks to 0.01 px: nearly the same fake
    real = crop(tmp_path / "a", rows_a[0]["real"])
    mask = cv2.imread(str(tmp_path / "a" / rows_a[0]["fake"].replace(".png", "_mask.png")), cv2.IMREAD_GRAYSCALE)
    assert mask.shape == (96, 96) and mask.max() > 0
    assert np.abs(fake_a - real).max() > 0 and (fake_a[mask == 0] == real[mask == 0]).all()
    c = pairs_from_self_blend([tmp_path / "people"], tmp_path / "c", cfg, val=0.0, seed=4, options=every)
    assert c.rows == 1 and not np.array_equal(crop(tmp_path / "c", rows_b[0]["fake"]), fake_b)


def test_by_default_only_held_out_rows_get_a_fake_file(tmp_path, astronaut):
    """Training re-blends train rows every epoch and never reads their stored fake, so by default none is written
    (no blend, no fake or mask PNG for them); val and test rows keep theirs, since validation scores those."""
    base = cv2.resize(head(astronaut), (160, 160))
    for i in range(4):
        write_img(tmp_path / "people" / f"p{i}.png", np.roll(base, 3 * i, axis=1))
    cfg = ExtractConfig(detector=DetectorConfig(size=96, detect_side=192))
    s = pairs_from_self_blend([tmp_path / "people"], tmp_path / "out", cfg, val=0.5, test=0.0, seed=0, options=BlendOptions(workers=1))
    rows = read_csv(tmp_path / "out" / "pairs.csv")
    assert s.rows == 4 and {r["split"] for r in rows} == {"train", "val"}
    assert s.blended_online == sum(r["split"] == "train" for r in rows)  # what `pairs` reports
    for r in rows:
        assert (r["fake"] == "") == (r["split"] == "train") and r["landmarks"]
    fakes = sorted(p.name for p in (tmp_path / "out" / "crops" / "sbi").rglob("*.png"))
    assert len(fakes) == 2 * sum(r["split"] == "val" for r in rows)  # a fake and its mask per val row only


def test_a_stored_jpeg_fake_is_compressed_once_like_its_real(tmp_path, astronaut):
    """With --format jpg the fake used to be blended from the real's JPEG copy and compressed again: outside the
    blend it differed from its real in half the pixels, a class cue (double compression) no scanned face carries.
    Now both are compressed once: away from the blend (two JPEG blocks) the two files decode to the same pixels."""
    photo = write_img(tmp_path / "people" / "astro.png", astronaut)
    cfg = ExtractConfig(detector=DetectorConfig(size=256, margin=1.5, detect_side=512))  # room around the face
    opts = BlendOptions(online=False, image_format="jpg", jpeg_quality=90)
    pairs_from_self_blend([photo], tmp_path / "j", cfg, val=0.0, seed=3, options=opts)
    (row,) = read_csv(tmp_path / "j" / "pairs.csv")
    real, fake = crop(tmp_path / "j", row["real"]), crop(tmp_path / "j", row["fake"])
    mask = cv2.imread(str(tmp_path / "j" / row["fake"].replace(".jpg", "_mask.png")), cv2.IMREAD_GRAYSCALE)
    far = cv2.dilate((mask > 0).astype(np.uint8), np.ones((65, 65), np.uint8)) == 0  # 32 px: two 16-px MCUs
    assert far.sum() > 1000 and np.abs(fake - real).max() > 0
    assert (fake[far] == real[far]).all()


def test_grouping_that_may_split_one_person_is_said():
    """Ann_0001 and Ann_0002 without --group-pattern are two groups, which can fall on both sides of the split; a
    pattern that misses some images leaves each of those alone. Videos are their own group anyway."""
    import re
    from pathlib import Path

    from forgerydet.pairs.selfblend import grouping_warnings

    files = [Path(f"/p/{n}") for n in ("Ann_0001.jpg", "Ann_0002.jpg", "Ann_0003.png", "Bob_0001.jpg", "x.jpg",
                                       "d0.mp4", "d1.mp4", "d2.mp4")]
    (said,) = grouping_warnings(files, None)
    assert said.startswith("3 images share a name before a trailing number with another (e.g. 3 named 'Ann' and a "
                           "number): without --group-pattern each image is its own group")
    assert grouping_warnings([Path("/p/a.jpg"), Path("/p/Ann_0001.jpg"), Path("/p/d0.mp4"), Path("/p/d1.mp4")], None) == []
    pattern = re.compile(r"^(.+)_\d{4}$")
    assert grouping_warnings(files, pattern) == ["--group-pattern matched 4 of 5 images; the other 1 (e.g. x.jpg) are "
                                                 "each their own group"]
    assert grouping_warnings(files[:4] + files[5:], pattern) == []
