"""training/data.py: per-sample randomness, the balanced training epoch (every fake once, as many reals, each
with its pair-mode reference), plain face lists, and the validation lists."""

from __future__ import annotations

import shutil
from collections import Counter
from pathlib import Path

import numpy as np
import pytest
import torch

from forgerydet.errors import ForgeryDetError
from forgerydet.model.inputs import load_image, to_tensor
from forgerydet.pairs.table import read_pairs
from forgerydet.training.data import FaceList, TrainPairs, check_decodable, sample_rng, validation_lists


@pytest.fixture(scope="module")
def table(pairs):
    return read_pairs(pairs, need_splits=("train", "val"))


def test_sample_rng_depends_only_on_seed_epoch_index():
    draw = lambda *k: sample_rng(*k).integers(0, 2**31, 4).tolist()  # noqa: E731
    assert draw(0, 1, 2) == draw(0, 1, 2)
    assert len({tuple(draw(*k)) for k in [(0, 1, 2), (1, 1, 2), (0, 2, 2), (0, 1, 3)]}) == 4


def test_an_epoch_is_every_fake_once_and_as_many_reals_interleaved(table):
    ds = TrainPairs(table, 64, seed=0, augment=False)
    assert len(ds) == 2 * 24  # 6 train groups x 4 frames
    items = [ds[i] for i in range(len(ds))]
    assert [int(it["label"]) for it in items] == [1, 0] * 24
    refs_of_fakes = Counter(int(it["ref_id"]) for it in items[0::2])
    assert sorted(refs_of_fakes) == list(range(24)) and set(refs_of_fakes.values()) == {1}  # each fake's own real
    for it in items[:4]:
        assert it["x"].shape == it["ref"].shape == (3, 64, 64) and it["x"].dtype == torch.float32
        assert it["label"].shape == () and it["ref_id"].dtype == torch.long


def test_a_fakes_reference_is_the_real_it_was_made_from(table):
    ds = TrainPairs(table, 64, seed=0, augment=False)
    item = ds[0]  # the epoch starts with a fake
    real = ds.reals[int(item["ref_id"])][0]
    (row,) = [r for r in ds.rows if r.real == real]  # one fake per real in the synthetic pairs
    assert float(item["label"]) == 1.0
    assert torch.equal(item["x"], to_tensor(load_image(row.fake, 64)))
    assert torch.equal(item["ref"], to_tensor(load_image(row.real, 64)))


def test_a_reals_reference_is_another_frame_of_its_group(table):
    ds = TrainPairs(table, 64, seed=0, augment=False)
    paths = [p for p, _ in ds.reals]
    groups = dict(ds.reals)
    by_pixels = {to_tensor(load_image(p, 64)).sum().item(): p for p in paths}
    for k in range(1, len(ds), 2):
        item = ds[k]
        ref = paths[int(item["ref_id"])]
        x = by_pixels[item["x"].sum().item()]
        assert ref != x and groups[ref] == groups[x]
        assert torch.equal(item["ref"], to_tensor(load_image(ref, 64)))


def test_epochs_reorder_deterministically(table):
    a, b = TrainPairs(table, 64, seed=0, augment=False), TrainPairs(table, 64, seed=0, augment=False)
    first = [int(a[i]["ref_id"]) for i in range(0, 12)]
    assert first == [int(b[i]["ref_id"]) for i in range(0, 12)]  # another worker or rank: the same samples
    a.set_epoch(1)
    assert a.epoch == 1 and [int(a[i]["ref_id"]) for i in range(0, 12)] != first
    c = TrainPairs(table, 64, seed=5, augment=False)
    assert [int(c[i]["ref_id"]) for i in range(0, 12)] != first


def test_augmented_samples_are_reproducible(table):
    a, b = TrainPairs(table, 64, seed=3), TrainPairs(table, 64, seed=3)
    for i in (0, 1, 7):
        assert torch.equal(a[i]["x"], b[i]["x"]) and torch.equal(a[i]["ref"], b[i]["ref"])


