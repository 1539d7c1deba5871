"""`VoPConfig`: variant presets, orthogonal options, validation, and exact parameter counts at ViT-B/32."""

from __future__ import annotations

import pytest
import torch
from helpers.clip import tiny_clip, tiny_clip_config
from peft import PeftConfig, get_peft_model
from transformers import CLIPConfig, CLIPModel

import peft_vop
from peft_vop.config import PAPER_TRAINABLE_PARAMETERS


# (prompts and context module, frame position embedding) at CLIPConfig() defaults, 12 frames, K_s = 8.
VIT_B32_COUNTS = {
    "vop": (122_880, 0),
    "vop_p": (528_384, 0),
    "vop_c": (14_257_152, 0),
    "vop_f": (122_880, 9_216),
    "vop_f+p": (393_216, 9_216),
    "vop_f+c": (14_269_440, 9_216),
}


def _vit_b32_on_meta() -> CLIPModel:
    with torch.device("meta"):
        return CLIPModel(CLIPConfig())


@pytest.mark.parametrize("variant", list(VIT_B32_COUNTS))
def test_trainable_parameters_at_vit_b32_are_exact(variant, capsys):
    model = get_peft_model(_vit_b32_on_meta(), peft_vop.VoPConfig(variant=variant))
    trainable = {name: p.numel() for name, p in model.named_parameters() if p.requires_grad}
    frame_embedding = sum(n for name, n in trainable.items() if "frame_position_embedding" in name)
    assert (sum(trainable.values()) - frame_embedding, frame_embedding) == VIT_B32_COUNTS[variant]
    model.print_trainable_parameters()
    assert PAPER_TRAINABLE_PARAMETERS[variant] in capsys.readouterr().out


def test_text_only_and_vision_only_ablations_are_prompt_lengths_of_zero():
    text_only = get_peft_model(_vit_b32_on_meta(), peft_vop.VoPConfig(vision_prompt_length=0))
    vision_only = get_peft_model(_vit_b32_on_meta(), peft_vop.VoPConfig(text_prompt_length=0))
    assert text_only.get_nb_trainable_parameters()[0] == 12 * 8 * 512
    assert vision_only.get_nb_trainable_parameters()[0] == 12 * 8 * 768


@pytest.mark.parametrize(
    ("options", "variant"),
    [
        ({}, "vop"),
        ({"frame_prompts": "position"}, "vop_p"),
        ({"frame_prompts": "context", "context_module": "lstm"}, "vop_c"),
        ({"intra_frame_layers": 6}, "vop_f"),
        ({"frame_prompts": "position", "intra_frame_layers": 8}, "vop_f+p"),
        ({"frame_prompts": "context", "intra_frame_layers": 4}, "vop_f+c"),
    ],
)
def test_options_compose_into_the_variant_they_describe(options, variant):
    config = peft_vop.VoPConfig(**options)
    assert config.variant == variant
    assert peft_vop.VoPConfig(**config.to_dict()).to_dict() == config.to_dict()


def test_variant_presets_fill_unset_options():
    config = peft_vop.VoPConfig(variant="vop_f+c")
    assert (config.frame_prompts, config.intra_frame_layers, config.context_module) == ("context", None, "bilstm")
    assert config.resolved_intra_frame_layers(12) == 8  # the paper's K_s at ViT-B depth
    assert peft_vop.VoPConfig(variant="vop_f", intra_frame_layers=4).resolved_intra_frame_layers(12) == 4
    assert peft_vop.VoPConfig(variant="vop_p").resolved_intra_frame_layers(12) is None
    assert config.needs_video and config.fixed_num_frames
    assert not peft_vop.VoPConfig(variant="vop_c").fixed_num_frames


