"""training/validate.py: scoring faces in 'single' and 'pair' mode (independent of the batch size), the
validation metrics and calibration, divergence as a clear error, and `calibrate` into another file."""

from __future__ import annotations

import hashlib
from pathlib import Path

import numpy as np
import pytest
import torch

from forgerydet.errors import ForgeryDetError
from forgerydet.model.calibration import sigmoid
from forgerydet.model.checkpoint import load_checkpoint, save_checkpoint
from forgerydet.model.inputs import load_image, to_tensor
from forgerydet.pairs.table import read_pairs
from forgerydet.training.config import TrainConfig
from forgerydet.training.data import validation_lists
from forgerydet.training.validate import (calibrate_checkpoint, read_watch, score_faces, validate,
                                          watch_notice)
from tests.helpers import tcfg, tiny_model

CPU = torch.device("cpu")


def _filled(seed: int = 0):
    torch.manual_seed(seed)
    m = tiny_model(bank_size=16).eval()
    m.bank.rebuild(m.encode_keys(torch.rand(10, 3, 64, 64)), m.key_fingerprint(), source=torch.arange(10))
    return m


@pytest.fixture(scope="module")
def model():
    return _filled()


@pytest.fixture(scope="module")
def val(pairs):
    table = read_pairs(pairs, need_splits=("train", "val"))
    return table, validation_lists(table, "val")


def test_scores_are_the_models_logits_whatever_the_batch_size(model, val):
    _, (paths, labels, refs, _) = val
    x = torch.stack([to_tensor(load_image(p, 64)) for p in paths])  # (16,3,64,64)
    r = torch.stack([to_tensor(load_image(p, 64)) for p in refs])
    with torch.no_grad():
        want_single = model(x, "single")["logits"].numpy()  # (16,)
        want_pair = model(x, "pair", reference=r)["logits"].numpy()
    single = score_faces(model, paths, labels, refs, "single", CPU, batch_size=5)
    assert single.shape == (16,) and single.dtype == np.float32
    np.testing.assert_allclose(single, want_single, atol=1e-5)
    np.testing.assert_allclose(score_faces(model, paths, labels, refs, "pair", CPU, batch_size=16), want_pair, atol=1e-5)
    assert not np.allclose(single, want_pair)  # the two modes really differ


def test_scoring_reports_its_progress_per_batch(model, val):
    """`calibrate` scored its validation faces without a word (minutes on a real validation split)."""
    _, (paths, labels, refs, _) = val
    seen = []
    score_faces(model, paths, labels, refs, "single", CPU, batch_size=5, progress=lambda a, b: seen.append((a, b)))
    n = len(paths)
    assert seen == [(min(k, n), n) for k in range(5, n + 5, 5)]


def test_scoring_puts_the_model_in_eval_mode(val):
    m = _filled().train()
    _, (paths, labels, refs, _) = val
    a = score_faces(m, paths[:4], labels[:4], None, "single", CPU)
    assert not m.training
    np.testing.assert_array_equal(a, score_faces(m, paths[:4], labels[:4], None, "single", CPU))  # no dropout


def test_validate_reports_both_modes_and_the_calibration(model, val, pairs, tmp_path):
    table, (paths, labels, refs, _) = val
    res = validate(model, table, CPU, tcfg(pairs, tmp_path, val_batch_size=7))
    assert res["val_n"] == 16 and set(res) == {"val_auc", "val_ap", "val_eer", "val_acc", "val_loss", "val_auc_pair",
                                               "val_n", "calibration"}
    logits = score_faces(model, paths, labels, refs, "single", CPU)
    p = np.clip(sigmoid(logits), 1e-6, 1 - 1e-6)
    y = np.asarray(labels)
    assert res["val_loss"] == pytest.approx(float(-np.mean(y * np.log(p) + (1 - y) * np.log(1 - p))), rel=1e-4)
    assert res["val_acc"] == pytest.approx(float(np.mean((sigmoid(logits) >= 0.5) == y)))
    for k in ("val_auc", "val_ap", "val_eer", "val_auc_pair"):
        assert 0.0 <= res[k] <= 1.0
    cal = res["calibration"]
    assert cal["target_fpr"] == TrainConfig.calibration_fpr and cal["temperature"] > 0 and 0 < cal["threshold"] < 1
    assert cal["precision"] == "fp32"  # training on a CPU scores in fp32 whatever --amp says (distributed.autocast)


