"""A hook-free VoP forward for every backbone family, written from the method description and the families' papers.

Nothing here uses peft_vop's hooks or transformers' attention/mask code: encoder layers are recomputed from their
weights with explicit additive masks, prompts are placed where each family puts them (after CLS/BOS for CLIP and
MetaCLIP 2, first for SigLIP and SigLIP 2, which have none), and frames are pooled the family's way.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from vop_reference import encoder_layer


SIGLIP_LIKE = ("siglip", "siglip2")


def _additive(allowed: torch.Tensor) -> torch.Tensor:
    """`[N, Q, K]` booleans -> `[N, 1, Q, K]` additive mask."""
    return torch.zeros(allowed.shape, dtype=torch.float32).masked_fill(~allowed, float("-inf"))[:, None]


def _insert(hidden, prompts, lead):
    return torch.cat([hidden[:, :lead], prompts, hidden[:, lead:]], dim=1)


def _ones_at(mask, count, lead):
    return torch.cat([mask[:, :lead], mask.new_ones(mask.shape[0], count), mask[:, lead:]], dim=1)


def text_embeddings(family, model, input_ids, attention_mask, prompts):
    """Unnormalised text embeddings with `prompts[i]` (`[P, D]` or None) in text layer i."""
    text = model.text_model
    lead = 0 if family in SIGLIP_LIKE else 1
    hidden = text.embeddings(input_ids=input_ids)
    batch = input_ids.shape[0]
    for layer, layer_prompts in zip(text.encoder.layers, prompts):
        count = 0 if layer_prompts is None else layer_prompts.shape[0]
        if count:
            hidden = _insert(hidden, layer_prompts.expand(batch, -1, -1), lead)
        length = hidden.shape[1]
        keys = _ones_at(attention_mask, count, lead).bool()
        allowed = keys[:, None, :].expand(batch, length, length)
        if family not in SIGLIP_LIKE:
            allowed = allowed & torch.ones(length, length, dtype=torch.bool).tril()
        hidden = encoder_layer(layer, hidden, _additive(allowed))
        if count:
            hidden = torch.cat([hidden[:, :lead], hidden[:, lead + count :]], dim=1)
    hidden = text.final_layer_norm(hidden)
    if family in SIGLIP_LIKE:
        return text.head(hidden[:, -1])  # SigLIP pools the last position
    eos = (input_ids == text.config.eos_token_id).int().argmax(dim=-1)
    return model.text_projection(hidden[torch.arange(batch), eos])


def video_embeddings(
    family,
    model,
    inputs,
    *,
    shared,
    position=None,
    context=None,
    intra_frame_layers=None,
    inter_frame_prompts=None,
    frame_position=None,
):
    """Unit-norm video embeddings `[B, E]`.

    Args:
        shared: per layer, prompts all frames share `[P_s, D]` (None: none).
        position: per layer, VoP^P tables `[F, P_f, D]`.
        context: `(generator, layers)`: VoP^C's `ContextPromptGenerator` and the layers it prompts.
        intra_frame_layers / inter_frame_prompts / frame_position: VoP^F's K_s, per inter-frame layer `[P, D]`
            prompts, and the `[F, D]` frame position embedding.
    """
    vision = model.vision_model
    pixel_values = inputs["pixel_values"]
    batch, frames = pixel_values.shape[:2]
    siglip = family in SIGLIP_LIKE
    lead = 0 if siglip else 1
    if family == "siglip2":
        patch_mask = inputs["pixel_attention_mask"].flatten(0, 1).bool()  # [B*F, M]
        hidden = vision.embeddings(pixel_values.flatten(0, 1), inputs["spatial_shapes"].flatten(0, 1))
    else:
        hidden = vision.embeddings(pixel_values.flatten(0, 1))
        patch_mask = torch.ones(hidden.shape[:2], dtype=torch.bool)
    if not siglip:
        hidden = vision.pre_layrnorm(hidden)
    tokens, width = hidden.shape[1:]

    def key_mask(keys):  # [N, K] -> additive [N, 1, K, K]
        return _additive(keys[:, None, :].expand(keys.shape[0], keys.shape[1], keys.shape[1]))

    for index, layer in enumerate(vision.encoder.layers):
        if intra_frame_layers is not None and index >= intra_frame_layers:
            if index == intra_frame_layers:
                hidden = hidden + frame_position.repeat(batch, 1)[:, None, :]  # row b*F+j gets frame j
            video = hidden.reshape(batch, frames * tokens, width)
            keys = patch_mask.reshape(batch, frames * tokens)
            prompts = inter_frame_prompts[index - intra_frame_layers]
            count = 0 if prompts is None else prompts.shape[0]
            if count:
                video = _insert(video, prompts.expand(batch, -1, -1), lead)
                keys = _ones_at(keys, count, lead)
            video = encoder_layer(layer, video, key_mask(keys))
            video = torch.cat([video[:, :lead], video[:, lead + count :]], dim=1)
            hidden = video.reshape(batch * frames, tokens, width)
            continue
        pieces = []
        if shared[index] is not None:
            pieces.append(shared[index].expand(batch * frames, -1, -1))
        if position is not None and position[index] is not None:
            pieces.append(position[index].repeat(batch, 1, 1))  # row b*F+j gets table[j]
        if context is not None and index in context[1]:
            generator = context[0]
            if siglip:  # mean of the frame's real tokens (no CLS)
                weights = patch_mask.float()[:, :, None]
                summary = (hidden * weights).sum(dim=1) / weights.sum(dim=1)
            else:
                summary = hidden[:, 0]
            generated = generator(summary.reshape(batch, frames, width))
            pieces.append(generated.reshape(batch * frames, -1, width))
        prompts = torch.cat(pieces, dim=1) if pieces else None
        count = 0 if prompts is None else prompts.shape[1]
        keys = patch_mask
        if count:
            if index == 0 and not siglip:
                prompts = vision.pre_layrnorm(prompts)
            hidden = _insert(hidden, prompts, lead)
            keys = _ones_at(patch_mask, count, lead)
        hidden = encoder_layer(layer, hidden, key_mask(keys))
        hidden = torch.cat([hidden[:, :lead], hidden[:, lead + count :]], dim=1)
    hidden = vision.post_layernorm(hidden)
    if siglip:
        head = vision.head
        mask = None
        if family == "siglip2":
            mask = _additive(patch_mask[:, None, :])[:, 0].repeat_interleave(head.num_heads, dim=0)  # [N*H, 1, M]
        probe = head.probe.repeat(hidden.shape[0], 1, 1)
        pooled = head.attention(probe, hidden, hidden, attn_mask=mask)[0]
        frame_embeds = (pooled + head.mlp(head.layernorm(pooled)))[:, 0]
    else:
        frame_embeds = model.visual_projection(hidden[:, 0])
    frame_embeds = F.normalize(frame_embeds, dim=-1).view(batch, frames, -1)
    return F.normalize(frame_embeds.mean(dim=1), dim=-1)
