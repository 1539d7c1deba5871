"""The embedded default: a synthetic temporal video-text world and a small CLIP pre-trained on its still frames.

`generate_world` writes an offline text-video retrieval benchmark (mp4 clips, JSONL annotations) whose test split
cannot be solved without frame order; `default_model_path` points at the small CLIP shipped with the package, to be
loaded with the usual `from_pretrained` calls. The program that pre-trained it is `examples/pretrain_default_clip.py`
in the repository: the package ships the model, not the code that made it.
"""

from pathlib import Path

from .clips import ACTIONS, OPPOSITE_ACTIONS, ClipSpec, Event, Track, sample_clip
from .scene import COLOURS, SHAPES, SIZES, Placement, SceneObject, render_frame
from .stills import POSITION_PHRASES, StillSpec, sample_position_batch, sample_still, sample_still_batch
from .video import through_yuv420p, write_video
from .world import WORLD_VERSION, generate_world


def default_model_path() -> Path:
    """The folder of the small CLIP shipped with peft-vop, pre-trained on still frames of the synthetic world.

    It holds a `CLIPModel`, its `CLIPTokenizer` and `CLIPProcessor` in Hugging Face format, so it loads offline
    exactly like a Hub checkpoint.

    Returns:
        `Path`: The folder, to pass to `CLIPModel.from_pretrained`, `AutoTokenizer.from_pretrained` or
        `AutoProcessor.from_pretrained`.

    Example:

    ```python
    >>> from transformers import CLIPModel
    >>> from peft_vop.synthetic import default_model_path
    >>> model = CLIPModel.from_pretrained(default_model_path())
    ```
    """
    path = Path(__file__).resolve().parent.parent / "default_model"
    if not (path / "config.json").is_file():
        raise FileNotFoundError(
            f"The default model is missing from {path}; reinstall peft-vop or run examples/pretrain_default_clip.py."
        )
    return path


__all__ = [
    "ACTIONS",
    "COLOURS",
    "OPPOSITE_ACTIONS",
    "POSITION_PHRASES",
    "SHAPES",
    "SIZES",
    "WORLD_VERSION",
    "ClipSpec",
    "Event",
    "Placement",
    "SceneObject",
    "StillSpec",
    "Track",
    "default_model_path",
    "generate_world",
    "render_frame",
    "sample_clip",
    "sample_position_batch",
    "sample_still",
    "sample_still_batch",
    "through_yuv420p",
    "write_video",
]
