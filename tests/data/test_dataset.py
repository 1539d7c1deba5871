import numpy as np
import pytest
import torch
from datasets import Dataset
from helpers.tiny_checkpoint import tiny_image_processor, tiny_tokenizer
from helpers.video_factory import frame_index, write_truncated_video, write_video
from torch.utils.data import DataLoader

from peft_vop.data import (
    DeviceFramePreprocessor,
    VideoDecodeError,
    VideoRecord,
    VideoTextCollator,
    VideoTextDataset,
    frame_segments,
    sample_frame_indices,
)
from peft_vop.data.preprocessing import _random_crop_box
from peft_vop.data.records import HFVideoRecords


NUM_FRAMES = 4


@pytest.fixture(scope="module")
def videos(tmp_path_factory):
    folder = tmp_path_factory.mktemp("videos")
    lengths = [40, 25, 9, 60, 33]
    return [write_video(folder / f"v{i}.mp4", n, width=48, height=40, gop=8) for i, n in enumerate(lengths)], lengths


def make_records(paths):
    return [
        VideoRecord(path, (f"caption {i} a", f"caption {i} b", f"caption {i} c"), f"v{i}")
        for i, path in enumerate(paths)
    ]


def indices_of(frames):
    return [frame_index(frame.numpy()) for frame in frames]


def test_eval_items_hold_the_uniform_frames(videos, preprocessor):
    paths, lengths = videos
    dataset = VideoTextDataset(make_records(paths), preprocessor, num_frames=NUM_FRAMES)
    assert len(dataset) == 5
    for i, length in enumerate(lengths):
        item = dataset[i]
        assert item["frames"].shape == (NUM_FRAMES, 3, 32, 32) and item["frames"].dtype == torch.uint8
        assert indices_of(item["frames"]) == sample_frame_indices(length, NUM_FRAMES)
        assert item["caption"] == f"caption {i} a" and item["video_index"] == i and item["repaired"] is None


def test_train_items_are_seeded_by_epoch_and_video(videos, preprocessor):
    paths, lengths = videos
    dataset = VideoTextDataset(make_records(paths), preprocessor, num_frames=NUM_FRAMES, sampling="rand", train=True)
    first = [indices_of(dataset[i]["frames"]) for i in range(5)]
    assert first == [indices_of(dataset[i]["frames"]) for i in range(5)]
    for drawn, length in zip(first, lengths):
        assert all(start <= index < end for index, (start, end) in zip(drawn, frame_segments(length, NUM_FRAMES)))
    dataset.set_epoch(1)
    assert [indices_of(dataset[i]["frames"]) for i in range(5)] != first
    captions = {dataset[0]["caption"] for epoch in range(12) if not dataset.set_epoch(epoch)}
    assert len(captions) > 1 and captions <= {"caption 0 a", "caption 0 b", "caption 0 c"}


def test_collator_batches_for_the_model(videos, preprocessor):
    paths, _ = videos
    dataset = VideoTextDataset(make_records(paths), preprocessor, num_frames=NUM_FRAMES)
    collator = VideoTextCollator(preprocessor, tiny_tokenizer())
    items = [dataset[i] for i in range(3)]
    batch = collator(items)
    assert batch["pixel_values"].shape == (3, NUM_FRAMES, 3, 32, 32) and batch["pixel_values"].dtype == torch.float32
    expected = (
        torch.stack([item["frames"] for item in items]).float() / 255 - torch.tensor([0.5, 0.4, 0.3]).view(3, 1, 1)
    ) / torch.tensor([0.2, 0.25, 0.3]).view(3, 1, 1)
    torch.testing.assert_close(batch["pixel_values"], expected)
    assert batch["input_ids"].shape == batch["attention_mask"].shape and batch["input_ids"].shape[0] == 3
    assert (batch["input_ids"][:, 0] == 96).all()  # BOS of the tiny tokenizer
    assert batch["video_index"].tolist() == [0, 1, 2] and batch["skipped"] == [] and batch["repaired"] == []


@pytest.mark.parametrize("device_preprocessing", [False, True])
def test_dataloader_with_workers_matches_a_single_process(videos, preprocessor, device_preprocessing):
    paths, _ = videos
    dataset = VideoTextDataset(
        make_records(paths),
        preprocessor,
        num_frames=NUM_FRAMES,
        sampling="rand",
        train=True,
        device_preprocessing=device_preprocessing,
    )
    collator = VideoTextCollator(preprocessor, tiny_tokenizer())
    step = DeviceFramePreprocessor(preprocessor)

    def run(workers):
        loader = DataLoader(
            dataset, batch_size=2, num_workers=workers, collate_fn=collator, persistent_workers=workers > 0
        )
        return [step(batch) for batch in loader]

    single, parallel = run(0), run(2)
    assert len(single) == len(parallel) == 3
    for one, other in zip(single, parallel):
        assert torch.equal(one["pixel_values"], other["pixel_values"])
        assert torch.equal(one["input_ids"], other["input_ids"])


