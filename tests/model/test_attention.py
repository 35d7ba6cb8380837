"""DifferenceAttention (model/attention.py): what the face attends to in its difference tokens."""


import torch

from forgerydet.model.attention import DifferenceAttention


def test_difference_attention_zero_difference_gives_uniform_attention():
    torch.manual_seed(0)
    att = DifferenceAttention(16, heads=2, mlp_ratio=0)
    x = torch.randn(2, 5, 16)
    out, attn = att(x, torch.zeros(2, 5, 16))
    # all keys equal (bias only) -> every query attends uniformly
    torch.testing.assert_close(attn, torch.full_like(attn, 1 / 5))
    assert out.shape == x.shape
