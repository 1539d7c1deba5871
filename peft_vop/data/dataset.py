"""A torch `Dataset` of sampled, preprocessed video frames with captions, and the collator that batches it.

Per item, in the DataLoader worker: sample F frame indices -> decode them (or read them from a frame cache) ->
resize as the checkpoint's processor does -> center crop (evaluation) or one random resized crop + flip shared by
the whole clip (training) -> `uint8 [F, 3, H, W]`. The collator stacks a batch, normalises it into
`pixel_values [B, F, 3, H, W]` and tokenises the captions.

With `device_preprocessing=True` the worker stops after the resize (and the center crop, a plain slice): the item
holds the `uint8` frames and the drawn `CropBox`, the collator stacks them into `frames` and `crops`, and
`DeviceFramePreprocessor` crops, resizes, flips and normalises the whole batch on the training device. The draws
are the same either way.

Unreadable videos follow `on_error`:

- `"raise"` (default): the first missing, empty, corrupt or truncated file, or unreadable frame, raises
  `VideoDecodeError` naming the file.
- `"repair"`: the spec's convention for unreadable frames: each is retried once, then replaced by the last good
  frame of the clip; the batch reports how many frames were repeated for which file. A video with no readable
  frame at all cannot be repaired and is skipped.
- `"skip"`: any video with a problem is left out of its batch.

Frames read from a frame cache are checked against their checksum; a corrupt cache entry is an unreadable video
to `"raise"` and `"skip"`, and `"repair"` decodes the video again.

Skipped videos and repaired frames are never silent: every batch lists them (`batch["skipped"]`,
`batch["repaired"]`), a warning names each file, and `vop eval` / `vop prepare` print the counts.
"""

from __future__ import annotations

import warnings
from collections.abc import Collection, Sequence
from typing import Any, Literal

import numpy as np
import torch
from torch.utils.data import Dataset

from .cache import FrameCache, FrameCacheError
from .decoding import VideoDecodeError, read_video
from .frame_sampling import SAMPLING_MODES, SamplingMode
from .preprocessing import CropBox, FramePreprocessor
from .records import VideoRecord


ErrorPolicy = Literal["raise", "repair", "skip"]
ERROR_POLICIES: tuple[str, ...] = ("raise", "repair", "skip")
AUGMENTATIONS: tuple[str, ...] = ("crop", "flip")

# Independent random streams per (seed, epoch, video): which frames, which crop, which caption.
_FRAMES_STREAM, _CROP_STREAM, _CAPTION_STREAM = 0, 1, 2