def test_pair_reference_other_gives_a_fake_another_frame_of_its_person(table):
    ds = TrainPairs(table, 64, seed=0, augment=False, pair_reference="other")
    paths, groups = [p for p, _ in ds.reals], dict(ds.reals)
    for k in range(0, 12, 2):  # fakes
        item = ds[k]
        ref = paths[int(item["ref_id"])]
        (row,) = [r for r in ds.rows if torch.equal(item["x"], to_tensor(load_image(r.fake, 64)))]
        assert ref != row.real and groups[ref] == row.group  # 4 frames a group: never the aligned source
        assert torch.equal(item["ref"], to_tensor(load_image(ref, 64)))
    assert TrainPairs(table, 64, seed=0, augment=False)[1]["ref_id"] == ds[1]["ref_id"]  # reals as before


def test_pair_reference_reaugmented_gives_both_classes_their_own_source_augmented_again(table):
    ds = TrainPairs(table, 64, seed=0, augment=False, pair_reference="reaugmented")
    paths = [p for p, _ in ds.reals]
    for k in range(8):
        item = ds[k]
        ref = paths[int(item["ref_id"])]
        if k % 2:  # a real: itself, but never pixel for pixel
            assert torch.equal(item["x"], to_tensor(load_image(ref, 64)))
        else:  # a fake: the real it was made from
            assert [r.real for r in ds.rows if torch.equal(item["x"], to_tensor(load_image(r.fake, 64)))] == [ref]
        assert not torch.equal(item["ref"], to_tensor(load_image(ref, 64)))  # a second augmentation


def test_pair_reference_other_falls_back_to_the_source_augmented_again_for_a_lone_real(pairs, tmp_path):
    ds = TrainPairs(_single_frame_table(pairs, tmp_path), 64, seed=0, augment=False, pair_reference="other")
    real = to_tensor(load_image(ds.rows[0].real, 64))
    for k in (0, 2):  # each fake's group holds only the real it was made from
        assert ds.reals[int(ds[k]["ref_id"])][0] in [r.real for r in ds.rows]
        assert not any(torch.equal(ds[k]["ref"], to_tensor(load_image(r.real, 64))) for r in ds.rows)
    assert real.shape == (3, 64, 64)


def test_only_the_named_pair_references_are_accepted(table):
    with pytest.raises(ForgeryDetError, match="--pair-reference 'mirror': use one of source, other, reaugmented"):
        TrainPairs(table, 64, pair_reference="mirror")


def test_only_source_references_line_up_with_the_fakes(table):
    """The alignment cue bench/pair_cue.py measures: with 'source' a fake matches its reference outside the blend,
    which no real does; 'other' and 'reaugmented' take that away."""
    def matching(mode: str) -> tuple[float, float]:
        ds = TrainPairs(table, 64, seed=1, pair_reference=mode)
        share = [[], []]
        for k in range(24):
            it = ds[k]
            share[int(it["label"])].append(float(((it["x"] - it["ref"]).abs().max(0).values < 3 / 255).float().mean()))
        return float(np.median(share[1])), float(np.median(share[0]))

    fake, real = matching("source")  # the synthetic fakes differ from their reals all over: 9 % of pixels still match
    assert fake > 0.05 and real < 0.01
    for mode in ("other", "reaugmented"):
        fake, real = matching(mode)
        assert fake < 0.01 and real < 0.01, mode


def _single_frame_table(pairs: Path, tmp_path: Path):
    """Two groups of one frame each (still photos: the self-blend case), a third for validation."""
    for name in ("g0_f0_real.png", "g0_f0_fake.png", "g1_f0_real.png", "g1_f0_fake.png", "g6_f0_real.png", "g6_f0_fake.png"):
        shutil.copy(pairs.parent / name, tmp_path / name)
    (tmp_path / "pairs.csv").write_text("real,fake,group,split\n" "g0_f0_real.png,g0_f0_fake.png,g0,train\n"
                                        "g1_f0_real.png,g1_f0_fake.png,g1,train\n" "g6_f0_real.png,g6_f0_fake.png,g6,val\n")
    return read_pairs(tmp_path / "pairs.csv", need_splits=("train", "val"))


def test_a_lone_real_is_never_its_own_identical_reference_with_augmentation(pairs, tmp_path):
    ds = TrainPairs(_single_frame_table(pairs, tmp_path), 64, seed=0, augment=True)
    for k in (1, 3):
        assert not torch.equal(ds[k]["x"], ds[k]["ref"])


