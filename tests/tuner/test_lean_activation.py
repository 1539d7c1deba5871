"""The quick GELU of the towers VoP tunes keeps only its input for the backward pass, with results equal bit for bit."""

from __future__ import annotations

import copy

import pytest
import torch
from helpers.clip import randomize_adapter, tiny_clip, tiny_text_batch
from helpers.families import tiny_model
from peft import get_peft_model
from transformers.activations import QuickGELUActivation

import peft_vop
from peft_vop.activations import quick_gelu, restore_quick_gelu


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
def test_outputs_and_gradients_equal_transformers_quick_gelu(dtype):
    generator = torch.Generator().manual_seed(0)
    x = (torch.randn(4, 50, 256, generator=generator) * 4).to(dtype)
    upstream = torch.randn(4, 50, 256, generator=generator).to(dtype)
    reference, lean = x.clone().requires_grad_(), x.clone().requires_grad_()
    expected, got = QuickGELUActivation()(reference), quick_gelu(lean)
    expected.backward(upstream)
    got.backward(upstream)
    assert torch.equal(got, expected) and torch.equal(lean.grad, reference.grad)
    with torch.no_grad():
        assert torch.equal(quick_gelu(x), QuickGELUActivation()(x))


def _activations(model):
    return [module for module in model.modules() if isinstance(module, QuickGELUActivation)]


def _step(model, videos, text):
    """Loss and adapter gradients of one step, and how many tensors of each autograd node kind it kept."""
    kept = []

    def pack(tensor):
        kept.append(tensor.grad_fn.name() if tensor.grad_fn is not None else None)
        return tensor

    model.zero_grad(set_to_none=True)
    with torch.autograd.graph.saved_tensors_hooks(pack, lambda tensor: tensor):
        loss = model(**text, pixel_values=videos, return_loss=True).loss
    loss.backward()
    grads = {name: p.grad.clone() for name, p in model.named_parameters() if p.grad is not None}
    return loss.detach(), grads, kept


def test_a_vop_step_keeps_no_sigmoid_and_gets_the_same_gradients():
    config = peft_vop.VoPConfig(variant="vop_f+c", num_frames=4, intra_frame_layers=2)
    model = randomize_adapter(get_peft_model(tiny_clip(), config), std=0.2, seed=1).train()
    activations = _activations(model)
    assert len(activations) == 2 + 3  # every layer of the tiny CLIP's text and vision towers
    assert all(activation.forward is quick_gelu for activation in activations)
    videos = torch.randn(2, 4, 3, 32, 32, generator=torch.Generator().manual_seed(2))
    input_ids, attention_mask = tiny_text_batch(batch_size=2)
    text = {"input_ids": input_ids, "attention_mask": attention_mask}
    loss, grads, kept = _step(model, videos, text)
    assert "SigmoidBackward0" not in kept  # transformers' quick GELU keeps its sigmoid output

    restore_quick_gelu(model)  # transformers' own forward, as without peft-vop's
    assert not any("forward" in activation.__dict__ for activation in activations)
    expected_loss, expected_grads, expected_kept = _step(model, videos, text)
    # Kept twice per layer by transformers' quick GELU: for the sigmoid's backward and for the product's.
    assert expected_kept.count("SigmoidBackward0") == 2 * len(activations)
    assert torch.equal(loss, expected_loss) and grads.keys() == expected_grads.keys()
    assert all(torch.equal(grads[name], expected_grads[name]) for name in grads)


def test_unload_gives_back_transformers_quick_gelu_and_copies_keep_the_lean_one():
    model = get_peft_model(tiny_clip(), peft_vop.VoPConfig(num_frames=4))
    copied = copy.deepcopy(model)
    assert all(activation.forward is quick_gelu for activation in _activations(copied))
    base = model.unload()
    assert _activations(base) and not any("forward" in activation.__dict__ for activation in _activations(base))


def test_other_activations_are_left_alone():
    model = get_peft_model(tiny_model("siglip"), peft_vop.VoPConfig(num_frames=4))
    assert not _activations(model)
    assert not any(module.__dict__.get("forward") is quick_gelu for module in model.modules())
