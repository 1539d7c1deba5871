"""`vop train`: train a VoP adapter from a YAML/JSON config, with command-line overrides.

Every field of `peft_vop.training.TrainingConfig` is also a flag (`learning_rate` -> `--learning-rate`); a flag
overrides the config file's value. Run it as `vop train ...` on one device, or under `accelerate launch -m
peft_vop.cli.main train ...` (or `torchrun`) on several processes.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import sys
import types
import typing
from typing import Any


NONE_WORDS = ("none", "null")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Add `--config` and one flag per `TrainingConfig` field to the `vop train` parser."""
    from peft_vop.training import TrainingConfig

    parser.add_argument(
        "--config", metavar="FILE", help="YAML or JSON file with training config keys; flags below override it."
    )
    parser.add_argument(
        "--print-config", action="store_true", help="print the resolved config as JSON and exit without training"
    )
    hints = typing.get_type_hints(TrainingConfig)
    group = parser.add_argument_group("training config (each overrides the key of the same name in --config)")
    for item in dataclasses.fields(TrainingConfig):
        _add_field_flag(group, item, hints[item.name])


def _add_field_flag(group: argparse._ArgumentGroup, item: dataclasses.Field, hint: Any) -> None:
    flag = "--" + item.name.replace("_", "-")
    help_text = item.metadata.get("help", "")
    base, optional = _unwrap_optional(hint)
    if optional:
        help_text += " ('none' for null)"
    common = {"dest": item.name, "default": argparse.SUPPRESS, "help": help_text}
    if base is bool:
        group.add_argument(flag, action=argparse.BooleanOptionalAction, **common)
    elif base is dict or typing.get_origin(base) is dict:
        common["help"] = "set one option of peft_vop.VoPConfig, e.g. intra_frame_layers=6 (repeatable)"
        group.add_argument("--adapter-option", action="append", metavar="KEY=VALUE", type=_key_value, **common)
    elif typing.get_origin(base) is list:
        group.add_argument(flag, nargs="+", metavar="NAME", **common)
    elif typing.get_origin(base) is tuple:
        element = typing.get_args(base)[0]
        group.add_argument(flag, nargs=len(typing.get_args(base)), type=element, metavar="X", **common)
    else:
        group.add_argument(flag, type=_nullable(base) if optional else base, metavar=base.__name__.upper(), **common)


def _unwrap_optional(hint: Any) -> tuple[Any, bool]:
    if typing.get_origin(hint) in (typing.Union, types.UnionType):
        arguments = [argument for argument in typing.get_args(hint) if argument is not type(None)]
        if len(arguments) == 1:
            return arguments[0], True
    return hint, False


def _nullable(convert: type) -> typing.Callable[[str], Any]:
    def parse(text: str) -> Any:
        return None if text.lower() in NONE_WORDS else convert(text)

    parse.__name__ = convert.__name__
    return parse


def _key_value(text: str) -> tuple[str, Any]:
    import yaml

    key, separator, value = text.partition("=")
    if not separator or not key:
        raise argparse.ArgumentTypeError(f"expected KEY=VALUE, got {text!r}")
    return key, yaml.safe_load(value)


def resolve_config(args: argparse.Namespace):
    """Build the `TrainingConfig` of parsed `vop train` arguments: the config file, then the flags."""
    from peft_vop.training import TrainingConfig, load_config_file

    overrides = {
        key: value
        for key, value in vars(args).items()
        if key not in ("config", "print_config", "command", "_run") and not key.startswith("_")
    }
    values = load_config_file(args.config) if args.config else {}
    if "adapter_options" in overrides:
        values["adapter_options"] = {**values.get("adapter_options", {}), **dict(overrides.pop("adapter_options"))}
    return TrainingConfig.from_dict({**values, **overrides})


def run(args: argparse.Namespace) -> int:
    """Run `vop train`; returns the exit status (2 for a configuration error)."""
    try:
        config = resolve_config(args)
    except (ValueError, TypeError, FileNotFoundError) as error:
        print(f"vop train: error: {error}", file=sys.stderr)
        return 2
    if args.print_config:
        print(json.dumps(config.to_dict(), indent=2, sort_keys=True))
        return 0

    from peft_vop.training import ConfigurationError, TrainingInterrupted, train

    try:
        result = train(config)
    except ConfigurationError as error:
        # Found at start, before any model is loaded: missing data, frame counts, a busy output_dir, ...
        print(f"vop train: error: {error}", file=sys.stderr)
        return 2
    except TrainingInterrupted as error:  # SIGINT / SIGTERM: `train` has said how to resume
        return error.exit_code
    from accelerate import PartialState

    if PartialState().is_main_process:
        print(f"Adapter written to {result.output_dir} after {result.global_step} steps.")
        if result.best_metric is not None:
            print(
                f"Best {config.metric_for_best_model}: {result.best_metric:.2f} at step {result.best_step} (in best/)."
            )
    return 0