def test_a_lone_real_is_never_its_own_identical_reference_without_augmentation(pairs, tmp_path):
    ds = TrainPairs(_single_frame_table(pairs, tmp_path), 64, seed=0, augment=False)
    for k in (1, 3):
        assert not torch.equal(ds[k]["x"], ds[k]["ref"])


def test_face_list(table):
    paths, labels, refs, _ = validation_lists(table)
    ds = FaceList(paths[:3], labels[:3], 32)
    item = ds[2]
    assert len(ds) == 3 and set(item) == {"x", "label", "index"}
    assert item["x"].shape == (3, 32, 32) and int(item["index"]) == 2 and float(item["label"]) == 0.0
    assert torch.equal(item["x"], to_tensor(load_image(paths[2], 32)))
    with_refs = FaceList(paths, labels, 32, refs=refs)[9]
    assert float(with_refs["label"]) == 1.0 and torch.equal(with_refs["ref"], to_tensor(load_image(refs[9], 32)))


def test_validation_lists(table, pairs):
    d = pairs.parent
    paths, labels, refs, groups = validation_lists(table, "val")
    names = lambda ps: [p.name for p in ps]  # noqa: E731
    reals = [f"g{g}_f{f}_real.png" for g in (6, 7) for f in range(4)]
    assert names(paths) == reals + [r.replace("real", "fake") for r in reals]
    assert labels == [0] * 8 + [1] * 8 and groups == ["g6"] * 4 + ["g7"] * 4 + ["g6"] * 4 + ["g7"] * 4
    # a real's reference: the next real of its group (cyclic); a fake's: its real
    assert names(refs[:4]) == ["g6_f1_real.png", "g6_f2_real.png", "g6_f3_real.png", "g6_f0_real.png"]
    assert names(refs[8:]) == reals
    assert all(p.parent == d for p in paths + refs)
    assert np.array_equal(validation_lists(table, "train")[1], [0] * 24 + [1] * 24)


def test_validation_lists_count_a_fake_once(pairs, tmp_path):
    for name in ("g6_f0_real.png", "g6_f1_real.png", "g6_f0_fake.png"):
        shutil.copy(pairs.parent / name, tmp_path / name)
    (tmp_path / "pairs.csv").write_text("real,fake,group,split\n" "g6_f0_real.png,g6_f0_fake.png,g6,val\n"
                                        "g6_f1_real.png,g6_f0_fake.png,g6,val\n")
    paths, labels, refs, _ = validation_lists(read_pairs(tmp_path / "pairs.csv", need_splits=("val",)))
    assert [p.name for p in paths] == ["g6_f0_real.png", "g6_f1_real.png", "g6_f0_fake.png"] and labels == [0, 0, 1]
    assert refs[2].name == "g6_f0_real.png"


def test_online_self_blends_follow_the_share_of_local_masks(tmp_path, astronaut):
    """`train --sbi-local 1`: every pseudo-fake blended online changes one facial part, so far fewer pixels than the
    whole-face blends of the default (0) on the same faces and seeds."""
    import cv2
    from facenet_pytorch import MTCNN

    from tests._faces_util import head
    from forgerydet.pairs.table import format_landmarks

    face = np.ascontiguousarray(head(astronaut))
    _, _, points = MTCNN(device="cpu").detect(face, landmarks=True)
    lines = ["real,fake,group,split,method,landmarks"]
    for i in range(3):
        shifted = np.roll(face, 2 * i, axis=1)  # three 'people', one photo each
        cv2.imwrite(str(tmp_path / f"p{i}.png"), shifted[:, :, ::-1])
        lines.append(f"p{i}.png,,p{i},train,sbi,{format_landmarks(np.asarray(points[0], np.float64) + [2 * i, 0])}")
    (tmp_path / "pairs.csv").write_text("\n".join(lines) + "\n")
    table = read_pairs(tmp_path / "pairs.csv", need_splits=("train",))

    def changed(share: float) -> float:
        ds = TrainPairs(table, 128, seed=0, augment=False, sbi_local=share)
        total = 0.0
        for epoch in range(8):
            ds.set_epoch(epoch)
            for k in range(0, len(ds), 2):  # the fakes; each item's reference is the real it was blended from
                item = ds[k]
                assert float(item["label"]) == 1.0
                total += float(((item["x"] - item["ref"]).abs().amax(0) > 4 / 255).float().mean())
        return total

    assert TrainPairs(table, 128, sbi_local=0.3).sbi_config.mask_probs[3] == pytest.approx(0.3)
    assert changed(1.0) < 0.5 * changed(0.0)


