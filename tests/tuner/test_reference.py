"""The hooked VoP model equals a hook-free computation of the method, for every variant."""

from __future__ import annotations

import pytest
import torch
from helpers.clip import tiny_clip, tiny_text_batch
from peft import get_peft_model
from vop_reference import text_features, video_features

import peft_vop


FRAMES = 4


def _video(batch: int = 2, frames: int = FRAMES, seed: int = 1) -> torch.Tensor:
    return torch.randn(batch, frames, 3, 32, 32, generator=torch.Generator().manual_seed(seed))


def _randomize(model) -> None:
    # Larger-than-init values make every prompt matter in the comparison.
    with torch.no_grad():
        for name, parameter in model.named_parameters():
            if parameter.requires_grad:
                parameter.normal_(std=0.5, generator=torch.Generator().manual_seed(hash(name) % 2**31))


@pytest.mark.parametrize("attn", ["eager", "sdpa", "flex_attention"])
@pytest.mark.parametrize("text_layers", [None, [1]])
def test_text_prompts_match_reference(attn, text_layers):
    clip = tiny_clip(attn_implementation=attn)
    model = get_peft_model(clip, peft_vop.VoPConfig(text_layers=text_layers, text_prompt_length=3))
    _randomize(model)
    input_ids, attention_mask = tiny_text_batch(batch_size=3, length=9, pad_last=3)
    holder = clip.text_model.vop
    rows = iter(holder.vop_prompts["default"])
    prompts = [next(rows) if text_layers is None or i in text_layers else None for i in range(2)]
    with torch.no_grad():
        expected = text_features(clip, input_ids, attention_mask, prompts)
        actual = model.get_text_features(input_ids=input_ids, attention_mask=attention_mask).pooler_output
    torch.testing.assert_close(actual, expected, atol=1e-5, rtol=1e-5)


def test_padded_text_batch_equals_per_sample_runs():
    model = get_peft_model(tiny_clip(), peft_vop.VoPConfig())
    _randomize(model)
    input_ids, attention_mask = tiny_text_batch(batch_size=4, length=9, pad_last=4)
    with torch.no_grad():
        batched = model.get_text_features(input_ids=input_ids, attention_mask=attention_mask).pooler_output
        for row in range(4):
            used = int(attention_mask[row].sum())
            single = model.get_text_features(
                input_ids=input_ids[row : row + 1, :used], attention_mask=attention_mask[row : row + 1, :used]
            ).pooler_output
            torch.testing.assert_close(batched[row : row + 1], single, atol=1e-5, rtol=1e-5)


def _vision_reference(clip, config, video):
    holder = clip.vision_model.vop
    plan = holder.plans["default"]
    layers = len(clip.vision_model.encoder.layers)
    shared = [None] * layers
    position = [None] * layers if config.frame_prompts == "position" else None
    for index, row in plan.prompt_rows.items():
        if plan.shared_prompt_length:
            shared[index] = holder.vop_prompts["default"][row]
        if position is not None:
            position[index] = holder.vop_position_prompts["default"][row]
    kwargs = {}
    if config.frame_prompts == "context":
        generator = holder.vop_context_module["default"]
        kwargs.update(
            context_lstm=generator.context,
            context_projection=generator.projection,
            context_prompts=config.video_prompt_length,
            context_layers=list(plan.prompt_rows),
        )
    if config.intra_frame_layers is not None:
        inter = range(config.intra_frame_layers, layers)
        kwargs.update(
            intra_frame_layers=config.intra_frame_layers,
            video_prompts=[
                holder.vop_inter_frame_prompts["default"][plan.inter_frame_rows[i]]
                if i in plan.inter_frame_rows
                else None
                for i in inter
            ],
            frame_position=holder.vop_frame_position_embedding["default"],
        )
    return video_features(clip, video, shared=shared, position=position, **kwargs)


