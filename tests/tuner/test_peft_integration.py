"""VoP behaves like peft's built-in methods: registration, saving/loading, several adapters, unloading, devices."""

from __future__ import annotations

import copy
import importlib
import json
import os
import shutil
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
import torch
from helpers.clip import randomize_adapter, tiny_clip, tiny_text_batch
from peft import AutoPeftModel, PeftConfig, PeftModel, get_peft_model
from peft.tuners.tuners_utils import BaseTunerLayer
from safetensors.torch import load_file

import peft_vop
from peft_vop.layer import VoPLayer


ROOT = Path(__file__).resolve().parents[2]
VIDEO = torch.randn(2, 4, 3, 32, 32, generator=torch.Generator().manual_seed(3))


def _outputs(model):
    input_ids, attention_mask = tiny_text_batch()
    with torch.no_grad():
        out = model(input_ids=input_ids, attention_mask=attention_mask, pixel_values=VIDEO)
    return out.logits_per_text, out.text_embeds, out.image_embeds


def _trained(variant: str = "vop", seed: int = 0, **kwargs):
    model = get_peft_model(tiny_clip(), peft_vop.VoPConfig(variant=variant, num_frames=4, **kwargs))
    return randomize_adapter(model, std=0.3, seed=seed)


def _hook_count(module: torch.nn.Module) -> int:
    return sum(len(m._forward_hooks) + len(m._forward_pre_hooks) for m in module.modules())


def test_registration_is_idempotent_and_visible_to_peft():
    from peft.mapping import PEFT_TYPE_TO_CONFIG_MAPPING, PEFT_TYPE_TO_TUNER_MAPPING
    from peft.utils import PeftType

    importlib.reload(peft_vop)  # a second registration replaces the first
    peft_vop.peft_model_extensions.install()
    assert PeftType("VOP") is PeftType.VOP is peft_vop.VOP_PEFT_TYPE
    assert PEFT_TYPE_TO_CONFIG_MAPPING[PeftType.VOP] is peft_vop.VoPConfig
    assert PEFT_TYPE_TO_TUNER_MAPPING["VOP"] is peft_vop.VoPModel
    assert list(PeftType).count(PeftType.VOP) == 1


def other_python(version: str) -> str | None:
    """An interpreter of `version` on this machine: `pythonX.Y` on the PATH, else one that pyenv installed."""
    candidates = [shutil.which(f"python{version}")]
    if shutil.which("pyenv"):
        root = subprocess.run(["pyenv", "root"], capture_output=True, text=True).stdout.strip()
        versions = Path(root, "versions")
        if versions.is_dir():
            candidates += [str(path / "bin" / "python") for path in sorted(versions.glob(f"{version}.*"))]
    for candidate in filter(None, candidates):
        # A pyenv shim answers for versions that are not selected by failing; keep only interpreters that run.
        if subprocess.run([candidate, "-c", "pass"], capture_output=True).returncode == 0:
            return candidate
    return None


@pytest.mark.parametrize("version", ["3.10", "3.12", "3.13"])
def test_enum_extension_works_on_other_pythons(version):
    """The enum mechanism itself (`peft_vop/_enum.py`, standard library only, run as it is) on other interpreters,
    with an enum like peft's `PeftType` (a plain `str` enum)."""
    python = other_python(version)
    if python is None:
        pytest.skip(f"no Python {version} interpreter on this machine")
    script = textwrap.dedent(
        f"""
        import enum, pickle, runpy
        extend_enum = runpy.run_path({str(ROOT / "peft_vop" / "_enum.py")!r})["extend_enum"]
        class PeftType(str, enum.Enum):
            LORA = "LORA"
        member = extend_enum(PeftType, "VOP", "VOP")
        assert extend_enum(PeftType, "VOP", "VOP") is member is PeftType.VOP is PeftType("VOP") is PeftType["VOP"]
        assert list(PeftType) == [PeftType.LORA, member] and member == "VOP" and {{member: 1}}["VOP"] == 1
        assert pickle.loads(pickle.dumps(member)) is member
        print("ok")
        """
    )
    result = subprocess.run([python, "-c", script], capture_output=True, text=True, timeout=60)
    assert result.stdout.strip() == "ok", result.stderr


