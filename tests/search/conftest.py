"""Fixtures of the search tests: the real fixture videos, the shipped small CLIP and a VoP adapter."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
import torch


FIXTURES = Path(__file__).with_name("fixtures")
REAL_VIDEOS = ("bikes.mp4", "carphone_distorted.mp4")


@pytest.fixture(scope="session", name="checkpoint")
def checkpoint_fixture() -> str:
    """The small CLIP shipped with the package (its ranking of real videos means nothing; mechanics do)."""
    from peft_vop.synthetic import default_model_path

    return str(default_model_path())


@pytest.fixture(scope="session", name="adapter")
def adapter_fixture(checkpoint, tmp_path_factory) -> str:
    """A VoP^P adapter with non-zero prompts (3 frames) on the shipped small CLIP."""
    from peft import get_peft_model
    from transformers import CLIPModel

    import peft_vop

    model = get_peft_model(CLIPModel.from_pretrained(checkpoint), peft_vop.VoPConfig(variant="vop_p", num_frames=3))
    torch.manual_seed(1)
    for parameter in model.parameters():
        if parameter.requires_grad:
            torch.nn.init.normal_(parameter, std=1.0)
    directory = tmp_path_factory.mktemp("adapter") / "adapter"
    model.save_pretrained(directory)
    return str(directory)


@pytest.fixture(name="video_folder")
def video_folder_fixture(tmp_path) -> Path:
    """The two real videos plus two generated ones in a subfolder, and a file that is not a video."""
    from helpers.video_factory import write_video

    folder = tmp_path / "videos"
    (folder / "generated").mkdir(parents=True)
    for name in REAL_VIDEOS:
        shutil.copy(FIXTURES / name, folder / name)
    write_video(folder / "generated" / "a.mp4", 40)
    write_video(folder / "generated" / "b.mp4", 70)
    (folder / "notes.txt").write_text("not a video")
    return folder
