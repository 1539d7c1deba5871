"""Backbone families: what the VoP tuner needs to know about a CLIP-like dual encoder, as data.

Every family VoP supports is a pre-norm transformer with a text tower and a vision tower whose encoder layers
(`tower.encoder.layers[i]`) normalise their input with `layer_norm1` before `self_attn`; the tuner's one mechanism
(`peft_vop.layer`) inserts prompts into that attention and strips them after it. What differs between families is
described here, one `BackboneFamily` each; adding a CLIP-like family means adding one spec (and its tests).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Literal

import torch
from torch import nn
from transformers import (
    CLIPTextModel,
    CLIPVisionModel,
    MetaClip2TextModel,
    MetaClip2VisionModel,
    Siglip2TextModel,
    Siglip2VisionModel,
    SiglipTextModel,
    SiglipVisionModel,
)
from transformers.masking_utils import create_bidirectional_mask, create_causal_mask


def causal_text_mask(config: Any, shape_only: torch.Tensor, padding_mask: torch.Tensor | None) -> Any:
    """CLIP's text mask: causal, padding keys masked (the fourth argument, no KV cache, changed name in 5.24)."""
    return create_causal_mask(config, shape_only, padding_mask, None)


def bidirectional_mask(config: Any, shape_only: torch.Tensor, padding_mask: torch.Tensor | None) -> Any:
    """SigLIP's text mask and every vision mask: each token sees every unmasked key (`None` if none is masked)."""
    return create_bidirectional_mask(config, shape_only, padding_mask)


@dataclass(frozen=True)
class BackboneFamily:
    """How one family of CLIP-like dual encoders differs, as far as VoP is concerned.

    Args:
        name (`str`): the name adapters record (`VoPConfig.backbone_family`).
        text_tower (`type`): transformers' text tower class (holds `embeddings`, `encoder`).
        vision_tower (`type`): transformers' vision tower class.
        leading_tokens (`int`): tokens before the prompts: 1 where sequences start with CLS/BOS (prompts go right
            after it), 0 where they do not (SigLIP: prompts go first).
        first_prompt_norm (`str`, *optional*): vision-tower module applied to layer-0 prompts before the layer's own
            norm, because it normalises the embeddings the prompts join (CLIP's `pre_layrnorm`); `None` for none.
        text_mask (`Callable`): builds the text attention mask of the prompted sequence from a padding mask that
            already has ones for the prompts (causal for CLIP, bidirectional for SigLIP).
        frame_summary (`str`): what VoP^C's context module reads per frame at a layer's input: `"first_token"`
            (the CLS token, as the paper does) or `"mean"` (mean of the frame's tokens, for towers without CLS).
        frame_pooling (`str`): where a video's frame embeddings are averaged: `"projection"` (after the model's
            `visual_projection`) or `"tower"` (the tower's `pooler_output` is already the embedding, e.g. SigLIP's
            attention-pooling head).
        pixel_mask (`str`, *optional*): the vision tower's input that masks padded patches (SigLIP 2's NaFlex
            `pixel_attention_mask`), extended for the prompts; its companion inputs (`spatial_shapes`) are
            flattened with the frames.
        image_dims (`int`): dimensions of one image in `pixel_values` without the batch: 3 for `[3, H, W]`, 2 for
            SigLIP 2's patch sequences `[P, 3*p*p]`.
        loss (`str`): the backbone's own contrastive loss, which `model(..., return_loss=True)` computes over videos
            (`"softmax"`: CLIP's symmetric cross-entropy; `"sigmoid"`: SigLIP's pairwise loss with `logit_bias`).
    """

    name: str
    text_tower: type[nn.Module]
    vision_tower: type[nn.Module]
    leading_tokens: int
    first_prompt_norm: str | None
    text_mask: Callable[[Any, torch.Tensor, torch.Tensor | None], Any]
    frame_summary: Literal["first_token", "mean"]
    frame_pooling: Literal["projection", "tower"]
    pixel_mask: str | None = None
    image_dims: int = 3
    loss: Literal["softmax", "sigmoid"] = "softmax"


