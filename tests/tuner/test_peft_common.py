"""peft's generic checks (`tests/testing_common.py`, `PeftCommonTester`, in peft's repository) run on VoP.

peft runs the same checks on every in-tree method; they are restated here for VoP (the facts they check, written
for a CLIP with images and videos), in image mode (plain VoP on `[N, 3, H, W]`) and in video mode (every variant on
`[B, F, 3, H, W]`). Merging checks do not apply: VoP prompts are tokens, not weight updates.
"""

from __future__ import annotations

import os
import warnings

import pytest
import torch
from helpers.clip import randomize_adapter, tiny_clip, tiny_text_batch
from peft import PeftModel, get_peft_model, inject_adapter_in_model
from peft.tuners.tuners_utils import BaseTunerLayer
from peft.utils import get_peft_model_state_dict
from safetensors.torch import load_file

import peft_vop
from peft_vop import mean_pool_frames


FRAMES = 4
CASES = [("image", "vop")] + [("video", variant) for variant in peft_vop.VARIANTS]
CASE_IDS = [f"{mode}-{variant}" for mode, variant in CASES]


def _config(variant: str, **options) -> peft_vop.VoPConfig:
    return peft_vop.VoPConfig(variant=variant, num_frames=FRAMES, **options)


def _inputs(mode: str) -> dict[str, torch.Tensor]:
    input_ids, attention_mask = tiny_text_batch(batch_size=2, length=7, pad_last=2)
    shape = (2, 3, 32, 32) if mode == "image" else (2, FRAMES, 3, 32, 32)
    pixel_values = torch.randn(shape, generator=torch.Generator().manual_seed(5))
    return {"input_ids": input_ids, "attention_mask": attention_mask, "pixel_values": pixel_values}


def _logits(model, inputs) -> torch.Tensor:
    return model(**inputs).logits_per_image


def _base_logits(clip, inputs) -> torch.Tensor:
    """What the frozen CLIP computes: for videos, the mean of the normalised frame embeddings (zero-shot VoP)."""
    pixel_values = inputs["pixel_values"]
    if pixel_values.ndim == 4:
        return clip(**inputs).logits_per_image
    frames = clip.get_image_features(pixel_values=pixel_values.flatten(0, 1)).pooler_output
    videos = mean_pool_frames(frames.unflatten(0, pixel_values.shape[:2]))
    text = clip.get_text_features(input_ids=inputs["input_ids"], attention_mask=inputs["attention_mask"])
    text = torch.nn.functional.normalize(text.pooler_output, dim=-1)
    return clip.logit_scale.exp() * videos @ text.T


def _peft_model(variant: str, **options) -> PeftModel:
    return randomize_adapter(get_peft_model(tiny_clip(), _config(variant, **options)), std=0.3)


@pytest.mark.parametrize(("mode", "variant"), CASES, ids=CASE_IDS)
def test_adapter_parameter_names_contain_prefix(mode, variant):
    model = _peft_model(variant)
    trainable = [name for name, parameter in model.named_parameters() if parameter.requires_grad]
    assert trainable and all(model.prefix in name for name in trainable)


@pytest.mark.parametrize(("mode", "variant"), CASES, ids=CASE_IDS)
def test_model_attributes_and_adapter_name(mode, variant):
    model = get_peft_model(tiny_clip(), _config(variant), adapter_name="test-adapter")
    assert all(hasattr(model, name) for name in ("save_pretrained", "from_pretrained", "push_to_hub"))
    assert any("test-adapter" in name for name, _ in model.named_parameters())


@pytest.mark.parametrize(("mode", "variant"), CASES, ids=CASE_IDS)
def test_training(mode, variant):
    model = _peft_model(variant).train()
    _logits(model, _inputs(mode)).sum().backward()
    for name, parameter in model.named_parameters():
        if model.prefix in name:
            assert parameter.grad is not None, name
        else:
            assert parameter.grad is None, name


