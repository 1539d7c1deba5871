"""End-to-end retrieval evaluation of a model on a video dataset."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import torch
from torch.utils.data import DataLoader

from ..data.dataset import VideoTextCollator, VideoTextDataset
from ..data.records import VideoRecord
from .encoding import encode_texts, encode_videos
from .metrics import RetrievalResult, compute_retrieval_metrics


def pair_captions(
    records: Sequence[VideoRecord], video_rows: Sequence[int] | None = None
) -> tuple[list[str], list[int], int]:
    """Every caption of `records` as a query, with the embedding row of the video it describes.

    Args:
        records (`Sequence[VideoRecord]` or `HFVideoRecords`):
            The videos, in dataset order.
        video_rows (`Sequence[int]`, *optional*):
            The dataset position of each embedding row (`EncodedVideos.video_indices`); captions of a video without a
            row are dropped. Defaults to one row per record, in order.

    Returns:
        `tuple`: the captions, the row of each caption's video, and the number of captions dropped.
    """
    captions_per_video = records.all_captions() if hasattr(records, "all_captions") else [r.captions for r in records]
    if video_rows is None:
        video_rows = range(len(captions_per_video))
    row_of_video = {int(video_index): row for row, video_index in enumerate(video_rows)}
    captions, text_to_video, dropped = [], [], 0
    for video_index, video_captions in enumerate(captions_per_video):
        row = row_of_video.get(video_index)
        if row is None:
            dropped += len(video_captions)
            continue
        captions.extend(video_captions)
        text_to_video.extend([row] * len(video_captions))
    return captions, text_to_video, dropped


@dataclass
class DatasetEmbeddings:
    """The embeddings of every video and caption of a dataset, and how they pair.

    Args:
        text_embeds (`torch.FloatTensor` of shape `[T, P]`):
            Caption embeddings (not normalised), on the CPU.
        video_embeds (`torch.FloatTensor` of shape `[V, P]`):
            Unit-norm embeddings of the videos that could be encoded, on the CPU.
        text_to_video (`torch.LongTensor` of shape `[T]`):
            The row in `video_embeds` of each caption's video.
        skipped (`list[dict]`):
            Videos left out by the dataset's error policy.
        repaired (`list[dict]`):
            Videos whose unreadable frames were repeated.
        dropped_captions (`int`):
            Captions of skipped videos (not embedded).
    """

    text_embeds: torch.Tensor
    video_embeds: torch.Tensor
    text_to_video: torch.Tensor
    skipped: list[dict[str, Any]] = field(default_factory=list)
    repaired: list[dict[str, Any]] = field(default_factory=list)
    dropped_captions: int = 0


def embed_dataset(
    model: Any,
    tokenizer: Any,
    dataset: VideoTextDataset,
    *,
    batch_size: int = 16,
    num_workers: int = 0,
    text_batch_size: int = 256,
    max_length: int | None = None,
    progress: bool = True,
) -> DatasetEmbeddings:
    """Encode every video of `dataset` (in order, one batch of frames in memory at a time) and every caption.

    Args:
        model (`transformers.CLIPModel` or `peft.PeftModel`):
            A plain CLIP (frames mean-pooled) or a CLIP with a VoP adapter; put in eval mode.
        tokenizer (`transformers.PreTrainedTokenizerBase`):
            The checkpoint's tokenizer.
        dataset (`VideoTextDataset`):
            The videos.
        batch_size (`int`, *optional*, defaults to 16):
            Videos per forward pass.
        num_workers (`int`, *optional*, defaults to 0):
            DataLoader workers decoding videos.
        text_batch_size (`int`, *optional*, defaults to 256):
            Captions per forward pass.
        max_length (`int`, *optional*):
            Token limit; defaults to the tokenizer's `model_max_length`.
        progress (`bool`, *optional*, defaults to `True`):
            Show progress bars.

    Returns:
        `DatasetEmbeddings`.
    """
    model.eval()
    loader = DataLoader(
        dataset,
        batch_size=batch_size,
        shuffle=False,
        num_workers=num_workers,
        collate_fn=VideoTextCollator(dataset.preprocessor),
    )
    encoded = encode_videos(model, loader, progress=progress)
    captions, text_to_video, dropped = pair_captions(dataset.records, encoded.video_indices.tolist())
    if not captions:
        raise ValueError("The dataset has no captions for the videos that could be encoded.")
    text_embeds = encode_texts(
        model, tokenizer, captions, batch_size=text_batch_size, max_length=max_length, progress=progress
    )
    return DatasetEmbeddings(
        text_embeds=text_embeds,
        video_embeds=encoded.embeddings,
        text_to_video=torch.tensor(text_to_video, dtype=torch.long),
        skipped=encoded.skipped,
        repaired=encoded.repaired,
        dropped_captions=dropped,
    )


@dataclass
class EvaluationReport:
    """Retrieval results on a dataset, with what was left out.

    Args:
        results (`list[RetrievalResult]`):
            The plain result, then the DSL result when DSL was asked for.
        num_videos (`int`):
            Videos encoded (candidates for text-to-video).
        num_texts (`int`):
            Captions used as queries.
        skipped (`list[dict]`):
            Videos that could not be decoded and were left out (with their captions), by the dataset's error policy.
        repaired (`list[dict]`):
            Videos with unreadable frames that repeat the last good frame (`on_error="repair"`).
        dropped_captions (`int`):
            Captions not used as queries because their video was skipped.
    """

    results: list[RetrievalResult]
    num_videos: int
    num_texts: int
    skipped: list[dict[str, Any]] = field(default_factory=list)
    repaired: list[dict[str, Any]] = field(default_factory=list)
    dropped_captions: int = 0

    def to_dict(self) -> dict[str, Any]:
        """A JSON-serialisable summary."""
        return {
            "num_videos": self.num_videos,
            "num_texts": self.num_texts,
            "ties": "pessimistic",
            "results": [result.to_dict() for result in self.results],
            "skipped_videos": len(self.skipped),
            "skipped": self.skipped,
            "dropped_captions": self.dropped_captions,
            "repaired_videos": len(self.repaired),
            "repaired": self.repaired,
        }

    def format_table(self) -> str:
        """The metrics as a plain-text table, one row per direction; rows computed with DSL are labelled."""
        header = f"{'':<10}{'R@1':>8}{'R@5':>8}{'R@10':>8}{'MdR':>8}{'MnR':>8}"
        lines = [header, "-" * len(header)]
        for result in self.results:
            label = " (DSL)" if result.dsl else ""
            for name, metrics in (("t2v", result.text_to_video), ("v2t", result.video_to_text)):
                lines.append(
                    f"{name + label:<10}{metrics.r1:>8.1f}{metrics.r5:>8.1f}{metrics.r10:>8.1f}"
                    f"{metrics.median_rank:>8.1f}{metrics.mean_rank:>8.1f}"
                )
        lines.append(f"{self.num_videos} videos, {self.num_texts} captions; ties ranked pessimistically.")
        if self.skipped:
            lines.append(
                f"{len(self.skipped)} videos could not be decoded and were left out, with their "
                f"{self.dropped_captions} captions."
            )
        if self.repaired:
            lines.append(f"{len(self.repaired)} videos had unreadable frames replaced by the last good frame.")
        return "\n".join(lines)


def evaluate_retrieval(
    model: Any,
    tokenizer: Any,
    dataset: VideoTextDataset,
    *,
    batch_size: int = 16,
    num_workers: int = 0,
    text_batch_size: int = 256,
    max_length: int | None = None,
    chunk_size: int = 1024,
    dsl: bool = False,
    dsl_temperature: float = 100.0,
    progress: bool = True,
) -> EvaluationReport:
    """Encode every video and caption of `dataset` and compute text-video retrieval metrics.

    Videos are encoded batch by batch from a DataLoader (one batch of frames in memory at a time); only their
    embeddings are kept. Every caption is a text-to-video query.

    Args:
        model (`transformers.CLIPModel` or `peft.PeftModel`):
            A plain CLIP (frames mean-pooled) or a CLIP with a VoP adapter.
        tokenizer (`transformers.PreTrainedTokenizerBase`):
            The checkpoint's tokenizer.
        dataset (`VideoTextDataset`):
            The evaluation videos (normally `sampling="uniform"`, `train=False`).
        batch_size (`int`, *optional*, defaults to 16):
            Videos per forward pass.
        num_workers (`int`, *optional*, defaults to 0):
            DataLoader workers decoding videos.
        text_batch_size (`int`, *optional*, defaults to 256):
            Captions per forward pass.
        max_length (`int`, *optional*):
            Token limit; defaults to the tokenizer's `model_max_length`.
        chunk_size (`int`, *optional*, defaults to 1024):
            Rows of the similarity matrix computed at once.
        dsl (`bool`, *optional*, defaults to `False`):
            Also report results with dual softmax at inference (labelled as such).
        dsl_temperature (`float`, *optional*, defaults to 100.0):
            DSL temperature.
        progress (`bool`, *optional*, defaults to `True`):
            Show progress bars.

    Returns:
        `EvaluationReport`.
    """
    embeddings = embed_dataset(
        model,
        tokenizer,
        dataset,
        batch_size=batch_size,
        num_workers=num_workers,
        text_batch_size=text_batch_size,
        max_length=max_length,
        progress=progress,
    )
    text_embeds, video_embeds, targets = embeddings.text_embeds, embeddings.video_embeds, embeddings.text_to_video
    results = [compute_retrieval_metrics(text_embeds, video_embeds, targets, chunk_size=chunk_size)]
    if dsl:
        results.append(
            compute_retrieval_metrics(
                text_embeds,
                video_embeds,
                targets,
                chunk_size=chunk_size,
                dsl=True,
                dsl_temperature=dsl_temperature,
            )
        )
    return EvaluationReport(
        results=results,
        num_videos=len(video_embeds),
        num_texts=len(text_embeds),
        skipped=embeddings.skipped,
        repaired=embeddings.repaired,
        dropped_captions=embeddings.dropped_captions,
    )
