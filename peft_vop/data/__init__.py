"""Video data for text-video retrieval: decoding, frame sampling, preprocessing, datasets and the frame cache."""

from .benchmark_readers import (
    BENCHMARKS,
    Benchmark,
    read_activitynet,
    read_benchmark,
    read_didemo,
    read_lsmdc,
    read_msrvtt,
    read_msvd,
)
from .cache import CachedFrames, FrameCache, FrameCacheError
from .cache_builder import CacheBuildReport, build_frame_cache
from .dataset import ERROR_POLICIES, VideoTextCollator, VideoTextDataset
from .decoding import DecodedVideo, VideoDecodeError, VideoReader, read_video
from .device_preprocessing import DeviceFramePreprocessor
from .frame_sampling import SAMPLING_MODES, frame_segments, sample_frame_indices
from .preprocessing import CropBox, FramePreprocessor
from .records import HFVideoRecords, VideoRecord, read_annotations, write_annotations


__all__ = [
    "BENCHMARKS",
    "ERROR_POLICIES",
    "SAMPLING_MODES",
    "Benchmark",
    "CacheBuildReport",
    "CachedFrames",
    "CropBox",
    "DecodedVideo",
    "DeviceFramePreprocessor",
    "FrameCache",
    "FrameCacheError",
    "FramePreprocessor",
    "HFVideoRecords",
    "VideoDecodeError",
    "VideoReader",
    "VideoRecord",
    "VideoTextCollator",
    "VideoTextDataset",
    "build_frame_cache",
    "frame_segments",
    "read_activitynet",
    "read_annotations",
    "read_benchmark",
    "read_didemo",
    "read_lsmdc",
    "read_msrvtt",
    "read_msvd",
    "read_video",
    "sample_frame_indices",
    "write_annotations",
]
