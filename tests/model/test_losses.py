"""The losses (model/losses.py): InfoNCE against a slow reference loop and a hand-worked value."""


import pytest
import torch

from forgerydet.model.losses import info_nce


def test_info_nce_equals_slow_loop():
    torch.manual_seed(1)
    q, k, queue = torch.randn(5, 8), torch.randn(5, 8), torch.randn(11, 8)
    tau = 0.2
    fast = info_nce(q, k, queue, tau)
    qn = [v / v.norm() for v in q]
    kn = [v / v.norm() for v in k]
    un = [v / v.norm() for v in queue]
    total = 0.0
    for i in range(5):
        pos = float(qn[i] @ kn[i]) / tau
        negs = [float(qn[i] @ u) / tau for u in un]
        denom = sum(torch.exp(torch.tensor(v)).item() for v in [pos] + negs)
        total += -(pos - torch.log(torch.tensor(denom)).item())
    assert fast.item() == pytest.approx(total / 5, rel=1e-5)


def test_info_nce_hand_worked_value():
    # one query equal to its key (cos 1) and one orthogonal negative (cos 0), tau = 1:
    # loss = -log(e^1 / (e^1 + e^0)) = log(1 + e^-1)
    q = torch.tensor([[1.0, 0.0]])
    loss = info_nce(q, q.clone(), torch.tensor([[0.0, 1.0]]), temperature=1.0)
    assert loss.item() == pytest.approx(float(torch.log1p(torch.exp(torch.tensor(-1.0)))), rel=1e-6)


def test_info_nce_leaves_out_the_excluded_negatives():
    """A negative marked in `exclude` (the query's own source in the queue, a near-copy of its positive) counts
    as if it were not in the queue; a copy of the positive left in raises the loss."""
    torch.manual_seed(2)
    q, k, queue = torch.randn(3, 8), torch.randn(3, 8), torch.randn(6, 8)
    copies = torch.cat([queue, k], dim=0)  # each query's positive, again, as slots 6-8
    exclude = torch.zeros(3, 9, dtype=torch.bool)
    exclude[torch.arange(3), 6 + torch.arange(3)] = True  # query i's own copy
    exclude[:, 6:] = True  # and the other queries' too, so that the queue is `queue` again
    assert info_nce(q, k, copies, 0.2, exclude=exclude).item() == pytest.approx(info_nce(q, k, queue, 0.2).item(), rel=1e-6)
    own_only = torch.zeros(3, 9, dtype=torch.bool)
    own_only[torch.arange(3), 6 + torch.arange(3)] = True
    assert info_nce(q, k, copies, 0.2).item() > info_nce(q, k, copies, 0.2, exclude=own_only).item()
    # a query that matches its key: its own copy as a negative halves its share, about log 2 more
    same = torch.cat([queue, q], dim=0)
    gap = info_nce(q, q, same, 0.2).item() - info_nce(q, q, same, 0.2, exclude=own_only).item()
    assert 0.5 < gap <= float(torch.log(torch.tensor(2.0))) + 1e-6
    # every negative excluded: the positive alone, loss 0
    assert info_nce(q, k, queue, 0.2, exclude=torch.ones(3, 6, dtype=torch.bool)).item() == pytest.approx(0.0, abs=1e-6)
