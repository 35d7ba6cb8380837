"""ModelConfig validation (model/config.py): a bad value is named in one clear error."""


import pytest

from forgerydet.errors import ForgeryDetError
from forgerydet.model.config import ModelConfig


def test_config_validation_names_bad_value():
    with pytest.raises(ForgeryDetError, match="heads=3"):
        ModelConfig(dim=32, heads=3)
    with pytest.raises(ForgeryDetError, match="momentum=1.5"):
        ModelConfig(momentum=1.5)
