"""ModelConfig validation (model/config.py): a bad value is named in one clear error."""

import os

import pytest

from forgerydet.errors import ForgeryDetError
from forgerydet.model.config import ModelConfig


def test_config_validation_names_bad_value():
    with pytest.raises(ForgeryDetError, match="^dim=32 must be a positive multiple of 3, the number of attention heads$"):
        ModelConfig(dim=32, heads=3)
    with pytest.raises(ForgeryDetError, match="momentum=1.5"):
        ModelConfig(momentum=1.5)


def test_a_checkpoint_path_that_is_missing_or_a_folder_is_one_line(tmp_path):
    from forgerydet.errors import ForgeryDetError
    from forgerydet.model.config import check_checkpoint_path

    with pytest.raises(ForgeryDetError, match="checkpoint not found: .*nope.safetensors"):
        check_checkpoint_path(tmp_path / "nope.safetensors")
    with pytest.raises(ForgeryDetError, match="is a folder that holds no .safetensors file: give a checkpoint file"):
        check_checkpoint_path(tmp_path)
    (tmp_path / "c.safetensors").write_bytes(b"x")
    assert check_checkpoint_path(str(tmp_path / "c.safetensors")) == tmp_path / "c.safetensors"
    with pytest.raises(ForgeryDetError) as e:
        check_checkpoint_path(tmp_path)  # named by a file it holds, not one it might
    assert str(e.value) == f"{tmp_path} is a folder: give the checkpoint file inside it (e.g. {tmp_path / 'c.safetensors'})"
    (tmp_path / "empty.safetensors").write_bytes(b"")
    with pytest.raises(ForgeryDetError, match=r"empty.safetensors is empty \(0 bytes\), not a checkpoint"):
        check_checkpoint_path(tmp_path / "empty.safetensors")
    os.mkfifo(tmp_path / "pipe")  # read, it would wait for a writer forever (`info pipe` hung, deaf to SIGTERM)
    with pytest.raises(ForgeryDetError, match="pipe is a pipe or a device, not a file"):
        check_checkpoint_path(tmp_path / "pipe")
    (tmp_path / "loop").symlink_to(tmp_path / "loop")
    with pytest.raises(ForgeryDetError, match="loop is a symbolic link to no file .broken, or a loop."):
        check_checkpoint_path(tmp_path / "loop")
    (tmp_path / "db").mkdir()
    (tmp_path / "db" / "bank.json").write_text("{}")
    with pytest.raises(ForgeryDetError, match="db is a disk bank .* not a checkpoint: use it with `forgerydet scan --bank"):
        check_checkpoint_path(tmp_path / "db")
    with pytest.raises(ForgeryDetError, match=r"^an empty checkpoint path was given \(an unset variable\?\)"):
        check_checkpoint_path("")  # api.scan(..., checkpoint=os.environ.get("MODEL", "")): was " is a folder ..."


def test_a_missing_bank_folder_or_reference_file_is_one_line(tmp_path):
    from forgerydet.errors import ForgeryDetError
    from forgerydet.model.config import check_bank_folder, check_references_file

    with pytest.raises(ForgeryDetError, match="--bank .*nope: not found; give the folder that `forgerydet rebuild-bank"):
        check_bank_folder(tmp_path / "nope")
    (tmp_path / "f").write_bytes(b"x")
    with pytest.raises(ForgeryDetError, match="--bank .*f: a file;"):
        check_bank_folder(tmp_path / "f")
    with pytest.raises(ForgeryDetError, match="^--bank .*: holds no finished disk bank \\(no bank.json\\)"):
        check_bank_folder(tmp_path)  # an empty or half-written folder: said before torch loads, not after the model
    (tmp_path / "bank.json").write_text("{}")
    assert check_bank_folder(tmp_path) == tmp_path
    with pytest.raises(ForgeryDetError, match="reference file not found: .*r.refs.safetensors \\(enrol a person first"):
        check_references_file(tmp_path / "r.refs.safetensors")
    assert check_references_file(tmp_path / "f") == tmp_path / "f"
    with pytest.raises(ForgeryDetError, match=r"is a folder: give the reference file \(\*\.refs\.safetensors\)"):
        check_references_file(tmp_path)  # the same line whether the CLI checks first or the file is opened


