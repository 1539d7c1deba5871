"""Loading a user's VoP adapter so that nothing is silently wrong: every tensor present, the config readable.

peft's `PeftModel.from_pretrained` only warns ("Found missing adapter keys") when an adapter file lacks tensors, and
leaves those prompts at their random initial values. Commands that load a user's adapter call `load_adapter` instead,
which checks the directory before loading and raises a `ValueError` naming the missing keys and the file.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

from torch import nn


CONFIG_FILE = "adapter_config.json"
WEIGHT_FILES = ("adapter_model.safetensors", "adapter_model.bin")


def check_adapter_directory(path: str | os.PathLike) -> None:
    """Refuse a local adapter directory that peft could not load, naming the directory (or file) and the fix.

    Checks that the directory holds `adapter_config.json` with a known `peft_type`, and a weights file. Hub ids (no
    such local directory) are left to peft.

    Args:
        path (`str` or `os.PathLike`): the adapter directory.

    Raises:
        `ValueError`: the directory lacks its config or weights, or the config names an unknown `peft_type`.
    """
    from peft.utils import PeftType

    directory = Path(path)
    if not directory.is_dir():
        return
    config_file = directory / CONFIG_FILE
    if not config_file.is_file():
        raise ValueError(f"{str(directory)!r} is not a PEFT adapter directory: it has no {CONFIG_FILE}.")
    try:
        peft_type = json.loads(config_file.read_text()).get("peft_type")
    except (json.JSONDecodeError, UnicodeDecodeError, AttributeError) as error:
        raise ValueError(f"{str(config_file)!r} is not a JSON object of adapter settings ({error}).") from error
    accepted = [member.value for member in PeftType]
    if peft_type not in accepted:
        raise ValueError(
            f"{str(config_file)!r} has peft_type={peft_type!r}, which no installed PEFT method registers; accepted "
            f"values: {accepted} (VoP adapters have 'VOP'; `import peft_vop` registers it)."
        )
    if not any((directory / name).is_file() for name in WEIGHT_FILES):
        raise ValueError(
            f"The adapter directory {str(directory)!r} has a config but no weights (expected one of "
            f"{list(WEIGHT_FILES)}); the save that wrote it did not finish, or the weights were not copied."
        )


def load_adapter(
    model: nn.Module, adapter: str | os.PathLike, adapter_name: str = "default", **kwargs: Any
) -> nn.Module:
    """Load the VoP (or any PEFT) adapter `adapter` onto `model`, refusing an adapter file that misses tensors.

    Works like `PeftModel.from_pretrained(model, adapter, adapter_name=adapter_name, **kwargs)`, but a local adapter
    directory is checked first (see `check_adapter_directory`), and every parameter of the adapter must be in its
    weights file: peft itself only warns and leaves the missing prompts at their random initial values.

    Args:
        model (`torch.nn.Module`): the base model (e.g. a `CLIPModel`).
        adapter (`str` or `os.PathLike`): adapter directory or Hub id.
        adapter_name (`str`, defaults to `"default"`): the name the adapter gets in the model.
        **kwargs: passed on to `PeftModel.from_pretrained` (e.g. `is_trainable`, `revision`).

    Returns:
        `peft.PeftModel`: the model with the adapter loaded.

    Raises:
        `ValueError`: naming the directory or the weights file and what is wrong with it.
    """
    from peft import PeftModel
    from peft.utils import get_peft_model_state_dict, load_peft_weights

    from .model import migrate_key

    check_adapter_directory(adapter)
    peft_model = PeftModel.from_pretrained(model, adapter, adapter_name=adapter_name, **kwargs)
    hub_kwargs = {key: kwargs[key] for key in ("subfolder", "revision", "token", "cache_dir") if key in kwargs}
    saved = {migrate_key(key) for key in load_peft_weights(str(adapter), device="cpu", **hub_kwargs)}
    # VoP adapters never hold embedding layers; peft's "auto" would look the base model up on the Hub to decide.
    expected = set(get_peft_model_state_dict(peft_model, adapter_name=adapter_name, save_embedding_layers=False))
    missing = sorted(expected - saved)
    if missing:
        weights = next((Path(adapter) / name for name in WEIGHT_FILES if (Path(adapter) / name).is_file()), adapter)
        raise ValueError(
            f"The adapter weights {str(weights)!r} lack {len(missing)} of the adapter's tensors: {missing}. They would "
            "keep their random initial values; the file is truncated or was saved from another configuration."
        )
    return peft_model
