import pytest
import torch
import torch.nn.functional as F

from forgerydet.errors import ForgeryDetError
from forgerydet.model.bank import MemoryBank, encoder_fingerprint


def entries(n, N=3, D=4, seed=0):
    g = torch.Generator().manual_seed(seed)
    return F.normalize(torch.randn(n, N, D, generator=g), dim=-1)


def test_constructor_validates():
    with pytest.raises(ValueError, match="size=0"):
        MemoryBank(0, 3, 4)


def test_contents_after_each_write_with_wraparound():
    bank = MemoryBank(7, 3, 4, token_dtype=torch.float32)
    assert bank.filled == 0
    writes = [entries(3, seed=1), entries(3, seed=2), entries(3, seed=3)]  # 3 does not divide 7
    bank.enqueue(writes[0], source=torch.tensor([10, 11, 12]))
    assert bank.filled == 3 and int(bank.ptr) == 3
    torch.testing.assert_close(bank.values[:3], writes[0])
    assert bank.source.tolist() == [10, 11, 12, -1, -1, -1, -1]
    bank.enqueue(writes[1], source=torch.tensor([20, 21, 22]))
    assert bank.filled == 6 and int(bank.ptr) == 6
    torch.testing.assert_close(bank.values[3:6], writes[1])
    bank.enqueue(writes[2], source=torch.tensor([30, 31, 32]))  # slot 6, then wraps to 0, 1
    assert bank.filled == 7 and int(bank.ptr) == 2
    torch.testing.assert_close(bank.values[6], writes[2][0])
    torch.testing.assert_close(bank.values[0:2], writes[2][1:])
    torch.testing.assert_close(bank.values[2], writes[0][2])  # the oldest surviving entry
    assert bank.source.tolist() == [31, 32, 12, 20, 21, 22, 30]
    # keys are the normalised mean of the tokens
    torch.testing.assert_close(bank.keys, F.normalize(bank.values.mean(1), dim=-1))


def test_batch_larger_than_bank_keeps_newest():
    bank = MemoryBank(4, 3, 4, token_dtype=torch.float32)
    e = entries(10)
    bank.enqueue(e)
    assert bank.filled == 4
    assert sorted(bank.values.reshape(4, -1).tolist()) == sorted(e[-4:].reshape(4, -1).tolist())


def test_retrieve_never_returns_unfilled_and_matches_brute_force():
    bank = MemoryBank(50, 3, 4, token_dtype=torch.float32)
    e = entries(13, seed=5)
    bank.enqueue(e)
    q = torch.randn(6, 4)
    ref, idx, sims = bank.retrieve(q, k=5)
    assert (idx < 13).all()
    # brute force
    qn = F.normalize(q, dim=-1)
    keys = F.normalize(e.mean(1), dim=-1)
    for b in range(6):
        brute = sorted(range(13), key=lambda i: -float(qn[b] @ keys[i]))[:5]
        assert idx[b].tolist() == brute
        torch.testing.assert_close(sims[b], torch.stack([qn[b] @ keys[i] for i in brute]))
        torch.testing.assert_close(ref[b], F.normalize(e[brute].mean(0), dim=-1))
    # asking for more neighbours than filled entries returns only filled ones
    _, idx, _ = bank.retrieve(q, k=40)
    assert idx.shape == (6, 13) and (idx < 13).all()


def test_an_excluded_entry_never_enters_the_reference_and_retrieval_is_fp32_under_autocast():
    """Training hides a face's own source from it; when fewer than k other entries were left, topk still returned
    the hidden ones and they were averaged in (a real face's own features: a zero difference, the label leaked).
    Inside a bf16 step the cosines were bf16 (18 % of top-1 neighbours reordered in a helper's check)."""
    bank = MemoryBank(8, 3, 4, token_dtype=torch.float32)
    e = entries(4, seed=1)
    bank.enqueue(e)
    q = torch.randn(2, 4)
    own = torch.tensor([[True, True, False, False], [True, True, True, True]])  # row 1: nothing else is left
    ref, idx, sims = bank.retrieve(q, k=4, exclude=own)
    torch.testing.assert_close(ref[0], F.normalize(e[2:].mean(0), dim=-1))  # the two others only, not four
    assert torch.equal(ref[1], torch.zeros(3, 4))  # all hidden: a zero reference, not its own features
    plain, _, plain_sims = bank.retrieve(q, k=2)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        _, _, auto_sims = bank.retrieve(q, k=2)
    assert auto_sims.dtype == torch.float32 and torch.equal(auto_sims, plain_sims)


def test_nearest_other_similarity_is_the_full_matrix_s_row_maximum_in_blocks():
    """`scan --reference` of a person with 20,000 enrolled faces built a 20,000 x 20,000 matrix (1.6 GB) for the
    enrolled faces' likeness to one another; now a block of rows at a time, with the same result."""
    bank = MemoryBank(50, 3, 4, token_dtype=torch.float32)
    bank.enqueue(entries(13, seed=6))
    keys = bank.filled_keys().float()
    full = keys @ keys.T
    full.fill_diagonal_(-2.0)
    for chunk in (1, 4, 13, 1024):
        torch.testing.assert_close(bank.nearest_other_similarity(chunk=chunk), full.max(dim=1).values)