def test_nan_outputs_say_lower_the_learning_rate(val, pairs, tmp_path):
    m = _filled()
    with torch.no_grad():
        for p in m.head.parameters():
            p.fill_(float("nan"))
    with pytest.raises(ForgeryDetError) as e:
        validate(m, val[0], CPU, tcfg(pairs, tmp_path, lr=0.5))
    assert str(e.value) == ("training diverged: the model's outputs became NaN or infinite (learning rate 0.5): lower "
                            "--lr (the default is 0.0003) and train again into a new --out")


def test_calibrate_into_another_file_keeps_the_original(model, pairs, tmp_path):
    ck = save_checkpoint(tmp_path / "m.safetensors", model, bank_sources=[f"/r/{i}.png" for i in range(10)])
    before = hashlib.sha256(ck.read_bytes()).hexdigest()
    out = tmp_path / "cal" / "m2.safetensors"
    res = calibrate_checkpoint(ck, pairs, fpr=0.25, device="cpu", batch_size=4, workers=0, out=out)
    assert hashlib.sha256(ck.read_bytes()).hexdigest() == before
    assert res["checkpoint"] == str(out) and res["calibrated_on"] == str(pairs) and res["target_fpr"] == 0.25
    assert res["val_fpr"] <= 0.25 and res["val_reals"] == 8 and res["val_fakes"] == 8
    assert res["val_fakes_self_blended"] is False  # the synthetic pairs' fakes are method 'patch', not 'sbi'
    extra = load_checkpoint(out).meta["extra"]
    assert extra["threshold"] == res["threshold"] and extra["temperature"] == res["temperature"]
    assert extra["calibration"]["val_auc"] == res["val_auc"]



def test_calibrate_stores_the_bank_fusion_and_replaces_a_stale_one(model, pairs, tmp_path):
    stale = {"logit": 9.0, "similarity": -9.0, "bias": 9.0, "threshold": 0.9}
    ck = save_checkpoint(tmp_path / "m.safetensors", model, bank_sources=[f"/r/{i}.png" for i in range(10)],
                         extra={"bank_fusion": stale})
    res = calibrate_checkpoint(ck, pairs, fpr=0.25, device="cpu", batch_size=4, workers=0)
    assert "bank_fusion" in res  # a dict, or None when the similarity was no evidence on these faces
    stored = load_checkpoint(ck)
    assert stored.meta["extra"]["bank_fusion"] == res["bank_fusion"] != stale
    if res["bank_fusion"] is not None:
        f = res["bank_fusion"]
        assert f["logit"] > 0 > f["similarity"] and f["val_fpr"] <= 0.25 and 0.0 <= f["val_auc"] <= 1.0
        assert stored.bank_fusion == {k: f[k] for k in ("logit", "similarity", "bias", "threshold")}
    else:
        assert stored.bank_fusion is None


def test_calibrate_refuses_val_faces_the_bank_was_filled_from(model, pairs, tmp_path):
    """`calibrate --pairs` with a pairs file whose 'val' faces were the checkpoint's training reals (the same photos
    split again with another --seed, or a bank rebuilt from a set that holds them) fitted the threshold on faces the
    bank recalls as their own nearest: 20 unseen real photos all called FAKE (fusion threshold 0.03 for 0.63), and
    written over the checkpoint's own calibration. Refused before any scoring, the checkpoint left as it was."""
    import os

    reals = [p for p, _ in read_pairs(pairs, need_splits=("val",)).reals("val")]
    inside = os.path.relpath(reals[1], tmp_path)  # recorded relative to the folder the bank was filled in
    ck = save_checkpoint(tmp_path / "m.safetensors", model, bank_sources=[f"/r/{i}.png" for i in range(9)] + [inside],
                         extra={"bank_sources_root": str(tmp_path)})
    before = hashlib.sha256(ck.read_bytes()).hexdigest()
    with pytest.raises(ForgeryDetError, match=rf"pairs.csv: 1 of its {len(reals)} 'val' real faces are faces "
                                              rf".*m.safetensors's bank was filled from \(e.g. .*{reals[1].name}\): the "
                                              r"bank recalls each as its own nearest real face"):
        calibrate_checkpoint(ck, pairs, device="cpu", batch_size=4, workers=0)
    assert hashlib.sha256(ck.read_bytes()).hexdigest() == before


