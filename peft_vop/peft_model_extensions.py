"""What peft's generic `PeftModel` does differently when it holds VoP adapters.

`get_peft_model` and `PeftModel.from_pretrained` always build peft's own `PeftModel` class (peft picks the class from
the task type, and task types are a closed set), so VoP cannot hand users a subclass. Instead `import peft_vop`
wraps two `PeftModel` methods; each wrapper checks whether the model holds a VoP adapter and otherwise calls peft's
method unchanged:

- `save_pretrained` writes the whole adapter into a hidden staging directory and swaps it with the target directory
  in one step (`peft_vop._atomic.replacing_directory`), so a kill at any instant leaves the complete old or the
  complete new adapter, never new weights beside an old config; the model card gains a section on how to load the
  adapter (`import peft_vop` first).
- `_upload_modified_files` (the last step of `push_to_hub`) puts peft's card metadata and the loading section back
  into the model card: transformers' `push_to_hub` replaces the card `save_pretrained` wrote with the repository's
  existing card, or a template for a new repository, before uploading.
- `print_trainable_parameters` adds the variant and the figure the paper reports for it.
- `load_adapter` (which `PeftModel.from_pretrained` calls) refuses a local VoP adapter directory without weights with
  a `ValueError` naming the directory, where peft would take the path for a Hub id and fail on its spelling.
"""

from __future__ import annotations

import functools
import os
import shutil
from pathlib import Path
from typing import Any

from huggingface_hub import ModelCard
from peft import PeftModel

from ._atomic import replacing_directory
from ._registration import VOP_PEFT_TYPE
from .config import PAPER_TRAINABLE_PARAMETERS


CARD_MARKER = "<!-- peft-vop loading section -->"
CARD_END_MARKER = "<!-- end of the peft-vop loading section -->"
_INSTALLED_FLAG = "_peft_vop_extension"
# What a save replaces even when it does not write it (weights saved before in the other format).
ADAPTER_FILES = ("adapter_config.json", "adapter_model.safetensors", "adapter_model.bin")


def vop_configs(model: PeftModel) -> dict[str, Any]:
    """The VoP adapter configs of a `PeftModel`, by adapter name (empty for other PEFT methods)."""
    configs = getattr(model, "peft_config", None) or {}
    return {name: config for name, config in configs.items() if config.peft_type == VOP_PEFT_TYPE}


def install() -> None:
    """Wrap `PeftModel`'s `save_pretrained`, `_upload_modified_files` and `print_trainable_parameters` (idempotent)."""
    for name, wrapper_factory in (
        ("save_pretrained", _atomic_save_pretrained),
        ("_upload_modified_files", _upload_with_loading_section),
        ("print_trainable_parameters", _print_trainable_parameters),
        ("load_adapter", _checked_load_adapter),
    ):
        original = getattr(PeftModel, name)
        if getattr(original, _INSTALLED_FLAG, False):
            continue
        wrapper = functools.wraps(original)(wrapper_factory(original))
        setattr(wrapper, _INSTALLED_FLAG, True)
        setattr(PeftModel, name, wrapper)


def _atomic_save_pretrained(original):
    def save_pretrained(self: PeftModel, save_directory: str | os.PathLike, *args: Any, **kwargs: Any) -> None:
        if not vop_configs(self) or not kwargs.get("is_main_process", True):
            return original(self, save_directory, *args, **kwargs)
        if os.path.isfile(save_directory):
            raise ValueError(f"`save_directory` must be a directory; {str(save_directory)!r} is a file.")
        target = Path(save_directory)
        with replacing_directory(target, replaced=ADAPTER_FILES) as staging:
            if (target / "README.md").is_file():
                shutil.copy2(target / "README.md", staging / "README.md")  # peft updates an existing card
            # VoP trains prompts only, never the embeddings; peft's "auto" would look the base model up on the Hub.
            kwargs.setdefault("save_embedding_layers", False)
            original(self, str(staging), *args, **kwargs)
            _add_loading_section(self, staging / "README.md")

    return save_pretrained


def _upload_with_loading_section(original):
    def _upload_modified_files(self: PeftModel, working_dir: str | os.PathLike, *args: Any, **kwargs: Any) -> Any:
        if vop_configs(self):
            # The card here is the repository's own (or transformers' template): keep it, and add what
            # `save_pretrained` would have written (library, base model) and how to load the adapter.
            self.create_or_update_model_card(str(working_dir))
            _add_loading_section(self, Path(working_dir) / "README.md")
        return original(self, working_dir, *args, **kwargs)

    return _upload_modified_files


