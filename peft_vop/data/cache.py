"""An on-disk cache of sampled, resized frames, so that later epochs and evaluations do not decode again.

Layout of a cache directory::

    manifest.json                 settings + one entry per video (shard, key, source fingerprint, frame indices)
    frames-<random>.safetensors   uint8 [F, 3, H, W] tensors, one per video, several videos per shard

Frames are stored after the processor's resize and before any crop, so one cache serves evaluation (center crop)
and training (random resized crop) alike. The manifest records the settings that decide which frames an entry
holds (number of frames, sampling mode, seed, resize); a dataset with other settings refuses the cache with a
`ValueError` that lists the differences. Each entry also records the size and modification time of its source file
(a hash for in-memory bytes): an entry whose source changed is not used, and `build_frame_cache` decodes it again.

Writes are atomic: a shard or the manifest is written to a temporary file in the same directory and renamed into
place, so an interrupted build leaves the previous manifest (and every shard it names) intact.
"""

from __future__ import annotations

import json
import os
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import torch
from safetensors import safe_open
from safetensors.torch import save_file

from .decoding import VideoDecodeError
from .records import VideoRecord, check_unique_ids


if TYPE_CHECKING:
    from .dataset import VideoTextDataset


MANIFEST_NAME = "manifest.json"
CACHE_FORMAT = "peft-vop-frame-cache"
CACHE_VERSION = 1


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


def _file_mode() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return 0o666 & ~mask


def _write_atomically(path: str, write: Callable[[str], None]) -> None:
    """Write through `write(temporary_path)`, then rename over `path` (same directory, so the rename is atomic)."""
    temporary = f"{path}.tmp-{os.getpid()}-{uuid.uuid4().hex[:8]}"
    try:
        write(temporary)
        # safetensors creates its files readable by the owner only; give every file of the cache the mode that
        # `open()` gives the manifest, so a cache shared through a group or a volume is readable as a whole.
        os.chmod(temporary, _file_mode())
        os.replace(temporary, path)
    finally:
        if os.path.exists(temporary):
            os.remove(temporary)


def _write_json(path: str, content: dict[str, Any]) -> None:
    def write(temporary: str) -> None:
        with open(temporary, "w", encoding="utf-8") as file:
            json.dump(content, file)
            file.flush()
            os.fsync(file.fileno())

    _write_atomically(path, write)


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
        with open(manifest_path, encoding="utf-8") as file:
            manifest = json.load(file)
        if manifest.get("format") != CACHE_FORMAT or manifest.get("version") != CACHE_VERSION:
            raise ValueError(
                f"{manifest_path} is not a version-{CACHE_VERSION} {CACHE_FORMAT} manifest; rebuild the cache."
            )
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
        """The cached frames of `record`, or `None` if it is absent or its source file changed since."""
        if not self.is_current(record):
            return None
        entry = self.entries[record.id]
        shard = self._shards.get(entry["shard"])
        if shard is None:
            shard = safe_open(os.path.join(self.directory, entry["shard"]), framework="pt")
            self._shards[entry["shard"]] = shard
        return CachedFrames(shard.get_tensor(entry["key"]), entry["frame_indices"], entry["repeated"])


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
    """

    stored: int = 0
    reused: int = 0
    failed: list[tuple[str, str]] = field(default_factory=list)
    repaired: list[tuple[str, int]] = field(default_factory=list)


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
    from tqdm.auto import tqdm

    directory = os.fspath(directory)
    os.makedirs(directory, exist_ok=True)
    records = dataset.records
    check_unique_ids(records)
    settings = dataset.cache_settings()
    entries: dict[str, dict[str, Any]] = {}
    if os.path.isfile(os.path.join(directory, MANIFEST_NAME)):
        existing = FrameCache(directory)
        if existing.settings == settings:
            entries = dict(existing.entries)
        elif not overwrite:
            existing.check_settings(settings)  # raises, listing the differences
    report = CacheBuildReport()
    todo = []
    for video_index, record in enumerate(records):
        entry = entries.get(record.id)
        if entry is not None and entry["fingerprint"] == record.fingerprint():
            report.reused += 1
        else:
            todo.append(video_index)

    def save_manifest() -> None:
        _write_json(
            os.path.join(directory, MANIFEST_NAME),
            {"format": CACHE_FORMAT, "version": CACHE_VERSION, "settings": settings, "videos": entries},
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
        _write_atomically(os.path.join(directory, shard), lambda path: save_file(tensors, path))
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
        pending[key] = item["frames"].contiguous()
        pending_bytes += item["frames"].numel()
        pending_entries[record.id] = {
            "key": key,
            "name": record.name,
            "fingerprint": item["fingerprint"],
            "frame_indices": item["frame_indices"],
            "repeated": item["repeated"],
        }
        if item["repeated"]:
            report.repaired.append((record.name, len(item["repeated"])))
        report.stored += 1
        if pending_bytes >= shard_limit:
            flush()
    flush()
    save_manifest()
    # Shards no longer named by the manifest (an overwritten cache) are removed only now that it is in place.
    referenced = {entry["shard"] for entry in entries.values()}
    for name in os.listdir(directory):
        if name.startswith("frames-") and name.endswith(".safetensors") and name not in referenced:
            os.remove(os.path.join(directory, name))
    return report
