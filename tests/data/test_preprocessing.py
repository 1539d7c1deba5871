import numpy as np
import pytest
import torch
from transformers import CLIPImageProcessor

from peft_vop.data import CropBox, DeviceFramePreprocessor, FramePreprocessor
from peft_vop.data.preprocessing import _random_crop_box


def custom_processor(**overrides):
    """A processor whose every value differs from CLIP's defaults, so nothing can come from constants."""
    settings = {
        "size": {"shortest_edge": 20},
        "crop_size": {"height": 16, "width": 18},
        "image_mean": [0.1, 0.2, 0.3],
        "image_std": [0.5, 0.6, 0.7],
        "resample": 2,
        "rescale_factor": 1 / 200,
    }
    settings.update(overrides)
    return CLIPImageProcessor(**settings)


def random_frames(count=3, height=30, width=41, seed=0):
    return np.random.default_rng(seed).integers(0, 256, (count, height, width, 3), dtype=np.uint8)


def test_settings_come_from_the_processor():
    preprocessor = FramePreprocessor.from_image_processor(custom_processor())
    assert preprocessor.shortest_edge == 20
    assert (preprocessor.crop_height, preprocessor.crop_width) == (16, 18)
    assert preprocessor.image_mean == (0.1, 0.2, 0.3) and preprocessor.image_std == (0.5, 0.6, 0.7)
    assert preprocessor.resample == 2 and preprocessor.rescale_factor == 1 / 200
    assert preprocessor.output_size == (16, 18)


def test_from_pretrained_reads_the_saved_configuration(tmp_path):
    custom_processor().save_pretrained(tmp_path)
    assert FramePreprocessor.from_pretrained(tmp_path) == FramePreprocessor.from_image_processor(custom_processor())


@pytest.mark.parametrize(
    "overrides",
    [
        {},
        {"resample": 3},
        {"size": {"height": 24, "width": 28}},
        {"do_center_crop": False, "size": {"height": 8, "width": 9}},
    ],
)
def test_eval_pipeline_equals_the_image_processor(overrides):
    processor = custom_processor(**overrides)
    preprocessor = FramePreprocessor.from_image_processor(processor)
    frames = random_frames()
    ours = preprocessor.normalize(preprocessor.center_crop(preprocessor.resize(frames)))
    reference = processor(images=list(frames), return_tensors="pt")["pixel_values"]
    assert ours.shape == reference.shape
    torch.testing.assert_close(ours, reference.float(), atol=1e-5, rtol=0)


def test_resize_keeps_aspect_ratio_and_uint8():
    preprocessor = FramePreprocessor.from_image_processor(custom_processor())
    resized = preprocessor.resize(random_frames(height=30, width=41))
    assert resized.shape == (3, 3, 20, 27) and resized.dtype == torch.uint8
    portrait = preprocessor.resize(random_frames(height=50, width=25))
    assert portrait.shape == (3, 3, 40, 20)


def test_normalisation_switches_follow_the_processor():
    preprocessor = FramePreprocessor.from_image_processor(custom_processor(do_normalize=False, do_rescale=False))
    frames = torch.full((2, 3, 4, 4), 200, dtype=torch.uint8)
    assert torch.equal(preprocessor.normalize(frames), frames.float())


def test_random_resized_crop_is_shared_by_all_frames():
    preprocessor = FramePreprocessor.from_image_processor(custom_processor())
    # Frame k is a horizontal ramp plus k: any crop or flip applied to one frame shows in the others identically.
    ramp = torch.arange(27, dtype=torch.uint8).repeat(20, 1)
    frames = torch.stack([(ramp + 10 * k).expand(3, 20, 27) for k in range(4)])
    flips = 0
    for seed in range(20):
        out = preprocessor.random_resized_crop(frames, np.random.default_rng(seed))
        assert out.shape == (4, 3, 16, 18) and out.dtype == torch.uint8
        for k in range(1, 4):  # the same crop and flip (up to the rounding of interpolated values)
            assert ((out[k].int() - out[0].int()) - 10 * k).abs().max() <= 1
        flips += bool(out[0, 0, 0, 0] > out[0, 0, 0, -1])
    assert 3 <= flips <= 17  # flipped about half of the time
    first = preprocessor.random_resized_crop(frames, np.random.default_rng(5))
    assert torch.equal(first, preprocessor.random_resized_crop(frames, np.random.default_rng(5)))


def test_random_crop_box_respects_scale_and_ratio():
    rng = np.random.default_rng(0)
    for _ in range(500):
        top, left, height, width = _random_crop_box(224, 298, rng, (0.5, 1.0), (3 / 4, 4 / 3))
        assert top >= 0 and top + height <= 224 and left >= 0 and left + width <= 298
        assert 0.5 * 0.97 <= height * width / (224 * 298) <= 1.0
        assert 3 / 4 * 0.97 <= width / height <= 4 / 3 * 1.03


def test_errors_name_what_is_wrong():
    with pytest.raises(ValueError, match="shortest_edge"):
        FramePreprocessor.from_image_processor(custom_processor(size={"longest_edge": 20}))
    with pytest.raises(ValueError, match=r"\[frames, height, width, 3\]"):
        FramePreprocessor.from_image_processor(custom_processor()).resize(np.zeros((4, 4, 3), np.uint8))
    lanczos = FramePreprocessor.from_image_processor(custom_processor(resample=1))
    with pytest.raises(ValueError, match="resampling filters"):
        lanczos.random_resized_crop(torch.zeros(1, 3, 20, 20, dtype=torch.uint8), np.random.default_rng(0))


def test_a_box_of_the_output_size_is_only_sliced():
    # Resizing to the same size is exact (the old per-video crop always resized); the crop skips it.
    preprocessor = FramePreprocessor.from_image_processor(custom_processor(resample=3))
    frames = torch.from_numpy(random_frames(height=30, width=41)).permute(0, 3, 1, 2)
    box = CropBox(5, 7, 16, 18)
    cropped = preprocessor.crop_resize(frames, box)
    assert torch.equal(cropped, frames[:, :, 5:21, 7:25].float())
    resized = torch.nn.functional.interpolate(cropped, size=(16, 18), mode="bicubic", antialias=True)
    assert torch.equal(resized.round().clamp(0, 255), cropped)
    assert torch.equal(preprocessor.crop_resize(frames, box._replace(flip=True)), cropped.flip(-1))


def test_device_step_leaves_other_batches_alone_and_checks_the_boxes():
    preprocessor = FramePreprocessor.from_image_processor(custom_processor())
    step = DeviceFramePreprocessor(preprocessor)
    batch = {"pixel_values": torch.zeros(1, 2, 3, 16, 18)}
    assert step(batch) is batch
    frames = torch.zeros(2, 3, 3, 20, 27, dtype=torch.uint8)
    with pytest.raises(ValueError, match="one box per video; got 1 for 2 videos"):
        step({"frames": frames, "crops": [CropBox(0, 0, 16, 18)]})
    with pytest.raises(TypeError, match="must be a FramePreprocessor; got dict"):
        DeviceFramePreprocessor({})
