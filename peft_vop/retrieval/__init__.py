"""Text-video retrieval evaluation: embeddings, chunked similarity, R@K / MdR / MnR in both directions, DSL."""

from .encoding import (
    EncodedVideos,
    embed_texts,
    embed_videos,
    encode_texts,
    encode_videos,
    is_vop_model,
    video_inputs,
)
from .evaluation import DatasetEmbeddings, EvaluationReport, embed_dataset, evaluate_retrieval, pair_captions
from .metrics import RetrievalMetrics, RetrievalResult, compute_retrieval_metrics, retrieval_ranks


__all__ = [
    "DatasetEmbeddings",
    "EncodedVideos",
    "EvaluationReport",
    "RetrievalMetrics",
    "RetrievalResult",
    "compute_retrieval_metrics",
    "embed_dataset",
    "embed_texts",
    "embed_videos",
    "encode_texts",
    "encode_videos",
    "evaluate_retrieval",
    "is_vop_model",
    "pair_captions",
    "retrieval_ranks",
    "video_inputs",
]
