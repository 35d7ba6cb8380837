"""cli/model.py: `info` shows what a checkpoint stores (calibration and other extras, training state, history
with missing values), and `weights export` takes the library's default precision and refuses a bad one."""

from __future__ import annotations

import json

import pytest
import torch
from safetensors.torch import save_file

from forgerydet.cli.model import weights_export_cmd
from forgerydet.errors import ForgeryDetError
from forgerydet.model.bank import fingerprint_hex
from forgerydet.model.checkpoint import TrainState, save_checkpoint
from forgerydet.model.weights import WEIGHT_DTYPES, export_packaged
from tests.cli._cli_util import cli, defaults, one_error
from tests.helpers import tiny_model


def _row(output: str, label: str) -> str:
    """The value cell of a two-column info row."""
    for line in output.splitlines():
        cells = [c.strip() for c in line.strip("│ ").split("│")]
        if cells[0] == label:
            return cells[1]
    raise AssertionError(f"no row {label!r} in\n{output}")


def test_info_shows_extras_history_and_training_state(tmp_path):
    torch.manual_seed(0)
    m = tiny_model()
    m.bank.rebuild(m.encode_keys(torch.rand(3, 3, 64, 64)), m.key_fingerprint(), source=torch.arange(3))
    p = save_checkpoint(tmp_path / "m.safetensors", m, extra={"threshold": 0.4213, "epochs_done": 2,
                                                             "earlier_faces": [f"P_{i:04d}-0123abcd" for i in range(1200)]},
                        history=[{"epoch": 1, "train_loss": 0.5, "val_auc": 0.75}, {"epoch": 2, "val_auc": 0.8, "watch_auc": 0.9}],
                        train_state=TrainState(2, 10, 0.8, {}, {"state": {}, "param_groups": []}))
    r = cli("info", p)
    assert r.exit_code == 0, r.output
    # shown as scan shows it: 0.4213 read '0.421' here and '0.4213' in scan's output (never rounded below itself)
    assert _row(r.output, "verdict threshold") == "0.4213" and _row(r.output, "epochs done") == "2"
    assert _row(r.output, "earlier faces") == "1,200 entries"  # a long list is counted, not printed whole
    assert _row(r.output, "training state") == "yes (resumable)"
    assert _row(r.output, "bank") == "3 / 37 entries filled" and _row(r.output, "image size") == "64"
    assert _row(r.output, "tokens") == "4x4 x D=32, 4 heads"
    # the encoder's fingerprint and the bank's contents are two rows: a rebuild changes the second only
    assert _row(r.output, "key encoder fingerprint").startswith(fingerprint_hex(m.bank.fingerprint)[:16])
    assert _row(r.output, "bank contents").startswith(m.bank.contents_digest())
    assert "backbone=test_efficientnet" in _row(r.output, "config")
    hist = [line for line in r.output.splitlines() if line.startswith("│") and "epoch" not in line][-2:]
    cells = [[c.strip() for c in h.strip("│ ").split("│")] for h in hist]
    assert cells == [["1", "0.5000", "0.7500", "-"], ["2", "-", "0.8000", "0.9000"]]  # epoch, train_loss, val_auc, watch_auc
    table = r.output[r.output.index("training history"):]
    assert "…" not in table and table.split().count("AUC") == 2  # 'val AUC' and 'watch AUC', whole on 80 columns


def test_info_on_a_narrow_terminal_shows_every_history_figure(tmp_path):
    """Under ~64 columns the history table cut every figure to '0…': each epoch then gets a line of its own."""
    p = save_checkpoint(tmp_path / "m.safetensors", tiny_model(),
                        history=[{"epoch": 1, "train_loss": 0.5, "val_auc": 0.75, "val_auc_pair": 0.7, "val_ap": 0.71,
                                  "val_eer": 0.3, "val_acc": 0.7, "watch_auc": 0.9, "bank_entries": 4096}])
    r = cli("info", p, COLUMNS="40")
    assert r.exit_code == 0, r.output
    table = r.output[r.output.index("training history"):]
    assert "…" not in table and ("epoch 1, loss 0.5000, val AUC 0.7500, pair AUC 0.7000, AP 0.7100, EER 0.3000, acc "
                                 "0.7000, watch AUC 0.9000, bank 4096") in " ".join(table.split()), table


