"""A hook-free VoP forward, written from the method description (VOP_SPEC.md), to check the hooked model against.

Nothing here uses peft_vop's hooks or transformers' attention/mask code: encoder layers are recomputed from their
weights with an explicit additive mask, and prompts are placed where the spec says (vision prompts of inter-frame
layers go at the *end* of the video sequence, which must not matter since vision attention has no mask).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F


def encoder_layer(layer, hidden: torch.Tensor, additive_mask: torch.Tensor | None) -> torch.Tensor:
    """One CLIP encoder layer from its weights: pre-LN attention, then pre-LN MLP, both residual."""
    attention = layer.self_attn
    batch, length, width = hidden.shape
    heads = attention.num_heads
    head_dim = width // heads
    x = layer.layer_norm1(hidden)

    def split(t):
        return t.view(batch, length, heads, head_dim).transpose(1, 2)

    q, k, v = split(attention.q_proj(x)), split(attention.k_proj(x)), split(attention.v_proj(x))
    scores = q @ k.transpose(-1, -2) * head_dim**-0.5
    if additive_mask is not None:
        scores = scores + additive_mask
    mixed = (scores.softmax(dim=-1) @ v).transpose(1, 2).reshape(batch, length, width)
    hidden = hidden + attention.out_proj(mixed)
    return hidden + layer.mlp(layer.layer_norm2(hidden))


def text_features(clip, input_ids, attention_mask, prompts: list[torch.Tensor | None]) -> torch.Tensor:
    """Projected text features with `prompts[i]` ([P, D] or None) inserted after BOS before text layer i."""
    text = clip.text_model
    hidden = text.embeddings(input_ids=input_ids)
    batch = input_ids.shape[0]
    for layer, layer_prompts in zip(text.encoder.layers, prompts):
        count = 0 if layer_prompts is None else layer_prompts.shape[0]
        if count:
            hidden = torch.cat([hidden[:, :1], layer_prompts.expand(batch, -1, -1), hidden[:, 1:]], dim=1)
        length = hidden.shape[1]
        key_valid = torch.cat(
            [attention_mask[:, :1], attention_mask.new_ones(batch, count), attention_mask[:, 1:]], dim=1
        ).bool()
        allowed = torch.ones(length, length, dtype=torch.bool).tril()[None] & key_valid[:, None, :]
        additive = torch.zeros(batch, 1, length, length).masked_fill(~allowed[:, None], float("-inf"))
        hidden = encoder_layer(layer, hidden, additive)
        if count:
            hidden = torch.cat([hidden[:, :1], hidden[:, 1 + count :]], dim=1)
    hidden = text.final_layer_norm(hidden)
    eos = (input_ids == text.eos_token_id).int().argmax(dim=-1)
    return clip.text_projection(hidden[torch.arange(batch), eos])


def video_features(
    clip,
    pixel_values: torch.Tensor,
    *,
    shared: list[torch.Tensor | None],
    position: list[torch.Tensor | None] | None = None,
    context_lstm=None,
    context_projection=None,
    context_prompts: int = 0,
    context_layers: list[int] = (),
    intra_frame_layers: int | None = None,
    video_prompts: list[torch.Tensor | None] | None = None,
    frame_position: torch.Tensor | None = None,
) -> torch.Tensor:
    """Unit-norm video embeddings `[B, E]` of VoP and its variants, written out step by step.

    Args:
        shared: per layer, the prompts all frames share `[P_s, D]` (None: layer without them).
        position: per layer, the position-specific table `[F, P_f, D]` (VoP^P).
        context_lstm / context_projection / context_prompts / context_layers: VoP^C's CMM (an `nn.LSTM` with
            batch_first), its linear layer, prompts per frame, and the layers that get context prompts.
        intra_frame_layers / video_prompts / frame_position: VoP^F's K_s, per inter-frame layer `[P, D]` prompts,
            and the `[F, D]` frame position embedding.
    """
    vision = clip.vision_model
    batch, frames = pixel_values.shape[:2]
    hidden = vision.pre_layrnorm(vision.embeddings(pixel_values.flatten(0, 1)))  # [B*F, 1+M, D]
    tokens, width = hidden.shape[1], hidden.shape[2]
    for index, layer in enumerate(vision.encoder.layers):
        if intra_frame_layers is not None and index >= intra_frame_layers:
            if index == intra_frame_layers:
                hidden = hidden + frame_position.repeat(batch, 1)[:, None, :]  # row b*F+j gets frame j
            video = hidden.reshape(batch, frames * tokens, width)
            prompts = video_prompts[index - intra_frame_layers]
            count = 0 if prompts is None else prompts.shape[0]
            if count:
                video = torch.cat([video, prompts.expand(batch, -1, -1)], dim=1)
            video = encoder_layer(layer, video, None)[:, : frames * tokens]
            hidden = video.reshape(batch * frames, tokens, width)
            continue
        pieces = []
        if shared[index] is not None:
            pieces.append(shared[index].expand(batch * frames, -1, -1))
        if position is not None and position[index] is not None:
            pieces.append(position[index].repeat(batch, 1, 1))  # row b*F+j gets table[j]
        if context_lstm is not None and index in context_layers:
            context, _ = context_lstm(hidden[:, 0].reshape(batch, frames, width))
            generated = context_projection(context).reshape(batch * frames, context_prompts, width)
            pieces.append(generated)
        prompts = torch.cat(pieces, dim=1) if pieces else None
        count = 0 if prompts is None else prompts.shape[1]
        if count:
            if index == 0:
                prompts = vision.pre_layrnorm(prompts)
            hidden = torch.cat([hidden[:, :1], prompts, hidden[:, 1:]], dim=1)
        hidden = encoder_layer(layer, hidden, None)
        if count:
            hidden = torch.cat([hidden[:, :1], hidden[:, 1 + count :]], dim=1)
    frame_embeds = clip.visual_projection(vision.post_layernorm(hidden[:, 0]))
    frame_embeds = F.normalize(frame_embeds, dim=-1).view(batch, frames, -1)
    return F.normalize(frame_embeds.mean(dim=1), dim=-1)
