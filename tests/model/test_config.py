"""ModelConfig validation (model/config.py): a bad value is named in one clear error."""


import pytest

from forgerydet.errors import ForgeryDetError
from forgerydet.model.config import ModelConfig


def test_config_validation_names_bad_value():
    with pytest.raises(ForgeryDetError, match="heads=3"):
        ModelConfig(dim=32, heads=3)
    with pytest.raises(ForgeryDetError, match="momentum=1.5"):
        ModelConfig(momentum=1.5)


def test_a_checkpoint_path_that_is_missing_or_a_folder_is_one_line(tmp_path):
    from forgerydet.errors import ForgeryDetError
    from forgerydet.model.config import check_checkpoint_path

    with pytest.raises(ForgeryDetError, match="checkpoint not found: .*nope.safetensors"):
        check_checkpoint_path(tmp_path / "nope.safetensors")
    with pytest.raises(ForgeryDetError, match="is a folder: give the checkpoint file inside it"):
        check_checkpoint_path(tmp_path)
    (tmp_path / "c.safetensors").write_bytes(b"x")
    assert check_checkpoint_path(str(tmp_path / "c.safetensors")) == tmp_path / "c.safetensors"
    (tmp_path / "db").mkdir()
    (tmp_path / "db" / "bank.json").write_text("{}")
    with pytest.raises(ForgeryDetError, match="db is a disk bank .* not a checkpoint: use it with `forgerydet scan --bank"):
        check_checkpoint_path(tmp_path / "db")


def test_a_missing_bank_folder_or_reference_file_is_one_line(tmp_path):
    from forgerydet.errors import ForgeryDetError
    from forgerydet.model.config import check_bank_folder, check_references_file

    with pytest.raises(ForgeryDetError, match="--bank .*nope: not found; give the folder that `forgerydet rebuild-bank"):
        check_bank_folder(tmp_path / "nope")
    (tmp_path / "f").write_bytes(b"x")
    with pytest.raises(ForgeryDetError, match="--bank .*f: a file;"):
        check_bank_folder(tmp_path / "f")
    with pytest.raises(ForgeryDetError, match="holds no finished disk bank \\(no bank.json\\)"):
        check_bank_folder(tmp_path)  # an empty or half-written folder: said before torch loads, not after the model
    (tmp_path / "bank.json").write_text("{}")
    assert check_bank_folder(tmp_path) == tmp_path
    with pytest.raises(ForgeryDetError, match="reference file not found: .*r.refs.safetensors \\(enrol a person first"):
        check_references_file(tmp_path / "r.refs.safetensors")
    assert check_references_file(tmp_path / "f") == tmp_path / "f"
    with pytest.raises(ForgeryDetError, match=r"is a folder: give the reference file \(\*\.refs\.safetensors\)"):
        check_references_file(tmp_path)  # the same line whether the CLI checks first or the file is opened
