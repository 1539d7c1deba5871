"""The datasets of a `vop train` run, read with `peft_vop.data` from what the config names.

Building them reads annotations, frame-cache manifests and the checkpoint's processor and tokenizer files only; no
video is decoded, so every problem found here surfaces before a model is loaded.
"""

from __future__ import annotations

import os
import warnings
from collections.abc import Sequence
from typing import Any

import torch

from peft_vop.data import FrameCache, FramePreprocessor, VideoRecord, VideoTextCollator, VideoTextDataset

from ..model_names import resolve_model_name
from .config import TrainingConfig
from .evaluation import EvalData


def read_split(config: TrainingConfig, split: str) -> Sequence[VideoRecord]:
    """
    Read the videos of one split of the configured dataset and check that their files exist.

    Args:
        config ([`TrainingConfig`]): names the dataset (its [`~peft_vop.data.spec.DatasetSpec`]).
        split (`str`): the split to read.

    Returns:
        `Sequence[VideoRecord]`: the split's videos, in file order.
    """
    flag = "--train_split" if split == config.train_split else "--eval_split"
    records = config.dataset_spec().read(split, flag=flag)
    missing = [record.name for record in records if isinstance(record.video, str) and not os.path.isfile(record.video)]
    if missing:
        raise FileNotFoundError(
            f"{len(missing)} of the {len(records)} videos of split {split!r} are missing, e.g. {missing[:3]}."
        )
    without_captions = [record.name for record in records if not record.captions]
    if without_captions:
        raise ValueError(
            f"{len(without_captions)} videos of split {split!r} have no caption, e.g. {without_captions[:3]}."
        )
    return records


def load_processing(model_name_or_path: str) -> tuple[FramePreprocessor, Any]:
    """The checkpoint's frame preprocessing and tokenizer (read from its config files)."""
    from transformers import AutoTokenizer

    model_name_or_path = resolve_model_name(model_name_or_path)
    try:
        preprocessor = FramePreprocessor.from_pretrained(model_name_or_path)
        tokenizer = AutoTokenizer.from_pretrained(model_name_or_path)
    except OSError as error:
        raise FileNotFoundError(
            f"`model_name_or_path` {model_name_or_path!r} must provide an image processor and a tokenizer ({error})."
        ) from error
    return preprocessor, tokenizer


def build_train_data(config: TrainingConfig) -> tuple[VideoTextDataset, VideoTextCollator]:
    """
    The training split as a dataset of (video, one of its captions) items and the collator that batches it.

    Frames are sampled with `config.train_sampling` and augmented as `random_crop` and `horizontal_flip` say (one
    crop and one flip per clip); the caption of a video is drawn from its captions anew each epoch. All draws depend
    on `(seed, epoch, video)` only.
    """
    preprocessor, tokenizer = load_processing(config.model_name_or_path)
    records = read_split(config, config.train_split)
    cache = FrameCache(config.frame_cache) if config.frame_cache is not None else None
    records = _cached_only(records, cache, config.on_error)
    dataset = VideoTextDataset(
        records,
        preprocessor,
        num_frames=config.num_frames,
        sampling=config.train_sampling,
        train=True,
        augment=config.augmentations,
        seed=config.seed,
        on_error="raise" if config.on_error == "skip" else config.on_error,
        cache=cache,
    )
    return dataset, VideoTextCollator(preprocessor, tokenizer)


def build_eval_data(config: TrainingConfig) -> EvalData:
    """The evaluation split: its videos (uniform sampling, center crop), every caption, and caption-to-video links."""
    preprocessor, tokenizer = load_processing(config.model_name_or_path)
    records = read_split(config, config.eval_split)
    if config.max_eval_videos is not None:
        records = records[: config.max_eval_videos]
    cache = None
    seed = 0
    if config.eval_frame_cache is not None:
        cache = FrameCache(config.eval_frame_cache)
        seed = cache.settings.get("seed", 0)  # uniform sampling ignores the seed, but the cache records one
        records = _cached_only(records, cache, config.on_error)
    videos = VideoTextDataset(
        records,
        preprocessor,
        num_frames=config.num_frames,
        sampling="uniform",
        train=False,
        seed=seed,
        on_error="raise" if config.on_error == "skip" else config.on_error,
        cache=cache,
    )
    captions = [caption for record in records for caption in record.captions]
    caption_video = [index for index, record in enumerate(records) for _ in record.captions]
    collate_videos = VideoTextCollator(preprocessor)
    return EvalData(
        videos=videos,
        captions=captions,
        caption_video=caption_video,
        video_collate_fn=collate_videos,
        caption_collate_fn=CaptionCollator(tokenizer),
    )


def _cached_only(records: Sequence[VideoRecord], cache: FrameCache | None, on_error: str) -> Sequence[VideoRecord]:
    """With `on_error="skip"`, the videos the cache holds (`vop prepare --on_error skip` stores the readable ones)."""
    if on_error != "skip" or cache is None:
        return records
    kept = [record for record in records if cache.is_current(record)]
    if len(kept) < len(records):
        left_out = [record.name for record in records if not cache.is_current(record)]
        warnings.warn(
            f"on_error='skip': leaving out {len(left_out)} of {len(records)} videos the frame cache {cache.directory} "
            f"does not hold, e.g. {left_out[:3]}.",
            stacklevel=2,
        )
    return kept


class CaptionCollator:
    """Tokenise a list of caption strings into `input_ids` and `attention_mask` (picklable for loader workers)."""

    def __init__(self, tokenizer: Any) -> None:
        self.tokenizer = tokenizer

    def __call__(self, captions: list[str]) -> dict[str, torch.Tensor]:
        tokens = self.tokenizer(
            list(captions),
            padding=True,
            truncation=True,
            max_length=self.tokenizer.model_max_length,
            return_tensors="pt",
        )
        return {"input_ids": tokens["input_ids"], "attention_mask": tokens["attention_mask"]}
