"""`VoPModel`: the peft tuner that finds a dual encoder's towers (any family of `peft_vop.families`) and attaches
VoP prompt holders to them."""

from __future__ import annotations

import re
from typing import Any

import torch
from peft.config import PeftConfig
from peft.tuners.tuners_utils import BaseTuner
from torch import nn

from .activations import restore_quick_gelu
from .config import VoPConfig
from .families import FAMILIES, FAMILY_NAMES, tower_family
from .layer import VoPLayer, VoPTextLayer, VoPVisionLayer


HOLDER_NAME = "vop"


class VoPModel(BaseTuner):
    """
    Creates a VoP model (Huang et al., CVPR 2023) from a CLIP model: prompt tokens in every layer of both towers,
    optional position-, context- and function-specific video prompts, and a video input path
    (`pixel_values [B, F, 3, H, W]` -> unit-norm video embeddings).

    It works on `CLIPModel`, `CLIPVisionModelWithProjection`, `CLIPTextModelWithProjection`, the bare towers, and
    any model that contains them, and likewise on MetaCLIP 2, SigLIP and SigLIP 2 models (`peft_vop.FAMILIES`). The
    backbone stays frozen; only the prompts (and VoP^C's context module, VoP^F's frame position embedding) train and
    are saved. The adapter's config records the family, and a model of another family is refused.

    Args:
        model (`torch.nn.Module`): the CLIP model to adapt.
        config (`VoPConfig`): the adapter configuration.
        adapter_name (`str`, defaults to `"default"`): name of the adapter.
        low_cpu_mem_usage (`bool`, defaults to `False`): create the adapter on the meta device (for loading).

    Example:

        ```py
        >>> import torch
        >>> import peft_vop
        >>> from peft import get_peft_model
        >>> from transformers import CLIPConfig, CLIPModel

        >>> clip = CLIPModel(CLIPConfig())  # or CLIPModel.from_pretrained("openai/clip-vit-base-patch32")
        >>> model = get_peft_model(clip, peft_vop.VoPConfig(variant="vop"))
        >>> model.print_trainable_parameters()
        trainable params: 122,880 || all params: 151,400,193 || trainable%: 0.0812
        VoP adapter 'default' (vop): 122,880 (paper, CLIP ViT-B/32: 0.1M (0.103%))
        ```
    """

    prefix: str = "vop_"
    tuner_layer_cls = VoPLayer
    target_module_mapping: dict[str, list[str]] = {}

    # ------------------------------------------------------------------ injection
    def _prepare_adapter_config(self, peft_config: PeftConfig, model_config: dict) -> PeftConfig:
        # The targets are found by class (see `_prepare_model`), so there is no `target_modules` to fill in.
        return peft_config

    def _prepare_model(self, peft_config: PeftConfig, model: nn.Module) -> None:
        towers, families = {}, {}
        for name, module in model.named_modules():
            found = tower_family(module)
            if found is not None:
                towers[f"{name}.encoder" if name else "encoder"] = name
                families[found[0].name] = found[0]
        if not towers:
            classes = ", ".join(f"{f.text_tower.__name__} / {f.vision_tower.__name__}" for f in FAMILIES)
            raise ValueError(
                f"VoP adapts the towers of CLIP-like dual encoders ({classes}, as found in their *Model and "
                f"*WithProjection classes); none were found in {type(model).__name__}."
            )
        if len(families) > 1:
            raise ValueError(f"{type(model).__name__} holds towers of several backbone families: {sorted(families)}.")
        (family,) = families.values()
        recorded = peft_config.backbone_family
        if recorded is not None and recorded != family.name:
            raise ValueError(
                f"This VoP adapter was made for the backbone family {recorded!r}, but the model is a {family.name!r} "
                f"model ({type(model).__name__}); load it onto a {recorded!r} model (families: {list(FAMILY_NAMES)})."
            )
        peft_config.backbone_family = family.name
        self._tower_of_encoder = towers

    def _check_target_module_exists(self, peft_config: PeftConfig, key: str) -> bool:
        return key in self._tower_of_encoder

    def _create_and_replace(
        self,
        peft_config: VoPConfig,
        adapter_name: str,
        target: nn.Module,
        target_name: str,
        parent: nn.Module,
        current_key: str,
        **kwargs: Any,
    ) -> None:
        # `target` is the tower's encoder and `parent` the tower: the holder is attached to the tower, nothing is
        # replaced, and the hooks go on the tower, its encoder layers and their self-attention modules.
        tower = parent
        holder = getattr(tower, HOLDER_NAME, None)
        if isinstance(holder, VoPLayer):
            holder.update_layer(tower, adapter_name, peft_config)
            return
        family, kind = tower_family(tower)
        if kind == "vision":
            owner = self._owner_of(current_key)
            projection = getattr(owner, "visual_projection", None)
            projection = projection if isinstance(projection, nn.Module) else None
            holder = VoPVisionLayer(tower, adapter_name, peft_config, family, projection=projection)
            if owner is not None and hasattr(owner, "text_model"):
                owner.register_forward_pre_hook(holder.check_paired_batches, with_kwargs=True)
        else:
            holder = VoPTextLayer(tower, adapter_name, peft_config, family)
        if adapter_name not in self.active_adapters:
            holder.requires_grad_(False)
        tower.add_module(HOLDER_NAME, holder)

    def _owner_of(self, encoder_key: str) -> nn.Module | None:
        """The module holding the tower of `encoder_key` (e.g. the `CLIPModel`); `None` for a bare tower."""
        tower_key = self._tower_of_encoder[encoder_key]
        owner_key = tower_key.rpartition(".")[0] if "." in tower_key else ""
        return self.model.get_submodule(owner_key) if tower_key else None

    def _holders(self) -> list[tuple[nn.Module, VoPLayer]]:
        return [
            (tower, tower.get_submodule(HOLDER_NAME))
            for tower in self.model.modules()
            if isinstance(getattr(tower, HOLDER_NAME, None), VoPLayer)
        ]

    # ------------------------------------------------------------------ merging and unloading
    def _check_merge_allowed(self) -> None:
        raise ValueError(
            "VoP prompts are extra tokens, not weight updates, so they cannot be merged into CLIP's weights "
            "(`merge_and_unload`/`merge_adapter` are not available). Use `unload()` to get the base model back, or "
            "keep the PEFT model for inference."
        )

    def _unload_and_optionally_merge(
        self,
        merge: bool = True,
        progressbar: bool = False,
        safe_merge: bool = False,
        adapter_names: list[str] | None = None,
    ) -> nn.Module:
        if merge:
            self._check_merge_allowed()
        holders = self._holders()
        for module in self.model.modules():
            _remove_hooks(module, [holder for _, holder in holders])
        for tower, _ in holders:
            delattr(tower, HOLDER_NAME)
        restore_quick_gelu(self.model)
        if hasattr(self.model, "peft_config"):
            del self.model.peft_config
        return self.model

    # ------------------------------------------------------------------ state dict
    @classmethod
    def _remove_adapter_name_from_key(cls, key: str, adapter_name: str) -> str:
        # Keys look like `...vision_model.vop.<container>.<adapter>[.<submodule...>]`; the adapter name is the
        # segment right after the container, wherever the key ends.
        return re.sub(
            rf"(\.{HOLDER_NAME}\.[A-Za-z_]+)\.{re.escape(adapter_name)}(?=\.|$)",
            r"\1",
            key,
            count=1,
        )

    @classmethod
    def _remap_adapter_state_dict_for_load(
        cls,
        model: nn.Module,
        config: PeftConfig,
        adapter_name: str,
        state_dict: dict[str, torch.Tensor],
    ) -> dict[str, torch.Tensor]:
        state_dict = {migrate_key(key): value for key, value in state_dict.items()}
        remapped = super()._remap_adapter_state_dict_for_load(model, config, adapter_name, state_dict)
        # Check every shape before anything is copied, so a checkpoint for another CLIP geometry fails cleanly.
        expected = model.state_dict()
        mismatches = [
            f"'{cls._remove_adapter_name_from_key(key, adapter_name)}': checkpoint {list(value.shape)} vs. "
            f"model {list(expected[key].shape)}"
            for key, value in remapped.items()
            if key in expected and tuple(value.shape) != tuple(expected[key].shape)
        ]
        if mismatches:
            raise ValueError(
                f"The VoP adapter '{adapter_name}' does not fit this base model (another width, depth or frame "
                "count): " + "; ".join(mismatches) + ". Load it onto the CLIP geometry it was trained for."
            )
        return remapped


