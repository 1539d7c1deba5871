"""What every `vop` command's options share: how help is printed, and the options that mean the same everywhere.

Option names follow transformers and accelerate (`--model_name_or_path`, `--output_dir`, `--num_train_epochs`,
`--disable_tqdm`); each option may carry further spellings (the `--kebab-case` form, earlier names), which parse
but are not listed in `--help`. Nothing heavy is imported here: `vop COMMAND --help` builds every parser.
"""

from __future__ import annotations

import argparse
import copy


# The seed of every command that draws random numbers (`vop prepare --sampling rand`, `vop train`, `vop demo`):
# one default (the training config's, transformers' 42), so that a frame cache built with defaults is what training
# with defaults expects. tests/cli/test_arguments.py checks that the commands agree.
DEFAULT_SEED = 42
DEFAULT_NUM_FRAMES = 12


class HelpFormatter(argparse.ArgumentDefaultsHelpFormatter):
    """Lists each option under its first name only, marks required options, and shows defaults that mean something."""

    def _format_action_invocation(self, action: argparse.Action) -> str:
        long_names = [name for name in action.option_strings if name.startswith("--")]
        if len(long_names) > 1:
            action = copy.copy(action)
            action.option_strings = [name for name in action.option_strings if not name.startswith("--")]
            action.option_strings.append(long_names[0])
        return super()._format_action_invocation(action)

    def _get_help_string(self, action: argparse.Action) -> str:
        text = action.help or ""
        if action.required:
            return text + " (required)"
        shown = getattr(action, "shown_default", action.default)
        if shown in (None, False, argparse.SUPPRESS, [], {}) or "%(default)" in text or not action.option_strings:
            return text
        if isinstance(shown, (list, tuple)):
            shown = " ".join(str(value) for value in shown)
        return f"{text} (default: {str(shown).replace('%', '%%')})"


def spellings(name: str, *earlier: str) -> list[str]:
    """`--name` followed by its hidden spellings: `--kebab-name` and any `earlier` names (given with dashes)."""
    names = [f"--{name}"]
    if "_" in name:
        names.append(f"--{name.replace('_', '-')}")
    return names + [spelling for spelling in earlier if spelling not in names]


def add_model_argument(parser: argparse.ArgumentParser, help_text: str) -> None:
    """`--model_name_or_path` (also `--model`), the CLIP checkpoint every command starts from."""
    parser.add_argument(
        *spellings("model_name_or_path", "--model"),
        dest="model_name_or_path",
        required=True,
        metavar="PATH_OR_ID",
        help=f"{help_text}: a local folder, a Hub id, or `default` (the small CLIP shipped with peft-vop)",
    )


def add_progress_argument(parser: argparse.ArgumentParser) -> None:
    """`--disable_tqdm` (also `--no-progress`): no progress bars at all, weight loading included."""
    parser.add_argument(
        *spellings("disable_tqdm", "--no-progress", "--no_progress"),
        dest="disable_tqdm",
        action="store_true",
        help="show no progress bars (weight loading included)",
    )


def silence_progress_bars() -> None:
    """Turn off the progress bars of transformers (weight loading) and huggingface_hub (downloads) too."""
    from huggingface_hub.utils import disable_progress_bars
    from transformers.utils import logging

    logging.disable_progress_bar()
    disable_progress_bars()
