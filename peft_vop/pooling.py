"""Frame pooling: how per-frame CLIP embeddings become one video embedding."""

from __future__ import annotations

import torch


def mean_pool_frames(frame_embeds: torch.Tensor) -> torch.Tensor:
    """Pool projected frame embeddings into video embeddings, as VoP and X-Pool do.

    Each frame embedding is L2-normalised, the F frames of a video are averaged, and the mean is L2-normalised
    again, so every video embedding has unit norm.

    Args:
        frame_embeds (`torch.Tensor` of shape `[B, F, D]`):
            Projected embeddings of the F frames of B videos.

    Returns:
        `torch.Tensor` of shape `[B, D]`: unit-norm video embeddings.
    """
    if frame_embeds.ndim != 3:
        raise ValueError(
            f"`frame_embeds` must have shape [batch, frames, dim]; got a tensor of shape {tuple(frame_embeds.shape)}."
        )
    frame_embeds = torch.nn.functional.normalize(frame_embeds, dim=-1)
    return torch.nn.functional.normalize(frame_embeds.mean(dim=1), dim=-1)