def test_info_names_a_long_checkpoint_path_on_one_line(tmp_path):
    """`info` on 80 columns (a terminal, a log) folded a long checkpoint path, its table's title, over two lines."""
    deep = tmp_path / ("run_with_a_descriptive_name_and_seed_0_" * 3)
    deep.mkdir()
    p = save_checkpoint(deep / "best.safetensors", tiny_model())
    r = cli("info", p, COLUMNS="80")
    assert r.exit_code == 0, r.output
    assert r.stdout.splitlines()[0] == str(p)


def test_info_names_the_threshold_a_scan_uses_and_how_it_was_fitted(tmp_path):
    """With a bank fusion a plain scan uses the fusion's threshold, not the head's (info showed the head's alone,
    and the calibration as a raw dict)."""
    fusion = {"logit": 1.062, "similarity": -0.1, "bias": -0.127, "threshold": 0.338, "val_fpr": 0.04998,
              "val_tpr": 0.958, "val_auc": 0.9895}
    cal = {"temperature": 0.921, "threshold": 0.382, "target_fpr": 0.05, "val_fpr": 0.05, "val_tpr": 0.95,
           "val_reals": 2321, "val_fakes": 2321, "bank_fusion": fusion, "tta": "flip", "precision": "fp32",
           "calibrated_on": "calib/pairs.csv"}
    p = save_checkpoint(tmp_path / "m.safetensors", tiny_model(),
                        extra={"threshold": 0.382, "temperature": 0.921, "bank_fusion": fusion, "calibration": cal})
    r = cli("info", p, COLUMNS="250")
    assert r.exit_code == 0, r.output
    assert _row(r.output, "verdict threshold") == ("0.338 on p = sigmoid(1.062 x logit - 0.100 x nearest-bank "
                                                   "similarity - 0.127): the bank fusion, what `scan` and `evaluate` "
                                                   "use with this file's bank")
    assert _row(r.output, "head threshold") == "0.382, temperature 0.921 (with --reference or --bank)"
    assert _row(r.output, "calibration") == (
        "on calib/pairs.csv; 2,321 real / 2,321 fake faces; each averaged with its mirror image (--tta flip); "
        "reals called FAKE 5.0 % (target 5 %), fakes caught 95.8 %, AUC 0.990")
    assert "{" not in r.output  # no raw dicts
    odd = save_checkpoint(tmp_path / "odd.safetensors", tiny_model(),  # hand-edited metadata: text, never a traceback
                          extra={"threshold": "high", "bank_fusion": {"threshold": 0.3, "similarity": "a", "bias": None},
                                 "calibration": {"val_reals": "many", "val_fpr": "q", "target_fpr": None}})
    r = cli("info", odd, COLUMNS="250")
    assert r.exit_code == 0 and r.exception is None, r.output
    assert _row(r.output, "calibration") == "many real / ? fake faces; reals called FAKE q % (target None %), fakes caught ? %"


def test_info_does_not_call_an_unrecorded_augmentation_todays_defaults(tmp_path):
    """A run started before forgerydet recorded its augmentation (2026-12-05) trained with that version's defaults
    (noise_std 1-6, blur_sigma 0.3-1.5, no occlusion, sharpening or smoothing): info said 'today's defaults'."""
    import dataclasses

    from forgerydet.training.augment import AugmentConfig
    from forgerydet.training.config import TrainConfig

    old = TrainConfig(epochs=1).to_dict()  # augmentation None, as such a run stored it
    p = save_checkpoint(tmp_path / "m.safetensors", tiny_model(), train_state=TrainState(1, 10, 0.8, old))
    said = _row(cli("info", p, COLUMNS="200").output, "augmentation")
    assert said.startswith("not recorded") and "today" not in said
    aug = {k: v for k, v in json.loads(json.dumps(dataclasses.asdict(AugmentConfig()))).items()
           if not k.startswith("defocus")}  # a run started before the defocus settings existed
    tc = TrainConfig(epochs=1, augmentation=aug).to_dict()
    p = save_checkpoint(tmp_path / "m.safetensors", tiny_model(), train_state=TrainState(1, 10, 0.8, tc))
    assert _row(cli("info", p, COLUMNS="200").output, "augmentation") == (
        "today's defaults; not recorded: defocus_p, defocus_sigma, defocus_axes (added since the run started)")