VISION_CASES = {
    "vop": {"variant": "vop"},
    "vop_p": {"variant": "vop_p"},
    "vop_c": {"variant": "vop_c"},
    "vop_f": {"variant": "vop_f", "intra_frame_layers": 2},
    "vop_f+p": {"variant": "vop_f+p", "intra_frame_layers": 1},
    "vop_f+c": {"variant": "vop_f+c", "intra_frame_layers": 2},
    "vop_f K_s=1 subset": {"variant": "vop_f", "intra_frame_layers": 1, "vision_layers": [0, 2]},
    "vop_p subset": {"variant": "vop_p", "vision_layers": [1, 2], "vision_prompt_length": 5, "video_prompt_length": 2},
    "vision-only vop_c": {"variant": "vop_c", "text_prompt_length": 0, "vision_prompt_length": 4},
}


@pytest.mark.parametrize("attn", ["eager", "sdpa"])
@pytest.mark.parametrize("case", list(VISION_CASES))
def test_video_prompts_match_reference(case, attn):
    config = peft_vop.VoPConfig(num_frames=FRAMES, **VISION_CASES[case])
    clip = tiny_clip(attn_implementation=attn)
    model = get_peft_model(clip, config)
    _randomize(model)
    video = _video()
    with torch.no_grad():
        expected = _vision_reference(clip, config, video)
        actual = model.get_image_features(pixel_values=video).pooler_output
    assert actual.shape == (2, 24)
    torch.testing.assert_close(actual, expected, atol=2e-5, rtol=2e-5)


def test_plain_vop_on_images_matches_single_frame_videos():
    model = get_peft_model(tiny_clip(), peft_vop.VoPConfig())
    _randomize(model)
    video = _video(batch=3, frames=1)
    with torch.no_grad():
        images = model.get_image_features(pixel_values=video[:, 0]).pooler_output
        videos = model.get_image_features(pixel_values=video).pooler_output
    torch.testing.assert_close(torch.nn.functional.normalize(images, dim=-1), videos, atol=1e-6, rtol=1e-6)


def test_zero_length_prompts_reproduce_the_base_bit_for_bit():
    base = tiny_clip()
    model = get_peft_model(tiny_clip(), peft_vop.VoPConfig(text_prompt_length=0, vision_prompt_length=0))
    input_ids, attention_mask = tiny_text_batch()
    images = _video(frames=1)[:, 0]
    with torch.no_grad():
        expected = base(input_ids=input_ids, attention_mask=attention_mask, pixel_values=images)
        actual = model(input_ids=input_ids, attention_mask=attention_mask, pixel_values=images)
    assert torch.equal(actual.logits_per_text, expected.logits_per_text)
    assert torch.equal(actual.text_embeds, expected.text_embeds)
    assert torch.equal(actual.image_embeds, expected.image_embeds)


def test_flash_attention_gets_the_extended_padding_mask():
    """flash-attention takes CLIP's causal mask as `is_causal` plus a 2-D padding mask; the prompts extend it."""
    clip = tiny_clip()
    model = get_peft_model(clip, peft_vop.VoPConfig(text_prompt_length=3))
    clip.text_model.config._attn_implementation = "flash_attention_2"
    input_ids, attention_mask = tiny_text_batch(batch_size=2, length=6, pad_last=2)
    _, kwargs = clip.text_model.vop._before_tower(
        clip.text_model, (), {"input_ids": input_ids, "attention_mask": attention_mask}
    )
    expected = torch.tensor([[1, 1, 1, 1, 1, 1, 1, 1, 1], [1, 1, 1, 1, 1, 1, 1, 0, 0]], dtype=torch.bool)
    assert torch.equal(kwargs["vop_call"].attention_mask, expected)
    _, kwargs = clip.text_model.vop._before_tower(clip.text_model, (input_ids[:1], attention_mask[:1]), {})
    assert kwargs["vop_call"].attention_mask is None  # no padding: flash runs plain causal attention
    assert model.active_adapters == ["default"]
