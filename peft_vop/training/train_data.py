"""The data of a `vop train` run: datasets read with `peft_vop.data` from what the config names, the loader
settings chosen from the machine, and the clock of how long the step waits for data.

Building the datasets reads annotations, frame-cache manifests and the checkpoint's processor and tokenizer files
only; no video is decoded, so every problem found here surfaces before a model is loaded.

Training batches leave the loader workers as `uint8` frames with their crop boxes; [`device_step`] gives the
step's data preparation that crops, resizes, flips and normalises them on the training device.
"""

from __future__ import annotations

import contextlib
import os
import time
import warnings
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass
from typing import Any

import torch

from peft_vop.data import (
    DeviceFramePreprocessor,
    FrameCache,
    FramePreprocessor,
    VideoRecord,
    VideoTextCollator,
    VideoTextDataset,
)

from ..data.preprocessing import caption_tokenizer
from ..model_names import resolve_model_name
from ..retrieval import pair_captions
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
        tokenizer = caption_tokenizer(AutoTokenizer.from_pretrained(model_name_or_path), model_name_or_path)
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
    on `(seed, epoch, video)` only. Workers hand over `uint8` frames and crop boxes; [`device_step`] of the collator
    does the rest on the device.
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
        device_preprocessing=True,
    )
    return dataset, VideoTextCollator(preprocessor, tokenizer)


def device_step(collate_fn: Callable[..., Any] | None) -> Callable[[dict[str, Any]], dict[str, Any]]:
    """
    The training step's data preparation for batches of `collate_fn`, run once the batch is on the device.

    Returns:
        `Callable`: [`peft_vop.data.DeviceFramePreprocessor`] for `peft_vop`'s own collator (it crops, resizes, flips
        and normalises `uint8` frames there); for any other collator, a function that returns the batch unchanged.
    """
    if isinstance(collate_fn, VideoTextCollator):
        return DeviceFramePreprocessor(collate_fn.preprocessor)
    return _unchanged


def _unchanged(batch: dict[str, Any]) -> dict[str, Any]:
    return batch


@dataclass(frozen=True)
class LoaderSettings:
    """
    How the training loader runs on this machine (see [`choose_loader_settings`]).

    Args:
        num_workers (`int`): loader worker processes per training process.
        prefetch_factor (`int`, *optional*): batches each worker prepares ahead (`None` without workers).
        persistent_workers (`bool`): whether workers live across epochs.
        pin_memory (`bool`): whether batches are pinned, so that copies to the GPU are asynchronous.
    """

    num_workers: int
    prefetch_factor: int | None
    persistent_workers: bool
    pin_memory: bool

    def loader_kwargs(self) -> dict[str, Any]:
        """These settings as `torch.utils.data.DataLoader` keyword arguments."""
        return {
            "num_workers": self.num_workers,
            "prefetch_factor": self.prefetch_factor,
            "persistent_workers": self.persistent_workers,
            "pin_memory": self.pin_memory,
        }


# Loader workers per GPU process: a cached worker only reads uint8 frames (hundreds of videos/s each), a decoding
# worker decodes and resizes (a few dozen videos/s each), so decoding takes every core there is.
MAX_CACHED_WORKERS = 4
MAX_DECODING_WORKERS = 16


def available_cores() -> int:
    """CPU cores this process may run on (its affinity mask, which containers and `taskset` narrow)."""
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1


def choose_loader_settings(
    num_workers: int | None,
    *,
    use_cpu: bool,
    cached: bool,
    num_processes: int = 1,
    cores: int | None = None,
) -> LoaderSettings:
    """
    Loader workers and prefetching for `vop train`, chosen from the machine unless `num_workers` is given.

    - **On CPUs**: no workers for cached frames (reading them is cheap, and worker processes would take cores from
      the model's threads, where one busy core stalls every parallel op of the step); 2 workers when decoding (slow
      and single-threaded, worth overlapping with the step), at most one fewer than the cores.
    - **On GPUs**: the cores are shared by the processes of the machine, one left to each process's main loop; of
      the rest, up to 4 workers read a frame cache, up to 16 decode.
    - Every worker prefetches 4 batches from a cache (cheap to hold ahead) or 2 when decoding, and workers persist
      across epochs. Batches are pinned on GPUs, so the step copies them with `non_blocking=True`.

    Args:
        num_workers (`int`, *optional*): workers per process; `None` chooses.
        use_cpu (`bool`): whether training runs on CPUs.
        cached (`bool`): whether frames come from a frame cache (`vop prepare`) instead of the videos.
        num_processes (`int`, defaults to 1): training processes on this machine.
        cores (`int`, *optional*): CPU cores to plan with; defaults to [`available_cores`].

    Returns:
        [`LoaderSettings`].
    """
    if num_workers is not None and num_workers < 0:
        raise ValueError(f"`num_workers` must be 0 or more; got {num_workers}.")
    cores = available_cores() if cores is None else cores
    spare = max(cores // max(num_processes, 1) - 1, 1)
    if num_workers is None:
        if use_cpu:
            num_workers = 0 if cached else min(2, spare)
        else:
            num_workers = min(MAX_CACHED_WORKERS if cached else MAX_DECODING_WORKERS, spare)
    return LoaderSettings(
        num_workers=num_workers,
        prefetch_factor=(4 if cached else 2) if num_workers else None,
        persistent_workers=num_workers > 0,
        pin_memory=not use_cpu,
    )


class DataWaitClock:
    """
    Measures how much of the training time the step spends waiting for its next batch.

    Iterate the loader through [`batches`]; wrap work that is not training (evaluation, checkpoints) in
    [`paused`]; call [`stop`] when training ends. `fraction` is then the time spent inside the loader's `next` over
    the training time.
    """

    def __init__(self) -> None:
        self.waited = 0.0
        self.paused_seconds = 0.0
        self.started: float | None = None
        self.stopped: float | None = None

    def stop(self) -> None:
        """End the training time here, so that `elapsed` and `fraction` stay what they are when read later."""
        self.stopped = time.perf_counter()

    def batches(self, loader: Iterable[Any]) -> Iterator[Any]:
        """Yield the batches of `loader`, adding the time each took to arrive to `waited`."""
        if self.started is None:
            self.started = time.perf_counter()
        iterator = iter(loader)
        while True:
            start = time.perf_counter()
            try:
                batch = next(iterator)
            except StopIteration:
                return
            finally:
                self.waited += time.perf_counter() - start
            yield batch

    @contextlib.contextmanager
    def paused(self) -> Iterator[None]:
        """Leave the time spent inside this block out of the training time."""
        start = time.perf_counter()
        try:
            yield
        finally:
            self.paused_seconds += time.perf_counter() - start

    @property
    def elapsed(self) -> float:
        """Training time: since the first batch was asked for until `stop` (or now), less the paused time."""
        if self.started is None:
            return 0.0
        end = time.perf_counter() if self.stopped is None else self.stopped
        return end - self.started - self.paused_seconds

    @property
    def fraction(self) -> float | None:
        """`waited / elapsed`, or `None` before any training time."""
        elapsed = self.elapsed
        return self.waited / elapsed if elapsed > 0 else None


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
    captions, caption_video, _ = pair_captions(records)
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
