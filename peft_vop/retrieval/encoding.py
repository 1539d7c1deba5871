"""Turning videos and captions into embeddings, batch by batch, for a VoP model or a plain CLIP."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

import torch
from peft import PeftModel

from ..config import VoPConfig
from ..families import vision_inputs
from ..pooling import mean_pool_frames


def is_vop_model(model: Any) -> bool:
    """Whether `model` is a `peft.PeftModel` whose active adapter is a VoP adapter (it pools frames itself)."""
    if not isinstance(model, PeftModel):
        return False
    return isinstance(model.peft_config.get(model.active_adapter), VoPConfig)


def _model_device_and_dtype(model: torch.nn.Module) -> tuple[torch.device, torch.dtype]:
    parameter = next(model.parameters())
    return parameter.device, parameter.dtype


def embed_videos(
    model: Any,
    pixel_values: torch.Tensor,
    pixel_attention_mask: torch.Tensor | None = None,
    spatial_shapes: torch.Tensor | None = None,
) -> torch.Tensor:
    """Video embeddings of a batch of clips.

    Runs in the caller's grad mode, so the same embeddings serve a training loss; `encode_videos` runs without
    gradients.

    A VoP model takes the clips whole (its prompts may span frames) and returns pooled, unit-norm embeddings.
    Any other CLIP sees the frames as a batch of images; the frame embeddings are then mean-pooled
    (`peft_vop.pooling.mean_pool_frames`), the zero-shot baseline.

    Args:
        model (`transformers.CLIPModel` or `peft.PeftModel`):
            The model, in eval mode.
        pixel_values (`torch.FloatTensor` of shape `[B, F, 3, H, W]`):
            Normalised frames, as `VideoTextCollator` makes them; for a NaFlex processor (SigLIP 2) patch sequences
            `[B, F, N, 3*p*p]` with the two arguments below.
        pixel_attention_mask (`torch.LongTensor` of shape `[B, F, N]`, *optional*):
            NaFlex: 1 for real patches, 0 for padding.
        spatial_shapes (`torch.LongTensor` of shape `[B, F, 2]`, *optional*):
            NaFlex: each frame's patch grid.

    Returns:
        `torch.FloatTensor` of shape `[B, P]`: unit-norm video embeddings.
    """
    patches = pixel_attention_mask is not None
    if pixel_values.ndim != (4 if patches else 5):
        expected = "[B, F, N, 3*p*p] (patch sequences)" if patches else "[B, F, 3, H, W]"
        raise ValueError(f"`pixel_values` must have shape {expected}; got {tuple(pixel_values.shape)}.")
    inputs = vision_inputs(model, pixel_values, pixel_attention_mask, spatial_shapes)
    if is_vop_model(model):
        return model.get_image_features(**inputs).pooler_output
    batch, frames = pixel_values.shape[:2]
    # [B, F, ...] -> [B*F, ...] -> [B*F, P] -> [B, F, P] -> [B, P]
    frame_embeds = model.get_image_features(**{k: v.flatten(0, 1) for k, v in inputs.items()}).pooler_output
    return mean_pool_frames(frame_embeds.view(batch, frames, -1))


def video_inputs(batch: dict[str, Any], device: torch.device, dtype: torch.dtype) -> dict[str, torch.Tensor]:
    """The video part of a collated batch on `device`, for `embed_videos`: `pixel_values` in `dtype`, and a NaFlex
    batch's `pixel_attention_mask` and `spatial_shapes` as they are."""
    inputs = {"pixel_values": batch["pixel_values"].to(device=device, dtype=dtype, non_blocking=True)}
    for key in ("pixel_attention_mask", "spatial_shapes"):
        if key in batch:
            inputs[key] = batch[key].to(device=device, non_blocking=True)
    return inputs


