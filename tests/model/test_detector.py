
import numpy as np
import pytest
import torch

from forgerydet.errors import ForgeryDetError
from forgerydet.model.backbone import pooled
from forgerydet.model.detector import precision_autocast
from forgerydet.model.losses import bce_loss, info_nce
from tests.helpers import randomise_batchnorm_statistics, tiny_model


@pytest.mark.parametrize("backbone", ["test_efficientnet", "test_vit", "resnet10t"])
@pytest.mark.parametrize("mode", ["pair", "single"])
def test_shapes_and_finite(backbone, mode):
    kw = {"img_size": 160} if backbone == "test_vit" else {}
    m = tiny_model(backbone=backbone, **kw).eval()
    S = m.img_size
    x = torch.rand(3, 3, S, S)
    m.bank.enqueue(m.encode_keys(torch.rand(5, 3, S, S)))
    out = m(x, mode, reference=torch.rand(3, 3, S, S) if mode == "pair" else None)
    N, D = 16, 32
    assert out["logits"].shape == (3,)
    assert out["tokens"].shape == out["reference"].shape == (3, N, D)
    if mode == "pair":  # the key encoder sees only the reference
        assert out["reference_keys"].shape == (3, N, D)
        torch.testing.assert_close(out["reference"], out["reference_keys"])
    assert out["attention"].shape == (3, 4, N, N)
    assert out["saliency"].shape == (3, 4, 4)
    assert torch.isfinite(out["logits"]).all() and torch.isfinite(out["attention"]).all()
    # attention rows are distributions
    torch.testing.assert_close(out["attention"].sum(-1), torch.ones(3, 4, N))
    if mode == "single":
        assert out["neighbours"].shape == out["similarities"].shape == (3, 2)


@pytest.mark.parametrize("mode", ["pair", "single"])
def test_every_trainable_parameter_gets_a_gradient_and_key_encoder_none(mode):
    m = tiny_model(drop=0.0).train()
    x = torch.rand(4, 3, 64, 64)
    m.bank.enqueue(m.encode_keys(torch.rand(6, 3, 64, 64)))
    out = m(x, mode, reference=torch.rand(4, 3, 64, 64) if mode == "pair" else None)
    loss = bce_loss(out["logits"], torch.tensor([0, 1, 0, 1]))
    if mode == "pair":
        loss = loss + info_nce(pooled(out["tokens"]), pooled(out["reference_keys"]), m.bank.filled_keys())
    loss.backward()
    missing = [n for n, p in m.named_parameters() if p.requires_grad and (p.grad is None or not p.grad.abs().sum() > 0)]
    assert missing == []
    assert all(p.grad is None for p in m.key_encoder.parameters())
    assert all(not p.requires_grad for p in m.key_encoder.parameters())


def test_key_encoder_follows_ema_exactly():
    m = tiny_model(momentum=0.9)
    with torch.no_grad():
        for p in m.encoder.parameters():
            p.add_(torch.randn_like(p))
    before_k = [p.clone() for p in m.key_encoder.parameters()]
    online = [p.clone() for p in m.encoder.parameters()]
    m.momentum_update()
    for k0, q, k1 in zip(before_k, online, m.key_encoder.parameters()):
        torch.testing.assert_close(k1, 0.9 * k0 + 0.1 * q, rtol=0, atol=1e-6)


def test_a_key_tensor_equal_to_its_online_tensor_stays_bit_identical():
    """A frozen backbone weight: the EMA of a constant must be that constant, not a rounding random walk."""
    m = tiny_model(momentum=0.999)
    torch.manual_seed(0)
    with torch.no_grad():
        for p in m.encoder.parameters():
            p.copy_(torch.randn_like(p) * 3.7)
        m.key_encoder.load_state_dict(m.encoder.state_dict())
    for _ in range(50):
        m.momentum_update()
    for (name, k), q in zip(m.key_encoder.named_parameters(), m.encoder.parameters()):
        assert torch.equal(k, q), name
    # the key encoder stays in eval mode even when the model trains (stable BN statistics for the bank)
    m.train()
    assert not m.key_encoder.training and m.encoder.training


def test_pair_mode_needs_reference_and_unknown_mode_refused():
    m = tiny_model()
    with pytest.raises(ForgeryDetError, match="reference"):
        m(torch.rand(1, 3, 64, 64), "pair")
    with pytest.raises(ForgeryDetError, match="mode"):
        m(torch.rand(1, 3, 64, 64), "triple")


