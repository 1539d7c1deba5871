"""Entry point of the `vop` command.

Each sub-command lives in its own module of `peft_vop.cli` and exposes two functions:
`add_arguments(parser)` and `run(args) -> int`. Modules are imported only when their
command runs, so `vop --help` stays fast and `vop eval` never imports the trainer.
"""

from __future__ import annotations

import argparse
import importlib
import sys
from collections.abc import Sequence


# command name -> (module, one-line help)
COMMANDS: dict[str, tuple[str, str]] = {
    "prepare": ("peft_vop.cli.prepare", "pre-decode the sampled frames of a dataset into a frame cache"),
    "eval": ("peft_vop.cli.evaluate", "evaluate text-video retrieval with a CLIP checkpoint and optional VoP adapter"),
    "train": ("peft_vop.cli.train", "train a VoP adapter with accelerate"),
    "index": ("peft_vop.cli.index", "embed a folder of videos into a searchable index (incremental)"),
    "search": ("peft_vop.cli.search", "search an index by text or by video"),
    "app": ("peft_vop.cli.app", "serve a search page for an index (needs the `app` extra: gradio)"),
    "demo": ("peft_vop.cli.demo", "run the offline end-to-end demo on the embedded synthetic benchmark"),
}


def build_parser(available_only: bool = True) -> argparse.ArgumentParser:
    """Build the `vop` argument parser with one sub-parser per available command."""
    parser = argparse.ArgumentParser(prog="vop", description="VoP prompt tuning of CLIP for text-video retrieval.")
    subparsers = parser.add_subparsers(dest="command", metavar="COMMAND")
    subparsers.required = True
    for name, (module_name, help_text) in COMMANDS.items():
        try:
            module = importlib.import_module(module_name)
        except ModuleNotFoundError as error:
            if available_only and error.name == module_name:
                continue
            raise
        sub = subparsers.add_parser(name, help=help_text, description=help_text)
        module.add_arguments(sub)
        sub.set_defaults(_run=module.run)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Run the `vop` command line and return its exit status."""
    args = build_parser().parse_args(argv)
    return int(args._run(args) or 0)


if __name__ == "__main__":
    sys.exit(main())