# Parameter containers of adapters saved before every VoP parameter name carried peft's `vop_` prefix (peft-vop 0.1.0).
LEGACY_CONTAINERS: dict[str, str] = {
    "prompts": "vop_prompts",
    "frame_prompts": "vop_position_prompts",
    "video_prompts": "vop_inter_frame_prompts",
    "frame_position_embedding": "vop_frame_position_embedding",
    "context_module": "vop_context_module",
}
_LEGACY_KEY = re.compile(rf"(\.{HOLDER_NAME}\.)({'|'.join(LEGACY_CONTAINERS)})(?=\.|$)")


def migrate_key(key: str) -> str:
    """The state-dict key an adapter saved by peft-vop 0.1.0 has today (unchanged for current keys).

    Example: `base_model.model.vision_model.vop.frame_prompts` -> `base_model.model.vision_model.vop.vop_position_prompts`.
    """
    return _LEGACY_KEY.sub(lambda match: match.group(1) + LEGACY_CONTAINERS[match.group(2)], key, count=1)


def _remove_hooks(module: nn.Module, holders: list[VoPLayer]) -> None:
    for hooks, with_kwargs in (
        (module._forward_pre_hooks, module._forward_pre_hooks_with_kwargs),
        (module._forward_hooks, module._forward_hooks_with_kwargs),
    ):
        for key, hook in list(hooks.items()):
            if any(holder.owns_hook(hook) for holder in holders):
                del hooks[key]
                with_kwargs.pop(key, None)
                module._forward_hooks_always_called.pop(key, None)