def test_save_writes_prompts_only_and_a_model_card(tmp_path):
    model = _trained("vop_p")
    model.save_pretrained(tmp_path)
    assert sorted(os.listdir(tmp_path)) == ["README.md", "adapter_config.json", "adapter_model.safetensors"]
    weights = load_file(tmp_path / "adapter_model.safetensors")
    assert set(weights) == {
        "base_model.model.text_model.vop.vop_prompts",
        "base_model.model.vision_model.vop.vop_prompts",
        "base_model.model.vision_model.vop.vop_position_prompts",
    }
    assert sum(t.numel() for t in weights.values()) == model.get_nb_trainable_parameters()[0]
    config = json.loads((tmp_path / "adapter_config.json").read_text())
    assert config["peft_type"] == "VOP" and config["variant"] == "vop_p" and config["frame_prompts"] == "position"
    card = (tmp_path / "README.md").read_text()
    assert "library_name: peft" in card and "import peft_vop" in card and "vop_p" in card
    model.save_pretrained(tmp_path)  # saving again replaces the section instead of repeating it
    assert (tmp_path / "README.md").read_text().count("## VoP adapter") == 1
    assert not [p for p in tmp_path.parent.iterdir() if p.name.startswith(f".{tmp_path.name}.saving-")]


def test_base_model_name_is_recorded_in_config_and_card(tmp_path):
    clip = tiny_clip()
    clip.save_pretrained(tmp_path / "base")
    from transformers import CLIPModel

    model = get_peft_model(CLIPModel.from_pretrained(tmp_path / "base"), peft_vop.VoPConfig())
    model.save_pretrained(tmp_path / "adapter")
    config = json.loads((tmp_path / "adapter" / "adapter_config.json").read_text())
    assert config["base_model_name_or_path"] == str(tmp_path / "base")
    assert f"base_model: {tmp_path / 'base'}" in (tmp_path / "adapter" / "README.md").read_text()


class _RecordingHub:
    """Stands in for the Hub API that transformers' `push_to_hub` calls; keeps what would have been uploaded."""

    def __init__(self):
        self.uploaded: dict[str, bytes] = {}

    def create_repo(self, repo_id, **kwargs):
        return type("RepoUrl", (), {"repo_id": repo_id})()

    def create_commit(self, repo_id, operations, **kwargs):
        for operation in operations:
            self.uploaded[operation.path_in_repo] = Path(operation.path_or_fileobj).read_bytes()


@pytest.mark.parametrize("existing_card", [False, True])
def test_push_to_hub_uploads_the_adapter_with_its_loading_section(tmp_path, monkeypatch, existing_card):
    """`push_to_hub` goes through peft/transformers' upload path; only the network calls are replaced here."""
    import transformers.utils.hub as hub
    from huggingface_hub import ModelCard, ModelCardData

    clip = tiny_clip()
    clip.save_pretrained(tmp_path / "base")
    from transformers import CLIPModel

    model = get_peft_model(
        CLIPModel.from_pretrained(tmp_path / "base"), peft_vop.VoPConfig(variant="vop_f+p", intra_frame_layers=2)
    )
    recording = _RecordingHub()
    monkeypatch.setattr(hub, "hf_api", lambda: recording)

    def repository_card(repo_id, tags=None, token=None):
        # What transformers gives: the repository's card, or its template for a new repository.
        if existing_card:
            return ModelCard("---\nlicense: apache-2.0\n---\n# My adapter\n\nTrained on my videos.\n")
        return ModelCard.from_template(ModelCardData(tags=tags or [], library_name="transformers"))

    monkeypatch.setattr(hub, "create_and_tag_model_card", repository_card)
    model.push_to_hub("me/my-vop-adapter")

    model.save_pretrained(tmp_path / "saved")
    assert sorted(recording.uploaded) == ["README.md", "adapter_config.json", "adapter_model.safetensors"]
    for name in ("adapter_config.json", "adapter_model.safetensors"):
        assert recording.uploaded[name] == (tmp_path / "saved" / name).read_bytes()
    card = recording.uploaded["README.md"].decode()
    assert card.count("## VoP adapter") == 1 and "import peft_vop" in card and "`vop_f+p`" in card
    assert "library_name: peft" in card and f"base_model: {tmp_path / 'base'}" in card
    if existing_card:
        assert "Trained on my videos." in card and "license: apache-2.0" in card


