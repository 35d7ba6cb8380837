"""tools/average_weights.py: weight-space averages of checkpoints (WiSE-FT, uniform soups: candidates for the shipped model);
tools/transfer_weights.py ship: the file to commit; tools/cli_docs.py: the command reference docs/cli.md."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import pytest
import torch

from forgerydet.model.checkpoint import load_checkpoint, save_checkpoint
from tests.helpers import tiny_model

TOOLS = Path(__file__).resolve().parents[1] / "tools"


def _tool(name: str):
    spec = importlib.util.spec_from_file_location(name, TOOLS / f"{name}.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def _saved(tmp_path, name, seed, **kw):
    torch.manual_seed(seed)
    m = tiny_model(**kw).eval()
    keys = m.encode_keys(torch.rand(5, 3, 64, 64))
    m.bank.rebuild(keys, m.key_fingerprint(), source=torch.arange(5))
    return save_checkpoint(tmp_path / name, m), m


def test_average_is_the_weighted_mean_of_every_weight_with_an_empty_bank(tmp_path):
    avg = _tool("average_weights")
    pa, a = _saved(tmp_path, "a.safetensors", 0)
    pb, b = _saved(tmp_path, "b.safetensors", 1)
    out = tmp_path / "ab.safetensors"
    avg.average(str(pa), str(pb), str(out), 0.25)
    ck = load_checkpoint(out, "cpu")  # strict load; an empty bank has nothing to mismatch
    sa, sb, so = a.state_dict(), b.state_dict(), ck.model.state_dict()
    floats = [k for k in so if so[k].is_floating_point() and not k.startswith("bank.")]
    assert floats and any(not torch.equal(sa[k], sb[k]) for k in floats)
    for k in floats:
        torch.testing.assert_close(so[k], 0.75 * sa[k] + 0.25 * sb[k], rtol=1e-6, atol=1e-7)
    assert int(ck.model.bank.fill) == 0 and int(a.bank.fill) == 5
    assert ck.extra["averaged"]["alpha"] == 0.25


def test_soup_is_the_uniform_mean_of_three_checkpoints_and_keeps_all_their_faces(tmp_path):
    avg = _tool("average_weights")
    models, paths = [], []
    for i in range(3):
        _, m = _saved(tmp_path, f"unused_{i}.safetensors", i)
        paths.append(str(save_checkpoint(tmp_path / f"m{i}.safetensors", m, bank_sources=[f"P{i}_0001-0000000{i}/f0.jpg"])))
        models.append(m)
    out = tmp_path / "soup.safetensors"
    avg.soup(paths, str(out))
    ck = load_checkpoint(out, "cpu")
    so, states = ck.model.state_dict(), [m.state_dict() for m in models]
    floats = [k for k in so if so[k].is_floating_point() and not k.startswith("bank.")]
    assert floats and any(not torch.equal(states[0][k], states[2][k]) for k in floats)
    for k in floats:
        torch.testing.assert_close(so[k], (states[0][k] + states[1][k] + states[2][k]) / 3, rtol=1e-6, atol=1e-7)
    assert int(ck.model.bank.fill) == 0
    assert ck.extra["averaged"] == {"inputs": paths}
    assert ck.extra["earlier_faces"] == ["P0_0001-00000000", "P1_0001-00000001", "P2_0001-00000002"]
    with pytest.raises(SystemExit, match="at least two"):
        avg.soup(paths[:1], str(tmp_path / "one.safetensors"))


def test_average_refuses_two_different_models(tmp_path):
    avg = _tool("average_weights")
    pa, _ = _saved(tmp_path, "a.safetensors", 0)
    pb, _ = _saved(tmp_path, "b.safetensors", 0, dim=16)
    with pytest.raises(SystemExit, match="different models"):
        avg.average(str(pa), str(pb), str(tmp_path / "ab.safetensors"), 0.5)


def test_average_refuses_an_output_that_is_an_input_and_names_a_bad_input_in_one_line(tmp_path):
    avg = _tool("average_weights")
    pa, _ = _saved(tmp_path, "a.safetensors", 0)
    pb, _ = _saved(tmp_path, "b.safetensors", 1)
    before = pa.read_bytes()
    for out in (pa, tmp_path / "." / "a.safetensors"):  # the shipped file given as OUT too was replaced in silence
        with pytest.raises(SystemExit, match="is one of the checkpoints to average: writing there would replace it"):
            avg.main([str(pa), str(pb), str(out)])
    with pytest.raises(SystemExit, match="is one of the checkpoints"):
        avg.main([str(pa), str(pb), str(pa), str(tmp_path / "soup.safetensors"), str(pa)])
    assert pa.read_bytes() == before
    out = tmp_path / "ab.safetensors"
    with pytest.raises(SystemExit, match="^Error: checkpoint not found: .*none.safetensors$"):  # not a traceback
        avg.main([str(tmp_path / "none.safetensors"), str(pb), str(out)])
    assert not out.exists()
    avg.main([str(pa), str(pb), str(out)])
    assert load_checkpoint(out, "cpu").extra["averaged"]["alpha"] == 0.5


def test_benches_tell_a_users_mistake_in_one_line_and_read_the_shared_data_where_it_is_set(tmp_path):
    import os
    import subprocess
    import sys

    bench = TOOLS.parent / "bench"
    env = {**os.environ, "FORGERYDET_SHARED_DATA": str(tmp_path / "shared")}
    wrong = tmp_path / "list.csv"
    wrong.write_text("path,label\na.png,0\n")  # an evaluate list given as --pairs: a ForgeryDetError traceback
    r = subprocess.run([sys.executable, str(bench / "shortcuts.py"), str(tmp_path / "m.safetensors"), "--pairs",
                        str(wrong), "--n", "2"], capture_output=True, text=True, env=env)
    assert r.returncode == 1 and r.stderr.startswith("error: ") and "missing column(s)" in r.stderr, r.stderr
    assert len(r.stderr.strip().splitlines()) == 1
    # bench/extract.py's default video ignored FORGERYDET_SHARED_DATA and was a traceback where it was missing
    r = subprocess.run([sys.executable, str(bench / "extract.py")], capture_output=True, text=True, env=env)
    want = str(tmp_path / "shared" / "videos" / "anchor_real.mp4")
    assert r.returncode == 1 and r.stderr.strip() == f"error: {want} not found: give a video, or set " \
        "FORGERYDET_SHARED_DATA to the shared data", r.stderr
    r = subprocess.run([sys.executable, str(bench / "scan.py"), "--help"], capture_output=True, text=True, env=env)
    assert want in r.stdout.replace("\n", "").replace(" ", ""), r.stdout  # its --video default, as help shows it


def test_unseen_photos_keeps_only_photos_and_people_the_checkpoint_never_trained_on(tmp_path):
    tool = _tool("unseen_photos")
    train = tmp_path / "train"
    names = {"lfw": ["Ann_0001", "Ann_0002", "Bob_0001", "Bob_0002", "Cid_0001", "Dee_0001"],
             "utkface": [f"{i}_0_0" for i in range(6)] + ["copy_(2)"]}
    for src, stems in names.items():
        (train / src).mkdir(parents=True)
        for s in stems:
            (train / src / f"{s}.jpg").write_bytes(b"x")
    _, m = _saved(tmp_path, "unused.safetensors", 0)
    # trained on: one photo of Ann (so Ann's other photo must not be chosen either), Cid, and utkface 0-2
    # and "copy_(2)", whose folder name io.source_key made folder-safe: "copy__2_-..."
    seen = ["Ann_0001-0123abcd/f000000_0.jpg", "Cid_0001-89abcdef/f000000_0.jpg", "copy__2_-0a1b2c3d/f000000_0.jpg"] + [
        f"{i}_0_0-0000000{i}/f000000_0.jpg" for i in range(3)]
    ck = save_checkpoint(tmp_path / "m.safetensors", m, bank_sources=seen)
    out = tmp_path / "out"
    counts = tool.split(str(ck), str(out), str(train), per_source=10, seed=1, rest=True)
    assert sorted(p.name for p in (out / "lfw").iterdir()) == ["Bob_0001.jpg", "Bob_0002.jpg", "Dee_0001.jpg"]
    assert sorted(p.name for p in (out / "utkface").iterdir()) == ["3_0_0.jpg", "4_0_0.jpg", "5_0_0.jpg"]
    assert sorted(p.name for p in (out / "rest" / "lfw").iterdir()) == ["Ann_0001.jpg", "Ann_0002.jpg", "Cid_0001.jpg"]
    assert counts == {"lfw": (3, 4), "utkface": (3, 3)}
    few = tool.split(str(ck), str(tmp_path / "few"), str(train), per_source=1, seed=1, rest=False)
    assert few["utkface"][0] == 1 and 1 <= few["lfw"][0] <= 2  # whole people: Bob brings both his photos


def test_subset_faces_refuses_a_mistyped_exclude_and_a_folder_of_another_draw(tmp_path, capsys):
    tool = _tool("subset_faces")
    train = tmp_path / "train"
    (train / "utkface").mkdir(parents=True)
    for i in range(20):
        (train / "utkface" / f"{i}_0_0.jpg").write_bytes(b"x")
    t = ["--train", str(train)]
    calib, more = tmp_path / "calib", tmp_path / "more"
    tool.main([str(calib), "--utkface", "5", "--seed", "1", *t])
    tool.main([str(calib), "--utkface", "5", "--seed", "1", *t])  # the same draw again: make model-data twice
    drawn = sorted(p.name for p in (calib / "utkface").iterdir())
    assert len(drawn) == 5
    with pytest.raises(SystemExit, match="already holds photos of another draw"):  # they were mixed: 10 photos
        tool.main([str(calib), "--utkface", "5", "--seed", "2", *t])
    assert sorted(p.name for p in (calib / "utkface").iterdir()) == drawn
    with pytest.raises(SystemExit, match="--exclude .*calbi: not a subset folder"):  # excluded nothing, in silence
        tool.main([str(more), "--utkface", "99", "--exclude", str(tmp_path / "calbi"), *t])
    with pytest.raises(SystemExit, match="no celeba/ folder there"):  # was a FileNotFoundError traceback
        tool.main([str(more), "--celeba", "3", *t])
    assert not more.exists()
    tool.main([str(more), "--utkface", "99", "--exclude", str(calib), *t])
    assert not set(drawn) & {p.name for p in (more / "utkface").iterdir()}


def test_tools_have_help_and_tell_a_missing_input_in_one_line(tmp_path):
    import subprocess
    import sys

    def tool(*argv):
        return subprocess.run([sys.executable, *map(str, argv)], capture_output=True, text=True)

    for name in ("ablation_subset", "subset_faces", "unseen_photos"):  # those that load no model (the others: by hand)
        r = tool(TOOLS / f"{name}.py", "--help")  # ablation_subset's was an IndexError traceback
        assert r.returncode == 0 and r.stdout.startswith("usage:"), (name, r.stderr)
    r = tool(TOOLS / "ablation_subset.py", tmp_path / "faces.zip", tmp_path / "data")
    assert r.returncode == 2 and r.stderr.splitlines()[-1].endswith("faces.zip: no such file"), r.stderr
    r = tool(TOOLS / "unseen_photos.py", tmp_path / "none.safetensors", tmp_path / "out")  # was a traceback
    assert r.returncode == 1 and r.stderr == f"Error: checkpoint not found: {tmp_path / 'none.safetensors'}\n", r.stderr


def test_unseen_photos_counts_the_faces_of_earlier_runs_as_seen(tmp_path):
    # a fine-tune's or an average's own bank_sources miss the faces its start trained on; earlier_faces has them
    tool = _tool("unseen_photos")
    train = tmp_path / "train"
    (train / "utkface").mkdir(parents=True)
    for i in range(5):
        (train / "utkface" / f"{i}_0_0.jpg").write_bytes(b"x")
    _, m = _saved(tmp_path, "unused.safetensors", 0)
    ck = save_checkpoint(tmp_path / "m.safetensors", m, bank_sources=["/abs/run/crops/real/0_0_0-00000000/f000000_0.jpg"],
                         extra={"earlier_faces": ["1_0_0-11111111", "2_0_0-22222222"]})
    tool.split(str(ck), str(tmp_path / "out"), str(train), per_source=10, seed=1, rest=False)
    assert sorted(p.name for p in (tmp_path / "out" / "utkface").iterdir()) == ["3_0_0.jpg", "4_0_0.jpg"]


def test_average_keeps_both_parents_training_faces_as_earlier_faces(tmp_path):
    avg = _tool("average_weights")
    _, ma = _saved(tmp_path, "unused_a.safetensors", 0)
    _, mb = _saved(tmp_path, "unused_b.safetensors", 1)
    pa = save_checkpoint(tmp_path / "a.safetensors", ma, bank_sources=["/r/crops/real/Ann_0001-0123abcd/f0.jpg"],
                         extra={"earlier_faces": ["Old_0001-89abcdef"]})
    pb = save_checkpoint(tmp_path / "b.safetensors", mb, bank_sources=["Bob_0001-00112233/f0.jpg"])
    out = tmp_path / "ab.safetensors"
    avg.average(str(pa), str(pb), str(out), 0.5)
    ck = load_checkpoint(out, check_bank=False)
    assert ck.extra["earlier_faces"] == ["Ann_0001-0123abcd", "Bob_0001-00112233", "Old_0001-89abcdef"]
    assert ck.training_faces == set(ck.extra["earlier_faces"])  # its bank is empty until rebuild-bank


def test_ship_by_reference_leaves_the_frozen_backbone_to_its_weights_file(tmp_path):
    import timm
    from safetensors.torch import save_file

    from forgerydet.model.checkpoint import read_meta

    torch.manual_seed(3)
    weights = tmp_path / "w.safetensors"
    save_file({k: v.contiguous() for k, v in timm.create_model("test_efficientnet").state_dict().items()}, str(weights))
    src, m = _saved(tmp_path, "run.safetensors", 0, pretrained=str(weights))  # backbone as loaded: all frozen
    ship = _tool("transfer_weights").ship
    ship(str(src), str(tmp_path / "whole.safetensors"))
    ship(str(src), str(tmp_path / "slim.safetensors"), by_reference=True)
    assert read_meta(tmp_path / "whole.safetensors")["by_reference"] is None
    assert len(read_meta(tmp_path / "slim.safetensors")["by_reference"]["keys"]) > 10
    assert (tmp_path / "slim.safetensors").stat().st_size < (tmp_path / "whole.safetensors").stat().st_size
    got = load_checkpoint(tmp_path / "slim.safetensors").model.state_dict()
    for k, v in m.state_dict().items():
        assert torch.equal(got[k], v), k


def test_transfer_refuses_an_output_onto_its_input_and_names_a_missing_export_in_one_line(tmp_path):
    tw = _tool("transfer_weights")
    src, _ = _saved(tmp_path, "run.safetensors", 0)
    tw.main(["export", str(src), str(tmp_path / "new" / "exp")])  # its folder is made, as ship makes its file's
    enc = tmp_path / "new" / "exp.enc.safetensors"
    kept = {p: p.read_bytes() for p in (src, enc)}
    for argv in (["ship", str(src), str(src)], ["import", str(tmp_path / "new" / "exp"), str(enc)],
                 ["export", str(tmp_path / "new" / "exp.enc.safetensors"), str(tmp_path / "new" / "exp")]):
        with pytest.raises(SystemExit, match=r"^Error: DST .* is an input of \w+: writing there would replace it"):
            tw.main(argv)
    assert {p: p.read_bytes() for p in kept} == kept
    with pytest.raises(SystemExit, match=r"^Error: .*nothere: no export there \(.*nothere.enc.safetensors not found\)"):
        tw.main(["import", str(tmp_path / "nothere"), str(tmp_path / "x.safetensors")])  # was a FileNotFoundError
    assert not (tmp_path / "x.safetensors").exists()


def test_export_by_reference_carries_only_what_training_changed_and_imports_at_full_precision(tmp_path, capsys):
    import timm
    from safetensors.torch import save_file

    from forgerydet.errors import ForgeryDetError

    torch.manual_seed(5)
    plain = {k: v.contiguous() for k, v in timm.create_model("test_efficientnet").state_dict().items()}
    w32, w16, other = (str(tmp_path / n) for n in ("w32.safetensors", "w16.safetensors", "other.safetensors"))
    save_file(plain, w32)
    save_file({k: v.half() if v.is_floating_point() else v for k, v in plain.items()}, w16)  # the GPU machine's copy
    save_file({k: v + 0.01 if v.is_floating_point() else v for k, v in plain.items()}, other)
    src, m = _saved(tmp_path, "run.safetensors", 0, pretrained=w16)
    with torch.no_grad():  # training changed one backbone norm (as --tune norm does) in both encoders
        for enc in (m.encoder, m.key_encoder):
            enc.backbone.bn1.weight.add_(0.25)
    src = save_checkpoint(tmp_path / "tuned.safetensors", m)
    tw = _tool("transfer_weights")
    tw.export(str(src), str(tmp_path / "whole"))
    tw.export(str(src), str(tmp_path / "slim"), by_reference=True)
    size = {n: sum((tmp_path / f"{n}.{p}.safetensors").stat().st_size for p in ("enc", "key")) for n in ("whole", "slim")}
    assert size["slim"] < size["whole"] / 2
    with pytest.raises(ForgeryDetError, match="--reference"):
        tw.import_(str(tmp_path / "slim"), str(tmp_path / "x.safetensors"))
    with pytest.raises(ForgeryDetError, match="not those it was trained from"):
        tw.import_(str(tmp_path / "slim"), str(tmp_path / "x.safetensors"), reference=other)
    with pytest.raises(SystemExit, match="^Error: .*not those it was trained from"):
        tw.main(["import", str(tmp_path / "slim"), str(tmp_path / "x.safetensors"), "--reference", other])
    assert not (tmp_path / "x.safetensors").exists()

    tw.import_(str(tmp_path / "whole"), str(tmp_path / "whole.safetensors"))
    whole = load_checkpoint(tmp_path / "whole.safetensors").model.state_dict()
    for ref in (w16, w32):  # the copy it trained from, or the full-precision weights it was rounded from
        tw.import_(str(tmp_path / "slim"), str(tmp_path / "slim.safetensors"), reference=ref)
        ck = load_checkpoint(tmp_path / "slim.safetensors")
        assert ck.model.pretrained_source == f"file:{Path(ref).resolve()}" and ck.model.cfg.pretrained == ref
        got = ck.model.state_dict()
        rounded = 0
        for k, v in whole.items():
            if k.startswith("bank."):
                continue
            name = k.split("backbone.", 1)[-1]
            if "backbone." in k and name != "bn1.weight" and name in plain and plain[name].is_floating_point():
                assert torch.equal(got[k], plain[name].half().float() if ref == w16 else plain[name]), k
                rounded += not torch.equal(v, plain[name])
            else:  # trained tensors: as the fp16 trip left them
                assert torch.equal(got[k], v), k
        assert rounded > 10 if ref == w32 else rounded > 0


def test_device_carry_packs_whole_groups_as_webp_within_its_budget(tmp_path, monkeypatch, capsys):
    import sys
    import zipfile

    import cv2

    from forgerydet.errors import ForgeryDetError
    from forgerydet.pairs.table import read_pairs
    from tests.helpers import make_synthetic_pairs

    carry = _tool("device_carry")
    pairs = make_synthetic_pairs(tmp_path / "pairs", groups=8, frames=4, val_groups=2)
    whole = carry.pack_faces(pairs, tmp_path / "all.zip", 10**8)
    assert (whole["rows"], whole["groups"], whole["splits"]) == (32, 8, {"train": 24, "val": 8, "test": 0})
    budget = whole["bytes"] // 2
    half = carry.pack_faces(pairs, tmp_path / "half.zip", budget)
    assert half["bytes"] <= budget and 0 < half["rows"] < 32 and half["rows"] % 4 == 0  # whole groups only
    with zipfile.ZipFile(tmp_path / "half.zip") as z:
        z.extractall(tmp_path / "x")
    table = read_pairs(tmp_path / "x" / "pairs.csv", need_splits=())
    original = {(r.group, r.split) for r in read_pairs(pairs, need_splits=()).rows}
    assert len(table.rows) == half["rows"] and {(r.group, r.split) for r in table.rows} <= original
    for r in table.rows[:3]:
        assert r.real.suffix == r.fake.suffix == ".webp"
        assert cv2.imread(str(r.real)).shape == cv2.imread(str(r.fake)).shape == (64, 64, 3)
    with pytest.raises(ForgeryDetError, match="no group of .* fits in"):
        carry.pack_faces(pairs, tmp_path / "none.zip", 100)
    monkeypatch.setattr(sys, "argv", ["device_carry.py", str(pairs), str(tmp_path / "carry"), "--backbones", ""])
    carry.main()
    out = capsys.readouterr().out
    assert "faces.zip: 32 of 32 rows, 8 of 8 groups" in out and "MiB in all (the device machine takes 64 MiB)" in out


def test_ship_stores_bank_sources_from_their_common_folder_without_this_machines_root(tmp_path):
    from forgerydet.model.checkpoint import read_meta

    _, m = _saved(tmp_path, "x.safetensors", 0)
    sources = [f"runs/p/crops/real/a-0000000{i}/f000000_0.jpg" for i in range(5)]
    src = save_checkpoint(tmp_path / "run.safetensors", m, bank_sources=sources,
                          extra={"bank_sources_root": "/home/dev/forgerydet", "trained_on": "runs/p/pairs.csv"})
    _tool("transfer_weights").ship(str(src), str(tmp_path / "ship.safetensors"))
    meta = read_meta(tmp_path / "ship.safetensors")
    assert meta["bank_sources"][0] == "a-00000000/f000000_0.jpg"  # relative to the folder that holds them all
    assert "bank_sources_root" not in meta["extra"] and meta["extra"]["trained_on"] == "runs/p/pairs.csv"


def test_the_command_reference_is_current_and_names_every_option():
    """docs/cli.md is generated from the CLI (`make docs`): a changed option or help text without `make docs`
    fails here, so the reference a user reads is what --help says."""
    import click
    import typer

    from forgerydet.cli.app import app

    docs = _tool("cli_docs")
    text = docs.render()
    assert docs.OUT.read_text(encoding="utf-8") == text, "docs/cli.md is stale: run `make docs`"
    assert "&#x27;" not in text and "&quot;" not in text  # typer's HTML escapes turned back into quotes
    group = typer.main.get_command(app)
    for name, cmd in group.commands.items():
        subs = cmd.commands.items() if isinstance(cmd, click.Group) else [(None, cmd)]
        for sub, c in subs:
            title = f"## `forgerydet {name}{' ' + sub if sub else ''}`"
            assert title in text, title
            for param in c.params:
                for opt in param.opts:
                    if opt.startswith("--"):
                        assert f"`{opt}" in text, (name, sub, opt)