@pytest.mark.parametrize("use_reentrant", [True, False])
@pytest.mark.parametrize(("mode", "variant"), CASES, ids=CASE_IDS)
def test_training_gradient_checkpointing(mode, variant, use_reentrant):
    model = _peft_model(variant).train()
    inputs = _inputs(mode)
    parameters = [(name, p) for name, p in model.named_parameters() if p.requires_grad]
    (_logits(model, inputs) ** 2).sum().backward()
    nonzero = {name for name, p in parameters if p.grad.abs().sum() > 0}
    for _, parameter in parameters:
        parameter.grad = None
    model.prepare_model_for_gradient_checkpointing(model)
    model.gradient_checkpointing_enable({"use_reentrant": use_reentrant})
    (_logits(model, inputs) ** 2).sum().backward()
    assert {name for name, p in parameters if p.grad.abs().sum() > 0} == nonzero
    for name, parameter in model.named_parameters():
        assert (parameter.grad is not None) == (model.prefix in name), name


@pytest.mark.parametrize(("mode", "variant"), CASES, ids=CASE_IDS)
def test_training_layer_indexing(mode, variant, tmp_path):
    """peft's `layers_to_transform=[0]` is VoP's `text_layers=[0]`, `vision_layers=[0]`."""
    model = _peft_model(variant, text_layers=[0], vision_layers=[0]).train()
    inputs = _inputs(mode)
    _logits(model, inputs).sum().backward()
    indexed = 0
    for name, parameter in model.named_parameters():
        assert (parameter.grad is not None) == (model.prefix in name), name
        indexed += parameter.numel() if model.prefix in name else 0
    model.eval()
    with torch.no_grad():
        logits = _logits(model, inputs)
    model.save_pretrained(tmp_path)
    loaded = PeftModel.from_pretrained(tiny_clip(), tmp_path)
    with torch.no_grad():
        assert torch.equal(_logits(loaded, inputs), logits)
    # VoP keeps one tensor per tower with a row per prompted layer, so it is the element count that shrinks.
    every_layer = get_peft_model(tiny_clip(), _config(variant))
    assert indexed < sum(p.numel() for name, p in every_layer.named_parameters() if model.prefix in name)


@pytest.mark.parametrize(("mode", "variant"), CASES, ids=CASE_IDS)
def test_save_pretrained_and_load(mode, variant, tmp_path):
    model = _peft_model(variant).eval()
    model.save_pretrained(tmp_path)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        loaded = PeftModel.from_pretrained(tiny_clip(), tmp_path)
    assert not any("Found missing adapter keys" in str(warning.message) for warning in caught)
    expected, actual = model.state_dict(), loaded.state_dict()
    assert expected.keys() == actual.keys()
    assert all(torch.equal(expected[key], actual[key]) for key in expected)
    files = set(os.listdir(tmp_path))
    assert {"adapter_model.safetensors", "adapter_config.json"} <= files
    assert not {"model.safetensors", "config.json"} & files
    inputs = _inputs(mode)
    with torch.no_grad():
        assert torch.equal(_logits(loaded, inputs), _logits(model, inputs))


@pytest.mark.parametrize(("mode", "variant"), CASES, ids=CASE_IDS)
def test_save_selected_adapters_and_names_that_contain_each_other(mode, variant, tmp_path):
    model = _peft_model(variant)
    expected = len(get_peft_model_state_dict(model))
    for name in ("new_adapter", "default2", "other_default", "foodefault_bar", "efaul"):
        model.add_adapter(name, _config(variant))
    model.save_pretrained(tmp_path / "all")
    loaded = PeftModel.from_pretrained(tiny_clip(), tmp_path / "all")
    result = loaded.load_adapter(tmp_path / "all" / "new_adapter", "new_adapter")
    assert result.missing_keys == []
    model.save_pretrained(tmp_path / "one", selected_adapters=["default"])
    assert len(load_file(tmp_path / "one" / "adapter_model.safetensors")) == expected
    only_default = PeftModel.from_pretrained(tiny_clip(), tmp_path / "one")
    assert list(only_default.peft_config) == ["default"]


