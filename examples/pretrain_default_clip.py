"""Pre-train the small default CLIP that peft-vop ships, on still frames of the synthetic world.

Run from the repository root (with peft-vop installed, or `PYTHONPATH=.`); the defaults reproduce the shipped model
(CPU, one thread; the shipped run took 14 minutes on a 2-core machine shared with other jobs):

    python examples/pretrain_default_clip.py --output-dir peft_vop/default_model

Every field of `PretrainConfig` is an option (`--steps 50 --batch-size 32` for a quick try). The folder receives the
model (safetensors), tokenizer, processor, a model card (README.md) and `pretraining.json` with the log and metrics.
"""

from __future__ import annotations

import argparse
import dataclasses
import sys
from collections.abc import Sequence

from peft_vop.synthetic.pretrain import PretrainConfig, pretrain_default_clip


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    """Command-line options: `--output-dir` and one option per `PretrainConfig` field."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--output-dir", required=True, help="Folder to save the model, tokenizer and processor into.")
    for config_field in dataclasses.fields(PretrainConfig):
        # `num_threads` is the only optional field; every other default has the field's own type.
        kind = int if config_field.name == "num_threads" else type(config_field.default)
        parser.add_argument(
            f"--{config_field.name.replace('_', '-')}",
            type=kind,
            default=config_field.default,
            help=f"{config_field.metadata['help']} (default: {config_field.default})",
        )
    return parser.parse_args(argv)


def main(argv: Sequence[str] | None = None) -> int:
    """Pre-train with the options of `argv` and save the result."""
    args = parse_args(argv)
    config = PretrainConfig(**{f.name: getattr(args, f.name) for f in dataclasses.fields(PretrainConfig)})
    pretrain_default_clip(args.output_dir, config)
    return 0


if __name__ == "__main__":
    sys.exit(main())
