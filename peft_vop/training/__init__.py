"""Training VoP adapters with `accelerate`: the `vop train` loop, its config, loss and checkpoints.

Nothing here is imported by the tuner (`import peft_vop` never loads the trainer).
"""

from .checkpointing import TrainingInterrupted
from .config import DEFAULT_LEARNING_RATE, ConfigurationError, TrainingConfig, load_config_file
from .contrastive import (
    VideoTextEncoder,
    contrastive_step,
    gather_with_grad,
    sigmoid_contrastive_loss,
    symmetric_contrastive_loss,
)
from .evaluation import EvalData
from .loop import TrainingResult, train


__all__ = [
    "DEFAULT_LEARNING_RATE",
    "ConfigurationError",
    "EvalData",
    "TrainingConfig",
    "TrainingInterrupted",
    "TrainingResult",
    "VideoTextEncoder",
    "contrastive_step",
    "sigmoid_contrastive_loss",
    "gather_with_grad",
    "load_config_file",
    "symmetric_contrastive_loss",
    "train",
]
