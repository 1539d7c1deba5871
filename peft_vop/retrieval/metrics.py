"""Retrieval metrics from text and video embeddings, computed chunk by chunk.

For every query, the *rank* is the 0-based position of its correct item among all candidates, and

- R@K = percentage of queries with rank < K (K = 1, 5, 10),
- MdR = median rank + 1, MnR = mean rank + 1.

Ties are counted pessimistically: a candidate that scores as high as the correct one is ranked before it. A model
that cannot tell items apart (e.g. identical embeddings) therefore scores at the bottom, never at the top (with
optimistic ties it would score R@1 = 100; with ties averaged, it would depend on the tie-breaking of a sort).
"As high" allows for rounding: a matrix product does not compute identical columns bit for bit alike (BLAS blocks
them differently), so scores are computed in float64 and a candidate within `1e-9` of the correct score (relative to
it, for DSL scores, which span many orders of magnitude) counts as a tie.

Text-to-video: every caption is a query; its correct item is the video it describes. Video-to-text with several
captions per video (MSVD): a video's rank is the rank of its best-scoring caption, counting only captions of other
videos as competitors. Both reduce to the usual definitions with one caption per video.

The similarity matrix is never held whole: texts (for text-to-video) and videos (for video-to-text) are processed
`chunk_size` rows at a time, so memory stays at `chunk_size x max(T, V)` scores.

DSL (dual softmax at inference; CAMoE, used by X-Pool) rescales each score by a softmax over the *queries* for the
same candidate: text-to-video scores `S[t, v]` become `S[t, v] * softmax_t(temperature * S[:, v])`, video-to-text
scores `S[v, t]` become `S[v, t] * softmax_v(temperature * S[:, t])`. It needs every query's score at once, which
is a retrieval-time luxury (and inflates numbers), so it is off by default and results that use it say so. The
softmax normalisers are gathered in a first pass over the chunks, so DSL stays memory bounded.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch


TIE_TOLERANCE = 1e-9


@dataclass(frozen=True)
class RetrievalMetrics:
    """Recall and rank statistics of one retrieval direction.

    Args:
        r1 (`float`): R@1 in percent.
        r5 (`float`): R@5 in percent.
        r10 (`float`): R@10 in percent.
        median_rank (`float`): MdR (median of the 0-based ranks, plus one).
        mean_rank (`float`): MnR (mean of the 0-based ranks, plus one).
        num_queries (`int`): Number of queries.
    """

    r1: float
    r5: float
    r10: float
    median_rank: float
    mean_rank: float
    num_queries: int

    @classmethod
    def from_ranks(cls, ranks: torch.Tensor) -> RetrievalMetrics:
        """Compute the metrics from 0-based ranks (one per query).

        Args:
            ranks (`torch.Tensor` of shape `[Q]`): 0-based rank of each query's correct item.
        """
        if ranks.numel() == 0:
            raise ValueError("Cannot compute retrieval metrics without queries (`ranks` is empty).")
        ranks = ranks.double()
        recall = {k: float((ranks < k).double().mean() * 100) for k in (1, 5, 10)}
        # torch.median returns the lower middle value for an even count; the metric is the usual median.
        median = float(ranks.quantile(0.5)) if ranks.numel() > 1 else float(ranks[0])
        return cls(recall[1], recall[5], recall[10], median + 1, float(ranks.mean()) + 1, ranks.numel())

    def to_dict(self) -> dict[str, float | int]:
        """`{"R@1", "R@5", "R@10", "MdR", "MnR", "queries"}`."""
        return {
            "R@1": self.r1,
            "R@5": self.r5,
            "R@10": self.r10,
            "MdR": self.median_rank,
            "MnR": self.mean_rank,
            "queries": self.num_queries,
        }


@dataclass(frozen=True)
class RetrievalResult:
    """Metrics in both directions for one scoring rule.

    Args:
        text_to_video (`RetrievalMetrics`): One query per caption.
        video_to_text (`RetrievalMetrics`): One query per video with at least one caption.
        dsl (`bool`): Whether the scores were rescaled by dual softmax at inference.
        dsl_temperature (`float`, *optional*): The DSL temperature, when `dsl`.
    """

    text_to_video: RetrievalMetrics
    video_to_text: RetrievalMetrics
    dsl: bool = False
    dsl_temperature: float | None = None

    def to_dict(self) -> dict:
        """A JSON-serialisable `dict`; its `dsl` field says whether DSL was used."""
        result: dict = {"dsl": self.dsl}
        if self.dsl:
            result["dsl_temperature"] = self.dsl_temperature
        result["t2v"] = self.text_to_video.to_dict()
        result["v2t"] = self.video_to_text.to_dict()
        return result


def _check_inputs(text_embeds: torch.Tensor, video_embeds: torch.Tensor, text_to_video: torch.Tensor) -> None:
    if text_embeds.ndim != 2 or video_embeds.ndim != 2 or text_embeds.shape[1] != video_embeds.shape[1]:
        raise ValueError(
            "`text_embeds` [T, D] and `video_embeds` [V, D] must be matrices of the same width; got "
            f"{tuple(text_embeds.shape)} and {tuple(video_embeds.shape)}."
        )
    if text_to_video.shape != (text_embeds.shape[0],):
        raise ValueError(
            f"`text_to_video` must hold one video index per text ({text_embeds.shape[0]}); got shape "
            f"{tuple(text_to_video.shape)}."
        )
    if text_to_video.numel() and not 0 <= int(text_to_video.min()) <= int(text_to_video.max()) < len(video_embeds):
        raise ValueError(f"`text_to_video` holds indices outside [0, {len(video_embeds)}).")
    if not (torch.isfinite(text_embeds).all() and torch.isfinite(video_embeds).all()):
        raise ValueError("The embeddings contain NaN or infinite values; ranks would be meaningless.")


def _chunks(total: int, chunk_size: int):
    for start in range(0, total, chunk_size):
        yield start, min(start + chunk_size, total)


def _tie_tolerance(correct: torch.Tensor, dsl: bool) -> torch.Tensor | float:
    """How far below the correct score a candidate still ties with it (see the module documentation)."""
    return TIE_TOLERANCE * correct.abs() if dsl else TIE_TOLERANCE


def _captions_by_video(text_to_video: torch.Tensor, num_videos: int) -> torch.Tensor:
    """`[V, m]` indices of the captions of each video (`m` = most captions of a video), padded with -1."""
    counts = torch.bincount(text_to_video, minlength=num_videos)
    order = torch.argsort(text_to_video, stable=True)
    first = torch.cumsum(counts, dim=0) - counts  # position of each video's first caption in `order`
    slot = torch.arange(len(order)) - first[text_to_video[order]]
    table = torch.full((num_videos, max(int(counts.max()), 1) if len(counts) else 1), -1, dtype=torch.long)
    table[text_to_video[order], slot] = order
    return table


def _apply_dual_softmax(scores: torch.Tensor, temperature: float, log_normalisers: torch.Tensor) -> None:
    """`scores *= exp(temperature * scores - log_normalisers)`, in place (one extra chunk-sized buffer)."""
    weights = scores * temperature
    weights -= log_normalisers
    scores *= weights.exp_()


def _dsl_normalisers(
    text_embeds: torch.Tensor, video_embeds: torch.Tensor, temperature: float, chunk_size: int
) -> tuple[torch.Tensor, torch.Tensor]:
    """log-sum-exp of `temperature * S` over all texts per video `[V]`, and over all videos per text `[T]`."""
    over_texts = torch.full((len(video_embeds),), float("-inf"), dtype=text_embeds.dtype)
    over_videos = torch.empty(len(text_embeds), dtype=text_embeds.dtype)
    for start, end in _chunks(len(text_embeds), chunk_size):
        logits = temperature * (text_embeds[start:end] @ video_embeds.T)  # [c, V]
        over_texts = torch.logaddexp(over_texts, torch.logsumexp(logits, dim=0))
        over_videos[start:end] = torch.logsumexp(logits, dim=1)
    return over_texts, over_videos


def retrieval_ranks(
    text_embeds: torch.Tensor,
    video_embeds: torch.Tensor,
    text_to_video: torch.Tensor,
    *,
    chunk_size: int = 1024,
    dsl: bool = False,
    dsl_temperature: float = 100.0,
) -> tuple[torch.Tensor, torch.Tensor]:
    """0-based ranks of the correct items, text-to-video and video-to-text (pessimistic ties).

    Embeddings are L2-normalised here, so scores are cosine similarities.

    Args:
        text_embeds (`torch.Tensor` of shape `[T, D]`):
            One embedding per caption.
        video_embeds (`torch.Tensor` of shape `[V, D]`):
            One embedding per video.
        text_to_video (`torch.LongTensor` of shape `[T]`):
            Index of the video each caption describes.
        chunk_size (`int`, *optional*, defaults to 1024):
            Rows of the similarity matrix computed at once.
        dsl (`bool`, *optional*, defaults to `False`):
            Rescale scores by dual softmax (see the module documentation).
        dsl_temperature (`float`, *optional*, defaults to 100.0):
            Temperature of the DSL softmax (CLIP's logit scale).

    Returns:
        `tuple[torch.Tensor, torch.Tensor]`: `[T]` text-to-video ranks, and `[V']` video-to-text ranks for the
        `V'` videos that have at least one caption (in video order).
    """
    if chunk_size < 1:
        raise ValueError(f"`chunk_size` must be at least 1; got {chunk_size}.")
    text_to_video = torch.as_tensor(text_to_video, dtype=torch.long)
    _check_inputs(text_embeds, video_embeds, text_to_video)
    texts = torch.nn.functional.normalize(text_embeds.double(), dim=-1)
    videos = torch.nn.functional.normalize(video_embeds.double(), dim=-1)
    if dsl:
        over_texts, over_videos = _dsl_normalisers(texts, videos, dsl_temperature, chunk_size)

    text_ranks = torch.empty(len(texts), dtype=torch.long)
    for start, end in _chunks(len(texts), chunk_size):
        scores = texts[start:end] @ videos.T  # [c, V]
        if dsl:
            _apply_dual_softmax(scores, dsl_temperature, over_texts)
        correct = scores.gather(1, text_to_video[start:end, None])  # [c, 1]
        # Every candidate scoring as high as the correct one is ranked before it, except the correct one itself.
        text_ranks[start:end] = (scores >= correct - _tie_tolerance(correct, dsl)).sum(dim=1) - 1

    own_captions = _captions_by_video(text_to_video, len(videos))  # [V, max captions per video], -1 = none
    video_ranks = torch.empty(len(videos), dtype=torch.long)
    for start, end in _chunks(len(videos), chunk_size):
        scores = videos[start:end] @ texts.T  # [c, T]
        if dsl:
            _apply_dual_softmax(scores, dsl_temperature, over_videos)
        own = own_captions[start:end]  # [c, m]
        own_scores = scores.gather(1, own.clamp(min=0)).masked_fill_(own < 0, float("-inf"))  # [c, m]
        threshold = own_scores.amax(dim=1, keepdim=True)  # [c, 1]: the best caption of each video
        threshold = threshold - _tie_tolerance(threshold, dsl)
        # Captions scoring as high as the best one, except the video's own captions.
        video_ranks[start:end] = (scores >= threshold).sum(dim=1) - (own_scores >= threshold).sum(dim=1)
    has_caption = (own_captions >= 0).any(dim=1)
    return text_ranks, video_ranks[has_caption]


def compute_retrieval_metrics(
    text_embeds: torch.Tensor,
    video_embeds: torch.Tensor,
    text_to_video: torch.Tensor,
    *,
    chunk_size: int = 1024,
    dsl: bool = False,
    dsl_temperature: float = 100.0,
) -> RetrievalResult:
    """R@1/5/10, MdR and MnR in both directions (see `retrieval_ranks` for the arguments).

    Example:

    ```python
    >>> import torch
    >>> from peft_vop.retrieval import compute_retrieval_metrics
    >>> videos = torch.eye(3)
    >>> texts = torch.tensor([[1.0, 0.0, 0.0], [0.0, 0.0, 1.0], [0.0, 1.0, 0.0]])  # the last two are swapped
    >>> result = compute_retrieval_metrics(texts, videos, torch.tensor([0, 1, 2]))
    >>> result.text_to_video.r1, result.text_to_video.median_rank  # ranks 0, 2, 2: the tie counts against it
    (33.33333333333333, 3.0)
    ```
    """
    text_ranks, video_ranks = retrieval_ranks(
        text_embeds, video_embeds, text_to_video, chunk_size=chunk_size, dsl=dsl, dsl_temperature=dsl_temperature
    )
    return RetrievalResult(
        RetrievalMetrics.from_ranks(text_ranks),
        RetrievalMetrics.from_ranks(video_ranks),
        dsl=dsl,
        dsl_temperature=dsl_temperature if dsl else None,
    )
