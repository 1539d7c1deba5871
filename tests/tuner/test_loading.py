"""Loading adapters: old key names migrate, missing tensors are never silent, bad directories name themselves."""

from __future__ import annotations

import json
import shutil
import warnings
from pathlib import Path

import pytest
import torch
from fixtures.make_clip_reference import embeddings
from helpers.clip import randomize_adapter, tiny_clip, tiny_text_batch
from peft import PeftModel, get_peft_model
from safetensors import safe_open
from safetensors.torch import load_file, save_file
from transformers import CLIPModel

import peft_vop
from peft_vop.model import migrate_key


FIXTURES = Path(__file__).resolve().parent / "fixtures"
ROOT = Path(__file__).resolve().parents[2]


def assert_reference_embeddings(variant: str, text: torch.Tensor | None, video: torch.Tensor) -> None:
    """Equal to the stored embeddings bit for bit on the CPU capability that stored them, else to 1e-6 (float kernels
    of another instruction set round differently; see test_clip_reference.py)."""
    with safe_open(FIXTURES / "clip_reference.safetensors", framework="pt") as handle:
        expected = {
            "text": handle.get_tensor(f"{variant}/text_embeds"),
            "video": handle.get_tensor(f"{variant}/video_embeds"),
        }
        exact = handle.metadata()["cpu_capability"] == torch.backends.cpu.get_cpu_capability()
    for name, actual in (("text", text), ("video", video)):
        if actual is None:
            continue
        if exact:
            assert torch.equal(actual, expected[name]), (actual - expected[name]).abs().max()
        else:
            torch.testing.assert_close(actual, expected[name], atol=1e-6, rtol=0)


@pytest.mark.parametrize("variant", ["vop_f+p", "vop_c"])
def test_adapters_saved_with_the_old_key_names_still_load(variant):
    directory = FIXTURES / "adapters_before_prefix" / variant
    old_keys = set(load_file(directory / "adapter_model.safetensors"))
    assert not any(".vop.vop_" in key for key in old_keys)  # the fixture really has the old names
    with warnings.catch_warnings():
        warnings.simplefilter("error", UserWarning)  # no missing-keys warning
        model = PeftModel.from_pretrained(tiny_clip(seed=0), directory)
    assert_reference_embeddings(variant, *embeddings(model))
    strict = peft_vop.load_adapter(tiny_clip(seed=0), directory)
    assert_reference_embeddings(variant, None, embeddings(strict)[1])


def test_every_old_container_name_has_a_new_one():
    assert migrate_key("base_model.model.vision_model.vop.frame_prompts") == (
        "base_model.model.vision_model.vop.vop_position_prompts"
    )
    assert migrate_key("base_model.model.vision_model.vop.context_module.context.weight_ih_l0") == (
        "base_model.model.vision_model.vop.vop_context_module.context.weight_ih_l0"
    )
    assert migrate_key("base_model.model.vision_model.vop.video_prompts") == (
        "base_model.model.vision_model.vop.vop_inter_frame_prompts"
    )
    current = "base_model.model.vision_model.vop.vop_prompts"
    assert migrate_key(current) == current


def test_every_adapter_parameter_name_contains_the_prefix():
    model = get_peft_model(tiny_clip(), peft_vop.VoPConfig(variant="vop_f+c", num_frames=4, intra_frame_layers=2))
    trainable = [name for name, parameter in model.named_parameters() if parameter.requires_grad]
    assert trainable and all("vop_" in name.removeprefix("base_model.model.") for name in trainable)


def _saved_without(tmp_path: Path, dropped: str) -> Path:
    model = randomize_adapter(get_peft_model(tiny_clip(), peft_vop.VoPConfig(variant="vop_p", num_frames=4)), 0.3)
    model.save_pretrained(tmp_path)
    weights = load_file(tmp_path / "adapter_model.safetensors")
    del weights[dropped]
    save_file(weights, tmp_path / "adapter_model.safetensors", metadata={"format": "pt"})
    return tmp_path


def test_a_missing_tensor_makes_peft_warn(tmp_path):
    directory = _saved_without(tmp_path, "base_model.model.vision_model.vop.vop_position_prompts")
    with pytest.warns(UserWarning, match=r"Found missing adapter keys.*vop_position_prompts"):
        PeftModel.from_pretrained(tiny_clip(), directory)


def test_the_strict_loader_refuses_a_missing_tensor_naming_key_and_file(tmp_path):
    directory = _saved_without(tmp_path, "base_model.model.text_model.vop.vop_prompts")
    with pytest.raises(ValueError, match=r"adapter_model\.safetensors.*lack 1 .*text_model\.vop\.vop_prompts"):
        peft_vop.load_adapter(tiny_clip(), directory)