def test_a_crash_while_saving_leaves_the_previous_adapter_intact(tmp_path, monkeypatch):
    good = _trained("vop", seed=1)
    good.save_pretrained(tmp_path)
    before = {name: (tmp_path / name).read_bytes() for name in os.listdir(tmp_path)}

    import peft.peft_model

    def crash(tensors, filename, metadata=None):
        Path(filename).write_bytes(b"half a file")
        raise OSError("disk full")

    monkeypatch.setattr(peft.peft_model, "safe_save_file", crash)
    with pytest.raises(OSError, match="disk full"):
        _trained("vop", seed=2).save_pretrained(tmp_path)
    assert {name: (tmp_path / name).read_bytes() for name in os.listdir(tmp_path)} == before
    assert not [p for p in tmp_path.parent.iterdir() if p.name.startswith(f".{tmp_path.name}.saving-")]


@pytest.mark.slow
@pytest.mark.parametrize("variant", list(peft_vop.VARIANTS))
def test_save_then_load_in_a_fresh_process_reproduces_outputs_bit_for_bit(tmp_path, variant):
    model = _trained(variant, intra_frame_layers=2 if variant.startswith("vop_f") else None)
    model.save_pretrained(tmp_path / "adapter")
    logits, text, video = _outputs(model)
    torch.save({"logits": logits, "text": text, "video": video, "input": VIDEO}, tmp_path / "expected.pt")
    script = textwrap.dedent(
        f"""
        import sys, torch
        sys.path.insert(0, {str(ROOT / "tests")!r})
        from helpers.clip import randomize_adapter, tiny_clip, tiny_text_batch
        import peft_vop
        from peft import PeftModel
        expected = torch.load({str(tmp_path / "expected.pt")!r})
        model = PeftModel.from_pretrained(tiny_clip(), {str(tmp_path / "adapter")!r})
        ids, mask = tiny_text_batch()
        with torch.no_grad():
            out = model(input_ids=ids, attention_mask=mask, pixel_values=expected["input"])
        assert torch.equal(out.logits_per_text, expected["logits"]), "logits"
        assert torch.equal(out.text_embeds, expected["text"]), "text"
        assert torch.equal(out.image_embeds, expected["video"]), "video"
        assert not any(p.requires_grad for p in model.parameters()), "inference mode"
        print("ok")
        """
    )
    result = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=300)
    assert result.stdout.strip().endswith("ok"), result.stderr[-3000:]


def test_peft_entry_points_load_vop_adapters(tmp_path):
    model = _trained("vop_c")
    clip_dir = tmp_path / "base"
    tiny_clip().save_pretrained(clip_dir)
    model.peft_config["default"].base_model_name_or_path = str(clip_dir)
    model.save_pretrained(tmp_path / "adapter")
    assert isinstance(PeftConfig.from_pretrained(tmp_path / "adapter"), peft_vop.VoPConfig)
    auto = AutoPeftModel.from_pretrained(tmp_path / "adapter")
    torch.testing.assert_close(_outputs(auto)[0], _outputs(model)[0], rtol=0, atol=0)
    low_memory = PeftModel.from_pretrained(tiny_clip(), tmp_path / "adapter", low_cpu_mem_usage=True)
    assert not any(p.device.type == "meta" for p in low_memory.parameters())
    assert torch.equal(_outputs(low_memory)[0], _outputs(model)[0])


