"""The face encoder (model/backbone.py): backbone names, token shapes, channels-last storage."""


import pytest

from forgerydet.errors import ForgeryDetError
from tests.helpers import tiny_model


def test_unknown_backbone_is_a_clear_error():
    with pytest.raises(ForgeryDetError, match="unknown backbone"):
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
