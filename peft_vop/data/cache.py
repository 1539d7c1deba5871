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

Builds (`peft_vop.data.cache_builder`) write atomically (`peft_vop._atomic`): a shard or the manifest is written to
a temporary file in the same directory and renamed into place, so an interrupted build leaves the previous manifest
(and every shard it names) intact.
Builds of one directory take turns (a file lock on `.lock`: a second `vop prepare` waits, then reuses what the first
stored), and a build re-decodes the entries whose shard is missing. Every read checks the frames against their
checksum; a corrupt or unreadable entry raises `FrameCacheError`, which the dataset handles by its `on_error`
policy.
"""

from __future__ import annotations

import hashlib
import json
import os
from dataclasses import dataclass
from typing import Any

import torch
from safetensors import safe_open

from .decoding import VideoDecodeError
from .records import VideoRecord


MANIFEST_NAME = "manifest.json"
CACHE_FORMAT = "peft-vop-frame-cache"
CACHE_VERSION = 2  # 2: a checksum per video


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
