"""Prompt holders: the modules that own VoP's parameters for one CLIP tower and the hooks that use them.

One holder is attached to each tower (`CLIPTextModel` / `CLIPVisionModel`) as the child module `vop`. It keeps its
parameters keyed by adapter name, as every peft tuner layer does, and installs forward hooks; nothing of CLIP is
replaced. The mechanism is the same for both towers and all variants:

- a pre-hook on the tower prepares the call (flattens videos to frames, builds the text attention mask of the
  prompted sequence) and passes a `VoPCall` down to the encoder layers through the forward kwargs;
- a pre-hook on every encoder layer works out that layer's prompt tokens and passes them through the layer's own
  (frozen) `layer_norm1`;
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
from transformers.masking_utils import create_causal_mask

from .config import VoPConfig
from .pooling import mean_pool_frames
from .video_prompts import ContextPromptGenerator


VOP_CALL_KWARG = "vop_call"


@dataclass
class VoPCall:
    """What the layer hooks of one tower need to know about the forward call in progress.

    Created by the tower's pre-hook and handed to every encoder layer in the forward kwargs, so nothing about a call
    is stored on the model (calls can nest, run in threads, or be re-run by gradient checkpointing).

    Args:
        adapter (`str`, *optional*): the adapter whose prompts this call uses; `None` when adapters are disabled.
        num_frames (`int`, *optional*): frames per video when the vision input is a video batch.
        prompt_norm (`nn.Module`, *optional*): CLIP's `pre_layrnorm`, applied to the prompts of vision layer 0.
        attention_mask (*optional*): the text attention mask of the prompted sequence, in the form the model's
            attention implementation expects.
        pending (`dict[int, torch.Tensor]`): normalised prompts `[N, P, D]` of a layer, from its pre-hook to its
            attention's pre-hook.
        replayed (`set[int]`): layers that gradient checkpointing may run again without their pre-hook; their
            pending prompts are kept for the replay instead of being dropped once inserted.
        inserted (`dict[int, int]`): prompt tokens inserted into each layer's attention, for the hook that strips
            them.
    """

    adapter: str | None
    num_frames: int | None = None
    prompt_norm: nn.Module | None = None
    attention_mask: Any = None
    pending: dict[int, torch.Tensor] = field(default_factory=dict)
    replayed: set[int] = field(default_factory=set)
    inserted: dict[int, int] = field(default_factory=dict)


@dataclass(frozen=True)
class TowerPlan:
    """Where one adapter puts which prompts in one tower; derived from its `VoPConfig` and the tower's depth.

    Args:
        num_layers (`int`): depth `K` of the tower.
        prompt_rows (`dict[int, int]`): per-frame (or text) layer index -> row of that layer in `prompts`.
        prompt_length (`int`): shared prompts per such layer.
        frame_prompts (`str`): `"none"`, `"position"` or `"context"`.
        frame_prompt_length (`int`): frame-specific prompts per such layer.
        video_rows (`dict[int, int]`): inter-frame layer index -> row of that layer in `video_prompts`.
        video_prompt_length (`int`): video-level prompts per inter-frame layer.
        intra_frame_layers (`int`, *optional*): `K_s` of VoP^F, `None` without inter-frame layers.
        num_frames (`int`): frames the adapter was built for.
        needs_video (`bool`): whether 4-D image batches are rejected.
        fixed_num_frames (`bool`): whether videos must have exactly `num_frames` frames.
    """

    num_layers: int
    prompt_rows: dict[int, int]
    prompt_length: int
    frame_prompts: str = "none"
    frame_prompt_length: int = 0
    video_rows: dict[int, int] = field(default_factory=dict)
    video_prompt_length: int = 0
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

    A holder wraps no layer: `get_base_layer()` returns the holder itself, and `weight`/`bias` raise
    `AttributeError` instead of recursing.

    Args:
        tower (`nn.Module`): the `CLIPTextModel` or `CLIPVisionModel` to prompt.
        adapter_name (`str`): name of the first adapter.
        config (`VoPConfig`): its configuration.
    """

    adapter_layer_names: tuple[str, ...] = ("prompts",)
    other_param_names: tuple[str, ...] = ("plans",)
    tower_name = "tower"

    def __init__(self, tower: nn.Module, adapter_name: str, config: VoPConfig) -> None:
        super().__init__()
        for name in self.adapter_layer_names:
            container = nn.ModuleDict() if name == "context_module" else nn.ParameterDict()
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
        tower.register_forward_pre_hook(self._before_tower, with_kwargs=True)
        for index, layer in enumerate(tower.encoder.layers):
            layer.register_forward_pre_hook(functools.partial(self._before_layer, index), with_kwargs=True)
            # The forward hooks run before hooks registered earlier (e.g. transformers' output recorders), so those
            # see CLIP's shapes.
            layer.register_forward_hook(functools.partial(self._after_layer, index), with_kwargs=True, prepend=True)
            attention = layer.self_attn
            attention.register_forward_pre_hook(functools.partial(self._before_attention, index), with_kwargs=True)
            hook = functools.partial(self._after_attention, index)
            attention.register_forward_hook(hook, with_kwargs=True, prepend=True)

    def owns_hook(self, hook: Callable) -> bool:
        """Whether `hook` is one of the hooks this holder installed."""
        if isinstance(hook, functools.partial):
            hook = hook.func
        return getattr(hook, "__self__", None) is self

    def _before_tower(self, tower: nn.Module, args: tuple, kwargs: dict) -> tuple[tuple, dict] | None:
        raise NotImplementedError

    def _before_layer(self, index: int, layer: nn.Module, args: tuple, kwargs: dict) -> tuple[tuple, dict] | None:
        raise NotImplementedError

    def _after_layer(self, index: int, layer: nn.Module, args: tuple, kwargs: dict, output: Any) -> Any:
        call = kwargs.get(VOP_CALL_KWARG)
        if call is None or call.adapter is None:
            return None
        hidden = output[0] if isinstance(output, tuple) else output
        left = self._leave_layer(index, hidden, call)
        if left is hidden:
            return None
        return (left, *output[1:]) if isinstance(output, tuple) else left

    def _leave_layer(self, index: int, hidden: torch.Tensor, call: VoPCall) -> torch.Tensor:
        return hidden

    def _before_attention(
        self, index: int, attention: nn.Module, args: tuple, kwargs: dict
    ) -> tuple[tuple, dict] | None:
        call = kwargs.get(VOP_CALL_KWARG)
        if call is None:
            return None
        # Kept where gradient checkpointing may replay the layer's forward without its pre-hook; dropped otherwise,
        # so that a call holds at most one layer's frame-specific prompts.
        prompts = call.pending.get(index) if index in call.replayed else call.pending.pop(index, None)
        if prompts is None:
            return None
        # CLIPEncoderLayer passes `hidden_states` and `attention_mask` by keyword; positions are accepted too.
        args = list(args)
        hidden = kwargs["hidden_states"] if "hidden_states" in kwargs else args[0]
        hidden = _insert(hidden, prompts)  # [N, 1+P+L-1, D]
        if "hidden_states" in kwargs:
            kwargs["hidden_states"] = hidden
        else:
            args[0] = hidden
        if call.attention_mask is not None:
            if "attention_mask" in kwargs or len(args) < 2:
                kwargs["attention_mask"] = call.attention_mask
            else:
                args[1] = call.attention_mask
        call.inserted[index] = prompts.shape[1]
        return tuple(args), kwargs

    @staticmethod
    def _hand_over(call: VoPCall, index: int, layer: nn.Module, prompts: torch.Tensor) -> None:
        """Leave a layer's normalised prompts `[N, P, D]` for its attention's pre-hook."""
        call.pending[index] = prompts
        if getattr(layer, "gradient_checkpointing", False) and layer.training and torch.is_grad_enabled():
            call.replayed.add(index)

    def _after_attention(self, index: int, attention: nn.Module, args: tuple, kwargs: dict, output: Any) -> Any:
        call = kwargs.get(VOP_CALL_KWARG)
        count = None if call is None else call.inserted.pop(index, None)
        if not count:
            return None
        if isinstance(output, tuple):
            return (_strip(output[0], count), *output[1:])
        return _strip(output, count)

    def extra_repr(self) -> str:
        return f"tower={self.tower_name}, adapters={sorted(self.plans)}"


