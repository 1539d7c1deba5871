"""An on-disk cache of sampled, resized frames, so that later epochs and evaluations do not decode again.

Layout of a cache directory::

    manifest.json                 settings + one entry per video (shard, key, source fingerprint, frame indices,
                                  blake2b checksum of the frames)
    frames-<random>.safetensors   uint8 [F, 3, H, W] tensors, one per video, several videos per shard
    .lock                         held by the build in progress

Frames are stored after the processor's resize and before any crop, so one cache serves evaluation (center crop)
and training (random resized crop) alike. The manifest records the settings that decide which frames an entry
holds (number of frames, sampling mode, seed, resize); a dataset with other settings refuses the cache with a
`ValueError` that lists the differences. Each entry also records the size and modification time of its source file
(a hash for in-memory bytes): an entry whose source changed is not used, and `build_frame_cache` decodes it again.

Writes are atomic (`peft_vop._atomic`): a shard or the manifest is written to a temporary file in the same directory
and renamed into place, so an interrupted build leaves the previous manifest (and every shard it names) intact.
Builds of one directory take turns (a file lock on `.lock`: a second `vop prepare` waits, then reuses what the first
stored), and a build re-decodes the entries whose shard is missing. Every read checks the frames against their
checksum; a corrupt or unreadable entry raises `FrameCacheError`, which the dataset handles by its `on_error`
policy.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import sys
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import torch
from safetensors import safe_open
from safetensors.torch import save_file

from .._atomic import clean_up, write_file, write_json
from .decoding import VideoDecodeError
from .records import VideoRecord, check_unique_ids


if TYPE_CHECKING:
    from .dataset import VideoTextDataset


MANIFEST_NAME = "manifest.json"
CACHE_FORMAT = "peft-vop-frame-cache"
CACHE_VERSION = 2  # 2: a checksum per video
LOCK_NAME = ".lock"


class FrameCacheError(VideoDecodeError):
    """The cached frames of a video cannot be used: their shard is missing, unreadable, or fails its checksum.

    A `VideoDecodeError`, so the dataset's `on_error` policy applies (`"repair"` decodes the video again).

    Args:
        path (`str`):
            The video.
        reason (`str`):
            What is wrong, naming the shard.
    """


def frames_checksum(frames: torch.Tensor) -> str:
    """The blake2b checksum (hex, 128 bits) of a frame tensor's bytes, stored per video in the manifest."""
    return hashlib.blake2b(frames.contiguous().numpy().data, digest_size=16).hexdigest()  # no copy


@dataclass
class CachedFrames:
    """Frames of one video read from a cache.

    Args:
        frames (`torch.Tensor` of shape `[F, 3, H, W]`, `uint8`):
            Resized frames.
        frame_indices (`list[int]`):
            The frame indices that were sampled.
        repeated (`list[int]`):
            Positions that repeat another frame because theirs was unreadable (caches built with
            `on_error="repair"`).
    """

    frames: torch.Tensor
    frame_indices: list[int]
    repeated: list[int]


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


class FrameCache:
    """Read access to a frame cache directory (build one with `build_frame_cache` or `vop prepare`).

    Args:
        directory (`str` or `os.PathLike`):
            The cache directory; it must hold a `manifest.json`.
    """

    def __init__(self, directory: str | os.PathLike):
        self.directory = os.fspath(directory)
        manifest_path = os.path.join(self.directory, MANIFEST_NAME)
        if not os.path.isfile(manifest_path):
            raise FileNotFoundError(
                f"No frame cache at {self.directory} (no {MANIFEST_NAME}); build one with `vop prepare`."
            )
        try:
            with open(manifest_path, encoding="utf-8") as file:
                manifest = json.load(file)
        except (UnicodeDecodeError, json.JSONDecodeError) as error:
            raise ValueError(
                f"{manifest_path} is truncated or corrupt ({error}); rebuild the cache with `vop prepare --overwrite`."
            ) from error
        if not isinstance(manifest, dict) or manifest.get("format") != CACHE_FORMAT:
            raise ValueError(f"{manifest_path} is not a {CACHE_FORMAT} manifest; rebuild the cache.")
        if manifest.get("version") != CACHE_VERSION:
            raise ValueError(
                f"{manifest_path} is a version-{manifest.get('version')} {CACHE_FORMAT} manifest (this peft-vop "
                f"reads version {CACHE_VERSION}, with checksums); rebuild the cache with `vop prepare --overwrite`."
            )
        if not isinstance(manifest.get("settings"), dict) or not isinstance(manifest.get("videos"), dict):
            raise ValueError(f"{manifest_path} lacks its `settings` or `videos`; rebuild the cache.")
        self.settings: dict[str, Any] = manifest["settings"]
        self.entries: dict[str, dict[str, Any]] = manifest["videos"]
        self._shards: dict[str, Any] = {}

    def __getstate__(self) -> dict[str, Any]:
        # Open shard handles stay in the process that opened them; a DataLoader worker opens its own.
        state = self.__dict__.copy()
        state["_shards"] = {}
        return state

    def check_settings(self, settings: dict[str, Any]) -> None:
        """Raise `ValueError` if the cache was built with other sampling settings than `settings`."""
        differences = [
            f"{key}: cache has {self.settings.get(key)!r}, requested {value!r}"
            for key, value in settings.items()
            if self.settings.get(key) != value
        ]
        if differences:
            flags = " ".join(
                f"--{key} {self.settings[key]}"
                for key in ("num_frames", "seed")
                if key in settings and self.settings.get(key) != settings[key]
            )
            use_cache = f", or give this command the cache's settings ({flags})" if flags else ""
            raise ValueError(
                f"The frame cache at {self.directory} was built with other settings and cannot be used "
                f"({'; '.join(differences)}). Rebuild it with `vop prepare --overwrite_output_dir` and this "
                f"command's settings, use another folder{use_cache}."
            )

    def is_current(self, record: VideoRecord) -> bool:
        """Whether the cache holds frames for `record` taken from its current content."""
        entry = self.entries.get(record.id)
        return entry is not None and entry["fingerprint"] == record.fingerprint()

    def load(self, record: VideoRecord) -> CachedFrames | None:
        """The cached frames of `record`, or `None` if it is absent or its source file changed since.

        Raises:
            `FrameCacheError`: the entry's shard is missing or unreadable, or the frames fail their checksum.
        """
        if not self.is_current(record):
            return None
        entry = self.entries[record.id]
        shard_path = os.path.join(self.directory, entry["shard"])
        try:
            shard = self._shards.get(entry["shard"])
            if shard is None:
                shard = safe_open(shard_path, framework="pt")
                self._shards[entry["shard"]] = shard
            frames = shard.get_tensor(entry["key"])
        except Exception as error:  # safetensors reports missing, truncated and corrupt files alike
            raise FrameCacheError(
                record.name, f"cannot read its frames from the frame cache shard {shard_path} ({error})"
            ) from error
        if frames_checksum(frames) != entry["blake2b"]:
            raise FrameCacheError(
                record.name,
                f"its frames in the frame cache shard {shard_path} are corrupt (checksum mismatch); "
                "rebuild the cache with `vop prepare --overwrite`",
            )
        return CachedFrames(frames, entry["frame_indices"], entry["repeated"])


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
