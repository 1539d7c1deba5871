"""Analytic forward FLOPs of CLIP towers with and without VoP prompts (multiply-adds count as 2 FLOPs)."""

from __future__ import annotations

from transformers import CLIPTextConfig, CLIPVisionConfig

from peft_vop import VoPConfig


def encoder_layer_flops(sequences: int, tokens: int, width: int, mlp_width: int) -> int:
    """One pre-LN transformer layer: q/k/v/out projections, the MLP, and the two attention matmuls."""
    linear = 2 * tokens * (4 * width * width + 2 * width * mlp_width)
    attention = 2 * 2 * tokens * tokens * width
    return sequences * (linear + attention)


def context_module_flops(sequences: int, width: int, prompts: int, kind: str) -> int:
    """VoP^C's context module over `sequences` frame tokens, and its projection to `prompts` tokens."""
    if kind == "transformer":
        return 4 * encoder_layer_flops(1, sequences, width, 4 * width) + 2 * sequences * width * prompts * width
    directions = 2 if kind == "bilstm" else 1
    recurrent = directions * sequences * 2 * 4 * (width * width + width * width)
    return recurrent + 2 * sequences * directions * width * prompts * width


def vision_flops(vision: CLIPVisionConfig, videos: int, frames: int, config: VoPConfig | None = None) -> int:
    """Forward FLOPs of the vision tower for `videos` x `frames` frames, with `config`'s prompts (None: CLIP)."""
    patches = (vision.image_size // vision.patch_size) ** 2
    width, mlp, layers = vision.hidden_size, vision.intermediate_size, vision.num_hidden_layers
    count = videos * frames
    total = count * 2 * patches * 3 * vision.patch_size**2 * width  # patch embedding
    selected = set(range(layers)) if config is None or config.vision_layers is None else set(config.vision_layers)
    for index in range(layers):
        prompts = 0 if config is None or index not in selected else config.vision_prompt_length
        inter = config is not None and config.intra_frame_layers is not None and index >= config.intra_frame_layers
        if inter:
            total += encoder_layer_flops(videos, frames * (1 + patches) + prompts, width, mlp)
        else:
            total += encoder_layer_flops(count, 1 + patches + prompts, width, mlp)
            if config is not None and config.frame_prompts == "context" and index in selected:
                total += context_module_flops(count, width, config.video_prompt_length, config.context_module)
    return total


def text_flops(text: CLIPTextConfig, texts: int, length: int, config: VoPConfig | None = None) -> int:
    """Forward FLOPs of the text tower for `texts` captions of `length` tokens."""
    total = 0
    for index in range(text.num_hidden_layers):
        selected = config is not None and (config.text_layers is None or index in config.text_layers)
        prompts = config.text_prompt_length if selected else 0
        total += encoder_layer_flops(texts, length + prompts, text.hidden_size, text.intermediate_size)
    return total