class VoPTextLayer(VoPLayer):
    """
    Prompt holder of a `CLIPTextModel`: `text_prompt_length` prompts per layer, inserted right after BOS.

    The attention mask grows with the sequence: prompts see BOS and earlier prompts, every word and EOS sees all
    prompts, padding stays masked. The mask is built once per forward with transformers' own `create_causal_mask`,
    so it has the form the configured attention implementation expects (eager, sdpa, flash-attention, flex).
    """

    tower_name = "text"

    def _make_plan(self, config: VoPConfig, num_layers: int) -> TowerPlan:
        layers = _check_layers("text_layers", config.text_layers, num_layers, "text")
        rows = {index: row for row, index in enumerate(layers)} if config.text_prompt_length else {}
        return TowerPlan(num_layers=num_layers, prompt_rows=rows, prompt_length=config.text_prompt_length)

    def _create_parameters(self, adapter_name, config, plan, tower, device, dtype) -> None:
        width = tower.config.hidden_size
        shape = (len(plan.prompt_rows), plan.prompt_length, width)
        self.prompts[adapter_name] = _normal_parameter(shape, config.init_std, device, dtype)

    def _before_tower(self, tower: nn.Module, args: tuple, kwargs: dict) -> tuple[tuple, dict] | None:
        adapter = self._forward_adapter()
        if adapter is None or not self.plans[adapter].prompt_rows:
            return None
        input_ids = kwargs["input_ids"] if "input_ids" in kwargs else (args[0] if args else None)
        if input_ids is None:
            return None  # CLIP raises its own error
        padding_mask = kwargs.get("attention_mask", args[1] if len(args) > 1 else None)
        if padding_mask is not None and padding_mask.ndim != 2:
            raise ValueError(
                "VoP extends the text attention mask for its prompts, so `attention_mask` must be the 2-D padding "
                f"mask [batch, sequence] the tokenizer returns; got a tensor of shape {tuple(padding_mask.shape)}."
            )
        length = self.plans[adapter].prompt_length
        batch, sequence = input_ids.reshape(-1, input_ids.shape[-1]).shape
        if padding_mask is not None:
            padding_mask = torch.cat(
                [padding_mask[:, :1], padding_mask.new_ones(batch, length), padding_mask[:, 1:]], dim=1
            )
        # create_causal_mask only reads the batch size, length, dtype and device of `inputs_embeds`.
        embedding_dtype = tower.embeddings.token_embedding.weight.dtype
        shape_only = torch.empty(batch, sequence + length, 0, dtype=embedding_dtype, device=input_ids.device)
        # The fourth argument (no KV cache) is named `past_key_values` before transformers 5.24 and `cache` after.
        mask = create_causal_mask(tower.config, shape_only, padding_mask, None)
        kwargs[VOP_CALL_KWARG] = VoPCall(adapter=adapter, attention_mask=mask)
        return args, kwargs

    def _before_layer(self, index: int, layer: nn.Module, args: tuple, kwargs: dict) -> tuple[tuple, dict] | None:
        call = kwargs.get(VOP_CALL_KWARG)
        if call is None or call.adapter is None:
            return None
        row = self.plans[call.adapter].prompt_rows.get(index)
        if row is None:
            return None
        hidden = args[0] if args else kwargs["hidden_states"]  # [T, L, D]
        prompts = layer.layer_norm1(self.prompts[call.adapter][row].to(hidden.dtype))  # [P, D]
        self._hand_over(call, index, layer, prompts.expand(hidden.shape[0], -1, -1))  # [T, P, D]
        return None