class VideoTextDataset(Dataset):
    """Videos with captions, yielding the F sampled and preprocessed frames of each.

    Args:
        records (`Sequence[VideoRecord]`):
            The videos (from `read_annotations`, a benchmark reader, or `HFVideoRecords`).
        preprocessor (`FramePreprocessor`):
            Resize/crop/normalise settings of the checkpoint (`FramePreprocessor.from_pretrained(path)`).
        num_frames (`int`, *optional*, defaults to 12):
            Frames sampled per video.
        sampling (`str`, *optional*, defaults to `"uniform"`):
            `"uniform"` (middle frame of each segment; evaluation) or `"rand"` (random frame of each segment;
            training).
        train (`bool`, *optional*, defaults to `False`):
            Training augmentation (random resized crop + flip, a random caption per video) instead of a center
            crop and the first caption.
        augment (`bool` or `Collection[str]`, *optional*, defaults to `True`):
            With `train=True`, which augmentations to apply: `True` for both the random resized crop and the
            horizontal flip, `False` for neither, or a collection naming some of `"crop"` and `"flip"`. Turn them off
            for data whose captions name positions or directions ("moves left"), which a flip or crop would
            contradict; the caption is still drawn at random. The crop box and the flip are drawn whichever are
            applied, so a flip does not change when the crop is switched off. Without the crop, frames are center
            cropped as in evaluation.
        seed (`int`, *optional*, defaults to 0):
            Seed of all randomness; with the epoch (`set_epoch`) and the video index it fixes the frames, crop and
            caption of an item, whatever worker loads it.
        on_error (`str`, *optional*, defaults to `"raise"`):
            `"raise"`, `"repair"` or `"skip"` (see the module documentation).
        cache (`FrameCache` or `str`, *optional*):
            A frame cache built by `vop prepare` / `build_frame_cache` with the same sampling settings. Entries
            whose source file changed since are decoded again.
        each_caption (`bool`, *optional*, defaults to `False`):
            One item per (video, caption) pair, as X-Pool trains on MSR-VTT, instead of one item per video.
        device_preprocessing (`bool`, *optional*, defaults to `False`):
            Leave the training crop, the flip and the normalisation to `DeviceFramePreprocessor` on the training
            device: items hold the resized (evaluation: center-cropped) `uint8` frames and their `crop`.

    Example:

    ```python
    >>> from torch.utils.data import DataLoader
    >>> from peft_vop.data import FramePreprocessor, VideoTextCollator, VideoTextDataset, read_annotations
    >>> records = read_annotations("annotations.jsonl", split="train")  # doctest: +SKIP
    >>> preprocessor = FramePreprocessor.from_pretrained("openai/clip-vit-base-patch32")  # doctest: +SKIP
    >>> dataset = VideoTextDataset(records, preprocessor, sampling="rand", train=True)  # doctest: +SKIP
    >>> loader = DataLoader(dataset, batch_size=32, num_workers=4, collate_fn=VideoTextCollator(preprocessor, tokenizer))  # doctest: +SKIP
    ```
    """

    def __init__(
        self,
        records: Sequence[VideoRecord],
        preprocessor: FramePreprocessor,
        *,
        num_frames: int = 12,
        sampling: SamplingMode = "uniform",
        train: bool = False,
        augment: bool | Collection[str] = True,
        seed: int = 0,
        on_error: ErrorPolicy = "raise",
        cache: FrameCache | str | None = None,
        each_caption: bool = False,
        device_preprocessing: bool = False,
    ):
        if num_frames < 1:
            raise ValueError(f"`num_frames` must be at least 1; got {num_frames}.")
        if sampling not in SAMPLING_MODES:
            raise ValueError(f"`sampling` must be one of {SAMPLING_MODES}; got {sampling!r}.")
        if on_error not in ERROR_POLICIES:
            raise ValueError(f"`on_error` must be one of {ERROR_POLICIES}; got {on_error!r}.")
        if not isinstance(preprocessor, FramePreprocessor):
            raise TypeError(
                f"`preprocessor` must be a FramePreprocessor (e.g. FramePreprocessor.from_pretrained(path)); "
                f"got {type(preprocessor).__name__}."
            )
        self.records = records
        self.preprocessor = preprocessor
        self.num_frames = num_frames
        self.sampling = sampling
        self.train = train
        self.augment = _augmentations(augment)
        self.device_preprocessing = device_preprocessing
        self.seed = seed
        self.on_error = on_error
        self.each_caption = each_caption
        self.epoch = 0
        if each_caption:
            self._pairs = [
                (video_index, caption_index)
                for video_index, record in enumerate(records)
                for caption_index in range(len(record.captions))
            ]
        self.cache = FrameCache(cache) if isinstance(cache, str) else cache
        if self.cache is not None:
            self.cache.check_settings(self.cache_settings())
            if sampling == "rand":
                warnings.warn(
                    f"The frame cache {self.cache.directory} holds one draw of `rand` sampling (seed {seed}): the "
                    "same frames are served every epoch; the crop and flip still change.",
                    stacklevel=2,
                )

    def cache_settings(self) -> dict[str, Any]:
        """The settings that decide which frames a cache entry holds; a cache built with others is refused."""
        resize = {key: self.preprocessor.to_dict()[key] for key in ("shortest_edge", "resize_height", "resize_width")}
        resize["resample"] = self.preprocessor.resample
        if self.preprocessor.is_naflex:  # only then, so that caches built before these fields existed stay valid
            resize["patch_size"] = self.preprocessor.patch_size
            resize["max_num_patches"] = self.preprocessor.max_num_patches
        return {"num_frames": self.num_frames, "sampling": self.sampling, "seed": self.seed, "resize": resize}

    def set_epoch(self, epoch: int) -> None:
        """Change the random draws (frames for `rand`, crops, captions) for a new epoch."""
        self.epoch = epoch

    def __len__(self) -> int:
        return len(self._pairs) if self.each_caption else len(self.records)

    def _rng(self, video_index: int, stream: int, epoch: int | None = None) -> np.random.Generator:
        return np.random.default_rng([self.seed, self.epoch if epoch is None else epoch, video_index, stream])

    def decode(self, video_index: int, epoch: int | None = None) -> tuple[torch.Tensor, list[int], list[int]]:
        """Sample and decode the frames of one video and resize them (no cache, no crop).

        Args:
            video_index (`int`):
                Position of the video in `records`.
            epoch (`int`, *optional*):
                Epoch whose `rand` draw to use; defaults to the current one.

        Returns:
            `tuple`: frames `uint8 [F, 3, H, W]`, the sampled frame indices, and the positions that repeat another
            frame because theirs was unreadable (only with `on_error="repair"`).

        Raises:
            `VideoDecodeError`: the video (or, unless repairing, one of its frames) could not be decoded.
        """
        record = self.records[video_index]
        rng = self._rng(video_index, _FRAMES_STREAM, epoch) if self.sampling == "rand" else None
        decoded = read_video(
            record.video,
            self.num_frames,
            self.sampling,
            rng,
            on_unreadable="repeat" if self.on_error == "repair" else "raise",
            name=record.name,
        )
        return self.preprocessor.resize(decoded.frames), decoded.frame_indices, decoded.repeated

    def _resized_frames(self, video_index: int) -> tuple[torch.Tensor, list[int]]:
        if self.cache is not None:
            try:
                cached = self.cache.load(self.records[video_index])
            except FrameCacheError as error:
                if self.on_error != "repair":
                    raise  # "raise" fails; "skip" leaves the video out, reported like an unreadable one
                warnings.warn(f"{error}; decoding the video again", stacklevel=3)
                cached = None
            if cached is not None:
                if cached.repeated and self.on_error != "repair":
                    raise VideoDecodeError(
                        self.records[video_index].name,
                        f"the frame cache holds {len(cached.repeated)} repeated frames for it (it was built with "
                        f'on_error="repair"), which on_error={self.on_error!r} does not accept',
                    )
                return cached.frames, cached.repeated
        frames, _, repeated = self.decode(video_index)
        return frames, repeated

    def __getitem__(self, index: int) -> dict[str, Any]:
        video_index, caption_index = self._pairs[index] if self.each_caption else (index, None)
        record = self.records[video_index]
        try:
            frames, repeated = self._resized_frames(video_index)
        except VideoDecodeError as error:
            if self.on_error == "raise":
                raise
            warnings.warn(f"Skipping a video that cannot be decoded: {error}", stacklevel=2)
            return {
                "video_index": video_index,
                "skipped": {"name": record.name, "reason": error.reason},
                "num_frames": self.num_frames,
            }
        if repeated:
            warnings.warn(
                f"{record.name}: {len(repeated)} of {self.num_frames} sampled frames were unreadable and repeat the "
                "last good frame.",
                stacklevel=2,
            )
        frames, crop = self._crop(frames, video_index)
        # Without device preprocessing the crop happens here; a box that leaves the frames as they are (every center
        # crop: the whole frame, at the output size, unflipped) is skipped.
        # (A NaFlex processor's output is the video's own resized size.)
        size = tuple(frames.shape[-2:])
        unchanged = crop == CropBox(0, 0, *size) and crop[2:4] == (self.preprocessor.output_size or size)
        if not self.device_preprocessing and not unchanged:
            frames = self.preprocessor.crop_resize(frames, crop, size).to(torch.uint8)
        if caption_index is None and record.captions:
            caption_index = (
                int(self._rng(video_index, _CAPTION_STREAM).integers(len(record.captions))) if self.train else 0
            )
        item = {
            "frames": frames,  # uint8 [F, 3, H, W]
            "caption": record.captions[caption_index] if caption_index is not None else None,
            "video_index": video_index,
            "repaired": {"name": record.name, "frames": len(repeated)} if repeated else None,
        }
        if self.device_preprocessing:
            item["crop"] = crop
        return item

    def _crop(self, frames: torch.Tensor, video_index: int) -> tuple[torch.Tensor, CropBox]:
        """The frames after the worker's part of the crop, and the box (and flip) still to apply to them."""
        if self.train and self.augment:
            if "crop" in self.augment:
                self.preprocessor.check_random_crop()
            drawn = self.preprocessor.draw_crop(*frames.shape[-2:], self._rng(video_index, _CROP_STREAM))
            flip = drawn.flip and "flip" in self.augment
            if "crop" in self.augment:
                return frames, drawn._replace(flip=flip)
            frames = self.preprocessor.center_crop(frames)
            return frames, CropBox(0, 0, *frames.shape[-2:], flip)
        frames = self.preprocessor.center_crop(frames)
        return frames, CropBox(0, 0, *frames.shape[-2:])