def test_retrieve_on_empty_bank_is_clear_and_never_writes():
    bank = MemoryBank(5, 3, 4)
    with pytest.raises(ForgeryDetError, match="empty"):
        bank.retrieve(torch.randn(1, 4))
    bank.enqueue(entries(2))
    before = {k: v.clone() for k, v in bank.state_dict().items()}
    bank.retrieve(torch.randn(3, 4), k=2)
    for k, v in bank.state_dict().items():
        assert torch.equal(v, before[k]), k


def test_rebuild_replaces_everything_and_subsamples():
    bank = MemoryBank(5, 3, 4, token_dtype=torch.float32)
    bank.enqueue(entries(5, seed=1))
    fp = torch.arange(32, dtype=torch.uint8)
    new = entries(3, seed=2)
    assert bank.rebuild(new, fp, source=torch.tensor([7, 8, 9])) == 3
    assert bank.filled == 3 and int(bank.ptr) == 3
    torch.testing.assert_close(bank.values[:3], new)
    assert (bank.values[3:] == 0).all() and bank.source.tolist() == [7, 8, 9, -1, -1]
    assert torch.equal(bank.fingerprint, fp)
    many = entries(12, seed=3)
    assert bank.rebuild(many, fp, source=torch.arange(12), generator=torch.Generator().manual_seed(0)) == 5
    kept = bank.source.tolist()
    assert len(set(kept)) == 5 and all(0 <= s < 12 for s in kept)
    for slot, s in enumerate(kept):
        torch.testing.assert_close(bank.values[slot], many[s])


def test_slot_ema_update():
    bank = MemoryBank(4, 3, 4, token_dtype=torch.float32)
    old = entries(2, seed=1)
    bank.enqueue(old)
    new = entries(1, seed=9)
    bank.update_slots(torch.tensor([1]), new, momentum=0.75)
    torch.testing.assert_close(bank.values[1], F.normalize(0.75 * old[1] + 0.25 * new[0], dim=-1))
    torch.testing.assert_close(bank.values[0], old[0])
    with pytest.raises(ValueError, match="filled"):
        bank.update_slots(torch.tensor([3]), new, momentum=0.5)


def test_fingerprint_changes_with_weights():
    lin = torch.nn.Linear(3, 2)
    a = encoder_fingerprint(lin)
    assert torch.equal(a, encoder_fingerprint(lin)) and a.shape == (32,)
    with torch.no_grad():
        lin.weight[0, 0] += 1e-3
    assert not torch.equal(a, encoder_fingerprint(lin))


def test_state_dict_holds_filled_entries_only_and_round_trips():
    bank = MemoryBank(9, 3, 4)
    bank.enqueue(entries(4, seed=1), source=torch.tensor([5, 6, 7, 8]))
    sd = bank.state_dict()
    assert sd["keys"].shape == (4, 4) and sd["values"].shape == (4, 3, 4) and sd["source"].shape == (4,)
    assert sd["values"].dtype == torch.float16
    fresh = MemoryBank(9, 3, 4)
    fresh.load_state_dict(sd, strict=True)
    for name in ("keys", "values", "source", "ptr", "fill"):
        assert torch.equal(getattr(fresh, name), getattr(bank, name)), name
    assert fresh.source.tolist()[4:] == [-1] * 5 and (fresh.values[4:] == 0).all()
    fresh.enqueue(entries(2, seed=2))  # the pointer came back too: writing goes on after the restored entries
    assert fresh.filled == 6 and torch.equal(fresh.values[:4], bank.values[:4])


def test_full_buffer_state_dict_of_older_checkpoints_loads():
    bank = MemoryBank(6, 3, 4)
    bank.enqueue(entries(2, seed=3))
    old = {k: v.clone() for k, v in bank.state_dict().items()}
    old["keys"], old["values"], old["source"] = bank.keys.clone(), bank.values.clone(), bank.source.clone()  # K rows
    fresh = MemoryBank(6, 3, 4)
    fresh.load_state_dict(old, strict=True)
    assert fresh.filled == 2 and torch.equal(fresh.values, bank.values) and torch.equal(fresh.keys, bank.keys)
    bad = dict(old, keys=bank.keys[:3])  # 3 rows fit neither fill=2 nor K=6
    with pytest.raises(RuntimeError, match="bank entries do not fit"):
        MemoryBank(6, 3, 4).load_state_dict(bad)


@pytest.mark.parametrize("fill", [torch.tensor([2, 2]), torch.tensor(2.0, dtype=torch.float64), torch.tensor(-1),
                                  torch.ones(8, dtype=torch.bool)])
def test_a_fill_that_is_not_a_count_is_a_load_error(fill):
    """A checkpoint edited to hold another shape or type of `fill` raised ValueError from int() (a traceback from
    `scan`), or read a float's bits as a count, instead of the loader's 'weights do not fit' error."""
    bank = MemoryBank(6, 3, 4)
    bank.enqueue(entries(2, seed=3))
    sd = dict(bank.state_dict(), fill=fill)
    with pytest.raises(RuntimeError, match="bank fill of shape|bank entries do not fit"):
        MemoryBank(6, 3, 4).load_state_dict(sd)