def test_each_caption_gives_one_item_per_pair(videos, preprocessor):
    paths, _ = videos
    dataset = VideoTextDataset(make_records(paths[:2]), preprocessor, num_frames=2, each_caption=True)
    assert len(dataset) == 6
    assert [(dataset[i]["video_index"], dataset[i]["caption"]) for i in (0, 2, 3)] == [
        (0, "caption 0 a"),
        (0, "caption 0 c"),
        (1, "caption 1 a"),
    ]


def test_hugging_face_dataset_with_video_bytes(videos, preprocessor):
    paths, lengths = videos
    with open(paths[0], "rb") as file:
        table = Dataset.from_dict({"video": [file.read()], "caption": ["a clip in memory"]})
    dataset = VideoTextDataset(HFVideoRecords(table), preprocessor, num_frames=NUM_FRAMES)
    item = dataset[0]
    assert indices_of(item["frames"]) == sample_frame_indices(lengths[0], NUM_FRAMES)
    assert item["caption"] == "a clip in memory"


# --- error policies -------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def broken(tmp_path_factory):
    """Good videos around a missing one and one whose second half is cut off (index first, so it opens)."""
    folder = tmp_path_factory.mktemp("broken")
    good = [write_video(folder / f"good{i}.mp4", 30) for i in range(2)]
    truncated = write_truncated_video(folder / "truncated.mp4", 120)
    paths = [good[0], str(folder / "missing.mp4"), truncated, good[1]]
    return [VideoRecord(path, (f"caption {i}",), f"v{i}") for i, path in enumerate(paths)]


def loader(dataset, preprocessor, workers=2):
    return DataLoader(dataset, batch_size=4, num_workers=workers, collate_fn=VideoTextCollator(preprocessor))


def test_raise_policy_names_the_file(broken, preprocessor):
    dataset = VideoTextDataset(broken, preprocessor, num_frames=NUM_FRAMES)
    assert dataset[0]["frames"].shape[0] == NUM_FRAMES
    with pytest.raises(VideoDecodeError, match=r"missing\.mp4: file not found"):
        dataset[1]
    with pytest.raises(VideoDecodeError, match=r"truncated\.mp4: .*could not be decoded"):
        dataset[2]
    with pytest.raises(VideoDecodeError, match=r"missing\.mp4: file not found"):  # from a worker process too
        list(loader(dataset, preprocessor))


def test_skip_policy_reports_every_skipped_file(broken, preprocessor):
    dataset = VideoTextDataset(broken, preprocessor, num_frames=NUM_FRAMES, on_error="skip")
    with pytest.warns(UserWarning) as warned:
        (batch,) = list(loader(dataset, preprocessor, workers=0))
    assert ["missing.mp4" in str(w.message) for w in warned] == [True, False]
    assert "truncated.mp4" in str(warned[1].message)
    assert batch["video_index"].tolist() == [0, 3] and batch["pixel_values"].shape[0] == 2
    assert [(entry["video_index"], entry["name"]) for entry in batch["skipped"]] == [
        (1, broken[1].video),
        (2, broken[2].video),
    ]
    assert (
        "file not found" in batch["skipped"][0]["reason"] and "could not be decoded" in batch["skipped"][1]["reason"]
    )
    (from_workers,) = list(loader(dataset, preprocessor))
    assert from_workers["skipped"] == batch["skipped"]


def test_repair_policy_repeats_frames_and_says_so(broken, preprocessor):
    dataset = VideoTextDataset(broken, preprocessor, num_frames=NUM_FRAMES, on_error="repair")
    (batch,) = list(loader(dataset, preprocessor))
    assert batch["video_index"].tolist() == [0, 2, 3]  # the truncated video is kept...
    assert batch["repaired"] == [{"name": broken[2].video, "frames": 3}]  # ...with its 3 unreadable frames named
    assert [entry["name"] for entry in batch["skipped"]] == [broken[1].video]  # nothing to repair in a missing file
    with pytest.warns(UserWarning, match="3 of 4 sampled frames were unreadable"):
        frames = dataset[2]["frames"]
    assert indices_of(frames) == [14, 14, 14, 14]  # frames 44, 74 and 104 are gone: the last good one repeats


def test_all_skipped_batch_is_empty_not_wrong(broken, preprocessor):
    dataset = VideoTextDataset(broken[1:2], preprocessor, num_frames=NUM_FRAMES, on_error="skip")
    with pytest.warns(UserWarning):
        batch = VideoTextCollator(preprocessor)([dataset[0]])
    assert batch["pixel_values"].shape == (0, NUM_FRAMES, 3, 32, 32) and len(batch["skipped"]) == 1


