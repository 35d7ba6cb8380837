"""Coreset selection: greedy k-center covers the real distribution at least as well as a random subset."""

from itertools import combinations

import pytest
import torch
import torch.nn.functional as F

from forgerydet.model.bank import MemoryBank
from forgerydet.model.coreset import coverage_radius, kcenter_greedy, random_subset, select


def clustered(m: int, d: int = 16, clusters: int = 8, rare: int = 3, seed: int = 0) -> torch.Tensor:
    """m keys around `clusters` centres, the last centre holding only `rare` points (an unusual pose/person)."""
    g = torch.Generator().manual_seed(seed)
    centres = F.normalize(torch.randn(clusters, d, generator=g), dim=-1)
    counts = [(m - rare) // (clusters - 1)] * (clusters - 1)
    counts[0] += m - rare - sum(counts)
    counts.append(rare)
    pts = [c + 0.1 * torch.randn(n, d, generator=g) for c, n in zip(centres, counts)]
    return F.normalize(torch.cat(pts), dim=-1)


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_coverage_radius_no_worse_than_random(seed):
    keys = clustered(600, seed=seed)
    for k in (8, 32, 100):
        core = coverage_radius(keys, kcenter_greedy(keys, k, torch.Generator().manual_seed(seed)))
        rand = coverage_radius(keys, torch.randperm(600, generator=torch.Generator().manual_seed(seed))[:k])
        assert core <= rand + 1e-6, (k, core, rand)


def test_within_twice_the_optimal_radius():
    keys = clustered(12, d=3, clusters=4, rare=2, seed=4)
    opt = min(coverage_radius(keys, torch.tensor(c)) for c in combinations(range(12), 3))
    got = coverage_radius(keys, kcenter_greedy(keys, 3, torch.Generator().manual_seed(0)))
    assert got <= 2 * opt + 1e-6


def test_selection_is_seeded_distinct_and_complete_when_k_covers_all():
    keys = clustered(200, seed=3)
    a = kcenter_greedy(keys, 20, torch.Generator().manual_seed(5))
    b = kcenter_greedy(keys, 20, torch.Generator().manual_seed(5))
    assert torch.equal(a, b) and len(set(a.tolist())) == 20
    assert select(keys, 500, "coreset").tolist() == list(range(200))
    with pytest.raises(ValueError, match="unknown selection"):
        select(keys, 5, "best")


def test_duplicate_faces_never_have_one_face_chosen_twice():
    """With more slots than distinct faces (identical crops: a video's repeated frames, a photo copied under two
    names), once every distinct face was chosen all distances were 0 and argmax kept returning index 0 or 1: the
    bank got one face 11 times over (in a random draw each copy is kept at most once)."""
    base = F.normalize(torch.randn(10, 8, generator=torch.Generator().manual_seed(0)), dim=-1)
    keys = torch.cat([base] * 5)  # 50 faces, 10 distinct
    chosen = kcenter_greedy(keys, 20, torch.Generator().manual_seed(0))
    assert len(set(chosen.tolist())) == 20
    assert coverage_radius(keys, chosen) < 1e-3  # and every distinct face is among them


def test_a_random_subset_drawn_without_keys_is_the_random_selection_of_those_keys():
    keys = torch.randn(50, 8)
    idx = random_subset(50, 12, torch.Generator().manual_seed(3))
    assert idx.tolist() == select(keys, 12, "random", torch.Generator().manual_seed(3)).tolist()
    assert idx.tolist() == sorted(set(idx.tolist())) and len(idx) == 12
    assert random_subset(5, 12).tolist() == [0, 1, 2, 3, 4]


def test_bank_rebuild_by_coreset_keeps_the_rare_faces():
    keys = clustered(400, d=8, clusters=5, rare=2, seed=0)  # tokens = the key repeated: pooled key == key
    values = keys[:, None, :].repeat(1, 3, 1)  # (M,3,D)
    bank = MemoryBank(16, 3, 8, token_dtype=torch.float32)
    bank.rebuild(values, torch.zeros(32, dtype=torch.uint8), source=torch.arange(400),
                 generator=torch.Generator().manual_seed(0), select="coreset")
    assert bank.filled == 16 and bank.source.tolist() == sorted(bank.source.tolist())
    assert {398, 399} & set(bank.source.tolist())  # the rare cluster is covered
    hits = 0
    for s in range(20):  # a random subset of 16 of 400 keeps one of the 2 rare faces only ~8% of the time
        bank.rebuild(values, torch.zeros(32, dtype=torch.uint8), source=torch.arange(400),
                     generator=torch.Generator().manual_seed(s), select="random")
        hits += bool({398, 399} & set(bank.source.tolist()))
    assert hits < 10


def test_rebuild_bank_command_selects_a_coreset(tmp_path):
    from typer.testing import CliRunner

    from forgerydet.cli.app import app
    from forgerydet.model.checkpoint import load_checkpoint, save_checkpoint
    from tests.helpers import make_synthetic_pairs, tiny_model

    pairs = make_synthetic_pairs(tmp_path / "pairs")  # 24 real training faces
    ck = save_checkpoint(tmp_path / "ck.safetensors", tiny_model(bank_size=6))
    got = {}
    for how in ("coreset", "random"):
        r = CliRunner().invoke(app, ["rebuild-bank", "--checkpoint", str(ck), "--pairs", str(pairs), "--device", "cpu",
                                     "--select", how, "--out", str(tmp_path / f"{how}.safetensors")])
        assert r.exit_code == 0 and f"{how} selection" in " ".join(r.output.split()), r.output
        c = load_checkpoint(tmp_path / f"{how}.safetensors")
        assert c.model.bank.filled == 6 and c.extra["bank_selection"] == how
        got[how] = c.model.bank
    model = load_checkpoint(tmp_path / "coreset.safetensors").model.eval()
    from forgerydet.model.inputs import load_image, to_tensor
    from forgerydet.pairs.table import read_pairs

    reals = [p for p, _ in read_pairs(pairs).reals("train")]
    keys = MemoryBank._keys_of(model.encode_keys(torch.stack([to_tensor(load_image(p, model.img_size)) for p in reals])))
    radius = {how: coverage_radius(keys, b.source[:6]) for how, b in got.items()}
    assert radius["coreset"] <= radius["random"] + 1e-4, radius
    r = CliRunner().invoke(app, ["rebuild-bank", "--checkpoint", str(ck), "--pairs", str(pairs), "--select", "best"])
    assert r.exit_code == 1 and "--select 'best': use one of" in r.output
