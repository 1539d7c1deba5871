"""Building a frame cache: `build_frame_cache` decodes the sampled frames of a dataset's videos into a cache
directory (the layout and the reader are in `peft_vop.data.cache`).
"""

from __future__ import annotations

import contextlib
import os
import sys
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import torch
from safetensors.torch import save_file

from .._atomic import clean_up, write_file, write_json
from .cache import CACHE_FORMAT, CACHE_VERSION, MANIFEST_NAME, FrameCache, frames_checksum
from .dataset import VideoTextDataset
from .decoding import VideoDecodeError
from .records import check_unique_ids


LOCK_NAME = ".lock"


@contextlib.contextmanager
def _build_lock(directory: str) -> Iterator[None]:
    """Hold an exclusive lock on the cache directory; a second builder waits for it."""
    try:
        import fcntl
    except ImportError:  # not POSIX: no lock
        yield
        return
    with open(os.path.join(directory, LOCK_NAME), "a") as lock:
        try:
            fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            print(f"Waiting for another build of the frame cache {directory} to finish...", file=sys.stderr)
            fcntl.flock(lock, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(lock, fcntl.LOCK_UN)


@dataclass
class CacheBuildReport:
    """What `build_frame_cache` did.

    Args:
        stored (`int`):
            Videos decoded and written.
        reused (`int`):
            Videos already in the cache with an unchanged source.
        failed (`list[tuple[str, str]]`):
            `(name, reason)` of the videos that could not be decoded (not stored).
        repaired (`list[tuple[str, int]]`):
            `(name, repeated frames)` of the stored videos with unreadable frames (`on_error="repair"`).
        missing_shards (`int`):
            Entries found in the manifest whose shard file was missing (decoded again if in `dataset`).
    """

    stored: int = 0
    reused: int = 0
    failed: list[tuple[str, str]] = field(default_factory=list)
    repaired: list[tuple[str, int]] = field(default_factory=list)
    missing_shards: int = 0


class _DecodeJobs(torch.utils.data.Dataset):
    """The videos a build must decode, for a DataLoader with workers; failures come back as values."""

    def __init__(self, dataset: VideoTextDataset, video_indices: list[int]):
        self.dataset = dataset
        self.video_indices = video_indices

    def __len__(self) -> int:
        return len(self.video_indices)

    def __getitem__(self, index: int) -> dict[str, Any]:
        video_index = self.video_indices[index]
        # Taken before decoding: if the file changes meanwhile, the entry is stale at once, never wrongly current.
        fingerprint = self.dataset.records[video_index].fingerprint()
        try:
            frames, frame_indices, repeated = self.dataset.decode(video_index, epoch=0)
        except VideoDecodeError as error:
            if self.dataset.on_error == "raise":
                raise
            return {"video_index": video_index, "error": error.reason}
        return {
            "video_index": video_index,
            "fingerprint": fingerprint,
            "frames": frames,
            "frame_indices": frame_indices,
            "repeated": repeated,
        }


def build_frame_cache(
    dataset: VideoTextDataset,
    directory: str | os.PathLike,
    *,
    num_workers: int = 0,
    shard_size_mb: float = 512,
    overwrite: bool = False,
    progress: bool = True,
) -> CacheBuildReport:
    """Decode the sampled frames of every video of `dataset` into a frame cache.

    The build is incremental: videos already cached with an unchanged source are kept; new or changed ones are
    decoded (with `rand` sampling, the epoch-0 draw). Entries of videos outside `dataset` are kept too, so one
    directory can hold the train and test splits of a benchmark.

    Args:
        dataset (`VideoTextDataset`):
            Gives the videos, the sampling settings, the resize and the error policy (`dataset.on_error`:
            `"raise"` stops at the first unreadable video; `"skip"` and `"repair"` leave it out and report it).
        directory (`str` or `os.PathLike`):
            The cache directory (created if needed).
        num_workers (`int`, *optional*, defaults to 0):
            DataLoader worker processes that decode in parallel.
        shard_size_mb (`float`, *optional*, defaults to 512):
            Size at which a shard file is closed and a new one started.
        overwrite (`bool`, *optional*, defaults to `False`):
            Discard an existing cache built with other settings instead of refusing it.
        progress (`bool`, *optional*, defaults to `True`):
            Show a progress bar.

    Returns:
        `CacheBuildReport`.
    """
    directory = os.fspath(directory)
    os.makedirs(directory, exist_ok=True)
    check_unique_ids(dataset.records)
    with _build_lock(directory):
        # Under the lock, the manifest read here includes everything an earlier concurrent build stored.
        clean_up(directory)
        return _build(dataset, directory, num_workers, shard_size_mb, overwrite, progress)


def _build(
    dataset: VideoTextDataset, directory: str, num_workers: int, shard_size_mb: float, overwrite: bool, progress: bool
) -> CacheBuildReport:
    from tqdm.auto import tqdm

    records = dataset.records
    settings = dataset.cache_settings()
    entries: dict[str, dict[str, Any]] = {}
    if os.path.isfile(os.path.join(directory, MANIFEST_NAME)):
        try:
            existing = FrameCache(directory)
        except ValueError:
            if not overwrite:
                raise
            existing = None  # an unreadable or older manifest: `overwrite` starts afresh
        if existing is not None and existing.settings == settings:
            entries = dict(existing.entries)
        elif existing is not None and not overwrite:
            existing.check_settings(settings)  # raises, listing the differences
    report = CacheBuildReport()
    todo = []
    shards_present = {name for name in os.listdir(directory) if name.endswith(".safetensors")}
    for video_index, record in enumerate(records):
        entry = entries.get(record.id)
        # An entry whose shard is gone (deleted by hand, or by a build of peft-vop < 0.2 running concurrently)
        # is decoded again.
        if entry is not None and entry["fingerprint"] == record.fingerprint() and entry["shard"] in shards_present:
            report.reused += 1
        else:
            todo.append(video_index)
    missing = [video_id for video_id, entry in entries.items() if entry["shard"] not in shards_present]
    for video_id in missing:  # also entries of videos outside `dataset`: they cannot be served any more
        del entries[video_id]

    def save_manifest() -> None:
        write_json(
            os.path.join(directory, MANIFEST_NAME),
            {"format": CACHE_FORMAT, "version": CACHE_VERSION, "settings": settings, "videos": entries},
            indent=None,
        )

    shard_limit = shard_size_mb * 1024 * 1024
    pending: dict[str, torch.Tensor] = {}
    pending_entries: dict[str, dict[str, Any]] = {}
    pending_bytes = 0

    def flush() -> None:
        nonlocal pending, pending_entries, pending_bytes
        if not pending:
            return
        shard = f"frames-{uuid.uuid4().hex[:12]}.safetensors"
        tensors = pending
        write_file(os.path.join(directory, shard), lambda path: save_file(tensors, path))
        for entry in pending_entries.values():
            entry["shard"] = shard
        entries.update(pending_entries)
        save_manifest()
        pending, pending_entries, pending_bytes = {}, {}, 0

    loader = torch.utils.data.DataLoader(
        _DecodeJobs(dataset, todo), batch_size=None, shuffle=False, num_workers=num_workers
    )
    for item in tqdm(loader, total=len(todo), desc="Decoding frames", unit="video", disable=not progress):
        record = records[item["video_index"]]
        if "error" in item:
            report.failed.append((record.name, item["error"]))
            continue
        key = str(len(pending))
        frames = item["frames"].contiguous()
        pending[key] = frames
        pending_bytes += frames.numel()
        pending_entries[record.id] = {
            "key": key,
            "name": record.name,
            "fingerprint": item["fingerprint"],
            "frame_indices": item["frame_indices"],
            "repeated": item["repeated"],
            "blake2b": frames_checksum(frames),
        }
        if item["repeated"]:
            report.repaired.append((record.name, len(item["repeated"])))
        report.stored += 1
        if pending_bytes >= shard_limit:
            flush()
    flush()
    save_manifest()
    report.missing_shards = len(missing)
    # Shards no longer named by the manifest (an overwritten cache) are removed only now that it is in place.
    referenced = {entry["shard"] for entry in entries.values()}
    for name in os.listdir(directory):
        if name.startswith("frames-") and name.endswith(".safetensors") and name not in referenced:
            os.remove(os.path.join(directory, name))
    return report
