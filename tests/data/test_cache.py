import json
import os

import pytest
import torch
from helpers.tiny_checkpoint import tiny_image_processor
from helpers.video_factory import frame_index, write_truncated_video, write_video

from peft_vop.data import (
    FrameCache,
    FramePreprocessor,
    VideoRecord,
    VideoTextDataset,
    build_frame_cache,
    cache_builder,
    sample_frame_indices,
)


@pytest.fixture
def records(tmp_path):
    paths = [write_video(tmp_path / f"v{i}.mp4", n, width=48, height=40, gop=6) for i, n in enumerate([30, 20, 45])]
    return [VideoRecord(path, (f"caption {i}",), f"v{i}") for i, path in enumerate(paths)]


def dataset(records, preprocessor, **kwargs):
    kwargs.setdefault("num_frames", 4)
    return VideoTextDataset(records, preprocessor, **kwargs)


def test_round_trip_matches_decoding(tmp_path, records, preprocessor):
    report = build_frame_cache(dataset(records, preprocessor), tmp_path / "cache", progress=False)
    assert (report.stored, report.reused, report.failed) == (3, 0, [])
    cache = FrameCache(tmp_path / "cache")
    for index, record in enumerate(records):
        cached = cache.load(record)
        frames, frame_indices, _ = dataset(records, preprocessor).decode(index)
        assert cached.frames.dtype == torch.uint8 and cached.frames.shape == (4, 3, 32, 38)  # resized, not cropped
        assert torch.equal(cached.frames, frames) and cached.frame_indices == frame_indices
    uncached = dataset(records, preprocessor)
    cached_dataset = dataset(records, preprocessor, cache=str(tmp_path / "cache"))
    for index in range(3):
        assert torch.equal(cached_dataset[index]["frames"], uncached[index]["frames"])
        assert [frame_index(f.numpy()) for f in cached_dataset[index]["frames"]] == cache.entries[f"v{index}"][
            "frame_indices"
        ]


def test_cached_training_items_equal_uncached_ones(tmp_path, records, preprocessor):
    train = {"sampling": "rand", "train": True, "seed": 7}
    build_frame_cache(dataset(records, preprocessor, **train), tmp_path / "cache", progress=False)
    with pytest.warns(UserWarning, match="one draw of `rand` sampling"):
        cached = dataset(records, preprocessor, cache=FrameCache(tmp_path / "cache"), **train)
    uncached = dataset(records, preprocessor, **train)
    for index in range(3):  # epoch 0: same frames, same crop and flip
        assert torch.equal(cached[index]["frames"], uncached[index]["frames"])


def test_cache_is_read_without_decoding(tmp_path, records, preprocessor, monkeypatch):
    build_frame_cache(dataset(records, preprocessor), tmp_path / "cache", progress=False)
    cached = dataset(records, preprocessor, cache=str(tmp_path / "cache"))

    def no_decoding(*args, **kwargs):
        raise AssertionError("decoded a cached video")

    monkeypatch.setattr("peft_vop.data.dataset.read_video", no_decoding)
    assert cached[1]["frames"].shape == (4, 3, 32, 32)


@pytest.mark.parametrize(
    ("change", "field"),
    [
        ({"num_frames": 6}, "num_frames"),
        ({"sampling": "rand"}, "sampling"),
        ({"seed": 1}, "seed"),
        ({"preprocessor": FramePreprocessor.from_image_processor(tiny_image_processor(size=24))}, "resize"),
    ],
)
def test_other_settings_are_refused(tmp_path, records, preprocessor, change, field):
    build_frame_cache(dataset(records, preprocessor), tmp_path / "cache", progress=False)
    kwargs = {"preprocessor": preprocessor, **change}
    with pytest.raises(ValueError, match=f"built with other settings .*{field}: cache has"):
        VideoTextDataset(records, cache=str(tmp_path / "cache"), **{"num_frames": 4, **kwargs})
    with pytest.raises(ValueError, match="built with other settings"):
        build_frame_cache(VideoTextDataset(records, **{"num_frames": 4, **kwargs}), tmp_path / "cache", progress=False)
    report = build_frame_cache(
        VideoTextDataset(records, **{"num_frames": 4, **kwargs}), tmp_path / "cache", overwrite=True, progress=False
    )
    assert report.stored == 3
    assert len([name for name in os.listdir(tmp_path / "cache") if name.endswith(".safetensors")]) == 1


