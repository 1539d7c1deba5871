"""peft-vop: VoP (Text-Video Co-operative Prompt Tuning) as a PEFT method for CLIP-like dual encoders.

Importing `peft_vop` registers the method with peft (peft type `VOP`), after which `get_peft_model`,
`PeftModel.from_pretrained`, `PeftConfig.from_pretrained` and `AutoPeftModel.from_pretrained` handle VoP adapters
like any built-in method. Only the tuner is imported here; data, retrieval and training live in sub-packages that
are imported on demand.
"""

from peft.utils import register_peft_method

from . import peft_model_extensions
from ._registration import VOP_NAME, VOP_PEFT_TYPE, forget_earlier_registration
from .config import VARIANTS, VoPConfig
from .families import FAMILIES, BackboneFamily
from .layer import VoPLayer, VoPTextLayer, VoPVisionLayer
from .loading import load_adapter
from .model import VoPModel
from .pooling import mean_pool_frames


__version__ = "0.1.0"
__all__ = [
    "FAMILIES",
    "VARIANTS",
    "VOP_PEFT_TYPE",
    "BackboneFamily",
    "VoPConfig",
    "VoPLayer",
    "VoPModel",
    "VoPTextLayer",
    "VoPVisionLayer",
    "load_adapter",
    "mean_pool_frames",
]

forget_earlier_registration()
register_peft_method(name=VOP_NAME, config_cls=VoPConfig, model_cls=VoPModel, prefix=VoPModel.prefix)
peft_model_extensions.install()
