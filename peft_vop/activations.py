"""A quick GELU that keeps half the activations for the backward pass, for the frozen towers VoP tunes.

CLIP's and MetaCLIP 2's MLPs use `quick_gelu`, `x * sigmoid(1.702 x)`. Autograd keeps both `x` and the sigmoid for
its backward pass, two tensors of the MLP's width (4x the model's) per token and layer: in a VoP training step, where
the frozen linear layers keep nothing, they are 8 of the 14 model-widths a token keeps per layer. `quick_gelu` below
keeps `x` only and recomputes the sigmoid in the backward pass (one cheap elementwise op), with autograd's own steps
in its order, so outputs and gradients are equal bit for bit to transformers' `QuickGELUActivation`.

The VoP holders switch the activation modules of their towers' layers to it (`use_lean_quick_gelu`, an instance
`forward`, so the module tree and the state dict are unchanged) and `unload()` switches them back.
"""

from __future__ import annotations

import torch
from torch import nn
from transformers.activations import QuickGELUActivation


class _QuickGELU(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x: torch.Tensor) -> torch.Tensor:
        ctx.save_for_backward(x)
        return x * torch.sigmoid(1.702 * x)

    @staticmethod
    def backward(ctx, grad: torch.Tensor) -> torch.Tensor:
        (x,) = ctx.saved_tensors
        sigmoid = torch.sigmoid(1.702 * x)
        # d/dx [x * s(1.702 x)] as autograd computes it: grad * s through the product, and through the sigmoid
        # sigmoid_backward(grad * x, s) = (grad * x) * (1 - s) * s, times 1.702.
        return grad * sigmoid + torch.ops.aten.sigmoid_backward(grad * x, sigmoid) * 1.702


def quick_gelu(input: torch.Tensor) -> torch.Tensor:
    """`input * sigmoid(1.702 * input)`, keeping only `input` for the backward pass."""
    if torch.is_grad_enabled() and input.requires_grad:
        return _QuickGELU.apply(input)
    return input * torch.sigmoid(1.702 * input)


def use_lean_quick_gelu(layers: nn.ModuleList) -> None:
    """Give the `mlp.activation_fn` of every layer that is transformers' `QuickGELUActivation` the lean forward."""
    for layer in layers:
        activation = getattr(getattr(layer, "mlp", None), "activation_fn", None)
        if isinstance(activation, QuickGELUActivation):
            activation.forward = quick_gelu


def restore_quick_gelu(model: nn.Module) -> None:
    """Undo `use_lean_quick_gelu` everywhere in `model`."""
    for module in model.modules():
        if module.__dict__.get("forward") is quick_gelu:
            del module.forward
