"""Video input: shapes, frame order, frame-count and image-batch errors, and the fused attention of VoP^F."""

from __future__ import annotations

import pytest
import torch
from helpers.clip import randomize_adapter, tiny_clip, tiny_text_batch
from peft import get_peft_model

import peft_vop


FRAMES = 4


def _model(variant: str, **kwargs):
    if variant.startswith("vop_f"):
        kwargs.setdefault("intra_frame_layers", 2)
    model = get_peft_model(
        tiny_clip(**kwargs.pop("clip", {})), peft_vop.VoPConfig(variant=variant, num_frames=FRAMES, **kwargs)
    )
    return randomize_adapter(model, std=0.3, seed=0)


def _video(batch: int = 2, frames: int = FRAMES) -> torch.Tensor:
    return torch.randn(batch, frames, 3, 32, 32, generator=torch.Generator().manual_seed(5))


def test_video_forward_shapes_and_loss():
    model = _model("vop_f+c")
    input_ids, attention_mask = tiny_text_batch(batch_size=2)
    out = model(input_ids=input_ids, attention_mask=attention_mask, pixel_values=_video(), return_loss=True)
    assert out.logits_per_text.shape == (2, 2) and out.logits_per_image.shape == (2, 2)
    assert out.image_embeds.shape == (2, 24)
    torch.testing.assert_close(out.image_embeds.norm(dim=-1), torch.ones(2))
    logits = out.text_embeds @ out.image_embeds.T * model.get_base_model().logit_scale.exp()
    expected = (
        torch.nn.functional.cross_entropy(logits, torch.arange(2))
        + torch.nn.functional.cross_entropy(logits.T, torch.arange(2))
    ) / 2
    torch.testing.assert_close(out.loss, expected)


@pytest.mark.parametrize("variant", list(peft_vop.VARIANTS))
def test_frame_level_outputs_come_back_per_frame(variant):
    model = _model(variant)
    with torch.no_grad():
        out = model.base_model.model.vision_model(pixel_values=_video(), output_hidden_states=True)
    assert out.last_hidden_state.shape == (2, FRAMES, 17, 48)
    assert out.pooler_output.shape == (2, FRAMES, 48)
    assert len(out.hidden_states) == 4 and all(h.shape == (2, FRAMES, 17, 48) for h in out.hidden_states)
    with torch.no_grad():
        text = model.base_model.model.text_model(*tiny_text_batch(), output_hidden_states=True)
    assert all(h.shape == (2, 7, 32) for h in text.hidden_states)


def test_get_image_features_returns_unit_norm_video_embeddings():
    model = _model("vop")
    with torch.no_grad():
        videos = model.get_image_features(pixel_values=_video(batch=3)).pooler_output
        images = model.get_image_features(pixel_values=_video(batch=3)[:, 0]).pooler_output
    assert videos.shape == (3, 24) and images.shape == (3, 24)
    torch.testing.assert_close(videos.norm(dim=-1), torch.ones(3))
    assert not torch.allclose(images.norm(dim=-1), torch.ones(3))  # images keep CLIP's unnormalised features


@pytest.mark.parametrize("variant", list(peft_vop.VARIANTS))
def test_reversing_the_frames_changes_the_embedding_only_for_video_variants(variant):
    model = _model(variant)
    video = _video()
    with torch.no_grad():
        forward = model.get_image_features(pixel_values=video).pooler_output
        backward = model.get_image_features(pixel_values=video.flip(1)).pooler_output
    if variant == "vop":
        torch.testing.assert_close(forward, backward, atol=1e-6, rtol=1e-6)  # mean pooling is order-blind
    else:
        assert (forward - backward).abs().max() > 1e-3


@pytest.mark.parametrize("variant", ["vop_p", "vop_f", "vop_f+p", "vop_f+c"])
def test_another_frame_count_is_an_error_for_position_and_function_variants(variant):
    model = _model(variant)
    with pytest.raises(ValueError, match=r"num_frames=4 .* got videos of 6 frames"):
        model.get_image_features(pixel_values=_video(frames=6))


def test_context_prompts_take_any_frame_count():
    model = _model("vop_c")
    with torch.no_grad():
        assert model.get_image_features(pixel_values=_video(frames=6)).pooler_output.shape == (2, 24)


