"""Search your own videos: build an index of video (or window) embeddings, query it by text or by video."""

from .backends import ExactBackend, FaissBackend
from .index import BuildReport, SearchHit, VideoIndex
from .model import LoadedModel, load_model
from .videos import IndexCollator, IndexDataset, IndexEntry, collect_videos, window_bounds


__all__ = [
    "BuildReport",
    "ExactBackend",
    "FaissBackend",
    "IndexCollator",
    "IndexDataset",
    "IndexEntry",
    "LoadedModel",
    "SearchHit",
    "VideoIndex",
    "collect_videos",
    "load_model",
    "window_bounds",
]