CLIP_LIKE = {
    "leading_tokens": 1,
    "first_prompt_norm": "pre_layrnorm",
    "text_mask": causal_text_mask,
    "frame_summary": "first_token",
    "frame_pooling": "projection",
}
SIGLIP_LIKE = {
    "leading_tokens": 0,
    "first_prompt_norm": None,
    "text_mask": bidirectional_mask,
    "frame_summary": "mean",
    "frame_pooling": "tower",
    "loss": "sigmoid",
}
FAMILIES: tuple[BackboneFamily, ...] = (
    BackboneFamily("clip", CLIPTextModel, CLIPVisionModel, **CLIP_LIKE),
    BackboneFamily("metaclip_2", MetaClip2TextModel, MetaClip2VisionModel, **CLIP_LIKE),
    BackboneFamily("siglip", SiglipTextModel, SiglipVisionModel, **SIGLIP_LIKE),
    BackboneFamily(
        "siglip2", Siglip2TextModel, Siglip2VisionModel, pixel_mask="pixel_attention_mask", image_dims=2, **SIGLIP_LIKE
    ),
)
FAMILY_NAMES: tuple[str, ...] = tuple(family.name for family in FAMILIES)


def tower_family(module: nn.Module) -> tuple[BackboneFamily, str] | None:
    """`(family, "text" or "vision")` when `module` is a tower of a supported family, else `None`."""
    for family in FAMILIES:
        if isinstance(module, family.text_tower):
            return family, "text"
        if isinstance(module, family.vision_tower):
            return family, "vision"
    return None


def checkpoint_family(model_name_or_path: str, **kwargs: Any) -> BackboneFamily:
    """The family of a checkpoint, read from its config alone (no weights); refuses a model VoP does not support.

    Args:
        model_name_or_path (`str`): what `transformers.AutoConfig.from_pretrained` accepts.
        kwargs: passed on to `AutoConfig.from_pretrained`.

    Returns:
        [`BackboneFamily`]: the family whose name is the checkpoint's `model_type`.
    """
    from transformers import AutoConfig

    model_type = AutoConfig.from_pretrained(model_name_or_path, **kwargs).model_type
    for family in FAMILIES:
        if family.name == model_type:
            return family
    raise ValueError(
        f"`model_name_or_path` {str(model_name_or_path)!r} is a {model_type!r} checkpoint; VoP supports the dual "
        f"encoders {', '.join(repr(name) for name in FAMILY_NAMES)} (CLIPModel, MetaClip2Model, SiglipModel, "
        "Siglip2Model)."
    )


def load_dual_encoder(model_name_or_path: str, **kwargs: Any) -> nn.Module:
    """Load a checkpoint of any supported family with its own model class (`CLIPModel`, `MetaClip2Model`,
    `SiglipModel` or `Siglip2Model`, as `transformers.AutoModel` picks it).

    Args:
        model_name_or_path (`str`): a local checkpoint directory or a Hub id.
        kwargs: passed on to `AutoModel.from_pretrained` (e.g. `dtype`).

    Returns:
        `torch.nn.Module`: the model; a checkpoint of another kind raises `ValueError` before weights are read.
    """
    from transformers import AutoModel

    checkpoint_family(model_name_or_path)
    return AutoModel.from_pretrained(model_name_or_path, **kwargs)


def model_family(model: nn.Module) -> BackboneFamily:
    """The family of a dual encoder (a `PeftModel` over one is looked through), from its `config.model_type`."""
    base = model.get_base_model() if hasattr(model, "get_base_model") else model
    model_type = getattr(getattr(base, "config", None), "model_type", None)
    for family in FAMILIES:
        if family.name == model_type:
            return family
    raise TypeError(f"`model` must be a dual encoder of {FAMILY_NAMES}; got {type(base).__name__} ({model_type!r}).")


