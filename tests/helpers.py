"""Tiny models for tests: timm's test_efficientnet at 64 px, small token dims, a small bank."""

from __future__ import annotations

from forgerydet.config import ModelConfig
from forgerydet.model import Detector

TINY = dict(backbone="test_efficientnet", pretrained="none", img_size=64, dim=32, grid=4, heads=4, bank_size=37, topk=2)


def tiny_config(**kw) -> ModelConfig:
    return ModelConfig(**{**TINY, **kw})


def tiny_model(**kw) -> Detector:
    return Detector(tiny_config(**kw))
