"""pairs.csv: group splits, the FF++ layout parser, frame-aligned pairs, write_mapping, self-blending, the command."""

from __future__ import annotations

import pytest
from typer.testing import CliRunner

from forgerydet.cli.app import app
from forgerydet.errors import ForgeryDetError
from forgerydet.pairs.build import make_pairs

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