@pytest.mark.parametrize(("mode", "variant"), CASES, ids=CASE_IDS)
def test_load_multiple_adapters_and_config_construction(mode, variant, tmp_path):
    config = _config(variant)
    get_peft_model(tiny_clip(), config).save_pretrained(tmp_path)
    model = PeftModel.from_pretrained(tiny_clip(), tmp_path)
    assert model.load_adapter(tmp_path, adapter_name="other").missing_keys == []
    assert model.load_adapter(tmp_path, adapter_name="yet-another").missing_keys == []
    constructed = PeftModel.from_pretrained(tiny_clip(), tmp_path, is_trainable=False, config=config)
    assert constructed.peft_config["default"] is config and config.inference_mode


@pytest.mark.parametrize(("mode", "variant"), CASES, ids=CASE_IDS)
def test_load_with_low_cpu_mem_usage(mode, variant, tmp_path):
    get_peft_model(tiny_clip(), _config(variant)).save_pretrained(tmp_path)
    model = PeftModel.from_pretrained(tiny_clip(), tmp_path, low_cpu_mem_usage=True)
    assert {p.device.type for p in model.parameters()} == {"cpu"}
    model.load_adapter(tmp_path, adapter_name="other", low_cpu_mem_usage=True)
    assert {p.device.type for p in model.parameters()} == {"cpu"}
    clip = tiny_clip()
    inject_adapter_in_model(_config(variant), clip, low_cpu_mem_usage=True)
    assert "meta" in {p.device.type for p in clip.parameters()}


@pytest.mark.parametrize("inactive", [False, True])
@pytest.mark.parametrize(("mode", "variant"), CASES, ids=CASE_IDS)
def test_delete_adapter(mode, variant, inactive):
    model = get_peft_model(tiny_clip(), _config(variant))
    model.add_adapter("delete_me", _config(variant))
    if not inactive:
        model.set_adapter("delete_me")
    model.delete_adapter("delete_me")
    assert "delete_me" not in model.peft_config and model.active_adapters == ["default"]
    for module in model.modules():
        for attribute in getattr(module, "adapter_layer_names", ()) + getattr(module, "other_param_names", ()):
            assert "delete_me" not in getattr(module, attribute)
    model.delete_adapter("default")
    assert "default" not in model.peft_config and model.active_adapters == []
    with torch.no_grad():
        model.base_model(**_inputs(mode))  # still runs
    with pytest.raises(ValueError, match="Adapter unknown-adapter does not exist"):
        model.delete_adapter("unknown-adapter")


@pytest.mark.parametrize(("mode", "variant"), CASES, ids=CASE_IDS)
def test_disable_adapter(mode, variant):
    clip = tiny_clip()
    inputs = _inputs(mode)
    with torch.no_grad():
        before = _base_logits(clip, inputs)
        model = randomize_adapter(get_peft_model(clip, _config(variant)), std=0.3)
        adapted = _logits(model, inputs)
        assert not torch.allclose(before, adapted)
        with model.disable_adapter():
            assert torch.allclose(_logits(model, inputs), before, atol=1e-6, rtol=1e-6)
        assert torch.equal(_logits(model, inputs), adapted)


@pytest.mark.parametrize(("mode", "variant"), CASES, ids=CASE_IDS)
def test_unload(mode, variant):
    clip = tiny_clip()
    images = _inputs("image")
    with torch.no_grad():
        before = clip(**images).logits_per_image
    count = len(clip.state_dict())
    model = randomize_adapter(get_peft_model(clip, _config(variant)), std=0.3).eval()
    with torch.no_grad():
        adapted = _logits(model, _inputs(mode))
    unloaded = model.unload()
    assert not any(isinstance(module, BaseTunerLayer) for module in unloaded.modules())
    assert not hasattr(unloaded, "peft_config") and len(unloaded.state_dict()) == count
    with torch.no_grad():
        assert torch.equal(unloaded(**images).logits_per_image, before)
        if mode == "image":
            assert not torch.allclose(adapted, before)
