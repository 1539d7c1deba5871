"""What an index holds and how it is embedded: entries (whole videos or windows) of a source, decoded and sampled
by `vop eval`'s dataset and collator, embedded by `embed_videos`."""

from __future__ import annotations

import bisect
import os
import warnings
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import torch

from ..data.dataset import VideoTextCollator, VideoTextDataset
from ..data.decoding import VideoReader
from ..data.frame_sampling import sample_frame_indices
from ..data.preprocessing import FramePreprocessor
from ..data.records import VideoRecord, read_annotations
from ..retrieval.encoding import embed_videos, video_inputs
from .model import LoadedModel


VIDEO_EXTENSIONS: tuple[str, ...] = (
    ".mp4", ".m4v", ".mov", ".mkv", ".webm", ".avi", ".mpg", ".mpeg", ".ts", ".wmv", ".flv", ".3gp", ".ogv",
)  # fmt: skip
WINDOW_TOLERANCE = 0.1


@dataclass(frozen=True)
class IndexEntry:
    """One row of an index: a whole video, or one window of it.

    Args:
        id (`str`):
            The video's path relative to the source folder, or its id in the annotation file.
        path (`str`):
            Absolute path of the video file.
        start (`float`, *optional*):
            Start of the window in seconds; `None` for a whole video.
        end (`float`, *optional*):
            End of the window in seconds; `None` for a whole video.
        duration (`float`):
            Length of the whole video in seconds (`None` only while a whole video waits to be embedded: its
            decoding worker reads it).
        size (`int`):
            File size in bytes when it was embedded.
        mtime_ns (`int`):
            File modification time (nanoseconds) when it was embedded.
    """

    id: str
    path: str
    start: float | None
    end: float | None
    duration: float | None
    size: int
    mtime_ns: int

    @property
    def key(self) -> tuple[str, int, int, float | None, float | None]:
        """What identifies the entry across builds: the file, its version (size and mtime) and the window."""
        return (self.path, self.size, self.mtime_ns, self.start, self.end)


def collect_videos(source: str | os.PathLike, split: str | None = None) -> list[VideoRecord]:
    """The videos of a source: a folder (recursively, files with a video extension) or an annotation file.

    Args:
        source (`str` or `os.PathLike`):
            A directory, or an annotation file in the generic format (`.jsonl`, `.json` or `.csv`).
        split (`str`, *optional*):
            With an annotation file, only the videos of this split (default: all).

    Returns:
        `list[VideoRecord]`, paths absolute, sorted for a folder and in file order for an annotation file.
    """
    source = os.fspath(source)
    if os.path.isdir(source):
        if split is not None:
            raise ValueError(f"`split` ({split!r}) applies to an annotation file; {source} is a folder.")
        root = os.path.abspath(source)
        paths = []
        for directory, subdirectories, files in os.walk(root):
            subdirectories[:] = sorted(name for name in subdirectories if not name.startswith("."))
            paths.extend(os.path.join(directory, name) for name in files if name.lower().endswith(VIDEO_EXTENSIONS))
        return [VideoRecord(path, (), os.path.relpath(path, root)) for path in sorted(paths)]
    if os.path.isfile(source):
        records = read_annotations(source, split=split)
        in_memory = [record.id for record in records if not isinstance(record.video, str)]
        if in_memory:
            raise ValueError(f"`source` {source}: an index needs video files; {in_memory[:3]} are in-memory bytes.")
        return [VideoRecord(os.path.abspath(record.video), (), record.id) for record in records]
    raise ValueError(f"`source` must be a folder of videos or an annotation file; {source} does not exist.")


def window_bounds(duration: float, window: float, stride: float) -> list[tuple[float, float]]:
    """Windows `[start, end)` of `window` seconds every `stride` seconds; the last one ends at the video's end.

    A video at most `WINDOW_TOLERANCE` (0.1 s, a few frames) longer than a window boundary is not given an extra
    window for that sliver.

    Example:

    ```python
    >>> from peft_vop.search import window_bounds
    >>> window_bounds(10.0, 4.0, 3.0)
    [(0.0, 4.0), (3.0, 7.0), (6.0, 10.0)]
    >>> window_bounds(4.004, 4.0, 2.0)
    [(0.0, 4.004)]
    ```
    """
    if window <= 0 or stride <= 0:
        raise ValueError(f"`window` and `stride` must be positive seconds; got window={window}, stride={stride}.")
    if duration <= window + WINDOW_TOLERANCE:
        return [(0.0, round(duration, 6))]
    bounds, start = [], 0.0
    while start + window < duration - WINDOW_TOLERANCE:
        bounds.append((round(start, 6), round(start + window, 6)))
        start += stride
    bounds.append((round(duration - window, 6), round(duration, 6)))  # the tail, a whole window
    return bounds


