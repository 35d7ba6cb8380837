"""model/meta.py: a checkpoint's metadata without its model, and the errors for damaged files."""

from __future__ import annotations

import pytest
import torch
from safetensors import safe_open
from safetensors.torch import save_file

from forgerydet.errors import ForgeryDetError
from forgerydet.model.checkpoint import save_checkpoint
from forgerydet.model.meta import FORMAT, calibration_bank, read_meta, training_faces
from tests.helpers import tiny_model


def test_weights_holding_nan_are_refused_only_when_asked_and_named(tmp_path):
    """`info` reads the metadata with check_weights=True: a damaged copy used to be described as a sound one
    while `scan` refused it."""
    ck = save_checkpoint(tmp_path / "ok.safetensors", tiny_model(), bank_sources=["lfw/ann/a.png"])
    with safe_open(str(ck), framework="pt") as f:
        meta, tensors = f.metadata(), {k: f.get_tensor(k) for k in f.keys()}
    floats = [k for k in tensors if k.startswith("model.") and tensors[k].is_floating_point()]
    for k in floats[:2]:
        tensors[k] = torch.full_like(tensors[k], float("inf"))
    save_file(tensors, str(tmp_path / "bad.safetensors"), metadata=meta)
    assert read_meta(tmp_path / "bad.safetensors")["format"] == FORMAT  # metadata alone: no tensor read
    with pytest.raises(ForgeryDetError) as e:
        read_meta(tmp_path / "bad.safetensors", check_weights=True)
    assert str(e.value).startswith(f"{tmp_path / 'bad.safetensors'}: 2 weight tensor(s) hold NaN or infinite values "
                                   f"(e.g. {floats[0][6:]})")
    good = read_meta(ck, check_weights=True)
    assert training_faces(good) == {"ann"} and calibration_bank(good) == "not calibrated"


def test_a_file_of_enrolled_people_given_as_a_checkpoint_is_named_as_one(tmp_path):
    """`info people.refs.safetensors` said only 'a safetensors file but not a forgerydet checkpoint'."""
    refs = tmp_path / "people.refs.safetensors"
    save_file({"x": torch.zeros(1)}, str(refs), metadata={"format": "forgerydet-references"})
    with pytest.raises(ForgeryDetError) as e:
        read_meta(refs)
    assert str(e.value) == (f"{refs} is a file of enrolled people, not a checkpoint: `forgerydet enroll --list --into "
                            f"{refs}` shows who is in it")


def test_a_checkpoint_that_memory_cannot_hold_is_not_called_damaged(tmp_path, monkeypatch):
    """Under `ulimit -v 4000000` safetensors raised MemoryError ("Cannot allocate memory (os error 12)"), and the
    shipped model was called "not a readable forgerydet checkpoint (truncated or corrupted?) ... re-copy it"."""
    import forgerydet.model.meta as meta_mod

    ck = save_checkpoint(tmp_path / "ok.safetensors", tiny_model())

    def no_memory(*a, **k):
        raise MemoryError("Cannot allocate memory (os error 12)")

    monkeypatch.setattr(meta_mod, "safe_open", no_memory)
    with pytest.raises(ForgeryDetError) as e:
        read_meta(ck)
    assert str(e.value).startswith(f"{ck}: out of memory reading the checkpoint") and "corrupt" not in str(e.value)
