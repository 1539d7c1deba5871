"""Analytic forward FLOPs of CLIP towers with and without VoP prompts (multiply-adds count as 2 FLOPs).

peft-vop inserts a layer's prompts into its self-attention and strips them right after it (a prompt's own output is
discarded, so it only matters as a key and value), so prompts cost q/k/v/out projections and attention, not the MLP.
`prompt_mlp=True` counts prompts through the whole layer instead, as an implementation that inserts them before the
layer and strips them after it computes (the 58-vs-50-token count at B/32).
"""

from __future__ import annotations

from transformers import CLIPTextConfig, CLIPVisionConfig

from peft_vop import VoPConfig


def encoder_layer_flops(
    sequences: int, tokens: int, width: int, mlp_width: int, prompts: int = 0, prompt_mlp: bool = False
) -> int:
    """One pre-LN transformer layer over `tokens` tokens plus `prompts` prompt tokens, for `sequences` sequences.

    Counts the q/k/v/out projections and the two attention matmuls over all `tokens + prompts` tokens, and the MLP
    over `tokens` (over all of them with `prompt_mlp`).
    """
    attended = tokens + prompts
    mlp_tokens = attended if prompt_mlp else tokens
    linear = 2 * (attended * 4 * width * width + mlp_tokens * 2 * width * mlp_width)
    attention = 2 * 2 * attended * attended * width
    return sequences * (linear + attention)


def context_module_flops(sequences: int, width: int, prompts: int, kind: str) -> int:
    """VoP^C's context module over `sequences` frame tokens, and its projection to `prompts` tokens."""
    if kind == "transformer":
        return 4 * encoder_layer_flops(1, sequences, width, 4 * width) + 2 * sequences * width * prompts * width
    directions = 2 if kind == "bilstm" else 1
    recurrent = directions * sequences * 2 * 4 * (width * width + width * width)
    return recurrent + 2 * sequences * directions * width * prompts * width


def vision_flops(
    vision: CLIPVisionConfig, videos: int, frames: int, config: VoPConfig | None = None, prompt_mlp: bool = False
) -> int:
    """Forward FLOPs of the vision tower for `videos` x `frames` frames, with `config`'s prompts (None: no VoP).

    Any CLIP-like vision config: CLIP and MetaCLIP 2 prepend a CLS token; SigLIP and SigLIP 2 (`num_patches`) have
    none and pool with an attention head (its key/value projections over the patches are counted).
    """
    num_patches = getattr(vision, "num_patches", None)
    patches = num_patches or (vision.image_size // vision.patch_size) ** 2
    siglip = getattr(vision, "vision_use_head", None) is not None
    width, mlp, layers = vision.hidden_size, vision.intermediate_size, vision.num_hidden_layers
    count = videos * frames
    total = count * 2 * patches * 3 * vision.patch_size**2 * width  # patch embedding
    if siglip and vision.vision_use_head:
        total += count * 2 * 2 * patches * width * width  # the pooling head's keys and values
    cls = 0 if siglip else 1
    selected = set(range(layers)) if config is None or config.vision_layers is None else set(config.vision_layers)
    split = None if config is None else config.resolved_intra_frame_layers(layers)
    for index in range(layers):
        prompts = 0 if config is None or index not in selected else config.vision_prompt_length
        inter = split is not None and index >= split
        if inter:
            total += encoder_layer_flops(videos, frames * (cls + patches), width, mlp, prompts, prompt_mlp)
        else:
            total += encoder_layer_flops(count, cls + patches, width, mlp, prompts, prompt_mlp)
            if config is not None and config.frame_prompts == "context" and index in selected:
                total += context_module_flops(count, width, config.video_prompt_length, config.context_module)
    return total


def text_flops(
    text: CLIPTextConfig, texts: int, length: int, config: VoPConfig | None = None, prompt_mlp: bool = False
) -> int:
    """Forward FLOPs of the text tower for `texts` captions of `length` tokens."""
    total = 0
    for index in range(text.num_hidden_layers):
        selected = config is not None and (config.text_layers is None or index in config.text_layers)
        prompts = config.text_prompt_length if selected else 0
        total += encoder_layer_flops(texts, length, text.hidden_size, text.intermediate_size, prompts, prompt_mlp)
    return total
