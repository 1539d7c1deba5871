"""Entry point of the `vop` command.

Each sub-command lives in its own module of `peft_vop.cli`, named in `COMMANDS`, and exposes
`add_arguments(parser)` and `run(args) -> int` (and may expose `parent_parsers()`, parsers whose options it
inherits). A module is imported only to build its parser, and its heavy imports (torch, transformers, peft, the
data pipeline) happen inside `run`, so `vop eval` never imports the trainer and `--help` stays fast.

Options follow the transformers / accelerate convention: `--snake_case` names (`--model_name_or_path`,
`--output_dir`, `--num_train_epochs`); the `--kebab-case` spellings and earlier names are accepted but not listed.
"""

from __future__ import annotations

import argparse
import importlib
import sys
import warnings
from collections.abc import Sequence


# command name -> (module, one-line help). Add a command by adding a line.
COMMANDS: dict[str, tuple[str, str]] = {
    "prepare": ("peft_vop.cli.prepare", "pre-decode the sampled frames of a dataset into a frame cache"),
    "eval": ("peft_vop.cli.evaluate", "evaluate text-video retrieval with a CLIP checkpoint and optional VoP adapter"),
    "train": ("peft_vop.cli.train", "train a VoP adapter with accelerate"),
    "index": ("peft_vop.cli.index", "embed a folder of videos into a searchable index (incremental)"),
    "search": ("peft_vop.cli.search", "search an index by text or by video"),
    "app": ("peft_vop.cli.app", "serve a search page for an index (needs the `app` extra: gradio)"),
    "demo": ("peft_vop.cli.demo", "run the offline end-to-end demo on the embedded synthetic benchmark"),
}


def version() -> str:
    """The installed peft-vop version (read from the package metadata, without importing the package)."""
    from importlib.metadata import PackageNotFoundError
    from importlib.metadata import version as distribution_version

    try:
        return distribution_version("peft-vop")
    except PackageNotFoundError:  # run from a source tree that is not installed
        return "unknown (not installed)"


def build_parser(command: str | None = None) -> argparse.ArgumentParser:
    """
    Build the `vop` argument parser.

    Args:
        command (`str`, *optional*):
            The command about to run: only its module is imported and its options added; the others are listed by
            name only (`""`: every command by name only, for `vop --help`). `None` adds the options of every command.
    """
    from .arguments import HelpFormatter

    parser = argparse.ArgumentParser(
        prog="vop", description="VoP prompt tuning of CLIP for text-video retrieval.", formatter_class=HelpFormatter
    )
    parser.add_argument("--version", action="version", version=f"peft-vop {version()}")
    subparsers = parser.add_subparsers(dest="command", metavar="COMMAND")
    subparsers.required = True
    for name, (module_name, help_text) in COMMANDS.items():
        if command is not None and name != command:
            subparsers.add_parser(name, help=help_text, add_help=False)
            continue
        module = importlib.import_module(module_name)
        parents = module.parent_parsers() if hasattr(module, "parent_parsers") else []
        sub = subparsers.add_parser(
            name, help=help_text, description=help_text, parents=parents, formatter_class=HelpFormatter
        )
        module.add_arguments(sub)
        sub.set_defaults(_run=module.run)
    return parser


def requested_command(argv: Sequence[str]) -> str:
    """The command an argument list runs (`""` when it names none: `vop --help`, `vop --version`, a typo)."""
    return argv[0] if argv and argv[0] in COMMANDS else ""


def main(argv: Sequence[str] | None = None) -> int:
    """Run the `vop` command line and return its exit status."""
    argv = list(sys.argv[1:] if argv is None else argv)
    # peft calls transformers' deprecated gradient-checkpointing names in every model load; not ours to fix.
    warnings.filterwarnings("ignore", message=r"`is_gradient_checkpointing` is deprecated", category=FutureWarning)
    warnings.filterwarnings("ignore", message=r"`gradient_checkpointing_enable` is deprecated", category=FutureWarning)
    args = build_parser(requested_command(argv)).parse_args(argv)
    return int(args._run(args) or 0)


if __name__ == "__main__":
    sys.exit(main())