def test_info_shows_a_runs_training_settings_and_what_its_augmentation_changed(tmp_path):
    import dataclasses

    from forgerydet.training.augment import AugmentConfig
    from forgerydet.training.config import TrainConfig

    aug = json.loads(json.dumps(dataclasses.asdict(AugmentConfig(noise_p=0.4, blur_sigma=(0.3, 3.0)))))
    for tc, want in [
        (TrainConfig(epochs=3, steps_per_epoch=400, lr=2e-4, seed=41, augmentation=aug),
         ("3 epochs of at most 400 steps, batch 32, lr 0.0002, seed 41, tune all, 0.5 of batches in 'single' mode",
          "today's defaults except blur_sigma=0.3,3.0, noise_p=0.4")),
        (TrainConfig(epochs=1, augmentation=json.loads(json.dumps(dataclasses.asdict(AugmentConfig())))),
         ("1 epoch, batch 32, lr 0.0003, seed 0, tune all, 0.5 of batches in 'single' mode", "today's defaults")),
        (TrainConfig(augment=False), (None, "off (--no-augment)")),
    ]:
        p = save_checkpoint(tmp_path / "m.safetensors", tiny_model(),
                            train_state=TrainState(1, 10, 0.8, tc.to_dict(), {"state": {}, "param_groups": []}))
        r = cli("info", p)
        assert r.exit_code == 0, r.output
        assert want[0] is None or _row(r.output, "training") == want[0]
        assert _row(r.output, "augmentation") == want[1]
        assert "started in" not in r.output  # a run that recorded no folder (before 2026-12-06)
        assert _row(r.output, "fakes and references") == "self-blends re-made every epoch; 'pair' references: source"
    for tc, want in [
        (TrainConfig(swap_blends=0.3, pair_reference="other"),
         "self-blends re-made every epoch (0.3 from another person); 'pair' references: other"),
        (TrainConfig(sbi_online=False), "fakes as stored (--no-sbi-online); 'pair' references: source"),
    ]:
        p = save_checkpoint(tmp_path / "m.safetensors", tiny_model(), train_state=TrainState(1, 10, 0.8, tc.to_dict()))
        assert _row(cli("info", p, COLUMNS="200").output, "fakes and references") == want
    old = {k: v for k, v in TrainConfig().to_dict().items() if k != "pair_reference"}  # a run from before the option
    p = save_checkpoint(tmp_path / "m.safetensors", tiny_model(), train_state=TrainState(1, 10, 0.8, old))
    assert _row(cli("info", p, COLUMNS="200").output, "fakes and references").endswith("'pair' references: source")
    tc = dataclasses.replace(TrainConfig(pairs="sbi/pairs.csv"), workdir="/home/ann/cases")
    p = save_checkpoint(tmp_path / "m.safetensors", tiny_model(), train_state=TrainState(1, 10, 0.8, tc.to_dict()))
    assert _row(cli("info", p, COLUMNS="200").output, "started in") == "/home/ann/cases"
    r = cli("info", save_checkpoint(tmp_path / "n.safetensors", tiny_model()))  # no training state: no such rows
    labels = {line.strip("│ ").split("│")[0].strip() for line in r.output.splitlines() if line.startswith("│")}
    assert "training state" in labels and not labels & {"training", "augmentation", "started in"}


