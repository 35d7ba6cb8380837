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