def test_online_fakes_blended_from_another_person_follow_their_share(tmp_path, astronaut, monkeypatch):
    """`train --swap-blends 1`: every online pseudo-fake takes its inner face from a real face of ANOTHER group; the
    default (0) makes the same self-blends as before the option existed (no random draw is added)."""
    import cv2
    from facenet_pytorch import MTCNN

    from tests._faces_util import head
    from forgerydet.pairs.table import format_landmarks

    face = np.ascontiguousarray(head(astronaut))
    _, _, points = MTCNN(device="cpu").detect(face, landmarks=True)
    lines = ["real,fake,group,split,method,landmarks"]
    for i in range(3):
        person = np.roll(face, 2 * i, axis=1) if i != 2 else np.ascontiguousarray(face[:, ::-1])
        cv2.imwrite(str(tmp_path / f"p{i}.png"), person[:, :, ::-1])
        lm = np.asarray(points[0], np.float64) + [2 * i, 0]
        if i == 2:  # the mirror image: x flipped, the eyes and mouth corners swap sides
            lm = np.stack([face.shape[1] - 1 - lm[:, 0], lm[:, 1]], 1)[[1, 0, 2, 4, 3]]
        lines.append(f"p{i}.png,,p{i},train,sbi,{format_landmarks(lm)}")
    (tmp_path / "pairs.csv").write_text("\n".join(lines) + "\n")
    table = read_pairs(tmp_path / "pairs.csv", need_splits=("train",))

    def fakes(ds):
        return [ds[k]["x"] for k in range(0, len(ds), 2)]

    plain = fakes(TrainPairs(table, 96, seed=0, augment=False))
    same = TrainPairs(table, 96, seed=0, augment=False, swap_blends=0.0)
    monkeypatch.setattr(same, "_donor", lambda *a: pytest.fail("no donor is drawn at --swap-blends 0"))
    assert all(torch.equal(a, b) for a, b in zip(plain, fakes(same)))

    swapped = TrainPairs(table, 96, seed=0, augment=False, swap_blends=1.0)
    pick = swapped._donor
    donors = []

    def spy(row, rng):
        donor = pick(row, rng)
        donors.append((row.group, donor.group))
        return donor

    monkeypatch.setattr(swapped, "_donor", spy)
    for epoch in range(3):
        swapped.set_epoch(epoch)
        out = fakes(swapped)
    assert len(donors) == 9 and all(target != donor for target, donor in donors)
    assert not any(torch.equal(a, b) for a, b in zip(plain, out))


def test_landmarks_outside_their_face_are_named_by_file_and_line(tmp_path):
    """Landmarks wholly outside the crop failed partway through an epoch with 'the face region from these landmarks
    lies outside the image', naming no file; ones of 1e30 px made OpenCV ask for gigabytes."""
    import cv2

    cv2.imwrite(str(tmp_path / "a.png"), np.full((64, 64, 3), 128, np.uint8))
    lines = ["real,fake,group,split,method,landmarks", "a.png,,a,train,sbi,-500 -500 -400 -500 -450 -450 -500 -400 -400 -400"]
    (tmp_path / "pairs.csv").write_text("\n".join(lines) + "\n")
    ds = TrainPairs(read_pairs(tmp_path / "pairs.csv", need_splits=("train",)), 64, seed=0, augment=False)
    with pytest.raises(ForgeryDetError, match=r"pairs.csv:2: column 'landmarks' puts every point outside the 64x64 "
                                              r"face .*a.png: not its landmarks"):
        ds[0]
    (tmp_path / "pairs.csv").write_text(lines[0] + "\na.png,,a,train,sbi,1e30 20 30 20 25 30 20 40 30 40\n")
    with pytest.raises(ForgeryDetError, match=r"pairs.csv:2: column 'landmarks' holds a coordinate of 1e\+30 px, far "
                                              r"outside any face crop"):
        read_pairs(tmp_path / "pairs.csv", need_splits=("train",))