@pytest.mark.parametrize("variant", ["vop_p", "vop_c", "vop_f", "vop_f+p", "vop_f+c"])
def test_image_batches_are_refused_by_video_variants(variant):
    model = _model(variant)
    with pytest.raises(ValueError, match=r"must have shape \[B, F, 3, H, W\]; got a 4-D batch"):
        model.get_image_features(pixel_values=_video()[:, 0])


def test_pixel_values_of_other_ranks_are_refused():
    model = _model("vop")
    with pytest.raises(ValueError, match=r"images \[N, 3, H, W\] or videos \[B, F, 3, H, W\]"):
        model.get_image_features(pixel_values=torch.randn(3, 32, 32))


@pytest.mark.parametrize("intra_frame_layers", [0, 3, 5])
def test_intra_frame_layers_must_leave_both_stages(intra_frame_layers):
    if intra_frame_layers == 0:
        with pytest.raises(ValueError, match="intra_frame_layers"):
            peft_vop.VoPConfig(variant="vop_f", intra_frame_layers=0)
        return
    with pytest.raises(ValueError, match=r"`intra_frame_layers` must be in 1\.\.2 .* 3 layers"):
        get_peft_model(tiny_clip(), peft_vop.VoPConfig(variant="vop_f", intra_frame_layers=intra_frame_layers))


def test_layer_lists_beyond_the_tower_depth_are_refused():
    with pytest.raises(ValueError, match=r"`vision_layers` holds layer indices \[3\] .* 3 layers"):
        get_peft_model(tiny_clip(), peft_vop.VoPConfig(vision_layers=[0, 3]))


def test_text_masks_must_be_two_dimensional():
    model = _model("vop")
    input_ids, attention_mask = tiny_text_batch()
    with pytest.raises(ValueError, match="2-D padding mask"):
        model.get_text_features(input_ids=input_ids, attention_mask=attention_mask[:, None, None, :])


def test_inter_frame_attention_uses_the_fused_sdpa_kernel():
    """VoP^F's inter-frame layers must not materialise an [F(1+M)]^2 score matrix where sdpa has a fused kernel."""
    model = _model("vop_f", clip={"vision_layers": 3})
    with torch.no_grad(), torch.profiler.profile(activities=[torch.profiler.ProfilerActivity.CPU]) as profile:
        model.get_image_features(pixel_values=_video())
    names = [event.name for event in profile.events()]
    fused = [n for n in names if n.startswith("aten::_scaled_dot_product_flash_attention")]
    assert len(fused) == 3  # every vision layer, the inter-frame one included
    assert not [n for n in names if n == "aten::_scaled_dot_product_attention_math"]
    assert not [n for n in names if n in ("aten::softmax", "aten::_softmax")]


@pytest.mark.parametrize("variant", list(peft_vop.VARIANTS))
def test_prompt_tokens_reach_the_attention_and_skip_the_mlp(variant):
    """A deep prompt's own output is discarded, so only the attention sees it: the MLP runs on CLIP's tokens."""
    model = _model(variant)
    seen = {}

    def record(name):
        def hook(module, args):
            seen.setdefault(name, []).append(args[0].shape[1])

        return hook

    clip = model.get_base_model()
    for tower in ("vision", "text"):
        for index, layer in enumerate(getattr(clip, f"{tower}_model").encoder.layers):
            layer.self_attn.q_proj.register_forward_pre_hook(record((tower, "attention", index)))
            layer.mlp.register_forward_pre_hook(record((tower, "mlp", index)))
    input_ids, attention_mask = tiny_text_batch(batch_size=2)
    with torch.no_grad():
        model(input_ids=input_ids, attention_mask=attention_mask, pixel_values=_video())
    joint = FRAMES * 17  # VoP^F's inter-frame layers see every frame's 1 + 16 tokens at once
    for index in range(3):
        tokens = joint if variant.startswith("vop_f") and index >= 2 else 17
        assert seen["vision", "attention", index] == [tokens + 8], (index, seen)
        assert seen["vision", "mlp", index] == [tokens], (index, seen)
    for index in range(2):
        assert seen["text", "attention", index] == [7 + 8] and seen["text", "mlp", index] == [7]