def test_info_says_which_bank_the_calibration_was_fitted_against(tmp_path):
    torch.manual_seed(0)
    m = tiny_model()
    m.bank.rebuild(m.encode_keys(torch.rand(3, 3, 64, 64)), m.key_fingerprint(), source=torch.arange(3))
    cases = {"this bank": {"bank_contents": m.bank.contents_digest()}, "an earlier bank": {"bank_contents": "0" * 16},
             "unknown": {"threshold": 0.4}}
    for want, cal in cases.items():
        p = save_checkpoint(tmp_path / "m.safetensors", m, extra={"threshold": 0.4, "calibration": cal})
        r = cli("info", p)
        assert r.exit_code == 0 and _row(r.output, "calibrated against") == want, r.output
    r = cli("info", save_checkpoint(tmp_path / "n.safetensors", m))
    assert _row(r.output, "calibrated against") == "not calibrated"


def test_info_of_a_plain_checkpoint(tmp_path):
    p = save_checkpoint(tmp_path / "m.safetensors", tiny_model(img_size=None))
    r = cli("info", p)
    assert r.exit_code == 0, r.output
    assert _row(r.output, "training state") == "no" and _row(r.output, "image size") == "backbone default"
    assert _row(r.output, "bank") == "0 / 37 entries filled" and "training history" not in r.output


def test_weights_export_default_precision_is_the_librarys():
    assert defaults(weights_export_cmd)["dtype"] == defaults(export_packaged)["dtype"] == "fp32"
    assert "fp32" in WEIGHT_DTYPES


def test_weights_export_refuses_an_unknown_precision(tmp_path):
    one_error(cli("weights", "export", "mobilenetv2_100", tmp_path / "w.safetensors", "--dtype", "fp8"),
              "--dtype 'fp8': use one of fp32, bf16, fp16")
    assert list(tmp_path.iterdir()) == []


def test_info_prints_paths_and_values_as_text_not_rich_markup(tmp_path):
    """A folder named "[run]" or a stored value holding "[bold]" is shown as it is, not read as rich markup
    (which dropped it from the title and the row)."""
    (tmp_path / "[run]").mkdir()
    p = save_checkpoint(tmp_path / "[run]" / "m.safetensors", tiny_model(), extra={"note": "[bold]kept[/bold]"})
    r = cli("info", p)
    assert r.exit_code == 0, r.output
    assert "[run]" in r.output and _row(r.output, "note") == "[bold]kept[/bold]"


def test_info_prints_history_values_as_text_not_rich_markup(tmp_path):
    """The history table's cells were given to rich as markup: an epoch record holding "[/]" (a file edited by
    hand, or another tool's) ended `info` in a MarkupError traceback after the first table."""
    p = save_checkpoint(tmp_path / "m.safetensors", tiny_model(),
                        history=[{"epoch": "[/]", "train_loss": "[bold]big[/bold]", "val_auc": 0.5}])
    r = cli("info", p)
    assert r.exit_code == 0, r.output
    assert "[/]" in r.output and "[bold]big[/bold]" in r.output

def test_weights_export_does_not_replace_an_existing_file_unless_told(tmp_path):
    """It replaced a trained model (and a people's reference file) with plain ImageNet weights, exit 0."""
    model = tmp_path / "mine.safetensors"
    model.write_bytes(b"a trained model")
    one_error(cli("weights", "export", "mobilenetv2_100", model), "already exists: give a new path, or --overwrite")
    assert model.read_bytes() == b"a trained model"
    with pytest.raises(ForgeryDetError, match=r"^OUT .*mine.safetensors already exists: give a new path, or --overwrite"):
        export_packaged("mobilenetv2_100", model)  # the library refuses too, not only the CLI
    r = cli("weights", "export", "mobilenetv2_100", model, "--overwrite")
    assert r.exit_code == 0, r.output
    assert model.read_bytes() != b"a trained model"


