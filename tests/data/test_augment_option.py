"""`VideoTextDataset(train=True, augment=False)`: random frames and captions, but no crop or flip."""

from __future__ import annotations

import av
import numpy as np
import torch
from helpers.tiny_checkpoint import tiny_image_processor

from peft_vop.data import FramePreprocessor, VideoRecord, VideoTextDataset


def _gradient_video(path, frames: int = 30, width: int = 48, height: int = 40) -> str:
    """Frames that brighten from left to right, so any flip or crop changes their pixels."""
    ramp = np.linspace(0, 255, width, dtype=np.float32)
    with av.open(str(path), "w") as container:
        stream = container.add_stream("libx264", rate=30)
        stream.width, stream.height, stream.pix_fmt = width, height, "yuv420p"
        stream.codec_context.thread_count = 1
        for index in range(frames):
            image = np.repeat(np.broadcast_to(ramp, (height, width))[..., None], 3, axis=2).astype(np.uint8)
            image[:, :, 1] = index * 8
            for packet in stream.encode(av.VideoFrame.from_ndarray(image, format="rgb24")):
                container.mux(packet)
        for packet in stream.encode():
            container.mux(packet)
    return str(path)


def test_training_items_without_augmentation_keep_the_whole_frame(tmp_path):
    preprocessor = FramePreprocessor.from_image_processor(tiny_image_processor())
    records = [VideoRecord(_gradient_video(tmp_path / "v.mp4"), ("a", "b", "c"), "v")]
    plain = VideoTextDataset(records, preprocessor, num_frames=4, sampling="uniform", train=True, augment=False)
    evaluation = VideoTextDataset(records, preprocessor, num_frames=4, sampling="uniform")
    augmented = VideoTextDataset(records, preprocessor, num_frames=4, sampling="uniform", train=True)
    reference = evaluation[0]["frames"]
    changed = 0
    for epoch in range(6):
        plain.set_epoch(epoch)
        augmented.set_epoch(epoch)
        assert torch.equal(plain[0]["frames"], reference)
        changed += not torch.equal(augmented[0]["frames"], reference)
    assert changed >= 5  # crops of at most the whole frame, resized, or flips: the gradient moves
    captions = {plain[0]["caption"] for epoch in range(12) if not plain.set_epoch(epoch)}
    assert len(captions) > 1
