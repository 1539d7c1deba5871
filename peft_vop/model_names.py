"""Names of CLIP checkpoints: the shipped small CLIP by name, and a quick check that any other name can be loaded.

`"default"` names the small CLIP shipped inside the package (`peft_vop.synthetic.default_model_path()`). Adapters
trained on it record that name as their base model instead of the absolute path of one installation, so the name
means the same on every machine. Any other name is a local folder or a Hub id; [`check_model_name`] tells in a
second, instead of after minutes of download retries, when it can be neither.

Only the standard library is imported here (`huggingface_hub` when a Hub id is checked).
"""

from __future__ import annotations

import os
import re
from pathlib import Path


DEFAULT_MODEL_NAME = "default"
DEFAULT_MODEL_DIR = Path(__file__).resolve().parent / "default_model"
# "name" or "namespace/name", as the Hub spells repository ids.
_HUB_ID = re.compile(r"^[A-Za-z0-9][\w.-]*(/[\w.-]+)?$")
_TRUE = {"1", "on", "yes", "true"}
HUB_PROBE_TIMEOUT_S = 10.0


def resolve_model_name(name: str | os.PathLike) -> str:
    """The folder or Hub id to pass to `from_pretrained` for `name` (`"default"` becomes the shipped folder)."""
    return str(DEFAULT_MODEL_DIR) if str(name) == DEFAULT_MODEL_NAME else str(name)


def portable_model_name(name: str | os.PathLike) -> str:
    """`name` as an adapter should record it: `"default"` for the shipped CLIP, wherever it is installed."""
    if str(name) == DEFAULT_MODEL_NAME:
        return DEFAULT_MODEL_NAME
    if os.path.isdir(name) and Path(name).resolve() == DEFAULT_MODEL_DIR:
        return DEFAULT_MODEL_NAME
    return str(name)


def hub_is_offline() -> bool:
    """Whether `HF_HUB_OFFLINE` (or `TRANSFORMERS_OFFLINE`) forbids downloads, as huggingface_hub reads them."""
    return any(
        os.environ.get(name, "").strip().lower() in _TRUE for name in ("HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE")
    )


def check_model_name(name: str, flag: str = "--model_name_or_path", config_file: str | None = "config.json") -> str:
    """
    Check that `name` can be loaded, without downloading it; return the folder or Hub id to load.

    A local folder must hold `config_file`. Anything else must look like a Hub id and either be in the local
    Hugging Face cache or exist on the Hub (one metadata request, `HUB_PROBE_TIMEOUT_S` at most).

    Args:
        name (`str`): `"default"`, a local folder or a Hub id.
        flag (`str`): the option that gave `name`, named in errors.
        config_file (`str`, *optional*): a file a local folder must hold (`None`: any folder).

    Raises:
        `ValueError`: naming `flag`, `name`, and what would work (a local folder, `HF_HUB_OFFLINE=1` with a
        cached model, or `default`).
    """
    resolved = resolve_model_name(name)
    hint = (
        f"Give a local folder written by `save_pretrained`, or `{flag} {DEFAULT_MODEL_NAME}` for the small CLIP "
        "shipped with peft-vop"
    )
    if os.path.exists(resolved):
        if not os.path.isdir(resolved):
            raise ValueError(f"{flag} must be a folder or a Hub id; {resolved} is a file.")
        if config_file and not os.path.isfile(os.path.join(resolved, config_file)):
            raise ValueError(f"{flag}: the folder {resolved} has no {config_file}.")
        return resolved
    if resolved.startswith((".", "/", "~")) or resolved.endswith("/") or not _HUB_ID.match(resolved):
        raise ValueError(f"{flag}: folder not found: {resolved}. {hint}.")

    from huggingface_hub import model_info, try_to_load_from_cache
    from huggingface_hub.errors import GatedRepoError, RepositoryNotFoundError

    if config_file and isinstance(try_to_load_from_cache(resolved, config_file), str):
        return resolved  # downloaded before: loads offline too
    if hub_is_offline():
        raise ValueError(
            f"{flag} {resolved!r} is not a local folder and is not in the Hugging Face cache, and HF_HUB_OFFLINE=1 "
            f"forbids downloading it. {hint}, or download it once without HF_HUB_OFFLINE."
        )
    try:
        model_info(resolved, timeout=HUB_PROBE_TIMEOUT_S)
    except GatedRepoError:
        return resolved  # exists; loading will ask for the token it needs
    except RepositoryNotFoundError as error:
        raise ValueError(
            f"{flag} {resolved!r} is not a local folder and no model of that id is on the Hub (mistyped?). {hint}."
        ) from error
    except Exception as error:  # connection refused, timeout, proxy, DNS: the Hub cannot be reached
        raise ValueError(
            f"{flag} {resolved!r} is not a local folder or a cached model, and the Hugging Face Hub cannot be "
            f"reached ({type(error).__name__}). {hint}; offline, set HF_HUB_OFFLINE=1 to use models cached before."
        ) from error
    return resolved