def test_weights_export_keeps_a_file_another_export_made_meanwhile(tmp_path, monkeypatch):
    """Two `weights export NAME OUT` at once: both exited 0 and the second replaced the first, whose user was told to
    use OUT as its backbone while it held another. The existence check runs first, the write seconds later; a file
    made at OUT in between is now kept and this export refused."""
    import forgerydet.model.weights as weights

    out = tmp_path / "w.safetensors"
    real_load = weights.load_pretrained

    def slow_load(*a, **kw):  # another export finishes while this one loads its weights
        out.write_bytes(b"the other export")
        return real_load(*a, **kw)

    monkeypatch.setattr(weights, "load_pretrained", slow_load)
    one_error(cli("weights", "export", "mobilenetv2_100", out), "was made by another command while this one ran")
    assert out.read_bytes() == b"the other export" and [p.name for p in tmp_path.iterdir()] == ["w.safetensors"]
    out.unlink()
    monkeypatch.setattr(weights, "load_pretrained", real_load)
    r = cli("weights", "export", "mobilenetv2_100", out)  # alone: written as before
    assert r.exit_code == 0 and out.stat().st_size > 1000 and [p.name for p in tmp_path.iterdir()] == ["w.safetensors"]


def test_weights_export_onto_a_full_disk_names_out_not_its_temp_file(tmp_path, monkeypatch):
    """A full disk said "cannot write DIR/.w.safetensors.1369.new: no space left on device", a name the user never
    gave, and which is gone by the time they look; the error names OUT, and nothing is left behind."""
    import errno
    import os

    def full(fd):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(os, "fsync", full)
    out = tmp_path / "w.safetensors"
    for extra in ((), ("--overwrite",)):
        one_error(cli("weights", "export", "mobilenetv2_100", out, *extra),
                  f"cannot write {out}: no space left on device: free some space or write elsewhere")
        assert list(tmp_path.iterdir()) == []


def test_weights_export_overwrite_never_replaces_a_detector_or_an_enrolment_file(tmp_path):
    """`--overwrite` replaced the shipped detector with ImageNet weights (exit 0), after which every scan failed."""
    ck = save_checkpoint(tmp_path / "best.safetensors", tiny_model())
    refs = tmp_path / "people.refs.safetensors"
    save_file({"x": torch.zeros(1)}, str(refs), metadata={"format": "forgerydet-references"})
    for path, what in ((ck, "a forgerydet checkpoint (a trained detector)"),
                       (refs, "a file of enrolled people (`forgerydet enroll`)")):
        before = path.read_bytes()
        one_error(cli("weights", "export", "mobilenetv2_100", path, "--overwrite"),
                  f"is {what}, not exported weights: --overwrite does not replace it; give another path")
        assert path.read_bytes() == before


def test_info_shows_a_long_weights_path_whole(tmp_path):
    """The value column cut a path without spaces to the table's width: on 80 columns (a pipe, a log) the
    'pretrained weights' row read 'file:/tmp/.../tf_efficientnet_lite0.sa…', hiding which file the backbone was from."""
    model = tiny_model()
    model.pretrained_source = "file:/" + "/".join(["a_rather_long_folder_name"] * 4) + "/my_backbone_weights.safetensors"
    p = save_checkpoint(tmp_path / "m.safetensors", model)
    r = cli("info", p, COLUMNS="80")
    assert r.exit_code == 0, r.output
    cells = "".join(line.strip("│ ").split("│")[-1].strip() for line in r.output.splitlines() if "│" in line)
    assert model.pretrained_source in cells and "…" not in r.output


def test_info_names_the_checkpoint_a_run_started_from_and_how_its_best_epoch_was_picked(tmp_path):
    """A run trained with --init showed 'pretrained weights: none' and nothing of the checkpoint its weights came
    from; one with --watch LIST --select watch did not say that best.safetensors was picked by the watch list."""
    from forgerydet.training.config import TrainConfig

    def info(tc):
        p = save_checkpoint(tmp_path / "m.safetensors", tiny_model(), train_state=TrainState(1, 10, 0.8, tc.to_dict()))
        return cli("info", p, COLUMNS="200").output

    out = info(TrainConfig(init="models/base.safetensors", watch="mine.csv", select="watch"))
    assert _row(out, "started from") == "models/base.safetensors (--init: its weights, key encoder and bank)"
    stamped = info(TrainConfig(init="models/base.safetensors", data_sha256={"init": "ab12" * 16}))
    assert _row(stamped, "started from") == ("models/base.safetensors (sha256 ab12ab12ab12ab12; --init: its weights, "
                                             "key encoder and bank)")  # the file a later run may have rewritten
    assert _row(out, "watch list") == ("mine.csv; best.safetensors is the epoch of the highest watch AUC "
                                       "(--select watch)")
    assert "validation AUC (--select val)" in _row(info(TrainConfig(watch="mine.csv")), "watch list")
    plain = info(TrainConfig())
    assert "started from" not in plain and "watch list" not in plain