def embed_texts(model: Any, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
    """Text embeddings `[T, P]` (not normalised) of tokenised captions, in the caller's grad mode."""
    return model.get_text_features(input_ids=input_ids, attention_mask=attention_mask).pooler_output


@dataclass
class EncodedVideos:
    """The embeddings of a video dataset and what could not be encoded.

    Args:
        embeddings (`torch.FloatTensor` of shape `[V', P]`):
            One row per encoded video, on the CPU.
        video_indices (`torch.LongTensor` of shape `[V']`):
            Dataset position of each row.
        skipped (`list[dict]`):
            Videos left out by the dataset's error policy (`video_index`, `name`, `reason`).
        repaired (`list[dict]`):
            Videos whose unreadable frames were repeated (`name`, `frames`).
    """

    embeddings: torch.Tensor
    video_indices: torch.Tensor
    skipped: list[dict[str, Any]] = field(default_factory=list)
    repaired: list[dict[str, Any]] = field(default_factory=list)


@torch.no_grad()
def encode_videos(model: Any, batches: Iterable[dict[str, Any]], *, progress: bool = True) -> EncodedVideos:
    """Encode the video batches of a DataLoader, keeping only the embeddings.

    Only one batch of frames is in memory at a time: each batch is encoded, its embeddings moved to the CPU, and
    its frames dropped before the next one is loaded.

    Args:
        model (`transformers.CLIPModel` or `peft.PeftModel`):
            The model, in eval mode.
        batches (`Iterable[dict]`):
            Batches from `VideoTextCollator` (`pixel_values`, `video_index`, `skipped`, `repaired`).
        progress (`bool`, *optional*, defaults to `True`):
            Show a progress bar.

    Returns:
        `EncodedVideos`.
    """
    from tqdm.auto import tqdm

    device, dtype = _model_device_and_dtype(model)
    embeddings, indices, skipped, repaired = [], [], [], []
    # A bar updated by hand rather than wrapped around `batches`: a wrapping iterator would keep the previous batch
    # alive while the next one loads.
    total = len(batches) if hasattr(batches, "__len__") else None
    bar = tqdm(total=total, desc="Encoding videos", unit="batch", disable=not progress)
    for batch in batches:
        skipped.extend(batch.get("skipped", []))
        repaired.extend(batch.get("repaired", []))
        if batch["pixel_values"].shape[0] > 0:
            inputs = video_inputs(batch, device, dtype)
            embeddings.append(embed_videos(model, **inputs).float().cpu())
            indices.append(batch["video_index"])
            del inputs
        del batch  # frames are dropped before the next batch is loaded
        bar.update(1)
    bar.close()
    if not embeddings:
        raise ValueError(f"No video could be encoded ({len(skipped)} skipped).")
    return EncodedVideos(torch.cat(embeddings), torch.cat(indices), skipped, repaired)


@torch.no_grad()
def encode_texts(
    model: Any,
    tokenizer: Any,
    captions: Sequence[str],
    *,
    batch_size: int = 256,
    max_length: int | None = None,
    progress: bool = True,
) -> torch.Tensor:
    """Tokenise and encode captions in batches.

    Args:
        model (`transformers.CLIPModel` or `peft.PeftModel`):
            The model, in eval mode.
        tokenizer (`transformers.PreTrainedTokenizerBase`):
            The checkpoint's tokenizer.
        captions (`Sequence[str]`):
            The captions.
        batch_size (`int`, *optional*, defaults to 256):
            Captions per forward pass.
        max_length (`int`, *optional*):
            Token limit; defaults to the tokenizer's `model_max_length`.
        progress (`bool`, *optional*, defaults to `True`):
            Show a progress bar.

    Returns:
        `torch.FloatTensor` of shape `[T, P]` on the CPU.
    """
    from tqdm.auto import tqdm

    device, _ = _model_device_and_dtype(model)
    max_length = max_length or tokenizer.model_max_length
    embeddings = []
    for start in tqdm(
        range(0, len(captions), batch_size), desc="Encoding captions", unit="batch", disable=not progress
    ):
        tokens = tokenizer(
            list(captions[start : start + batch_size]),
            padding=True,
            truncation=True,
            max_length=max_length,
            return_tensors="pt",
        ).to(device)
        embeddings.append(embed_texts(model, tokens["input_ids"], tokens["attention_mask"]).float().cpu())
    return torch.cat(embeddings)
