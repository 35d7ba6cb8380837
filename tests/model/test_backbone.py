"""The face encoder (model/backbone.py): backbone names, token shapes, channels-last storage."""


import pytest

from forgerydet.errors import ForgeryDetError
from tests.helpers import randomise_batchnorm_statistics, tiny_model


def test_unknown_backbone_is_a_clear_error():
    with pytest.raises(ForgeryDetError, match="backbone=.* must be a timm model name"):
        tiny_model(backbone="no_such_net_xyz")


def test_encoder_stores_convolutions_channels_last_and_matches_nchw():
    import copy

    import torch
    import torch.nn.functional as F

    torch.manual_seed(0)
    model = tiny_model().eval()
    convs = [p for p in model.encoder.parameters() if p.ndim == 4]
    assert convs and all(p.is_contiguous(memory_format=torch.channels_last) for p in convs)
    keys = [p for p in model.key_encoder.parameters() if p.ndim == 4]
    assert all(p.is_contiguous(memory_format=torch.channels_last) for p in keys)
    # the same weights in NCHW, run without the channels-last input conversion
    ref = copy.deepcopy(model.encoder).to(memory_format=torch.contiguous_format)
    assert not all(p.is_contiguous(memory_format=torch.channels_last) for p in ref.parameters() if p.ndim == 4)
    x = torch.rand(3, 3, 64, 64)
    with torch.no_grad():
        got = model.encoder(x)
        f = ref.backbone.forward_features(x)
        want = F.normalize(ref.pool(ref.proj(f)).flatten(2).transpose(1, 2), dim=-1)
    assert torch.allclose(got, want, atol=1e-5)
    # loading a (contiguous) state dict keeps the layout: checkpoints and EMA updates do not undo it
    other = tiny_model()
    other.load_state_dict({k: v.contiguous() for k, v in model.state_dict().items()})
    assert all(p.is_contiguous(memory_format=torch.channels_last) for p in other.encoder.parameters() if p.ndim == 4)


@pytest.mark.parametrize("backbone", ["test_efficientnet", "resnet10t"])
def test_folding_batchnorm_into_convolutions_keeps_the_tokens(backbone):
    import copy

    import torch

    torch.manual_seed(0)
    model = tiny_model(backbone=backbone).eval()
    n_bn = randomise_batchnorm_statistics(model.encoder)
    x = torch.rand(3, 3, 64, 64)
    plain = copy.deepcopy(model.encoder)
    folded = model.encoder.fold_batchnorm()
    assert folded == n_bn > 0  # in these nets every BatchNorm follows a convolution
    assert not any(isinstance(m, torch.nn.BatchNorm2d) for m in model.encoder.modules())
    assert all(p.is_contiguous(memory_format=torch.channels_last) for p in model.encoder.parameters() if p.ndim == 4)
    with torch.no_grad():
        want, got = plain(x), model.encoder(x)
    assert (got - want).abs().max().item() < 1e-5
    # the key encoder, whose fingerprint banks and references carry, is not touched
    assert any(isinstance(m, torch.nn.BatchNorm2d) for m in model.key_encoder.modules())
    with pytest.raises(ValueError, match="inference"):
        tiny_model(backbone=backbone).train().encoder.fold_batchnorm()


def test_folding_is_refused_where_a_convolution_output_is_also_used_elsewhere():
    import torch
    import torch.nn as nn

    from forgerydet.model.backbone import fold_batchnorm

    class Skip(nn.Module):  # y = bn(conv(x)) + conv(x): folding bn into conv would change the second term
        num_features = 8

        def __init__(self):
            super().__init__()
            self.conv, self.bn = nn.Conv2d(3, 8, 3, padding=1), nn.BatchNorm2d(8)

        def forward_features(self, x):
            c = self.conv(x)
            return self.bn(c) + c

        forward = forward_features

    torch.manual_seed(0)
    skip = Skip().eval()
    randomise_batchnorm_statistics(skip)
    x = torch.rand(2, 3, 16, 16)
    # the module-level function cannot see the second use: it folds, and the output changes
    changed = Skip().eval()
    changed.load_state_dict(skip.state_dict())
    assert fold_batchnorm(changed, x) == 1
    with torch.no_grad():
        assert (changed(x) - skip(x)).abs().max().item() > 1e-2
    # the encoder compares before and after, and keeps its backbone as it was
    model = tiny_model(backbone="resnet10t").eval()
    model.encoder.backbone = skip
    model.encoder.proj = nn.Conv2d(8, model.encoder.proj.out_channels, 1)
    assert model.encoder.fold_batchnorm() == 0
    assert model.encoder.backbone is skip and isinstance(skip.bn, nn.BatchNorm2d)