class IndexDataset(VideoTextDataset):
    """`VideoTextDataset` over index entries: a whole video is sampled exactly as `vop eval` samples it; a window
    samples its F frames from the frames whose timestamps lie inside it, with the same uniform rule.

    Args:
        entries (`Sequence[IndexEntry]`):
            What to embed.
        preprocessor (`FramePreprocessor`):
            The checkpoint's frame preprocessing.
        num_frames (`int`):
            Frames per entry.
        on_error (`str`, *optional*, defaults to `"skip"`):
            As for `VideoTextDataset`.
    """

    def __init__(
        self, entries: Sequence[IndexEntry], preprocessor: FramePreprocessor, num_frames: int, on_error: str = "skip"
    ):
        records = [VideoRecord(entry.path, (), entry.id) for entry in entries]
        super().__init__(records, preprocessor, num_frames=num_frames, on_error=on_error)
        self.entries = entries

    def decode(self, video_index: int, epoch: int | None = None) -> tuple[torch.Tensor, list[int], list[int]]:
        entry = self.entries[video_index]
        policy = "repeat" if self.on_error == "repair" else "raise"
        with VideoReader(entry.path, name=entry.path) as reader:
            self._duration = reader.duration
            if entry.start is None:  # `read_video`'s uniform sample of the whole video
                indices = sample_frame_indices(reader.num_frames, self.num_frames)
            else:
                times = reader.frame_times
                first = min(bisect.bisect_left(times, entry.start), len(times) - 1)
                last = max(bisect.bisect_left(times, entry.end), first + 1)
                indices = [first + index for index in sample_frame_indices(last - first, self.num_frames)]
            frames, repeated = reader.read_frames(indices, on_unreadable=policy)
        return self.preprocessor.resize(frames), indices, repeated

    def __getitem__(self, index: int) -> dict[str, Any]:
        item = super().__getitem__(index)
        if "frames" in item:
            item["duration"] = round(self._duration, 6)  # read while decoding, without opening the file again
        return item


class IndexCollator(VideoTextCollator):
    """`VideoTextCollator` that also passes on each decoded video's length (`batch["duration"]`, seconds)."""

    def __call__(self, items: Sequence[dict[str, Any]]) -> dict[str, Any]:
        batch = super().__call__(items)
        batch["duration"] = [item["duration"] for item in items if "frames" in item]
        return batch


def embed_entries(
    loaded: LoadedModel, entries: Sequence[IndexEntry], *, batch_size: int, num_workers: int, on_error: str
) -> tuple[torch.Tensor, list[dict]]:
    """Embeddings `[N', P]` of the entries that could be read, and those that could not."""
    vectors, skipped = [], []
    for _, embeddings, batch_skipped, _ in embedding_batches(
        loaded, entries, batch_size=batch_size, num_workers=num_workers, on_error=on_error
    ):
        vectors.append(embeddings)
        skipped.extend(batch_skipped)
    return torch.cat(vectors) if vectors else torch.empty(0), skipped


@torch.no_grad()
def embedding_batches(loaded: LoadedModel, entries, *, batch_size: int, num_workers: int, on_error: str):
    """(`video_index [B]`, embeddings `[B, P]`, skipped videos, durations) per batch, through `vop eval`'s loader and
    `embed_videos`."""
    from torch.utils.data import DataLoader

    dataset = IndexDataset(entries, loaded.preprocessor, loaded.num_frames, on_error=on_error)
    loader = DataLoader(
        dataset,
        batch_size=batch_size,
        shuffle=False,
        num_workers=num_workers,
        collate_fn=IndexCollator(loaded.preprocessor),
    )
    parameter = next(loaded.model.parameters())
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message="Skipping a video that cannot be decoded")
        for batch in loader:
            embeddings = torch.empty(0)
            if batch["pixel_values"].shape[0] > 0:
                inputs = video_inputs(batch, parameter.device, parameter.dtype)
                embeddings = embed_videos(loaded.model, **inputs).float().cpu()
            yield batch["video_index"], embeddings, batch["skipped"], batch["duration"]
