"""Every variant on every backbone family: the hooked model equals a hook-free reference, and what must be exact is."""

from __future__ import annotations

import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
import torch
from family_reference import text_embeddings, video_embeddings
from helpers.clip import randomize_adapter
from helpers.families import FAMILY_NAMES, text_inputs, tiny_model, video_inputs
from peft import PeftModel, get_peft_model

import peft_vop
from peft_vop import mean_pool_frames


ROOT = Path(__file__).resolve().parents[2]
VARIANTS = list(peft_vop.VARIANTS)


def _config(variant: str, **options) -> peft_vop.VoPConfig:
    split = 2 if variant.startswith("vop_f") else None
    return peft_vop.VoPConfig(variant=variant, num_frames=4, intra_frame_layers=split, **options)


def _adapted(family: str, variant: str, attn: str = "sdpa", **options):
    model = get_peft_model(tiny_model(family, attn_implementation=attn), _config(variant, **options))
    return randomize_adapter(model, std=0.5, seed=3).eval()


def _video_reference(family, model, inputs):
    base = model.get_base_model()
    holder = base.vision_model.vop
    plan = holder.plans["default"]
    layers = len(base.vision_model.encoder.layers)
    shared = [None] * layers
    position = [None] * layers if plan.frame_prompt_kind == "position" else None
    for index, row in plan.prompt_rows.items():
        if plan.shared_prompt_length:
            shared[index] = holder.vop_prompts["default"][row]
        if position is not None:
            position[index] = holder.vop_position_prompts["default"][row]
    kwargs = {}
    if plan.frame_prompt_kind == "context":
        kwargs["context"] = (holder.vop_context_module["default"], list(plan.prompt_rows))
    if plan.intra_frame_layers is not None:
        rows = plan.inter_frame_rows
        kwargs.update(
            intra_frame_layers=plan.intra_frame_layers,
            inter_frame_prompts=[
                holder.vop_inter_frame_prompts["default"][rows[i]] if i in rows else None
                for i in range(plan.intra_frame_layers, layers)
            ],
            frame_position=holder.vop_frame_position_embedding["default"],
        )
    return video_embeddings(family, base, inputs, shared=shared, position=position, **kwargs)


@pytest.mark.parametrize("attn", ["eager", "sdpa"])
@pytest.mark.parametrize("family", FAMILY_NAMES)
def test_text_prompts_match_the_reference(family, attn):
    model = _adapted(family, "vop", attn=attn, text_layers=[1])
    base = model.get_base_model()
    inputs = text_inputs(family)
    prompts = [None, base.text_model.vop.vop_prompts["default"][0]]
    with torch.no_grad():
        expected = text_embeddings(family, base, inputs["input_ids"], inputs["attention_mask"], prompts)
        actual = model.get_text_features(**inputs).pooler_output
    torch.testing.assert_close(actual, expected, atol=2e-5, rtol=2e-5)


@pytest.mark.parametrize("attn", ["eager", "sdpa"])
@pytest.mark.parametrize("variant", VARIANTS)
@pytest.mark.parametrize("family", FAMILY_NAMES)
def test_video_prompts_match_the_reference(family, variant, attn):
    model = _adapted(family, variant, attn=attn, vision_layers=[0, 2])
    inputs = video_inputs(family)
    with torch.no_grad():
        expected = _video_reference(family, model, inputs)
        actual = model.get_image_features(**inputs).pooler_output
    assert actual.shape == expected.shape
    torch.testing.assert_close(actual, expected, atol=2e-5, rtol=2e-5)


@pytest.mark.parametrize("family", FAMILY_NAMES)
def test_zero_length_prompts_and_disabled_adapters_reproduce_the_backbone(family):
    base = tiny_model(family)
    texts, videos = text_inputs(family), video_inputs(family)
    with torch.no_grad():
        text = base.get_text_features(**texts).pooler_output
        frames = {name: value.flatten(0, 1) for name, value in videos.items()}
        video = mean_pool_frames(base.get_image_features(**frames).pooler_output.unflatten(0, (-1, 4)))
    config = peft_vop.VoPConfig(text_prompt_length=0, vision_prompt_length=0, num_frames=4)
    empty = get_peft_model(tiny_model(family), config)
    adapted = _adapted(family, "vop_f+c")
    with torch.no_grad():
        assert torch.equal(empty.get_text_features(**texts).pooler_output, text)
        assert torch.equal(empty.get_image_features(**videos).pooler_output, video)
        with adapted.disable_adapter():
            assert torch.equal(adapted.get_text_features(**texts).pooler_output, text)
            assert torch.equal(adapted.get_image_features(**videos).pooler_output, video)
        assert not torch.allclose(adapted.get_image_features(**videos).pooler_output, video)


@pytest.mark.parametrize("family", FAMILY_NAMES)
def test_the_loss_is_the_backbones_own_over_videos(family):
    model = _adapted(family, "vop_p")
    texts, videos = text_inputs(family, batch_size=2), video_inputs(family)
    with torch.no_grad():
        out = model(**texts, **videos, return_loss=True)
    logits = out.logits_per_text  # [T, V]
    base = model.get_base_model()
    if family in ("clip", "metaclip_2"):
        labels = torch.arange(2)
        expected = (
            torch.nn.functional.cross_entropy(logits, labels) + torch.nn.functional.cross_entropy(logits.T, labels)
        ) / 2
    else:  # pairwise sigmoid with the frozen logit_bias inside the logits
        scale, bias = base.logit_scale.exp(), base.logit_bias
        torch.testing.assert_close(logits, out.text_embeds @ out.image_embeds.T * scale + bias)
        signs = 2 * torch.eye(2) - 1
        expected = -torch.nn.functional.logsigmoid(signs * logits).sum(dim=-1).mean()
    torch.testing.assert_close(out.loss, expected)
    assert out.image_embeds.shape[0] == 2  # one embedding per video


