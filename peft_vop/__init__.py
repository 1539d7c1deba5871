"""peft-vop: VoP (Text-Video Co-operative Prompt Tuning) as a PEFT method for CLIP.

Importing `peft_vop` registers the method with peft (peft type `VOP`), after which `get_peft_model`,
`PeftModel.from_pretrained`, `PeftConfig.from_pretrained` and `AutoPeftModel.from_pretrained` handle VoP adapters
like any built-in method. Only the tuner is imported here; data, retrieval and training live in sub-packages that
are imported on demand.
"""

from . import peft_model_extensions
from ._registration import VOP_PEFT_TYPE, register
from .config import VARIANTS, VoPConfig
from .layer import VoPLayer, VoPTextLayer, VoPVisionLayer
from .loading import load_adapter
from .model import VoPModel
from .pooling import mean_pool_frames


__version__ = "0.1.0"
__all__ = [
    "VARIANTS",
    "VOP_PEFT_TYPE",
    "VoPConfig",
    "VoPLayer",
    "VoPModel",
    "VoPTextLayer",
    "VoPVisionLayer",
    "load_adapter",
    "mean_pool_frames",
]

register()
peft_model_extensions.install()