def test_calibrate_refuses_bad_values_and_an_empty_bank(pairs, tmp_path):
    empty = save_checkpoint(tmp_path / "e.safetensors", tiny_model(bank_size=16))
    with pytest.raises(ForgeryDetError, match=r"^--fpr 0.0: use a rate in \(0, 1\)$"):
        calibrate_checkpoint(empty, pairs, fpr=0.0)
    with pytest.raises(ForgeryDetError, match="^--batch-size 0: must be >= 1$"):
        calibrate_checkpoint(empty, pairs, batch_size=0)
    with pytest.raises(ForgeryDetError) as e:
        calibrate_checkpoint(empty, pairs, device="cpu")
    assert str(e.value) == f"{empty}: the bank is empty; run `forgerydet rebuild-bank` first"


def test_flip_scoring_and_calibration_are_what_scan_tta_flip_scores(model, val, pairs, tmp_path):
    from forgerydet.scan.config import ScanConfig
    from forgerydet.scan.scanner import Scanner

    _, (paths, labels, refs, _) = val
    x = torch.stack([to_tensor(load_image(p, 64)) for p in paths])  # (16,3,64,64)
    with torch.no_grad():
        want = ((model(x, "single")["logits"] + model(x.flip(-1), "single")["logits"]) / 2).numpy()
    got, sims = score_faces(model, paths, labels, refs, "single", CPU, batch_size=5, similarity=True, tta="flip")
    np.testing.assert_allclose(got, want, atol=1e-5)
    assert not np.allclose(got, score_faces(model, paths, labels, refs, "single", CPU))
    ck = save_checkpoint(tmp_path / "m.safetensors", model, bank_sources=[f"/r/{i}.png" for i in range(10)])
    assert calibrate_checkpoint(ck, pairs, fpr=0.25, device="cpu", batch_size=4, workers=0, tta="flip")["tta"] == "flip"
    assert Scanner(ck, ScanConfig(device="cpu")).settings()["tta"] == "flip"  # scans follow the calibration
    assert Scanner(ck, ScanConfig(device="cpu", tta="none")).settings()["tta"] == "none"  # unless told otherwise
    with pytest.raises(ForgeryDetError, match=r"^--tta 'both': use one of none, flip$"):
        calibrate_checkpoint(ck, pairs, tta="both")