def test_vop_eval_refuses_an_adapter_with_missing_tensors(tmp_path, capsys):
    from helpers.tiny_checkpoint import save_tiny_checkpoint
    from helpers.video_factory import write_video

    from peft_vop.cli.main import main
    from peft_vop.data import VideoRecord, write_annotations

    checkpoint = save_tiny_checkpoint(tmp_path / "clip")
    (tmp_path / "videos").mkdir()
    records = [VideoRecord(write_video(tmp_path / "videos" / "v0.mp4", 10), ["a cat"], "v0", "test")]
    write_annotations(records, tmp_path / "annotations.jsonl")
    model = get_peft_model(CLIPModel.from_pretrained(checkpoint), peft_vop.VoPConfig(num_frames=3))
    model.save_pretrained(tmp_path / "adapter")
    weights = load_file(tmp_path / "adapter" / "adapter_model.safetensors")
    del weights["base_model.model.text_model.vop.vop_prompts"]
    save_file(weights, tmp_path / "adapter" / "adapter_model.safetensors", metadata={"format": "pt"})
    arguments = ["eval", "--model", checkpoint, "--adapter", str(tmp_path / "adapter"), "--num-workers", "0"]
    arguments += ["--annotations", str(tmp_path / "annotations.jsonl"), "--output", str(tmp_path / "m.json")]
    assert main([*arguments, "--no-progress"]) == 2
    error = capsys.readouterr().err
    assert "--adapter_name_or_path: cannot load" in error and "text_model.vop.vop_prompts" in error
    assert not (tmp_path / "m.json").exists()


def test_an_adapter_directory_without_weights_is_named(tmp_path):
    get_peft_model(tiny_clip(), peft_vop.VoPConfig()).save_pretrained(tmp_path)
    (tmp_path / "adapter_model.safetensors").unlink()
    for load in (PeftModel.from_pretrained, peft_vop.load_adapter):
        with pytest.raises(ValueError, match=rf"adapter directory '{tmp_path}' has a config but no weights"):
            load(tiny_clip(), tmp_path)


def test_an_unknown_peft_type_names_the_accepted_values(tmp_path):
    shutil.copytree(FIXTURES / "adapters_before_prefix" / "vop_c", tmp_path / "adapter")
    config_file = tmp_path / "adapter" / "adapter_config.json"
    config_file.write_text(json.dumps({**json.loads(config_file.read_text()), "peft_type": "NOPE"}))
    with pytest.raises(
        ValueError, match=r"adapter_config\.json' has peft_type='NOPE'.*accepted values: \[.*'LORA'.*'VOP'"
    ):
        peft_vop.load_adapter(tiny_clip(), tmp_path / "adapter")


def test_caption_and_video_batches_must_pair_up_for_the_loss():
    model = get_peft_model(tiny_clip(), peft_vop.VoPConfig())
    input_ids, attention_mask = tiny_text_batch(batch_size=3)
    video = torch.randn(2, 4, 3, 32, 32)
    with pytest.raises(ValueError, match=r"got 3 captions .*\(3, 7\).* and 2 videos .*\(2, 4, 3, 32, 32\)"):
        model(input_ids=input_ids, attention_mask=attention_mask, pixel_values=video, return_loss=True)
    with torch.no_grad():  # without the loss, the similarity matrix of 3 captions x 2 videos is fine
        assert model(input_ids=input_ids, attention_mask=attention_mask, pixel_values=video).logits_per_text.shape == (
            3,
            2,
        )


@pytest.mark.parametrize("shape", [(0, 4, 3, 32, 32), (2, 0, 3, 32, 32), (0, 3, 32, 32)])
def test_empty_batches_and_videos_without_frames_are_refused(shape):
    model = get_peft_model(tiny_clip(), peft_vop.VoPConfig())
    with pytest.raises(ValueError, match=r"`pixel_values` must hold at least one image, or one video of at least one"):
        model.get_image_features(pixel_values=torch.zeros(shape))


def test_an_empty_caption_batch_is_refused():
    model = get_peft_model(tiny_clip(), peft_vop.VoPConfig())
    with pytest.raises(
        ValueError, match=r"`input_ids` must hold at least one token of one caption; got shape \(0, 7\)"
    ):
        model.get_text_features(input_ids=torch.zeros(0, 7, dtype=torch.long))


def test_loading_never_looks_the_base_model_up_on_the_hub(tmp_path, monkeypatch):
    import peft.utils.save_and_load

    def refuse(*args, **kwargs):
        raise AssertionError(f"looked up {args} on the Hub")

    monkeypatch.setattr(peft.utils.save_and_load, "check_file_exists_on_hf_hub", refuse)
    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
    model = get_peft_model(tiny_clip(), peft_vop.VoPConfig())
    model.base_model.model.name_or_path = "default"  # a name that is no local folder, as the shipped CLIP records
    model.save_pretrained(tmp_path)
    peft_vop.load_adapter(tiny_clip(), tmp_path)