def test_single_mode_uses_one_backbone_pass(monkeypatch):
    m = tiny_model().eval()
    m.bank.enqueue(m.encode_keys(torch.rand(5, 3, 64, 64)))
    calls = []
    monkeypatch.setattr(m.key_encoder, "forward", lambda x: calls.append(x) or None)
    out = m(torch.rand(2, 3, 64, 64), "single")
    assert calls == [] and out["logits"].shape == (2,)


def test_single_mode_on_empty_bank_is_a_clear_error():
    with pytest.raises(ForgeryDetError, match="bank is empty"):
        tiny_model()(torch.rand(1, 3, 64, 64), "single")


def test_key_features_match_encode_keys_with_folded_batchnorms():
    import torch

    torch.manual_seed(0)
    model = tiny_model(backbone="resnet10t").eval()
    assert randomise_batchnorm_statistics(model.key_encoder) > 0
    fp = model.key_fingerprint().clone()
    x = torch.rand(9, 3, 64, 64)
    encode = model.key_features()
    got = encode(x)
    assert got.shape == model.encode_keys(x).shape and not got.requires_grad
    assert (got - model.encode_keys(x)).abs().max().item() < 1e-5
    assert torch.equal(model.key_fingerprint(), fp)  # the key encoder itself is untouched
    assert any(isinstance(m, torch.nn.BatchNorm2d) for m in model.key_encoder.modules())


def test_precision_autocast_turns_bf16_on_and_fp32_off_even_inside_another():
    cpu, a = torch.device("cpu"), torch.rand(4, 4)
    with precision_autocast(cpu, "bf16"):
        assert (a @ a).dtype == torch.bfloat16
        with precision_autocast(cpu, "fp32"):
            assert (a @ a).dtype == torch.float32
    with pytest.raises(ForgeryDetError, match=r"^--precision fp16 needs a CUDA GPU, not cpu: use bf16 or fp32$"):
        precision_autocast(cpu, "fp16")
    with pytest.raises(ForgeryDetError, match=r"^--precision 'tf32': use one of fp32, bf16, fp16$"):
        precision_autocast(cpu, "tf32")


def test_single_scores_in_bf16_run_every_pass_in_bf16(monkeypatch):
    torch.manual_seed(0)
    m = tiny_model(bank_size=16).eval()
    m.bank.rebuild(m.encode_keys(torch.rand(10, 3, 64, 64)), m.key_fingerprint(), source=torch.arange(10))
    x = torch.rand(3, 3, 64, 64)
    seen = []
    forward = type(m).forward
    monkeypatch.setattr(type(m), "forward", lambda self, *a, **k: (seen.append(torch.get_autocast_dtype("cpu")
                                                                               if torch.is_autocast_enabled("cpu")
                                                                               else None), forward(self, *a, **k))[1])
    with torch.inference_mode():
        _, fp32, _ = m.single_scores(x, "flip")
        _, bf16, sims = m.single_scores(x, "flip", precision="bf16")
    assert seen == [None, None, torch.bfloat16, torch.bfloat16]  # the face and its mirror image alike
    assert fp32.dtype == bf16.dtype == np.float32 and sims.dtype == np.float64
    assert not np.array_equal(fp32, bf16) and np.allclose(fp32, bf16, atol=0.2)


def test_memory_refused_under_init_names_only_the_option_left_to_lower(monkeypatch):
    """`train --init CK --batch-size 200000` said "lower --grid, --dim, --bank-size, --batch-size or --img-size",
    and each of those but the batch size was then refused: --init keeps the checkpoint's model settings."""
    from forgerydet.model import detector
    from forgerydet.model.config import ModelConfig

    monkeypatch.setattr(detector, "available_bytes", lambda device: 2**30)
    with pytest.raises(ForgeryDetError, match=r"GiB free: lower --grid, --dim, --bank-size, --batch-size or --img-size$"):
        detector.check_memory(ModelConfig(), 10**6, torch.device("cpu"))
    with pytest.raises(ForgeryDetError, match=r"GiB free: lower --batch-size \(--init keeps its checkpoint's model "
                                              r"settings\)$"):
        detector.check_memory(ModelConfig(), 10**6, torch.device("cpu"), kept_from="--init")