def test_several_adapters_switch_disable_delete_and_unload(tmp_path):
    first = _trained("vop", seed=1)
    second = _trained("vop_f+p", seed=2, intra_frame_layers=1)
    first.save_pretrained(tmp_path / "first")
    second.save_pretrained(tmp_path / "second")
    model = PeftModel.from_pretrained(tiny_clip(), tmp_path / "first", adapter_name="first")
    model.load_adapter(tmp_path / "second", adapter_name="second")
    model.add_adapter("fresh", peft_vop.VoPConfig(variant="vop_c", num_frames=4))
    assert model.active_adapters == ["first"]
    assert torch.equal(_outputs(model)[0], _outputs(first)[0])
    model.set_adapter("second")
    assert torch.equal(_outputs(model)[0], _outputs(second)[0])
    model.set_adapter("first")
    assert torch.equal(_outputs(model)[0], _outputs(first)[0])
    with model.disable_adapter():
        torch.testing.assert_close(_outputs(model)[0], _base_video_logits(), atol=1e-5, rtol=1e-6)
    status = model.get_model_status()
    assert status.available_adapters == ["first", "fresh", "second"] and status.active_adapters == ["first"]
    model.delete_adapter("second")
    assert "second" not in model.peft_config
    assert all("second" not in layer.plans for layer in model.modules() if isinstance(layer, VoPLayer))
    assert torch.equal(_outputs(model)[0], _outputs(first)[0])
    clip = model.unload()
    assert _hook_count(clip) == 0
    assert not any(isinstance(m, VoPLayer) for m in clip.modules())
    input_ids, attention_mask = tiny_text_batch()
    images = VIDEO[:, 0]
    with torch.no_grad():
        unloaded = clip(input_ids=input_ids, attention_mask=attention_mask, pixel_values=images).logits_per_text
        expected = tiny_clip()(input_ids=input_ids, attention_mask=attention_mask, pixel_values=images).logits_per_text
    assert torch.equal(unloaded, expected)


def _base_video_logits():
    # Zero-shot CLIP on videos: per-frame features, mean pooled (what a disabled VoP model computes).
    clip = tiny_clip()
    input_ids, attention_mask = tiny_text_batch()
    with torch.no_grad():
        frames = clip.get_image_features(pixel_values=VIDEO.flatten(0, 1)).pooler_output.view(2, 4, -1)
        video = peft_vop.mean_pool_frames(frames)
        text = torch.nn.functional.normalize(
            clip.get_text_features(input_ids=input_ids, attention_mask=attention_mask).pooler_output, dim=-1
        )
    return text @ video.T * clip.logit_scale.exp()


def test_disabled_adapter_on_images_is_the_untouched_base_bit_for_bit():
    model = _trained("vop")
    input_ids, attention_mask = tiny_text_batch()
    images = VIDEO[:, 0]
    with torch.no_grad():
        expected = tiny_clip()(input_ids=input_ids, attention_mask=attention_mask, pixel_values=images)
        with model.disable_adapter():
            actual = model(input_ids=input_ids, attention_mask=attention_mask, pixel_values=images)
    assert torch.equal(actual.logits_per_text, expected.logits_per_text)


def test_merging_is_refused_with_a_clear_error():
    model = _trained("vop")
    with pytest.raises(ValueError, match="cannot be merged"):
        model.merge_and_unload()
    with pytest.raises(ValueError, match="cannot be merged"):
        model.base_model.merge_adapter()


def test_loading_onto_another_geometry_fails_before_touching_weights(tmp_path):
    _trained("vop").save_pretrained(tmp_path)
    other = tiny_clip(vision_layers=2, vision_width=64)
    with pytest.raises(ValueError, match=r"vision_model\.vop\.vop_prompts.*\[3, 8, 48\].*\[2, 8, 64\]"):
        PeftModel.from_pretrained(other, tmp_path)


def test_only_prompts_train_and_logit_scale_stays_frozen():
    model = _trained("vop_f+c", intra_frame_layers=2)
    trainable = [name for name, p in model.named_parameters() if p.requires_grad]
    assert trainable and all(".vop." in name for name in trainable)
    assert not model.get_base_model().logit_scale.requires_grad


def test_set_requires_grad_and_is_trainable_behave_like_lora(tmp_path):
    model = _trained("vop")
    model.add_adapter("other", peft_vop.VoPConfig())
    other = [p for n, p in model.named_parameters() if ".other" in n]
    assert other and not any(p.requires_grad for p in other)
    model.base_model.set_requires_grad("other", True)
    assert all(p.requires_grad for p in other)
    model.save_pretrained(tmp_path)
    frozen = PeftModel.from_pretrained(tiny_clip(), tmp_path)
    assert not any(p.requires_grad for p in frozen.parameters())
    trainable = PeftModel.from_pretrained(tiny_clip(), tmp_path, is_trainable=True)
    names = [n for n, p in trainable.named_parameters() if p.requires_grad]
    assert names and all(".vop." in n for n in names)


def test_several_active_adapters_raise_instead_of_using_one():
    model = _trained("vop")
    model.add_adapter("other", peft_vop.VoPConfig())
    with pytest.raises(ValueError, match="one adapter at a time"):
        model.base_model.set_adapter(["default", "other"])
    for layer in model.modules():
        if isinstance(layer, VoPLayer):
            layer._active_adapter = ["default", "other"]
    with pytest.raises(ValueError, match="one adapter at a time"):
        _outputs(model)


