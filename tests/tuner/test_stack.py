"""VoP with the rest of the stack: gradient checkpointing, torch.compile and bf16 autocast, for every variant."""

from __future__ import annotations

import pytest
import torch
from helpers.clip import randomize_adapter, tiny_clip, tiny_text_batch
from peft import get_peft_model

import peft_vop


VARIANTS = list(peft_vop.VARIANTS)


def _model(variant: str):
    config = peft_vop.VoPConfig(
        variant=variant, num_frames=4, intra_frame_layers=2 if variant.startswith("vop_f") else None
    )
    return randomize_adapter(get_peft_model(tiny_clip(), config), std=0.2, seed=1)


def _batch():
    input_ids, attention_mask = tiny_text_batch(batch_size=3, length=8, pad_last=3)
    video = torch.randn(3, 4, 3, 32, 32, generator=torch.Generator().manual_seed(2))
    return {"input_ids": input_ids, "attention_mask": attention_mask, "pixel_values": video, "return_loss": True}


def _loss_and_grads(model, **autocast):
    model.zero_grad(set_to_none=True)
    with torch.autocast("cpu", **autocast) if autocast else torch.autocast("cpu", enabled=False):
        loss = model(**_batch()).loss
    loss.backward()
    grads = {
        name.removeprefix("_orig_mod."): p.grad.clone() for name, p in model.named_parameters() if p.grad is not None
    }
    return loss.detach(), grads


def _check_prompt_only_grads(grads, model):
    trainable = {name for name, p in model.named_parameters() if p.requires_grad}
    assert set(grads) == trainable and all(".vop." in name for name in trainable)


@pytest.mark.parametrize("use_reentrant", [False, True])
@pytest.mark.parametrize("variant", VARIANTS)
def test_gradient_checkpointing_matches_eager(variant, use_reentrant):
    model = _model(variant).train()
    loss, grads = _loss_and_grads(model)
    kwargs = {"use_reentrant": use_reentrant}
    model.get_base_model().gradient_checkpointing_enable(gradient_checkpointing_kwargs=kwargs)
    assert model.get_base_model().vision_model.encoder.layers[0].gradient_checkpointing
    checkpointed_loss, checkpointed_grads = _loss_and_grads(model)
    _check_prompt_only_grads(checkpointed_grads, model)
    torch.testing.assert_close(checkpointed_loss, loss, rtol=1e-6, atol=1e-6)
    for name, grad in grads.items():
        torch.testing.assert_close(checkpointed_grads[name], grad, rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("context_module", ["lstm", "transformer"])
@pytest.mark.parametrize("use_reentrant", [False, True])
def test_gradient_checkpointing_with_every_context_module(context_module, use_reentrant):
    config = peft_vop.VoPConfig(variant="vop_f+c", num_frames=4, intra_frame_layers=2, context_module=context_module)
    model = randomize_adapter(get_peft_model(tiny_clip(), config), std=0.2, seed=1).train()
    loss, grads = _loss_and_grads(model)
    kwargs = {"use_reentrant": use_reentrant}
    model.get_base_model().gradient_checkpointing_enable(gradient_checkpointing_kwargs=kwargs)
    checkpointed_loss, checkpointed_grads = _loss_and_grads(model)
    torch.testing.assert_close(checkpointed_loss, loss, rtol=1e-6, atol=1e-6)
    for name, grad in grads.items():
        torch.testing.assert_close(checkpointed_grads[name], grad, rtol=1e-5, atol=1e-6)


def test_forward_kwargs_carry_no_state_between_calls():
    """A call's prompts travel in the forward kwargs only: the `VoPCall` is immutable and holds no tensors."""
    model = _model("vop_f+c").train()
    calls = []
    vision = model.get_base_model().vision_model
    vision.register_forward_hook(lambda module, args, kwargs, out: calls.append(kwargs["vop_call"]), with_kwargs=True)
    _loss_and_grads(model)
    (call,) = calls
    assert call.adapter == "default" and call.num_frames == 4
    with pytest.raises(AttributeError):
        call.adapter = None


def test_context_lstm_runs_in_float32_under_bf16_autocast():
    """oneDNN has no bf16 LSTM primitive on AVX2-only CPUs: the recurrent part runs in fp32 on every CPU."""
    generator = peft_vop.video_prompts.ContextPromptGenerator(16, 2, "bilstm")
    seen = []
    generator.context.register_forward_hook(lambda module, args, out: seen.append((args[0].dtype, out[0].dtype)))
    with torch.autocast("cpu", dtype=torch.bfloat16):
        prompts = generator(torch.randn(2, 3, 16))
    assert seen == [(torch.float32, torch.float32)]
    assert prompts.dtype == torch.bfloat16 and prompts.shape == (2, 3, 2, 16)


@pytest.mark.parametrize("variant", VARIANTS)
def test_bf16_autocast_matches_fp32(variant):
    model = _model(variant)
    loss, grads = _loss_and_grads(model)
    bf16_loss, bf16_grads = _loss_and_grads(model, dtype=torch.bfloat16)
    _check_prompt_only_grads(bf16_grads, model)
    torch.testing.assert_close(bf16_loss, loss, rtol=0.05, atol=0.05)
    for name, grad in grads.items():
        cosine = torch.nn.functional.cosine_similarity(bf16_grads[name].flatten().float(), grad.flatten(), dim=0)
        assert cosine > 0.95, (name, cosine)


@pytest.mark.parametrize("variant", VARIANTS)
def test_torch_compile_matches_eager(variant):
    model = _model(variant)
    loss, grads = _loss_and_grads(model)
    torch._dynamo.reset()
    # aot_eager traces the hooks through dynamo and AOTAutograd like inductor does, without compiling C++ kernels.
    compiled = torch.compile(model, backend="aot_eager")
    compiled_loss, compiled_grads = _loss_and_grads(compiled)
    _check_prompt_only_grads(compiled_grads, model)
    torch.testing.assert_close(compiled_loss, loss, rtol=1e-5, atol=1e-6)
    for name, grad in grads.items():
        torch.testing.assert_close(compiled_grads[name], grad, rtol=1e-4, atol=1e-6)


@pytest.mark.slow
def test_torch_compile_with_inductor_matches_eager():
    model = _model("vop_f+p")
    loss, grads = _loss_and_grads(model)
    torch._dynamo.reset()
    compiled_loss, compiled_grads = _loss_and_grads(torch.compile(model))
    torch.testing.assert_close(compiled_loss, loss, rtol=1e-4, atol=1e-5)
    for name, grad in grads.items():
        torch.testing.assert_close(compiled_grads[name], grad, rtol=1e-3, atol=1e-5)
