"""Tiny random models of every backbone family VoP supports (nothing is downloaded), with inputs for them."""

from __future__ import annotations

import torch
from transformers import (
    MetaClip2Config,
    MetaClip2Model,
    Siglip2Config,
    Siglip2Model,
    SiglipConfig,
    SiglipModel,
)

from helpers.clip import tiny_clip, tiny_text_batch


FAMILY_NAMES = ("clip", "metaclip_2", "siglip", "siglip2")
TEXT = {"hidden_size": 32, "intermediate_size": 64, "num_hidden_layers": 2, "num_attention_heads": 4}
VISION = {"hidden_size": 48, "intermediate_size": 96, "num_hidden_layers": 3, "num_attention_heads": 4}
PATCHES = 16  # per frame: 32 px images in 8 px patches, or SigLIP 2 sequences of 16 patches


def tiny_model(family: str, seed: int = 0, attn_implementation: str = "sdpa") -> torch.nn.Module:
    """A randomly initialised tiny dual encoder of `family`, in eval mode, reproducible from `seed`."""
    if family == "clip":
        return tiny_clip(seed=seed, attn_implementation=attn_implementation)
    torch.manual_seed(seed)
    text = {**TEXT, "vocab_size": 99, "max_position_embeddings": 24, "bos_token_id": 96, "eos_token_id": 97}
    text["pad_token_id"] = 98
    if family == "metaclip_2":
        config = MetaClip2Config(
            text_config=text, vision_config={**VISION, "image_size": 32, "patch_size": 8}, projection_dim=24
        )
        model = MetaClip2Model(config)
    elif family == "siglip":
        text["projection_size"] = VISION["hidden_size"]  # SigLIP compares the text head's output with the pooled image
        config = SiglipConfig(text_config=text, vision_config={**VISION, "image_size": 32, "patch_size": 8})
        model = SiglipModel(config)
    elif family == "siglip2":
        text["projection_size"] = VISION["hidden_size"]
        config = Siglip2Config(text_config=text, vision_config={**VISION, "num_patches": PATCHES, "patch_size": 8})
        model = Siglip2Model(config)
    else:
        raise ValueError(f"unknown family {family!r}")
    model.set_attn_implementation(attn_implementation)
    return model.eval()


def text_inputs(family: str, batch_size: int = 3) -> dict[str, torch.Tensor]:
    """Captions as each family's tokenizer gives them: CLIP-like with BOS/EOS and padding, SigLIP padded to length
    without BOS (its processor pads to a fixed length and the model pools the last position)."""
    input_ids, attention_mask = tiny_text_batch(batch_size=batch_size, length=9, pad_last=3)
    if family in ("siglip", "siglip2"):
        input_ids = input_ids.clone()
        input_ids[:, 0] = 5  # no BOS
    return {"input_ids": input_ids, "attention_mask": attention_mask}


def video_inputs(family: str, batch: int = 2, frames: int = 4, seed: int = 1) -> dict[str, torch.Tensor]:
    """Videos `[B, F, ...]` as each family's vision tower takes frames (SigLIP 2: patch sequences with a mask)."""
    generator = torch.Generator().manual_seed(seed)
    if family != "siglip2":
        return {"pixel_values": torch.randn(batch, frames, 3, 32, 32, generator=generator)}
    pixel_values = torch.randn(batch, frames, PATCHES, 3 * 8 * 8, generator=generator)
    # All frames of a video share a shape; the second video is 3 x 4 patches, so 4 of its 16 positions are padding.
    shapes = torch.tensor([[4, 4], [3, 4]])[:batch]
    mask = torch.zeros(batch, frames, PATCHES, dtype=torch.long)
    for video, (height, width) in enumerate(shapes.tolist()):
        mask[video, :, : height * width] = 1
    pixel_values = pixel_values * mask[..., None]
    return {
        "pixel_values": pixel_values,
        "pixel_attention_mask": mask,
        "spatial_shapes": shapes[:, None, :].expand(batch, frames, 2).contiguous(),
    }
