"""The training loss is the backbone's own: CLIP's symmetric softmax loss, SigLIP's sigmoid loss, as the VoP model
computes it."""

from __future__ import annotations

import pytest
import torch
from accelerate import Accelerator
from helpers.clip import tiny_clip, tiny_text_batch
from peft import get_peft_model

import peft_vop
from peft_vop.training import VideoTextEncoder, gather_with_grad, symmetric_contrastive_loss


def test_loss_matches_the_vop_models_own_loss():
    model = get_peft_model(tiny_clip(), peft_vop.VoPConfig(variant="vop_c", num_frames=4))
    input_ids, attention_mask = tiny_text_batch(batch_size=3)
    pixel_values = torch.randn(3, 4, 3, 32, 32, generator=torch.Generator().manual_seed(0))
    expected = model(
        input_ids=input_ids, attention_mask=attention_mask, pixel_values=pixel_values, return_loss=True
    ).loss
    encoder = VideoTextEncoder(model)
    video_embeds, text_embeds = encoder(input_ids=input_ids, attention_mask=attention_mask, pixel_values=pixel_values)
    loss = symmetric_contrastive_loss(text_embeds, video_embeds, encoder.logit_scale)
    torch.testing.assert_close(loss, expected)
    assert not encoder.logit_scale.requires_grad  # frozen, read from the base model


def test_loss_is_low_for_matching_pairs_and_symmetric():
    embeds = torch.eye(4)
    scale = torch.tensor(100.0).log()
    assert symmetric_contrastive_loss(embeds, embeds, scale) < 1e-6
    shuffled = embeds[[1, 0, 2, 3]]
    torch.testing.assert_close(
        symmetric_contrastive_loss(shuffled, embeds, scale), symmetric_contrastive_loss(embeds, shuffled, scale)
    )
    with pytest.raises(ValueError, match="must both have shape"):
        symmetric_contrastive_loss(torch.ones(3, 4), torch.ones(2, 4), scale)


def test_gather_is_the_identity_on_one_process():
    tensor = torch.randn(3, 2, requires_grad=True)
    assert gather_with_grad(tensor, Accelerator(cpu=True)) is tensor


@pytest.mark.parametrize("family", ["siglip", "siglip2"])
def test_sigmoid_families_train_with_their_models_own_sigmoid_loss(family):
    from helpers.families import text_inputs, tiny_model

    from peft_vop.families import vision_inputs
    from peft_vop.training import sigmoid_contrastive_loss

    model = get_peft_model(tiny_model(family), peft_vop.VoPConfig(variant="vop_c", num_frames=4))
    text = text_inputs(family, batch_size=3)
    frames = torch.randn(3, 4, 3, 32, 32, generator=torch.Generator().manual_seed(0))  # [B, F, 3, H, W]
    expected = model(**text, **vision_inputs(model, frames), return_loss=True).loss
    encoder = VideoTextEncoder(model)
    video_embeds, text_embeds = encoder(**text, pixel_values=frames)  # SigLIP 2: cut into patches by the encoder
    base = model.get_base_model()
    assert encoder.logit_bias is base.logit_bias and not encoder.logit_bias.requires_grad
    loss = sigmoid_contrastive_loss(text_embeds, video_embeds, encoder.logit_scale, encoder.logit_bias)
    torch.testing.assert_close(loss, expected)


def test_softmax_families_have_no_logit_bias():
    encoder = VideoTextEncoder(get_peft_model(tiny_clip(), peft_vop.VoPConfig(variant="vop_c", num_frames=4)))
    assert encoder.logit_bias is None
