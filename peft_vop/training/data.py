"""Datasets of a `vop train` run, read with `peft_vop.data` from the annotation file named by the config."""

from __future__ import annotations

from .config import TrainingConfig
from .evaluation import EvalData


def build_train_data(config: TrainingConfig):
    raise NotImplementedError


def build_eval_data(config: TrainingConfig) -> EvalData:
    raise NotImplementedError