def test_config_round_trips_through_json(tmp_path):
    config = peft_vop.VoPConfig(variant="vop_f+p", num_frames=8, vision_layers=[3, 1], init_std=0.01)
    config.save_pretrained(tmp_path)
    loaded = PeftConfig.from_pretrained(tmp_path)
    assert isinstance(loaded, peft_vop.VoPConfig)
    assert loaded.to_dict() == config.to_dict() and loaded.vision_layers == [1, 3]


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"variant": "vop_x"}, r"`variant` must be one of .*'vop_f\+c'.* got 'vop_x'"),
        ({"variant": "vop_p", "frame_prompts": "context"}, r"`frame_prompts='context'` contradicts `variant='vop_p'`"),
        ({"variant": "vop", "intra_frame_layers": 8}, r"`intra_frame_layers=8` only applies to"),
        ({"frame_prompts": "temporal"}, r"`frame_prompts` must be one of \['none', 'position', 'context'\]"),
        ({"context_module": "gru"}, r"`context_module` must be one of \['bilstm', 'lstm', 'transformer'\]; got 'gru'"),
        ({"num_frames": 0}, r"`num_frames` must be at least 1; got 0"),
        ({"text_prompt_length": -1}, r"`text_prompt_length` must be a non-negative integer; got -1"),
        ({"vision_prompt_length": 2.5}, r"`vision_prompt_length` must be a non-negative integer; got 2.5"),
        ({"init_std": 0}, r"`init_std` must be a positive finite number; got 0"),
        ({"init_std": float("inf")}, r"`init_std` must be a positive finite number; got inf"),
        ({"init_std": float("nan")}, r"`init_std` must be a positive finite number; got nan"),
        ({"intra_frame_layers": 0}, r"`intra_frame_layers` must be None or an integer >= 1"),
        ({"variant": "vop_p", "video_prompt_length": 9}, r"`video_prompt_length` \(9\) cannot exceed"),
        ({"variant": "vop_c", "video_prompt_length": 0}, r"`video_prompt_length` must be at least 1"),
        ({"text_layers": [1, 1]}, r"`text_layers` must hold distinct non-negative layer indices"),
        ({"vision_layers": []}, r"`vision_layers` must be None \(all layers\) or a non-empty list"),
        ({"vision_layers": "0,1"}, r"`vision_layers` must be None \(all layers\) or a list of layer indices"),
        ({"vision_layers": 5}, r"`vision_layers` must be None \(all layers\) or a list of layer indices .*got 5"),
    ],
)
def test_invalid_values_raise_naming_the_field(options, message):
    with pytest.raises(ValueError, match=message):
        peft_vop.VoPConfig(**options)


@pytest.mark.parametrize(("depth", "split"), [(12, 8), (4, 3), (3, 2), (2, 1), (24, 16)])
def test_function_specific_variants_split_any_depth_at_two_thirds(depth, split):
    clip = CLIPModel(tiny_clip_config(vision_layers=depth))
    model = get_peft_model(clip, peft_vop.VoPConfig(variant="vop_f+p", num_frames=2))
    plan = clip.vision_model.vop.plans["default"]
    assert plan.intra_frame_layers == split
    video = torch.randn(1, 2, 3, 32, 32)
    with torch.no_grad():
        assert model.get_image_features(pixel_values=video).pooler_output.shape == (1, 24)


def test_pieces_with_nothing_to_prompt_get_no_parameter():
    """No zero-element parameters: they would be trained and saved but never get a gradient."""
    vision_only = get_peft_model(tiny_clip(), peft_vop.VoPConfig(text_prompt_length=0))
    only_intra = get_peft_model(
        tiny_clip(), peft_vop.VoPConfig(variant="vop_f", vision_layers=[0], intra_frame_layers=1, num_frames=2)
    )
    all_context = get_peft_model(tiny_clip(), peft_vop.VoPConfig(variant="vop_c", video_prompt_length=8))
    for model in (vision_only, only_intra, all_context):
        assert all(parameter.numel() for parameter in model.parameters())
    assert not any("text_model" in name for name, _ in vision_only.named_parameters() if ".vop." in name)
    assert "default" not in only_intra.get_base_model().vision_model.vop.vop_inter_frame_prompts
    assert "default" not in all_context.get_base_model().vision_model.vop.vop_prompts
    video = torch.randn(1, 2, 3, 32, 32)
    with torch.no_grad():  # and each still runs
        vision_only(input_ids=torch.tensor([[96, 5, 97]]), pixel_values=video)
        only_intra.get_image_features(pixel_values=video)
        all_context.get_image_features(pixel_values=video)


def test_models_without_clip_towers_are_refused():
    with pytest.raises(
        ValueError, match=r"VoP adapts the towers of CLIP-like dual encoders \(CLIPTextModel / .*Siglip2"
    ):
        get_peft_model(torch.nn.Sequential(torch.nn.Linear(2, 2)), peft_vop.VoPConfig())
