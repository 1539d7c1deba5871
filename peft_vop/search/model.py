"""The model that embeds an index, loaded as `vop eval` loads it, and the fingerprint that identifies it."""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from ..data.preprocessing import FramePreprocessor, caption_tokenizer
from ..model_names import check_model_name


# Frames per video when neither the adapter nor the caller says: the same default as `vop eval`.
DEFAULT_NUM_FRAMES = 12


def checkpoint_identity(reference: str | None) -> dict[str, Any] | None:
    """Where a model or adapter comes from and a hash of its files (a copy elsewhere is the same checkpoint)."""
    if reference is None:
        return None
    path = Path(reference)
    if not path.is_dir():
        return {"reference": reference, "sha256": None}  # a Hub id: its name is all we know without downloading
    digest = hashlib.sha256()
    for file in sorted(path.iterdir()):
        if file.suffix in (".json", ".safetensors", ".bin") and file.is_file():
            digest.update(file.name.encode())
            with open(file, "rb") as handle:
                for block in iter(lambda: handle.read(1 << 22), b""):
                    digest.update(block)
    return {"reference": str(path.resolve()), "sha256": digest.hexdigest()}


def same_checkpoint(a: dict[str, Any] | None, b: dict[str, Any] | None) -> bool:
    """Whether two identities are the same checkpoint: same file hash, or the same Hub id when no hash is known."""
    if a is None or b is None:
        return a is b
    if a["sha256"] is None or b["sha256"] is None:
        return a["reference"] == b["reference"]
    return a["sha256"] == b["sha256"]


def describe_checkpoint(identity: dict[str, Any] | None) -> str:
    """The identity in words, for messages: where it is and the start of its hash."""
    if identity is None:
        return "none"
    digest = f" (sha256 {identity['sha256'][:12]})" if identity.get("sha256") else ""
    return f"{identity['reference']}{digest}"


@dataclass
class LoadedModel:
    """A CLIP (with its adapter, if any) ready to embed, and what identifies it.

    Args:
        model (`transformers.CLIPModel` or `peft.PeftModel`):
            In eval mode, on its device.
        tokenizer (`transformers.PreTrainedTokenizerBase`):
            The checkpoint's tokenizer.
        preprocessor (`FramePreprocessor`):
            The checkpoint's frame preprocessing.
        num_frames (`int`):
            Frames per video: the adapter's own count when it has one.
        fingerprint (`dict`):
            Model, adapter, frame and dtype settings; two indexes are comparable only when these are equal.
    """

    model: Any
    tokenizer: Any
    preprocessor: FramePreprocessor
    num_frames: int
    fingerprint: dict[str, Any]

    @property
    def max_length(self) -> int:
        """Token limit of the text tower."""
        return min(self.tokenizer.model_max_length, self.model.config.text_config.max_position_embeddings)


def load_model(
    model: str,
    adapter: str | None = None,
    *,
    num_frames: int | None = None,
    device: str | torch.device | None = None,
    dtype: str = "float32",
) -> LoadedModel:
    """Load a CLIP checkpoint and optional VoP adapter as `vop eval` does, with the fingerprint of the settings.

    Args:
        model (`str`):
            CLIP checkpoint directory, Hub id, or `"default"` (the small CLIP shipped with peft-vop).
        adapter (`str`, *optional*):
            VoP adapter directory (or Hub id); none: zero-shot CLIP with mean-pooled frames.
        num_frames (`int`, *optional*):
            Frames per video; defaults to the adapter's `num_frames`, else 12. A different count than the adapter's
            is refused.
        device (`str` or `torch.device`, *optional*):
            Defaults to CUDA when available.
        dtype (`str`, *optional*, defaults to `"float32"`):
            `"float32"`, `"float16"` or `"bfloat16"` weights.

    Returns:
        `LoadedModel`.
    """
    from transformers import AutoTokenizer

    from .. import load_adapter  # importing the package registers the VoP method with peft
    from ..families import load_dual_encoder
    from ..loading import check_adapter_directory

    if dtype not in ("float32", "float16", "bfloat16"):
        raise ValueError(f"`dtype` must be 'float32', 'float16' or 'bfloat16'; got {dtype!r}.")
    # `default` names the shipped CLIP; a mistyped id or an offline Hub fails here, with a hint, not after retries.
    model = check_model_name(str(model), "`model` (--model_name_or_path)")
    adapter_frames = None
    if adapter is not None:
        from peft import PeftConfig

        check_adapter_directory(adapter)  # no config, no weights or an unknown peft_type: a ValueError naming it
        adapter_frames = getattr(PeftConfig.from_pretrained(adapter), "num_frames", None)
    if adapter_frames is not None and num_frames is not None and num_frames != adapter_frames:
        raise ValueError(f"`num_frames` {num_frames} differs from the adapter's num_frames={adapter_frames}.")
    num_frames = num_frames or adapter_frames or DEFAULT_NUM_FRAMES
    tokenizer = caption_tokenizer(AutoTokenizer.from_pretrained(model), model)
    preprocessor = FramePreprocessor.from_pretrained(model)
    clip = load_dual_encoder(model, dtype=getattr(torch, dtype))
    if adapter is not None:
        clip = load_adapter(clip, adapter)  # refuses an adapter file that lacks tensors
    if device is None:
        device = "cuda" if torch.cuda.is_available() else "cpu"
    clip.to(device).eval()
    fingerprint = {
        "model": checkpoint_identity(model),
        "adapter": checkpoint_identity(adapter),
        "frames": {"num_frames": num_frames, "sampling": "uniform", "preprocessor": preprocessor.to_dict()},
        "dtype": dtype,
    }
    return LoadedModel(clip, tokenizer, preprocessor, num_frames, fingerprint)


def fingerprint_hash_of(fingerprint: dict[str, Any]) -> str:
    """A SHA-256 of a fingerprint (keys sorted), to tag the chunks of a running build."""
    return hashlib.sha256(json.dumps(fingerprint, sort_keys=True).encode()).hexdigest()


def comparable_fingerprint(fingerprint: dict[str, Any]) -> dict[str, Any]:
    """The fingerprint without where the checkpoints live, for comparing two builds."""
    comparable = json.loads(json.dumps(fingerprint))
    for name in ("model", "adapter"):
        if comparable.get(name) and comparable[name]["sha256"] is not None:
            comparable[name] = comparable[name]["sha256"]
    return comparable
