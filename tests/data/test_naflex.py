"""SigLIP 2's NaFlex image processor through the video pipeline: each video on its own patch grid (its aspect ratio
kept), patch sequences padded to `max_num_patches`, on real camera-made videos of two shapes."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from helpers.families import tiny_model
from helpers.tiny_checkpoint import tiny_image_processor
from peft import get_peft_model
from transformers.models.siglip2.image_processing_pil_siglip2 import Siglip2ImageProcessorPil

import peft_vop
from peft_vop.data import (
    DeviceFramePreprocessor,
    FrameCache,
    FramePreprocessor,
    VideoRecord,
    VideoTextCollator,
    VideoTextDataset,
    build_frame_cache,
)
from peft_vop.data.decoding import read_video
from peft_vop.retrieval import embed_videos


REAL = Path(__file__).parents[1] / "search" / "fixtures"  # 640 x 272 and 176 x 144 H.264 videos
FRAMES = 4


@pytest.fixture(name="processor")
def processor_fixture():
    return Siglip2ImageProcessorPil(patch_size=8, max_num_patches=16)  # the tiny SigLIP 2's patches


@pytest.fixture(name="preprocessor")
def preprocessor_fixture(processor):
    return FramePreprocessor.from_image_processor(processor)


@pytest.fixture(name="records")
def records_fixture():
    return [
        VideoRecord(str(REAL / "bikes.mp4"), ("bikes on a road",), "bikes"),
        VideoRecord(str(REAL / "carphone_distorted.mp4"), ("a man in a car",), "carphone"),
    ]


def collate(preprocessor, dataset, device=False):
    batch = VideoTextCollator(preprocessor)([dataset[index] for index in range(len(dataset))])
    return DeviceFramePreprocessor(preprocessor)(batch) if device else batch


def test_the_settings_are_read_from_the_naflex_processor(preprocessor):
    assert preprocessor.is_naflex and (preprocessor.patch_size, preprocessor.max_num_patches) == (8, 16)
    assert preprocessor.output_size is None and preprocessor.resample == 2  # bilinear, as Siglip2ImageProcessor
    assert preprocessor.image_mean == preprocessor.image_std == (0.5, 0.5, 0.5)
    assert preprocessor.naflex_size(272, 640) == (24, 40)  # 3 x 5 patches: the aspect ratio, within 16 patches


def test_an_evaluation_batch_is_what_the_processor_makes_of_the_frames(processor, preprocessor, records):
    batch = collate(preprocessor, VideoTextDataset(records, preprocessor, num_frames=FRAMES))
    assert batch["pixel_values"].shape == (2, FRAMES, 16, 3 * 8 * 8)
    for index, record in enumerate(records):
        frames = read_video(record.video, FRAMES, "uniform").frames  # [F, H, W, 3] uint8
        expected = processor(images=list(frames), return_tensors="pt")
        torch.testing.assert_close(batch["pixel_values"][index], expected["pixel_values"], rtol=0, atol=1e-6)
        assert torch.equal(batch["pixel_attention_mask"][index], expected["pixel_attention_mask"].long())
        assert torch.equal(batch["spatial_shapes"][index], expected["spatial_shapes"].long())
    # Each video keeps its shape: the wide one on 3 x 5 patches (one padded), the other on 4 x 4.
    assert batch["spatial_shapes"][:, 0].tolist() == [[3, 5], [4, 4]]
    assert batch["pixel_attention_mask"].sum(-1)[:, 0].tolist() == [15, 16]
    assert torch.all(batch["pixel_values"][0, :, 15:] == 0)


@pytest.mark.parametrize("train", [False, True])
def test_device_preprocessing_gives_the_cpu_batch(preprocessor, records, train):
    options = {"num_frames": FRAMES, "train": train, "seed": 3}
    on_cpu = collate(preprocessor, VideoTextDataset(records, preprocessor, **options))
    dataset = VideoTextDataset(records, preprocessor, device_preprocessing=True, **options)
    batch = VideoTextCollator(preprocessor)([dataset[0], dataset[1]])
    assert batch["frame_sizes"] == [(24, 40), (32, 32)]
    on_device = DeviceFramePreprocessor(preprocessor)(batch)
    assert "frames" not in on_device and "frame_sizes" not in on_device
    for key in ("pixel_values", "pixel_attention_mask", "spatial_shapes"):
        assert torch.equal(on_device[key], on_cpu[key]), key


def test_the_training_crop_stays_on_each_videos_grid(preprocessor, records):
    dataset = VideoTextDataset(records, preprocessor, num_frames=FRAMES, train=True, seed=0)
    evaluation = collate(preprocessor, VideoTextDataset(records, preprocessor, num_frames=FRAMES))
    batches = []
    for epoch in range(3):
        dataset.set_epoch(epoch)
        batches.append(collate(preprocessor, dataset))
        assert torch.equal(batches[-1]["spatial_shapes"], evaluation["spatial_shapes"])
        assert torch.equal(batches[-1]["pixel_attention_mask"], evaluation["pixel_attention_mask"])
    # The crops and flips change with the epoch.
    assert not torch.equal(batches[0]["pixel_values"], batches[1]["pixel_values"])


def test_a_frame_cache_serves_the_decoded_frames_and_refuses_other_settings(tmp_path, preprocessor, records):
    dataset = VideoTextDataset(records, preprocessor, num_frames=FRAMES)
    report = build_frame_cache(dataset, tmp_path / "cache", progress=False)
    assert (report.stored, report.failed) == (2, [])
    cached = VideoTextDataset(records, preprocessor, num_frames=FRAMES, cache=str(tmp_path / "cache"))
    assert cached[0]["frames"].shape == (FRAMES, 3, 24, 40) and cached[1]["frames"].shape == (FRAMES, 3, 32, 32)
    for index in range(2):
        assert torch.equal(cached[index]["frames"], dataset[index]["frames"])
    # A cache of frames resized for another processor is refused, and the other way round.
    fixed = FramePreprocessor.from_image_processor(tiny_image_processor())
    with pytest.raises(ValueError, match="resize"):
        VideoTextDataset(records, fixed, num_frames=FRAMES, cache=str(tmp_path / "cache"))
    build_frame_cache(VideoTextDataset(records, fixed, num_frames=FRAMES), tmp_path / "fixed", progress=False)
    with pytest.raises(ValueError, match="max_num_patches"):
        VideoTextDataset(records, preprocessor, num_frames=FRAMES, cache=str(tmp_path / "fixed"))
    bigger = FramePreprocessor.from_image_processor(Siglip2ImageProcessorPil(patch_size=8, max_num_patches=64))
    with pytest.raises(ValueError, match="max_num_patches"):
        VideoTextDataset(records, bigger, num_frames=FRAMES, cache=FrameCache(tmp_path / "cache"))


@pytest.mark.parametrize("variant", ["vop", "vop_c", "vop_f+c", "vop_f+p"])
def test_padded_patches_change_no_embedding(preprocessor, records, variant):
    """A video's embedding is the same padded to `max_num_patches` in a batch with another video as alone without
    padding, through the VoP model and the zero-shot model (the padding is masked everywhere)."""
    batch = collate(preprocessor, VideoTextDataset(records, preprocessor, num_frames=FRAMES))
    inputs = {key: batch[key] for key in ("pixel_values", "pixel_attention_mask", "spatial_shapes")}
    base = tiny_model("siglip2")
    zero_shot = embed_videos(base, **inputs)
    model = get_peft_model(tiny_model("siglip2"), peft_vop.VoPConfig(variant=variant, num_frames=FRAMES)).eval()
    with torch.no_grad():
        for parameter in model.parameters():
            if parameter.requires_grad:
                parameter.normal_(0, 0.5)
        tuned = embed_videos(model, **inputs)
        # The wide video alone: its 15 real patches, no padding.
        alone = {
            "pixel_values": inputs["pixel_values"][:1, :, :15],
            "pixel_attention_mask": inputs["pixel_attention_mask"][:1, :, :15],
            "spatial_shapes": inputs["spatial_shapes"][:1],
        }
        torch.testing.assert_close(embed_videos(model, **alone)[0], tuned[0], rtol=0, atol=1e-5)
        torch.testing.assert_close(embed_videos(base, **alone)[0], zero_shot[0], rtol=0, atol=1e-5)
    assert not torch.allclose(tuned, zero_shot, atol=1e-3)  # the prompts do change the embeddings


def test_bad_naflex_settings_are_refused(preprocessor):
    with pytest.raises(ValueError, match="`patch_size` and `max_num_patches` go together"):
        FramePreprocessor(patch_size=8)
    with pytest.raises(ValueError, match="sizes each video itself.*shortest_edge"):
        FramePreprocessor(patch_size=8, max_num_patches=16, shortest_edge=32)
    with pytest.raises(ValueError, match="`max_num_patches` must be a positive integer; got 0"):
        FramePreprocessor(patch_size=8, max_num_patches=0)
    with pytest.raises(ValueError, match="at most max_num_patches=16"):
        preprocessor.patch_inputs([torch.zeros(FRAMES, 3, 40, 40)])
    with pytest.raises(ValueError, match="do_resize=False"):
        FramePreprocessor.from_image_processor(Siglip2ImageProcessorPil(max_num_patches=16, do_resize=False))