def test_blends_that_no_train_row_can_make_are_refused_up_front(tmp_path):
    """`train --swap-blends 1` on faces of one person (group) made no swap blend at all, every fake silently a
    self-blend, while `info` said 1.0 of them came from another person; --sbi-local on pairs with no online
    self-blend did nothing likewise. Both are refused when the training set is read."""
    import cv2

    lm = "20 24 44 24 32 34 22 46 42 46"
    for i, name in enumerate("abcf"):
        cv2.imwrite(str(tmp_path / f"{name}.png"), np.full((64, 64, 3), 60 + 20 * i, np.uint8))

    def table(rows):
        (tmp_path / "pairs.csv").write_text("real,fake,group,split,method,landmarks\n" + "".join(rows))
        return read_pairs(tmp_path / "pairs.csv", need_splits=("train",))

    one_person = table([f"{name}.png,,p,train,sbi,{lm}\n" for name in "abc"])
    with pytest.raises(ForgeryDetError, match="--swap-blends .* come from one group"):
        TrainPairs(one_person, 64, swap_blends=1.0)
    TrainPairs(one_person, 64, sbi_local=0.5)  # local self-blends need no other person
    stored = table(["a.png,f.png,p,train,deepfakes,\n", "b.png,f.png,q,train,deepfakes,\n"])
    with pytest.raises(ForgeryDetError, match="--sbi-local .* no train row"):
        TrainPairs(stored, 64, sbi_local=0.5)
    with pytest.raises(ForgeryDetError, match="--swap-blends .* come from no group"):
        TrainPairs(stored, 64, swap_blends=0.5)
    TrainPairs(table([f"a.png,,p,train,sbi,{lm}\n", f"b.png,,q,train,sbi,{lm}\n"]), 64, swap_blends=1.0)


def test_the_landmarks_of_a_crop_that_is_not_square_follow_it_to_the_working_size(tmp_path, monkeypatch):
    """A face crop of the user's own that is not square (CelebA's aligned faces are 178x218, with their 5
    landmarks) is squashed to a square working face, but its landmarks were scaled by its width alone: every y
    landed far below the face, and each online self-blend was made with a mask off the face."""
    import cv2

    import forgerydet.pairs.sbi as sbi

    cv2.imwrite(str(tmp_path / "a.png"), np.full((128, 64, 3), 128, np.uint8))  # 64 wide, 128 tall
    lm = np.array([[20, 48], [44, 48], [32, 68], [22, 92], [42, 92]], np.float32)
    (tmp_path / "pairs.csv").write_text("real,fake,group,split,method,landmarks\n"
                                        f"a.png,,a,train,sbi,{' '.join(str(v) for v in lm.ravel())}\n")
    seen = []

    def blend(face, points, *args, **kwargs):
        seen.append((face.shape, points))
        return face, None

    monkeypatch.setattr(sbi, "self_blend", blend)
    TrainPairs(read_pairs(tmp_path / "pairs.csv", need_splits=("train",)), 32, seed=0, augment=False)[0]
    (shape, points), = seen
    assert shape[:2] == (32, 32)
    np.testing.assert_allclose(points, lm * [32 / 64, 32 / 128], atol=1e-4)


def test_a_face_image_that_cannot_be_decoded_is_refused_before_the_first_step(pairs, tmp_path):
    """One corrupt crop among thousands ended a run when a batch first met it (a random step) or at validation, an
    epoch in; in the first epoch nothing was saved to resume. Every file is decoded first, in seconds."""
    table = _single_frame_table(pairs, tmp_path)
    check_decodable(table)  # all good: no error
    (tmp_path / "g6_f0_fake.png").write_bytes(b"\x89PNG\r\n\x1a\n" + bytes(range(200)))  # a copy cut short
    with pytest.raises(ForgeryDetError, match=r"1 of its 6 face images cannot be read.*g6_f0_fake.png.*remove their rows"):
        check_decodable(table)