class VideoTextCollator:
    """Batch `VideoTextDataset` items into model inputs.

    Returns a `dict` with
    - `pixel_values` (`torch.FloatTensor [B, F, 3, H, W]`): normalised with the checkpoint's mean/std; or, for
      items of a dataset with `device_preprocessing=True`, `frames` (`torch.ByteTensor [B, F, 3, H, W]`, zero-padded
      to the largest video) and `crops` (`list[CropBox]`) for `DeviceFramePreprocessor`;
    - for a NaFlex processor (SigLIP 2), instead of `pixel_values [B, F, 3, H, W]`: the patch sequences
      `pixel_values [B, F, N, 3*p*p]` with `pixel_attention_mask [B, F, N]` and `spatial_shapes [B, F, 2]`
      (`FramePreprocessor.patch_inputs`); with device preprocessing, `frames`, `crops` and `frame_sizes` (each
      video's own size in `frames`);
    - `input_ids`, `attention_mask` (`torch.LongTensor [B, L]`): the captions, tokenised (if a tokenizer is
      given);
    - `video_index` (`torch.LongTensor [B]`): position of each video in the dataset's records;
    - `skipped` (`list[dict]`): videos of this batch left out by `on_error` (`video_index`, `name`, `reason`);
      `B` counts only the others, and can be 0;
    - `repaired` (`list[dict]`): videos whose unreadable frames were repeated (`name`, `frames`).

    Args:
        preprocessor (`FramePreprocessor`):
            Gives the normalisation (the same object the dataset uses).
        tokenizer (`transformers.PreTrainedTokenizerBase`, *optional*):
            The checkpoint's tokenizer; without it the batch has no text.
        max_length (`int`, *optional*):
            Token limit; defaults to the tokenizer's `model_max_length` (77 for CLIP).
    """

    def __init__(self, preprocessor: FramePreprocessor, tokenizer: Any | None = None, max_length: int | None = None):
        self.preprocessor = preprocessor
        self.tokenizer = tokenizer
        if tokenizer is not None and max_length is None:
            max_length = tokenizer.model_max_length
            if max_length is None or max_length > 100_000:  # transformers' "no limit" placeholder
                raise ValueError(
                    "The tokenizer sets no `model_max_length`; pass `max_length` (77 for CLIP) to the collator."
                )
        self.max_length = max_length

    def __call__(self, items: Sequence[dict[str, Any]]) -> dict[str, Any]:
        kept = [item for item in items if "frames" in item]
        batch: dict[str, Any] = {
            "skipped": [
                {"video_index": item["video_index"], **item["skipped"]} for item in items if "skipped" in item
            ],
            "repaired": [item["repaired"] for item in kept if item["repaired"]],
            "video_index": torch.tensor([item["video_index"] for item in kept], dtype=torch.long),
        }
        naflex = self.preprocessor.is_naflex
        if kept and "crop" in kept[0]:
            # B x [F, 3, H_i, W_i] -> [B, F, 3, max H_i, max W_i], uint8, for DeviceFramePreprocessor
            batch["frames"] = _stack_padded([item["frames"] for item in kept])
            batch["crops"] = [item["crop"] for item in kept]
            if naflex:
                batch["frame_sizes"] = [tuple(item["frames"].shape[-2:]) for item in kept]
        elif naflex:
            # B x [F, 3, H_i, W_i] -> pixel_values [B, F, N, 3*p*p], pixel_attention_mask [B, F, N], spatial_shapes
            videos = [self.preprocessor.normalize(item["frames"]) for item in kept]
            batch.update(self.preprocessor.patch_inputs(videos, num_frames=None if kept else items[0]["num_frames"]))
        elif kept:
            # B x [F, 3, H, W] -> [B, F, 3, H, W]
            batch["pixel_values"] = self.preprocessor.normalize(torch.stack([item["frames"] for item in kept]))
        else:
            height, width = self.preprocessor.output_size or (0, 0)
            batch["pixel_values"] = torch.empty(0, items[0]["num_frames"], 3, height, width)
        if self.tokenizer is not None:
            captions = [item["caption"] for item in kept]
            if any(caption is None for caption in captions):
                raise ValueError("A video in this batch has no caption; the collator's tokenizer needs one per video.")
            text = self.tokenizer(
                captions, padding=True, truncation=True, max_length=self.max_length, return_tensors="pt"
            )
            batch["input_ids"] = text["input_ids"]
            batch["attention_mask"] = text["attention_mask"]
        return batch


def _augmentations(augment: bool | Collection[str]) -> frozenset[str]:
    if isinstance(augment, bool):
        return frozenset(AUGMENTATIONS if augment else ())
    if isinstance(augment, str) or not all(name in AUGMENTATIONS for name in augment):
        raise ValueError(f"`augment` must be a bool or a collection of {AUGMENTATIONS}; got {augment!r}.")
    return frozenset(augment)


def _stack_padded(videos: list[torch.Tensor]) -> torch.Tensor:
    """Stack `[F, 3, H_i, W_i]` tensors into `[B, F, 3, max H_i, max W_i]`, zero-padded at the bottom and right."""
    height, width = max(video.shape[-2] for video in videos), max(video.shape[-1] for video in videos)
    if all(video.shape[-2:] == (height, width) for video in videos):
        return torch.stack(videos)
    stacked = videos[0].new_zeros(len(videos), *videos[0].shape[:-2], height, width)
    for index, video in enumerate(videos):
        stacked[index, ..., : video.shape[-2], : video.shape[-1]] = video
    return stacked
