"""Which frames of a video are fed to the model: F equal segments, one frame from each."""

from __future__ import annotations

from typing import Literal

import numpy as np


SamplingMode = Literal["uniform", "rand"]
SAMPLING_MODES: tuple[str, ...] = ("uniform", "rand")


def frame_segments(num_video_frames: int, num_frames: int) -> list[tuple[int, int]]:
    """Split the frames of a video into `num_frames` equal segments.

    Segment `k` is the half-open range `[floor(k * N / F), floor((k + 1) * N / F))`. When the video has fewer
    frames than `num_frames`, some segments would be empty; those are widened to the single frame they start
    at, so short videos repeat frames instead of failing.

    Args:
        num_video_frames (`int`):
            Number of frames `N` in the video.
        num_frames (`int`):
            Number of segments `F`, one sampled frame each.

    Returns:
        `list[tuple[int, int]]`: `F` `(start, end)` pairs, `start < end <= N`.
    """
    if num_video_frames < 1:
        raise ValueError(f"`num_video_frames` must be at least 1 to sample from a video; got {num_video_frames}.")
    if num_frames < 1:
        raise ValueError(f"`num_frames` must be at least 1; got {num_frames}.")
    bounds = [k * num_video_frames // num_frames for k in range(num_frames + 1)]
    return [(start, max(end, start + 1)) for start, end in zip(bounds[:-1], bounds[1:])]


def sample_frame_indices(
    num_video_frames: int,
    num_frames: int,
    mode: SamplingMode = "uniform",
    rng: np.random.Generator | None = None,
) -> list[int]:
    """Choose one frame index in each of `num_frames` equal segments of a video (VoP/X-Pool sampling).

    `"uniform"` takes the middle frame of every segment (the lower middle for an even-length segment) and is
    used for evaluation; `"rand"` takes a frame uniformly at random within every segment and is used for
    training.

    Args:
        num_video_frames (`int`):
            Number of frames in the video.
        num_frames (`int`):
            Number of frames to sample (`F`, 12 in the paper).
        mode (`str`, *optional*, defaults to `"uniform"`):
            `"uniform"` or `"rand"`.
        rng (`numpy.random.Generator`, *optional*):
            Source of randomness for `"rand"`; required in that mode so that sampling is reproducible.

    Returns:
        `list[int]`: `num_frames` non-decreasing frame indices in `[0, num_video_frames)`.

    Example:

    ```python
    >>> from peft_vop.data import sample_frame_indices
    >>> sample_frame_indices(120, 12)
    [4, 14, 24, 34, 44, 54, 64, 74, 84, 94, 104, 114]
    >>> sample_frame_indices(5, 8)
    [0, 0, 1, 1, 2, 3, 3, 4]
    ```
    """
    if mode not in SAMPLING_MODES:
        raise ValueError(f"`mode` must be one of {SAMPLING_MODES}; got {mode!r}.")
    segments = frame_segments(num_video_frames, num_frames)
    if mode == "uniform":
        return [(start + end - 1) // 2 for start, end in segments]
    if rng is None:
        raise ValueError(
            '`rng` (a `numpy.random.Generator`) is required for `mode="rand"` so that sampling is seeded.'
        )
    return [int(rng.integers(start, end)) for start, end in segments]