def patch_sequences(frames: torch.Tensor, patch_size: int) -> torch.Tensor:
    """Cut frames `[..., 3, H, W]` into SigLIP 2's patch sequences `[..., (H/p)*(W/p), p*p*3]`, in the order of
    `Siglip2ImageProcessor` (rows of patches, each patch flattened as `[p, p, 3]`)."""
    *lead, channels, height, width = frames.shape
    if height % patch_size or width % patch_size:
        raise ValueError(
            f"SigLIP 2 frames must be a multiple of its patch size {patch_size} high and wide; got {height} x {width}."
        )
    rows, columns = height // patch_size, width // patch_size
    # [..., 3, H, W] -> [..., 3, rows, p, columns, p] -> [..., rows, columns, p, p, 3] -> [..., rows*columns, p*p*3]
    patches = frames.reshape(*lead, channels, rows, patch_size, columns, patch_size)
    return patches.movedim(-5, -1).transpose(-4, -3).reshape(*lead, rows * columns, patch_size * patch_size * channels)


def vision_inputs(
    model: nn.Module,
    pixel_values: torch.Tensor,
    pixel_attention_mask: torch.Tensor | None = None,
    spatial_shapes: torch.Tensor | None = None,
) -> dict[str, torch.Tensor]:
    """The vision inputs of `model.get_image_features` for normalised frames `[..., 3, H, W]`, or for SigLIP 2 patch
    sequences that already come with their mask and shapes.

    Every family but SigLIP 2 takes the frames as they are. SigLIP 2's vision tower takes patch sequences: frames of
    one fixed size (as a fixed-resolution image processor makes them) are cut into `patch_size` patches
    ([`patch_sequences`]), with a mask of ones (no padded patches) and each frame's patch grid as `spatial_shapes`.
    Patch sequences made by a NaFlex image processor (`FramePreprocessor.patch_inputs`: every video on its own grid,
    padded to `max_num_patches`) are passed on with their `pixel_attention_mask` and `spatial_shapes`.

    Args:
        model (`torch.nn.Module`): the dual encoder (or a `PeftModel` over one).
        pixel_values (`torch.FloatTensor`): frames `[..., 3, H, W]`, e.g. videos `[B, F, 3, H, W]`; or SigLIP 2
            patch sequences `[..., N, 3*p*p]` with the two arguments below.
        pixel_attention_mask (`torch.LongTensor` of shape `[..., N]`, *optional*): 1 for real patches, 0 for padding.
        spatial_shapes (`torch.LongTensor` of shape `[..., 2]`, *optional*): each frame's patch grid (rows, columns).

    Returns:
        `dict`: `pixel_values` (and for SigLIP 2 `pixel_attention_mask` `[..., N]`, `spatial_shapes` `[..., 2]`).
    """
    if (pixel_attention_mask is None) != (spatial_shapes is None):
        raise ValueError("`pixel_attention_mask` and `spatial_shapes` go together; give both or neither.")
    if pixel_attention_mask is not None:
        return {
            "pixel_values": pixel_values,
            "pixel_attention_mask": pixel_attention_mask,
            "spatial_shapes": spatial_shapes,
        }
    base = model.get_base_model() if hasattr(model, "get_base_model") else model
    if getattr(getattr(base, "config", None), "model_type", None) != "siglip2":  # the one family taking patches
        return {"pixel_values": pixel_values}
    patch = base.config.vision_config.patch_size
    patches = patch_sequences(pixel_values, patch)
    lead, (height, width) = pixel_values.shape[:-3], pixel_values.shape[-2:]
    mask = torch.ones(*lead, patches.shape[-2], dtype=torch.long, device=pixel_values.device)
    shapes = torch.tensor([height // patch, width // patch], device=pixel_values.device).expand(*lead, 2).contiguous()
    return {"pixel_values": patches, "pixel_attention_mask": mask, "spatial_shapes": shapes}


def embedding_size(config: Any) -> int:
    """The size of a dual encoder's joint embedding, from its config: `projection_dim` for CLIP-like models, the
    vision tower's width for SigLIP-like ones (their embeddings are the towers' heads, without a projection)."""
    projection_dim = getattr(config, "projection_dim", None)
    return projection_dim if projection_dim is not None else config.vision_config.hidden_size
