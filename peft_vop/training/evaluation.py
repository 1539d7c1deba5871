"""Periodic retrieval evaluation during training, sharded over processes."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import torch
from accelerate import Accelerator
from torch.utils.data import DataLoader, Dataset

from peft_vop.retrieval import compute_retrieval_metrics


# Rank metrics: lower is better. Everything else (recalls, their sum) is higher-is-better.
LOWER_IS_BETTER: tuple[str, ...] = ("MdR", "MnR")


@dataclass
class EvalData:
    """
    What retrieval evaluation needs: the videos, the captions, and which video each caption describes.

    Args:
        videos (`torch.utils.data.Dataset`):
            One item per video; `video_collate_fn` turns a list of items into `{"pixel_values": [B, F, 3, H, W]}`.
        captions (`torch.utils.data.Dataset`):
            One item per caption; `caption_collate_fn` turns a list of items into `input_ids`/`attention_mask`.
        caption_video (`Sequence[int]`):
            For caption `j`, the index of its video in `videos` (several captions may share a video).
        video_collate_fn (`Callable`): batches video items.
        caption_collate_fn (`Callable`): batches caption items.
    """

    videos: Dataset
    captions: Dataset
    caption_video: Sequence[int]
    video_collate_fn: Callable[[list[Any]], dict[str, torch.Tensor]]
    caption_collate_fn: Callable[[list[Any]], dict[str, torch.Tensor]]

    def __post_init__(self) -> None:
        if len(self.caption_video) != len(self.captions):
            raise ValueError(
                f"`caption_video` must give a video for each of the {len(self.captions)} captions; got "
                f"{len(self.caption_video)} entries."
            )


def is_better(metric: str, value: float, best: float | None) -> bool:
    """Whether `value` of `metric` improves on `best` (`None`: nothing measured yet)."""
    if best is None:
        return True
    if metric.rsplit("/", 1)[-1] in LOWER_IS_BETTER:
        return value < best
    return value > best


@torch.no_grad()
def embed(accelerator: Accelerator, encoder: torch.nn.Module, loader: DataLoader, modality: str) -> torch.Tensor:
    """
    Embed every item of a prepared (sharded) loader and gather the embeddings of all processes, in dataset order.

    Args:
        accelerator (`accelerate.Accelerator`): the run's accelerator.
        encoder (`torch.nn.Module`): the prepared `VideoTextEncoder`.
        loader (`torch.utils.data.DataLoader`): a loader passed through `accelerator.prepare`.
        modality (`str`): `"video"` or `"text"`.

    Returns:
        `torch.Tensor` of shape `[len(dataset), P]`, float32, on every process.
    """
    chunks = []
    for batch in loader:
        video_embeds, text_embeds = encoder(**batch)
        embeds = video_embeds if modality == "video" else text_embeds
        # gather_for_metrics drops the samples accelerate repeated to give every process a full last batch.
        chunks.append(accelerator.gather_for_metrics(embeds.float().contiguous()))
    return torch.cat(chunks)


def prepare_eval_loaders(
    accelerator: Accelerator, eval_data: EvalData, batch_size: int, num_workers: int
) -> tuple[DataLoader, DataLoader]:
    """Build and prepare the (unshuffled, sharded) video and caption loaders of `eval_data`."""
    videos = DataLoader(
        eval_data.videos, batch_size=batch_size, collate_fn=eval_data.video_collate_fn, num_workers=num_workers
    )
    captions = DataLoader(
        eval_data.captions, batch_size=batch_size, collate_fn=eval_data.caption_collate_fn, num_workers=num_workers
    )
    return accelerator.prepare_data_loader(videos), accelerator.prepare_data_loader(captions)


def evaluate_during_training(
    accelerator: Accelerator,
    encoder: torch.nn.Module,
    loaders: tuple[DataLoader, DataLoader],
    caption_video: Sequence[int],
) -> dict[str, float]:
    """
    Periodic evaluation of a training run: embed the evaluation videos and captions sharded over the processes,
    gather the embeddings, and compute retrieval metrics in both directions (`peft_vop.retrieval`'s).

    Args:
        accelerator (`accelerate.Accelerator`): the run's accelerator.
        encoder (`torch.nn.Module`): the prepared `VideoTextEncoder`.
        loaders (`tuple`): the prepared video and caption loaders from [`prepare_eval_loaders`].
        caption_video (`Sequence[int]`): the video index of every caption.

    Returns:
        `dict[str, float]`: `t2v/R@1`, `t2v/R@5`, `t2v/R@10`, `t2v/MdR`, `t2v/MnR`, the same for `v2t/`, and
        `rsum` (the sum of the six recalls), identical on every process.
    """
    was_training = encoder.training
    encoder.eval()
    video_embeds = embed(accelerator, encoder, loaders[0], "video")  # [V, P]
    text_embeds = embed(accelerator, encoder, loaders[1], "text")  # [T, P]
    encoder.train(was_training)
    result = compute_retrieval_metrics(text_embeds.cpu(), video_embeds.cpu(), torch.as_tensor(list(caption_video)))
    metrics = {}
    for direction, values in (("t2v", result.text_to_video), ("v2t", result.video_to_text)):
        metrics.update(
            {f"{direction}/{name}": float(value) for name, value in values.to_dict().items() if name != "queries"}
        )
    metrics["rsum"] = sum(value for name, value in metrics.items() if "/R@" in name)
    return metrics
