"""Batched frame preprocessing on the training device: workers move bytes, the device does the math.

With `VideoTextDataset(..., device_preprocessing=True)`, a loader worker only reads (or decodes and resizes) the
frames of a video and draws its crop: an item holds `uint8 [F, 3, H, W]` frames and a `CropBox`. The collator stacks
them into `frames uint8 [B, F, 3, H, W]` (zero-padded when videos differ in size) and `crops`, and the training step
calls `DeviceFramePreprocessor` on the batch once it is on the device: crop, resize to the model's input size, flip
and normalise, for the whole batch, with the same code as the per-video CPU path (`FramePreprocessor.crop_resize`,
`FramePreprocessor.normalize`).
"""

from __future__ import annotations

from typing import Any

import torch

from .preprocessing import CropBox, FramePreprocessor


class DeviceFramePreprocessor:
    """Turn a batch of `uint8` frames and crop boxes into the model's `pixel_values`, on the batch's device.

    A batch without `frames` (already preprocessed, or from another collator) is returned unchanged, so the training
    loop can call it on any batch.

    Args:
        preprocessor (`FramePreprocessor`):
            The checkpoint's settings (output size, resampling filter, mean and std); the dataset's own.

    Example:

    ```python
    >>> batch = collator([dataset[i] for i in range(8)])  # doctest: +SKIP
    >>> batch = {k: v.to("cuda", non_blocking=True) if torch.is_tensor(v) else v for k, v in batch.items()}  # doctest: +SKIP
    >>> batch = DeviceFramePreprocessor(preprocessor)(batch)  # doctest: +SKIP
    >>> batch["pixel_values"].shape  # doctest: +SKIP
    torch.Size([8, 12, 3, 224, 224])
    ```
    """

    def __init__(self, preprocessor: FramePreprocessor):
        if not isinstance(preprocessor, FramePreprocessor):
            raise TypeError(f"`preprocessor` must be a FramePreprocessor; got {type(preprocessor).__name__}.")
        self.preprocessor = preprocessor
        # The normalisation factors, copied once to each device (a copy per batch would wait for the device).
        self._factors: dict[torch.device, tuple[torch.Tensor, torch.Tensor]] = {}

    def __call__(self, batch: dict[str, Any]) -> dict[str, Any]:
        """Replace `frames` and `crops` of `batch` by `pixel_values` (`float32 [B, F, 3, H, W]`, same device).

        Args:
            batch (`dict`):
                A collated batch of `VideoTextDataset(..., device_preprocessing=True)` items: `frames`
                (`uint8 [B, F, 3, H, W]`) and `crops` (`list[CropBox]`, one per video); for a NaFlex processor
                also `frame_sizes` (each video's own `(H_i, W_i)` in `frames`).

        Returns:
            `dict`: the batch with `pixel_values` instead of `frames` and `crops`; for a NaFlex processor the patch
            sequences `pixel_values [B, F, N, 3*p*p]`, `pixel_attention_mask` and `spatial_shapes` instead of
            `frames`, `crops` and `frame_sizes` (`FramePreprocessor.patch_inputs`).
        """
        if "frames" not in batch:
            return batch
        frames, crops = batch["frames"], batch["crops"]
        if len(crops) != frames.shape[0]:
            raise ValueError(f"`crops` must have one box per video; got {len(crops)} for {frames.shape[0]} videos.")
        sizes = batch.get("frame_sizes")
        batch = {key: value for key, value in batch.items() if key not in ("frames", "crops", "frame_sizes")}
        if self.preprocessor.is_naflex:
            if sizes is None or len(sizes) != len(crops):
                raise ValueError("A NaFlex batch needs `frame_sizes`, one per video (VideoTextCollator adds them).")
            batch.update(self.patch_inputs(frames, crops, sizes))
        else:
            batch["pixel_values"] = self.pixel_values(frames, crops)
        return batch

    def patch_inputs(
        self, frames: torch.Tensor, crops: list[CropBox], sizes: list[tuple[int, int]]
    ) -> dict[str, torch.Tensor]:
        """NaFlex: crop, resize back to each video's own size, flip, normalise, and cut into patch sequences.

        Args:
            frames (`torch.Tensor` of shape `[B, F, 3, H, W]`, `uint8`): resized frames, zero-padded.
            crops (`list[CropBox]`): each video's box and flip.
            sizes (`list[tuple[int, int]]`): each video's resized size (the output size of its crop).

        Returns:
            `dict`: `pixel_values [B, F, N, 3*p*p]`, `pixel_attention_mask [B, F, N]`, `spatial_shapes [B, F, 2]`.
        """
        scale, shift = self._factors_on(frames.device)
        videos = [
            self.preprocessor.crop_resize(frames[index], box, tuple(size)).mul_(scale).sub_(shift)
            for index, (box, size) in enumerate(zip(crops, sizes))
        ]
        return self.preprocessor.patch_inputs(videos, num_frames=frames.shape[1])

    def _factors_on(self, device: torch.device) -> tuple[torch.Tensor, torch.Tensor]:
        if device not in self._factors:
            self._factors[device] = tuple(f.to(device) for f in self.preprocessor.normalization_factors())
        return self._factors[device]

    def pixel_values(self, frames: torch.Tensor, crops: list[CropBox]) -> torch.Tensor:
        """Crop, resize, flip and normalise a batch of videos.

        Args:
            frames (`torch.Tensor` of shape `[B, F, 3, H, W]`, `uint8`):
                Resized frames, zero-padded at the bottom and right when the videos differ in size.
            crops (`list[CropBox]`):
                The box (inside each video's own frames) and flip of every video.

        Returns:
            `torch.Tensor` of shape `[B, F, 3, h, w]`, `float32`, where `(h, w)` is the processor's output size.
        """
        batch_size, num_frames = frames.shape[:2]
        if self.preprocessor.output_size is not None:
            height, width = self.preprocessor.output_size
        else:  # a processor that neither crops nor resizes to a fixed size: the boxes give the size
            height, width = (crops[0].height, crops[0].width) if crops else (0, 0)
        pixels = torch.empty(batch_size, num_frames, 3, height, width, device=frames.device)
        # Each video has its own box, so resizing goes video by video; all F frames of a video resize together.
        for index, box in enumerate(crops):
            pixels[index] = self.preprocessor.crop_resize(frames[index], box)  # [F, 3, h, w]
        scale, shift = self._factors_on(pixels.device)
        return pixels.mul_(scale).sub_(shift)  # FramePreprocessor.normalize, in place on [B, F, 3, h, w]