@pytest.mark.parametrize("use_reentrant", [False, True])
@pytest.mark.parametrize("variant", VARIANTS)
@pytest.mark.parametrize("family", [name for name in FAMILY_NAMES if name != "clip"])  # CLIP: test_stack.py
def test_gradient_checkpointing_matches_eager(family, variant, use_reentrant):
    model = _adapted(family, variant).train()
    batch = {**text_inputs(family, batch_size=2), **video_inputs(family), "return_loss": True}

    def loss_and_grads():
        model.zero_grad(set_to_none=True)
        loss = model(**batch).loss
        loss.backward()
        return loss.detach(), {n: p.grad.clone() for n, p in model.named_parameters() if p.grad is not None}

    loss, grads = loss_and_grads()
    model.get_base_model().gradient_checkpointing_enable(
        gradient_checkpointing_kwargs={"use_reentrant": use_reentrant}
    )
    checkpointed_loss, checkpointed = loss_and_grads()
    assert set(checkpointed) == {n for n, p in model.named_parameters() if p.requires_grad} == set(grads)
    torch.testing.assert_close(checkpointed_loss, loss, rtol=1e-6, atol=1e-6)
    for name, grad in grads.items():
        torch.testing.assert_close(checkpointed[name], grad, rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("family", [name for name in FAMILY_NAMES if name != "clip"])
def test_torch_compile_and_bf16_autocast(family):
    model = _adapted(family, "vop_f+c")
    batch = {**text_inputs(family, batch_size=2), **video_inputs(family), "return_loss": True}

    def loss_and_grads(module, **autocast):
        model.zero_grad(set_to_none=True)
        with torch.autocast("cpu", **autocast) if autocast else torch.autocast("cpu", enabled=False):
            loss = module(**batch).loss
        loss.backward()
        return loss.detach(), {n: p.grad.clone() for n, p in model.named_parameters() if p.grad is not None}

    loss, grads = loss_and_grads(model)
    torch._dynamo.reset()
    compiled_loss, compiled = loss_and_grads(torch.compile(model, backend="aot_eager"))
    torch.testing.assert_close(compiled_loss, loss, rtol=1e-5, atol=1e-6)
    for name, grad in grads.items():
        torch.testing.assert_close(compiled[name], grad, rtol=1e-4, atol=1e-6)
    bf16_loss, bf16 = loss_and_grads(model, dtype=torch.bfloat16)
    torch.testing.assert_close(bf16_loss, loss, rtol=0.05, atol=0.05)
    for name, grad in grads.items():
        cosine = torch.nn.functional.cosine_similarity(bf16[name].flatten().float(), grad.flatten(), dim=0)
        assert cosine > 0.9, (name, cosine)


@pytest.mark.slow
@pytest.mark.parametrize("family", FAMILY_NAMES)
def test_save_then_load_in_a_fresh_process_is_bit_exact(family, tmp_path):
    model = _adapted(family, "vop_f+c")
    texts, videos = text_inputs(family), video_inputs(family)
    with torch.no_grad():
        text = model.get_text_features(**texts).pooler_output
        video = model.get_image_features(**videos).pooler_output
    model.save_pretrained(tmp_path / "adapter")
    torch.save({"texts": texts, "videos": videos}, tmp_path / "inputs.pt")
    script = textwrap.dedent(
        f"""
        import sys, torch
        sys.path[:0] = [{str(ROOT / "tests")!r}]
        import peft_vop
        from helpers.families import tiny_model
        inputs = torch.load({str(tmp_path / "inputs.pt")!r})
        model = peft_vop.load_adapter(tiny_model({family!r}), {str(tmp_path / "adapter")!r})
        with torch.no_grad():
            text = model.get_text_features(**inputs["texts"]).pooler_output
            video = model.get_image_features(**inputs["videos"]).pooler_output
        torch.save({{"text": text, "video": video}}, {str(tmp_path / "out.pt")!r})
        """
    )
    result = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, cwd=ROOT)
    assert result.returncode == 0, result.stderr[-2000:]
    loaded = torch.load(tmp_path / "out.pt")
    assert torch.equal(loaded["text"], text) and torch.equal(loaded["video"], video)


@pytest.mark.parametrize(("saved", "target"), [("siglip2", "clip"), ("clip", "metaclip_2"), ("metaclip_2", "siglip")])
def test_an_adapter_refuses_another_family_before_touching_weights(saved, target, tmp_path):
    get_peft_model(tiny_model(saved), _config("vop")).save_pretrained(tmp_path)
    model = tiny_model(target)
    before = {name: value.clone() for name, value in model.state_dict().items()}
    with pytest.raises(ValueError, match=rf"made for the backbone family '{saved}', but the model is a '{target}'"):
        PeftModel.from_pretrained(model, tmp_path)
    assert not any(".vop." in name for name, _ in model.named_parameters())
    assert all(torch.equal(before[name], value) for name, value in model.state_dict().items())
