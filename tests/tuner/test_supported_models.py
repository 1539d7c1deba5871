"""Exact trainable parameters per variant and family at base geometry, and the Supported models page that lists them."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
import torch
from peft import get_peft_model
from transformers import (
    CLIPConfig,
    CLIPModel,
    MetaClip2Config,
    MetaClip2Model,
    Siglip2Config,
    Siglip2Model,
    SiglipConfig,
    SiglipModel,
)

import peft_vop


PAGE = Path(__file__).resolve().parents[2] / "docs" / "supported-models.md"
BASE_MODELS = {
    "clip": (CLIPConfig, CLIPModel),
    "metaclip_2": (MetaClip2Config, MetaClip2Model),
    "siglip": (SiglipConfig, SiglipModel),
    "siglip2": (Siglip2Config, Siglip2Model),
}


def _count(family: str, variant: str) -> tuple[int, int]:
    config_class, model_class = BASE_MODELS[family]
    with torch.device("meta"):
        backbone = model_class(config_class())
    model = get_peft_model(backbone, peft_vop.VoPConfig(variant=variant))
    trainable = {name: p.numel() for name, p in model.named_parameters() if p.requires_grad}
    frame_embedding = sum(n for name, n in trainable.items() if "frame_position_embedding" in name)
    return sum(trainable.values()) - frame_embedding, frame_embedding


def _page_table() -> dict[tuple[str, str], tuple[int, int]]:
    rows = re.findall(r"^\| (\w+) \| `([\w+]+)` \| ([\d,]+) \| ([\d,]+|—) \|$", PAGE.read_text(), re.MULTILINE)
    return {
        (family, variant): (int(prompts.replace(",", "")), 0 if embedding == "—" else int(embedding.replace(",", "")))
        for family, variant, prompts, embedding in rows
    }


def test_the_page_lists_every_family_and_variant():
    assert set(_page_table()) == {(family, variant) for family in BASE_MODELS for variant in peft_vop.VARIANTS}
    assert {family.name for family in peft_vop.FAMILIES} == set(BASE_MODELS)


@pytest.mark.parametrize("variant", list(peft_vop.VARIANTS))
@pytest.mark.parametrize("family", list(BASE_MODELS))
def test_trainable_parameters_at_base_geometry_are_what_the_page_says(family, variant):
    assert _count(family, variant) == _page_table()[(family, variant)]
