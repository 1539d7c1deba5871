"""Retrieval experiments on the synthetic world: evaluation with the order-sensitive pairs, and a training run.

Used by `vop demo` and `benchmarks/bench_synthetic.py`. The order-sensitive pairs are what makes the world a test of
temporal modelling: every validation/test clip has a partner with the same frames played backwards and the
opposite caption, so a model blind to frame order scores about 50% on them (exactly 50% up to the last bits: averaging the
same frames in another order can break a tie either way).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from ..data.dataset import VideoTextDataset
from ..data.preprocessing import FramePreprocessor
from ..data.records import VideoRecord, read_annotations
from ..retrieval.evaluation import embed_dataset
from ..retrieval.metrics import compute_retrieval_metrics


@dataclass
class SplitEmbeddings:
    """Embeddings of one split and how captions, videos and order partners relate.

    Args:
        text_embeds (`torch.Tensor` of shape `[T, P]`): caption embeddings (not normalised).
        video_embeds (`torch.Tensor` of shape `[V, P]`): unit-norm video embeddings.
        text_to_video (`torch.LongTensor` of shape `[T]`): the video of each caption.
        video_partner (`torch.LongTensor` of shape `[V]`): each video's order partner, `-1` for none.
    """

    text_embeds: torch.Tensor
    video_embeds: torch.Tensor
    text_to_video: torch.Tensor
    video_partner: torch.Tensor


def order_pair_accuracy(embeddings: SplitEmbeddings) -> dict[str, float | int]:
    """How often the right member of an order pair wins against its time-reversed partner, in percent.

    Text to video: for each caption of a paired video, the similarity to its own video against the similarity to
    the partner. Video to text: for each paired video, its best caption against the partner's best caption. A win
    counts 1, a tie 0.5. An order-blind model ties every pair up to rounding (the same frames averaged in another
    order differ in the last bits), so it scores about 50%.

    Args:
        embeddings (`SplitEmbeddings`): the split's embeddings.

    Returns:
        `dict` with `t2v` and `v2t` (percent) and `pairs` (number of paired videos).
    """
    texts = torch.nn.functional.normalize(embeddings.text_embeds.float(), dim=-1)
    videos = embeddings.video_embeds.float()
    similarity = texts @ videos.T  # [T, V]
    partner = embeddings.video_partner
    own = embeddings.text_to_video
    paired_texts = partner[own] >= 0
    if not bool(paired_texts.any()):
        raise ValueError("No caption of this split belongs to an order pair; order-pair accuracy is undefined.")
    rows = torch.arange(len(own))[paired_texts]
    t2v = _wins(similarity[rows, own[rows]], similarity[rows, partner[own[rows]]])

    # best_caption[v, u]: the highest similarity of video v to any caption of video u.
    best_caption = torch.full((len(videos), len(videos)), float("-inf")).scatter_reduce(
        1, own.expand(len(videos), -1), similarity.T, reduce="amax"
    )
    paired_videos = torch.nonzero(partner >= 0).flatten()
    v2t = _wins(best_caption[paired_videos, paired_videos], best_caption[paired_videos, partner[paired_videos]])
    return {"t2v": t2v, "v2t": v2t, "pairs": int(len(paired_videos))}


def _wins(own: torch.Tensor, other: torch.Tensor) -> float:
    return float(((own > other).float() + 0.5 * (own == other).float()).mean() * 100)


def read_order_partners(annotations: str | Path, records: list[VideoRecord]) -> torch.Tensor:
    """Each record's order partner (its position in `records`) from the world's `order_pair` field; -1 for none."""
    partner_id = {}
    with open(annotations, encoding="utf-8") as file:
        for line in file:
            if line.strip():
                entry = json.loads(line)
                partner_id[entry["id"]] = entry.get("order_pair")
    position = {record.id: index for index, record in enumerate(records)}
    return torch.tensor([position.get(partner_id.get(record.id), -1) for record in records], dtype=torch.long)


def embed_split(
    model: Any,
    tokenizer: Any,
    preprocessor: FramePreprocessor,
    annotations: str | Path,
    split: str,
    *,
    num_frames: int = 12,
    batch_size: int = 16,
    text_batch_size: int = 256,
    num_workers: int = 0,
    cache: str | Path | None = None,
    progress: bool = True,
) -> SplitEmbeddings:
    """Encode every video (uniform sampling) and caption of one split of a world with `vop eval`'s embedding
    (`peft_vop.retrieval.embed_dataset`), and read each video's order partner.

    The batch sizes default to `vop eval`'s, so the embeddings — and the metrics — are the ones `vop eval` reports.
    """
    records = read_annotations(annotations, split=split)
    dataset = VideoTextDataset(records, preprocessor, num_frames=num_frames, cache=cache)
    embeddings = embed_dataset(
        model,
        tokenizer,
        dataset,
        batch_size=batch_size,
        num_workers=num_workers,
        text_batch_size=text_batch_size,
        max_length=min(tokenizer.model_max_length, _text_positions(model)),
        progress=progress,
    )
    return SplitEmbeddings(
        text_embeds=embeddings.text_embeds,
        video_embeds=embeddings.video_embeds,
        text_to_video=embeddings.text_to_video,
        video_partner=read_order_partners(annotations, records),
    )


def _text_positions(model: Any) -> int:
    base = model.get_base_model() if hasattr(model, "get_base_model") else model
    return base.config.text_config.max_position_embeddings


def retrieval_summary(embeddings: SplitEmbeddings) -> dict[str, Any]:
    """Standard metrics in both directions plus order-pair accuracy (when the split has pairs)."""
    result = compute_retrieval_metrics(embeddings.text_embeds, embeddings.video_embeds, embeddings.text_to_video)
    summary = result.to_dict()
    if bool((embeddings.video_partner >= 0).any()):
        summary["order_pairs"] = order_pair_accuracy(embeddings)
    return summary