def test_deep_copy_is_independent_and_runs_its_own_weights():
    model = _trained("vop_p")
    twin = copy.deepcopy(model)
    assert torch.equal(_outputs(twin)[0], _outputs(model)[0])
    with torch.no_grad():
        for parameter in twin.parameters():
            if parameter.requires_grad:
                parameter.add_(0.5)
    assert not torch.equal(_outputs(twin)[0], _outputs(model)[0])
    # the copy's hooks belong to the copy's holders
    holders = [m for m in twin.modules() if isinstance(m, VoPLayer)]
    hooked = [h for m in twin.modules() for h in m._forward_pre_hooks.values()]
    assert hooked and all(any(holder.owns_hook(h) for holder in holders) for h in hooked)


def test_prompt_holders_never_recurse_on_weight_bias_or_base_layer():
    model = _trained("vop")
    holders = [m for m in model.modules() if isinstance(m, BaseTunerLayer)]
    assert len(holders) == 2
    for holder in holders:
        assert holder.get_base_layer() is holder
        with pytest.raises(AttributeError):
            _ = holder.weight
        with pytest.raises(AttributeError):
            _ = holder.bias
        assert not hasattr(holder, "weight")


def test_adapters_follow_the_base_dtype_and_autocast_adapter_dtype():
    clip = tiny_clip().to(torch.bfloat16)
    model = get_peft_model(clip, peft_vop.VoPConfig(variant="vop_c", num_frames=4), autocast_adapter_dtype=False)
    assert {p.dtype for n, p in model.named_parameters() if ".vop." in n} == {torch.bfloat16}
    upcast = get_peft_model(tiny_clip().to(torch.bfloat16), peft_vop.VoPConfig(variant="vop_c", num_frames=4))
    assert {p.dtype for n, p in upcast.named_parameters() if ".vop." in n} == {torch.float32}
    input_ids, attention_mask = tiny_text_batch()
    with torch.no_grad():
        out = upcast(input_ids=input_ids, attention_mask=attention_mask, pixel_values=VIDEO.to(torch.bfloat16))
    assert out.logits_per_text.dtype == torch.bfloat16 and torch.isfinite(out.logits_per_text).all()


def test_print_trainable_parameters_shows_the_paper_figure(capsys):
    _trained("vop_f+p", intra_frame_layers=2).print_trainable_parameters()
    printed = capsys.readouterr().out
    assert "trainable params: 3,008" in printed
    assert "VoP adapter 'default' (vop_f+p): 2,816 + 192 frame position embedding" in printed
    assert "0.4M (0.328%)" in printed


def test_single_tower_models_work():
    from transformers import CLIPTextModelWithProjection, CLIPVisionModelWithProjection

    clip = tiny_clip()
    vision = CLIPVisionModelWithProjection(clip.config.vision_config).eval()
    text = CLIPTextModelWithProjection(clip.config.text_config).eval()
    vision_model = get_peft_model(vision, peft_vop.VoPConfig(variant="vop_f", num_frames=4, intra_frame_layers=1))
    text_model = get_peft_model(text, peft_vop.VoPConfig())
    with torch.no_grad():
        video = vision_model(pixel_values=VIDEO)
        words = text_model(*tiny_text_batch())
    assert video.image_embeds.shape == (2, vision.config.projection_dim)
    torch.testing.assert_close(video.image_embeds.norm(dim=-1), torch.ones(2))
    assert video.last_hidden_state.shape == (2, 4, 17, 48)
    assert words.text_embeds.shape == (2, text.config.projection_dim)
    assert sum(p.numel() for p in text_model.parameters() if p.requires_grad) == 2 * 8 * 32


def test_importing_the_tuner_imports_no_data_or_training_code():
    script = (
        "import sys, peft_vop\n"
        "loaded = [m for m in sys.modules if m.split('.')[0] in {'av', 'datasets'} or "
        "m.startswith(('peft_vop.data', 'peft_vop.training', 'peft_vop.retrieval', 'peft_vop.synthetic'))]\n"
        "print(loaded)\n"
    )
    result = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=120)
    assert result.stdout.strip() == "[]", result.stdout + result.stderr
