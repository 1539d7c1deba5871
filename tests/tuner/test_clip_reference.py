"""CLIP outputs stay what they were: stored embeddings of a seeded tiny-CLIP adapter, for every variant.

`fixtures/clip_reference.safetensors` was written by `fixtures/make_clip_reference.py` from the tuner before VoP
parameter names carried the `vop_` prefix and before the tuner served other backbone families. Loading those
weights (with their old key names) into today's tuner must give the same embeddings bit for bit. Float kernels may
round differently on another CPU instruction set, so the exact check applies where the fixture's CPU capability
matches; elsewhere the embeddings must agree to 1e-6.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from fixtures.make_clip_reference import embeddings, reference_config
from helpers.clip import tiny_clip
from peft import get_peft_model
from peft.utils import set_peft_model_state_dict
from safetensors import safe_open

import peft_vop


FIXTURE = Path(__file__).resolve().parent / "fixtures" / "clip_reference.safetensors"


def _fixture(variant: str) -> tuple[dict[str, torch.Tensor], dict[str, torch.Tensor], dict[str, str]]:
    adapter, outputs = {}, {}
    with safe_open(FIXTURE, framework="pt") as handle:
        for key in handle.keys():  # noqa: SIM118 (safe_open is not iterable)
            name, _, rest = key.partition("/")
            if name != variant:
                continue
            if rest.startswith("adapter/"):
                adapter[rest.removeprefix("adapter/")] = handle.get_tensor(key)
            else:
                outputs[rest] = handle.get_tensor(key)
        metadata = handle.metadata()
    return adapter, outputs, metadata


def test_the_fixture_covers_every_variant():
    with safe_open(FIXTURE, framework="pt") as handle:
        assert json.loads(handle.metadata()["variants"]) == list(peft_vop.VARIANTS)


@pytest.mark.parametrize("variant", list(peft_vop.VARIANTS))
def test_clip_embeddings_equal_the_stored_reference(variant):
    adapter, expected, metadata = _fixture(variant)
    model = get_peft_model(tiny_clip(seed=0), reference_config(variant)).eval()
    result = set_peft_model_state_dict(model, adapter)
    assert not result.unexpected_keys
    assert not [key for key in result.missing_keys if ".vop." in key]
    text, video = embeddings(model)
    if metadata["cpu_capability"] == torch.backends.cpu.get_cpu_capability():
        assert torch.equal(text, expected["text_embeds"]), (text - expected["text_embeds"]).abs().max()
        assert torch.equal(video, expected["video_embeds"]), (video - expected["video_embeds"]).abs().max()
    else:
        torch.testing.assert_close(text, expected["text_embeds"], atol=1e-6, rtol=0)
        torch.testing.assert_close(video, expected["video_embeds"], atol=1e-6, rtol=0)