def test_calibrating_in_bf16_scores_in_bf16_and_scans_follow_it(model, val, pairs, tmp_path):
    from forgerydet.scan.config import ScanConfig
    from forgerydet.scan.scanner import Scanner

    _, (paths, labels, refs, _) = val
    x = torch.stack([to_tensor(load_image(p, 64)) for p in paths])  # (16,3,64,64)
    with torch.no_grad(), torch.autocast("cpu", dtype=torch.bfloat16):
        want = model(x, "single")["logits"].float().numpy()
    got = score_faces(model, paths, labels, refs, "single", CPU, batch_size=5, precision="bf16")
    np.testing.assert_allclose(got, want, atol=1e-5)
    fp32 = score_faces(model, paths, labels, refs, "single", CPU, batch_size=5)
    assert not np.array_equal(got, fp32)  # bf16 arithmetic really ran
    np.testing.assert_allclose(got, fp32, atol=0.2)  # and stays near fp32
    ck = save_checkpoint(tmp_path / "m.safetensors", model, bank_sources=[f"/r/{i}.png" for i in range(10)])
    assert calibrate_checkpoint(ck, pairs, fpr=0.25, device="cpu", batch_size=4, precision="bf16")["precision"] == "bf16"
    assert Scanner(ck, ScanConfig(device="cpu")).settings()["precision"] == "bf16"  # scans follow the calibration
    assert Scanner(ck, ScanConfig(device="cpu", precision="fp32")).settings()["precision"] == "fp32"  # unless told
    assert calibrate_checkpoint(ck, pairs, fpr=0.25, device="cpu", batch_size=4)["precision"] == "fp32"
    with pytest.raises(ForgeryDetError, match=r"^--precision fp16 needs a CUDA GPU, not cpu: use bf16 or fp32$"):
        calibrate_checkpoint(ck, pairs, device="cpu", precision="fp16")
    with pytest.raises(ForgeryDetError, match=r"^--precision 'int8': use one of fp32, bf16, fp16$"):
        calibrate_checkpoint(ck, pairs, precision="int8")


def test_a_watch_list_is_a_path_label_csv_or_the_test_split_of_another_pairs_csv(pairs, tmp_path):
    table = read_pairs(pairs)
    val = table.split("val")
    listed = tmp_path / "watch.csv"
    listed.write_text("path,label\n" + "".join(f"{r.real},real\n{r.fake},fake\n" for r in val))
    paths, labels = read_watch(listed, table)
    assert labels == [0, 1] * len(val) and paths[:2] == [val[0].real, val[0].fake]
    # a pairs.csv: its test split, each real face once however many fakes it has
    text = pairs.read_text().splitlines()
    other = pairs.parent / "other_pairs.csv"  # beside the first, so that its relative paths still resolve
    other.write_text("\n".join([text[0]] + [line.replace(",val,", ",test,") for line in text[1:]
                                            if ",val," in line]) + "\n")
    paths, labels = read_watch(other, table)
    reals = list(dict.fromkeys(r.real for r in val))
    assert paths == reals + [r.fake for r in val] and labels == [0] * len(reals) + [1] * len(val)
    other.unlink()  # the folder is shared by the module's tests
    with pytest.raises(ForgeryDetError, match="no such file"):
        read_watch(tmp_path / "none.csv", table)
    listed.write_text("path,label\n" + "".join(f"{r.real},real\n" for r in val))
    with pytest.raises(ForgeryDetError, match="holds only real samples"):
        read_watch(listed, table)
    listed.write_text(f"path,label\n{val[0].real},real\n{tmp_path / 'gone.png'},fake\n")
    with pytest.raises(ForgeryDetError, match="gone.png: no such file"):
        read_watch(listed, table)
    listed.write_text(f"path,label\n{tmp_path / 'gone.png'},fake\n")  # one class AND a missing file: the file first
    with pytest.raises(ForgeryDetError, match="gone.png: no such file"):
        read_watch(listed, table)


def test_a_watch_list_of_one_source_per_class_is_warned_about():
    one = [Path(f"d/real/abarnvbtwb-{i:03d}-00.png") for i in range(11)]
    fakes = [Path(f"d/fake/{n}-001-00.png") for n in ("aagf", "aapn", "abcd")]
    said = watch_notice("w.csv", one + fakes, [0] * 11 + [1] * 3)
    assert said and "its 11 real faces look cut from one source (abarnvbtwb)" in said and "fake faces" not in said
    said = watch_notice("w.csv", one + [Path(f"d/fake/x-{i}.png") for i in range(3)], [0] * 11 + [1] * 3)
    assert "real faces" in said and "its 3 fake faces look cut from one source (x)" in said
    # several sources, or too few faces to say: nothing
    many = [Path(f"ffpp/{i}_deepfake_real.png") for i in (102, 104, 117)]
    assert watch_notice("w.csv", many + fakes, [0] * 3 + [1] * 3) is None
    assert watch_notice("w.csv", one[:2] + fakes, [0] * 2 + [1] * 3) is None
