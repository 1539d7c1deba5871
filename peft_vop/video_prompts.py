"""Context modelling modules of VoP^C: frame CLS tokens of a video in, context-specific prompt tokens out."""

from __future__ import annotations

import math

import torch
from torch import nn

from .config import CONTEXT_MODULES


class ContextPromptGenerator(nn.Module):
    """
    The Context Modeling Module (CMM) of VoP^C followed by the linear layer that turns each frame's context vector
    into prompt tokens. One instance is shared by all vision layers of an adapter.

    Args:
        width (`int`):
            Width `D` of the vision tower (768 for ViT-B).
        num_prompts (`int`):
            Context-specific prompt tokens per frame (4 in the paper).
        kind (`str`, defaults to `"bilstm"`):
            `"bilstm"`: a 1-layer bidirectional LSTM with hidden size `D` per direction (the paper's CMM);
            `"lstm"`: its uni-directional ablation; `"transformer"`: a 4-layer Transformer encoder over the frames
            with sinusoidal frame positions (so it is not blind to frame order).
        init_std (`float`, defaults to 0.02):
            Std of the normal initialisation of the output projection (the recurrent weights keep PyTorch's
            initialisation).
    """

    def __init__(self, width: int, num_prompts: int, kind: str = "bilstm", init_std: float = 0.02) -> None:
        super().__init__()
        if kind not in CONTEXT_MODULES:
            raise ValueError(f"`kind` must be one of {list(CONTEXT_MODULES)}; got {kind!r}.")
        self.kind = kind
        self.width = width
        self.num_prompts = num_prompts
        if kind == "transformer":
            layer = nn.TransformerEncoderLayer(
                d_model=width,
                nhead=_num_heads(width),
                dim_feedforward=4 * width,
                dropout=0.0,
                activation="gelu",
                batch_first=True,
                norm_first=True,
            )
            self.context = nn.TransformerEncoder(layer, num_layers=4, enable_nested_tensor=False)
            context_width = width
        else:
            bidirectional = kind == "bilstm"
            self.context = nn.LSTM(width, width, num_layers=1, batch_first=True, bidirectional=bidirectional)
            context_width = 2 * width if bidirectional else width
        self.projection = nn.Linear(context_width, num_prompts * width)
        nn.init.normal_(self.projection.weight, std=init_std)
        nn.init.zeros_(self.projection.bias)

    def forward(self, frame_tokens: torch.Tensor) -> torch.Tensor:
        """
        Args:
            frame_tokens (`torch.Tensor` of shape `[B, F, D]`): the CLS token of every frame at a layer's input.

        Returns:
            `torch.Tensor` of shape `[B, F, num_prompts, D]`: prompt tokens for every frame.
        """
        batch, frames, width = frame_tokens.shape
        if self.kind == "transformer":
            context = self.context(frame_tokens + _sinusoidal_positions(frames, width, frame_tokens))
        else:
            context = self._run_lstm(frame_tokens)  # [B, F, D or 2D]
        return self.projection(context).view(batch, frames, self.num_prompts, width)

    def _run_lstm(self, frame_tokens: torch.Tensor) -> torch.Tensor:
        device_type = frame_tokens.device.type
        if not torch.is_autocast_enabled(device_type):
            return self.context(frame_tokens)[0]
        # Recurrent kernels have no reduced-precision form on every device (oneDNN on AVX2-only CPUs has no bf16
        # LSTM primitive), so under autocast the LSTM runs in its weights' precision; the projection that follows
        # is autocast again.
        with torch.autocast(device_type, enabled=False):
            return self.context(frame_tokens.to(self.context.weight_ih_l0.dtype))[0]


def _num_heads(width: int) -> int:
    # ViT convention of 64-wide heads, falling back to the largest head count that divides small widths.
    for heads in range(max(width // 64, 1), 0, -1):
        if width % heads == 0:
            return heads
    return 1


def _sinusoidal_positions(frames: int, width: int, like: torch.Tensor) -> torch.Tensor:
    position = torch.arange(frames, device=like.device, dtype=torch.float32)[:, None]
    frequency = torch.exp(
        torch.arange(0, width, 2, device=like.device, dtype=torch.float32) * (-math.log(10000.0) / width)
    )
    table = torch.zeros(frames, width, device=like.device, dtype=torch.float32)
    table[:, 0::2] = torch.sin(position * frequency)
    table[:, 1::2] = torch.cos(position * frequency[: width // 2])
    return table.to(like.dtype)
