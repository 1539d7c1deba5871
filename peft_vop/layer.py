"""Prompt holders: the modules that own VoP's parameters for one tower and the hooks that use them.

The shapes below are CLIP's; families without a CLS/BOS token (SigLIP) put the prompts first instead of after it,
as their `BackboneFamily` spec says.

One holder is attached to each tower (`CLIPTextModel` / `CLIPVisionModel`) as the child module `vop`. It keeps its
parameters keyed by adapter name, as every peft tuner layer does, and installs forward hooks; nothing of CLIP is
replaced. The mechanism is the same for both towers and all variants:

- a pre-hook on the tower prepares the call (flattens videos to frames, builds the text attention mask of the
  prompted sequence) and passes a `VoPCall` down to the encoder layers through the forward kwargs;
- a pre-hook on every encoder layer works out that layer's prompt tokens, passes them through the layer's own
  (frozen) `layer_norm1` and hands them to the layer's self-attention in the forward kwargs (which encoder layers
  pass on to it), together with the attention mask the prompted sequence needs; under gradient checkpointing they
  ride at the end of the layer's positional input instead (see `CARRIED_PROMPTS_KWARG`);
- a pre-hook on the layer's self-attention inserts them right after the first token (CLS/BOS) of its input, and a
  forward hook on the self-attention strips them from its output again.

Inserting at the attention rather than around the whole layer is exact, not an approximation: deep prompts are
replaced at every layer, so a prompt token's own output is discarded and it acts on the other tokens only through
its key and value in the attention. Stripping right after the attention skips the MLP for prompt tokens (two thirds
of a layer's FLOPs at CLIP's widths), and layer outputs, pooling and `last_hidden_state` keep CLIP's usual shapes.

The video variants only change *which* tokens a layer gets (`_frame_level_prompts`) and, for VoP^F, the grouping of
frames into videos around the inter-frame layers (`_frames_to_videos` / `_leave_layer`).

Shapes, vision tower (B videos, F frames, M patches, P prompts, D width):
`pixel_values [B, F, 3, H, W]` -> frames `[B*F, 3, H, W]` -> layer input `[B*F, 1+M, D]`
-> intra-frame attention `[B*F, 1+P+M, D]` -> stripped `[B*F, 1+M, D]` -> MLP
-> inter-frame layer (VoP^F) `[B, F*(1+M), D]` -> attention `[B, 1+P+F*(1+M)-1, D]` -> stripped
-> MLP -> split `[B*F, 1+M, D]`
-> outputs `last_hidden_state [B, F, 1+M, D]`, `pooler_output [B, F, D]` -> projection `[B, F, E]` -> video `[B, E]`.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import torch
from peft.tuners.tuners_utils import BaseTunerLayer
from torch import nn

from .activations import use_lean_quick_gelu
from .config import VoPConfig
from .families import BackboneFamily, bidirectional_mask
from .pooling import mean_pool_frames
from .video_prompts import ContextPromptGenerator


VOP_CALL_KWARG = "vop_call"
# A layer's prompts travel from the layer's pre-hook to its attention in the forward kwargs, which encoder layers
# pass on to their self-attention, so nothing about a call is kept on the model. Two routes:
PROMPTS_KWARG = "vop_prompts"  # normalised prompts [N, P, D], inserted by the attention's pre-hook
# Under gradient checkpointing the layer's `forward` is checkpointed but its hooks are not, and reentrant
# checkpointing only tracks tensors passed by position. Prompts computed from the layer input (VoP^C) must reach the
# attention through that positional input, so a checkpointed layer gets its prompts appended to `hidden_states`
# (its `layer_norm1` normalises them with the other tokens); this kwarg says how many trailing tokens are prompts.
CARRIED_PROMPTS_KWARG = "vop_carried_prompts"


@dataclass(frozen=True)
class VoPCall:
    """What the hooks of one tower need to know about the forward call in progress.

    Created by the tower's pre-hook and handed to every encoder layer (and from there to its self-attention) in the
    forward kwargs, so calls can nest, run in threads, or be replayed by gradient checkpointing.

    Args:
        adapter (`str`, *optional*): the adapter whose prompts this call uses; `None` when adapters are disabled.
        num_frames (`int`, *optional*): frames per video when the vision input is a video batch.
        prompt_norm (`nn.Module`, *optional*): the family's norm of layer-0 vision prompts (CLIP's `pre_layrnorm`).
        attention_mask (*optional*): the attention mask of a prompted per-frame (or text) layer, in the form the
            model's attention implementation expects; `None` where the encoder's own mask (or none) is right.
        video_attention_masks (`dict[bool, Any]`): masks of inter-frame layers without and with prompts (SigLIP 2's
            padded patches); empty where no mask is needed.
        token_mask (`torch.Tensor`, *optional*): `[N, L]`, which tokens of a frame are real patches (SigLIP 2), for
            the frame summary of VoP^C.
    """

    adapter: str | None
    num_frames: int | None = None
    prompt_norm: nn.Module | None = None
    attention_mask: Any = None
    video_attention_masks: dict[bool, Any] = field(default_factory=dict)
    token_mask: torch.Tensor | None = None


@dataclass(frozen=True)
class TowerPlan:
    """Where one adapter puts which prompts in one tower; derived from its `VoPConfig` and the tower's depth.

    Args:
        num_layers (`int`): depth `K` of the tower.
        prompt_rows (`dict[int, int]`): per-frame (or text) layer index -> its row in the shared prompts
            `vop_prompts` (and in `vop_position_prompts`).
        shared_prompt_length (`int`): prompts per such layer that every frame (or caption) shares.
        frame_prompt_kind (`str`): `"none"`, `"position"` (VoP^P) or `"context"` (VoP^C).
        frame_prompt_length (`int`): frame-specific (position or context) prompts per such layer.
        inter_frame_rows (`dict[int, int]`): inter-frame layer index -> its row in `vop_inter_frame_prompts`.
        inter_frame_prompt_length (`int`): video-level prompts per inter-frame layer.
        intra_frame_layers (`int`, *optional*): `K_s` of VoP^F, `None` without inter-frame layers.
        num_frames (`int`): frames the adapter was built for.
        needs_video (`bool`): whether 4-D image batches are rejected.
        fixed_num_frames (`bool`): whether videos must have exactly `num_frames` frames.
    """

    num_layers: int
    prompt_rows: dict[int, int]
    shared_prompt_length: int
    frame_prompt_kind: str = "none"
    frame_prompt_length: int = 0
    inter_frame_rows: dict[int, int] = field(default_factory=dict)
    inter_frame_prompt_length: int = 0
    intra_frame_layers: int | None = None
    num_frames: int = 1
    needs_video: bool = False
    fixed_num_frames: bool = False

    def is_inter_frame(self, index: int) -> bool:
        return self.intra_frame_layers is not None and index >= self.intra_frame_layers


class VoPLayer(nn.Module, BaseTunerLayer):
    """
    Base class of the prompt holders: owns the prompts of one tower, keyed by adapter name, and inserts them into
    (and strips them from) the self-attention of the tower's encoder layers through forward hooks.

    Every parameter container's name starts with `vop_` (peft's prefix for the method), as LoRA's `lora_A` does, so
    peft recognises the adapter's keys (trainable parameters, missing keys on load). A holder wraps no layer:
    `get_base_layer()` returns the holder itself, and `weight`/`bias` raise `AttributeError` instead of recursing.

    Args:
        tower (`nn.Module`): the text or vision tower to prompt (e.g. `CLIPTextModel`, `SiglipVisionModel`).
        adapter_name (`str`): name of the first adapter.
        config (`VoPConfig`): its configuration.
        family (`BackboneFamily`): what the tower's family does differently (see `peft_vop.families`).
    """

    adapter_layer_names: tuple[str, ...] = ("vop_prompts",)
    other_param_names: tuple[str, ...] = ("plans",)
    tower_name = "tower"

    def __init__(self, tower: nn.Module, adapter_name: str, config: VoPConfig, family: BackboneFamily) -> None:
        super().__init__()
        self.family = family
        for name in self.adapter_layer_names:
            container = nn.ModuleDict() if name == "vop_context_module" else nn.ParameterDict()
            self.add_module(name, container)
        self.plans: dict[str, TowerPlan] = {}
        self._active_adapter = adapter_name
        self._disable_adapters = False
        self.merged_adapters = []
        self.update_layer(tower, adapter_name, config)
        self._register_hooks(tower)

    # ------------------------------------------------------------------ adapters
    def update_layer(self, tower: nn.Module, adapter_name: str, config: VoPConfig) -> None:
        """Create the parameters of `adapter_name` for `tower` (on the tower's device and dtype)."""
        layers = tower.encoder.layers
        reference = next(tower.parameters())
        plan = self._make_plan(config, len(layers))
        with torch.no_grad():
            self._create_parameters(adapter_name, config, plan, tower, reference.device, reference.dtype)
        self.plans[adapter_name] = plan
        self.set_adapter(self.active_adapters, inference_mode=config.inference_mode)

    def _make_plan(self, config: VoPConfig, num_layers: int) -> TowerPlan:
        raise NotImplementedError

    def _create_parameters(self, adapter_name, config, plan, tower, device, dtype) -> None:
        raise NotImplementedError

    def set_adapter(self, adapter_names: str | list[str], inference_mode: bool = False) -> None:
        """Activate one adapter (or none). VoP adapters cannot be combined, so several names raise a `ValueError`."""
        names = [adapter_names] if isinstance(adapter_names, str) else list(adapter_names)
        if len(names) > 1:
            raise ValueError(
                f"VoP can run one adapter at a time, but {names} were asked to be active together. Activate one "
                "with `model.set_adapter(name)`."
            )
        super().set_adapter(names, inference_mode=inference_mode)

    def _forward_adapter(self) -> str | None:
        """The adapter a forward call uses, or `None` when adapters are disabled or none is active here."""
        if self.disable_adapters:
            return None
        active = self.active_adapters
        if len(active) > 1:
            raise ValueError(f"VoP can run one adapter at a time, but {active} are active.")
        if not active or active[0] not in self.plans:
            return None
        return active[0]

    def get_base_layer(self) -> nn.Module:
        """A prompt holder wraps no layer, so its base layer is itself."""
        return self

    @property
    def weight(self) -> torch.Tensor:
        raise AttributeError(f"{type(self).__name__} holds prompt tokens, not a layer weight.")

    @property
    def bias(self) -> torch.Tensor:
        raise AttributeError(f"{type(self).__name__} holds prompt tokens, not a layer bias.")

    def merge(self, safe_merge: bool = False, adapter_names: list[str] | None = None) -> None:
        raise ValueError(
            "VoP prompts are extra tokens, not weight updates, so they cannot be merged into CLIP's weights. "
            "Use `unload()` to get the base model back."
        )

    def unmerge(self) -> None:
        raise ValueError("VoP adapters are never merged, so there is nothing to unmerge.")

    # ------------------------------------------------------------------ hooks
    def _register_hooks(self, tower: nn.Module) -> None:
        # Not a hook: the layers' quick GELU (CLIP, MetaCLIP 2) keeps half the activations, with equal results.
        use_lean_quick_gelu(tower.encoder.layers)
        tower.register_forward_pre_hook(self._before_tower, with_kwargs=True)
        for index, layer in enumerate(tower.encoder.layers):
            layer.register_forward_pre_hook(functools.partial(self._before_layer, index), with_kwargs=True)
            # The forward hooks run before hooks registered earlier (e.g. transformers' output recorders), so those
            # see CLIP's shapes.
            layer.register_forward_hook(functools.partial(self._after_layer, index), with_kwargs=True, prepend=True)
            attention = layer.self_attn
            attention.register_forward_pre_hook(self._before_attention, with_kwargs=True)
            attention.register_forward_hook(self._after_attention, with_kwargs=True, prepend=True)

    def owns_hook(self, hook: Callable) -> bool:
        """Whether `hook` is one of the hooks this holder installed."""
        if isinstance(hook, functools.partial):
            hook = hook.func
        return getattr(hook, "__self__", None) is self

    def _before_tower(self, tower: nn.Module, args: tuple, kwargs: dict) -> tuple[tuple, dict] | None:
        raise NotImplementedError

    def _layer_prompts(
        self, call: VoPCall, index: int, hidden: torch.Tensor, normalize: Callable[[torch.Tensor], torch.Tensor]
    ) -> tuple[torch.Tensor, torch.Tensor | None]:
        """The layer's input as the layer should see it (VoP^F regroups frames) and its prompts `[N, P, D]`, each
        prompt token passed through `normalize`; `None` for a layer without prompts."""
        raise NotImplementedError

    def _before_layer(self, index: int, layer: nn.Module, args: tuple, kwargs: dict) -> tuple[tuple, dict] | None:
        call = kwargs.get(VOP_CALL_KWARG)
        if call is None or call.adapter is None:
            return None
        original = _read_input(args, kwargs, "hidden_states", 0)  # [N, L, D]
        # The same test transformers' GradientCheckpointingLayer makes before checkpointing the layer's forward.
        checkpointed = getattr(layer, "gradient_checkpointing", False) and layer.training and torch.is_grad_enabled()
        if checkpointed:
            hidden, prompts = self._layer_prompts(call, index, original, lambda tokens: tokens)
        else:
            hidden, prompts = self._layer_prompts(call, index, original, layer.layer_norm1)
        if prompts is None:
            if hidden is original:
                return None
        elif checkpointed:
            kwargs[CARRIED_PROMPTS_KWARG] = prompts.shape[1]
            hidden = torch.cat([hidden, prompts], dim=1)  # [N, L+P, D]
        else:
            kwargs[PROMPTS_KWARG] = prompts
        mask = self._layer_attention_mask(call, index, prompts is not None)
        if mask is not None:
            args, kwargs = _replace_input(args, kwargs, "attention_mask", 1, mask)
        return _replace_input(args, kwargs, "hidden_states", 0, hidden)

    def _layer_attention_mask(self, call: VoPCall, index: int, prompted: bool) -> Any:
        """The attention mask a layer needs instead of the encoder's, or `None` to keep the encoder's."""
        return call.attention_mask if prompted else None

    def _after_layer(self, index: int, layer: nn.Module, args: tuple, kwargs: dict, output: Any) -> Any:
        call = kwargs.get(VOP_CALL_KWARG)
        if call is None or call.adapter is None:
            return None
        hidden = output[0] if isinstance(output, tuple) else output
        left = hidden
        carried = kwargs.get(CARRIED_PROMPTS_KWARG)
        if carried:
            left = left[:, :-carried]  # the carried prompts' outputs are discarded
        left = self._leave_layer(index, left, call)
        if left is hidden:
            return None
        return (left, *output[1:]) if isinstance(output, tuple) else left

    def _leave_layer(self, index: int, hidden: torch.Tensor, call: VoPCall) -> torch.Tensor:
        return hidden

    def _before_attention(self, attention: nn.Module, args: tuple, kwargs: dict) -> tuple[tuple, dict] | None:
        prompts = kwargs.get(PROMPTS_KWARG)
        carried = kwargs.get(CARRIED_PROMPTS_KWARG)
        if prompts is None and not carried:
            return None
        hidden = _read_input(args, kwargs, "hidden_states", 0)
        lead = self.family.leading_tokens
        if prompts is not None:
            hidden = _insert(hidden, prompts, lead)  # [N, lead+P+L-lead, D]
        else:  # carried at the end of the sequence: move them to where prompts go
            hidden = torch.cat([hidden[:, :lead], hidden[:, -carried:], hidden[:, lead:-carried]], dim=1)
        return _replace_input(args, kwargs, "hidden_states", 0, hidden)

    def _after_attention(self, attention: nn.Module, args: tuple, kwargs: dict, output: Any) -> Any:
        prompts = kwargs.get(PROMPTS_KWARG)
        carried = kwargs.get(CARRIED_PROMPTS_KWARG)
        if prompts is None and not carried:
            return None
        hidden = output[0] if isinstance(output, tuple) else output
        lead = self.family.leading_tokens
        if prompts is not None:
            hidden = _strip(hidden, prompts.shape[1], lead)  # [N, L, D]: prompt outputs are discarded
        else:
            # Back to the layer's token order, prompts last, so the residual connection lines up.
            end = lead + carried
            hidden = torch.cat([hidden[:, :lead], hidden[:, end:], hidden[:, lead:end]], dim=1)
        return (hidden, *output[1:]) if isinstance(output, tuple) else hidden

    def extra_repr(self) -> str:
        return f"tower={self.tower_name}, adapters={sorted(self.plans)}"


class VoPTextLayer(VoPLayer):
    """
    Prompt holder of a text tower: `text_prompt_length` prompts per layer, inserted right after BOS (CLIP, MetaCLIP
    2) or first (SigLIP, SigLIP 2, which have no BOS).

    The attention mask grows with the sequence. CLIP's causal mask: prompts see BOS and earlier prompts, every word
    and EOS sees all prompts, padding stays masked. SigLIP's bidirectional mask: every token sees the prompts, and
    masked padding keys stay masked. The mask is built once per forward with transformers' own mask functions, so it
    has the form the configured attention implementation expects (eager, sdpa, flash-attention, flex). Prompts are
    stripped after each attention, so the pooled token (EOS for CLIP, the last position for SigLIP) is unchanged.
    """

    tower_name = "text"

    def _make_plan(self, config: VoPConfig, num_layers: int) -> TowerPlan:
        layers = _check_layers("text_layers", config.text_layers, num_layers, "text")
        rows = {index: row for row, index in enumerate(layers)} if config.text_prompt_length else {}
        return TowerPlan(num_layers=num_layers, prompt_rows=rows, shared_prompt_length=config.text_prompt_length)

    def _create_parameters(self, adapter_name, config, plan, tower, device, dtype) -> None:
        if plan.prompt_rows:  # no zero-element parameter for the vision-only ablation
            shape = (len(plan.prompt_rows), plan.shared_prompt_length, tower.config.hidden_size)
            self.vop_prompts[adapter_name] = _normal_parameter(shape, config.init_std, device, dtype)

    def _before_tower(self, tower: nn.Module, args: tuple, kwargs: dict) -> tuple[tuple, dict] | None:
        input_ids = _read_input(args, kwargs, "input_ids", 0)
        if input_ids is not None and input_ids.numel() == 0:
            raise ValueError(
                f"`input_ids` must hold at least one token of one caption; got shape {tuple(input_ids.shape)}."
            )
        adapter = self._forward_adapter()
        if adapter is None or not self.plans[adapter].prompt_rows or input_ids is None:
            return None  # without input_ids CLIP raises its own error
        padding_mask = _read_input(args, kwargs, "attention_mask", 1)
        if padding_mask is not None and padding_mask.ndim != 2:
            raise ValueError(
                "VoP extends the text attention mask for its prompts, so `attention_mask` must be the 2-D padding "
                f"mask [batch, sequence] the tokenizer returns; got a tensor of shape {tuple(padding_mask.shape)}."
            )
        length = self.plans[adapter].shared_prompt_length
        batch, sequence = input_ids.reshape(-1, input_ids.shape[-1]).shape
        if padding_mask is not None:
            padding_mask = _insert_ones(padding_mask, length, self.family.leading_tokens)
        # The mask functions only read the batch size, length, dtype and device of `inputs_embeds`.
        embedding_dtype = tower.embeddings.token_embedding.weight.dtype
        shape_only = torch.empty(batch, sequence + length, 0, dtype=embedding_dtype, device=input_ids.device)
        mask = self.family.text_mask(tower.config, shape_only, padding_mask)
        kwargs[VOP_CALL_KWARG] = VoPCall(adapter=adapter, attention_mask=mask)
        return args, kwargs

    def _layer_prompts(self, call, index, hidden, normalize):
        row = self.plans[call.adapter].prompt_rows.get(index)
        if row is None:
            return hidden, None
        prompts = normalize(self.vop_prompts[call.adapter][row].to(hidden.dtype))  # [P, D]
        return hidden, prompts.expand(hidden.shape[0], -1, -1)  # [T, P, D]


class VoPVisionLayer(VoPLayer):
    """
    Prompt holder of a `CLIPVisionModel`, for plain VoP and the video variants.

    Accepts `pixel_values` of shape `[B, F, 3, H, W]` (videos) besides CLIP's `[N, 3, H, W]` (images); video outputs
    come back per frame as `[B, F, ...]`, and the projection that follows (`visual_projection`) turns
    `[B, F, E]` into unit-norm video embeddings `[B, E]` (mean of the normalised frame embeddings). This video
    interface stays on while adapters are disabled, so the disabled model is zero-shot CLIP with mean pooling.

    Parameters per adapter (only those the configuration uses exist): `vop_prompts` (shared prompts of the
    per-frame layers), `vop_position_prompts` (VoP^P), `vop_context_module` (VoP^C), `vop_inter_frame_prompts` and
    `vop_frame_position_embedding` (VoP^F).

    For families whose pooled output is already the embedding (SigLIP's attention-pooling head), the frames are
    averaged on the tower's `pooler_output` instead, which becomes `[B, E]`.

    Args:
        tower (`nn.Module`): the vision tower (e.g. `CLIPVisionModel`, `SiglipVisionModel`).
        adapter_name (`str`): name of the first adapter.
        config (`VoPConfig`): its configuration.
        family (`BackboneFamily`): what the tower's family does differently.
        projection (`nn.Module`, *optional*): the `visual_projection` applied to the tower's pooled output.
    """

    adapter_layer_names = (
        "vop_prompts",
        "vop_position_prompts",
        "vop_inter_frame_prompts",
        "vop_frame_position_embedding",
        "vop_context_module",
    )
    tower_name = "vision"

    def __init__(
        self,
        tower: nn.Module,
        adapter_name: str,
        config: VoPConfig,
        family: BackboneFamily,
        projection: nn.Module | None = None,
    ) -> None:
        super().__init__(tower, adapter_name, config, family)
        tower.register_forward_hook(self._after_tower, with_kwargs=True)  # per-frame outputs back to [B, F, ...]
        if projection is not None and family.frame_pooling == "projection":
            projection.register_forward_hook(self._pool_frames)

    def _make_plan(self, config: VoPConfig, num_layers: int) -> TowerPlan:
        layers = _check_layers("vision_layers", config.vision_layers, num_layers, "vision")
        split = config.resolved_intra_frame_layers(num_layers)
        if split is not None and not 1 <= split <= num_layers - 1:
            raise ValueError(
                f"`intra_frame_layers` must be in 1..{num_layers - 1} for a vision tower of {num_layers} layers "
                f"(0 collapses in the paper, {num_layers} is plain VoP); got {split}."
            )
        intra = [index for index in layers if split is None or index < split]
        inter = [index for index in layers if split is not None and index >= split]
        frame_length = config.video_prompt_length if config.frame_prompts != "none" else 0
        has_prompts = config.vision_prompt_length > 0
        return TowerPlan(
            num_layers=num_layers,
            prompt_rows={index: row for row, index in enumerate(intra)} if has_prompts else {},
            shared_prompt_length=config.vision_prompt_length - frame_length,
            frame_prompt_kind=config.frame_prompts,
            frame_prompt_length=frame_length,
            inter_frame_rows={index: row for row, index in enumerate(inter)} if has_prompts else {},
            inter_frame_prompt_length=config.vision_prompt_length,
            intra_frame_layers=split,
            num_frames=config.num_frames,
            needs_video=config.needs_video,
            fixed_num_frames=config.fixed_num_frames,
        )

    def _create_parameters(self, adapter_name, config, plan, tower, device, dtype) -> None:
        # Only what has something to prompt gets a parameter: no zero-element tensors.
        width = tower.config.hidden_size
        std = config.init_std
        rows = len(plan.prompt_rows)
        if rows and plan.shared_prompt_length:
            shape = (rows, plan.shared_prompt_length, width)
            self.vop_prompts[adapter_name] = _normal_parameter(shape, std, device, dtype)
        if rows and plan.frame_prompt_kind == "position":
            shape = (rows, plan.num_frames, plan.frame_prompt_length, width)
            self.vop_position_prompts[adapter_name] = _normal_parameter(shape, std, device, dtype)
        if rows and plan.frame_prompt_kind == "context":
            with torch.device(device):  # built in place: with low_cpu_mem_usage it lives on the meta device
                generator = ContextPromptGenerator(width, plan.frame_prompt_length, config.context_module, std)
            self.vop_context_module[adapter_name] = generator.to(dtype=dtype)
        if plan.inter_frame_rows:
            shape = (len(plan.inter_frame_rows), plan.inter_frame_prompt_length, width)
            self.vop_inter_frame_prompts[adapter_name] = _normal_parameter(shape, std, device, dtype)
        if plan.intra_frame_layers is not None:
            shape = (plan.num_frames, width)
            self.vop_frame_position_embedding[adapter_name] = _normal_parameter(shape, std, device, dtype)

    # ------------------------------------------------------------------ tower
    def _before_tower(self, tower: nn.Module, args: tuple, kwargs: dict) -> tuple[tuple, dict] | None:
        pixel_values = _read_input(args, kwargs, "pixel_values", 0)
        if pixel_values is None:
            return None
        image_dims = self.family.image_dims
        if pixel_values.ndim not in (image_dims + 1, image_dims + 2):
            image = "3, H, W" if image_dims == 3 else "P, 3*p*p"  # SigLIP 2 takes patch sequences
            raise ValueError(
                f"`pixel_values` must be images [N, {image}] or videos [B, F, {image}]; got a tensor of shape "
                f"{tuple(pixel_values.shape)}."
            )
        if 0 in pixel_values.shape[: pixel_values.ndim - image_dims]:
            raise ValueError(
                "`pixel_values` must hold at least one image, or one video of at least one frame; got a tensor of "
                f"shape {tuple(pixel_values.shape)}."
            )
        adapter = self._forward_adapter()
        num_frames = pixel_values.shape[1] if pixel_values.ndim == image_dims + 2 else None
        if adapter is not None:
            self._check_frames(adapter, num_frames, pixel_values.shape[0])
        elif num_frames is None:
            return None  # adapters disabled and an image batch: the backbone runs untouched
        if num_frames is not None:  # frames become images: [B*F, ...], with their patch masks and shapes
            args, kwargs = _replace_input(args, kwargs, "pixel_values", 0, pixel_values.flatten(0, 1))
            if self.family.pixel_mask is not None:
                for position, name in enumerate((self.family.pixel_mask, "spatial_shapes"), start=1):
                    value = _read_input(args, kwargs, name, position)
                    if value is not None:
                        args, kwargs = _replace_input(args, kwargs, name, position, value.flatten(0, 1))
        pixel_mask = None if self.family.pixel_mask is None else _read_input(args, kwargs, self.family.pixel_mask, 1)
        norm = self.family.first_prompt_norm
        kwargs[VOP_CALL_KWARG] = VoPCall(
            adapter=adapter,
            num_frames=num_frames,
            prompt_norm=getattr(tower, norm) if norm else None,
            **self._patch_masks(tower, adapter, num_frames, pixel_mask),
        )
        return args, kwargs

    def _patch_masks(
        self, tower: nn.Module, adapter: str | None, num_frames: int | None, pixel_mask: torch.Tensor | None
    ) -> dict[str, Any]:
        """Attention masks of prompted and inter-frame layers where padded patches must stay masked (SigLIP 2)."""
        if adapter is None or pixel_mask is None:
            return {}
        plan = self.plans[adapter]
        dtype = next(tower.parameters()).dtype

        def mask(padding: torch.Tensor) -> Any:
            shape_only = torch.empty(*padding.shape, 0, dtype=dtype, device=padding.device)
            return bidirectional_mask(tower.config, shape_only, padding)  # [N, L] -> the attention's form

        prompt_length = plan.shared_prompt_length + plan.frame_prompt_length
        masks: dict[str, Any] = {
            "token_mask": pixel_mask,
            "attention_mask": mask(_insert_ones(pixel_mask, prompt_length, 0)),
        }
        if plan.intra_frame_layers is not None:
            videos = pixel_mask.reshape(-1, num_frames * pixel_mask.shape[1])  # [B, F*L]
            masks["video_attention_masks"] = {
                False: mask(videos),
                True: mask(_insert_ones(videos, plan.inter_frame_prompt_length, 0)),
            }
        return masks

    def _check_frames(self, adapter: str, num_frames: int | None, count: int) -> None:
        plan = self.plans[adapter]
        if plan.needs_video and num_frames is None:
            raise ValueError(
                f"Adapter '{adapter}' prompts videos, so `pixel_values` must have shape [B, F, 3, H, W]; got a 4-D "
                f"batch of {count} images. Plain VoP (variant 'vop') also accepts images."
            )
        if plan.fixed_num_frames and num_frames != plan.num_frames:
            raise ValueError(
                f"Adapter '{adapter}' was built for videos of num_frames={plan.num_frames} frames (its "
                f"position-specific prompts / frame embeddings have one entry per frame); got videos of {num_frames} "
                "frames. Sample that many frames per video."
            )

    def _after_tower(self, tower: nn.Module, args: tuple, kwargs: dict, output: Any) -> Any:
        call = kwargs.get(VOP_CALL_KWARG)
        if call is None or call.num_frames is None:
            return output
        frames = call.num_frames
        for name, position in (("last_hidden_state", 0), ("pooler_output", 1)):
            value = _output_field(output, name, position)
            if value is not None:
                output = _set_output_field(output, name, position, value.unflatten(0, (-1, frames)))
        hidden_states = getattr(output, "hidden_states", None)
        if hidden_states:
            output["hidden_states"] = tuple(state.unflatten(0, (-1, frames)) for state in hidden_states)
        if self.family.frame_pooling == "tower":
            pooled = _output_field(output, "pooler_output", 1)
            if pooled is not None:  # the pooled output is the embedding (SigLIP's head): [B, F, E] -> [B, E]
                output = _set_output_field(output, "pooler_output", 1, mean_pool_frames(pooled))
        return output  # [B, F, 1+M, D] and [B, F, D] (or [B, E])

    def _layer_attention_mask(self, call: VoPCall, index: int, prompted: bool) -> Any:
        if self.plans[call.adapter].is_inter_frame(index):
            return call.video_attention_masks.get(prompted)
        return call.attention_mask if prompted else None

    def check_paired_batches(self, model: nn.Module, args: tuple, kwargs: dict) -> None:
        """Pre-hook of the two-tower model: the contrastive loss pairs caption `i` with video `i`."""
        if not _read_input(args, kwargs, "return_loss", 4):
            return
        input_ids = _read_input(args, kwargs, "input_ids", 0)
        pixel_values = _read_input(args, kwargs, "pixel_values", 1)
        if input_ids is None or pixel_values is None or input_ids.shape[0] == pixel_values.shape[0]:
            return
        noun = "videos" if pixel_values.ndim == 5 else "images"
        raise ValueError(
            f"`return_loss=True` pairs caption i with video i, so `input_ids` and `pixel_values` must hold the same "
            f"number of items; got {input_ids.shape[0]} captions (`input_ids` of shape {tuple(input_ids.shape)}) and "
            f"{pixel_values.shape[0]} {noun} (`pixel_values` of shape {tuple(pixel_values.shape)})."
        )

    def _pool_frames(self, projection: nn.Module, args: tuple, output: torch.Tensor) -> torch.Tensor | None:
        # Only the video path hands the projection a [B, F, D] pooled output; images stay [N, D].
        if output.ndim != 3:
            return None
        return mean_pool_frames(output)  # [B, F, E] -> [B, E]

    # ------------------------------------------------------------------ layers
    def _layer_prompts(self, call, index, hidden, normalize):
        plan = self.plans[call.adapter]
        if plan.is_inter_frame(index):
            videos = self._frames_to_videos(call.adapter, plan, index, hidden)  # [B, F*L, D]
            return videos, self._inter_frame_prompts(call.adapter, plan, index, videos, normalize)
        if index == 0 and call.prompt_norm is not None:
            # Layer 0's prompts join embeddings normalised by the family's first norm (CLIP's `pre_layrnorm`, as the
            # reference feeds them through it together with the patch tokens).
            layer_norm, prompt_norm = normalize, call.prompt_norm

            def normalize(tokens: torch.Tensor) -> torch.Tensor:
                return layer_norm(prompt_norm(tokens))

        return hidden, self._frame_level_prompts(call, plan, index, hidden, normalize)

    def _frame_level_prompts(
        self, call: VoPCall, plan: TowerPlan, index: int, hidden: torch.Tensor, normalize: Callable
    ) -> torch.Tensor | None:
        """Prompts of a per-frame layer `[N, P, D]`: shared ones, then position- or context-specific ones."""
        row = plan.prompt_rows.get(index)
        if row is None:
            return None
        adapter = call.adapter
        count, _, width = hidden.shape
        pieces = []
        if plan.shared_prompt_length:
            shared = normalize(self.vop_prompts[adapter][row].to(hidden.dtype))  # [P_s, D]
            pieces.append(shared.expand(count, -1, -1))
        if plan.frame_prompt_kind == "position":
            table = normalize(self.vop_position_prompts[adapter][row].to(hidden.dtype))  # [F, P_f, D]
            pieces.append(table.expand(count // plan.num_frames, -1, -1, -1).reshape(count, -1, width))
        elif plan.frame_prompt_kind == "context":
            generator = self.vop_context_module[adapter]
            frames = call.num_frames
            summary = self._frame_summary(hidden, call.token_mask).reshape(count // frames, frames, width)  # [B, F, D]
            generated = generator(summary.to(generator.projection.weight.dtype)).to(hidden.dtype)
            pieces.append(normalize(generated.reshape(count, -1, width)))  # [B*F, P_f, D]
        if not pieces:
            return None
        return pieces[0] if len(pieces) == 1 else torch.cat(pieces, dim=1)

    def _frame_summary(self, hidden: torch.Tensor, token_mask: torch.Tensor | None) -> torch.Tensor:
        """What VoP^C reads of each frame `[N, L, D]` -> `[N, D]`: its CLS token, or the mean of its real tokens."""
        if self.family.frame_summary == "first_token":
            return hidden[:, 0]
        if token_mask is None:
            return hidden.mean(dim=1)
        weights = token_mask.to(hidden.dtype)[:, :, None]  # [N, L, 1]
        return (hidden * weights).sum(dim=1) / weights.sum(dim=1).clamp(min=1)

    def _inter_frame_prompts(
        self, adapter: str, plan: TowerPlan, index: int, videos: torch.Tensor, normalize: Callable
    ) -> torch.Tensor | None:
        row = plan.inter_frame_rows.get(index)
        if row is None:
            return None
        prompts = normalize(self.vop_inter_frame_prompts[adapter][row].to(videos.dtype))  # [P, D]
        return prompts.expand(videos.shape[0], -1, -1)  # [B, P, D]

    def _frames_to_videos(self, adapter: str, plan: TowerPlan, index: int, hidden: torch.Tensor) -> torch.Tensor:
        count, length, width = hidden.shape
        videos = hidden.reshape(count // plan.num_frames, plan.num_frames, length, width)  # [B, F, L, D]
        if index == plan.intra_frame_layers:
            position = self.vop_frame_position_embedding[adapter].to(hidden.dtype)  # [F, D]
            videos = videos + position[None, :, None, :]
        return videos.reshape(videos.shape[0], plan.num_frames * length, width)  # [B, F*L, D]

    def _leave_layer(self, index: int, hidden: torch.Tensor, call: VoPCall) -> torch.Tensor:
        plan = self.plans[call.adapter]
        if not plan.is_inter_frame(index):
            return hidden
        batch, tokens, width = hidden.shape  # [B, F*L, D]
        return hidden.reshape(batch * plan.num_frames, tokens // plan.num_frames, width)  # [B*F, L, D]


def _insert(hidden: torch.Tensor, prompts: torch.Tensor, lead: int) -> torch.Tensor:
    """`[N, L, D]`, `[N, P, D]` -> `[N, L+P, D]` with the prompts after the first `lead` tokens."""
    return torch.cat([hidden[:, :lead], prompts, hidden[:, lead:]], dim=1)


def _strip(hidden: torch.Tensor, count: int, lead: int) -> torch.Tensor:
    """Inverse of `_insert`: drop the `count` tokens after the first `lead` ones."""
    return torch.cat([hidden[:, :lead], hidden[:, lead + count :]], dim=1)


def _insert_ones(mask: torch.Tensor, count: int, lead: int) -> torch.Tensor:
    """A 2-D padding mask `[N, L]` -> `[N, L+count]` with `count` ones (visible prompt keys) after `lead` tokens."""
    return torch.cat([mask[:, :lead], mask.new_ones(mask.shape[0], count), mask[:, lead:]], dim=1)


def _normal_parameter(shape: tuple[int, ...], std: float, device, dtype) -> nn.Parameter:
    parameter = nn.Parameter(torch.empty(shape, device=device, dtype=dtype))
    nn.init.normal_(parameter, std=std)
    return parameter


def _check_layers(field_name: str, layers: list[int] | None, num_layers: int, tower: str) -> list[int]:
    if layers is None:
        return list(range(num_layers))
    out_of_range = [index for index in layers if index >= num_layers]
    if out_of_range:
        raise ValueError(
            f"`{field_name}` holds layer indices {out_of_range} but the {tower} tower has {num_layers} layers "
            f"(indices 0..{num_layers - 1})."
        )
    return list(layers)


def _read_input(args: tuple, kwargs: dict, name: str, position: int) -> Any:
    """A call's input given by keyword `name` or at `position` (`None` when absent)."""
    if name in kwargs:
        return kwargs[name]
    return args[position] if len(args) > position else None


def _replace_input(args: tuple, kwargs: dict, name: str, position: int, value: Any) -> tuple[tuple, dict]:
    """`(args, kwargs)` with the input `name` replaced where the caller gave it (by keyword when absent)."""
    if name in kwargs or len(args) <= position:
        kwargs[name] = value
        return args, kwargs
    return (*args[:position], value, *args[position + 1 :]), kwargs


def _output_field(output: Any, name: str, position: int) -> Any:
    # `return_dict=False` gives a tuple that starts (last_hidden_state, pooler_output, ...).
    if isinstance(output, tuple):
        return output[position] if len(output) > position else None
    return getattr(output, name, None)


def _set_output_field(output: Any, name: str, position: int, value: Any) -> Any:
    if isinstance(output, tuple):
        return (*output[:position], value, *output[position + 1 :])
    output[name] = value
    return output