class VoPVisionLayer(VoPLayer):
    """
    Prompt holder of a `CLIPVisionModel`, for plain VoP and the video variants.

    Accepts `pixel_values` of shape `[B, F, 3, H, W]` (videos) besides CLIP's `[N, 3, H, W]` (images); video outputs
    come back per frame as `[B, F, ...]`, and the projection that follows (`visual_projection`) turns
    `[B, F, E]` into unit-norm video embeddings `[B, E]` (mean of the normalised frame embeddings). This video
    interface stays on while adapters are disabled, so the disabled model is zero-shot CLIP with mean pooling.

    Args:
        tower (`nn.Module`): the `CLIPVisionModel`.
        adapter_name (`str`): name of the first adapter.
        config (`VoPConfig`): its configuration.
        projection (`nn.Module`, *optional*): the `visual_projection` applied to the tower's pooled output.
    """

    adapter_layer_names = ("prompts", "frame_prompts", "video_prompts", "frame_position_embedding", "context_module")
    tower_name = "vision"

    def __init__(
        self, tower: nn.Module, adapter_name: str, config: VoPConfig, projection: nn.Module | None = None
    ) -> None:
        super().__init__(tower, adapter_name, config)
        tower.register_forward_hook(self._after_tower, with_kwargs=True)  # per-frame outputs back to [B, F, ...]
        if projection is not None:
            projection.register_forward_hook(self._pool_frames)

    def _make_plan(self, config: VoPConfig, num_layers: int) -> TowerPlan:
        layers = _check_layers("vision_layers", config.vision_layers, num_layers, "vision")
        split = config.intra_frame_layers
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
            prompt_length=config.vision_prompt_length - frame_length,
            frame_prompts=config.frame_prompts,
            frame_prompt_length=frame_length,
            video_rows={index: row for row, index in enumerate(inter)} if has_prompts else {},
            video_prompt_length=config.vision_prompt_length,
            intra_frame_layers=split,
            num_frames=config.num_frames,
            needs_video=config.needs_video,
            fixed_num_frames=config.fixed_num_frames,
        )

    def _create_parameters(self, adapter_name, config, plan, tower, device, dtype) -> None:
        width = tower.config.hidden_size
        std = config.init_std
        rows = len(plan.prompt_rows)
        self.prompts[adapter_name] = _normal_parameter((rows, plan.prompt_length, width), std, device, dtype)
        if plan.frame_prompts == "position":
            shape = (rows, plan.num_frames, plan.frame_prompt_length, width)
            self.frame_prompts[adapter_name] = _normal_parameter(shape, std, device, dtype)
        if plan.frame_prompts == "context":
            with torch.device(device):  # built in place: with low_cpu_mem_usage it lives on the meta device
                generator = ContextPromptGenerator(width, plan.frame_prompt_length, config.context_module, std)
            self.context_module[adapter_name] = generator.to(dtype=dtype)
        if plan.intra_frame_layers is not None:
            shape = (len(plan.video_rows), plan.video_prompt_length, width)
            self.video_prompts[adapter_name] = _normal_parameter(shape, std, device, dtype)
            shape = (plan.num_frames, width)
            self.frame_position_embedding[adapter_name] = _normal_parameter(shape, std, device, dtype)

    # ------------------------------------------------------------------ tower
    def _before_tower(self, tower: nn.Module, args: tuple, kwargs: dict) -> tuple[tuple, dict] | None:
        in_kwargs = "pixel_values" in kwargs
        pixel_values = kwargs["pixel_values"] if in_kwargs else (args[0] if args else None)
        if pixel_values is None:
            return None
        adapter = self._forward_adapter()
        if pixel_values.ndim == 5:
            num_frames = pixel_values.shape[1]
            pixel_values = pixel_values.flatten(0, 1)  # [B*F, 3, H, W]
        elif pixel_values.ndim == 4:
            num_frames = None
        else:
            raise ValueError(
                "`pixel_values` must be images [N, 3, H, W] or videos [B, F, 3, H, W]; got a tensor of shape "
                f"{tuple(pixel_values.shape)}."
            )
        if adapter is not None:
            self._check_frames(adapter, num_frames, pixel_values.shape[0])
        elif num_frames is None:
            return None  # adapters disabled and an image batch: CLIP runs untouched
        call = VoPCall(adapter=adapter, num_frames=num_frames, prompt_norm=tower.pre_layrnorm)
        kwargs[VOP_CALL_KWARG] = call
        if in_kwargs:
            kwargs["pixel_values"] = pixel_values
            return args, kwargs
        return (pixel_values, *args[1:]), kwargs

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
        return output  # [B, F, 1+M, D] and [B, F, D]

    def _pool_frames(self, projection: nn.Module, args: tuple, output: torch.Tensor) -> torch.Tensor | None:
        # Only the video path hands the projection a [B, F, D] pooled output; images stay [N, D].
        if output.ndim != 3:
            return None
        return mean_pool_frames(output)  # [B, F, E] -> [B, E]

    # ------------------------------------------------------------------ layers
    def _before_layer(self, index: int, layer: nn.Module, args: tuple, kwargs: dict) -> tuple[tuple, dict] | None:
        call = kwargs.get(VOP_CALL_KWARG)
        if call is None or call.adapter is None:
            return None
        plan = self.plans[call.adapter]
        in_kwargs = not args
        original = kwargs["hidden_states"] if in_kwargs else args[0]  # [N, L, D], N = B*F frames
        hidden = original
        if plan.is_inter_frame(index):
            hidden = self._frames_to_videos(call.adapter, plan, index, hidden)  # [B, F*L, D]
            prompts = self._video_prompts(call.adapter, plan, index, hidden, layer.layer_norm1)
        else:
            prompts = self._frame_level_prompts(call, plan, index, hidden, layer.layer_norm1)
        if prompts is not None:
            self._hand_over(call, index, layer, prompts)  # [N, P, D], inserted by the attention's pre-hook
        if hidden is original:
            return None
        if in_kwargs:
            kwargs["hidden_states"] = hidden
            return args, kwargs
        return (hidden, *args[1:]), kwargs

    def _frame_level_prompts(
        self, call: VoPCall, plan: TowerPlan, index: int, hidden: torch.Tensor, layer_norm: nn.Module
    ) -> torch.Tensor | None:
        """Normalised prompts of a per-frame layer: shared ones, then position- or context-specific ones.

        `[N, P, D]`, each token passed through the layer's `layer_norm1` (and, at layer 0, CLIP's `pre_layrnorm`
        first, as the reference feeds layer 0's prompts through it together with the patch tokens).
        """
        row = plan.prompt_rows.get(index)
        if row is None:
            return None
        adapter = call.adapter
        count, _, width = hidden.shape
        if index == 0 and call.prompt_norm is not None:
            prompt_norm = call.prompt_norm

            def normalize(tokens: torch.Tensor) -> torch.Tensor:
                return layer_norm(prompt_norm(tokens))
        else:
            normalize = layer_norm
        pieces = []
        if plan.prompt_length:
            shared = normalize(self.prompts[adapter][row].to(hidden.dtype))  # [P_s, D]
            pieces.append(shared.expand(count, -1, -1))
        if plan.frame_prompts == "position":
            table = normalize(self.frame_prompts[adapter][row].to(hidden.dtype))  # [F, P_f, D]
            pieces.append(table.expand(count // plan.num_frames, -1, -1, -1).reshape(count, -1, width))
        elif plan.frame_prompts == "context":
            generator = self.context_module[adapter]
            frames = call.num_frames
            cls_tokens = hidden[:, 0].reshape(count // frames, frames, width)  # [B, F, D]
            generated = generator(cls_tokens.to(generator.projection.weight.dtype)).to(hidden.dtype)
            pieces.append(normalize(generated.reshape(count, -1, width)))  # [B*F, P_f, D]
        if not pieces:
            return None
        return pieces[0] if len(pieces) == 1 else torch.cat(pieces, dim=1)

    def _video_prompts(
        self, adapter: str, plan: TowerPlan, index: int, videos: torch.Tensor, layer_norm: nn.Module
    ) -> torch.Tensor | None:
        row = plan.video_rows.get(index)
        if row is None or not plan.video_prompt_length:
            return None
        prompts = layer_norm(self.video_prompts[adapter][row].to(videos.dtype))  # [P, D]
        return prompts.expand(videos.shape[0], -1, -1)  # [B, P, D]

    def _frames_to_videos(self, adapter: str, plan: TowerPlan, index: int, hidden: torch.Tensor) -> torch.Tensor:
        count, length, width = hidden.shape
        videos = hidden.reshape(count // plan.num_frames, plan.num_frames, length, width)  # [B, F, L, D]
        if index == plan.intra_frame_layers:
            position = self.frame_position_embedding[adapter].to(hidden.dtype)  # [F, D]
            videos = videos + position[None, :, None, :]
        return videos.reshape(videos.shape[0], plan.num_frames * length, width)  # [B, F*L, D]

    def _leave_layer(self, index: int, hidden: torch.Tensor, call: VoPCall) -> torch.Tensor:
        plan = self.plans[call.adapter]
        if not plan.is_inter_frame(index):
            return hidden
        batch, tokens, width = hidden.shape  # [B, F*L, D]
        return hidden.reshape(batch * plan.num_frames, tokens // plan.num_frames, width)  # [B*F, L, D]


def _insert(hidden: torch.Tensor, prompts: torch.Tensor) -> torch.Tensor:
    """`[N, L, D]`, `[N, P, D]` -> `[N, L+P, D]` with the prompts right after the first token."""
    return torch.cat([hidden[:, :1], prompts, hidden[:, 1:]], dim=1)


def _strip(hidden: torch.Tensor, count: int) -> torch.Tensor:
    """Inverse of `_insert`: drop the `count` tokens after the first one."""
    return torch.cat([hidden[:, :1], hidden[:, 1 + count :]], dim=1)


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