def test_changed_source_is_not_reused(tmp_path, records, preprocessor):
    build_frame_cache(dataset(records, preprocessor), tmp_path / "cache", progress=False)
    # Replace v1 (20 frames) by a different video: 50 frames, other content.
    write_video(records[1].video, 50, width=48, height=40)
    cache = FrameCache(tmp_path / "cache")
    assert cache.load(records[0]) is not None and cache.load(records[1]) is None
    fresh = dataset(records, preprocessor, cache=cache)[1]["frames"]
    assert [frame_index(f.numpy()) for f in fresh] == sample_frame_indices(50, 4)  # decoded from the new file
    report = build_frame_cache(dataset(records, preprocessor), tmp_path / "cache", progress=False)
    assert (report.stored, report.reused) == (1, 2)
    assert FrameCache(tmp_path / "cache").load(records[1]).frame_indices == sample_frame_indices(50, 4)


def test_incremental_build_keeps_other_entries(tmp_path, records, preprocessor):
    build_frame_cache(dataset(records[:2], preprocessor), tmp_path / "cache", progress=False)
    report = build_frame_cache(dataset(records[1:], preprocessor), tmp_path / "cache", progress=False)
    assert (report.stored, report.reused) == (1, 1)
    assert sorted(FrameCache(tmp_path / "cache").entries) == ["v0", "v1", "v2"]


def test_shards_split_by_size_and_load_in_workers(tmp_path, records, preprocessor):
    build_frame_cache(
        dataset(records, preprocessor), tmp_path / "cache", shard_size_mb=0.01, num_workers=2, progress=False
    )
    assert len([name for name in os.listdir(tmp_path / "cache") if name.endswith(".safetensors")]) == 3
    cached = dataset(records, preprocessor, cache=str(tmp_path / "cache"))
    loader = torch.utils.data.DataLoader(cached, batch_size=None, num_workers=2)
    assert [item["video_index"] for item in loader] == [0, 1, 2]


def test_failures_follow_the_error_policy(tmp_path, records, preprocessor):
    records = [*records, VideoRecord(str(tmp_path / "missing.mp4"), ("x",), "missing")]
    with pytest.raises(Exception, match=r"missing\.mp4: file not found"):
        build_frame_cache(dataset(records, preprocessor), tmp_path / "cache", progress=False)
    report = build_frame_cache(dataset(records, preprocessor, on_error="skip"), tmp_path / "cache", progress=False)
    assert report.stored == 3 and report.failed == [(str(tmp_path / "missing.mp4"), "file not found")]
    assert "missing" not in FrameCache(tmp_path / "cache").entries


def test_repaired_entries_need_the_repair_policy(tmp_path, preprocessor):
    records = [VideoRecord(write_truncated_video(tmp_path / "cut.mp4", 120), ("x",), "cut")]
    report = build_frame_cache(dataset(records, preprocessor, on_error="repair"), tmp_path / "cache", progress=False)
    assert report.repaired == [(str(tmp_path / "cut.mp4"), 3)]
    with pytest.warns(UserWarning, match="3 of 4 sampled frames were unreadable"):
        dataset(records, preprocessor, on_error="repair", cache=str(tmp_path / "cache"))[0]
    strict = dataset(records, preprocessor, cache=str(tmp_path / "cache"))
    with pytest.raises(Exception, match="holds 3 repeated frames"):
        strict[0]


def test_writes_are_atomic(tmp_path, records, preprocessor, monkeypatch):
    build_frame_cache(dataset(records[:1], preprocessor), tmp_path / "cache", progress=False)
    manifest_before = (tmp_path / "cache" / "manifest.json").read_text()
    files_before = sorted(os.listdir(tmp_path / "cache"))

    def crash_midway(tensors, path):
        with open(path, "wb") as file:
            file.write(b"partial")
        raise KeyboardInterrupt

    monkeypatch.setattr(cache_builder, "save_file", crash_midway)
    with pytest.raises(KeyboardInterrupt):
        build_frame_cache(dataset(records, preprocessor), tmp_path / "cache", progress=False)
    assert (tmp_path / "cache" / "manifest.json").read_text() == manifest_before
    assert sorted(os.listdir(tmp_path / "cache")) == files_before  # no partial shard, no temporary file
    assert FrameCache(tmp_path / "cache").load(records[0]) is not None


def test_not_a_cache(tmp_path):
    with pytest.raises(FileNotFoundError, match="No frame cache"):
        FrameCache(tmp_path)
    (tmp_path / "manifest.json").write_text(json.dumps({"format": "other"}))
    with pytest.raises(ValueError, match="rebuild the cache"):
        FrameCache(tmp_path)