def test_a_name_not_enrolled_is_found_from_the_reference_files_header(tmp_path):
    """`scan --reference NAME` checks NAME before torch loads; anything it cannot read there is left to
    model/references.py, which names the problem."""
    import json

    from forgerydet.errors import ForgeryDetError
    from forgerydet.model.config import check_enrolled, references_path

    def header(path, meta):
        raw = json.dumps({"__metadata__": meta}).encode()
        path.write_bytes(len(raw).to_bytes(8, "little") + raw)

    p = tmp_path / "m.refs.safetensors"
    header(p, {"format": "forgerydet-references", "people": json.dumps({"Ann": [0, 3], "Bo": [3, 1]})})
    check_enrolled(p, "Ann")
    check_enrolled(p, " Bo ")  # names are taken stripped, as enroll stores them
    with pytest.raises(ForgeryDetError) as e:
        check_enrolled(p, "Cy")
    assert str(e.value) == f"'Cy' is not enrolled in {p} (enrolled: Ann, Bo): enrol with `forgerydet enroll Cy VIDEO...`"
    for meta in ({"format": "forgerydet-references", "people": "{"}, {"format": "forgerydet-references"},
                 {"format": "forgerydet-references", "people": "[1]"}):
        header(p, meta)
        check_enrolled(p, "Cy")  # damaged metadata in a readable header: said when it is opened (model/references.py)
    header(p, {"format": "forgerydet-checkpoint"})
    with pytest.raises(ForgeryDetError, match=r"is not a forgerydet reference file \(a checkpoint\?"):
        check_enrolled(p, "Cy")
    header(p, {"format": "forgerydet-references", "people": json.dumps({"O'Brien": [0, 1]})})
    with pytest.raises(ForgeryDetError, match=r"enrol with `forgerydet enroll 'Bo'\"'\"'s' VIDEO"):
        check_enrolled(p, "Bo's")  # the suggested command is valid shell
    with pytest.raises(ForgeryDetError, match="person name '' \\(empty\\) is not usable"):
        check_enrolled(p, "")
    for broken in (b"garbage", b"", b"\x10\x00\x00\x00\x00\x00\x00\x00{\"__metadata__\": "):  # unreadable headers
        p.write_bytes(broken)
        with pytest.raises(ForgeryDetError) as e:
            check_enrolled(p, "Cy")
        assert str(e.value) == (f"{p} is not a readable forgerydet reference file (its header cannot be read: "
                                f"truncated or corrupted?); it was left as it is: restore it, or move it away and "
                                f"enrol again (or enrol into another file with --into)")
    video = tmp_path / "clip.mp4"
    video.write_bytes(b"\x00\x00\x00\x18ftypmp42" + bytes(100))
    with pytest.raises(ForgeryDetError, match=r"^\S+clip.mp4 is not a forgerydet reference file \(give the file that "
                                              r"`forgerydet enroll` wrote, e.g. \*.refs.safetensors\)$"):
        check_enrolled(video, "Cy")  # a video given by mistake is not called damaged
    assert references_path(tmp_path / "best.safetensors") == tmp_path / "best.refs.safetensors"


def test_a_bank_smaller_than_a_references_entries_names_the_option_to_change():
    """`train --bank-size 2` (a folder of a few photos) was refused with 'topk=4 must be in [1, bank_size]', naming a
    setting the CLI has no option for. Said as FIELD=VALUE must ..., which the CLI names as the option typed."""
    with pytest.raises(ForgeryDetError, match=r"^bank_size=2 must be 4 or more, the bank entries a face's reference "
                                              r"averages$"):
        ModelConfig(bank_size=2)
    with pytest.raises(ForgeryDetError, match=r"^topk=0 must be >= 1$"):
        ModelConfig(topk=0)


def test_stored_model_settings_that_do_not_fit_together_are_said_as_a_checkpoints_not_as_options():
    """A checkpoint whose stored settings did not fit said "invalid ModelConfig: bank_size=2 is less than topk=4 ...:
    use a --bank-size of 4 or more" (a class name, and an option `scan` has not) and "dim=64 must be a positive
    multiple of heads=7" (a field no command has)."""
    stored = ModelConfig().to_dict() | {"bank_size": 2}
    with pytest.raises(ForgeryDetError) as e:
        ModelConfig.from_dict(stored)
    assert str(e.value) == ("the stored model settings are inconsistent: bank_size=2 must be 4 or more, the bank "
                            "entries a face's reference averages")
    with pytest.raises(ForgeryDetError) as e:
        ModelConfig.from_dict(ModelConfig().to_dict() | {"heads": 7})
    assert str(e.value) == ("the stored model settings are inconsistent: dim=64 must be a positive multiple of 7, "
                            "the number of attention heads")
