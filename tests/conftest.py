"""Shared fixtures. The helpers they use live in the `helpers` package (`tests/helpers/`)."""

from __future__ import annotations

import pytest
from helpers.clip import tiny_clip
from helpers.tiny_checkpoint import tiny_image_processor
from transformers import CLIPModel

from peft_vop.data import FramePreprocessor


@pytest.fixture
def clip_model() -> CLIPModel:
    return tiny_clip()


@pytest.fixture(scope="module")
def preprocessor() -> FramePreprocessor:
    """The frame preprocessor of the tiny checkpoint's image processor."""
    return FramePreprocessor.from_image_processor(tiny_image_processor())