def test_info_describes_a_disk_bank_and_verify_names_a_file_changed_since_its_build(tmp_path):
    """`info DIR` of a disk bank was refused as "not a checkpoint", and nothing could check a bank's files: token
    maps zeroed or rewritten by something else (same size) were scanned against in silence."""
    import numpy as np
    import torch.nn.functional as F

    from forgerydet.model.diskbank import write_bank

    e = F.normalize(torch.randn(30, 4, 16, generator=torch.Generator().manual_seed(0)), dim=-1)
    write_bank(tmp_path / "b", [e], 4, 16, "ef" * 32, sources_root=str(tmp_path))
    r = cli("info", tmp_path / "b")
    assert r.exit_code == 0, r.output
    assert _row(r.output, "disk bank") == "30 real faces, 4 tokens x D=16 each" and _row(r.output, "search") == "exact"
    r = cli("info", tmp_path / "b", "--verify")
    assert r.exit_code == 0 and "values.f16: as built" in r.output and "keys.f32: as built" in r.output, r.output
    v = np.memmap(tmp_path / "b" / "values.f16", np.float16, "r+")
    v[:] = 0
    v.flush()
    del v
    assert cli("info", tmp_path / "b").exit_code == 0  # an open checks sizes and keys, not 6 GB of token maps
    one_error(cli("info", tmp_path / "b", "--verify"), "values.f16 changed since the build (sha256 differs): rebuild the bank")
    meta = json.loads((tmp_path / "b" / "bank.json").read_text())
    del meta["files"]  # a bank built before its files were recorded
    (tmp_path / "b" / "bank.json").write_text(json.dumps(meta))
    assert "not recorded" in _row(cli("info", tmp_path / "b").output, "files")
    one_error(cli("info", tmp_path / "b", "--verify"), "records no sha256 of its files")


def test_info_verify_of_a_checkpoint_is_refused(tmp_path):
    ck = save_checkpoint(tmp_path / "c.safetensors", tiny_model(bank_size=4))
    one_error(cli("info", ck, "--verify"), "--verify checks a disk bank folder's files")


def test_info_of_a_name_too_long_is_one_line_not_a_traceback(tmp_path):
    """`info NAME` looked for NAME/bank.json (a disk bank) with Path.is_file, which raises for a name too long for
    the file system: an OSError traceback where `info` had said one line."""
    line = one_error(cli("info", tmp_path / ("a" * 300 + ".safetensors")), "File name too long")
    assert "bank.json" not in line  # the path given, not one the user never typed


def test_info_of_a_folder_without_bank_json_says_no_finished_disk_bank(tmp_path):
    """`info DIR --verify` of a folder with no bank.json (a build stopped before its end) said that --verify is for
    disk banks and that a checkpoint's weights are checked when read; without --verify, a stopped build's folder
    was "a folder that holds no .safetensors file: give a checkpoint file"."""
    (tmp_path / "b").mkdir()
    one_error(cli("info", tmp_path / "b", "--verify"), "holds no finished disk bank (no bank.json")
    (tmp_path / "b" / "values.f16").write_bytes(b"\0" * 64)
    one_error(cli("info", tmp_path / "b"), "holds no finished disk bank (no bank.json")
    one_error(cli("info", tmp_path), "holds no .safetensors file")  # a folder of neither: as before