def _add_loading_section(model: PeftModel, card_path: Path) -> None:
    """Put "how to load this adapter" at the top of the card (above peft's template), replacing an earlier one."""
    card = ModelCard.load(card_path) if card_path.is_file() else ModelCard("")
    tags = set(card.data.get("tags") or []) | {"vop", "peft-vop", "text-video-retrieval", "clip"}
    card.data["tags"] = sorted(tags)
    configs = vop_configs(model)
    base = next(iter(configs.values())).base_model_name_or_path if configs else None
    base = base or card.data.get("base_model")
    base_class = type(model.get_base_model()).__name__  # CLIPModel, MetaClip2Model, SiglipModel or Siglip2Model
    if base == "default":  # the small CLIP shipped inside peft-vop: no Hub repository to link to
        card.data.pop("base_model", None)
        card.data["tags"] = [tag for tag in card.data["tags"] if tag != "base_model:adapter:default"]
        load_base = "CLIPModel.from_pretrained(default_model_path())  # the small CLIP shipped with peft-vop"
        imports = "from peft_vop.synthetic import default_model_path\n"
    else:
        load_base = f'{base_class}.from_pretrained("{base or "<the checkpoint this adapter was trained on>"}")'
        imports = ""
    # SigLIP 2's vision tower takes patch sequences: `vision_inputs` cuts the frames into them.
    if base_class == "Siglip2Model":
        imports += "from peft_vop.families import vision_inputs\n"
        embed_videos = "model.get_image_features(**vision_inputs(model, videos)).pooler_output"
    else:
        embed_videos = "model.get_image_features(pixel_values=videos).pooler_output"
    adapters = "\n".join(
        f"| `{name}` | `{config.variant}` | {config.num_frames} | {config.text_prompt_length} | "
        f"{config.vision_prompt_length} |"
        for name, config in sorted(configs.items())
    )
    section = f"""{CARD_MARKER}
## VoP adapter: how to load it

A [VoP](https://arxiv.org/abs/2211.12764) prompt-tuning adapter of a `{base_class}` for text-video retrieval. VoP is not built into
peft: install peft-vop and import `peft_vop` before loading, which registers the method with peft.

```bash
pip install peft-vop
```

```python
import peft_vop  # registers VoP with peft
from peft import PeftModel
from transformers import {base_class}
{imports}
base_model = {load_base}
model = PeftModel.from_pretrained(base_model, "<this repository or directory>")
video_embeds = {embed_videos}  # videos: [B, F, 3, H, W]
```

| adapter | variant | frames | text prompts | vision prompts |
|---|---|---|---|---|
{adapters}
{CARD_END_MARKER}"""
    text = card.text
    if CARD_MARKER in text:  # an earlier section: at the top (ends with the end marker), or at the end (older cards)
        before, _, after = text.partition(CARD_MARKER)
        after = after.partition(CARD_END_MARKER)[2] if CARD_END_MARKER in after else ""
        text = before.rstrip() + "\n\n" + after.lstrip() if before.strip() else after
    card.text = f"{section}\n\n{text.strip()}\n"
    card.save(card_path)


def _checked_load_adapter(original):
    def load_adapter(
        self: PeftModel, model_id: str | os.PathLike, adapter_name: str, *args: Any, **kwargs: Any
    ) -> Any:
        config = getattr(self, "peft_config", {}).get(adapter_name)
        if config is not None and config.peft_type == VOP_PEFT_TYPE and kwargs.get("subfolder") is None:
            from .loading import check_adapter_directory

            check_adapter_directory(model_id)
        return original(self, model_id, adapter_name, *args, **kwargs)

    return load_adapter


def _print_trainable_parameters(original):
    def print_trainable_parameters(self: PeftModel) -> None:
        original(self)
        configs = vop_configs(self)
        active = self.active_adapters if configs else []
        for name in active:
            config = configs.get(name)
            if config is None:
                continue
            frame_embedding = sum(
                parameter.numel()
                for key, parameter in self.named_parameters()
                if parameter.requires_grad and "frame_position_embedding." in key
            )
            trainable = self.get_nb_trainable_parameters()[0]
            detail = (
                f"{trainable - frame_embedding:,d} + {frame_embedding:,d} frame position embedding"
                if frame_embedding
                else f"{trainable:,d}"
            )
            print(
                f"VoP adapter '{name}' ({config.variant}): {detail} "
                f"(paper, CLIP ViT-B/32: {PAPER_TRAINABLE_PARAMETERS[config.variant]})"
            )

    return print_trainable_parameters
