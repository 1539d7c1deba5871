"""Tiny random CLIPs built from `CLIPConfig` (nothing is downloaded), and inputs shaped for them."""

from __future__ import annotations

import torch
from transformers import CLIPConfig, CLIPModel


def tiny_clip_config(
    *,
    text_layers: int = 2,
    vision_layers: int = 3,
    text_width: int = 32,
    vision_width: int = 48,
    image_size: int = 32,
    patch_size: int = 8,
    attn_implementation: str | None = None,
) -> CLIPConfig:
    """A CLIP geometry small enough for unit tests on a CPU (16 patches per frame)."""
    config = CLIPConfig(
        text_config={
            "hidden_size": text_width,
            "intermediate_size": 2 * text_width,
            "num_hidden_layers": text_layers,
            "num_attention_heads": 4,
            "vocab_size": 99,
            "max_position_embeddings": 24,
            "bos_token_id": 96,
            "eos_token_id": 97,
            "pad_token_id": 98,
        },
        vision_config={
            "hidden_size": vision_width,
            "intermediate_size": 2 * vision_width,
            "num_hidden_layers": vision_layers,
            "num_attention_heads": 4,
            "image_size": image_size,
            "patch_size": patch_size,
        },
        projection_dim=24,
    )
    if attn_implementation is not None:
        config._attn_implementation = attn_implementation
    return config


def tiny_clip(seed: int = 0, **kwargs) -> CLIPModel:
    """A randomly initialised tiny `CLIPModel` in eval mode, reproducible from `seed`."""
    torch.manual_seed(seed)
    attn = kwargs.pop("attn_implementation", "sdpa")
    model = CLIPModel(tiny_clip_config(**kwargs))
    model.set_attn_implementation(attn)
    return model.eval()


def tiny_text_batch(batch_size: int = 2, length: int = 7, pad_last: int = 2, seed: int = 0):
    """`input_ids`/`attention_mask` shaped like the CLIP tokenizer's output: BOS, words, EOS, then padding."""
    generator = torch.Generator().manual_seed(seed)
    input_ids = torch.full((batch_size, length), 98)
    attention_mask = torch.zeros(batch_size, length, dtype=torch.long)
    for row in range(batch_size):
        used = length - (pad_last if row % 2 else 0)
        input_ids[row, 0] = 96
        input_ids[row, 1 : used - 1] = torch.randint(0, 90, (used - 2,), generator=generator)
        input_ids[row, used - 1] = 97
        attention_mask[row, :used] = 1
    return input_ids, attention_mask


def randomize_adapter(model: torch.nn.Module, std: float, seed: int = 0) -> torch.nn.Module:
    """Draw every trainable (adapter) parameter from N(0, std²), so that each prompt visibly matters in a test."""
    with torch.no_grad():
        generator = torch.Generator().manual_seed(seed)
        for parameter in model.parameters():
            if parameter.requires_grad:
                parameter.normal_(std=std, generator=generator)
    return model
