"""TODO docstring."""


import pytest

from forgerydet.errors import ForgeryDetError
from tests.helpers import tiny_model


def test_unknown_backbone_is_a_clear_error():
    with pytest.raises(ForgeryDetError, match="unknown backbone"):
        tiny_model(backbone="no_such_net_xyz")
