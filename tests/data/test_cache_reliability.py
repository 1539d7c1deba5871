"""The frame cache under concurrent builders, lost shards, corrupt or truncated files and a full disk."""

from __future__ import annotations

import json
import os
import struct
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from helpers.tiny_checkpoint import save_tiny_checkpoint
from helpers.video_factory import write_video

from peft_vop.data import (
    FrameCache,
    FrameCacheError,
    VideoDecodeError,
    VideoRecord,
    VideoTextDataset,
    build_frame_cache,
    write_annotations,
)


REPO = Path(__file__).parents[2]


@pytest.fixture
def records(tmp_path):
    paths = [write_video(tmp_path / f"v{i}.mp4", 12 + i, width=48, height=40, gop=6) for i in range(4)]
    return [VideoRecord(path, (f"caption {i}",), f"v{i}") for i, path in enumerate(paths)]


def dataset(records, preprocessor, **kwargs):
    return VideoTextDataset(records, preprocessor, num_frames=4, **kwargs)


def shard_of(cache_dir: Path, video_id: str) -> Path:
    return cache_dir / FrameCache(cache_dir).entries[video_id]["shard"]


def test_a_rebuild_decodes_the_entries_whose_shard_is_missing(tmp_path, records, preprocessor):
    cache_dir = tmp_path / "cache"
    build_frame_cache(dataset(records, preprocessor), cache_dir, shard_size_mb=1e-6, progress=False)  # 1 per shard
    shard_of(cache_dir, "v2").unlink()
    report = build_frame_cache(dataset(records, preprocessor), cache_dir, progress=False)
    assert (report.stored, report.reused, report.missing_shards) == (1, 3, 1)
    cache = FrameCache(cache_dir)
    for index, record in enumerate(records):
        assert torch.equal(cache.load(record).frames, dataset(records, preprocessor).decode(index)[0])


def corrupt(shard: Path, key: str, offset: int = 0, length: int = 4096) -> None:
    """Zero `length` bytes of tensor `key` of a safetensors file, as a bad disk sector would."""
    data = bytearray(shard.read_bytes())
    (header_length,) = struct.unpack("<Q", data[:8])
    begin, end = json.loads(data[8 : 8 + header_length])[key]["data_offsets"]
    start = 8 + header_length + begin + offset
    data[start : min(start + length, 8 + header_length + end)] = bytes(min(length, end - begin - offset))
    shard.write_bytes(bytes(data))


def test_a_corrupt_shard_follows_on_error(tmp_path, records, preprocessor):
    cache_dir = tmp_path / "cache"
    build_frame_cache(dataset(records, preprocessor), cache_dir, progress=False)
    entry = FrameCache(cache_dir).entries["v1"]
    corrupt(cache_dir / entry["shard"], entry["key"], offset=1000)

    strict = dataset(records, preprocessor, cache=str(cache_dir))
    with pytest.raises(
        FrameCacheError, match=f"{records[1].video}: its frames in the frame cache shard .*{entry['shard']}"
    ):
        strict[1]
    assert torch.equal(strict[0]["frames"], dataset(records, preprocessor)[0]["frames"])  # others are served

    with pytest.warns(UserWarning, match="Skipping a video"):
        skipped = dataset(records, preprocessor, on_error="skip", cache=str(cache_dir))[1]
    assert skipped["skipped"]["name"] == records[1].video and "checksum mismatch" in skipped["skipped"]["reason"]

    with pytest.warns(UserWarning, match="decoding the video again"):
        repaired = dataset(records, preprocessor, on_error="repair", cache=str(cache_dir))[1]
    assert torch.equal(repaired["frames"], dataset(records, preprocessor)[1]["frames"])


def test_truncated_shards_and_manifests_name_the_file(tmp_path, records, preprocessor):
    cache_dir = tmp_path / "cache"
    build_frame_cache(dataset(records, preprocessor), cache_dir, progress=False)
    shard = shard_of(cache_dir, "v0")
    shard.write_bytes(shard.read_bytes()[: shard.stat().st_size // 2])
    with pytest.raises(VideoDecodeError, match=f"cannot read its frames from the frame cache shard .*{shard.name}"):
        dataset(records, preprocessor, cache=str(cache_dir))[0]

    manifest = cache_dir / "manifest.json"
    manifest.write_text(manifest.read_text()[:100])
    with pytest.raises(ValueError, match=f"{manifest}.*truncated or corrupt.*--overwrite"):
        FrameCache(cache_dir)
    report = build_frame_cache(dataset(records, preprocessor), cache_dir, overwrite=True, progress=False)
    assert report.stored == 4


def test_a_full_disk_during_a_build_keeps_the_cache_usable(tmp_path, records, preprocessor):
    mount_point = tmp_path / "small"
    mount_point.mkdir()
    mounted = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=1m", "tmpfs", str(mount_point)], capture_output=True)
    if mounted.returncode:
        pytest.skip(f"cannot mount a small file system here: {mounted.stderr.decode().strip()}")
    try:
        cache_dir = mount_point / "cache"
        build_frame_cache(dataset(records[:1], preprocessor), cache_dir, progress=False)
        manifest = (cache_dir / "manifest.json").read_text()
        stat = os.statvfs(mount_point)
        (mount_point / "filler").write_bytes(b"\0" * (stat.f_bavail * stat.f_frsize - 4096))
        with pytest.raises(Exception, match="No space left|os error 28"):
            build_frame_cache(dataset(records, preprocessor), cache_dir, progress=False)
        assert (cache_dir / "manifest.json").read_text() == manifest
        assert not [name for name in os.listdir(cache_dir) if ".tmp-" in name]
        assert FrameCache(cache_dir).load(records[0]) is not None
    finally:
        subprocess.run(["umount", str(mount_point)], check=True)


@pytest.mark.slow
def test_concurrent_prepare_runs_leave_a_complete_cache(tmp_path, preprocessor):
    (tmp_path / "videos").mkdir()
    records = [
        VideoRecord(write_video(tmp_path / "videos" / f"v{i}.mp4", 10 + i), (f"caption {i}",), f"v{i}", "test")
        for i in range(16)
    ]
    write_annotations(records, tmp_path / "annotations.jsonl")
    checkpoint = save_tiny_checkpoint(tmp_path / "clip")
    command = [sys.executable, "-m", "peft_vop.cli.main", "prepare", "--model", checkpoint]
    command += ["--annotations", str(tmp_path / "annotations.jsonl"), "--split", "test", "--num-frames", "3"]
    command += ["--num-workers", "0", "--output", str(tmp_path / "cache"), "--shard-size-mb", "0.004", "--no-progress"]
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(REPO), os.environ.get("PYTHONPATH", "")])}
    runs = [
        subprocess.Popen(command, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True) for _ in "ab"
    ]
    outputs = [run.communicate(timeout=600) for run in runs]
    assert [run.returncode for run in runs] == [0, 0], outputs

    cache = FrameCache(tmp_path / "cache")
    assert sorted(cache.entries) == sorted(record.id for record in records)
    for record in records:
        assert (tmp_path / "cache" / cache.entries[record.id]["shard"]).is_file()
        assert cache.load(record) is not None  # checksum verified
    # Together they decoded every video once: the one that waited reused what the other stored.
    stored = sorted(int(out.split(" videos decoded and stored")[0].rsplit(" ", 1)[1]) for out, _ in outputs)
    assert stored == [0, 16]
    again = subprocess.run(command, env=env, capture_output=True, text=True, timeout=600)
    assert "0 videos decoded and stored, 16 already cached" in again.stdout