def test_arguments_are_checked(preprocessor):
    with pytest.raises(ValueError, match="`on_error` must be one of"):
        VideoTextDataset([], preprocessor, on_error="ignore")
    with pytest.raises(ValueError, match="`sampling` must be one of"):
        VideoTextDataset([], preprocessor, sampling="random")
    with pytest.raises(TypeError, match="FramePreprocessor"):
        VideoTextDataset([], tiny_image_processor())
    untitled = tiny_tokenizer()
    untitled.model_max_length = int(1e30)
    with pytest.raises(ValueError, match="max_length"):
        VideoTextCollator(preprocessor, untitled)
    assert np.isfinite(preprocessor.image_std).all()


@pytest.fixture(scope="module")
def mixed_sizes(tmp_path_factory, videos):
    """The 48x40 videos plus a portrait one, so a batch mixes resized frame sizes (40x32 and 32x44)."""
    paths, _ = videos
    portrait = write_video(tmp_path_factory.mktemp("portrait") / "p.mp4", 30, width=32, height=44, gop=8)
    return make_records([*paths[:3], portrait])


@pytest.mark.parametrize(
    "options",
    [
        {"train": False},
        {"train": True, "sampling": "rand"},
        {"train": True, "augment": ("flip",)},
        {"train": True, "augment": ("crop",)},
        {"train": True, "augment": False},
    ],
)
def test_device_preprocessing_gives_the_batches_of_the_cpu_path(mixed_sizes, preprocessor, options):
    cpu = VideoTextDataset(mixed_sizes, preprocessor, num_frames=NUM_FRAMES, **options)
    deferred = VideoTextDataset(mixed_sizes, preprocessor, num_frames=NUM_FRAMES, device_preprocessing=True, **options)
    collator = VideoTextCollator(preprocessor, tiny_tokenizer())
    step = DeviceFramePreprocessor(preprocessor)
    for epoch in range(3):
        cpu.set_epoch(epoch)
        deferred.set_epoch(epoch)
        expected = collator([cpu[i] for i in range(len(mixed_sizes))])
        batch = collator([deferred[i] for i in range(len(mixed_sizes))])
        assert "pixel_values" not in batch and batch["frames"].dtype == torch.uint8
        # Uncropped frames (44x32 portrait, 32x38 landscape) are zero-padded to the largest; center crops agree.
        cropped_on_device = options["train"] and "crop" in deferred.augment
        assert batch["frames"].shape[-2:] == ((44, 38) if cropped_on_device else (32, 32))
        prepared = step(batch)
        # The same torch ops on the same numbers: equal, not close, on the CPU.
        assert torch.equal(prepared["pixel_values"], expected["pixel_values"])
        assert torch.equal(prepared["input_ids"], expected["input_ids"])
        assert "frames" not in prepared and "crops" not in prepared


def test_crops_and_flips_are_drawn_as_before(mixed_sizes, preprocessor):
    # The draws of the per-video CPU crop: torchvision's box from the crop stream of (seed, epoch, video), then flip.
    dataset = VideoTextDataset(
        mixed_sizes, preprocessor, num_frames=NUM_FRAMES, train=True, seed=7, device_preprocessing=True
    )
    only_flip = VideoTextDataset(
        mixed_sizes,
        preprocessor,
        num_frames=NUM_FRAMES,
        train=True,
        seed=7,
        augment={"flip"},
        device_preprocessing=True,
    )
    only_crop = VideoTextDataset(
        mixed_sizes,
        preprocessor,
        num_frames=NUM_FRAMES,
        train=True,
        seed=7,
        augment=["crop"],
        device_preprocessing=True,
    )
    flips = []
    for epoch in range(4):
        for dataset_ in (dataset, only_flip, only_crop):
            dataset_.set_epoch(epoch)
        for video in range(len(mixed_sizes)):
            item = dataset[video]
            rng = np.random.default_rng([7, epoch, video, 1])
            box = _random_crop_box(*item["frames"].shape[-2:], rng, (0.5, 1.0), (3 / 4, 4 / 3))
            assert tuple(item["crop"][:4]) == box and item["crop"].flip == (rng.random() < 0.5)
            assert only_flip[video]["crop"].flip == item["crop"].flip
            assert only_flip[video]["frames"].shape[-2:] == (32, 32)  # center crop, as in evaluation
            assert only_crop[video]["crop"] == item["crop"]._replace(flip=False)
            flips.append(item["crop"].flip)
    assert any(flips) and not all(flips)


def test_augment_names_crop_and_flip_only(preprocessor):
    with pytest.raises(
        ValueError, match=r"`augment` must be a bool or a collection of \('crop', 'flip'\); got 'crop'"
    ):
        VideoTextDataset([], preprocessor, augment="crop")
    with pytest.raises(ValueError, match="got \\['rotate'\\]"):
        VideoTextDataset([], preprocessor, augment=["rotate"])
